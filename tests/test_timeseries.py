"""Timestamped samples onto a regular grid (edge_har.core.timeseries): exact on regular input, never
across a gap, duplicates and disorder dropped and counted, several clocks aligned; property tests
over random stamps (``EDGE_HAR_FUZZ_EXAMPLES`` raises their example counts)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_har.core.timeseries import (
    SNAP,
    align,
    detect_time_unit,
    resample,
    resample_table,
)

EXAMPLES = int(os.environ.get("EDGE_HAR_FUZZ_EXAMPLES", "200"))  # per property below
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ examples


def test_a_regular_input_at_the_target_rate_comes_back_unchanged_in_every_unit():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(500, 3)).astype(np.float32)
    for unit, step, start in (
        ("s", 0.02, 1234.5),
        ("ms", 20, 1_700_000_000_000),
        ("ns", 20_000_000, 2_847_256_045_000),
    ):
        stamps = start + np.arange(500) * step
        for given_unit in (unit, "auto"):
            out = resample(stamps, values, 50.0, max_gap_s=0.1, unit=given_unit)
            assert len(out.segments) == 1
            assert out.segments[0].samples.dtype == np.float32
            assert np.array_equal(out.segments[0].samples, values), (unit, given_unit)
            assert out.report.samples_out == 500 and out.report.dropped == 0 and out.report.gaps == 0


def test_nanoseconds_since_1970_keep_their_precision_as_integers():
    stamps = np.int64(1_733_000_000_000_000_000) + np.arange(200, dtype=np.int64) * 20_000_000
    values = np.arange(200, dtype=np.float64).reshape(-1, 1)
    out = resample(stamps, values, 50.0, max_gap_s=0.1, unit="ns")
    assert np.array_equal(out.segments[0].samples, values)


def test_a_gap_splits_the_recording_and_is_counted():
    t = np.concatenate([np.arange(0, 2, 0.01), np.arange(3, 5, 0.01)])  # 100 Hz, a 1.01 s pause
    out = resample(t, np.sin(t), 50.0, max_gap_s=0.3)
    assert out.report.gaps == 1 and out.report.segments == 2
    assert out.report.gap_s == pytest.approx(1.01)
    first, second = (out.times(s) for s in out.segments)
    assert first[0] == pytest.approx(0) and first[-1] <= t[199] + 1e-9
    assert second[0] >= 3 - 1e-9 and second[-1] <= t[-1] + 1e-9
    assert not np.any((np.concatenate([first, second]) > t[199] + 1e-9) & (np.concatenate([first, second]) < 3 - 1e-9))
    assert len(out.segments[0]) == 100 and len(out.segments[1]) == 100  # 0..1.98 and 3..4.98 at 0.02 s


def test_duplicates_and_stamps_behind_the_clock_are_dropped_and_counted():
    t = [0.0, 0.01, 0.01, 0.02, 0.015, 0.03, 5.0, 0.04, 0.05]
    y = [[10 * v] for v in t]
    out = resample(t, y, 100.0, max_gap_s=0.1)
    assert out.report.duplicates == 1
    assert out.report.out_of_order == 2  # 0.015 and the wild 5.0
    assert out.report.gaps == 0 and len(out.segments) == 1
    assert np.allclose(out.segments[0].samples[:, 0], 10 * out.times(out.segments[0]))
    assert out.times(out.segments[0])[-1] == pytest.approx(0.05)


def test_nan_rows_are_dropped_and_empty_or_single_inputs_give_what_they_hold():
    out = resample([0, 0.01, np.nan, 0.03], [[1], [2], [3], [np.inf]], 100.0, max_gap_s=0.1)
    assert out.report.non_finite == 2 and out.report.samples_out == 2
    assert resample([], np.empty((0, 2)), 50.0, max_gap_s=0.1).segments == []
    one = resample([7.0], [[1.0, 2.0]], 50.0, max_gap_s=0.1)
    assert len(one.segments) == 1 and one.segments[0].samples.tolist() == [[1.0, 2.0]]


def test_bad_parameters_are_a_value_error_naming_them():
    with pytest.raises(ValueError, match="rate"):
        resample([0, 1], [1, 2], 0.0, max_gap_s=1)
    with pytest.raises(ValueError, match="gap"):
        resample([0, 1], [1, 2], 50.0, max_gap_s=math.nan)
    with pytest.raises(ValueError, match="unit"):
        resample([0, 1], [1, 2], 50.0, max_gap_s=1, unit="minutes")
    with pytest.raises(ValueError, match="stamp per row"):
        resample([0, 1, 2], [1, 2], 50.0, max_gap_s=1)


@pytest.mark.parametrize(
    ("step", "unit"),
    [(0.0105, "s"), (0.005, "s"), (1.0, "s"), (20, "ms"), (10.5, "ms"), (5040, "us"), (10_542_000, "ns"), (4e6, "ns")],
)
def test_the_unit_is_read_off_the_median_step(step, unit):
    rng = np.random.default_rng(1)
    stamps = 1e6 + np.cumsum(step * rng.uniform(0.8, 1.2, size=300))
    assert detect_time_unit(stamps) == unit


def test_a_column_that_is_not_a_clock_has_no_unit():
    assert detect_time_unit([5.0]) is None
    assert detect_time_unit([3.0, 3.0, 3.0]) is None
    assert detect_time_unit(np.arange(100.0)[::-1]) is None
    assert detect_time_unit(np.random.default_rng(2).normal(size=100)) is None


def test_two_clocks_are_aligned_on_their_common_span():
    rng = np.random.default_rng(3)
    t_acc = 100.0 + np.cumsum(rng.uniform(0.009, 0.0125, size=900))  # ~95 Hz with jitter
    t_gyro = 100.2 + np.cumsum(rng.uniform(0.0045, 0.0055, size=1800))  # ~200 Hz, starts later
    acc = np.stack([2 * t_acc, -t_acc, t_acc + 1], axis=1)
    gyro = np.stack([3 * t_gyro, t_gyro, -2 * t_gyro], axis=1)
    out = align([(t_acc, acc), (t_gyro, gyro)], 50.0, max_gap_s=0.3)
    assert len(out.segments) == 1
    seg = out.segments[0]
    times = out.times(seg)
    assert seg.samples.shape[1] == 6
    assert times[0] == pytest.approx(t_gyro[0]) and times[0] >= t_acc[0]
    assert times[-1] <= min(t_acc[-1], t_gyro[-1]) + 1e-9
    expect = np.stack([2 * times, -times, times + 1, 3 * times, times, -2 * times], axis=1)
    assert np.allclose(seg.samples, expect, rtol=0, atol=1e-9)
    assert out.report.trimmed_s == pytest.approx((t_gyro[0] - t_acc[0]) + abs(t_acc[-1] - t_gyro[-1]))


def test_a_gap_in_either_clock_splits_the_aligned_trial():
    t_a = np.arange(0, 10, 0.01)
    t_b = np.concatenate([np.arange(0, 4, 0.005), np.arange(4.6, 10, 0.005)])  # b pauses 0.6 s
    out = align([(t_a, t_a), (t_b, t_b)], 50.0, max_gap_s=0.3)
    assert out.report.gaps == 1 and len(out.segments) == 2
    for seg in out.segments:
        times = out.times(seg)
        assert not np.any((times > 3.995 + 1e-9) & (times < 4.6 - 1e-9))
        assert np.allclose(seg.samples, np.stack([times, times], axis=1))


def test_a_timestamp_column_among_the_columns():
    table = np.column_stack([np.arange(0, 1, 0.01), np.arange(100) * 20, np.ones(100)])  # value, t in ms, value
    table[:, 1] += 1_700_000_000_000
    out = resample_table(table, 1, 50.0, max_gap_s=0.1)
    assert out.segments[0].samples.shape == (100, 2)
    assert np.array_equal(out.segments[0].samples, table[:, [0, 2]])
    with pytest.raises(ValueError, match="time column 5"):
        resample_table(table, 5, 50.0, max_gap_s=0.1)


# ------------------------------------------------------------------ properties

RATES = st.sampled_from([5.0, 20.0, 32.0, 50.0, 100.0, 200.0])
GAPS = st.floats(0.05, 0.5)
# steps between stamps: mostly jittered small ones, some long pauses, some repeats and backward stamps
STEPS = st.one_of(
    st.floats(0.001, 0.04),
    st.floats(0.001, 0.04),
    st.floats(0.001, 0.04),
    st.floats(0.3, 2.0),
    st.just(0.0),
    st.floats(-0.5, -1e-4),
)


def _stamps(start: float, steps: list[float]) -> np.ndarray:
    return start + np.concatenate([[0.0], np.cumsum(steps)])


def _output_times(out):
    return np.concatenate([out.times(s) for s in out.segments]) if out.segments else np.empty(0)


@SETTINGS
@given(
    stamps=st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=40),
    value=st.floats(allow_nan=False, allow_infinity=False),
    rate=st.floats(0.1, 1000.0),
    max_gap=st.floats(1e-3, 10.0),
    unit=st.sampled_from(["auto", "s", "ms", "us", "ns"]),
)
def test_any_finite_input_resamples_without_raising(stamps, value, rate, max_gap, unit):
    values = np.column_stack([np.full(len(stamps), value), np.arange(len(stamps), dtype=np.float64)])
    out = resample(np.array(stamps, dtype=np.float64), values, rate, max_gap_s=max_gap, unit=unit)
    report = out.report
    assert report.samples_in == len(stamps)
    assert report.samples_out == sum(len(s) for s in out.segments)
    assert report.segments == len(out.segments)
    assert report.dropped <= len(stamps)
    for seg in out.segments:
        assert seg.samples.shape[1] == 2 and len(seg) >= 1


@SETTINGS
@given(
    start=st.floats(-1e5, 1e5),
    steps=st.lists(STEPS, min_size=1, max_size=120),
    rate=RATES,
    max_gap=GAPS,
    slope=st.floats(-100, 100),
    intercept=st.floats(-1e3, 1e3),
)
def test_output_is_on_the_grid_never_inside_a_gap_and_exact_on_a_line(start, steps, rate, max_gap, slope, intercept):
    t = _stamps(start, steps)
    y = np.column_stack([slope * (t - start) + intercept, -slope * (t - start)])
    out = resample(t, y, rate, max_gap_s=max_gap)
    period = 1.0 / rate
    assert out.origin_s in t
    ordered = np.sort(t)
    for seg in out.segments:
        times = out.times(seg)
        k = (times - out.origin_s) * rate
        assert np.allclose(k, np.round(k), atol=1e-6)  # on the grid
        assert np.all(np.diff(times) > 0)
        # inside the input's span, and never inside a step longer than the bound
        hi = np.searchsorted(ordered, times - SNAP * period * 2, side="left")
        lo = np.searchsorted(ordered, times + SNAP * period * 2, side="right") - 1
        assert np.all(lo >= 0) and np.all(hi < len(ordered))
        on_stamp = lo >= hi
        bridged = ordered[np.minimum(hi, len(ordered) - 1)] - ordered[np.maximum(lo, 0)] <= max_gap + 1e-9
        assert np.all(on_stamp | bridged)
        # a linear signal is reproduced (to float tolerance)
        # (a grid point within SNAP periods of a stamp takes the stamp's sample)
        tol = 1e-7 * (abs(slope) * (abs(t - start).max() + 1) + abs(intercept) + 1) + 2 * abs(slope) * SNAP * period
        assert np.allclose(seg.samples[:, 0], slope * (times - start) + intercept, rtol=0, atol=tol)
        assert np.allclose(seg.samples[:, 1], -slope * (times - start), rtol=0, atol=tol)
    assert out.report.samples_out == sum(len(s) for s in out.segments)


@SETTINGS
@given(
    start=st.floats(-1e5, 1e5),
    steps=st.lists(st.one_of(st.floats(0.001, 0.04), st.floats(0.6, 2.0)), min_size=1, max_size=80),
    rate=RATES,
    max_gap=GAPS,
)
def test_increasing_stamps_give_every_grid_point_between_close_stamps(start, steps, rate, max_gap):
    """A brute-force reference: grid point k is output iff it falls on a stamp or between two
    neighbouring stamps at most ``max_gap`` apart."""
    t = _stamps(start, steps)
    out = resample(t, t.reshape(-1, 1), rate, max_gap_s=max_gap)
    expect = []
    for k in range(int((t[-1] - t[0]) * rate + 1e-6) + 1):
        q = t[0] + k / rate
        i = int(np.searchsorted(t, q, side="right")) - 1
        near = min(abs(q - t[max(i, 0)]), abs(q - t[min(i + 1, len(t) - 1)])) <= SNAP / rate * 0.5
        inside = 0 <= i < len(t) - 1 and t[i + 1] - t[i] <= max_gap
        if near or inside:
            expect.append(k)
    got = [seg.first + j for seg in out.segments for j in range(len(seg))]
    borderline = {
        k for k in range(int((t[-1] - t[0]) * rate) + 2) if np.min(np.abs(t - (t[0] + k / rate))) <= 2 * SNAP / rate
    }
    assert set(got) ^ set(expect) <= borderline
    assert out.report.gaps == int(np.sum(np.diff(t) > max_gap))


@SETTINGS
@given(
    n=st.integers(1, 300),
    rate=RATES,
    unit=st.sampled_from(["s", "ms", "us", "ns"]),
    start=st.integers(0, 10**12),
    missing=st.lists(st.integers(0, 299), max_size=20),
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_regular_stamps_at_the_target_rate_come_back_unchanged(n, rate, unit, start, missing, seed, dtype):
    """Integer stamps at the target rate, some samples missing: every kept sample comes back as is."""
    per_unit = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    step = per_unit / rate
    if unit == "s" or step != int(step):
        stamps = np.arange(n) / rate  # seconds as floats
        unit = "s"
    else:
        stamps = np.int64(start) + np.arange(n, dtype=np.int64) * int(step)
    rng = np.random.default_rng(seed)
    values = (rng.normal(size=n) * 10.0 ** rng.integers(-3, 6)).astype(dtype)
    keep = np.setdiff1d(np.arange(n), missing)
    if len(keep) == 0:
        return
    out = resample(stamps[keep], values[keep].reshape(-1, 1), rate, max_gap_s=1.5 / rate, unit=unit)
    got = {seg.first + j: seg.samples[j, 0] for seg in out.segments for j in range(len(seg))}
    assert sorted(got) == list(keep - keep[0])
    assert all(got[i - keep[0]] == values[i] for i in keep)  # bit for bit


@SETTINGS
@given(
    offset=st.floats(-0.5, 0.5),
    steps_a=st.lists(st.one_of(st.floats(0.005, 0.02), st.floats(0.4, 1.0)), min_size=2, max_size=60),
    steps_b=st.lists(st.one_of(st.floats(0.002, 0.01), st.floats(0.4, 1.0)), min_size=2, max_size=60),
    rate=RATES,
)
def test_aligned_streams_share_one_grid_inside_both_spans(offset, steps_a, steps_b, rate):
    t_a, t_b = _stamps(0.0, steps_a), _stamps(offset, steps_b)
    out = align([(t_a, 2 * t_a), (t_b.astype(np.float64), np.column_stack([t_b, -t_b]))], rate, max_gap_s=0.3)
    assert out.origin_s == max(t_a[0], t_b[0])
    for seg in out.segments:
        times = out.times(seg)
        assert seg.samples.shape[1] == 3
        for t in (t_a, t_b):
            assert times[0] >= t[0] - 1e-9 and times[-1] <= t[-1] + 1e-9
            j = np.clip(np.searchsorted(t, times), 1, len(t) - 1)
            on = np.isclose(t[j], times, atol=1e-9) | np.isclose(t[j - 1], times, atol=1e-9)
            assert np.all(on | (t[j] - t[j - 1] <= 0.3 + 1e-9))
        assert np.allclose(seg.samples, np.column_stack([2 * times, times, -times]), atol=1e-6)
