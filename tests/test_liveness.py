"""The staleness rule every consumer shares (edge_har.mqtt.liveness), on its edges."""

from __future__ import annotations

import pytest

from edge_har.mqtt.liveness import (
    DEFAULT_STATS_INTERVAL_S,
    LIVENESS_STALE,
    LIVENESS_UNKNOWN,
    STALE_AFTER_INTERVALS,
    device_liveness,
    online_expiry_s,
    stale_after_s,
)


def judge(status, *, now, last_stats_at=None, interval=10.0, since=0.0):
    return device_liveness(
        status, now=now, last_stats_at=last_stats_at, stats_interval_s=interval, watching_since=since
    )


def test_online_turns_stale_after_n_intervals_without_stats():
    n = STALE_AFTER_INTERVALS
    assert judge("online", now=100.0, last_stats_at=100.0 - n * 10.0) == "online"  # exactly N intervals: still fine
    assert judge("online", now=100.0 + 1e-6, last_stats_at=100.0 - n * 10.0) == LIVENESS_STALE
    # no stats seen yet: counted from when the consumer started watching
    assert judge("online", now=n * 10.0 - 1, since=0.0) == "online"
    assert judge("online", now=n * 10.0 + 1, since=0.0) == LIVENESS_STALE


def test_other_statuses_are_not_judged_by_stats():
    for status in ("stopped", "offline", "something-newer"):
        assert judge(status, now=1e9, last_stats_at=0.0) == status
    assert judge(None, now=1e9) == LIVENESS_UNKNOWN


@pytest.mark.parametrize("interval", [None, 0, -1, float("nan"), float("inf"), True, "30"])
def test_a_missing_or_odd_interval_falls_back_to_the_default(interval):
    assert stale_after_s(interval) == STALE_AFTER_INTERVALS * DEFAULT_STATS_INTERVAL_S


def test_online_expiry_matches_the_rule_in_whole_seconds():
    assert online_expiry_s(30.0) == 90 and online_expiry_s(0.5) == 2 and online_expiry_s(0.01) == 1
    assert online_expiry_s(1e300) == 2**32 - 1  # MQTT 5's four-byte limit
