"""The daemon's events: the shared rule over each window's own probabilities, the impact from its samples.

The rules are the device config's ``events:`` section when it has one, else the bundle's own
(chosen by ``convert`` on its validation split). Each window's unsmoothed probabilities go
through :class:`~edge_har.core.events.EventDetector`, the one implementation ``evaluate`` and the
benchmarks run too; the impact time is the window's peak acceleration magnitude, read from the
window's samples with the bundle's normalisation undone. A gap in the stream (a new segment)
breaks a run in progress.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from edge_har.core.events import Event, EventDetector, EventRule, impact_time, rules_from_json
from edge_har.device.runtime_api import Prediction, Window

__all__ = ["EventStage", "event_rules"]

log = logging.getLogger(__name__)


def event_rules(
    config_events: Optional[Mapping[str, Any]], bundle_events: Any, labels: Sequence[str]
) -> list[EventRule]:
    """The rules in force: the config's section (pydantic models or plain mappings), else the bundle's.

    Raises :class:`~edge_har.core.events.EventRuleError` naming ``events.<class>`` for a class the
    model lacks or a bad field.
    """
    if config_events:
        doc = {k: (v.model_dump() if hasattr(v, "model_dump") else v) for k, v in config_events.items()}
        return rules_from_json(doc, labels, "events")
    if bundle_events:
        return rules_from_json(bundle_events, labels, "bundle.json events")
    return []


class EventStage:
    """Feed it every (window, prediction) in order; it returns the events that fire."""

    def __init__(self, rules: Sequence[EventRule], labels: Sequence[str], pre: Any = None) -> None:
        self.detector = EventDetector(rules, labels)
        self.counts: Counter[str] = Counter()
        self.last: dict[str, float] = {}
        self._pre = pre
        self._std: Optional[np.ndarray] = None
        self._mean: Optional[np.ndarray] = None
        if pre is not None and getattr(pre, "std", None) is not None:
            self._std = np.asarray(pre.std, dtype=np.float32)
            self._mean = np.asarray(pre.mean if pre.mean is not None else np.zeros_like(self._std), dtype=np.float32)

    def _impact(self, window: Window) -> Optional[tuple[float, float]]:
        pre = self._pre
        data = np.asarray(window.data)
        if pre is None or data.ndim != 2 or data.shape[1] != len(pre.channels):
            return None  # a frame window (camera): no acceleration to look at
        x = data * self._std + self._mean if self._std is not None and self._mean is not None else data
        t = window.end_ts - (len(x) - 1 - np.arange(len(x))) / float(pre.sample_rate_hz)
        return impact_time(t, x, pre.channels)

    def on_window(self, window: Window, prediction: Prediction) -> list[Event]:
        if window.segment_start:
            self.detector.reset()
        probs = prediction.raw_probabilities
        if probs is None:
            probs = np.asarray(list(prediction.probabilities.values()), dtype=np.float64)
        events = self.detector.update(probs, prediction.window_end_ts, prediction.seq, self._impact(window))
        for event in events:
            self.counts[event.type] += 1
            self.last[event.type] = event.detected_ts
            log.info(
                "event %s: confidence %.2f over %d window(s), impact at %.3f, detected %.2f s later",
                event.type,
                event.confidence,
                event.windows,
                event.impact_ts,
                event.delay_s,
            )
        return events

    def counters(self) -> dict[str, Any]:
        """For the stats message: events fired per type and the time of each type's last one."""
        return {"fired": dict(self.counts), "last_ts": {k: round(v, 3) for k, v in self.last.items()}}
