"""Streaming inference of a video bundle: frames in, class probabilities out.

The split is what makes a CNN-LSTM affordable on a Pi. A window of T frames
advanced by ``stride`` frames shares T - stride frames with the previous one;
recomputing the whole clip model would run the CNN T times per prediction.
Instead the **encoder** runs once per kept frame and its feature vector goes
into a ring buffer of the last T; every ``stride`` frames the small **head**
(the LSTM) reads the buffer. Per prediction that is ``stride`` encoder calls
plus one head call instead of T encoder calls plus the LSTM.

:class:`VideoRuntime` also runs the two other shapes of a video bundle:
``mode="clip"`` feeds the last T preprocessed frames to the whole clip model
(when the bundle carries one, ``--clip-model``): the baseline the split is
measured against; and the still-image (image-seq) mode classifies single
frames with one model.

Frames are sampled to the model's rate and preprocessed by ``edge_har.frames``,
the code training used. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .bundle import Bundle, BundleError
from .frames import FrameSampler, FrameSpec, preprocess_frame
from .interpreter import TFLiteModel

log = logging.getLogger(__name__)

MODES = ("split", "clip")


@dataclass
class VideoModels:
    """The loaded TFLite models of one variant of a video bundle."""

    bundle: Bundle
    variant: str
    spec: FrameSpec
    video_mode: str  # "video" | "image-seq"
    encoder: TFLiteModel | None = None
    head: TFLiteModel | None = None
    clip: TFLiteModel | None = None  # whole clip model, T frames in
    whole: TFLiteModel | None = None  # one-model variant (image-seq)

    @classmethod
    def load(
        cls,
        bundle: Bundle,
        variant: str | None = None,
        *,
        backend: str = "auto",
        num_threads: int | None = 1,
        delegate: str | None = None,
        load_clip: bool = False,
    ) -> "VideoModels":
        if bundle.kind != "video":
            raise BundleError(f"{bundle.root}: a {bundle.kind!r} bundle, not a video bundle")
        v = bundle.variant(variant)
        spec = FrameSpec.from_json(bundle.data["preprocessing"], where=f"{bundle.root}/bundle.json: preprocessing")
        info = bundle.data.get("video") or {}
        models = cls(bundle, v.name, spec, str(info.get("mode", "video")))
        kwargs: dict[str, Any] = {"backend": backend, "num_threads": num_threads, "delegate": delegate}
        if v.parts:
            for part in ("encoder", "head"):
                if part not in v.parts:
                    raise BundleError(f"{bundle.root}/bundle.json: variants.{v.name}.parts has no '{part}'")
            models.encoder = bundle.load_model(v.name, part="encoder", **kwargs)
            models.head = bundle.load_model(v.name, part="head", **kwargs)
            if load_clip:
                models.clip = bundle.load_model(v.name, part="clip", **kwargs)
        else:
            models.whole = bundle.load_model(v.name, **kwargs)
        return models

    @property
    def feature_shape(self) -> tuple[int, ...]:
        assert self.encoder is not None
        return tuple(self.encoder.output.shape[1:])

    def encode(self, frame: np.ndarray) -> np.ndarray:
        """One preprocessed float32 frame (H, W, 3) -> its float32 feature vector."""
        assert self.encoder is not None
        return self.encoder.predict(frame)

    def classify_features(self, features: np.ndarray) -> np.ndarray:
        """(T, D) features, oldest first -> class probabilities."""
        assert self.head is not None
        return self.head.predict(features)


@dataclass
class VideoPrediction:
    """One prediction from the stream, with its timing."""

    probabilities: np.ndarray
    frame_index: int  # kept frames since the start (or the last reset)
    timestamp: float  # source timestamp of the window's last frame, seconds
    inference_ms: float  # model time spent for this prediction (encoders since the last one + head)
    encoder_ms: float  # mean encoder time per frame since the last prediction
    head_ms: float
    frames_encoded: int  # encoder calls since the last prediction


@dataclass
class RuntimeCounters:
    frames_in: int = 0
    frames_kept: int = 0
    frames_skipped_rate: int = 0  # dropped to bring the source down to the model's rate
    predictions: int = 0
    resets: int = 0
    encoder_ms_total: float = 0.0
    head_ms_total: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class VideoRuntime:
    """Frames in, :class:`VideoPrediction` out (see the module doc).

    ``stride`` overrides the bundle's (kept frames between predictions).
    ``mode="clip"`` recomputes the whole clip model over the last T frames at
    every stride, for comparison; it needs a bundle made with ``--clip-model``.
    """

    def __init__(self, models: VideoModels, stride: int | None = None, mode: str = "split") -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} must be one of {', '.join(MODES)}")
        self.models = models
        self.spec = models.spec
        self.window = self.spec.window
        self.stride = int(stride or self.spec.stride)
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1 frame, got {self.stride}")
        self.mode = mode
        if models.whole is not None:
            self.mode = "single"
        elif mode == "clip" and models.clip is None:
            raise BundleError(
                f"{models.bundle.root}: variant '{models.variant}' has no clip model; convert with --clip-model "
                "to compare against recomputing the whole clip"
            )
        self.counters = RuntimeCounters()
        self.sampler = FrameSampler(self.spec.fps)
        if self.mode == "split":
            self._buffer = np.zeros((self.window,) + models.feature_shape, np.float32)
        else:
            self._buffer = np.zeros((self.window,) + self.spec.shape, np.float32)
        self._filled = 0
        self._pos = 0  # next slot to write
        self._since = 0  # kept frames since the last prediction
        self._enc_ms = 0.0
        self._enc_n = 0

    def reset(self) -> None:
        """Forget buffered frames, e.g. after the camera was lost: a window never spans a gap."""
        self.sampler.reset()
        self._filled = self._pos = self._since = 0
        self._enc_ms, self._enc_n = 0.0, 0
        self.counters.resets += 1

    def _ordered(self) -> np.ndarray:
        if self._pos == 0:
            return self._buffer
        return np.concatenate([self._buffer[self._pos :], self._buffer[: self._pos]])

    def push(self, frame_bgr: np.ndarray, timestamp: float) -> VideoPrediction | None:
        """Offer one decoded frame; returns a prediction when this frame completes a stride."""
        self.counters.frames_in += 1
        if not self.sampler.keep(timestamp):
            self.counters.frames_skipped_rate += 1
            return None
        self.counters.frames_kept += 1
        frame = preprocess_frame(frame_bgr, self.spec)
        return self.push_preprocessed(frame, timestamp)

    def push_preprocessed(self, frame: np.ndarray, timestamp: float = 0.0) -> VideoPrediction | None:
        """The same for a frame already through ``edge_har.frames.preprocess_frame`` (no rate sampling)."""
        index = self.counters.frames_kept
        if self.mode == "single":
            self._since += 1
            if self._since < self.stride and self.counters.predictions:
                return None
            assert self.models.whole is not None
            started = time.perf_counter()
            probs = self.models.whole.predict(frame)
            ms = 1000 * (time.perf_counter() - started)
            return self._emit(probs, index, timestamp, ms, ms, 0.0, 1)
        if self.mode == "split":
            started = time.perf_counter()
            self._buffer[self._pos] = self.models.encode(frame)
            ms = 1000 * (time.perf_counter() - started)
            self._enc_ms += ms
            self._enc_n += 1
            self.counters.encoder_ms_total += ms
        else:
            self._buffer[self._pos] = frame
        self._pos = (self._pos + 1) % self.window
        self._filled = min(self._filled + 1, self.window)
        self._since += 1
        if self._filled < self.window:
            return None
        if self.counters.predictions and self._since < self.stride:
            return None
        window = self._ordered()
        started = time.perf_counter()
        if self.mode == "split":
            probs = self.models.classify_features(window)
        else:
            assert self.models.clip is not None
            probs = self.models.clip.predict(window)
        head_ms = 1000 * (time.perf_counter() - started)
        self.counters.head_ms_total += head_ms
        enc_n = self._enc_n
        enc_mean = self._enc_ms / enc_n if enc_n else 0.0
        prediction = self._emit(probs, index, timestamp, self._enc_ms + head_ms, enc_mean, head_ms, enc_n)
        self._enc_ms, self._enc_n = 0.0, 0
        return prediction

    def _emit(self, probs: np.ndarray, index: int, timestamp: float, total_ms: float, enc_ms: float,
              head_ms: float, encoded: int) -> VideoPrediction:
        self._since = 0
        self.counters.predictions += 1
        return VideoPrediction(np.asarray(probs, np.float32), index, float(timestamp), total_ms, enc_ms, head_ms, encoded)
