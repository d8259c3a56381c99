"""The one runtime every bundle kind runs through: :class:`StreamRuntime`, its options, what it makes.

One :meth:`StreamRuntime.load` (a bundle and one :class:`RuntimeOptions`) picks the runtime by the
bundle's kind, and each modality supplies only its parts:

* how a variant's models load (``_load``) and the line that says so (``log_loaded``);
* the source-thread stage, ``windowing(...)``: chunks -> windows (:class:`WindowStage`);
* the inference-thread model call, ``classify(window)``: a window -> class probabilities.

Smoothing, sequence numbers, latency and the :class:`Prediction` fields are the base's, so the
kinds cannot drift apart and the daemon has no per-kind branches. The modalities:

* ``sensor``: :class:`edge_har.device.runtime.Runtime` (samples -> normalised windows -> one model);
* ``video`` (a CNN encoder or the BlazePose encoder per frame, a head over the last T frames):
  :class:`edge_har.device.video_runtime.VideoStreamRuntime`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, Protocol, Sequence, TypeVar, Union, cast, runtime_checkable

import numpy as np

from edge_har.core.bundle import Bundle, BundleError
from edge_har.core.interpreter import InterpreterOptions
from edge_har.core.preprocessing import Preprocessing
from edge_har.device.smoothing import Smoothed, Smoother

log = logging.getLogger(__name__)

R = TypeVar("R", bound="StreamRuntime")

# RuntimeOptions.build's keywords that set a field of the interpreter options.
INTERPRETER_KEYWORDS = tuple(f.name for f in dataclasses.fields(InterpreterOptions))


@dataclass
class Window:
    """One model-ready window and where it came from."""

    data: np.ndarray  # (window, C) float32, normalised
    end_ts: float  # Unix time of the window's last sample
    arrival: float  # perf_counter() when the chunk completing it arrived
    truth: Optional[str] = None  # ground-truth label (replay)
    segment_start: bool = False  # first window after a gap: smoothing restarts
    generation: int = 0  # which runtime's normalisation made it (an update's swap starts a new one)


@dataclass
class Prediction:
    seq: int
    window_end_ts: float
    label: str  # smoothed (or the unknown label)
    confidence: float
    probabilities: dict[str, float]  # smoothed
    raw_label: str  # this window alone
    raw_confidence: float
    inference_ms: float
    e2e_ms: float
    truth: Optional[str] = None
    arrival: float = 0.0
    raw_probabilities: Optional[np.ndarray] = None  # this window alone, unsmoothed: what event rules read

    def stamp_e2e(self) -> float:
        """Set e2e_ms to now (the hand-off); returns it."""
        self.e2e_ms = (time.perf_counter() - self.arrival) * 1000.0
        return self.e2e_ms


def build_prediction(
    seq: int,
    window: Window,
    probs: np.ndarray,
    smoother: Smoother,
    labels: Sequence[str],
    inference_ms: float,
) -> Prediction:
    """Smooth one window's class probabilities into the :class:`Prediction` every runtime publishes."""
    probs = np.clip(np.nan_to_num(probs, nan=0.0), 0.0, 1.0)  # int8 dequantization can stray past [0, 1]
    s: Smoothed = smoother.update(probs)
    return Prediction(
        seq=seq,
        window_end_ts=window.end_ts,
        label=s.label,
        confidence=float(min(1.0, max(0.0, s.confidence))),
        probabilities={label: float(p) for label, p in zip(labels, s.probabilities)},
        raw_label=s.raw_label,
        raw_confidence=s.raw_confidence,
        inference_ms=inference_ms,
        e2e_ms=(time.perf_counter() - window.arrival) * 1000.0,
        truth=window.truth,
        arrival=window.arrival,
        raw_probabilities=probs,
    )


