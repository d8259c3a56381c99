"""Labelled segments of long recordings: the annotation file, label-name files, files joined by row,
and the cutting of a recording into one Recording per labelled stretch.

Shared by the formats that label recordings by intervals (``intervals``, ``hapt``).

* Several files per recording (one per sensor: ``acc_{recording}.txt`` and
  ``gyro_{recording}.txt``) are joined by row into one multi-channel recording;
  different row counts are an error naming both files.
* Samples outside every segment are left out, or become ``unlabelled_class``.
* Overlapping segments of one label are merged; of different labels they are an
  error naming both annotation lines, unless ``overlap="drop"`` (the contested
  samples then belong to neither).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edge_har.core.formats.base import DatasetError
from edge_har.core.recordings import Recording, RecordingError, read_samples_result

UNITS = ("samples", "seconds")
OVERLAP = ("error", "drop")
PLACEHOLDER = "{recording}"

# Column names of a generic annotation file's header, with the aliases accepted for each.
COLUMN_ALIASES = {
    "recording": ("recording", "file", "recording_id", "trial", "session", "experiment"),
    "label": ("label", "activity", "class"),
    "start": ("start", "begin", "from", "onset"),
    "end": ("end", "stop", "to", "offset"),
    "subject": ("subject", "user", "subject_id", "participant"),
}
POSITIONAL = ("recording", "label", "start", "end", "subject")


@dataclass
class Segment:
    """One labelled stretch of one recording, as the annotation file gives it."""

    recording: str
    label: str
    start: float
    end: float
    subject: str | None
    line: int  # line of the annotation file, for messages


# ------------------------------------------------------------------ the annotation file


def _delimiter(line: str) -> str | None:
    for d in ("\t", ";", ","):
        if d in line:
            return d
    return None


def read_rows(path: Path) -> list[tuple[int, list[str]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the annotation file: {exc.strerror or exc}") from exc
    lines = text.splitlines()
    first = next((line for line in lines if line.strip() and not line.lstrip().startswith("#")), None)
    if first is None:
        raise DatasetError(f"{path}: empty annotation file (no segments)")
    delimiter = _delimiter(first)
    out = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if delimiter is None:
            fields = line.split()
        else:
            fields = [f.strip() for f in next(csv.reader(io.StringIO(line), delimiter=delimiter))]
            if len(fields) > 1 and fields[-1] == "":
                fields.pop()  # a trailing delimiter
        out.append((lineno, fields))
    return out


def _header_columns(path: Path, lineno: int, header: list[str]) -> dict[str, int]:
    lower = [h.strip().lower() for h in header]
    found: dict[str, int] = {}
    for key, aliases in COLUMN_ALIASES.items():
        for alias in aliases:
            if alias in lower:
                found[key] = lower.index(alias)
                break
    missing = [k for k in ("recording", "label", "start", "end") if k not in found]
    if missing:
        raise DatasetError(
            f"{path}:{lineno}: the header ({', '.join(header)}) has no {', '.join(missing)} column; "
            f"accepted names: " + "; ".join(f"{k}: {'/'.join(COLUMN_ALIASES[k])}" for k in missing)
        )
    return found


def _number(path: Path, lineno: int, what: str, token: str, units: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise DatasetError(f"{path}:{lineno}: {what} {token!r} is not a number") from None
    if not math.isfinite(value):
        raise DatasetError(f"{path}:{lineno}: {what} {token!r} is not a finite number")
    if units == "samples" and value != int(value):
        raise DatasetError(
            f"{path}:{lineno}: {what} {token!r} is not a whole sample index (for seconds pass --interval-units seconds)"
        )
    return value


def read_annotations(
    path: str | Path, *, units: str = "samples", label_names: dict[str, str] | None = None
) -> list[Segment]:
    """The segments of an annotation file.

    Comma, semicolon, tab or white-space separated; lines starting with ``#``
    are comments. With a header, its names pick the columns (``recording``,
    ``label``, ``start``, ``end``, optional ``subject``, or an alias from
    ``COLUMN_ALIASES``, any case); without one, the columns are in that order.
    ``label_names`` maps label ids (``"1"``) to names (``"WALKING"``).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such annotation file")
    rows = read_rows(path)
    lineno, first = rows[0]
    if any(t.strip().lower() in COLUMN_ALIASES["start"] for t in first):
        columns = _header_columns(path, lineno, first)
        rows = rows[1:]
        width = len(first)
    else:
        if len(first) not in (4, 5):
            raise DatasetError(
                f"{path}:{lineno}: {len(first)} fields; without a header an annotation line is "
                "'recording label start end [subject]'"
            )
        columns = {k: i for i, k in enumerate(POSITIONAL[: len(first)])}
        width = len(first)
    segments = []
    for lineno, fields in rows:
        if len(fields) != width:
            raise DatasetError(f"{path}:{lineno}: {len(fields)} fields where the first line has {width}")
        label = fields[columns["label"]]
        recording = fields[columns["recording"]]
        if not label or not recording:
            raise DatasetError(f"{path}:{lineno}: empty {'label' if not label else 'recording'}")
        if label_names is not None:
            if label not in label_names:
                raise DatasetError(
                    f"{path}:{lineno}: label {label!r} is not in the label names ({', '.join(sorted(label_names))})"
                )
            label = label_names[label]
        start = _number(path, lineno, "start", fields[columns["start"]], units)
        end = _number(path, lineno, "end", fields[columns["end"]], units)
        if end < start:
            raise DatasetError(
                f"{path}:{lineno}: end {fields[columns['end']]} is before start {fields[columns['start']]}"
            )
        subject = fields[columns["subject"]] if "subject" in columns else None
        segments.append(Segment(recording, label, start, end, subject or None, lineno))
    if not segments:
        raise DatasetError(f"{path}: a header but no segments")
    return segments


