"""A timestamp column in a table format: its options, and the recordings resampled onto a regular rate.

The folder, long-CSV and file-name formats take ``--timestamp-column`` (a header name or a 0-based
index): its values place each row in time, and every recording is interpolated onto a regular grid
(:func:`edge_har.core.timeseries.resample`), so a phone's jittered or a logger's irregular samples
become the evenly spaced samples a model's windows assume. A step longer than ``--max-gap`` is
never interpolated across: the recording is split there, its pieces stay in one split group, and
the gaps are counted in :attr:`Dataset.resampling`. The stamps are read as float64: float32 rounds
nanoseconds since boot to 0.26 ms and milliseconds since 1970 to 131 ms.

What the data decide (a detected unit, the rate, the gap bound) is kept in the reader record
(:attr:`Dataset.resolved_options`), so the device's replay of other files cuts the same grid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import numpy as np
from pydantic import Field

from edge_har.core.formats.base import DatasetError, FormatOptions
from edge_har.core.recordings import Recording
from edge_har.core.timeseries import TIME_UNITS, ResampleReport, detect_time_unit, resample

log = logging.getLogger(__name__)

UNIT_DEFAULT = "auto"
GAP_S = 0.25  # --max-gap's floor: a few lost samples at any usual rate are bridged, a pause is not
GAP_STEPS = 5  # ... or five of the data's own sample periods, for slow sensors
GAP_CAP_S = 60.0  # ... but never more than a minute unless --max-gap says so
MAX_SAMPLES = 50_000_000  # per recording after resampling: more means a wrong unit or rate, not a recording
OPTIONS = ("timestamp_column", "timestamp_unit", "resample_rate", "max_gap")


def timestamp_column_field(description: str = "") -> Any:
    return Field(
        None,
        min_length=1,
        description=description
        or "a column of timestamps (header name or 0-based index), left out of the channels: each recording is "
        "interpolated by them onto a regular rate (--resample-rate), split at gaps (--max-gap), "
        "e.g. --timestamp-column t",
        json_schema_extra={"metavar": "NAME|INDEX"},
    )


def timestamp_unit_field() -> Any:
    return Field(
        None,
        description="unit of --timestamp-column (default auto: read off the median step, taking the unit "
        "that puts the rate between 1 Hz and 1 kHz; the unit found is recorded in bundle.json), "
        "e.g. --timestamp-unit ms",
    )


def resample_rate_field() -> Any:
    return Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="with --timestamp-column: the regular rate (Hz) the samples are interpolated onto, the data "
        "set's rate from then on (default --sample-rate, else the data's own rate, 1 / the median step; "
        "give the model's rate to interpolate once), e.g. --resample-rate 50",
        json_schema_extra={"metavar": "HZ", "cli_type": "rate"},
    )


def max_gap_field() -> Any:
    return Field(
        None,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description=f"with --timestamp-column: seconds between two stamps beyond which nothing is interpolated: "
        f"the recording is split there (counted) (default {GAP_S:g} s or {GAP_STEPS} of the data's own "
        "sample periods, whichever is longer), e.g. --max-gap 0.5",
        json_schema_extra={"metavar": "SECONDS"},
    )


class TimestampOptions(FormatOptions):
    """The options of a format whose tables may hold a timestamp column."""

    timestamp_column: Optional[str] = timestamp_column_field()
    timestamp_unit: Optional[Literal["auto", "s", "ms", "us", "ns"]] = timestamp_unit_field()
    resample_rate: Optional[float] = resample_rate_field()
    max_gap: Optional[float] = max_gap_field()


def check_options(options: Any, where: Path) -> None:
    """The resampling options apply with a timestamp column only (one line naming the flag)."""
    if getattr(options, "timestamp_column", None) is not None:
        return
    for key in OPTIONS[1:]:
        if getattr(options, key, None) is not None:
            raise DatasetError(
                f"{where}: --{key.replace('_', '-')} needs --timestamp-column (the stamps to resample by)"
            )


def time_column(spec: str, header: Sequence[str] | None, width: int, where: Path | str) -> int:
    """The 0-based index ``--timestamp-column`` names in a table of ``width`` columns."""
    if header is not None and spec in header:
        return list(header).index(spec)
    if spec.isdigit() and int(spec) < width:
        return int(spec)
    names = f"; the header has {', '.join(header)}" if header else ""
    raise DatasetError(f"{where}: --timestamp-column {spec!r}: no such column (0..{width - 1}{names})")


def split_table(table: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(stamps as float64, the other columns as float32) of a table read as float64."""
    stamps = np.ascontiguousarray(table[:, index], dtype=np.float64)
    with np.errstate(over="ignore"):  # beyond float32: inf, dropped by the resampler (counted)
        values = np.delete(table, index, axis=1).astype(np.float32)
    return stamps, values


@dataclass
class TimedRecording:
    """A recording as read, with one float64 stamp per sample and its split group."""

    recording: Recording
    stamps: np.ndarray
    group: str


@dataclass
class Resampled:
    recordings: list[Recording]
    groups: list[str]
    summary: dict[str, Any]
    resolved: dict[str, Any]  # timestamp_unit, resample_rate, max_gap as used
    rate_hz: float


def _median_step(stamps: Sequence[np.ndarray]) -> float | None:
    steps = [np.diff(t[np.isfinite(t)]) for t in stamps if len(t) > 1]
    forward = np.concatenate([s[s > 0] for s in steps]) if steps else np.empty(0)
    return float(np.median(forward)) if len(forward) else None


