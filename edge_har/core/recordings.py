"""Labelled recordings and the readers of their file formats.

These readers serve both the workstation loaders (``edge_har.convert.datasets``) and the
device's replay source, so they live on the device side and import nothing but
numpy. A ``Recording`` holds raw values exactly as the file has them; scaling to
physical units happens in ``edge_har.core.preprocessing``.

Two layouts are read here:

* one recording per file, numeric columns (``read_samples``), gathered as
  ``<root>/<Class>/<recording>.txt|.csv`` by ``load_folder_recordings``;
* one long CSV with a header, cut into recordings wherever the (label,
  subject, trial) triple changes (``load_long_csv_recordings``).

Every reader error is a ``RecordingError`` whose message starts with
``file:line`` where a line is at fault, so a user can open the file there.
With ``skip_bad`` the bad lines are dropped instead, with one warning per file
and a count the caller can report (``ReadResult.skipped``, the ``skipped``
dictionaries), also by reason (``ReadResult.reasons``, the ``reasons``
dictionaries): the same reason names the device's live sources count dropped
samples by (``columns``, ``text``, ``nan``, plus ``encoding`` for a line that is
not UTF-8), so a replay's stats read like a sensor's. Only with ``skip_bad`` is
a line of invalid UTF-8 one bad line; without it (the training loaders'
default) the whole file is refused, naming the byte.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from edge_har.core.errors import EdgeHarError
from edge_har.core.progress import file_read

log = logging.getLogger(__name__)

MODEL_SUFFIX = "_MODEL"

# Why a line was skipped (skip_bad); the same names as the device sources' REASON_* constants.
BAD_COLUMNS = "columns"  # wrong number of fields, or an empty one
BAD_TEXT = "text"  # a field that is not a number
BAD_NON_FINITE = "nan"  # NaN or +-inf
BAD_ENCODING = "encoding"  # bytes that are not UTF-8
SEMICOLON, COMMA, WHITESPACE = ";", ",", "whitespace"


class RecordingError(EdgeHarError, ValueError):
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


# ------------------------------------------------------------------ one file of numeric columns


@dataclass
class ReadResult:
    """What ``read_samples_result`` read from one file.

    ``line_numbers[i]`` is the file line of ``samples[i]``, so a caller that
    aligns several files row by row (UCI HAR) can drop a row skipped in any one.
    """

    samples: np.ndarray  # (n, C) float32
    skipped: int = 0  # lines dropped by skip_bad
    header: tuple[str, ...] | None = None  # the column names, when the file starts with a header line
    delimiter: str = WHITESPACE  # ";", "," or "whitespace"
    line_numbers: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    bad_lines: list[int] = field(default_factory=list)  # line numbers skip_bad dropped
    reasons: dict[str, int] = field(default_factory=dict)  # skipped lines by reason (BAD_*)


def _read_text(path: Path, skip_bad: bool = False) -> str:
    """The file as text. With ``skip_bad`` bytes that are not UTF-8 become lone surrogates
    (``surrogateescape``), so only the lines holding them are bad (:func:`_bad_encoding`)."""
    try:
        if skip_bad:
            text = path.read_bytes().decode("utf-8", errors="surrogateescape")
        else:
            text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise RecordingError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    file_read(path)  # a command line's progress of reading --data (nothing otherwise)
    return text


def detect_delimiter(line: str) -> str:
    """The delimiter of a file, from its first non-empty line.

    A semicolon wins over a comma because semicolon-separated exports
    (European locales) write decimal commas: ``1,5;0,2;9,81``.
    """
    if SEMICOLON in line:
        return SEMICOLON
    if COMMA in line:
        return COMMA
    return WHITESPACE


TERMINATORS = (";", ",")


def detect_terminator(line: str) -> str | None:
    """The character that ends every line of a file (``1,2,3;``), from its first non-empty line, or None.

    Some loggers end each line with ``;`` (or ``,``). Left in place, ``1,2,3;``
    makes ``;`` look like the delimiter and the whole line one field; it is
    stripped before the delimiter is detected and before each line is split.
    """
    stripped = line.rstrip()
    return stripped[-1] if stripped and stripped[-1] in TERMINATORS else None


def strip_terminator(line: str, terminator: str | None) -> str:
    """``line`` without one trailing ``terminator`` (and the white space around it)."""
    if terminator is None:
        return line
    stripped = line.rstrip()
    return stripped[:-1] if stripped.endswith(terminator) else line


def _delimiter_inside(fields: list[str]) -> bool:
    """One field that holds a delimiter character (``'1,2,3'``): a mis-split sample line, never a header."""
    return len(fields) == 1 and any(d in fields[0] for d in (SEMICOLON, COMMA))


def split_fields(line: str, delimiter: str) -> list[str]:
    """Fields of one line; one trailing delimiter (``1,2,3,``) is tolerated, inner empty fields are kept."""
    if delimiter == WHITESPACE:
        return line.split()
    fields = [f.strip() for f in line.strip().split(delimiter)]
    if len(fields) > 1 and fields[-1] == "":
        fields.pop()
    return fields


def _to_float(token: str, delimiter: str) -> float:
    if delimiter == SEMICOLON and "," in token and "." not in token:
        token = token.replace(",", ".")  # decimal comma
    return float(token)


def _is_number(token: str, delimiter: str = WHITESPACE) -> bool:
    try:
        _to_float(token, delimiter)
    except ValueError:
        return False
    return True


def _bad_encoding(line: str) -> bool:
    """True for a line read with ``surrogateescape`` that held bytes which are not UTF-8."""
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _problem(
    fields: list[str], delimiter: str, width: int | None, width_why: str
) -> tuple[str | None, str | None, list[float]]:
    """(reason, why the line is bad, values); reason and why are None for a good line."""
    values = []
    for col, token in enumerate(fields, start=1):
        if token == "":
            return BAD_COLUMNS, f"empty field in column {col}", []
        try:
            v = _to_float(token, delimiter)
        except ValueError:
            return BAD_TEXT, f"text {token!r} in a number column (column {col})", []
        if not np.isfinite(v):
            return BAD_NON_FINITE, f"a non-finite value {token!r} (column {col})", []
        values.append(v)
    if width is not None and len(values) != width:
        return BAD_COLUMNS, f"{len(values)} columns where {width_why}", []
    return None, None, values


def read_samples_result(
    path: str | Path,
    *,
    n_channels: int | None = None,
    skip_bad: bool = False,
    start_line: int = 1,
    dtype: type[np.floating] = np.float32,
) -> ReadResult:
    """Read one file of numeric columns separated by white space, commas or semicolons.

    The delimiter is detected per file from its first non-empty line (see
    :func:`detect_delimiter`), after a line terminator that line ends with
    (``1,2,3;``, see :func:`detect_terminator`) is stripped from every line. A
    first line whose fields are all non-numeric is a header (kept in
    ``ReadResult.header``, not a sample), unless it is one field holding a
    delimiter character (a sample line split wrongly, which then fails there). Blank lines are
    ignored. Every other line must hold the same number of finite numbers:
    ``n_channels`` when given, else the count most lines of the file have.
    A line that does not is a ``RecordingError`` naming ``file:line``, or with
    ``skip_bad`` a warning and a count. ``start_line`` is the number of the
    file's first line in messages (for text cut out of a larger file). ``dtype``
    float64 keeps a timestamp column exact (float32 rounds epoch milliseconds to 131 ms).
    """
    path = Path(path)
    text = _read_text(path, skip_bad)
    raw_lines = text.splitlines()
    data_idx = [i for i, line in enumerate(raw_lines) if line.strip()]
    if not data_idx:
        raise RecordingError(f"{path}: empty file (no samples)")
    terminator = detect_terminator(raw_lines[data_idx[0]])
    lines = [strip_terminator(line, terminator) for line in raw_lines] if terminator else raw_lines
    delimiter = detect_delimiter(lines[data_idx[0]])

    header = None
    first_fields = split_fields(lines[data_idx[0]], delimiter)
    if not any(_is_number(t, delimiter) for t in first_fields) and not _delimiter_inside(first_fields):
        header = tuple(first_fields)
        data_idx = data_idx[1:]
        if not data_idx:
            raise RecordingError(f"{path}: a header line ({', '.join(header)}) but no samples")

    fast = _fast_parse([lines[i] for i in data_idx], delimiter, n_channels, dtype)
    if fast is not None:
        return ReadResult(fast, 0, header, delimiter, np.asarray(data_idx, np.int64) + start_line)

    rows = [(i + start_line, raw_lines[i], split_fields(lines[i], delimiter)) for i in data_idx]
    if n_channels is not None:
        width, why = n_channels, f"{n_channels} are expected"
    else:
        width = Counter(len(f) for _, _, f in rows).most_common(1)[0][0]
        why = f"the file's other lines have {width}"

    values: list[list[float]] = []
    kept: list[int] = []
    bad: list[int] = []
    reasons: Counter[str] = Counter()
    first_problem = ""
    for lineno, line, fields in rows:
        reason: str | None
        problem: str | None
        row: list[float]
        if _bad_encoding(line):  # only read so with skip_bad
            reason, problem, row = BAD_ENCODING, "bytes that are not UTF-8", []
        else:
            reason, problem, row = _problem(fields, delimiter, width, why)
        if problem is None:
            values.append(row)
            kept.append(lineno)
            continue
        shown = line.strip()[:80].encode("utf-8", "backslashreplace").decode("utf-8")
        message = f"{path}:{lineno}: {problem}: {shown!r}"
        if not skip_bad:
            raise RecordingError(message)
        bad.append(lineno)
        reasons[reason or BAD_COLUMNS] += 1
        first_problem = first_problem or message
    if bad:
        log.warning("%s: skipped %d malformed line(s) of %d; the first: %s", path, len(bad), len(rows), first_problem)
    if not values:
        raise RecordingError(f"{path}: no valid samples (all {len(rows)} lines malformed; the first: {first_problem})")
    with np.errstate(over="ignore"):  # beyond float32: inf, which the consumer's finite check drops (counted)
        samples = np.asarray(values, dtype=dtype).reshape(len(values), width)
    return ReadResult(samples, len(bad), header, delimiter, np.asarray(kept, np.int64), bad, dict(reasons))


def _fast_parse(
    lines: list[str], delimiter: str, n_channels: int | None, dtype: type[np.floating] = np.float32
) -> np.ndarray | None:
    """All lines well-formed: numpy's C parser reads the lot (HMP's 450k lines in a fraction of a second).

    Returns None whenever anything is off (ragged rows, text, non-finite
    values, decimal commas); the line-by-line path then finds and names the
    bad line, or skips it.
    """
    try:
        arr = np.loadtxt(
            io.StringIO("\n".join(lines)),
            delimiter=None if delimiter == WHITESPACE else delimiter,
            comments=None,
            dtype=np.float64,
            ndmin=2,
        )
    except (ValueError, UnicodeError):
        return None
    if arr.shape[0] != len(lines) or (n_channels is not None and arr.shape[1] != n_channels):
        return None
    if not np.isfinite(arr).all():
        return None
    with np.errstate(over="ignore"):  # beyond float32: inf, which the consumer's finite check drops (counted)
        return arr.astype(dtype)


def read_samples(
    path: str | Path, *, n_channels: int | None = None, skip_bad: bool = False, start_line: int = 1
) -> np.ndarray:
    """(n, C) float32 samples of one recording file; see :func:`read_samples_result`.

    With ``skip_bad`` the count of dropped lines is in the warning logged;
    use :func:`read_samples_result` to get it as a number.
    """
    return read_samples_result(path, n_channels=n_channels, skip_bad=skip_bad, start_line=start_line).samples


# ------------------------------------------------------------------ a folder of recordings


def list_folder_files(
    root: str | Path, *, extensions: Sequence[str] = (".txt", ".csv"), include_model: bool = False
) -> list[tuple[str, Path]]:
    """(class, file) pairs of a folder-of-recordings data set, sorted for reproducibility.

    Folders ending in ``_MODEL`` (HMP's extra model trials) are skipped unless
    ``include_model``; then they count as their class without the suffix.
    Hidden folders and files, and files directly in ``root`` (READMEs), are ignored.
    """
    root = Path(root)
    if not root.is_dir():
        raise RecordingError(f"{root}: not a folder")
    exts = tuple(e.lower() for e in extensions)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in exts]
        hint = (
            (
                f"; it holds {len(loose)} recording file(s) itself: point at the folder above it, "
                "whose sub-folders are the classes"
            )
            if loose
            else ""
        )
        raise RecordingError(f"{root}: no class folders (expected <root>/<Class>/<recording>{exts[0]}){hint}")
    pairs: list[tuple[str, Path]] = []
    for folder in class_dirs:
        label = folder.name
        if label.endswith(MODEL_SUFFIX):
            if not include_model:
                continue
            label = label[: -len(MODEL_SUFFIX)]
        files = sorted(
            p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts
        )
        if not files:
            raise RecordingError(f"{folder}: empty class folder (no {'/'.join(exts)} files)")
        pairs.extend((label, f) for f in files)
    return pairs


def compile_subject_regex(subject_regex: str | None) -> re.Pattern[str] | None:
    if not subject_regex:
        return None
    try:
        return re.compile(subject_regex)
    except re.error as exc:
        raise RecordingError(f"subject regex {subject_regex!r} is not a valid regular expression: {exc}") from None


def subject_from_name(pattern: re.Pattern[str] | None, name: str) -> str | None:
    """The subject id in a file name: the regex's first group, or its whole match if it has none."""
    if pattern is None:
        return None
    match = pattern.search(name)
    if not match:
        return None
    return match.group(1) if match.groups() else match.group(0)


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
    reasons: dict[str, int] | None = None,
    headers: dict[str, tuple[str, ...] | None] | None = None,
    dtype: type[np.floating] = np.float32,
) -> list[Recording]:
    """``<root>/<Class>/<recording>`` files as recordings, class = folder name.

    Every file must have the same number of columns (``n_channels`` when
    given, else the first file's). ``skipped`` (if given) receives the count of
    lines ``skip_bad`` dropped, per file; ``reasons`` (if given) adds them up by
    reason (``BAD_*``) over all files. ``headers`` (if given) receives each file's
    header line (column names) or None. Files the subject regex does not
    match get no subject, with one warning.
    """
    pattern = compile_subject_regex(subject_regex)
    out: list[Recording] = []
    unmatched: list[str] = []
    first: tuple[Path, int] | None = None
    for label, file in list_folder_files(root, extensions=extensions, include_model=include_model):
        result = read_samples_result(file, n_channels=n_channels, skip_bad=skip_bad, dtype=dtype)
        if result.skipped and skipped is not None:
            skipped[str(file)] = result.skipped
        if headers is not None:
            headers[str(file)] = result.header
        if reasons is not None:
            for reason, n in result.reasons.items():
                reasons[reason] = reasons.get(reason, 0) + n
        width = result.samples.shape[1]
        if first is None:
            first = (file, width)
        elif width != first[1]:
            raise RecordingError(
                f"{file}: {width} columns, but {first[0]} has {first[1]}; every recording needs the same channels"
            )
        subject = subject_from_name(pattern, file.name)
        if pattern is not None and subject is None:
            unmatched.append(file.name)
        out.append(Recording(result.samples, label, str(file), subject, sample_rate_hz))
    if unmatched:
        log.warning(
            "%s: subject regex %r matches no subject in %d of %d file name(s), e.g. %s; they have no subject",
            root,
            subject_regex,
            len(unmatched),
            len(out),
            unmatched[0],
        )
    return out


