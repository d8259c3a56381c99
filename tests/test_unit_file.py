"""The systemd unit's restart arithmetic: a daemon that keeps exiting 1 hits the start limit and
stays stopped, instead of being restarted forever; exit 78 (config, bundle, model) is never restarted.

systemd counts starts in a fixed window (``ratelimit_below`` in src/basic/ratelimit.c): the first
start opens a window of StartLimitIntervalSec; a start more than StartLimitBurst into it is
refused and the unit fails. A failing cycle lasts the time to fail plus RestartSec, so the window
must hold StartLimitBurst + 1 starts of the slowest failing cycle. A unit of 300 s, 10 starts,
RestartSec=5 holds none of the cycles of a daemon failing 50 windows at 0.5 s each.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import pytest

from edge_har.device.daemon import EXIT_CONFIG, EXIT_FAILURE, MAX_FAILURES_IN_A_ROW

UNIT = Path(__file__).resolve().parents[1] / "firmware_configs" / "edge-har.service"

# The slowest failing start the unit must stop, stated here because a bundle sets it: a model that
# predicts every 5 s (stride) over 10 s windows, on a Pi Zero 2 W that takes 30 s to start Python,
# numpy and the interpreter from its SD card. The daemon exits 1 after MAX_FAILURES_IN_A_ROW
# failed windows: the first after one window, the others a stride apart.
SLOWEST_START_S = 30.0
SLOWEST_WINDOW_S = 10.0
SLOWEST_STRIDE_S = 5.0


def unit_values(path: Path = UNIT) -> dict[str, str]:
    """``Section.Key`` -> the last value given (systemd's rule for these single-value settings)."""
    values: dict[str, str] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        values[f"{section}.{key.strip()}"] = value.strip()
    return values


def seconds(timespan: str) -> float:
    """A systemd time span as used here: '300', '300s', '100ms', '5min', '1h', '1h 30min'."""
    units = {"": 1, "ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", timespan)
    assert parts and all(u in units for _, u in parts), f"unsupported time span {timespan!r}"
    return sum(float(n) * units[u] for n, u in parts)


def time_to_fail(start_s: float, window_s: float, stride_s: float) -> float:
    """Process start to exit 1: the start, the first window, then a stride per further failure."""
    return start_s + window_s + (MAX_FAILURES_IN_A_ROW - 1) * stride_s


def refused_start(interval_s: float, burst: int, cycle_s: float, max_starts: int = 10_000) -> Optional[int]:
    """The 1-based start systemd refuses when every start fails after ``cycle_s``; None: never.

    systemd's fixed-window rate limit, as in ratelimit_below(): a start more than ``interval_s``
    after the window's first opens a new window with a count of 1; otherwise the count goes up
    and the start is allowed while it is <= ``burst``.
    """
    begin: Optional[float] = None
    count = 0
    for n in range(1, max_starts + 1):
        t = (n - 1) * cycle_s
        if begin is None or t - begin > interval_s:
            begin, count = t, 1
            continue
        count += 1
        if count > burst:
            return n
    return None


def limits(values: dict[str, str]) -> tuple[float, int, float]:
    """StartLimitIntervalSec, StartLimitBurst and RestartSec, in seconds."""
    return (
        seconds(values["Unit.StartLimitIntervalSec"]),
        int(values["Unit.StartLimitBurst"]),
        seconds(values.get("Service.RestartSec", "100ms")),  # systemd's default is 100 ms
    )


def test_a_daemon_that_keeps_exiting_1_hits_the_start_limit():
    values = unit_values()
    interval, burst, restart_sec = limits(values)
    assert values["Service.Restart"] == "on-failure"  # exit 1 is restarted ...
    worst = time_to_fail(SLOWEST_START_S, SLOWEST_WINDOW_S, SLOWEST_STRIDE_S)
    for fail_s in (1.0, 5.0, worst / 2, worst):  # ... a bounded number of times, fast or slow
        refused = refused_start(interval, burst, fail_s + restart_sec)
        assert refused == burst + 1, (fail_s, refused)
    # and it gives up within the window: at most burst cycles of the slowest failure
    assert burst * (worst + restart_sec) <= interval


def test_the_arithmetic_finds_the_loop_the_old_unit_had(tiny_bundle):
    """A unit of 300 s, 10 starts, RestartSec=5 with the tiny bundle's real window and stride: never refused."""
    from edge_har.core.bundle import Bundle

    pre = Bundle.load(tiny_bundle).preprocessing
    fail_s = time_to_fail(2.0, pre.window_seconds, pre.stride_seconds)  # a 2 s start on a workstation
    assert refused_start(300.0, 10, fail_s + 5.0) is None  # StartLimitIntervalSec=300, Burst=10, RestartSec=5
    interval, burst, restart_sec = limits(unit_values())
    assert refused_start(interval, burst, fail_s + restart_sec) == burst + 1


def test_exit_78_is_never_restarted_and_exit_1_always_is():
    values = unit_values()
    prevent = values["Service.RestartPreventExitStatus"].split()
    assert str(EXIT_CONFIG) in prevent and str(EXIT_FAILURE) not in prevent
    for key in ("Service.RestartForceExitStatus", "Service.SuccessExitStatus"):
        given = values.get(key, "").split()
        assert str(EXIT_CONFIG) not in given and str(EXIT_FAILURE) not in given, key


@pytest.mark.parametrize(
    "text, expected",
    [("300", 300), ("300s", 300), ("5min", 300), ("1h", 3600), ("1h 30min", 5400), ("100ms", 0.1)],
)
def test_time_spans_are_read_as_systemd_does(text, expected):
    assert seconds(text) == expected
