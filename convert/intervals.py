"""Interval labels: recordings plus an annotation file of labelled segments, and the UCI HAPT preset.

Many public sets (UCI HAPT, PAMAP2-style logs, anything labelled from video) keep
each session as one long recording and put the labels in a separate file of
segments: ``recording, label, start, end``. This module reads that layout in
place and returns a ``Dataset`` whose recordings are the labelled segments, so
the rest of ``convert`` (split, windows, training) sees what it always sees: one
label per recording, windows never crossing a segment boundary.

* Several files per recording (one per sensor: ``acc_{recording}.txt`` and
  ``gyro_{recording}.txt``) are joined by row into one multi-channel recording;
  different row counts are an error naming both files.
* Samples outside every segment are left out, or become ``unlabelled_class``.
* Overlapping segments of one label are merged; of different labels they are an
  error naming both annotation lines, unless ``overlap="drop"`` (the contested
  samples then belong to neither).
* ``load_hapt`` knows the HAPT layout (J. L. Reyes-Ortiz, L. Oneto, A. Sama,
  X. Parra, D. Anguita, "Transition-Aware Human Activity Recognition Using
  Smartphones", Neurocomputing 171 (2016) 754-767; its README.txt):
  ``RawData/acc_expXX_userYY.txt``, ``gyro_...``, ``labels.txt`` (experiment,
  user, activity id, start, end: 1-based inclusive sample indices at 50 Hz) and
  ``activity_labels.txt``. Its predefined split is the UCI HAR protocol's
  (test subjects 2, 4, 9, 10, 12, 13, 18, 20, 24).

numpy only, like ``edge_har.convert.datasets``.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edge_har.convert.datasets import (
    Dataset,
    DatasetError,
    _channels,
    _labels,
    _rate,
    file_list_hash,
    scaled_dataset,
)
from edge_har.core.recordings import (
    Recording,
    RecordingError,
    compile_subject_regex,
    read_samples_result,
    subject_from_name,
)

log = logging.getLogger(__name__)

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

# UCI HAPT (version 2.1): 50 Hz, accelerometer in g, gyroscope in rad/s.
HAPT_NAME = "hapt"
HAPT_RATE_HZ = 50.0
HAPT_SENSORS = ("acc", "gyro")
HAPT_CHANNELS = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
HAPT_UNITS = "g (acc), rad/s (gyro)"
HAPT_FOLDER = "HAPT Data Set"
HAPT_FILE = re.compile(r"^acc_exp(\d+)_user(\d+)\.txt$")
# The UCI HAR protocol's test volunteers (the other 21 train), as subject ids of this loader.
UCI_HAR_TEST_SUBJECTS = (2, 4, 9, 10, 12, 13, 18, 20, 24)
HAPT_BASIC = ("WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING")


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


def _rows(path: Path) -> list[tuple[int, list[str]]]:
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
    rows = _rows(path)
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


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
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
    spans = sorted((a, b, label) for label, m in pieces for a, b in _runs(m))
    for a, b, label in spans:
        out.append(Recording(samples[a:b], label, f"{source}:rows {a + 1}-{b}", subject, rate))
    left_out = int((count == 0).sum()) if not unlabelled_class else 0
    return out, left_out + int(contested.sum())


def load_intervals(
    root: str | Path,
    *,
    annotations: str | Path,
    sample_rate_hz: float,
    files: Sequence[str] = (PLACEHOLDER,),
    interval_units: str = "samples",
    first_sample: int = 0,
    unlabelled_class: str | None = None,
    interval_overlap: str = "error",
    label_names: str | Path | dict[str, str] | None = None,
    subject_regex: str | None = None,
    channels: Sequence[str] | None = None,
    scale: Sequence[float] = (1.0,),
    offset: Sequence[float] = (0.0,),
    units: str = "",
    name: str | None = None,
) -> Dataset:
    """Recordings under ``root`` plus an annotation file of segments; one Recording per labelled stretch.

    ``files`` are paths relative to ``root`` with ``{recording}`` standing for
    the annotation's recording column (default: that column is the file); several
    are joined by row. Segment bounds are sample indices counted from
    ``first_sample``, both inclusive, or seconds (``interval_units="seconds"``:
    start <= t < end). A segment's subject is the annotation's subject column,
    else ``subject_regex`` searched in the recording id.
    """
    root = Path(root)
    annotations = Path(annotations)
    rate = _rate(sample_rate_hz, root, "interval labels need --sample-rate (Hz)")
    if interval_units not in UNITS:
        raise DatasetError(f"--interval-units {interval_units!r}: choose one of {', '.join(UNITS)}")
    if interval_overlap not in OVERLAP:
        raise DatasetError(f"--interval-overlap {interval_overlap!r}: choose one of {', '.join(OVERLAP)}")
    if not files or any(PLACEHOLDER not in f for f in files):
        raise DatasetError(f"--recording-files {','.join(files)!r}: every pattern needs {PLACEHOLDER}")
    names = read_label_names(label_names) if isinstance(label_names, (str, Path)) else label_names
    segments = read_annotations(annotations, units=interval_units, label_names=names)
    pattern = compile_subject_regex(subject_regex)
    by_recording: dict[str, list[Segment]] = {}
    for seg in segments:
        by_recording.setdefault(seg.recording, []).append(seg)
    recordings: list[Recording] = []
    read: list[Path] = []
    left_out = 0
    width: tuple[Path, int] | None = None
    for rec_id, segs in by_recording.items():
        paths = [root / f.replace(PLACEHOLDER, rec_id) for f in files]
        for p in paths:
            if not p.is_file():
                raise DatasetError(f"{annotations}:{segs[0].line}: recording {rec_id!r}: no file {p}")
        samples = read_joined(paths)
        if width is None:
            width = (paths[0], samples.shape[1])
        elif samples.shape[1] != width[1]:
            raise DatasetError(
                f"{paths[0]}: {samples.shape[1]} columns, but {width[0]} has {width[1]}; every recording needs the "
                "same channels"
            )
        read += paths
        subjects = {s.subject for s in segs}
        if len(subjects) > 1:
            raise DatasetError(
                f"{annotations}: recording {rec_id!r} has segments of several subjects ({', '.join(map(str, subjects))})"
            )
        subject = segs[0].subject or subject_from_name(pattern, rec_id)
        pieces, dropped = segments_to_recordings(
            samples,
            segs,
            source=str(paths[0]),
            subject=subject,
            rate=rate,
            units=interval_units,
            first_sample=first_sample,
            annotations=annotations,
            unlabelled_class=unlabelled_class,
            overlap=interval_overlap,
        )
        recordings += pieces
        left_out += dropped
    if left_out:
        log.info("%s: %d sample(s) outside every labelled segment (or contested) left out", annotations, left_out)
    if width is None or not recordings:
        raise DatasetError(f"{annotations}: no labelled samples")
    names_ = _channels(channels, width[1], root)
    hashed = read + [annotations]
    hash_root = Path(_common_root([root, annotations.parent]))
    return scaled_dataset(
        recordings=recordings,
        channels=names_,
        rate=rate,
        scale=scale,
        offset=offset,
        units=units,
        files=hashed,
        where=root,
        hash_root=hash_root,
        name=name or root.resolve().name,
        root=root,
        format="intervals",
        path=root,
    )


def _common_root(paths: Sequence[Path]) -> str:
    import os

    return os.path.commonpath([str(Path(p).resolve()) for p in paths])


# ------------------------------------------------------------------ UCI HAPT


def hapt_root(path: str | Path) -> Path | None:
    """The folder holding ``RawData/labels.txt`` of HAPT at or just under ``path`` (or ``path`` itself being RawData)."""
    path = Path(path)
    candidates = [path, path / HAPT_FOLDER, path.parent]
    if path.is_dir():
        candidates += sorted(p for p in path.iterdir() if p.is_dir())
    for c in candidates:
        raw = c / "RawData"
        if (raw / "labels.txt").is_file() and any(HAPT_FILE.match(f.name) for f in raw.iterdir()):
            if c == path.parent and path.name != "RawData":
                continue
            return c
    return None


def load_hapt(root: str | Path, *, unlabelled_class: str | None = None) -> Dataset:
    """UCI HAPT read in place: every labelled segment of every experiment, accelerometer + gyroscope.

    Channels acc_x..acc_z (g) and gyro_x..gyro_z (rad/s), 50 Hz; subject
    ``s<user>`` (s1..s30); the 12 activity names of activity_labels.txt. The
    predefined split is UCI HAR's: subjects 2, 4, 9, 10, 12, 13, 18, 20, 24 test,
    the other 21 train. Pick the six basic activities with ``--classes`` and
    the accelerometer alone with ``--columns acc_x,acc_y,acc_z``.
    """
    given = Path(root)
    base = hapt_root(given)
    if base is None:
        raise DatasetError(f"{given}: not the UCI HAPT layout (no RawData/labels.txt with acc_expXX_userYY.txt files)")
    raw = base / "RawData"
    labels_file = raw / "labels.txt"
    names_file = base / "activity_labels.txt"
    if not names_file.is_file():
        names_file = raw / "activity_labels.txt"
    names = read_label_names(names_file) if names_file.is_file() else None
    if names is None:
        log.warning("%s: no activity_labels.txt; classes are named by their numbers", base)
    segments: list[Segment] = []
    for lineno, fields in _rows(labels_file):
        if len(fields) != 5 or not all(f.isdigit() for f in fields):
            raise DatasetError(
                f"{labels_file}:{lineno}: expected 'experiment user activity start end' (5 whole numbers), "
                f"got {' '.join(fields)!r}"
            )
        exp, user, act, start, end = (int(f) for f in fields)
        label = names.get(str(act)) if names is not None else str(act)
        if label is None:
            raise DatasetError(
                f"{labels_file}:{lineno}: activity {act} is not in {names_file} (ids {', '.join(sorted(names or {}))})"
            )
        if end < start:
            raise DatasetError(f"{labels_file}:{lineno}: end {end} is before start {start}")
        segments.append(Segment(f"exp{exp:02d}_user{user:02d}", label, start, end, f"s{user}", lineno))
    by_recording: dict[str, list[Segment]] = {}
    for seg in segments:
        by_recording.setdefault(seg.recording, []).append(seg)
    recordings: list[Recording] = []
    read = [labels_file] + ([names_file] if names is not None else [])
    left_out = 0
    for rec_id, segs in sorted(by_recording.items()):
        paths = [raw / f"{sensor}_{rec_id}.txt" for sensor in HAPT_SENSORS]
        for p in paths:
            if not p.is_file():
                raise DatasetError(f"{labels_file}:{segs[0].line}: experiment {rec_id}: no file {p}")
        samples = read_joined(paths)
        if samples.shape[1] != len(HAPT_CHANNELS):
            raise DatasetError(f"{paths[0]}: {samples.shape[1]} columns in all, HAPT has 3 per sensor file")
        read += paths
        pieces, dropped = segments_to_recordings(
            samples,
            segs,
            source=str(paths[0]),
            subject=segs[0].subject,
            rate=HAPT_RATE_HZ,
            units="samples",
            first_sample=1,
            annotations=labels_file,
            unlabelled_class=unlabelled_class,
        )
        recordings += pieces
        left_out += dropped
    if left_out:
        log.info("%s: %d unlabelled sample(s) left out", labels_file, left_out)
    test = {f"s{s}" for s in UCI_HAR_TEST_SUBJECTS}
    predefined = {r.source: ("test" if r.subject in test else "train") for r in recordings}
    return Dataset(
        name=HAPT_NAME,
        root=base,
        recordings=recordings,
        labels=_labels(recordings, base),
        channels=HAPT_CHANNELS,
        sample_rate_hz=HAPT_RATE_HZ,
        units=HAPT_UNITS,
        file_list_sha256=file_list_hash(read, base),
        n_files=len(read),
        predefined_split=predefined,
        format="hapt",
        path=given,
    )
