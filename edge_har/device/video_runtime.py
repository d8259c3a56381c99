"""Streaming inference of a video bundle: frames in, the sensor runtime's ``Prediction`` out.

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
* :class:`VideoStreamRuntime` (the inference thread): the head, smoothing and
  the same :class:`~edge_har.device.runtime.Prediction` the sensor runtime makes, so
  the daemon publishes both kinds alike.

``mode="clip"`` buffers preprocessed frames and runs the whole clip model at
every stride instead (bundles made with ``--clip-model``): the baseline the
split is measured against. Still-image (image-seq) bundles run their one
model on every ``stride``-th kept frame. :class:`VideoRuntime` chains both
stages in one thread for tests, evaluation and benchmarks. Nothing here
imports TensorFlow.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from edge_har.core.bundle import Bundle, BundleError
from edge_har.core.frames import FrameSampler, FrameSpec, preprocess_frame
from edge_har.core.interpreter import InterpreterOptions, TFLiteModel
from edge_har.core.pose import person_present
from edge_har.core.preprocessing import Preprocessing
from edge_har.device.runtime import Prediction, Window, build_prediction
from edge_har.device.smoothing import Smoother

log = logging.getLogger(__name__)

MODES = ("split", "clip")


def is_video_bundle(path: Any) -> bool:
    """Whether ``path`` holds a video bundle (a cheap look at bundle.json; errors surface when it loads)."""
    import json

    file = Path(path)
    file = file if file.name == "bundle.json" else file / "bundle.json"
    try:
        return json.loads(file.read_text()).get("kind") == "video"
    except (OSError, ValueError, AttributeError):
        return False


@dataclass
class VideoModels:
    """The loaded TFLite models of one variant of a video bundle."""

    bundle: Bundle
    variant: str
    spec: FrameSpec
    video_mode: str  # "video" | "image-seq"
    encoder: Optional[TFLiteModel] = None
    head: Optional[TFLiteModel] = None
    clip: Optional[TFLiteModel] = None  # whole clip model, T frames in
    whole: Optional[TFLiteModel] = None  # one-model variant (image-seq)
    pose: Optional[Any] = None  # edge_har.device.pose_encoder.PoseEncoder (video mode "pose")

    @classmethod
    def load(
        cls,
        bundle: Bundle,
        variant: Optional[str] = None,
        *,
        options: Optional[InterpreterOptions] = None,
        backend: str = "auto",
        num_threads: Optional[int] = 1,
        delegate: Optional[str] = None,
        verify_sha256: bool = True,
        load_clip: bool = False,
    ) -> VideoModels:
        """Every model of the variant, each loaded with the same ``options`` (the keywords build
        them when ``options`` is not given: benchmarks and tests)."""
        if options is None:
            options = InterpreterOptions(backend, num_threads, delegate, verify_sha256=verify_sha256)
        if bundle.kind != "video":
            raise BundleError(f"{bundle.root}: a {bundle.kind!r} bundle, not a video bundle")
        v = bundle.variant(variant)
        spec = FrameSpec.from_json(bundle.data["preprocessing"], where=f"{bundle.root}/bundle.json: preprocessing")
        info = bundle.data.get("video") or {}
        models = cls(bundle, v.name, spec, str(info.get("mode", "video")))
        kwargs: dict[str, Any] = {"options": options}
        if models.video_mode == "pose":
            # BlazePose detector + landmarks as the encoder (edge_har.device.pose_encoder), then the head
            from edge_har.device.pose_encoder import POSE_PARTS, PoseEncoder

            for part in POSE_PARTS + ("head",):
                if part not in v.parts:
                    raise BundleError(f"{bundle.root}/bundle.json: variants.{v.name}.parts has no '{part}'")
            detector, landmarks = (bundle.load_model(v.name, part=p, **kwargs) for p in POSE_PARTS)
            try:
                models.pose = PoseEncoder(
                    detector, landmarks, track=bool((bundle.data.get("pose") or {}).get("tracking", True))
                )
            except ValueError as exc:
                raise BundleError(f"{bundle.root}/bundle.json: variants.{v.name}.parts: {exc}") from exc
            models.head = bundle.load_model(v.name, part="head", **kwargs)
        elif v.parts:
            for part in ("encoder", "head"):
                if part not in v.parts:
                    raise BundleError(f"{bundle.root}/bundle.json: variants.{v.name}.parts has no '{part}'")
            models.encoder = bundle.load_model(v.name, part="encoder", **kwargs)
            models.head = bundle.load_model(v.name, part="head", **kwargs)
            if load_clip:
                models.clip = bundle.load_model(v.name, part="clip", **kwargs)
        else:
            models.whole = bundle.load_model(v.name, **kwargs)
        models.check()
        return models

    def check(self) -> None:
        """Every model's tensors against the bundle and each other (raises one BundleError naming them all).

        The encoder takes one frame, the head the last T of the encoder's feature vectors, the
        head (clip, whole model) outputs one probability per label: a mismatch found here stops
        the start (exit 78) instead of failing every window.
        """
        b, v, frame = self.bundle, self.variant, (1,) + self.spec.shape
        problems: list[str] = []
        if self.whole is not None:
            problems += b.model_problems(self.whole, v, expect_input=frame)
        if self.encoder is not None:
            problems += b.model_problems(self.encoder, v, "encoder", expect_input=frame)
        if self.head is not None:
            expect = (1, self.spec.window) + self.feature_shape if self.split else None
            problems += b.model_problems(self.head, v, "head", expect_input=expect)
        if self.clip is not None:
            problems += b.model_problems(self.clip, v, "clip", expect_input=(1, self.spec.window) + self.spec.shape)
        if problems:
            raise BundleError(f"{b.root / 'bundle.json'}: " + "; ".join(problems), problems)

    @property
    def split(self) -> bool:
        return self.whole is None

    @property
    def feature_shape(self) -> tuple[int, ...]:
        if self.pose is not None:
            return tuple(self.pose.feature_shape)
        assert self.encoder is not None
        return tuple(self.encoder.output.shape[1:])

    def encode(self, frame: np.ndarray) -> np.ndarray:
        """One preprocessed float32 frame (H, W, 3) -> its float32 feature vector."""
        if self.pose is not None:
            return np.asarray(self.pose.encode(frame), np.float32)
        assert self.encoder is not None
        return self.encoder.predict(frame)

    def classify_features(self, features: np.ndarray) -> np.ndarray:
        """(T, D) features, oldest first -> class probabilities."""
        assert self.head is not None
        return self.head.predict(features)


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
        self, models: VideoModels, stride: Optional[int] = None, mode: str = "split", keypoints: bool = False
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
            self.windows_no_person += 1  # nothing to classify: skipped and counted (stats: windows_no_person)
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
            **(self._pose_counters() if self.models.pose is not None else {}),
        }

    def _pose_counters(self) -> dict[str, Any]:
        assert self.models.pose is not None
        c = self.models.pose.counters.to_json()
        return {"frames_no_person": c["frames_no_person"], "windows_no_person": self.windows_no_person, "pose": c}


class VideoStreamRuntime:
    """The inference-thread stage: head (or clip / whole model), smoothing, ``Prediction``.

    Implements :class:`~edge_har.device.runtime_api.StreamRuntime`, as the sensor
    ``Runtime`` does, so the daemon drives both through one interface.
    """

    def __init__(
        self, models: VideoModels, smoother: Smoother, stride: Optional[int] = None, mode: str = "split"
    ) -> None:
        self.models = models
        self.bundle = models.bundle
        self.variant = models.variant
        self.labels = list(models.bundle.labels)
        self.spec = models.spec
        self.pre: Preprocessing = self.spec.to_preprocessing()
        self.smoother = smoother
        self.stride = stride
        self.mode = mode
        self._seq = 0
        self._windowing: Optional[FrameWindowing] = None
        self.publish_keypoints = False  # video.publish_keypoints (pose bundles): each window's keypoints in extra

    @classmethod
    def load(
        cls,
        bundle_path: Any,
        variant: Optional[str] = None,
        *,
        options: Optional[InterpreterOptions] = None,
        backend: str = "auto",
        num_threads: Optional[int] = 1,
        delegate: Optional[str] = None,
        delegate_options: Optional[dict[str, Any]] = None,
        verify_sha256: bool = True,
        smoothing: str = "mean_prob",
        smoothing_window: int = 5,
        threshold: float = 0.0,
        unknown_label: str = "unknown",
        stride: Optional[int] = None,
        mode: str = "split",
    ) -> VideoStreamRuntime:
        """Load a video bundle. ``options`` (what ``from_config`` passes) replaces the
        interpreter keywords, which stay for benchmarks and tests that set one or two."""
        if options is None:
            options = InterpreterOptions(backend, num_threads, delegate, delegate_options or {}, verify_sha256)
        bundle = Bundle.load(bundle_path)
        started = time.perf_counter()
        models = VideoModels.load(bundle, variant, options=options, load_clip=mode == "clip")
        smoother = Smoother(bundle.labels, smoothing, smoothing_window, threshold, unknown_label)
        rt = cls(models, smoother, stride, mode)
        v = bundle.variant(models.variant)
        log.info(
            "video model %s variant %s (%s, %.1f KiB, %s) loaded in %.0f ms; %dx%d px at %g fps, window %d frames, "
            "stride %d, %d labels",
            bundle.model_id,
            v.name,
            v.quantization,
            v.size_bytes / 1024,
            "encoder + head" if models.split else "one model",
            (time.perf_counter() - started) * 1000,
            rt.spec.width,
            rt.spec.height,
            rt.spec.fps,
            rt.spec.window,
            stride or rt.spec.stride,
            len(rt.labels),
        )
        return rt

    @classmethod
    def from_config(cls, cfg: Any) -> VideoStreamRuntime:
        """From a :class:`~edge_har.device.config.DeviceConfig` (its ``video:`` section sets stride and mode)."""
        scfg = cfg.smoothing
        vcfg = getattr(cfg, "video", None)
        rt = cls.load(
            cfg.bundle,
            cfg.variant,
            options=cfg.interpreter.options(),
            smoothing=scfg.method,
            smoothing_window=scfg.window,
            threshold=scfg.threshold,
            unknown_label=scfg.unknown_label,
            stride=getattr(vcfg, "stride", None),
            mode=getattr(vcfg, "mode", "split"),
        )
        rt.publish_keypoints = bool(getattr(vcfg, "publish_keypoints", False))
        return rt

    @property
    def model_id(self) -> str:
        return self.bundle.model_id

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
        self._windowing = FrameWindowing(self.models, self.stride, self.mode, keypoints=self.publish_keypoints)
        return self._windowing

    def counters(self) -> dict[str, Any]:
        return self._windowing.counters() if self._windowing is not None else {}

    def predict(self, window: Window) -> Prediction:
        if window.segment_start:
            self.smoother.reset()
        started = time.perf_counter()
        m = self.models
        if m.whole is not None:
            probs = m.whole.predict(window.data)
        elif self.mode == "clip":
            assert m.clip is not None
            probs = m.clip.predict(window.data)
        else:
            probs = m.classify_features(window.data)
        model_ms = (time.perf_counter() - started) * 1000.0
        encoder_ms = float(getattr(window, "encoder_ms", 0.0))
        seq = self._seq
        self._seq += 1
        # inference_ms: the encoders of the frames since the last window, and the head
        p = build_prediction(seq, window, probs, self.smoother, self.labels, encoder_ms + model_ms)
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