# ------------------------------------------------------------------ one long CSV


@dataclass
class LongCsv:
    """A long CSV cut into recordings, with the names of the channel columns used."""

    recordings: list[Recording]
    channels: tuple[str, ...]
    skipped: int = 0
    rows: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # skipped rows by reason (BAD_*)
    stamps: list[np.ndarray] = field(default_factory=list)  # per recording, float64, with a timestamp column


def _csv_rows(path: Path, skip_bad: bool = False) -> tuple[list[str], list[tuple[int, list[str]]], str]:
    """Header, (line number, fields) of the data rows, and the delimiter."""
    text = _read_text(path, skip_bad)
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise RecordingError(f"{path}: empty file (a header line is required)")
    delimiter = max((";", "\t", ","), key=lambda d: lines[first].count(d))
    if lines[first].count(delimiter) == 0:
        delimiter = WHITESPACE
    if delimiter == WHITESPACE:
        body = [(n, line.split()) for n, line in enumerate(lines[first + 1 :], start=first + 2)]
        header = lines[first].split()
    else:
        try:
            reader = csv.reader(io.StringIO("\n".join(lines[first:])), delimiter=delimiter, strict=True)
            parsed = list(reader)
        except csv.Error as exc:
            raise RecordingError(f"{path}:{first + reader.line_num}: {exc}") from None
        header = [h.strip() for h in parsed[0]]
        body = [(n, row) for n, row in enumerate(parsed[1:], start=first + 2)]
    if any(_is_number(h) for h in header if h):
        raise RecordingError(
            f"{path}:{first + 1}: expected a header line of column names, got {lines[first].strip()[:80]!r}"
        )
    body = [(n, [c.strip() for c in row]) for n, row in body if row and any(c.strip() for c in row)]
    return header, body, delimiter


