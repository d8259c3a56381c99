"""The on-disk layout of a recording session: ``recording.json``, ``part-NNNNN.csv`` and ``labels.csv``.

The device writes it (:mod:`edge_har.device.recording`), serve stores it as uploaded and
``convert --data`` reads it in place (format ``recorded``), so this module is the one
definition all three share. A *session* is a folder holding ``recording.json`` (written once,
atomically); its samples are CSV parts ``t,<channels>`` (unix seconds with 6 decimals, raw
values) and its labels a ``label,start,end`` file rewritten atomically on every change.

Every reader takes outside input (a device's upload, a copied folder), so each one is bounded
(``MAX_META_BYTES``, ``MAX_LABELS_BYTES``, ``MAX_PART_BYTES``) and raises only
:class:`LayoutError`, whose one-line message names the file, and the line or key at fault. A
part's last line without its newline is what a power cut leaves: it is skipped with one
warning, and every complete line before it stays valid.

numpy and the standard library only: this runs on the device.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from edge_har.core.errors import EdgeHarError

__all__ = [
    "FORMAT_NAME",
    "LABELS_FILE",
    "LAYOUT_FILE",
    "LABELS_HEADER",
    "LayoutError",
    "LabelSegment",
    "MAX_LABEL_CHARS",
    "MAX_LABELS_BYTES",
    "MAX_META_BYTES",
    "MAX_PART_BYTES",
    "PART_RE",
    "PartsRead",
    "RecordingMeta",
    "VERSION",
    "atomic_write",
    "find_overlap",
    "format_labels",
    "format_rows",
    "fsync_dir",
    "part_files",
    "part_name",
    "read_labels",
    "read_meta",
    "read_parts",
    "read_json_file",
    "read_parts_detail",
    "session_dirs",
    "valid_name",
    "write_json_once",
    "write_labels",
    "write_meta",
    "write_session",
]

log = logging.getLogger(__name__)

LAYOUT_FILE = "recording.json"
LABELS_FILE = "labels.csv"
PART_RE = re.compile(r"^part-(\d{5})\.csv$")
FORMAT_NAME = "edge-har-recording"
VERSION = 1
LABELS_HEADER = ("label", "start", "end")

MAX_META_BYTES = 64 * 1024
MAX_LABELS_BYTES = 4 * 1024 * 1024
MAX_PART_BYTES = 256 * 1024 * 1024  # far above any rotation size; a bound on what one read takes in
MAX_LABEL_CHARS = 64
MAX_CHANNELS = 1024
MAX_NAME_CHARS = 128
DETECT_DEPTH = 3  # a set's sessions lie at most this many folders below it

# A device or session id becomes a folder name on serve: no separators, no control characters.
_NAME_RE = re.compile(r"^[^/\\\x00-\x1f\x7f]{1," + str(MAX_NAME_CHARS) + "}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class LayoutError(EdgeHarError, ValueError):
    """A session folder that does not follow the layout; the message names the file and line or key."""


def valid_name(value: object) -> bool:
    """True for a string that can be one folder name (a device or session id): 1-128 characters,
    no ``/`` or ``\\``, no control characters, not ``.`` or ``..``, no surrounding white space."""
    return (
        isinstance(value, str)
        and _NAME_RE.match(value) is not None
        and value not in (".", "..")
        and value == value.strip()
    )


# ------------------------------------------------------------------ recording.json


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class RecordingMeta:
    """What ``recording.json`` says about one session (see the module docstring)."""

    device_id: str
    session_id: str
    started: float
    channels: list[str]
    sample_rate_hz: float
    units: str = ""
    scale: list[float] | None = None
    offset: list[float] | None = None
    source: str = ""
    subject: str | None = None
    model_id: str | None = None
    capture: dict[str, Any] | None = None

    @property
    def effective_subject(self) -> str:
        """The subject the data belongs to: ``subject``, else the device id."""
        return self.subject or self.device_id

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``recording.json`` holds (``capture`` only when set)."""
        out: dict[str, Any] = {
            "format": FORMAT_NAME,
            "version": VERSION,
            "device_id": self.device_id,
            "session_id": self.session_id,
            "started": float(self.started),
            "channels": list(self.channels),
            "sample_rate_hz": float(self.sample_rate_hz),
            "units": self.units,
            "scale": None if self.scale is None else [float(v) for v in self.scale],
            "offset": None if self.offset is None else [float(v) for v in self.offset],
            "source": self.source,
            "subject": self.subject,
            "model_id": self.model_id,
        }
        if self.capture is not None:
            out["capture"] = self.capture
        return out

    @classmethod
    def from_json(cls, d: object, where: str | Path = LAYOUT_FILE) -> RecordingMeta:
        """Validate a parsed ``recording.json``; a :class:`LayoutError` names ``where`` and the key.

        Keys this version does not know are ignored, so a later writer's additions do not make
        its sessions unreadable here.
        """
        d = check_session_keys(d, where, FORMAT_NAME, VERSION)

        def bad(key: str, why: str) -> LayoutError:
            return key_error(d, where, key, why)

        channels = d.get("channels")
        if (
            not isinstance(channels, list)
            or not 1 <= len(channels) <= MAX_CHANNELS
            or not all(isinstance(c, str) and c and c == c.strip() and "," not in c for c in channels)
            or any(_CONTROL_RE.search(c) for c in channels)
        ):
            raise bad("channels", f"expected a list of 1-{MAX_CHANNELS} names (no commas, no control characters)")
        if len(set(channels)) != len(channels) or "t" in channels:
            raise bad("channels", "names must be unique and none may be 't'")
        rate = d.get("sample_rate_hz")
        if not _finite(rate) or float(rate) <= 0:  # type: ignore[arg-type]
            raise bad("sample_rate_hz", "expected a rate in Hz > 0")
        vectors: dict[str, list[float] | None] = {}
        for key in ("scale", "offset"):
            value = d.get(key)
            if value is None:
                vectors[key] = None
                continue
            if (
                not isinstance(value, list)
                or len(value) not in (1, len(channels))
                or not all(_finite(v) for v in value)
            ):
                raise bad(key, f"expected null or a list of finite numbers, one or one per channel ({len(channels)})")
            vectors[key] = [float(v) for v in value]
        texts: dict[str, str] = {}
        for key in ("units", "source"):
            value = d.get(key, "")
            if not isinstance(value, str) or len(value) > 256:
                raise bad(key, "expected a string of at most 256 characters")
            texts[key] = value
        optional = optional_texts(d, where, ("subject", "model_id"))
        capture = d.get("capture")
        if capture is not None and not isinstance(capture, dict):
            raise bad("capture", "expected a JSON object or absent")
        return cls(
            device_id=str(d["device_id"]),
            session_id=str(d["session_id"]),
            started=float(d["started"]),
            channels=[str(c) for c in channels],
            sample_rate_hz=float(rate),  # type: ignore[arg-type]
            units=texts["units"],
            scale=vectors["scale"],
            offset=vectors["offset"],
            source=texts["source"],
            subject=optional["subject"],
            model_id=optional["model_id"],
            capture=capture,
        )