@dataclass(frozen=True)
class RuntimeOptions:
    """How a bundle runs: its variant, the interpreter, smoothing, and each modality's own settings.

    One object, built once (:meth:`from_config` for the daemon, :meth:`build` for benchmarks and
    tests that set one or two keywords) and handed whole to the modality's loader, so no loader
    keeps its own copy of the keyword list. A modality ignores the settings of the others.
    """

    variant: Optional[str] = None  # None: the bundle's default; "auto": the fastest that passed the gate (sensor)
    interpreter: InterpreterOptions = field(default_factory=InterpreterOptions)
    smoothing: str = "mean_prob"  # "mean_prob" | "majority"
    smoothing_window: int = 5
    threshold: float = 0.0
    unknown_label: str = "unknown"
    auto: Optional[Any] = None  # sensor, variant "auto": the config's auto_variant section (None: its defaults)
    stride: Optional[int] = None  # video: kept frames between predictions (None: the bundle's)
    mode: str = "split"  # video: "split" (encoder per frame + head) or "clip" (the whole clip model)
    publish_keypoints: bool = False  # pose: each window's keypoints in the prediction's extra
    no_person_warn_s: Optional[float] = None  # pose: WARNING once nobody has been seen this long (None: never)

    @classmethod
    def build(cls, options: Union[RuntimeOptions, str, None] = None, **keywords: Any) -> RuntimeOptions:
        """``options`` (or a variant name) with ``keywords`` replacing fields; the interpreter's own
        fields (``backend``, ``num_threads``, ``delegate``, ...) may be given flat. An unknown keyword
        is a TypeError naming it."""
        if not isinstance(options, (RuntimeOptions, str, type(None))):
            raise TypeError(f"options must be RuntimeOptions or a variant name, not {type(options).__name__}")
        base = options if isinstance(options, RuntimeOptions) else cls(variant=options)
        flat = {k: keywords.pop(k) for k in INTERPRETER_KEYWORDS if k in keywords}
        if flat:
            keywords["interpreter"] = dataclasses.replace(keywords.get("interpreter", base.interpreter), **flat)
        return dataclasses.replace(base, **keywords) if keywords else base

    @classmethod
    def from_config(cls, cfg: Any) -> RuntimeOptions:
        """From a :class:`~edge_har.device.config.DeviceConfig`: its variant, interpreter, smoothing,
        ``auto_variant`` and ``video`` sections."""
        s, video = cfg.smoothing, getattr(cfg, "video", None)
        return cls(
            variant=cfg.variant,
            interpreter=cfg.interpreter.options(),
            smoothing=s.method,
            smoothing_window=s.window,
            threshold=s.threshold,
            unknown_label=s.unknown_label,
            auto=cfg.auto_variant,
            stride=getattr(video, "stride", None),
            mode=getattr(video, "mode", "split"),
            publish_keypoints=bool(getattr(video, "publish_keypoints", False)),
            no_person_warn_s=getattr(video, "no_person_warn_s", None),
        )

    def smoother(self, labels: Sequence[str]) -> Smoother:
        return Smoother(labels, self.smoothing, self.smoothing_window, self.threshold, self.unknown_label)


@runtime_checkable
class WindowStage(Protocol):
    """The source-thread stage: what ``StreamRuntime.windowing`` returns."""

    @property
    def source_rate_hz(self) -> float: ...

    def push(self, chunk: Any) -> Sequence[Window]: ...


def runtime_class(kind: str) -> type[StreamRuntime]:
    """The runtime of a bundle kind (imported on demand: a sensor device never loads the video parts)."""
    from edge_har.device.runtime import Runtime
    from edge_har.device.video_runtime import VideoStreamRuntime

    classes: dict[str, type[StreamRuntime]] = {c.kind: c for c in (Runtime, VideoStreamRuntime)}
    if kind not in classes:
        raise BundleError(f"a {kind!r} bundle: no runtime runs it (kinds: {', '.join(classes)})")
    return classes[kind]


