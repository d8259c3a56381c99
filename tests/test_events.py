"""The event rule on synthetic probability streams: k consecutive windows, refractory, the end of a stream."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_har.core.event_metrics import Stream, choose, event_figures, sweep
from edge_har.core.events import (
    EventDetector,
    EventRule,
    EventRuleError,
    detect_events,
    impact_time,
    rules_from_json,
)

LABELS = ["adl", "fall"]


def stream(p_fall: list[float]) -> np.ndarray:
    p = np.asarray(p_fall, dtype=np.float64)
    return np.stack([1 - p, p], axis=1)


def times(n: int, stride: float = 0.5) -> np.ndarray:
    return 100.0 + stride * np.arange(n)


def test_k_consecutive_windows_fire_once_at_the_kth():
    p = [0.1, 0.9, 0.2, 0.9, 0.95, 0.9, 0.9, 0.1]
    (event,) = detect_events(stream(p), times(len(p)), [EventRule("fall", 0.8, k=2, refractory_s=60)], LABELS)
    assert (event.first_seq, event.last_seq, event.windows) == (3, 4, 2)
    assert event.detected_ts == 100.0 + 0.5 * 4 and event.confidence == pytest.approx(0.95)
    # one window above the threshold is not enough for k=2; the run resets on a window below it
    assert detect_events(stream([0.9, 0.1, 0.9, 0.1]), times(4), [EventRule("fall", 0.8, k=2)], LABELS) == []


def test_refractory_silences_the_same_fall_then_lets_the_next_one_through():
    p = [0.9] * 40  # 20 s of "fall" at a 0.5 s stride
    rule = EventRule("fall", 0.8, k=2, refractory_s=5.0)
    events = detect_events(stream(p), times(40), [rule], LABELS)
    # the first at the 2nd window; a state that lasts past the refractory period fires again at its end
    assert [e.last_seq for e in events] == [1, 11, 21, 31]
    assert all(b.detected_ts - a.detected_ts >= 5.0 for a, b in zip(events, events[1:]))


def test_a_fall_at_the_end_of_a_replay():
    rule = EventRule("fall", 0.8, k=3)
    # the run completes on the very last window: it fires
    (event,) = detect_events(stream([0.1, 0.1, 0.9, 0.9, 0.9]), times(5), [rule], LABELS)
    assert event.last_seq == 4
    # the stream ends two windows into the run: nothing (a rule is not guessed past the data)
    assert detect_events(stream([0.1, 0.1, 0.1, 0.9, 0.9]), times(5), [rule], LABELS) == []


def test_reset_at_a_gap_breaks_the_run_but_keeps_the_refractory():
    det = EventDetector([EventRule("fall", 0.5, k=2, refractory_s=10)], LABELS)
    assert det.update([0.1, 0.9], 0.0, 0) == []
    det.reset()
    assert det.update([0.1, 0.9], 0.5, 1) == []  # not consecutive with the window before the gap
    assert len(det.update([0.1, 0.9], 1.0, 2)) == 1
    det.reset()
    det.update([0.1, 0.9], 1.5, 3)
    assert det.update([0.1, 0.9], 2.0, 4) == []  # still within 10 s of the event


def test_the_impact_is_the_strongest_peak_of_the_run():
    rule = EventRule("fall", 0.5, k=3)
    det = EventDetector([rule], LABELS)
    det.update([0, 1], 10.0, 0, impact=(12.0, 9.1))
    det.update([0, 1], 10.5, 1, impact=(35.0, 10.2))
    (event,) = det.update([0, 1], 11.0, 2, impact=(20.0, 10.9))
    assert event.impact_ts == 10.2 and event.delay_s == pytest.approx(0.8)
    payload = event.to_json()
    assert payload["event_type"] == "fall" and payload["windows"] == 3 and payload["impact_ts"] == 10.2


def test_nan_probabilities_never_fire():
    p = [math.nan] * 5
    assert detect_events(stream(p), times(5), [EventRule("fall", 0.1, k=1)], LABELS) == []


def test_impact_time_uses_the_accelerometer_channels():
    t = np.arange(10, dtype=np.float64)
    x = np.zeros((10, 6))
    x[:, 3:] = 100.0  # gyro, large everywhere: not the acceleration
    x[7, :3] = [0.0, 30.0, 40.0]
    assert impact_time(t, x, ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]) == (50.0, 7.0)
    assert impact_time(t, x[:, :3], ["ch1", "ch2", "ch3"]) == (50.0, 7.0)  # no names: the first three


@pytest.mark.parametrize(
    "doc, fragment",
    [
        ({"walk": {"threshold": 0.5}}, "events.walk: not one of the model's classes"),
        ({"fall": {"threshold": 1.5}}, "events.fall: threshold 1.5 must be in (0, 1]"),
        ({"fall": {"k": 0}}, "events.fall: k 0 must be a whole number"),
        ({"fall": {"refractory_s": -1}}, "events.fall: refractory_s -1"),
        ({"fall": {"treshold": 0.5}}, "events.fall: unknown key(s) treshold"),
        ({"fall": 0.5}, "events.fall: expected threshold"),
        ([1, 2], "events: expected a mapping"),
    ],
)
def test_bad_rules_name_the_class_and_field(doc, fragment):
    with pytest.raises(EventRuleError) as err:
        rules_from_json(doc, LABELS)
    assert fragment in str(err.value)


@settings(max_examples=200, deadline=None)
@given(
    p=st.lists(st.floats(0, 1), min_size=1, max_size=80),
    threshold=st.floats(0.05, 1.0),
    k=st.integers(1, 5),
    refractory=st.sampled_from([0.0, 0.5, 2.0, 7.5]),
)
def test_every_event_follows_the_rule(p, threshold, k, refractory):
    rule = EventRule("fall", threshold, k=k, refractory_s=refractory)
    events = detect_events(stream(p), times(len(p)), [rule], LABELS)
    for e in events:
        assert e.windows == k
        assert all(x >= threshold for x in p[e.first_seq : e.last_seq + 1])
    for a, b in zip(events, events[1:]):
        assert b.detected_ts - a.detected_ts >= refractory and b.first_seq > a.last_seq
    if k == 1 and refractory == 0.0:
        assert len(events) == sum(x >= threshold for x in p)
    if not any(x >= threshold for x in p):
        assert events == []


# ---------------------------------------------------------------- per-recording figures on a known synthetic set


def _recording(name: str, seconds: float, bursts: list[tuple[float, float]], event=None, impact=None) -> Stream:
    """Windows every 0.5 s; p(fall) = the burst's height inside each (start, height) burst of 1 s, else 0.05."""
    ts = np.arange(0.5, seconds + 1e-9, 0.5)
    p = np.full(len(ts), 0.05)
    for start, height in bursts:
        p[(ts >= start) & (ts < start + 1.0)] = height
    return Stream(name, stream(list(p)), ts, event=event, impact_ts=impact, duration_s=seconds)


