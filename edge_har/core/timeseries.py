"""Timestamped samples onto one regular clock: the time unit, cleaning, resampling, alignment.

A phone or a logger stamps each sample from its own clock and delivers them unevenly: jitter,
pauses while the system is busy, now and then a repeated or backward stamp. A model takes
samples at one fixed rate. This module turns ``(timestamps, samples)`` into samples on a regular
grid by linear interpolation, the same interpolation :func:`edge_har.core.preprocessing.resample`
applies to regular recordings, with three rules that keep made-up data out:

* **gaps**: a step between two stamps longer than ``max_gap_s`` is a gap; nothing is interpolated
  across it. It splits the recording into segments (each one later cut into windows on its own)
  and is counted, with the seconds it spans.
* **duplicates and disorder**: a sample stamped like the one before it is a duplicate; a sample
  stamped behind the clock is out of order. Both are dropped and counted (the longest increasing
  run of stamps is kept, so one wild stamp costs one sample, not the rest of the file). A row with
  a stamp or value that is NaN or infinite is dropped and counted too.
* **exactness**: output sample ``k`` sits at ``origin + k / rate_hz``, with the origin at the first
  stamp; a grid point that falls on a stamp (within a millionth of a period) takes that sample
  as is, so a regular input at the target rate comes back unchanged, bit for bit.

Several streams of one trial with their own clocks (an accelerometer file and a gyroscope file)
are aligned by :func:`align`: the grid starts where the last stream starts, ends where the first
ends, skips any stream's gaps, and every stream is interpolated onto it; the channels are the
streams' channels side by side.

Timestamps may be seconds, milliseconds, microseconds or nanoseconds (``unit``);
:func:`detect_time_unit` reads the unit off the median step between increasing stamps.

numpy only: the device replays timestamped files through the same code.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

TIME_UNITS: dict[str, float] = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
UNIT_CHOICES = ("auto", *TIME_UNITS)
# Grid points this close to a stamp (as a fraction of the output period) take the stamp's sample.
SNAP = 1e-6
# Raw median steps up to these bounds read as the unit: sample rates of 1 Hz to 1 kHz in any unit.
_UNIT_BY_STEP = (("s", 1.0), ("ms", 1e3), ("us", 1e6))


def detect_time_unit(stamps: np.ndarray | Sequence[float]) -> str | None:
    """The unit of a timestamp column from the median step between increasing stamps.

    The unit is the one that puts that step between 1 ms and 1 s (a sample rate of 1 Hz to
    1 kHz): a step of 0.02 is seconds, 20 is milliseconds, 20,000 microseconds, 20,000,000
    nanoseconds; a step of at most 1 (ms: 1 kHz, or s: 1 Hz) reads as seconds, one over 10^6
    as nanoseconds. None when the column is not a clock: fewer than two finite stamps, or fewer
    than half of its steps go forward. A rate outside 1 Hz..1 kHz needs the unit given.
    """
    t = np.asarray(stamps, dtype=np.float64).ravel()
    t = t[np.isfinite(t)]
    if len(t) < 2:
        return None
    with np.errstate(all="ignore"):
        steps = np.diff(t)
    forward = steps[np.isfinite(steps) & (steps > 0)]
    if len(forward) * 2 < len(steps) or len(forward) == 0:
        return None
    step = float(np.median(forward))
    for unit, bound in _UNIT_BY_STEP:
        if step <= bound:
            return unit
    return "ns"


@dataclass
class ResampleReport:
    """What resampling did to the input, summed over streams (and over files with :meth:`add`)."""

    samples_in: int = 0
    samples_out: int = 0
    non_finite: int = 0  # rows whose stamp or a value is NaN or infinite, dropped
    duplicates: int = 0  # rows stamped like the row before, dropped
    out_of_order: int = 0  # rows stamped behind the clock, dropped
    gaps: int = 0  # steps longer than the bound; each splits the recording
    gap_s: float = 0.0  # seconds inside those gaps (no output there)
    trimmed_s: float = 0.0  # seconds of a stream outside the span every stream covers (align)
    segments: int = 0  # pieces of output (a recording without gaps is one)
    recordings: int = 0  # how many inputs were resampled into this report

    def add(self, other: ResampleReport) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def dropped(self) -> int:
        return self.non_finite + self.duplicates + self.out_of_order

    def summary(self) -> str:
        """One line for a log: counts, then what was dropped or split, only where there is some."""
        parts = [f"{self.samples_in} samples in, {self.samples_out} out in {self.segments} segment(s)"]
        if self.gaps:
            parts.append(f"{self.gaps} gap(s) split recordings ({self.gap_s:.2f} s without output)")
        for name, count in (
            ("duplicate stamp", self.duplicates),
            ("stamp out of order", self.out_of_order),
            ("NaN/inf", self.non_finite),
        ):
            if count:
                parts.append(f"{count} row(s) dropped ({name})")
        if self.trimmed_s > 0:
            parts.append(f"{self.trimmed_s:.2f} s outside the streams' common span")
        return "; ".join(parts)


@dataclass
class Segment:
    """Samples on the grid with no gap inside: grid points ``first, first + 1, ...``."""

    first: int
    samples: np.ndarray  # (n, C)

    def __len__(self) -> int:
        return len(self.samples)


@dataclass
class Resampled:
    """The output of :func:`resample` / :func:`align`: segments on one grid, and the report."""

    rate_hz: float
    origin_s: float  # grid point 0, in seconds on the input's clock
    segments: list[Segment] = field(default_factory=list)
    report: ResampleReport = field(default_factory=ResampleReport)

    def times(self, segment: Segment) -> np.ndarray:
        """Seconds on the input's clock of each sample of ``segment``: ``origin + k / rate``."""
        k = segment.first + np.arange(len(segment), dtype=np.float64)
        return self.origin_s + k / self.rate_hz