def key_error(d: dict[str, Any], where: str | Path, key: str, why: str) -> LayoutError:
    """``WHERE: key 'K': WHY (got VALUE)``, the value's repr cut to 60 characters."""
    shown = repr(d.get(key))
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return LayoutError(f"{where}: key {key!r}: {why} (got {shown})")


def check_session_keys(d: object, where: str | Path, format_name: str, version: int) -> dict[str, Any]:
    """The keys every session file shares (format, version, device_id, session_id, started), checked;
    returns ``d`` as a dict."""
    if not isinstance(d, dict):
        raise LayoutError(f"{where}: expected a JSON object, got {type(d).__name__}")
    if d.get("format") != format_name:
        raise key_error(d, where, "format", f"expected {format_name!r}")
    got = d.get("version")
    if not isinstance(got, int) or isinstance(got, bool):
        raise key_error(d, where, "version", "expected a whole number")
    if got != version:
        raise key_error(d, where, "version", f"this reader knows version {version}")
    for key in ("device_id", "session_id"):
        if not valid_name(d.get(key)):
            raise key_error(
                d,
                where,
                key,
                f"expected a name of 1-{MAX_NAME_CHARS} characters without '/', '\\' or control characters",
            )
    if not _finite(d.get("started")):
        raise key_error(d, where, "started", "expected unix seconds (a finite number)")
    return d


