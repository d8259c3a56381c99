"""Sensor runtime: bundle + interpreter + the shared streaming preprocessing + smoothing.

Raw sample chunks go in, :class:`Prediction` objects come out; nothing here knows about MQTT
or threads, so the daemon, the benchmarks and the tests drive the same code. The work is split
in two on purpose:

* :class:`Windowing` (cheap numpy, runs in the daemon's source thread) turns chunks into
  normalised model windows with :class:`~edge_har.core.preprocessing.StreamPreprocessor`, the code
  path training used, resampling when the source's rate differs from the model's;
* :meth:`Runtime.predict` (the interpreter, the inference thread) runs one window and smooths.

Latency is measured per window: ``inference_ms`` around the interpreter call only, and
``e2e_ms`` from the arrival of the chunk holding the window's last sample to the prediction
being ready (the daemon re-stamps it at the hand-off to MQTT).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from edge_har.core.bundle import Bundle, BundleError
from edge_har.core.interpreter import InterpreterOptions, TFLiteModel
from edge_har.core.preprocessing import Preprocessing, StreamPreprocessor
from edge_har.device.smoothing import Smoothed, Smoother
from edge_har.device.sources.base import Chunk
from edge_har.device.variant_choice import AUTO, DEFAULT_BUDGET_S, VariantChoice, choose_variant

log = logging.getLogger(__name__)


@dataclass
class Window:
    """One model-ready window and where it came from."""

    data: np.ndarray  # (window, C) float32, normalised
    end_ts: float  # Unix time of the window's last sample
    arrival: float  # perf_counter() when the chunk completing it arrived
    truth: Optional[str] = None  # ground-truth label (replay)
    segment_start: bool = False  # first window after a gap: smoothing restarts


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
    """Smooth one window's class probabilities into the :class:`Prediction` both runtimes publish.

    One function for the sensor and the video runtime, so the published fields (label,
    confidence, probabilities, raw label, latency) cannot drift apart between them.
    """
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
    )


class Windowing:
    """Chunks -> windows through one :class:`StreamPreprocessor`, restarting at segment starts."""

    def __init__(
        self,
        pre: Preprocessing,
        source_rate_hz: Optional[float] = None,
        scale: Optional[Sequence[float]] = None,
        offset: Optional[Sequence[float]] = None,
    ) -> None:
        self.stream = StreamPreprocessor(pre, source_rate_hz=source_rate_hz, scale=scale, offset=offset)
        self.pre = self.stream.pre
        self._emitted = 0  # windows since the last reset: the next one ends at window + emitted * stride
        self._pending_segment = True

    @property
    def source_rate_hz(self) -> float:
        return self.stream.source_rate_hz

    def reset(self) -> None:
        self.stream.reset()
        self._emitted = 0
        self._pending_segment = True

    def push(self, chunk: Chunk) -> list[Window]:
        if chunk.segment_start and self.stream.windower.samples_seen:
            self.reset()
        if not len(chunk.samples):
            return []
        arrays = self.stream.push(chunk.samples)
        if not arrays:
            return []
        seen = self.stream.windower.samples_seen  # at the model's rate
        rate = self.pre.sample_rate_hz
        out = []
        for data in arrays:
            end_index = self.pre.window + self._emitted * self.pre.stride
            self._emitted += 1
            end_ts = chunk.ts - (seen - end_index) / rate
            out.append(Window(data, end_ts, chunk.arrival, chunk.label, self._pending_segment))
            self._pending_segment = False
        return out


class Runtime:
    """A loaded bundle variant ready to predict windows, with its smoother."""

    def __init__(self, bundle: Bundle, variant: str, model: TFLiteModel, smoother: Smoother) -> None:
        self.bundle = bundle
        self.variant = variant
        self.model = model
        self.smoother = smoother
        self.labels = list(bundle.labels)
        self.pre = bundle.preprocessing
        # Shapes and label count checked once here: a mismatch would otherwise fail every window
        # (and exit 1, which systemd restarts) instead of stopping the start with exit 78.
        bundle.check_model(model, variant, expect_input=(1, self.pre.window, self.pre.n_channels))
        self._seq = 0
        # What `variant: auto` measured (or read from its cache), for the log and the first
        # stats message; None for a fixed variant.
        self.variant_choice: Optional[VariantChoice] = None

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
        auto: Optional[Any] = None,
    ) -> Runtime:
        """Load a sensor bundle. ``options`` (what ``from_config`` passes) replaces the
        interpreter keywords, which stay for benchmarks and tests that set one or two.

        ``variant="auto"`` times the variants that passed the accuracy gate and runs the
        fastest (:mod:`edge_har.device.variant_choice`); ``auto`` is the config's
        ``auto_variant`` section (budget, cache), its defaults when None.
        """
        if options is None:
            options = InterpreterOptions(backend, num_threads, delegate, delegate_options or {}, verify_sha256)
        bundle = Bundle.load(bundle_path)
        if bundle.kind != "sensor":
            raise BundleError(f"{bundle.root}: a {bundle.kind} bundle; this runtime runs sensor bundles")
        started = time.perf_counter()
        choice = None
        if variant == AUTO:
            choice, model = choose_variant(
                bundle,
                options,
                budget_s=getattr(auto, "budget_s", DEFAULT_BUDGET_S),
                cache_dir=getattr(auto, "cache_dir", None),
                use_cache=getattr(auto, "cache", True),
            )
            v = bundle.variant(choice.variant)
        else:
            v = bundle.variant(variant)
            model = bundle.load_model(v.name, options=options)
        smoother = Smoother(bundle.labels, smoothing, smoothing_window, threshold, unknown_label)
        runtime = cls(bundle, v.name, model, smoother)
        runtime.variant_choice = choice
        log.info(
            "model %s variant %s (%s, %.1f KiB) loaded with %s %s in %.0f ms; input %s, %d labels; "
            + ("LSTM state reset per window" if model.stateful else "stateless: no state reset"),
            bundle.model_id,
            v.name,
            v.quantization,
            v.size_bytes / 1024,
            model.backend.name,
            model.backend.version,
            (time.perf_counter() - started) * 1000,
            list(model.input.shape),
            len(bundle.labels),
        )
        return runtime

    @classmethod
    def from_config(cls, cfg: Any) -> Runtime:
        """From a :class:`~edge_har.device.config.DeviceConfig`."""
        scfg = cfg.smoothing
        return cls.load(
            cfg.bundle,
            cfg.variant,
            options=cfg.interpreter.options(),
            smoothing=scfg.method,
            smoothing_window=scfg.window,
            threshold=scfg.threshold,
            unknown_label=scfg.unknown_label,
            auto=cfg.auto_variant,
        )

    @property
    def model_id(self) -> str:
        return self.bundle.model_id

    def windowing(
        self,
        source_rate_hz: Optional[float] = None,
        scale: Optional[Sequence[float]] = None,
        offset: Optional[Sequence[float]] = None,
    ) -> Windowing:
        """A :class:`Windowing` for a source at ``source_rate_hz`` (None: the model's rate)."""
        w = Windowing(self.pre, source_rate_hz, scale, offset)
        if w.source_rate_hz != self.pre.sample_rate_hz:
            log.info("resampling the source's %g Hz to the model's %g Hz", w.source_rate_hz, self.pre.sample_rate_hz)
        return w

    def counters(self) -> dict[str, Any]:
        """Runtime-specific stats counters; a sensor runtime has none (the video runtime counts frames)."""
        return {}

    def predict(self, window: Window) -> Prediction:
        if window.segment_start:
            self.smoother.reset()
        started = time.perf_counter()
        probs = self.model.predict(window.data)
        inference_ms = (time.perf_counter() - started) * 1000.0
        seq = self._seq
        self._seq += 1
        return build_prediction(seq, window, probs, self.smoother, self.labels, inference_ms)

    def run_samples(
        self, samples: np.ndarray, source_rate_hz: Optional[float] = None, label: Optional[str] = None
    ) -> list[Prediction]:
        """A whole recording through the streaming path (tests, quick checks): one chunk, one segment."""
        now = time.perf_counter()
        windowing = self.windowing(source_rate_hz)
        chunk = Chunk(np.asarray(samples, np.float32), now, time.time(), label=label, segment_start=True)
        return [self.predict(w) for w in windowing.push(chunk)]
