"""Figures that mean something for events: recordings detected, false alarms per hour, delay from the impact.

A window accuracy says little about a fall detector: what matters is whether each fall raised
one alarm soon after the impact, and how often daily life raised one. Each recording is a stream
of window probabilities (in time order) run through the device's own detector
(:func:`~edge_har.core.events.detect_events`); per event class:

- **sensitivity**: the share of the recordings holding an event in which an event of that class
  fired within ``[impact - before_s, impact + after_s]``;
- **false alarms per hour**: events of that class in recordings without one, plus events in event
  recordings outside that span, per hour of the non-event recordings' duration;
- **delay**: from the impact to the detection of the first matching event (median, 90th percentile);
- the names of the missed and of the falsely flagged recordings.

:func:`sweep` runs it over thresholds and run lengths; :func:`choose` picks the rule with the
highest sensitivity whose false alarms stay within a target. numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from edge_har.core.events import Event, EventRule, EventRuleError, detect_events

__all__ = ["EventFigures", "Stream", "choose", "event_figures", "sweep"]


@dataclass
class Stream:
    """One recording's windows: probabilities (n, classes), each window's end time, and its truth."""

    name: str
    probabilities: np.ndarray
    ts: np.ndarray
    event: str | None = None  # the event class the recording holds (None: daily activity only)
    impact_ts: float | None = None  # when it happened (required with ``event``)
    duration_s: float | None = None  # the recording's length (default: its windows' span plus one stride)
    impacts: Sequence[tuple[float, float] | None] | None = None  # per window (peak, time), as the device has

    def seconds(self) -> float:
        if self.duration_s is not None:
            return float(self.duration_s)
        if len(self.ts) < 2:
            return 0.0
        stride = float(np.median(np.diff(self.ts)))
        return float(self.ts[-1] - self.ts[0]) + stride


@dataclass
class EventFigures:
    """The figures of one event class under one rule."""

    rule: EventRule
    event_recordings: int
    detected: int
    other_hours: float
    false_alarms: int
    delays_s: list[float]
    missed: list[str]
    falsely_flagged: list[str]

    @property
    def sensitivity(self) -> float:
        return self.detected / self.event_recordings if self.event_recordings else math.nan

    @property
    def false_alarms_per_hour(self) -> float:
        return self.false_alarms / self.other_hours if self.other_hours > 0 else math.nan

    def delay(self, q: float) -> float:
        return float(np.percentile(self.delays_s, q)) if self.delays_s else math.nan

    def to_json(self) -> dict[str, Any]:
        def num(x: float, digits: int = 4) -> float | None:
            return None if not math.isfinite(x) else round(float(x), digits)

        return {
            "event": self.rule.label,
            "rule": self.rule.to_json(),
            "event_recordings": self.event_recordings,
            "detected": self.detected,
            "sensitivity": num(self.sensitivity),
            "false_alarms": self.false_alarms,
            "other_hours": num(self.other_hours),
            "false_alarms_per_hour": num(self.false_alarms_per_hour),
            "delay_s": {"median": num(self.delay(50), 3), "p90": num(self.delay(90), 3), "n": len(self.delays_s)},
            "missed": list(self.missed),
            "falsely_flagged": list(self.falsely_flagged),
        }


def event_figures(
    streams: Iterable[Stream],
    rule: EventRule,
    labels: Sequence[str],
    *,
    before_s: float = 2.0,
    after_s: float = 10.0,
) -> EventFigures:
    """The figures of ``rule``'s class over ``streams`` (see the module docstring)."""
    if not before_s >= 0 or not after_s >= 0:
        raise EventRuleError(f"the match span must be >= 0 s around the impact, got -{before_s} / +{after_s}")
    n_event = detected = false_alarms = 0
    other_s = 0.0
    delays: list[float] = []
    missed: list[str] = []
    flagged: list[str] = []
    for s in streams:
        if s.event is not None and s.event != rule.label:
            continue  # another event class's recording: neither a hit nor daily life for this one
        events: list[Event] = [
            e for e in detect_events(s.probabilities, s.ts, [rule], labels, impacts=s.impacts) if e.type == rule.label
        ]
        if s.event is None:
            other_s += s.seconds()
            false_alarms += len(events)
            if events:
                flagged.append(s.name)
            continue
        if s.impact_ts is None or not math.isfinite(s.impact_ts):
            raise EventRuleError(f"{s.name}: an event recording needs the time of its impact")
        n_event += 1
        hits = [e for e in events if s.impact_ts - before_s <= e.detected_ts <= s.impact_ts + after_s]
        outside = len(events) - len(hits)
        false_alarms += outside
        if outside:
            flagged.append(s.name)
        if hits:
            detected += 1
            delays.append(hits[0].detected_ts - s.impact_ts)
        else:
            missed.append(s.name)
    return EventFigures(rule, n_event, detected, other_s / 3600.0, false_alarms, delays, missed, flagged)


def sweep(
    streams: Sequence[Stream],
    label: str,
    labels: Sequence[str],
    *,
    thresholds: Sequence[float] = tuple(np.round(np.arange(0.05, 1.0, 0.05), 2)) + (0.97, 0.99, 0.995),
    ks: Sequence[int] = (1, 2, 3, 4),
    refractory_s: float = 30.0,
    before_s: float = 2.0,
    after_s: float = 10.0,
) -> list[EventFigures]:
    """The figures for every (threshold, k): the curve of false alarms per hour against sensitivity."""
    return [
        event_figures(
            streams, EventRule(label, float(th), int(k), refractory_s), labels, before_s=before_s, after_s=after_s
        )
        for k in ks
        for th in thresholds
    ]


def choose(curve: Sequence[EventFigures], max_false_alarms_per_hour: float) -> EventFigures:
    """The rule with the highest sensitivity whose false alarms per hour stay within the target; among equals
    the fewest false alarms, then the most conservative (the highest threshold, then the largest k): a
    validation split rarely holds enough hours of daily life to tell the rules apart, and the strictest
    rule that still catches as many events keeps a margin against the false alarms it could not see.
    When none stays within the target, the one with the fewest false alarms (then the highest sensitivity)."""
    if not curve:
        raise EventRuleError("no rule to choose from (an empty sweep)")

    def fa(f: EventFigures) -> float:
        x = f.false_alarms_per_hour
        return 0.0 if math.isnan(x) else x

    def sens(f: EventFigures) -> float:
        x = f.sensitivity
        return 0.0 if math.isnan(x) else x

    within = [f for f in curve if fa(f) <= max_false_alarms_per_hour]
    if within:
        return min(within, key=lambda f: (-sens(f), fa(f), -f.rule.threshold, -f.rule.k))
    return min(curve, key=lambda f: (fa(f), -sens(f), f.rule.k, f.rule.threshold))
