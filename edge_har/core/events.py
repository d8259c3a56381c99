"""Events from a stream of window probabilities: a fall is a moment, not a state.

A class that is an *event* (a fall, a stumble) fires when its probability is at or above
``threshold`` for ``k`` consecutive windows; after it fires, the same rule stays quiet for
``refractory_s`` seconds of stream time, so one fall is one event, not one per window (a state
that lasts past the refractory period fires again as it ends: someone still on the floor). This
module is the one implementation of that rule: the daemon runs :class:`EventDetector` window by
window, and ``evaluate`` and the benchmarks run the same detector over recorded streams
(:func:`detect_events`), so an offline figure is what the device does.

Each event carries the time of the impact when the caller gives one per window (the moment of
peak acceleration magnitude inside the window, :func:`impact_time`), else the end of the first
window of the run. numpy only: this runs on the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from edge_har.core.errors import EdgeHarError

__all__ = [
    "Event",
    "EventDetector",
    "EventRule",
    "EventRuleError",
    "detect_events",
    "impact_time",
    "rules_from_json",
]


K_MAX = 1000  # windows in a row a rule may ask for
REFRACTORY_MAX_S = 86_400.0  # a day


class EventRuleError(EdgeHarError, ValueError):
    """An event rule that cannot work; the message names the rule and the field."""


@dataclass(frozen=True)
class EventRule:
    """``label`` fires when p(label) >= ``threshold`` for ``k`` consecutive windows, then rests ``refractory_s``."""

    label: str
    threshold: float = 0.5
    k: int = 1
    refractory_s: float = 30.0

    def __post_init__(self) -> None:
        where = f"event rule {self.label!r}"
        if not isinstance(self.label, str) or not self.label:
            raise EventRuleError("event rule: label must be a non-empty class name")
        if not isinstance(self.threshold, (int, float)) or not 0.0 < float(self.threshold) <= 1.0:
            raise EventRuleError(f"{where}: threshold {self.threshold!r} must be in (0, 1]")
        if not isinstance(self.k, int) or isinstance(self.k, bool) or not 1 <= self.k <= K_MAX:
            raise EventRuleError(f"{where}: k {self.k!r} must be a whole number of windows, 1-{K_MAX}")
        if (
            not isinstance(self.refractory_s, (int, float))
            or not math.isfinite(self.refractory_s)
            or not 0 <= self.refractory_s <= REFRACTORY_MAX_S
        ):
            raise EventRuleError(f"{where}: refractory_s {self.refractory_s!r} must be 0-{REFRACTORY_MAX_S:g} seconds")

    def to_json(self) -> dict[str, Any]:
        return {"threshold": float(self.threshold), "k": int(self.k), "refractory_s": float(self.refractory_s)}


def rules_from_json(doc: Mapping[str, Any], labels: Sequence[str], where: str = "events") -> list[EventRule]:
    """``{"fall": {"threshold": 0.8, "k": 2, "refractory_s": 30}, ...}`` as rules; each label must be a class."""
    if not isinstance(doc, Mapping):
        raise EventRuleError(f"{where}: expected a mapping of class name to rule, got {type(doc).__name__}")
    rules: list[EventRule] = []
    for label, spec in doc.items():
        if label not in labels:
            raise EventRuleError(f"{where}.{label}: not one of the model's classes ({', '.join(labels)})")
        if not isinstance(spec, Mapping):
            raise EventRuleError(f"{where}.{label}: expected threshold, k and refractory_s, got {spec!r}")
        unknown = sorted(set(spec) - {"threshold", "k", "refractory_s", "curve", "chosen_on"})
        if unknown:
            raise EventRuleError(f"{where}.{label}: unknown key(s) {', '.join(map(str, unknown))}")
        try:
            rules.append(
                EventRule(
                    str(label),
                    spec.get("threshold", 0.5),
                    spec.get("k", 1),
                    spec.get("refractory_s", 30.0),
                )
            )
        except EventRuleError as exc:
            raise EventRuleError(f"{where}.{label}: {str(exc).split(': ', 1)[-1]}") from None
    return rules


@dataclass
class Event:
    """One fired event: what, when the impact was, when it was detected, how sure, which windows."""

    type: str
    impact_ts: float  # unix (or stream) seconds of the impact
    detected_ts: float  # the end of the window that completed the run
    confidence: float  # the highest p(type) over the run
    first_seq: int
    last_seq: int

    @property
    def windows(self) -> int:
        return self.last_seq - self.first_seq + 1

    @property
    def delay_s(self) -> float:
        """From the impact to the detection."""
        return self.detected_ts - self.impact_ts

    def to_json(self) -> dict[str, Any]:
        return {
            "event_type": self.type,
            "impact_ts": round(float(self.impact_ts), 3),
            "detected_ts": round(float(self.detected_ts), 3),
            "confidence": round(float(self.confidence), 4),
            "first_seq": int(self.first_seq),
            "last_seq": int(self.last_seq),
            "windows": self.windows,
        }


@dataclass
class _Run:
    seqs: list[int] = field(default_factory=list)
    ps: list[float] = field(default_factory=list)
    impacts: list[tuple[float, float]] = field(default_factory=list)  # (peak magnitude, time)
    quiet_until: float = -math.inf


class EventDetector:
    """Apply ``rules`` to windows as they come (:meth:`update`); :meth:`reset` at a gap in the stream."""

    def __init__(self, rules: Sequence[EventRule], labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.rules = list(rules)
        self._index: list[int] = []
        for rule in self.rules:
            if rule.label not in self.labels:
                raise EventRuleError(f"event rule {rule.label!r}: not one of the model's classes ({', '.join(labels)})")
            self._index.append(self.labels.index(rule.label))
        self._runs = [_Run() for _ in self.rules]

    def reset(self) -> None:
        """Forget the runs in progress (a gap: windows on either side are not consecutive); refractory stays."""
        for run in self._runs:
            run.seqs.clear()
            run.ps.clear()
            run.impacts.clear()

    def update(
        self,
        probabilities: Sequence[float] | np.ndarray,
        ts: float,
        seq: int,
        impact: tuple[float, float] | None = None,
    ) -> list[Event]:
        """One window (its probabilities, the time its last sample arrived, its sequence number).

        ``impact`` is (peak magnitude, its time) inside the window; the event's impact is the run's
        strongest. Returns the events this window fires (usually none).
        """
        fired: list[Event] = []
        for rule, idx, run in zip(self.rules, self._index, self._runs):
            p = float(probabilities[idx])
            if not p >= rule.threshold:  # NaN never fires
                run.seqs.clear()
                run.ps.clear()
                run.impacts.clear()
                continue
            run.seqs.append(int(seq))
            run.ps.append(p)
            run.impacts.append(impact if impact is not None else (-math.inf, float(ts)))
            if len(run.seqs) > rule.k:
                del run.seqs[0], run.ps[0], run.impacts[0]
            if len(run.seqs) < rule.k or ts < run.quiet_until:
                continue
            peak = max(run.impacts, key=lambda pair: pair[0])
            impact_ts = peak[1] if peak[0] > -math.inf else run.impacts[0][1]
            fired.append(Event(rule.label, impact_ts, float(ts), max(run.ps), run.seqs[0], run.seqs[-1]))
            run.quiet_until = float(ts) + rule.refractory_s
            run.seqs.clear()
            run.ps.clear()
            run.impacts.clear()
        return fired


def detect_events(
    probabilities: np.ndarray,
    ts: Sequence[float] | np.ndarray,
    rules: Sequence[EventRule],
    labels: Sequence[str],
    *,
    impacts: Iterable[tuple[float, float] | None] | None = None,
    seqs: Sequence[int] | None = None,
) -> list[Event]:
    """Every event of one stream (windows in time order), by the daemon's own detector."""
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(labels) or len(probs) != len(ts):
        raise EventRuleError(
            f"probabilities of shape {probs.shape} do not fit {len(ts)} windows of {len(labels)} classes"
        )
    detector = EventDetector(rules, labels)
    impact_list = list(impacts) if impacts is not None else [None] * len(probs)
    events: list[Event] = []
    for i, (p, t) in enumerate(zip(probs, ts)):
        events.extend(detector.update(p, float(t), int(seqs[i]) if seqs is not None else i, impact_list[i]))
    return events


def impact_time(t: np.ndarray, samples: np.ndarray, channels: Sequence[str]) -> tuple[float, float]:
    """(peak magnitude, its time) of the acceleration in one window.

    The accelerometer is the channels whose names start with ``acc`` (or ``a`` then an axis
    letter), else the first three: raw or physical units alike, only the moment of the peak
    matters.
    """
    names = [c.lower() for c in channels]
    acc = [i for i, n in enumerate(names) if n.startswith("acc") or (len(n) == 2 and n[0] == "a" and n[1] in "xyz")]
    cols = acc[:3] if acc else list(range(min(3, samples.shape[1])))
    x = np.asarray(samples, dtype=np.float64)[:, cols]
    magnitude = np.sqrt((x * x).sum(axis=1))
    i = int(np.nanargmax(magnitude)) if np.isfinite(magnitude).any() else len(t) - 1
    return float(magnitude[i]) if np.isfinite(magnitude[i]) else -math.inf, float(t[i])
