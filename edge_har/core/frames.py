"""The one frame preprocessing path shared by video training and the camera daemon.

A video model only works when the device hands it frames prepared exactly as
the training frames were: the same frames kept (sampling rate), the same crop
and resize (interpolation included), the same colour order and the same value
scaling. :class:`FrameSpec` holds those parameters, ``bundle.json`` records
them, and both ``edge_har.convert.video_datasets`` and ``edge_har.device.video_runtime`` call
the functions below, so the two sides cannot disagree. OpenCV is the only
image library used; nothing here imports TensorFlow.

Order of operations, everywhere:
    decoded BGR frame -> keep or drop (:class:`FrameSampler`, by timestamp)
                      -> crop to the model's aspect (optional) -> resize -> RGB   (:func:`resize_frame`, uint8)
                      -> value = pixel * scale + offset -> (value - mean) / std     (:func:`normalise_frames`, float32)

Training keeps frames as uint8 after the first step (4x less memory than
float32) and normalises batches as it feeds them; the device does both steps
per frame. The video bundle stores the sensor ``Preprocessing`` fields (rate =
frames per second, window = T frames, stride in frames, channels R, G, B, value
scaling, normalisation) plus a ``frame`` object with the geometry, so every
generic reader of ``bundle.json`` still understands it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from edge_har.core.preprocessing import Preprocessing, PreprocessingError

CHANNELS = ("R", "G", "B")
INTERPOLATIONS = ("area", "linear", "nearest", "cubic")
FITS = ("stretch", "crop")


class FrameError(PreprocessingError):
    """Bad frame parameters or a frame OpenCV cannot handle."""


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - opencv is in every extra that runs video
        raise FrameError(
            "video needs OpenCV: pip install opencv-python-headless (it is in the 'device' and 'train' extras)"
        ) from exc
    return cv2


@dataclass(frozen=True)
class FrameSpec:
    """How raw camera or file frames become model input.

    ``fps`` is the rate the model sees: frames of a faster source are dropped
    by :class:`FrameSampler`, so a 30 fps webcam and a 25 fps training clip
    both yield the model's rate. ``window`` is the number of frames T one
    prediction looks at (1 for the still-image mode) and ``stride`` the number
    of kept frames between predictions. ``fit="crop"`` cuts the centre of the
    frame to the model's aspect ratio before resizing; ``"stretch"`` keeps the
    whole field of view and distorts it instead (a person at the edge of the
    picture stays in it).
    """

    height: int
    width: int
    fps: float
    window: int = 1
    stride: int = 1
    scale: float = 1.0 / 255.0
    offset: float = 0.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str = "area"
    fit: str = "stretch"

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8:
            raise FrameError(f"frame size must be at least 8x8 pixels, got {self.width}x{self.height}")
        if self.fps <= 0:
            raise FrameError(f"fps must be > 0, got {self.fps}")
        if self.window < 1 or self.stride < 1:
            raise FrameError(f"window and stride must be >= 1 frame, got window {self.window}, stride {self.stride}")
        if self.interpolation not in INTERPOLATIONS:
            raise FrameError(f"interpolation {self.interpolation!r} must be one of {', '.join(INTERPOLATIONS)}")
        if self.fit not in FITS:
            raise FrameError(f"fit {self.fit!r} must be one of {', '.join(FITS)}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and len(value) not in (1, 3):
                raise FrameError(f"{name} has {len(value)} values; expected 1 or 3 (R, G, B)")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise FrameError(f"std must be > 0, got {list(self.std)}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, 3)

    @property
    def window_seconds(self) -> float:
        return self.window / self.fps

    def replace(self, **changes: Any) -> FrameSpec:
        data = {f: getattr(self, f) for f in self.__dataclass_fields__}
        data.update(changes)
        return FrameSpec(**data)

    # ------------------------------------------------------------ bundle.json

    def to_preprocessing(self) -> Preprocessing:
        """The sensor-shaped view: rate = fps, window and stride in frames, channels R, G, B."""
        return Preprocessing(
            sample_rate_hz=float(self.fps),
            window=self.window,
            stride=self.stride,
            channels=CHANNELS,
            scale=(float(self.scale),),
            offset=(float(self.offset),),
            mean=self.mean,
            std=self.std,
            units="pixel value (uint8 0..255) mapped by scale and offset",
        )

    def to_json(self) -> dict[str, Any]:
        data = self.to_preprocessing().to_json()
        data["channel_order"] = "RGB; OpenCV decodes BGR, frames are converted before scaling"
        data["frame"] = {
            "height": self.height,
            "width": self.width,
            "fit": self.fit,
            "interpolation": self.interpolation,
            "color": "RGB",
            "sampling": "a frame is kept when its timestamp reaches the next slot of 1/fps seconds "
            "(edge_har.core.frames.FrameSampler)",
        }
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "preprocessing") -> FrameSpec:
        pre = Preprocessing.from_json(data, where=where)
        frame = data.get("frame")
        if not isinstance(frame, Mapping):
            raise FrameError(f"{where}: missing key 'frame' (a video bundle records the frame geometry there)")
        for key in ("height", "width"):
            if key not in frame:
                raise FrameError(f"{where}: missing key 'frame.{key}'")
        if pre.channels != CHANNELS:
            raise FrameError(f"{where}: channels must be {list(CHANNELS)} for video, got {list(pre.channels)}")
        if len(pre.scale) != 1 or len(pre.offset) != 1:
            raise FrameError(f"{where}: value_scaling.scale and offset must hold one value each for video")
        try:
            return cls(
                height=int(frame["height"]),
                width=int(frame["width"]),
                fps=pre.sample_rate_hz,
                window=pre.window,
                stride=pre.stride,
                scale=pre.scale[0],
                offset=pre.offset[0],
                mean=pre.mean,
                std=pre.std,
                interpolation=str(frame.get("interpolation", "area")),
                fit=str(frame.get("fit", "stretch")),
            )
        except FrameError as exc:
            raise FrameError(f"{where}: {exc}") from exc


# ---------------------------------------------------------------- per frame


def _interpolation_flag(name: str) -> int:
    cv2 = _cv2()
    return {
        "area": cv2.INTER_AREA,
        "linear": cv2.INTER_LINEAR,
        "nearest": cv2.INTER_NEAREST,
        "cubic": cv2.INTER_CUBIC,
    }[name]


def as_bgr(frame: np.ndarray) -> np.ndarray:
    """Grey (H, W) or (H, W, 1) and BGRA frames as 3-channel uint8 BGR."""
    cv2 = _cv2()
    arr = np.asarray(frame)
    if arr.dtype != np.uint8:
        raise FrameError(f"frames must be uint8 as decoded by OpenCV, got {arr.dtype}")
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 1):
        return cv2.cvtColor(arr.reshape(arr.shape[:2]), cv2.COLOR_GRAY2BGR)
    if arr.ndim == 3 and arr.shape[2] == 4:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2BGR)
    if arr.ndim == 3 and arr.shape[2] == 3:
        return arr
    raise FrameError(f"a frame must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {arr.shape}")


def center_crop_box(height: int, width: int, target_aspect: float) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the largest centred box with width/height = target_aspect."""
    if width / height > target_aspect:  # too wide: cut the sides
        new_w = max(1, int(round(height * target_aspect)))
        left = (width - new_w) // 2
        return 0, height, left, left + new_w
    new_h = max(1, int(round(width / target_aspect)))
    top = (height - new_h) // 2
    return top, top + new_h, 0, width


