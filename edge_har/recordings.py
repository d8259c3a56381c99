"""Labelled recordings and the readers of their file formats.

These readers serve both the workstation loaders (``convert.datasets``) and the
device's replay source, so they live on the device side and import no
TensorFlow. A ``Recording`` holds raw values exactly as the file has them;
scaling to physical units happens in ``edge_har.preprocessing``.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)


class RecordingError(ValueError):
    """Bad input data; the message names the file (and line, where there is one)."""


@dataclass
class Recording:
    """One continuous recording of one activity by one subject."""

    samples: np.ndarray  # (n, channels) float32, raw values as read
    label: str
    source: str  # file path, plus a row range for recordings cut from one long CSV
    subject: str | None = None
    sample_rate_hz: float | None = None

    def __len__(self) -> int:
        return len(self.samples)


# ------------------------------------------------------------------ readers

_SPLIT = re.compile(r"[\s,;]+")
MODEL_SUFFIX = "_MODEL"


@dataclass
class ReadResult:
    """Samples read from one file, and how many lines ``skip_bad`` dropped."""

    samples: np.ndarray
    skipped: int = 0


def _parse_line(line: str) -> list[str]:
    return [tok for tok in _SPLIT.split(line.strip()) if tok]


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_samples_result(
    path: str | Path, *, n_channels: int | None = None, skip_bad: bool = False, start_line: int = 1
) -> ReadResult:
    """Read numeric rows separated by white space, commas or semicolons.

    A first line whose fields are all non-numeric is taken as a header and
    skipped; anything else that does not parse is an error naming file and
    line, or, with ``skip_bad``, a warning and a count.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise RecordingError(f"{path}: not a text file ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    rows: list[list[float]] = []
    width = n_channels
    skipped = 0
    first_data_line = True
    for lineno, line in enumerate(text.splitlines(), start=start_line):
        tokens = _parse_line(line)
        if not tokens:
            continue
        problem = None
        if not all(_is_number(t) for t in tokens):
            if first_data_line and not any(_is_number(t) for t in tokens):
                first_data_line = False
                continue  # a header
            bad = next(t for t in tokens if not _is_number(t))
            problem = f"text {bad!r} in a number column"
        first_data_line = False
        if problem is None:
            values = [float(t) for t in tokens]
            if not all(np.isfinite(values)):
                problem = "a non-finite value (nan or inf)"
            elif width is None:
                width = len(values)
            elif len(values) != width:
                problem = f"{len(values)} columns where the file has {width}"
        if problem is not None:
            if not skip_bad:
                raise RecordingError(f"{path}:{lineno}: {problem}: {line.strip()[:80]!r}")
            skipped += 1
            continue
        rows.append(values)
    if skipped:
        log.warning("%s: skipped %d malformed line(s)", path, skipped)
    if not rows:
        raise RecordingError(f"{path}: no numeric samples")
    return ReadResult(np.asarray(rows, dtype=np.float32), skipped)


def read_samples(
    path: str | Path, *, n_channels: int | None = None, skip_bad: bool = False, start_line: int = 1
) -> np.ndarray:
    """(n, C) float32 samples of one recording file; see :func:`read_samples_result`."""
    return read_samples_result(path, n_channels=n_channels, skip_bad=skip_bad, start_line=start_line).samples


def list_folder_files(
    root: str | Path, *, extensions: Sequence[str] = (".txt", ".csv"), include_model: bool = False
) -> list[tuple[str, Path]]:
    """(class, file) pairs of a folder-of-recordings data set, sorted for reproducibility.

    Folders ending in ``_MODEL`` (HMP's extra model trials) are skipped unless
    ``include_model``; then they count as their class without the suffix.
    """
    root = Path(root)
    if not root.is_dir():
        raise RecordingError(f"{root}: not a folder")
    pairs: list[tuple[str, Path]] = []
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise RecordingError(f"{root}: no class folders (expected <root>/<Class>/<recording>{extensions[0]})")
    for folder in class_dirs:
        label = folder.name
        if label.endswith(MODEL_SUFFIX):
            if not include_model:
                continue
            label = label[: -len(MODEL_SUFFIX)]
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in extensions)
        if not files:
            raise RecordingError(f"{folder}: empty class folder (no {'/'.join(extensions)} files)")
        pairs.extend((label, f) for f in files)
    return pairs