def optional_texts(d: dict[str, Any], where: str | Path, keys: Sequence[str]) -> dict[str, str | None]:
    """Each of ``keys``: null, or a non-empty string of at most 256 characters."""
    out: dict[str, str | None] = {}
    for key in keys:
        value = d.get(key)
        if value is not None and (not isinstance(value, str) or not value or len(value) > 256):
            raise key_error(d, where, key, "expected null or a non-empty string of at most 256 characters")
        out[key] = value
    return out


def _read_bounded(path: Path, limit: int, what: str) -> bytes:
    """The bytes of ``path``, refused (LayoutError) when over ``limit``; reads at most ``limit + 1``."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise LayoutError(f"{path}: no such file") from None
    except OSError as exc:
        raise LayoutError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise LayoutError(f"{path}: {what} is over {limit // 1024} KiB; refused")
    return data


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def read_json_file(path: Path, limit: int) -> object:
    """A session's JSON file, parsed: at most ``limit`` bytes, UTF-8, strict JSON (no NaN or Infinity);
    a LayoutError naming the file (and the line) otherwise."""
    data = _read_bounded(path, limit, path.name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LayoutError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise LayoutError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except (ValueError, RecursionError) as exc:
        raise LayoutError(f"{path}: not valid JSON ({str(exc)[:80] or type(exc).__name__})") from None


def write_json_once(path: Path, doc: dict[str, Any], check: Callable[[object, Path], object]) -> None:
    """Write a session's JSON file atomically, once: ``check`` must accept what is written (it must read
    back); a LayoutError when the file exists already."""
    data = json.dumps(doc, indent=1, allow_nan=False).encode("utf-8")
    check(json.loads(data), path)
    if path.exists():
        raise LayoutError(f"{path}: the session already exists")
    atomic_write(path, data)


def read_meta(session_dir: str | Path) -> RecordingMeta:
    """The session's ``recording.json``, validated (:meth:`RecordingMeta.from_json`)."""
    path = Path(session_dir) / LAYOUT_FILE
    return RecordingMeta.from_json(read_json_file(path, MAX_META_BYTES), path)


# ------------------------------------------------------------------ labels.csv


@dataclass
class LabelSegment:
    """One labelled stretch: samples with ``start <= t < end`` (``end`` None: open, past the last sample).

    ``line`` is the segment's line in ``labels.csv`` when it was read from one (for messages).
    """

    label: str
    start: float
    end: float | None
    line: int | None = field(default=None, compare=False)

    @property
    def stop(self) -> float:
        """``end``, or +infinity for an open segment."""
        return math.inf if self.end is None else self.end


def _check_label(label: object) -> str | None:
    """Why ``label`` cannot be a class name, or None."""
    if not isinstance(label, str) or not label:
        return "empty label"
    if len(label) > MAX_LABEL_CHARS:
        return f"label of {len(label)} characters (at most {MAX_LABEL_CHARS})"
    if _CONTROL_RE.search(label):
        return "label holds a control character (NUL, newline, ...)"
    if label != label.strip():
        return "label starts or ends with white space"
    return None


def read_labels(session_dir: str | Path) -> list[LabelSegment]:
    """The segments of the session's ``labels.csv`` in file order; [] when it has none.

    A LayoutError ``labels.csv:LINE: ...`` for a bad row: a header other than ``label,start,end``,
    a wrong field count, a bad label, a start or end that is not a finite number, or an end not after
    its start. Overlaps are left to the reader of the segments (:func:`find_overlap`).
    """
    path = Path(session_dir) / LABELS_FILE
    if not path.is_file():
        return []
    data = _read_bounded(path, MAX_LABELS_BYTES, LABELS_FILE)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LayoutError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if text.startswith("\ufeff"):  # a byte order mark, as spreadsheet programs save UTF-8
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    segments: list[LabelSegment] = []
    header_seen = False
    try:
        for row in reader:
            lineno = reader.line_num
            if not header_seen:
                if tuple(f.strip() for f in row) != LABELS_HEADER:
                    raise LayoutError(
                        f"{path}:{lineno}: expected the header 'label,start,end', got {','.join(row)[:60]!r}"
                    )
                header_seen = True
                continue
            if not row:
                continue
            if len(row) != 3:
                raise LayoutError(f"{path}:{lineno}: {len(row)} fields; a line is 'label,start,end'")
            label, start_s, end_s = row
            why = _check_label(label)
            if why is not None:
                raise LayoutError(f"{path}:{lineno}: {why}")
            start = _time(path, lineno, "start", start_s)
            end = None if end_s.strip() == "" else _time(path, lineno, "end", end_s)
            if end is not None and not end > start:
                raise LayoutError(f"{path}:{lineno}: end {end_s.strip()} is not after start {start_s.strip()}")
            segments.append(LabelSegment(label, start, end, lineno))
    except csv.Error as exc:
        raise LayoutError(f"{path}:{reader.line_num}: not CSV ({exc})") from None
    if not header_seen:
        raise LayoutError(f"{path}: empty; expected the header 'label,start,end'")
    return segments