@dataclass
class _Stream:
    t: np.ndarray  # seconds from the common zero, strictly increasing
    values: np.ndarray  # (n, C) as given
    starts: np.ndarray  # closed intervals without a gap: [starts[i], ends[i]]
    ends: np.ndarray


def _check(rate_hz: float, max_gap_s: float) -> None:
    if not (math.isfinite(rate_hz) and rate_hz > 0):
        raise ValueError(f"the rate to resample to must be a number > 0 Hz, got {rate_hz}")
    if not (math.isfinite(max_gap_s) and max_gap_s > 0):
        raise ValueError(f"the gap bound must be a number of seconds > 0, got {max_gap_s}")


def _as_table(
    stamps: np.ndarray | Sequence[float], samples: np.ndarray | Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(stamps).ravel()
    values = np.asarray(samples)
    if values.ndim == 1:
        values = values.reshape(-1, 1)
    if values.ndim != 2 or len(values) != len(t):
        raise ValueError(f"{len(t)} timestamps for samples of shape {values.shape}; give one stamp per row")
    if not (np.issubdtype(t.dtype, np.number) and np.issubdtype(values.dtype, np.number)):
        raise ValueError("timestamps and samples must be numbers")
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    return t, values


def _first_finite(t: np.ndarray) -> float | int | None:
    if np.issubdtype(t.dtype, np.integer):
        return int(t[0]) if len(t) else None
    finite = np.flatnonzero(np.isfinite(t))
    return float(t[finite[0]]) if len(finite) else None


def _seconds(t: np.ndarray, zero: float | int, factor: float) -> np.ndarray:
    """Seconds after ``zero`` (a raw stamp); integer stamps are subtracted exactly before scaling,
    so nanoseconds since 1970 keep their precision."""
    if np.issubdtype(t.dtype, np.integer) and isinstance(zero, int):
        wide = t.astype(np.int64)
        if len(wide) and max(abs(int(wide.max())), abs(int(wide.min())), abs(zero)) < 2**62:
            return (wide - np.int64(zero)).astype(np.float64) * factor
    with np.errstate(all="ignore"):
        return (t.astype(np.float64) - float(zero)) * factor


def _longest_increasing(t: np.ndarray) -> np.ndarray:
    """Indices of a longest strictly increasing subsequence of ``t`` (patience sorting, n log n)."""
    tails: list[float] = []
    tail_at: list[int] = []
    before = np.full(len(t), -1, dtype=np.int64)
    for i, v in enumerate(t.tolist()):
        k = bisect_left(tails, v)
        if k == len(tails):
            tails.append(v)
            tail_at.append(i)
        else:
            tails[k] = v
            tail_at[k] = i
        before[i] = tail_at[k - 1] if k else -1
    out = []
    i = tail_at[-1] if tail_at else -1
    while i >= 0:
        out.append(i)
        i = int(before[i])
    return np.array(out[::-1], dtype=np.int64)


def _stream(t_s: np.ndarray, values: np.ndarray, max_gap_s: float, report: ResampleReport) -> _Stream:
    """Drop NaN/inf rows, duplicates and stamps behind the clock; find the gaps (counted in ``report``)."""
    report.samples_in += len(t_s)
    ok = np.isfinite(t_s) & np.isfinite(values).all(axis=1)
    report.non_finite += int(len(ok) - ok.sum())
    t_s, values = t_s[ok], values[ok]
    steps = np.diff(t_s)
    if len(steps) and not (steps > 0).all():
        repeat = np.concatenate([[False], steps == 0])
        report.duplicates += int(repeat.sum())
        keep = np.flatnonzero(~repeat)
        if not (np.diff(t_s[keep]) > 0).all():
            run = _longest_increasing(t_s[keep])
            report.out_of_order += len(keep) - len(run)
            keep = keep[run]
        t_s, values = t_s[keep], values[keep]
        steps = np.diff(t_s)
    at = np.flatnonzero(steps > max_gap_s)
    report.gaps += len(at)
    report.gap_s += float(steps[at].sum()) if len(at) else 0.0
    if not len(t_s):
        return _Stream(t_s, values, np.empty(0), np.empty(0))
    starts = np.concatenate([t_s[:1], t_s[at + 1]])
    ends = np.concatenate([t_s[at], t_s[-1:]])
    return _Stream(t_s, values, starts, ends)


def _intersect(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The closed intervals two sorted lists of disjoint closed intervals share."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _at(stream: _Stream, q: np.ndarray, tol: float) -> np.ndarray:
    """The stream's values at times ``q`` (inside its span), linearly interpolated; a ``q`` within
    ``tol`` of a stamp takes that stamp's sample unchanged."""
    t, v = stream.t, stream.values
    out = np.empty((len(q), v.shape[1]), dtype=np.float64)
    with np.errstate(all="ignore"):
        for c in range(v.shape[1]):
            out[:, c] = np.interp(q, t, v[:, c].astype(np.float64))
    j = np.searchsorted(t, q)
    for cand in (np.minimum(j, len(t) - 1), np.maximum(j - 1, 0)):
        near = np.abs(t[cand] - q) <= tol
        out[near] = v[cand[near]]
    return out.astype(v.dtype, copy=False)


def align(
    streams: Sequence[tuple[np.ndarray | Sequence[float], np.ndarray | Sequence[float]]],
    rate_hz: float,
    *,
    max_gap_s: float,
    unit: str = "s",
) -> Resampled:
    """Streams ``(timestamps, samples)`` of one recording on one grid at ``rate_hz``, channels side by side.

    The stamps of all streams are on one clock, in ``unit`` (``auto``: :func:`detect_time_unit`
    on the first stream, seconds if it cannot tell). The grid starts at the latest first stamp
    and keeps the points every stream covers without a gap longer than ``max_gap_s``; each run
    of kept points between gaps is a :class:`Segment`. Never raises on finite input (a ValueError
    is for a bad ``rate_hz``, ``max_gap_s``, ``unit`` or shape): rows it cannot use are dropped
    and counted in the report.
    """
    _check(rate_hz, max_gap_s)
    if not streams:
        raise ValueError("no streams to align")
    tables = [_as_table(t, v) for t, v in streams]
    if unit == "auto":
        unit = detect_time_unit(tables[0][0]) or "s"
    if unit not in TIME_UNITS:
        raise ValueError(f"time unit {unit!r}: choose one of {', '.join(UNIT_CHOICES)}")
    factor = TIME_UNITS[unit]
    report = ResampleReport(recordings=1)
    zeros = [z for z in (_first_finite(t) for t, _ in tables) if z is not None]
    zero = zeros[0] if zeros else 0
    with np.errstate(all="ignore"):  # stamps far apart overflow to inf: those rows are dropped, not an error
        parsed = [_stream(_seconds(t, zero, factor), v, max_gap_s, report) for t, v in tables]
    zero_s = float(zero) * factor
    if any(not len(s.t) for s in parsed):
        return Resampled(rate_hz, zero_s, [], report)
    origin = max(float(s.t[0]) for s in parsed)
    end = min(float(s.t[-1]) for s in parsed)
    for s in parsed:
        report.trimmed_s += max(0.0, origin - float(s.t[0])) + max(0.0, float(s.t[-1]) - end)
    spans = list(zip(parsed[0].starts.tolist(), parsed[0].ends.tolist()))
    for s in parsed[1:]:
        spans = _intersect(spans, list(zip(s.starts.tolist(), s.ends.tolist())))
    period = 1.0 / rate_hz
    tol = SNAP * period
    segments: list[Segment] = []
    with np.errstate(all="ignore"):
        for lo, hi in spans:
            k0 = math.ceil((lo - origin) * rate_hz - SNAP) if math.isfinite((lo - origin) * rate_hz) else None
            k1 = math.floor((hi - origin) * rate_hz + SNAP) if math.isfinite((hi - origin) * rate_hz) else None
            if k0 is None or k1 is None or k1 < k0:
                continue
            # Far from the origin the float grid is coarser than a period: never more points than the span holds.
            n = min(k1 - k0 + 1, int((hi - lo) * rate_hz) + 2)
            q = np.clip(origin + (float(k0) + np.arange(n, dtype=np.float64)) * period, lo, hi)
            values = np.concatenate([_at(s, q, tol) for s in parsed], axis=1)
            segments.append(Segment(k0, values))
    report.segments = len(segments)
    report.samples_out = sum(len(s) for s in segments)
    return Resampled(rate_hz, zero_s + origin, segments, report)


def resample(
    stamps: np.ndarray | Sequence[float],
    samples: np.ndarray | Sequence[float],
    rate_hz: float,
    *,
    max_gap_s: float,
    unit: str = "s",
) -> Resampled:
    """One stream of ``(timestamps, samples)`` onto a grid at ``rate_hz`` from its first stamp (see :func:`align`)."""
    return align([(stamps, samples)], rate_hz, max_gap_s=max_gap_s, unit=unit)


def resample_table(
    table: np.ndarray, time_column: int, rate_hz: float, *, max_gap_s: float, unit: str = "auto"
) -> Resampled:
    """A table whose column ``time_column`` holds the timestamps: the other columns, in order, resampled.

    This is how a format with a timestamp column among its numeric columns reads it.
    """
    arr = np.asarray(table)
    if arr.ndim != 2 or not -arr.shape[1] <= time_column < arr.shape[1]:
        raise ValueError(f"time column {time_column} is not a column of a table of shape {arr.shape}")
    return resample(arr[:, time_column], np.delete(arr, time_column, axis=1), rate_hz, max_gap_s=max_gap_s, unit=unit)
