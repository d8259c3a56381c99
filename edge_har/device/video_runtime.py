"""The video parts of the runtime: frames in, the same ``Prediction`` as every bundle kind out.

The models (a CNN encoder or the BlazePose encoder, and the head) are
:class:`~edge_har.core.video_models.VideoModels`, the ones convert scores; loading,
smoothing and the prediction fields are :class:`~edge_har.device.runtime_api.StreamRuntime`'s.

The split is what makes a CNN-LSTM affordable on a Pi. A window of T frames
advanced by ``stride`` frames shares T - stride frames with the previous one;
recomputing the whole clip model would run the CNN T times per prediction.
Instead the **encoder** runs once per kept frame and its feature vector goes
into a ring buffer of the last T; every ``stride`` frames the small **head**
(the LSTM) reads the buffer. Per prediction that is ``stride`` encoder calls
plus one head call, instead of T encoder calls plus the LSTM.

Two stages, so the daemon can run them on two threads (two cores of a Pi):

* :class:`FrameWindowing` (the daemon's source thread): keeps the frames that
  fall on the model's rate, preprocesses them with ``edge_har.core.frames`` (the
  code training used), runs the encoder, fills the ring buffer and emits a
  :class:`FrameWindow` (the head's input) every ``stride`` frames. A new
  camera segment (reconnect, file loop) empties the buffer: a window never
  spans a gap.
* :class:`VideoStreamRuntime` (the inference thread): the head, then the base's
  smoothing and :class:`~edge_har.device.runtime_api.Prediction`, so the daemon
  publishes every kind alike.

``mode="clip"`` buffers preprocessed frames and runs the whole clip model at
every stride instead (bundles made with ``--clip-model``): the baseline the
split is measured against. Still-image (image-seq) bundles run their one
model on every ``stride``-th kept frame. :class:`VideoRuntime` chains both
stages in one thread for tests, evaluation and benchmarks. Nothing here
imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, Sequence

import numpy as np

from edge_har.core.bundle import Bundle, BundleError
from edge_har.core.frames import FrameSampler, preprocess_frame
from edge_har.core.pose import person_present
from edge_har.core.video_models import VideoModels
from edge_har.device.runtime_api import Prediction, RuntimeOptions, StreamRuntime, Window
from edge_har.device.smoothing import Smoother
from edge_har.device.variant_choice import AUTO

log = logging.getLogger(__name__)

MODES = ("split", "clip")


@dataclass
class FrameWindow(Window):
    """A window the inference stage completes: ``data`` is the head's (or clip/whole model's) input."""

    encoder_ms: float = 0.0  # encoder time spent since the previous window (all its frames)
    frames_encoded: int = 0
    frame_index: int = 0  # kept frames since the start of the segment
    keypoints: Optional[list[Any]] = None  # pose bundles with video.publish_keypoints: per frame, oldest first


@dataclass
class VideoPrediction(Prediction):
    """A :class:`Prediction` with payload additions (``extra``: the window's keypoints when published)."""

    extra: dict[str, Any] = field(default_factory=dict)


def keypoints_json(keypoints: Optional[np.ndarray], width: int, height: int) -> Optional[list[list[float]]]:
    """(33, 4) keypoints in frame pixels -> [[x, y, visibility], ...] with x, y as fractions of the frame (None: no person)."""
    if keypoints is None:
        return None
    kp = np.asarray(keypoints, np.float64)
    return [[round(float(x / width), 4), round(float(y / height), 4), round(float(v), 3)] for x, y, _, v in kp]


class FrameWindowing:
    """The source-thread stage (see the module doc)."""

    def __init__(
        self,
        models: VideoModels,
        stride: Optional[int] = None,
        mode: str = "split",
        keypoints: bool = False,
        no_person_warn_s: Optional[float] = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"video mode {mode!r} must be one of {', '.join(MODES)}")
        self.models = models
        self.spec = models.spec
        self.window = self.spec.window
        self.stride = int(stride or self.spec.stride)
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1 frame, got {self.stride}")
        self.mode = "single" if not models.split else mode
        if self.mode == "clip" and models.clip is None:
            raise BundleError(
                f"{models.bundle.root}: variant '{models.variant}' has no clip model; convert with --clip-model "
                "to compare against recomputing the whole clip"
            )
        self.sampler = FrameSampler(self.spec.fps)
        shape = models.feature_shape if self.mode == "split" else self.spec.shape
        self._buffer = np.zeros((self.window,) + tuple(shape), np.float32)
        self.frames_in = 0
        self.frames_kept = 0
        self.frames_skipped_rate = 0
        self.encoder_ms_total = 0.0
        self.windows_no_person = 0  # pose bundles: windows skipped, no person in any of their frames
        # pose bundles: WARNING once after this many seconds (frames' wall time) without a person, INFO when
        # one is seen again; None: say nothing (video.no_person_warn_s, through RuntimeOptions)
        self.no_person_warn_s = no_person_warn_s
        self._first_wall: Optional[float] = None  # wall time of the first kept frame (never reset)
        self._last_wall: Optional[float] = None  # ... of the latest kept frame
        self._person_wall: Optional[float] = None  # ... of the latest frame with a person
        self._warned_no_person = False
        self._keypoints: Optional[list[Any]] = [None] * self.window if keypoints and models.pose is not None else None
        self._segment: Any = object()
        self.reset()

    def reset(self) -> None:
        """Forget buffered frames (a new camera segment): the next window starts from scratch."""
        self.sampler.reset()
        self._filled = self._pos = self._since = self._index = 0
        self._enc_ms = 0.0
        self._enc_n = 0
        self._first = True
        self._pending_segment = True
        if self.models.pose is not None:
            self.models.pose.reset()  # a new segment: find the person again

    def _ordered(self) -> np.ndarray:
        if self._pos == 0:
            return self._buffer.copy()
        return np.concatenate([self._buffer[self._pos :], self._buffer[: self._pos]])

    def push_frame(
        self,
        image_bgr: np.ndarray,
        timestamp: float,
        *,
        wall_time: Optional[float] = None,
        arrival: Optional[float] = None,
        segment: Any = None,
    ) -> Optional[FrameWindow]:
        """Offer one decoded frame; returns a window when this frame completes a stride."""
        self.frames_in += 1
        if segment is not None and segment != self._segment:
            if self.frames_kept:
                self.reset()
            self._segment = segment
        if not self.sampler.keep(timestamp):
            self.frames_skipped_rate += 1
            return None
        self.frames_kept += 1
        frame = preprocess_frame(image_bgr, self.spec)
        return self.push_preprocessed(
            frame,
            wall_time if wall_time is not None else time.time(),
            arrival if arrival is not None else time.perf_counter(),
        )

    def push_preprocessed(
        self, frame: np.ndarray, wall_time: float = 0.0, arrival: float = 0.0
    ) -> Optional[FrameWindow]:
        """The same for a frame already through ``preprocess_frame`` (no rate sampling)."""
        index = self._index
        self._index += 1
        if self.mode == "single":
            data = frame
        else:
            if self.mode == "split":
                started = time.perf_counter()
                self._buffer[self._pos] = self.models.encode(frame)
                if self._keypoints is not None and self.models.pose is not None and self.models.pose.last is not None:
                    kp = self.models.pose.last.keypoints
                    self._keypoints[self._pos] = keypoints_json(kp, self.spec.width, self.spec.height)
                ms = 1000.0 * (time.perf_counter() - started)
                self._enc_ms += ms
                self._enc_n += 1
                self.encoder_ms_total += ms
                if self.models.pose is not None:
                    self._person_seen(bool(person_present(self._buffer[self._pos])), wall_time)
            else:
                self._buffer[self._pos] = frame
            self._pos = (self._pos + 1) % self.window
            self._filled = min(self._filled + 1, self.window)
            if self._filled < self.window:
                self._since += 1
                return None
            data = None
        self._since += 1
        if not self._first and self._since < self.stride:
            return None
        if data is None:
            data = self._ordered()
        if self.models.pose is not None and not person_present(data).any():
            # nothing to classify: skipped and counted (stats: windows_no_person); the next window comes a
            # stride later, as after a published one (a first window without a person must not make every
            # later frame a window of its own, each counted)
            self.windows_no_person += 1
            self._first = False
            self._since, self._enc_ms, self._enc_n = 0, 0.0, 0
            return None
        window = FrameWindow(
            data,
            wall_time,
            arrival,
            None,
            self._pending_segment,
            encoder_ms=self._enc_ms,
            frames_encoded=self._enc_n,
            frame_index=index,
            keypoints=None if self._keypoints is None else self._keypoints[self._pos :] + self._keypoints[: self._pos],
        )
        self._first = self._pending_segment = False
        self._since = 0
        self._enc_ms, self._enc_n = 0.0, 0
        return window

    def _person_seen(self, present: bool, wall_time: float) -> None:
        """Pose bundles, each encoded frame: the clock of ``no_person_s`` and its two log lines."""
        if self._first_wall is None:
            self._first_wall = wall_time
        self._last_wall = wall_time
        if present:
            if self._warned_no_person:
                log.info("camera: a person seen again after %.1f s without one; predictions resume", self.no_person_s())
                self._warned_no_person = False
            self._person_wall = wall_time
            return
        if self._warned_no_person or self.no_person_warn_s is None:
            return
        gone = self.no_person_s()
        if gone is not None and gone >= self.no_person_warn_s:
            self._warned_no_person = True
            log.warning(
                "camera: no person seen for %.1f s (video.no_person_warn_s: %g)%s; windows without one are skipped "
                "(stats: windows_no_person, no_person_s)",
                gone,
                self.no_person_warn_s,
                "" if self._person_wall is not None else " since the camera started",
            )

    def no_person_s(self) -> Optional[float]:
        """Seconds (frames' wall time) from the last frame with a person, or from the first frame when none had
        one, to the latest frame; 0.0 before any frame; None for a bundle that is not a pose bundle."""
        if self.models.pose is None:
            return None
        if self._last_wall is None:
            return 0.0
        since = self._person_wall if self._person_wall is not None else self._first_wall
        assert since is not None
        return max(0.0, self._last_wall - since)  # a wall clock stepped back (NTP) reads 0, not negative

    def push(self, chunk: Any) -> list[FrameWindow]:
        """The daemon's interface: a camera chunk (``edge_har.device.sources.camera.FrameChunk``) -> windows."""
        frame = getattr(chunk, "frame", None)
        if frame is None:
            return []
        w = self.push_frame(
            frame.image, frame.timestamp, wall_time=frame.wall_time, arrival=frame.arrival, segment=frame.segment
        )
        return [w] if w is not None else []

    @property
    def source_rate_hz(self) -> float:
        return self.spec.fps

    def counters(self) -> dict[str, Any]:
        return {
            "frames_in": self.frames_in,
            "frames_kept": self.frames_kept,
            "frames_skipped_rate": self.frames_skipped_rate,
            "encoder_ms_mean": round(self.encoder_ms_total / self.frames_kept, 3)
            if self.frames_kept and self.mode == "split"
            else None,
            **(self._pose_counters() if self.models.pose is not None else {"no_person_s": None}),
        }

    def _pose_counters(self) -> dict[str, Any]:
        assert self.models.pose is not None
        c = self.models.pose.counters.to_json()
        gone = self.no_person_s()
        return {
            "frames_no_person": c["frames_no_person"],
            "windows_no_person": self.windows_no_person,
            "no_person_s": None if gone is None else round(gone, 3),
            "pose": c,
        }


class VideoStreamRuntime(StreamRuntime):
    """The inference-thread stage: head (or clip / whole model), smoothing, ``Prediction``."""

    kind: ClassVar[str] = "video"

    def __init__(
        self, models: VideoModels, smoother: Smoother, stride: Optional[int] = None, mode: str = "split"
    ) -> None:
        super().__init__(models.bundle, models.variant, smoother, models.spec.to_preprocessing())
        self.models = models
        self.spec = models.spec
        self.stride = stride
        self.mode = mode
        self._windowing: Optional[FrameWindowing] = None
        self.publish_keypoints = False  # video.publish_keypoints (pose bundles): each window's keypoints in extra
        self.no_person_warn_s: Optional[float] = None  # video.no_person_warn_s (pose bundles), for the windowing

    @classmethod
    def _load(cls, bundle: Bundle, options: RuntimeOptions) -> VideoStreamRuntime:
        if options.variant == AUTO:
            # Timing a video variant means an encoder per frame and a head per window, on frames:
            # not done (yet). `auto` runs the bundle's default variant, and says so.
            log.info("variant auto: a video bundle runs its default variant (only sensor bundles are timed)")
            options = dataclasses.replace(options, variant=None)
        models = VideoModels.load(
            bundle, options.variant, options=options.interpreter, load_clip=options.mode == "clip"
        )
        rt = cls(models, options.smoother(bundle.labels), options.stride, options.mode)
        rt.publish_keypoints = options.publish_keypoints
        rt.no_person_warn_s = options.no_person_warn_s
        return rt

    def log_loaded(self, ms: float) -> None:
        v = self.bundle.variant(self.variant)
        log.info(
            "video model %s variant %s (%s, %.1f KiB, %s) loaded in %.0f ms; %dx%d px at %g fps, window %d frames, "
            "stride %d, %d labels",
            self.bundle.model_id,
            v.name,
            v.quantization,
            v.size_bytes / 1024,
            "encoder + head" if self.models.split else "one model",
            ms,
            self.spec.width,
            self.spec.height,
            self.spec.fps,
            self.spec.window,
            self.stride or self.spec.stride,
            len(self.labels),
        )

    def windowing(
        self,
        source_rate_hz: Optional[float] = None,
        scale: Optional[Sequence[float]] = None,
        offset: Optional[Sequence[float]] = None,
    ) -> FrameWindowing:
        """The source-thread stage for this runtime.

        The arguments are the StreamRuntime signature; a camera's rate and value scaling do not
        apply (frames are kept at the bundle's fps and scaled by its FrameSpec), so they are ignored.
        """
        self._windowing = FrameWindowing(
            self.models,
            self.stride,
            self.mode,
            keypoints=self.publish_keypoints,
            no_person_warn_s=self.no_person_warn_s,
        )
        return self._windowing

    def counters(self) -> dict[str, Any]:
        return self._windowing.counters() if self._windowing is not None else {}

    def classify(self, window: Window) -> np.ndarray:
        m = self.models
        if m.whole is not None:
            return m.whole.predict(window.data)
        if self.mode == "clip":
            assert m.clip is not None
            return m.clip.predict(window.data)
        return m.classify_features(window.data)

    def predict(self, window: Window) -> Prediction:
        """The base's prediction, its ``inference_ms`` counting the encoders of the frames since the
        last window too, and the window's keypoints in ``extra`` when they are published."""
        p = super().predict(window)
        p.inference_ms += float(getattr(window, "encoder_ms", 0.0))
        keypoints = getattr(window, "keypoints", None)
        if keypoints is None:
            return p
        return VideoPrediction(**vars(p), extra={"keypoints": keypoints})


class VideoRuntime:
    """Both stages in one thread: ``push(frame, timestamp)`` -> ``Prediction`` or None.

    For tests, evaluation and benchmarks; the daemon runs the stages on two threads.
    """

    def __init__(
        self,
        models: VideoModels,
        stride: Optional[int] = None,
        mode: str = "split",
        smoother: Optional[Smoother] = None,
    ) -> None:
        self.stream = VideoStreamRuntime(
            models, smoother or Smoother(models.bundle.labels, "mean_prob", 1), stride, mode
        )
        self.windowing = self.stream.windowing()
        self.models = models
        self.head_ms_total = 0.0
        self.predictions = 0

    @property
    def mode(self) -> str:
        return self.windowing.mode

    def reset(self) -> None:
        self.windowing.reset()
        self.stream.smoother.reset()

    def _predict(self, window: Optional[FrameWindow]) -> Optional[Prediction]:
        if window is None:
            return None
        prediction = self.stream.predict(window)
        self.head_ms_total += prediction.inference_ms - window.encoder_ms
        self.predictions += 1
        return prediction

    def push(self, frame_bgr: np.ndarray, timestamp: float, segment: Any = None) -> Optional[Prediction]:
        return self._predict(self.windowing.push_frame(frame_bgr, timestamp, segment=segment))

    def push_preprocessed(self, frame: np.ndarray) -> Optional[Prediction]:
        return self._predict(self.windowing.push_preprocessed(frame, time.time(), time.perf_counter()))