def read_long_csv(
    path: str | Path,
    *,
    label_col: str,
    channel_cols: Sequence[str] | None = None,
    subject_col: str | None = None,
    timestamp_col: str | None = None,
    skip_bad: bool = False,
    sample_rate_hz: float | None = None,
    n_channels: int | None = None,
    trial_col: str | None = None,
    rate_from_stamps: bool = True,
) -> LongCsv:
    """Cut one long CSV into recordings; see :func:`load_long_csv_recordings`.

    The timestamp column's values of each recording are kept in ``LongCsv.stamps`` as float64 (a
    reader that resamples by them needs them exact); ``rate_from_stamps`` False leaves the rate to it.
    """
    path = Path(path)
    header, body, delimiter = _csv_rows(path, skip_bad)
    if not body:
        raise RecordingError(f"{path}: a header but no data rows")

    def index(name: str, what: str) -> int:
        if name not in header:
            raise RecordingError(f"{path}: no {what} column {name!r}; the header has {', '.join(header)}")
        return header.index(name)

    def col(name: str | None, what: str) -> int | None:
        return None if name is None else index(name, what)

    i_label = index(label_col, "label")
    i_subject = col(subject_col, "subject")
    i_time = col(timestamp_col, "timestamp")
    i_trial = col(trial_col, "trial")
    if channel_cols:
        i_channels = [index(c, "channel") for c in channel_cols]
    else:
        used = {i_label, i_subject, i_time, i_trial}
        sample = body[:20]
        i_channels = [
            i
            for i in range(len(header))
            if i not in used and sum(i < len(r) and _is_number(r[i], delimiter) for _, r in sample) * 2 > len(sample)
        ]
        dropped = [header[i] for i in range(len(header)) if i not in used and i not in i_channels]
        if dropped:
            log.info("%s: non-numeric column(s) %s are not channels", path, ", ".join(dropped))
        if not i_channels:
            raise RecordingError(
                f"{path}: no numeric channel columns besides {label_col!r}; the header has {', '.join(header)}"
            )
    if n_channels is not None and len(i_channels) != n_channels:
        raise RecordingError(f"{path}: {len(i_channels)} channel columns, the model takes {n_channels}")

    recordings: list[Recording] = []
    stamps: list[np.ndarray] = []
    all_steps: list[np.ndarray] = []
    current: list[list[float]] = []
    times: list[float] = []
    key: tuple[str, str | None, str | None] | None = None
    first_row = last_row = 0
    bad: list[str] = []
    reasons: Counter[str] = Counter()

    def flush() -> None:
        if current and key is not None:
            source = f"{path}:rows {first_row}-{last_row}"
            recordings.append(Recording(np.asarray(current, np.float32), key[0], source, key[1], sample_rate_hz))
            if i_time is not None:
                stamps.append(np.asarray(times, np.float64))
            if len(times) > 1:
                all_steps.append(np.diff(np.asarray(times, np.float64)))

    for lineno, row in body:
        problem = None
        reason = BAD_COLUMNS
        if any(_bad_encoding(c) for c in row):  # only read so with skip_bad
            problem, reason = "bytes that are not UTF-8", BAD_ENCODING
        elif len(row) != len(header):
            problem = f"{len(row)} fields where the header has {len(header)}"
        elif not row[i_label]:
            problem = f"empty label (column {label_col!r})"
        else:
            values = []
            for i in i_channels + ([i_time] if i_time is not None else []):
                try:
                    v = _to_float(row[i], delimiter)
                except ValueError:
                    problem, reason = f"text {row[i]!r} in a number column ({header[i]!r})", BAD_TEXT
                    break
                if not np.isfinite(v):
                    problem, reason = f"a non-finite value {row[i]!r} (column {header[i]!r})", BAD_NON_FINITE
                    break
                values.append(v)
        if problem is not None:
            if not skip_bad:
                raise RecordingError(f"{path}:{lineno}: {problem}")
            bad.append(f"{path}:{lineno}: {problem}")
            reasons[reason] += 1
            continue
        row_key = (
            row[i_label],
            row[i_subject] if i_subject is not None else None,
            row[i_trial] if i_trial is not None else None,
        )
        if row_key != key:
            flush()
            current, times, key, first_row = [], [], row_key, lineno
        last_row = lineno
        if i_time is not None:
            times.append(values.pop())
        current.append(values)
    flush()
    if bad:
        log.warning("%s: skipped %d malformed row(s) of %d; the first: %s", path, len(bad), len(body), bad[0])
    if not recordings:
        raise RecordingError(f"{path}: no valid data rows (all {len(body)} malformed; the first: {bad[0]})")
    if sample_rate_hz is None and all_steps and rate_from_stamps:
        rate = rate_from_timestamps(np.concatenate(all_steps), path, timestamp_col or "")
        for r in recordings:
            r.sample_rate_hz = rate
    return LongCsv(recordings, tuple(header[i] for i in i_channels), len(bad), len(body), dict(reasons), stamps)