def resize_frame(frame_bgr: np.ndarray, spec: FrameSpec) -> np.ndarray:
    """A decoded BGR frame -> (height, width, 3) uint8 RGB at the model's size."""
    cv2 = _cv2()
    arr = as_bgr(frame_bgr)
    if spec.fit == "crop":
        top, bottom, left, right = center_crop_box(arr.shape[0], arr.shape[1], spec.width / spec.height)
        arr = arr[top:bottom, left:right]
    if arr.shape[0] != spec.height or arr.shape[1] != spec.width:
        arr = cv2.resize(arr, (spec.width, spec.height), interpolation=_interpolation_flag(spec.interpolation))
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def normalise_frames(frames: np.ndarray, spec: FrameSpec) -> np.ndarray:
    """uint8 RGB frames of any leading shape (..., H, W, 3) -> float32 model input."""
    arr = np.asarray(frames)
    if arr.shape[-3:] != spec.shape:
        raise FrameError(f"frames must end in shape {spec.shape} (H, W, RGB); got {arr.shape}")
    out: np.ndarray = arr.astype(np.float32) * np.float32(spec.scale) + np.float32(spec.offset)
    if spec.mean is not None and spec.std is not None:
        out = (out - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return out


def preprocess_frame(frame_bgr: np.ndarray, spec: FrameSpec) -> np.ndarray:
    """The device-side path for one frame: decoded BGR in, float32 (H, W, 3) model input out."""
    return normalise_frames(resize_frame(frame_bgr, spec), spec)


# ---------------------------------------------------------------- sampling


class FrameSampler:
    """Keep the frames that fall on the model's rate, by timestamp.

    A frame is kept when its timestamp reaches the next slot (``1 / fps``
    apart, starting at the first frame); a faster source then contributes
    frames at the model's rate, a slower one every frame. After a gap of more
    than two slots (a lost camera, a slow consumer) the slots restart at the
    next frame instead of keeping a burst of catch-up frames. Clip files use
    ``index / file_fps`` as timestamps both when training and when the daemon
    replays a file, so both keep the same frames.
    """

    def __init__(self, fps: float, tolerance: float = 1e-6) -> None:
        if fps <= 0:
            raise FrameError(f"fps must be > 0, got {fps}")
        self.period = 1.0 / float(fps)
        self.tolerance = tolerance
        self._next: float | None = None

    def reset(self) -> None:
        self._next = None

    def keep(self, timestamp: float) -> bool:
        if self._next is None or timestamp > self._next + 2 * self.period:
            self._next = timestamp + self.period
            return True
        if timestamp + self.tolerance >= self._next:
            self._next += self.period
            return True
        return False


def sampled_indices(n_frames: int, source_fps: float, target_fps: float) -> list[int]:
    """Indices of the frames :class:`FrameSampler` keeps from a file of ``n_frames`` at ``source_fps``."""
    sampler = FrameSampler(target_fps)
    return [i for i in range(n_frames) if sampler.keep(i / source_fps)]


def window_starts(n_frames: int, window: int, stride: int) -> list[int]:
    """First frame of each full window, with the boundaries of ``preprocessing.make_windows``."""
    if n_frames < window:
        return []
    return list(range(0, n_frames - window + 1, stride))