def read_label_names(path: str | Path) -> dict[str, str]:
    """``<id> <name>`` lines (HAPT's and UCI HAR's activity_labels.txt) as {id: name}."""
    path = Path(path)
    names: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the label names: {exc}") from exc
    for lineno, line in enumerate(lines, 1):
        parts = line.replace(",", " ").split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DatasetError(f"{path}:{lineno}: expected '<id> <name>', got {line.strip()!r}")
        names[parts[0]] = parts[1]
    return names


# ------------------------------------------------------------------ recordings


def read_joined(files: Sequence[Path]) -> np.ndarray:
    """The files of one recording (one per sensor) joined by row into one (n, sum of columns) array.

    Different row counts are a DatasetError naming both files, since a row of one
    sensor file is the same instant as that row of the other. There is no
    ``skip_bad`` here: dropping a line would shift every later sample against the
    segments' indices and against the other sensors' rows.
    """
    parts: list[np.ndarray] = []
    for f in files:
        try:
            samples = read_samples_result(f).samples
        except RecordingError as exc:
            raise DatasetError(f"{exc} (interval labels index samples by row, so bad lines cannot be skipped)") from exc
        if parts and len(samples) != len(parts[0]):
            raise DatasetError(
                f"{f}: {len(samples)} rows, but {files[0]} has {len(parts[0])}; the files of one recording "
                "are joined row by row and must have the same length"
            )
        parts.append(samples)
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def runs_of(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in a boolean vector."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def _sample_range(
    seg: Segment, n: int, rate: float, units: str, first_sample: int, where: Path, what: str
) -> tuple[int, int]:
    """[a, b) rows of a segment: samples inclusive from ``first_sample``, or seconds start <= t < end."""
    if units == "samples":
        a, b = int(seg.start) - first_sample, int(seg.end) - first_sample + 1
        if a < 0:
            raise DatasetError(
                f"{where}:{seg.line}: start {int(seg.start)} is before the first sample ({first_sample}; "
                "see --first-sample)"
            )
    else:
        a, b = int(math.ceil(seg.start * rate - 1e-9)), int(math.ceil(seg.end * rate - 1e-9))
        if seg.start < 0:
            raise DatasetError(f"{where}:{seg.line}: start {seg.start:g} s is negative")
    if b > n:
        end = f"{int(seg.end)}" if units == "samples" else f"{seg.end:g} s"
        raise DatasetError(
            f"{where}:{seg.line}: end {end} is past the end of {what} ({n} samples"
            + (f", {n / rate:g} s" if units == "seconds" else "")
            + ")"
        )
    return a, b


def segments_to_recordings(
    samples: np.ndarray,
    segments: Sequence[Segment],
    *,
    source: str,
    subject: str | None,
    rate: float,
    units: str,
    first_sample: int,
    annotations: Path,
    unlabelled_class: str | None = None,
    overlap: str = "error",
) -> tuple[list[Recording], int]:
    """The labelled stretches of one recording as Recordings; and the count of samples left out.

    ``source`` is the recording's first file: each piece's source is
    ``<source>:rows A-B`` (1-based file lines, inclusive), unique and stable.
    """
    n = len(samples)
    masks: dict[str, np.ndarray] = {}
    owners: list[tuple[Segment, int, int]] = []
    for seg in segments:
        a, b = _sample_range(seg, n, rate, units, first_sample, annotations, source)
        masks.setdefault(seg.label, np.zeros(n, bool))[a:b] = True
        owners.append((seg, a, b))
    count = np.zeros(n, np.int16)
    for m in masks.values():
        count += m
    contested = count > 1
    if contested.any() and overlap == "error":
        i = int(np.flatnonzero(contested)[0])
        both = [s for s, a, b in owners if a <= i < b]
        first = both[0]
        other = next(s for s in both if s.label != first.label)
        raise DatasetError(
            f"{annotations}:{other.line}: segment {other.label} ({other.start:g}-{other.end:g}) of {other.recording} "
            f"overlaps line {first.line} ({first.label}, {first.start:g}-{first.end:g}); give each sample one label, "
            "or pass --interval-overlap drop to leave the contested samples out"
        )
    out: list[Recording] = []
    pieces = [(label, m & ~contested) for label, m in masks.items()]
    if unlabelled_class:
        pieces.append((unlabelled_class, count == 0))
    spans = sorted((a, b, label) for label, m in pieces for a, b in runs_of(m))
    for a, b, label in spans:
        out.append(Recording(samples[a:b], label, f"{source}:rows {a + 1}-{b}", subject, rate))
    left_out = int((count == 0).sum()) if not unlabelled_class else 0
    return out, left_out + int(contested.sum())