def _time(path: Path, lineno: int, what: str, token: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise LayoutError(f"{path}:{lineno}: {what} {token[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise LayoutError(f"{path}:{lineno}: {what} {token[:40]!r} is not a finite number")
    return value


def format_labels(segments: Iterable[LabelSegment], where: str | Path = LABELS_FILE) -> str:
    """The text of a ``labels.csv`` holding ``segments``, validated (LayoutError naming the segment)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(LABELS_HEADER)
    for i, seg in enumerate(segments, start=1):
        why = _check_label(seg.label)
        if why is not None:
            raise LayoutError(f"{where}: segment {i}: {why}")
        if not _finite(seg.start) or (seg.end is not None and not _finite(seg.end)):
            raise LayoutError(f"{where}: segment {i} ({seg.label}): start and end must be finite numbers")
        start = f"{float(seg.start):.6f}"
        end = "" if seg.end is None else f"{float(seg.end):.6f}"
        if end and not float(end) > float(start):
            raise LayoutError(f"{where}: segment {i} ({seg.label}): end {end} is not after start {start}")
        writer.writerow((seg.label, start, end))
    text = out.getvalue()
    if len(text.encode("utf-8")) > MAX_LABELS_BYTES:
        raise LayoutError(f"{where}: the segments take over {MAX_LABELS_BYTES // 1024} KiB; refused")
    return text


def write_labels(session_dir: str | Path, segments: Iterable[LabelSegment]) -> None:
    """Replace the session's ``labels.csv`` atomically with ``segments`` (validated first)."""
    path = Path(session_dir) / LABELS_FILE
    atomic_write(path, format_labels(segments, path).encode("utf-8"))


def find_overlap(segments: Sequence[LabelSegment]) -> tuple[LabelSegment, LabelSegment] | None:
    """The first pair (earlier, later by start) of segments of different labels that overlap in time, or None.

    Segments of one label may overlap (a reader merges them).
    """
    order = sorted(segments, key=lambda s: (s.start, s.stop))
    reach: dict[str, LabelSegment] = {}  # per label, the segment reaching furthest so far
    for seg in order:
        for label, other in reach.items():
            if label != seg.label and other.stop > seg.start:
                return other, seg
        best = reach.get(seg.label)
        if best is None or seg.stop > best.stop:
            reach[seg.label] = seg
    return None


# ------------------------------------------------------------------ parts


def part_name(index: int) -> str:
    """``part-00007.csv`` for 7."""
    return f"part-{index:05d}.csv"


def format_rows(t: np.ndarray, samples: np.ndarray) -> str:
    """Part lines for these samples: ``t`` with 6 decimals, each value the shortest text that reads back as the
    same float32 (``%.7g`` where that round-trips, else ``%.9g``, which always does)."""
    values = np.ascontiguousarray(samples, dtype=np.float32)
    flat = values.ravel().tolist()
    texts = [f"{v:.7g}" for v in flat]
    if texts:
        back = np.array(texts, dtype=np.float64).astype(np.float32)
        for i in np.flatnonzero(back != values.ravel()).tolist():
            texts[i] = f"{flat[i]:.9g}"
    width = values.shape[1] if values.ndim == 2 else 0
    lines = []
    for r, stamp in enumerate(np.asarray(t, dtype=np.float64).tolist()):
        lines.append(f"{stamp:.6f}," + ",".join(texts[r * width : (r + 1) * width]) + "\n")
    return "".join(lines)


@dataclass
class PartsRead:
    """Every sample of a session's parts, with where each came from.

    ``part_of[i]`` indexes ``parts`` (the file of sample ``i``); ``line_of[i]`` is its 1-based line in
    that file (the header is line 1). ``torn`` lists the parts whose torn last line was skipped.
    """

    t: np.ndarray  # (n,) float64 unix seconds
    samples: np.ndarray  # (n, C) float32 raw values
    parts: list[Path]
    part_of: np.ndarray  # (n,) int32
    line_of: np.ndarray  # (n,) int64
    channels: list[str]
    torn: list[Path] = field(default_factory=list)


def part_files(session_dir: str | Path) -> list[Path]:
    """The session's part files in order of their number."""
    root = Path(session_dir)
    try:
        names = [n for n in os.listdir(root) if PART_RE.match(n)]
    except OSError as exc:
        raise LayoutError(f"{root}: cannot list the session's parts: {exc.strerror or exc}") from None
    return [root / n for n in sorted(names, key=lambda n: int(PART_RE.match(n).group(1)))]  # type: ignore[union-attr]


def _parse_part(path: Path, channels: list[str] | None) -> tuple[list[str], np.ndarray, np.ndarray, bool]:
    """(channels of the header, t, samples, torn) of one part."""
    data = _read_bounded(path, MAX_PART_BYTES, "a part")
    torn = False
    stripped = data.rstrip(b"\x00")  # a power cut may leave the file's last block zero-filled
    if len(stripped) != len(data):
        torn = True
        data = stripped
    end = data.rfind(b"\n")
    if end != len(data) - 1:
        torn = torn or bool(data)
        data = data[: end + 1]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LayoutError(f"{path}:{line}: not UTF-8 ({exc.reason})") from None
    if not text:  # nothing complete yet (just created, or cut before its header was written)
        return list(channels or []), np.empty(0), np.empty((0, len(channels or [])), np.float32), torn
    header, _, body = text.partition("\n")
    names = header.rstrip("\r").split(",")
    if names[0] != "t" or len(names) < 2:
        raise LayoutError(f"{path}:1: expected the header 't,<channels>', got {header[:60]!r}")
    names = names[1:]
    if channels is not None and names != channels:
        shown = _CONTROL_RE.sub("?", ",".join(names))[:80]
        raise LayoutError(
            f"{path}:1: the header's channels ({shown}) are not the session's ({','.join(channels)[:80]})"
        )
    width = len(names) + 1
    lines = body.split("\n")[:-1] if body else []
    if not lines:
        return names, np.empty(0), np.empty((0, len(names)), np.float32), torn
    try:
        flat = np.array(",".join(lines).split(","), dtype=np.float64)
        ok = len(flat) == width * len(lines) and all(line.count(",") == width - 1 for line in lines)
    except ValueError:
        ok = False
    if not ok or not np.isfinite(flat).all():
        _raise_bad_line(path, lines, width)
    table = flat.reshape(len(lines), width)
    return names, table[:, 0].copy(), table[:, 1:].astype(np.float32), torn


def _raise_bad_line(path: Path, lines: list[str], width: int) -> None:
    """The LayoutError naming the first bad line of a part (slow path, taken only on a bad file)."""
    for i, line in enumerate(lines, start=2):
        fields = line.rstrip("\r").split(",")
        if len(fields) != width:
            raise LayoutError(f"{path}:{i}: {len(fields)} fields where the header has {width}")
        for col, token in enumerate(fields, start=1):
            try:
                value = float(token)
            except ValueError:
                raise LayoutError(f"{path}:{i}: column {col}: {token[:40]!r} is not a number") from None
            if not math.isfinite(value):
                raise LayoutError(f"{path}:{i}: column {col}: {token[:40]!r} is not a finite number")
    raise LayoutError(f"{path}: malformed part")  # not reached: some line above is bad


def read_parts_detail(session_dir: str | Path, channels: Sequence[str] | None = None) -> PartsRead:
    """Every complete sample line of the session's parts, in part order (see :class:`PartsRead`).

    ``channels`` (default: ``recording.json``'s, when there is one) is what every part's header must
    name; without either, the first part's header sets it.
    """
    root = Path(session_dir)
    expected = list(channels) if channels is not None else None
    if expected is None and (root / LAYOUT_FILE).is_file():
        expected = read_meta(root).channels
    ts: list[np.ndarray] = []
    xs: list[np.ndarray] = []
    part_of: list[np.ndarray] = []
    line_of: list[np.ndarray] = []
    parts = part_files(root)
    torn: list[Path] = []
    for k, path in enumerate(parts):
        names, t, x, was_torn = _parse_part(path, expected)
        if was_torn:
            torn.append(path)
            log.warning("%s: its last line is incomplete (a write cut short); skipped", path)
        if expected is None and names:
            expected = names
        ts.append(t)
        xs.append(x)
        part_of.append(np.full(len(t), k, np.int32))
        line_of.append(np.arange(2, len(t) + 2, dtype=np.int64))
    width = len(expected or [])
    return PartsRead(
        t=np.concatenate(ts) if ts else np.empty(0),
        samples=np.concatenate(xs) if xs else np.empty((0, width), np.float32),
        parts=parts,
        part_of=np.concatenate(part_of) if part_of else np.empty(0, np.int32),
        line_of=np.concatenate(line_of) if line_of else np.empty(0, np.int64),
        channels=list(expected or []),
        torn=torn,
    )


def read_parts(session_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(t (n,) float64, samples (n, C) float32)`` of every complete line of the session's parts."""
    got = read_parts_detail(session_dir)
    return got.t, got.samples


# ------------------------------------------------------------------ writing


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` so a reader (or a power cut) sees the old file or the new one, never a part:
    a temporary file in the same folder, flushed and fsync'd, renamed over ``path``, the folder fsync'd."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def write_meta(session_dir: str | Path, meta: RecordingMeta) -> None:
    """Write ``recording.json`` atomically; a LayoutError when the session already has one."""
    write_json_once(Path(session_dir) / LAYOUT_FILE, meta.to_json(), RecordingMeta.from_json)


def write_session(
    session_dir: str | Path,
    meta: RecordingMeta,
    t: np.ndarray,
    samples: np.ndarray,
    segments: Sequence[LabelSegment] = (),
) -> None:
    """Write a whole small session at once (a captured window, a test): ``part-00000.csv``, ``labels.csv``,
    then ``recording.json`` last, each atomically, so a reader never sees a session without its samples."""
    root = Path(session_dir)
    t = np.asarray(t, dtype=np.float64)
    x = np.asarray(samples)
    if x.ndim != 2 or t.ndim != 1 or len(t) != len(x) or x.shape[1] != len(meta.channels):
        raise LayoutError(
            f"{root}: samples of shape {x.shape} and t of shape {t.shape} do not fit {len(meta.channels)} channels"
        )
    if not (np.isfinite(t).all() and np.isfinite(x).all()):
        raise LayoutError(f"{root}: t and samples must be finite numbers")
    if (root / LAYOUT_FILE).exists():
        raise LayoutError(f"{root / LAYOUT_FILE}: the session already exists")
    text = format_labels(segments, root / LABELS_FILE)
    root.mkdir(parents=True, exist_ok=True)
    header = "t," + ",".join(meta.channels) + "\n"
    atomic_write(root / part_name(0), (header + format_rows(t, x)).encode("utf-8"))
    atomic_write(root / LABELS_FILE, text.encode("utf-8"))
    write_meta(root, meta)
    fsync_dir(root.parent)


# ------------------------------------------------------------------ sets of sessions


def session_dirs(root: str | Path, max_depth: int = DETECT_DEPTH, marker: str = LAYOUT_FILE) -> list[Path]:
    """Every folder at or below ``root`` (at most ``max_depth`` levels down) holding ``marker`` (a
    session's ``recording.json``; ``video.json`` for camera sessions), sorted; hidden folders are skipped
    and symbolic links to folders are not followed."""
    root = Path(root)
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        depth = len(here.relative_to(root).parts)
        if marker in files and (here / marker).is_file():
            found.append(here)
        dirs[:] = [] if depth >= max_depth else sorted(d for d in dirs if not d.startswith("."))
    return sorted(found)
