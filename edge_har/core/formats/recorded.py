"""Format ``recorded``: a set of the device's own recording sessions, read in place.

The layout is :mod:`edge_har.core.recording_layout`'s (what ``edge-har record`` writes, what
serve stores and exports): each folder holding ``recording.json`` is one session, with CSV
parts of time-stamped raw samples and a ``labels.csv`` of segments in unix seconds. Time stamps
pick the samples of a segment (start <= t < end); a session is cut into pieces wherever its
time stamps jump by more than ``GAP_PERIODS`` sample periods (a pause, a lost part, a clock
step), so no window spans a gap. The segments of one piece become Recordings through
:func:`~edge_har.core.formats.segments.segments_to_recordings` (same-label overlaps merge,
unlabelled samples are left out or become ``--unlabelled-class``), as for format ``intervals``.
Channels, rate, scale, offset and units come from ``recording.json`` and must agree across
the sessions of a set.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import Field

from edge_har.core.formats.base import DataFormat, Dataset, DatasetError, FormatOptions
from edge_har.core.formats.common import relative, scaled_dataset, unlabelled_class_field
from edge_har.core.formats.segments import OVERLAP, Segment, segments_to_recordings
from edge_har.core.recording_layout import (
    DETECT_DEPTH,
    LABELS_FILE,
    LAYOUT_FILE,
    LabelSegment,
    LayoutError,
    PartsRead,
    RecordingMeta,
    find_overlap,
    read_labels,
    read_meta,
    read_parts_detail,
    session_dirs,
)
from edge_har.core.recordings import Recording

log = logging.getLogger(__name__)

NAME = "recorded"
GAP_PERIODS = 3.0  # a step in t over this many sample periods splits a session into pieces


class RecordedOptions(FormatOptions):
    """A recording set says its channels, rate and scaling in recording.json; only the labels' reading is chosen."""

    unlabelled_class: Optional[str] = unlabelled_class_field()
    interval_overlap: Optional[Literal["error", "drop"]] = Field(
        None,
        description="segments of different labels that overlap: an error naming both lines (default), or drop: "
        "the contested samples belong to neither, e.g. --interval-overlap drop",
    )


class RecordedFormat(DataFormat):
    name = NAME
    options = RecordedOptions
    detects = f"a folder holding {LAYOUT_FILE} up to {DETECT_DEPTH} levels down (edge-har record's sessions)"
    needs = "folder"
    defaults = {"interval_overlap": "error"}
    hint = "; a recording set's recording.json gives its channels, rate and scaling"

    def detect(self, path: Path) -> bool:
        return path.is_dir() and has_session(path)

    def load(self, path: Path, options: RecordedOptions) -> Dataset:
        return load_recorded_set(
            path, unlabelled_class=options.unlabelled_class, interval_overlap=options.interval_overlap or "error"
        )


def has_session(root: Path, max_depth: int = DETECT_DEPTH) -> bool:
    """True when ``root`` or a folder at most ``max_depth`` levels below holds ``recording.json`` (stops at the first)."""
    for folder, dirs, files in os.walk(root):
        if LAYOUT_FILE in files:
            return True
        depth = len(Path(folder).relative_to(root).parts)
        dirs[:] = [] if depth >= max_depth else [d for d in dirs if not d.startswith(".")]
    return False


def _fmt(t: float | None) -> str:
    return "open" if t is None else f"{t:.6f}"


def _same(first: tuple[Path, RecordingMeta], path: Path, meta: RecordingMeta) -> None:
    """Every session of a set has the first one's channels, rate and scaling; else an error naming both files."""
    ref_path, ref = first
    for what, mine, theirs in (
        ("channels", ",".join(meta.channels), ",".join(ref.channels)),
        ("sample_rate_hz", f"{meta.sample_rate_hz:g}", f"{ref.sample_rate_hz:g}"),
        ("scale", _per_channel(meta.scale, meta, 1.0), _per_channel(ref.scale, ref, 1.0)),
        ("offset", _per_channel(meta.offset, meta, 0.0), _per_channel(ref.offset, ref, 0.0)),
        ("units", repr(meta.units), repr(ref.units)),
    ):
        if mine != theirs:
            raise DatasetError(
                f"{path}: {what} {mine}, but {ref_path} has {theirs}; every session of a recording set "
                "needs the same channels, rate and scaling"
            )