def rate_from_timestamps(steps: np.ndarray, path: Path | str, column: str) -> float | None:
    """Sample rate (Hz) from timestamp steps in seconds: 1 / median step; None if there are none.

    The median ignores gaps between recordings and the odd dropped sample. A
    rate under 1 Hz or over 10 kHz is accepted with a warning, because it
    usually means the column is in milliseconds or microseconds.
    """
    steps = steps[steps > 0]
    if not len(steps):
        log.warning("%s: timestamp column %r never increases; no rate from it", path, column)
        return None
    rate = float(1.0 / np.median(steps))
    if rate < 1.0 or rate > 10_000.0:
        log.warning(
            "%s: timestamp column %r gives %.6g Hz; timestamps are read as seconds (milliseconds? "
            "then pass --sample-rate)",
            path,
            column,
            rate,
        )
    return rate


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
    reasons: dict[str, int] | None = None,
    trial_col: str | None = None,
) -> list[Recording]:
    """One long CSV with a header; consecutive rows of one (label, subject, trial) form a recording.

    The delimiter (comma, semicolon, tab or white space) is the one the header
    line uses most. Without ``channel_cols`` every other numeric column is a
    channel. ``Recording.source`` is ``"<path>:rows A-B"``, A and B being the
    file's line numbers (the header is line 1). With ``timestamp_col`` (in
    seconds) and no ``sample_rate_hz``, the rate is 1 / the median timestamp
    step. ``skipped`` (if given) receives the count of rows ``skip_bad`` dropped;
    ``reasons`` (if given) adds them up by reason (``BAD_*``). ``trial_col`` names a
    recording / trial column: a new value starts a new recording even where label
    and subject stay the same (without it, back-to-back trials merge into one).
    """
    result = read_long_csv(
        path,
        label_col=label_col,
        channel_cols=channel_cols,
        subject_col=subject_col,
        timestamp_col=timestamp_col,
        skip_bad=skip_bad,
        sample_rate_hz=sample_rate_hz,
        n_channels=n_channels,
        trial_col=trial_col,
    )
    if result.skipped and skipped is not None:
        skipped[str(path)] = result.skipped
    if reasons is not None:
        for reason, n in result.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + n
    return result.recordings