def load_folder_recordings(
    root: str | Path,
    *,
    extensions: Sequence[str] = (".txt", ".csv"),
    subject_regex: str | None = None,
    include_model: bool = False,
    skip_bad: bool = False,
    sample_rate_hz: float | None = None,
    n_channels: int | None = None,
    skipped: dict[str, int] | None = None,
) -> list[Recording]:
    """``<root>/<Class>/<recording>`` files as recordings; ``skipped`` collects skip counts per file."""
    pattern = re.compile(subject_regex) if subject_regex else None
    out = []
    for label, file in list_folder_files(root, extensions=extensions, include_model=include_model):
        result = read_samples_result(file, n_channels=n_channels, skip_bad=skip_bad)
        if result.skipped and skipped is not None:
            skipped[str(file)] = result.skipped
        subject = None
        if pattern is not None:
            match = pattern.search(file.name)
            if match:
                subject = match.group(1) if match.groups() else match.group(0)
        out.append(Recording(result.samples, label, str(file), subject, sample_rate_hz))
    return out


def load_long_csv_recordings(
    path: str | Path,
    *,
    label_col: str,
    channel_cols: Sequence[str] | None = None,
    subject_col: str | None = None,
    timestamp_col: str | None = None,
    skip_bad: bool = False,
    sample_rate_hz: float | None = None,
    n_channels: int | None = None,
    skipped: dict[str, int] | None = None,
) -> list[Recording]:
    """One long CSV with a header; consecutive rows of one (label, subject) form a recording.

    Without ``channel_cols`` every other column is a channel. With a timestamp
    column (seconds) and no rate, the rate is the inverse of the median step.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            sample = fh.read(4096)
            fh.seek(0)
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
            except csv.Error:
                dialect = csv.excel
            reader = csv.reader(fh, dialect)
            header = [h.strip() for h in next(reader, [])]
            body = list(reader)
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if not header:
        raise RecordingError(f"{path}: empty file (a header line is required)")

    def col(name: str | None, what: str) -> int | None:
        if name is None:
            return None
        if name not in header:
            raise RecordingError(f"{path}: no {what} column {name!r}; the header has {', '.join(header)}")
        return header.index(name)

    i_label = col(label_col, "label")
    i_subject = col(subject_col, "subject")
    i_time = col(timestamp_col, "timestamp")
    if channel_cols:
        i_channels = [col(c, "channel") for c in channel_cols]
    else:
        used = {i_label, i_subject, i_time}
        i_channels = [i for i in range(len(header)) if i not in used]
    if n_channels is not None and len(i_channels) != n_channels:
        raise RecordingError(f"{path}: {len(i_channels)} channel columns, the model takes {n_channels}")

    recordings: list[Recording] = []
    current: list[list[float]] = []
    times: list[float] = []
    key: tuple[str, str | None] | None = None
    start_row = 0
    n_skipped = 0

    def flush(end_row: int) -> None:
        if current and key is not None:
            recordings.append(
                Recording(
                    np.asarray(current, np.float32), key[0], f"{path}:rows {start_row}-{end_row}", key[1], sample_rate_hz
                )
            )

    all_times: list[np.ndarray] = []
    for lineno, row in enumerate(body, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        try:
            if len(row) != len(header):
                raise ValueError(f"{len(row)} fields where the header has {len(header)}")
            values = []
            for i in i_channels:
                v = float(row[i])
                if not np.isfinite(v):
                    raise ValueError(f"non-finite value in column {header[i]!r}")
                values.append(v)
            t = float(row[i_time]) if i_time is not None else None
        except ValueError as exc:
            msg = str(exc)
            if msg.startswith("could not convert"):
                msg = f"text in a number column ({msg.split(':', 1)[-1].strip()})"
            if not skip_bad:
                raise RecordingError(f"{path}:{lineno}: {msg}") from None
            n_skipped += 1
            continue
        row_key = (row[i_label].strip(), row[i_subject].strip() if i_subject is not None else None)
        if row_key != key:
            flush(lineno - 1)
            if times:
                all_times.append(np.asarray(times))
            current, times, key, start_row = [], [], row_key, lineno
        current.append(values)
        if t is not None:
            times.append(t)
    flush(len(body) + 1)
    if times:
        all_times.append(np.asarray(times))
    if n_skipped:
        log.warning("%s: skipped %d malformed row(s)", path, n_skipped)
        if skipped is not None:
            skipped[str(path)] = n_skipped
    if not recordings:
        raise RecordingError(f"{path}: no data rows")
    if sample_rate_hz is None and all_times:
        steps = np.concatenate([np.diff(t) for t in all_times if len(t) > 1] or [np.asarray([])])
        steps = steps[steps > 0]
        if len(steps):
            rate = float(1.0 / np.median(steps))
            for r in recordings:
                r.sample_rate_hz = rate
    return recordings