def _per_channel(values: list[float] | None, meta: RecordingMeta, default: float) -> str:
    """Scale or offset as one value per channel (null: the default; one value: for every channel)."""
    full = [default] * len(meta.channels) if values is None else values * (len(meta.channels) // len(values))
    return ",".join(f"{v:g}" for v in full)


def pieces_of(t: np.ndarray, rate: float) -> list[tuple[int, int]]:
    """[a, b) runs of samples without a step back in time or a step forward over ``GAP_PERIODS`` periods."""
    if len(t) == 0:
        return []
    dt = np.diff(t)
    cuts = np.flatnonzero((dt > GAP_PERIODS / rate) | (dt < 0)) + 1
    edges = [0, *cuts.tolist(), len(t)]
    return list(zip(edges[:-1], edges[1:]))


def _source(session: Path, parts: PartsRead, first: int, last: int) -> str:
    """``<session>/part-00000.csv:rows 2-501`` (file lines; the header is line 1), or from one part's row to another's."""
    pa, pb = int(parts.part_of[first]), int(parts.part_of[last])
    la, lb = int(parts.line_of[first]), int(parts.line_of[last])
    if pa == pb:
        return f"{session / parts.parts[pa].name}:rows {la}-{lb}"
    return f"{session / parts.parts[pa].name}:row {la} to {parts.parts[pb].name}:row {lb}"


def _session_recordings(
    session: Path,
    meta: RecordingMeta,
    labels: list[LabelSegment],
    parts: PartsRead,
    *,
    unlabelled_class: str | None,
    overlap: str,
) -> tuple[list[Recording], int]:
    """One session's labelled stretches, piece by piece; and the count of samples left out."""
    labels_path = session / LABELS_FILE
    rate = meta.sample_rate_hz
    out: list[Recording] = []
    left_out = 0
    for p0, p1 in pieces_of(parts.t, rate):
        tp = parts.t[p0:p1]
        segs = []
        for seg in labels:
            a = int(np.searchsorted(tp, seg.start, "left"))
            b = int(np.searchsorted(tp, seg.stop, "left"))
            if b > a:  # index bounds, both inclusive, as segments_to_recordings takes samples
                segs.append(Segment(session.name, seg.label, a, b - 1, meta.effective_subject, seg.line or 0))
        if not segs and not unlabelled_class:
            left_out += p1 - p0
            continue
        # The rows are cut as global indices, so each piece's source names its part files and lines.
        index = np.arange(p0, p1, dtype=np.int64)[:, None]
        cut, dropped = segments_to_recordings(
            index,
            segs,
            source=str(session),
            subject=meta.effective_subject,
            rate=rate,
            units="samples",
            first_sample=0,
            annotations=labels_path,
            unlabelled_class=unlabelled_class,
            overlap=overlap,
        )
        left_out += dropped
        for rec in cut:
            rows = rec.samples[:, 0]
            rec.samples = parts.samples[rows]
            rec.source = _source(session, parts, int(rows[0]), int(rows[-1]))
            out.append(rec)
    return out, left_out


def load_recorded_set(
    root: str | Path,
    *,
    unlabelled_class: str | None = None,
    interval_overlap: str = "error",
    name: str | None = None,
) -> Dataset:
    """Every session under ``root`` (see the module docstring); one Recording per labelled stretch of a piece.

    A session without labels contributes nothing (one info line). Sessions of other channels, rate
    or scaling than the first are an error naming both ``recording.json`` files; overlapping segments
    of different labels an error naming both ``labels.csv`` lines unless ``interval_overlap="drop"``.
    """
    root = Path(root)
    if interval_overlap not in OVERLAP:
        raise DatasetError(f"--interval-overlap {interval_overlap!r}: choose one of {', '.join(OVERLAP)}")
    sessions = session_dirs(root)
    if not sessions:
        raise DatasetError(f"{root}: no {LAYOUT_FILE} at most {DETECT_DEPTH} folders down; not a recording set")
    first: tuple[Path, RecordingMeta] | None = None
    recordings: list[Recording] = []
    read: list[Path] = []
    skipped: dict[str, int] = {}
    left_out = 0
    unlabelled = 0
    for session in sessions:
        try:
            meta = read_meta(session)
            if first is None:
                first = (session / LAYOUT_FILE, meta)
            else:
                _same(first, session / LAYOUT_FILE, meta)
            read.append(session / LAYOUT_FILE)
            labels = read_labels(session)
            if not labels:
                log.info("%s: no labels; the session contributes nothing", session)
                unlabelled += 1
                continue
            if interval_overlap == "error":
                pair = find_overlap(labels)
                if pair is not None:
                    a, b = pair
                    raise DatasetError(
                        f"{session / LABELS_FILE}:{b.line}: segment {b.label} ({_fmt(b.start)}-{_fmt(b.end)}) overlaps "
                        f"line {a.line} ({a.label}, {_fmt(a.start)}-{_fmt(a.end)}); give each sample one label, or pass "
                        "--interval-overlap drop to leave the contested samples out"
                    )
            parts = read_parts_detail(session, channels=meta.channels)
        except LayoutError as exc:
            raise DatasetError(str(exc)) from None
        read.append(session / LABELS_FILE)
        read += parts.parts
        for p in parts.torn:
            skipped[relative(str(p), root)] = 1
        pieces, dropped = _session_recordings(
            session, meta, labels, parts, unlabelled_class=unlabelled_class, overlap=interval_overlap
        )
        recordings += pieces
        left_out += dropped
    if left_out:
        log.info("%s: %d sample(s) outside every labelled segment (or contested) left out", root, left_out)
    assert first is not None
    if not recordings:
        raise DatasetError(
            f"{root}: no labelled samples in {len(sessions)} session(s)"
            + (
                f" ({unlabelled} without labels; label them on serve's Label page or with edge-har record)"
                if unlabelled
                else ""
            )
        )
    meta0 = first[1]
    return scaled_dataset(
        recordings=recordings,
        channels=tuple(meta0.channels),
        rate=meta0.sample_rate_hz,
        scale=meta0.scale or (1.0,),
        offset=meta0.offset or (0.0,),
        units=meta0.units,
        files=read,
        where=root,
        hash_root=root,
        name=name or root.resolve().name,
        root=root,
        format=NAME,
        path=root,
        skipped=skipped,
    )
