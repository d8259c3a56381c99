"""The sensor parts of the runtime: sample chunks in, :class:`Prediction` objects out.

Nothing here knows about MQTT or threads, so the daemon, the benchmarks and the tests drive the
same code. Loading, smoothing and the prediction fields are :class:`~edge_har.device.runtime_api.StreamRuntime`'s;
the sensor supplies its two stages:

* :class:`Windowing` (cheap numpy, runs in the daemon's source thread) turns chunks into
  normalised model windows with :class:`~edge_har.core.preprocessing.StreamPreprocessor`, the code
  path training used, resampling when the source's rate differs from the model's;
* :meth:`Runtime.classify` (the interpreter, the inference thread) runs one window.

Latency is measured per window: ``inference_ms`` around the interpreter call only, and
``e2e_ms`` from the arrival of the chunk holding the window's last sample to the prediction
being ready (the daemon re-stamps it at the hand-off to MQTT).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import ClassVar, Optional, Sequence

import numpy as np

from edge_har.core.bundle import Bundle
from edge_har.core.interpreter import TFLiteModel
from edge_har.core.preprocessing import Preprocessing, StreamPreprocessor
from edge_har.core.self_test import SelfTestResult, run_self_test
from edge_har.device.runtime_api import Prediction, RuntimeOptions, StreamRuntime, Window
from edge_har.device.smoothing import Smoother
from edge_har.device.sources.base import Chunk
from edge_har.device.variant_choice import AUTO, DEFAULT_BUDGET_S, VariantChoice, choose_variant

log = logging.getLogger(__name__)


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
        self.generation = 0
        self._next: Optional[tuple[Preprocessing, int]] = None

    def switch(self, pre: Preprocessing, generation: int) -> None:
        """From the next chunk on, normalise with ``pre``'s mean and std and tag windows ``generation``.

        Called from another thread (an update); the source thread applies it at the start of its next
        :meth:`push`, so every window is made whole with one normalisation. Only the normalisation may
        change: the stream (rate, window, stride, channels, scaling) is the running one's.
        """
        self._next = (pre, generation)

    @property
    def source_rate_hz(self) -> float:
        return self.stream.source_rate_hz

    def reset(self) -> None:
        self.stream.reset()
        self._emitted = 0
        self._pending_segment = True

    def push(self, chunk: Chunk) -> list[Window]:
        switch, self._next = self._next, None
        if switch is not None:
            pre, self.generation = switch
            self.stream.pre = replace(self.stream.pre, mean=pre.mean, std=pre.std)
            self.pre = self.stream.pre
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
            out.append(Window(data, end_ts, chunk.arrival, chunk.label, self._pending_segment, self.generation))
            self._pending_segment = False
        return out


class Runtime(StreamRuntime):
    """A loaded sensor bundle variant ready to predict windows, with its smoother."""

    kind: ClassVar[str] = "sensor"

    def __init__(self, bundle: Bundle, variant: str, model: TFLiteModel, smoother: Smoother) -> None:
        super().__init__(bundle, variant, smoother, bundle.preprocessing)
        self.model = model
        # Shapes and label count checked once here: a mismatch would otherwise fail every window
        # (and exit 1, which systemd restarts) instead of stopping the start with exit 78.
        bundle.check_model(model, variant, expect_input=(1, self.pre.window, self.pre.n_channels))
        # What `variant: auto` measured (or read from its cache), for the log and the first
        # stats message; None for a fixed variant.
        self.variant_choice: Optional[VariantChoice] = None
        self.self_test: Optional[SelfTestResult] = None  # what the load's self-test found (None: the bundle has none)

    @classmethod
    def _load(cls, bundle: Bundle, options: RuntimeOptions) -> Runtime:
        """``variant="auto"`` times the variants that passed the accuracy gate and runs the
        fastest (:mod:`edge_har.device.variant_choice`); ``options.auto`` is the config's
        ``auto_variant`` section (budget, cache), its defaults when None."""
        choice = None
        if options.variant == AUTO:
            auto = options.auto
            choice, model = choose_variant(
                bundle,
                options.interpreter,
                budget_s=getattr(auto, "budget_s", DEFAULT_BUDGET_S),
                cache_dir=getattr(auto, "cache_dir", None),
                use_cache=getattr(auto, "cache", True),
            )
            v = bundle.variant(choice.variant)
        else:
            v = bundle.variant(options.variant)
            model = bundle.load_model(v.name, options=options.interpreter)
        runtime = cls(bundle, v.name, model, options.smoother(bundle.labels))
        runtime.variant_choice = choice
        # The workstation's outputs on the bundle's stored windows, reproduced before anything is published:
        # a runtime that computes this model otherwise is refused here (exit 78), not trusted all day.
        runtime.self_test = run_self_test(bundle.root, bundle.self_test, v.name, model.predict)
        return runtime

    def log_loaded(self, ms: float) -> None:
        v, model = self.bundle.variant(self.variant), self.model
        t = self.self_test
        if t is not None:
            log.info(
                "self-test: %d stored windows reproduced within %.2g of the workstation's (tolerance %g)",
                t.windows,
                t.max_abs_diff,
                t.tolerance,
            )
        log.info(
            "model %s variant %s (%s, %.1f KiB) loaded with %s %s in %.0f ms; input %s, %d labels; "
            + ("LSTM state reset per window" if model.stateful else "stateless: no state reset"),
            self.bundle.model_id,
            v.name,
            v.quantization,
            v.size_bytes / 1024,
            model.backend.name,
            model.backend.version,
            ms,
            list(model.input.shape),
            len(self.labels),
        )

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

    def classify(self, window: Window) -> np.ndarray:
        return self.model.predict(window.data)

    def windows(
        self,
        samples: np.ndarray,
        source_rate_hz: Optional[float] = None,
        label: Optional[str] = None,
        scale: Optional[Sequence[float]] = None,
        offset: Optional[Sequence[float]] = None,
    ) -> list[Window]:
        """A whole recording cut into the normalised windows :meth:`classify` is fed: one chunk, one segment.

        Public so that a caller that looks inside a prediction (an explanation) sees the very input
        the interpreter got, from the same windowing code.
        """
        now = time.perf_counter()
        windowing = self.windowing(source_rate_hz, scale, offset)
        chunk = Chunk(np.asarray(samples, np.float32), now, time.time(), label=label, segment_start=True)
        return windowing.push(chunk)

    def run_samples(
        self, samples: np.ndarray, source_rate_hz: Optional[float] = None, label: Optional[str] = None
    ) -> list[Prediction]:
        """A whole recording through the streaming path (tests, quick checks): one chunk, one segment."""
        return [self.predict(w) for w in self.windows(samples, source_rate_hz, label)]