class StreamRuntime:
    """A loaded bundle variant the daemon streams through, with its smoother (see the module doc).

    ``StreamRuntime.load`` picks the modality by the bundle's kind; a modality's own ``load``
    refuses a bundle of another kind.
    """

    kind: ClassVar[str] = ""  # the bundle kind a modality runs; "" on the base, which picks one

    def __init__(self, bundle: Bundle, variant: str, smoother: Smoother, pre: Preprocessing) -> None:
        self.bundle = bundle
        self.variant = variant
        self.labels = list(bundle.labels)
        self.smoother = smoother
        self.pre = pre  # the video runtime's is its FrameSpec's view (channels, fps as the rate)
        self._seq = 0
        self.generation = 0  # the windows it runs (see Window.generation)

    @classmethod
    def load(cls: type[R], bundle: Any, options: Union[RuntimeOptions, str, None] = None, **keywords: Any) -> R:
        """Load ``bundle`` (a path or a :class:`Bundle`) with ``options`` (a :class:`RuntimeOptions`,
        or a variant name); ``keywords`` replace single options (:meth:`RuntimeOptions.build`)."""
        opts = RuntimeOptions.build(options, **keywords)
        if not isinstance(bundle, Bundle):
            bundle = Bundle.load(bundle)
        chosen = runtime_class(bundle.kind) if not cls.kind else cls
        if bundle.kind != chosen.kind:
            raise BundleError(f"{bundle.root}: a {bundle.kind} bundle; this runtime runs {chosen.kind} bundles")
        started = time.perf_counter()
        runtime = chosen._load(bundle, opts)
        runtime.log_loaded((time.perf_counter() - started) * 1000)
        return cast(R, runtime)

    @classmethod
    def from_config(cls: type[R], cfg: Any) -> R:
        """From a :class:`~edge_har.device.config.DeviceConfig`."""
        return cls.load(cfg.bundle, RuntimeOptions.from_config(cfg))

    # ------------------------------------------------------------ a modality's parts

    @classmethod
    def _load(cls, bundle: Bundle, options: RuntimeOptions) -> StreamRuntime:
        """The modality's models of ``options.variant``, loaded and checked against the bundle."""
        raise NotImplementedError

    def log_loaded(self, ms: float) -> None:
        """One INFO line: what was loaded, with what, in how long."""

    def windowing(
        self,
        source_rate_hz: Optional[float] = None,
        scale: Optional[Sequence[float]] = None,
        offset: Optional[Sequence[float]] = None,
    ) -> WindowStage:
        """The source-thread stage for a source at ``source_rate_hz`` (None: the model's rate)."""
        raise NotImplementedError

    def classify(self, window: Window) -> np.ndarray:
        """One window's class probabilities (the inference thread's model call)."""
        raise NotImplementedError

    def counters(self) -> dict[str, Any]:
        """Runtime-specific counters for the stats message; empty when there are none."""
        return {}

    # ------------------------------------------------------------ shared by every modality

    @property
    def model_id(self) -> str:
        return self.bundle.model_id

    @property
    def next_seq(self) -> int:
        """The seq the next prediction gets."""
        return self._seq

    def take_over_seq(self, other: StreamRuntime) -> None:
        """Go on from ``other``'s seq (a swap to this runtime between two windows: seq never restarts)."""
        self._seq = other.next_seq

    def predict(self, window: Window) -> Prediction:
        """One window -> its smoothed :class:`Prediction` (``inference_ms``: the model call)."""
        if window.segment_start:
            self.smoother.reset()
        started = time.perf_counter()
        probs = self.classify(window)
        inference_ms = (time.perf_counter() - started) * 1000.0
        seq = self._seq
        self._seq += 1
        return build_prediction(seq, window, probs, self.smoother, self.labels, inference_ms)


def load_runtime(cfg: Any) -> StreamRuntime:
    """The runtime for ``cfg.bundle`` (a :class:`~edge_har.device.config.DeviceConfig`), by the bundle's kind.

    Either way the interpreter section reaches every model whole.
    """
    return StreamRuntime.from_config(cfg)