def resample_recordings(
    items: Sequence[TimedRecording],
    options: Any,
    *,
    nominal_rate_hz: float | None,
    where: Path,
) -> Resampled:
    """Every recording interpolated onto one regular rate by its stamps, split at gaps (module doc).

    The unit is ``options.timestamp_unit`` (auto: from the median step over all recordings); the
    rate ``options.resample_rate``, else ``nominal_rate_hz`` (``--sample-rate``), else the data's
    own; each piece of a split recording keeps the recording's split group.
    """
    column = options.timestamp_column
    median = _median_step([i.stamps for i in items])
    unit = options.timestamp_unit or UNIT_DEFAULT
    if unit == "auto":
        found = detect_time_unit(np.array([0.0, median])) if median is not None else None
        if found is None:
            raise DatasetError(
                f"{where}: --timestamp-column {column}: its values never go forward, so their unit cannot be told; "
                "check the column, or give --timestamp-unit"
            )
        unit = found
    own_hz = 1.0 / (median * TIME_UNITS[unit]) if median is not None else None
    rate = options.resample_rate or nominal_rate_hz or own_hz
    if rate is None or not np.isfinite(rate) or rate <= 0:
        raise DatasetError(
            f"{where}: --timestamp-column {column}: no rate to resample to (its values never go forward); "
            "give --resample-rate"
        )
    rate = float(rate)
    max_gap = float(options.max_gap or min(GAP_CAP_S, max(GAP_S, GAP_STEPS / own_hz if own_hz else GAP_S)))
    report = ResampleReport()
    recordings: list[Recording] = []
    groups: list[str] = []
    empty: list[str] = []
    for item in items:
        rec = item.recording
        _check_size(item.stamps, TIME_UNITS[unit], rate, max_gap, rec.source, column)
        try:
            out = resample(item.stamps, rec.samples, rate, max_gap_s=max_gap, unit=unit)
        except ValueError as exc:
            raise DatasetError(f"{rec.source}: --timestamp-column {column}: {exc}") from None
        report.add(out.report)
        if not out.segments:
            empty.append(rec.source)
        n = len(out.segments)
        for k, segment in enumerate(out.segments):
            source = rec.source if n == 1 else f"{rec.source} (piece {k + 1} of {n})"
            samples = np.ascontiguousarray(segment.samples, dtype=np.float32)
            recordings.append(Recording(samples, rec.label, source, rec.subject, rate))
            groups.append(item.group)
    if not recordings:
        raise DatasetError(
            f"{where}: --timestamp-column {column}: no samples left after resampling ({report.summary()}); "
            "check the column and --timestamp-unit, or raise --max-gap"
        )
    if empty:
        log.warning("%s: %d recording(s) gave no samples after resampling, e.g. %s", where, len(empty), empty[0])
    summary = summarise(report, from_hz=own_hz, to_hz=rate, unit=unit, max_gap_s=max_gap, column=column)
    summary["recordings_without_samples"] = len(empty)
    log.info(
        "%s: resampled by timestamp column %s (%s) from about %s to %g Hz, split at gaps over %g s: %s",
        where,
        column,
        unit,
        f"{own_hz:.4g} Hz" if own_hz else "an unknown rate",
        rate,
        max_gap,
        report.summary(),
    )
    resolved = {"timestamp_unit": unit, "resample_rate": rate, "max_gap": max_gap}
    return Resampled(recordings, groups, summary, resolved, rate)


def _check_size(stamps: np.ndarray, factor: float, rate: float, max_gap: float, source: str, column: Any) -> None:
    """Refuse a recording whose gap-free stretches would give more than :data:`MAX_SAMPLES` samples
    (seconds read as nanoseconds' worth, a rate in kHz typed for Hz), before memory is spent on it."""
    t = np.sort(stamps[np.isfinite(stamps)])
    with np.errstate(all="ignore"):
        steps = np.diff(t) * factor
    covered = float(steps[np.isfinite(steps) & (steps <= max_gap)].sum()) if len(steps) else 0.0
    if covered * rate > MAX_SAMPLES:
        raise DatasetError(
            f"{source}: --timestamp-column {column}: {covered:.4g} s without gaps at {rate:g} Hz is over "
            f"{MAX_SAMPLES:,} samples; check --timestamp-unit, --resample-rate and --max-gap"
        )


def summarise(
    report: ResampleReport,
    *,
    from_hz: float | None,
    to_hz: float,
    unit: str,
    max_gap_s: float,
    column: str | None = None,
) -> dict[str, Any]:
    """``Dataset.resampling``: what resampling did, for bundle.json's provenance."""
    out: dict[str, Any] = {
        "from_hz": None if from_hz is None else round(float(from_hz), 6),
        "to_hz": float(to_hz),
        "timestamp_unit": unit,
        "max_gap_s": float(max_gap_s),
        "recordings_in": int(report.recordings),
        "pieces": int(report.segments),
        "gaps": int(report.gaps),
        "gap_s": round(float(report.gap_s), 6),
        "samples_in": int(report.samples_in),
        "samples_out": int(report.samples_out),
        "dropped_stamps": {
            "duplicate": int(report.duplicates),
            "out_of_order": int(report.out_of_order),
            "non_finite": int(report.non_finite),
        },
    }
    if report.trimmed_s:
        out["trimmed_s"] = round(float(report.trimmed_s), 6)
    if column is not None:
        out["timestamp_column"] = column
    return out