def known_set() -> list[Stream]:
    return [
        _recording("fall-1", 10, [(5.0, 0.95)], "fall", impact=4.8),  # detected 0.7 s after the impact (k=2)
        _recording("fall-2", 10, [(6.0, 0.9)], "fall", impact=5.0),  # detected 1.5 s after
        _recording("fall-3", 10, [(7.0, 0.6)], "fall", impact=6.5),  # only above 0.5: missed at 0.8
        _recording("fall-4", 30, [(3.0, 0.99), (25.0, 0.99)], "fall", impact=2.9),  # a second alarm 22 s later: false
        _recording("walk", 1800, [(100.0, 0.9), (900.0, 0.85)]),  # two false alarms in half an hour
        _recording("sit", 1800, [(50.0, 0.7)]),  # above 0.5 only
    ]


def test_figures_per_recording_and_per_hour_on_a_known_set():
    f = event_figures(known_set(), EventRule("fall", 0.8, k=2, refractory_s=5), LABELS)
    assert (f.event_recordings, f.detected, f.sensitivity) == (4, 3, 0.75)
    assert f.missed == ["fall-3"] and f.falsely_flagged == ["fall-4", "walk"]
    assert f.false_alarms == 3 and f.other_hours == pytest.approx(1.0)
    assert f.false_alarms_per_hour == pytest.approx(3.0)
    assert sorted(f.delays_s) == pytest.approx(
        [0.6, 0.7, 1.5]
    )  # k=2 fires on the 2nd window: 3.5-2.9, 5.5-4.8, 6.5-5.0
    low = event_figures(known_set(), EventRule("fall", 0.5, k=2, refractory_s=5), LABELS)
    assert low.sensitivity == 1.0 and low.false_alarms_per_hour == pytest.approx(4.0)
    doc = f.to_json()
    assert doc["false_alarms_per_hour"] == 3.0 and doc["delay_s"]["n"] == 3 and doc["rule"]["k"] == 2


def test_choose_takes_the_most_sensitive_rule_within_the_false_alarm_target():
    curve = sweep(known_set(), "fall", LABELS, thresholds=(0.5, 0.8, 0.92, 0.97), ks=(1, 2), refractory_s=5)
    best = choose(curve, max_false_alarms_per_hour=3.0)
    assert best.sensitivity == 0.75 and best.false_alarms_per_hour <= 3.0
    strict = choose(curve, max_false_alarms_per_hour=1.0)  # 0.92: only falls 1 and 4 and no walk alarm
    assert strict.false_alarms_per_hour <= 1.0 and strict.rule.threshold == 0.92
    impossible = choose(curve, max_false_alarms_per_hour=-1)  # none within: the fewest false alarms
    assert impossible.false_alarms == min(f.false_alarms for f in curve)
