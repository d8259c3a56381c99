"""The recordings devices push to ``edge-har serve``, kept on disk in the recording layout.

``ROOT/<device_id>/<session_id>/`` holds what the device wrote (``recording.json``, ``part-NNNNN.csv``,
``labels.csv``), so the folder is a recording set that ``edge-har convert --data`` reads as it is. Every
read and write of those files goes through :mod:`edge_har.core.recording_layout`; this module adds what a
server taking files from the network needs:

* **names**: a device or session id is one MQTT topic level as the API's device ids (1-128 characters, no
  ``/ + #``, NUL or white space), not ``.`` or ``..`` and at most 255 bytes (one file name); a file name is
  ``recording.json``, ``labels.csv`` or ``part-NNNNN.csv`` and nothing else, so no request reaches outside
  its session folder.
* **resumable uploads**: bytes are appended at an offset that must equal the file's size (else
  :class:`StoreError` 409 carrying the size), under a per-session lock, fsync'd before the answer; a write
  cut short leaves a shorter file whose size the client resumes from. ``recording.json`` goes whole and is
  validated (:meth:`RecordingMeta.from_json`); ``labels.csv`` is validated and written atomically.
* **the device's and a person's labels**: once a person saves labels on serve (:meth:`put_labels`), the
  session is marked edited and the labels the device sends later go to ``labels.device.csv``: the edit wins.
* **bounds**: every file has a size cap, a write that would leave less than :data:`MIN_FREE_BYTES` on the
  disk is refused (507), a label is at most :data:`MAX_LABEL_CHARS` characters and a session at most
  :data:`MAX_SEGMENTS` segments.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import weakref
import zipfile
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edge_har.core.errors import EdgeHarError
from edge_har.core.recording_layout import (
    LABELS_FILE,
    LAYOUT_FILE,
    MAX_LABEL_CHARS,
    MAX_LABELS_BYTES,
    MAX_META_BYTES,
    MAX_PART_BYTES,
    PART_RE,
    LabelSegment,
    LayoutError,
    RecordingMeta,
    atomic_write,
    find_overlap,
    fsync_dir,
    read_labels,
    read_meta,
    read_parts,
    valid_name,
    write_labels,
)
from edge_har.mqtt.bounded_json import RejectedMessage, parse_message
from edge_har.web.ingest_checks import DEVICE_ID

__all__ = [
    "DEVICE_LABELS_FILE",
    "MAX_LABEL_CHARS",
    "MAX_SEGMENTS",
    "RecordingStore",
    "StoreError",
    "UPLOAD_NAME",
    "check_id",
    "check_segments",
    "decimate",
]

log = logging.getLogger("edge_har.web.recordings")

UPLOAD_NAME = re.compile(r"^(recording\.json|labels\.csv|part-\d{5}\.csv)$")
DEVICE_LABELS_FILE = "labels.device.csv"  # the device's labels of a session a person edited on serve
EDITED_FILE = ".labels-edited"  # present once a person saved labels on serve
MIN_FREE_BYTES = 64 * 1024 * 1024  # a write that would leave less free on the disk is refused (507)
MAX_SEGMENTS = 10_000
MAX_TIME = 253402300800.0  # 10000-01-01T00:00:00Z, the API's bound for a time
MAX_NAME_BYTES = 255  # one file name on Linux file systems
SUMMARIES_KEPT = 4096  # sessions whose sample count and time span are remembered (by their files' sizes)
ARRAYS_KEPT = 4  # sessions whose samples are kept in memory for the signal route (a page zooming in reads one)
ARRAYS_MAX_BYTES = 128 * 1024 * 1024  # ... and at most this many bytes of them together
COPY_CHUNK = 1024 * 1024
_LABEL_BAD = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
# What a broker refuses in a topic (MQTT 5 1.5.4; mosquitto closes the connection of a client that sends one):
# C0 and C1 control characters, surrogates and the Unicode non-characters. An id holding one reaches no device.
_TOPIC_BAD = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")


class StoreError(EdgeHarError):
    """A request the store refuses: ``status`` is the HTTP status, the message one line naming what; a 409 on
    an upload carries the file's current ``size``."""

    def __init__(self, status: int, message: str, size: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status
        self.size = size


def check_id(value: str, what: str) -> str:
    """``value`` as a device or session id (one file name inside the store), else :class:`StoreError` 400."""
    if not DEVICE_ID.match(value) or not valid_name(value) or _TOPIC_BAD.search(value) or _non_character(value):
        raise StoreError(
            400, f"{what}: {value[:60]!r} is not an id (1-128 characters; no / \\ + #, white space or control ones)"
        )
    if len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise StoreError(400, f"{what}: {value[:60]!r}... is over {MAX_NAME_BYTES} bytes as a file name")
    return value


def _non_character(value: str) -> bool:
    """Whether ``value`` holds a non-character of a supplementary plane (U+1FFFE, U+1FFFF, ... U+10FFFF)."""
    return any(ord(c) > 0xFFFF and ord(c) & 0xFFFE == 0xFFFE for c in value)


def check_segments(segments: Sequence[Any]) -> list[LabelSegment]:
    """Label segments (objects or dicts with label, start, end) checked as a person's labels are saved.

    Each label is 1-:data:`MAX_LABEL_CHARS` printable characters; start and end are finite Unix times,
    end > start (None: an open segment, running past the last sample); two segments of different labels
    may not overlap (:class:`StoreError` 400 naming both); at most :data:`MAX_SEGMENTS`. Sorted by start.
    """
    if len(segments) > MAX_SEGMENTS:
        raise StoreError(400, f"segments: {len(segments)} are more than {MAX_SEGMENTS}")
    out: list[tuple[int, LabelSegment]] = []
    for i, seg in enumerate(segments):
        get = seg.get if isinstance(seg, dict) else lambda k, s=seg: getattr(s, k, None)
        label: Any = get("label")
        start: Any = get("start")
        end: Any = get("end")
        where = f"segments[{i}]"
        if not isinstance(label, str) or not 1 <= len(label) <= MAX_LABEL_CHARS or _LABEL_BAD.search(label):
            raise StoreError(
                400, f"{where}.label: {str(label)[:40]!r} is not 1-{MAX_LABEL_CHARS} characters without control ones"
            )
        if label != label.strip():
            raise StoreError(400, f"{where}.label: {label!r} starts or ends with a space")
        for name, value in (("start", start), ("end", end)):
            if name == "end" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise StoreError(400, f"{where}.{name}: {str(value)[:40]} is not a finite number of Unix seconds")
            if not 0 <= value < MAX_TIME:
                raise StoreError(400, f"{where}.{name}: {value!r} is not a time from 1970 to the end of 9999")
        if end is not None and not end > start:
            raise StoreError(400, f"{where}: end {end!r} is not after start {start!r}")
        out.append((i, LabelSegment(label=label, start=float(start), end=None if end is None else float(end))))
    overlap = find_overlap([seg for _i, seg in out])
    if overlap is not None:
        index = {id(seg): i for i, seg in out}
        first, second = sorted(overlap, key=lambda seg: index[id(seg)])
        raise StoreError(
            400,
            f"segments[{index[id(first)]}] {_shown(first)} overlaps segments[{index[id(second)]}] {_shown(second)} "
            "(segments of different labels may not overlap)",
        )
    out.sort(key=lambda item: (item[1].start, item[0]))
    return [seg for _i, seg in out]


def _shown(seg: LabelSegment) -> str:
    end = "open" if seg.end is None else f"{seg.end:.6f}"
    return f"{seg.label!r} {seg.start:.6f}-{end}"


@dataclass(frozen=True)
class SessionRef:
    device_id: str
    session_id: str
    path: Path


class RecordingStore:
    """The store under ``root`` (created at the first upload); see the module doc."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._locks: weakref.WeakValueDictionary[tuple[str, str], threading.Lock] = weakref.WeakValueDictionary()
        self._locks_guard = threading.Lock()
        self._cache_lock = threading.Lock()
        self._summaries: OrderedDict[str, tuple[Any, dict[str, Any]]] = OrderedDict()
        self._arrays: OrderedDict[str, tuple[Any, tuple[np.ndarray, np.ndarray]]] = OrderedDict()
        self._metas: OrderedDict[str, tuple[Any, RecordingMeta]] = OrderedDict()

    # ------------------------------------------------------------------ names and locks

    def session_path(self, device_id: str, session_id: str) -> Path:
        return self.root / check_id(device_id, "device_id") / check_id(session_id, "session_id")

    def lock(self, device_id: str, session_id: str) -> threading.Lock:
        """The session's lock: one writer at a time per session (uploads, labels, delete)."""
        with self._locks_guard:
            found = self._locks.get((device_id, session_id))
            if found is None:
                found = threading.Lock()
                self._locks[(device_id, session_id)] = found
            return found

    def existing(self, device_id: str, session_id: str) -> Path:
        """The session's folder, or :class:`StoreError` 404 when it holds no ``recording.json``."""
        path = self.session_path(device_id, session_id)
        if not (path / LAYOUT_FILE).is_file():
            raise StoreError(404, f"no recording {device_id}/{session_id} (or its recording.json has not arrived)")
        return path

    # ------------------------------------------------------------------ uploads

    def files(self, device_id: str, session_id: str) -> dict[str, int]:
        """``{name: size}`` of the session's layout files (and ``labels.device.csv``); {} for an unknown one."""
        path = self.session_path(device_id, session_id)
        found: dict[str, int] = {}
        try:
            entries = list(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError):
            return found
        for entry in entries:
            if (UPLOAD_NAME.match(entry.name) or entry.name == DEVICE_LABELS_FILE) and entry.is_file(
                follow_symlinks=False
            ):
                try:
                    found[entry.name] = entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue
        return dict(sorted(found.items()))

    def append(self, device_id: str, session_id: str, name: str, offset: int, data: bytes) -> dict[str, Any]:
        """Write ``data`` at byte ``offset`` of ``name`` (which must be its size): see the module doc.

        Returns ``{"name", "size"}`` (``labels.csv`` also ``stored_as`` and ``edited``).
        """
        if not UPLOAD_NAME.match(name):
            raise StoreError(400, f"name: {name[:60]!r} is not recording.json, labels.csv or part-NNNNN.csv")
        path = self.session_path(device_id, session_id)
        if name == LABELS_FILE:
            with self.lock(device_id, session_id):
                current = self._device_labels(path)
                self._check_offset(name, offset, len(current))
                return self._store_device_labels(device_id, session_id, path, current + data)
        cap = MAX_META_BYTES if name == LAYOUT_FILE else MAX_PART_BYTES
        with self.lock(device_id, session_id):
            target = path / name
            size = _size(target)
            self._check_offset(name, offset, size)
            if size + len(data) > cap:
                raise StoreError(413, f"{name}: {size + len(data)} bytes would be over its {cap}-byte limit")
            if name == LAYOUT_FILE:
                self._check_meta(device_id, session_id, data)
            elif offset == 0:
                self._check_header(path, name, data)
            self._check_space(len(data))
            path.mkdir(parents=True, exist_ok=True)
            if name == LAYOUT_FILE:
                atomic_write(target, data)
            else:
                _append(target, data, new=size == 0)
            size = _size(target)
        self._forget(path)
        return {"name": name, "size": size}

    def put_device_labels(self, device_id: str, session_id: str, data: bytes) -> dict[str, Any]:
        """The device's whole ``labels.csv`` (replacing its earlier one), validated; where it went."""
        path = self.session_path(device_id, session_id)
        with self.lock(device_id, session_id):
            return self._store_device_labels(device_id, session_id, path, data)

    def _store_device_labels(self, device_id: str, session_id: str, path: Path, data: bytes) -> dict[str, Any]:
        if len(data) > MAX_LABELS_BYTES:
            raise StoreError(413, f"labels.csv: {len(data)} bytes are over its {MAX_LABELS_BYTES}-byte limit")
        _check_labels_bytes(path, data)
        self._check_space(len(data))
        path.mkdir(parents=True, exist_ok=True)
        edited = (path / EDITED_FILE).is_file()
        stored_as = DEVICE_LABELS_FILE if edited else LABELS_FILE
        atomic_write(path / stored_as, data)  # the device's bytes as sent: its size is what it compares
        self._forget(path)
        return {"name": LABELS_FILE, "size": len(data), "stored_as": stored_as, "edited": edited}

    def _device_labels(self, path: Path) -> bytes:
        """The device's labels as it last sent them (``labels.device.csv`` once a person edited the session)."""
        name = DEVICE_LABELS_FILE if (path / EDITED_FILE).is_file() else LABELS_FILE
        try:
            return (path / name).read_bytes()
        except FileNotFoundError:
            return b""

    @staticmethod
    def _check_offset(name: str, offset: int, size: int) -> None:
        if offset != size:
            raise StoreError(409, f"{name}: offset {offset} is not the file's size {size}; resume at {size}", size)

    @staticmethod
    def _check_meta(device_id: str, session_id: str, data: bytes) -> None:
        try:
            meta = RecordingMeta.from_json(parse_message(data, max_bytes=MAX_META_BYTES), LAYOUT_FILE)
        except RejectedMessage as exc:
            raise StoreError(400, f"recording.json: {exc.detail} (it is sent whole, at offset 0)") from None
        except LayoutError as exc:
            raise StoreError(400, str(exc).splitlines()[0]) from None
        for field, value in (("device_id", device_id), ("session_id", session_id)):
            if getattr(meta, field) != value:
                raise StoreError(400, f"recording.json: {field} {getattr(meta, field)!r} is not the URL's {value!r}")

    @staticmethod
    def _check_header(path: Path, name: str, data: bytes) -> None:
        """A part's first line, when it is whole, names the channels of the session's recording.json."""
        line, newline, _rest = data.partition(b"\n")
        if not newline:
            return
        try:
            meta = read_meta(path)
        except (LayoutError, OSError):
            return  # recording.json not there yet (or broken): the reader says so later
        expected = ",".join(["t", *meta.channels])
        got = line.rstrip(b"\r").decode("utf-8", "replace")
        if got != expected:
            raise StoreError(400, f"{name}: header {got[:80]!r} is not {expected[:80]!r} (recording.json's channels)")

    def _check_space(self, adding: int) -> None:
        where = self.root if self.root.exists() else _existing_parent(self.root)
        try:
            free = shutil.disk_usage(where).free
        except OSError:
            return
        if free - adding < MIN_FREE_BYTES:
            mb = MIN_FREE_BYTES // (1024 * 1024)
            raise StoreError(507, f"the disk of {self.root} would have less than {mb} MiB free; nothing was written")

    # ------------------------------------------------------------------ labels

    def labels(self, device_id: str, session_id: str) -> dict[str, Any]:
        path = self.existing(device_id, session_id)
        segments = _read_labels(path)
        return {
            "segments": [{"label": s.label, "start": s.start, "end": s.end} for s in segments],
            "edited": (path / EDITED_FILE).is_file(),
        }

    def put_labels(self, device_id: str, session_id: str, segments: Sequence[Any]) -> dict[str, Any]:
        """A person's labels (checked by :func:`check_segments`): written atomically, the session marked edited;
        the device's own labels are kept as ``labels.device.csv``."""
        checked = check_segments(segments)
        self.session_path(device_id, session_id)
        with self.lock(device_id, session_id):
            path = self.existing(device_id, session_id)  # under the lock: a delete may have come first
            self._check_space(MAX_LABELS_BYTES)
            if not (path / EDITED_FILE).is_file():
                device_copy = path / LABELS_FILE
                if device_copy.is_file():
                    atomic_write(path / DEVICE_LABELS_FILE, device_copy.read_bytes())
            try:
                write_labels(path, checked)
            except LayoutError as exc:
                raise StoreError(400, str(exc).splitlines()[0]) from None
            atomic_write(path / EDITED_FILE, b"labels saved by a person on serve\n")
        self._forget(path)
        return {"segments": [{"label": s.label, "start": s.start, "end": s.end} for s in checked], "edited": True}

    # ------------------------------------------------------------------ delete

    def delete(self, device_id: str, session_id: str) -> None:
        path = self.session_path(device_id, session_id)
        with self.lock(device_id, session_id):
            if not path.is_dir():
                raise StoreError(404, f"no recording {device_id}/{session_id}")
            shutil.rmtree(path)
            try:
                path.parent.rmdir()  # the device's folder, when this was its last session
            except OSError:
                pass
        self._forget(path)

    # ------------------------------------------------------------------ reading

    def sessions(self, device_id: Optional[str] = None, session_id: Optional[str] = None) -> list[SessionRef]:
        """Every session holding a ``recording.json`` (of one device / one session id), by device and session."""
        if device_id is not None:
            check_id(device_id, "device")
        if session_id is not None:
            check_id(session_id, "session")
        found: list[SessionRef] = []
        devices = [device_id] if device_id is not None else _names(self.root)
        for device in devices:
            if not _valid_id(device):
                continue
            sessions = [session_id] if session_id is not None else _names(self.root / device)
            for session in sessions:
                path = self.root / device / session
                if _valid_id(session) and (path / LAYOUT_FILE).is_file():
                    found.append(SessionRef(device, session, path))
        return found

    def started(self, ref: SessionRef) -> float:
        """recording.json's start of the session (what the list sorts by); LayoutError when unreadable."""
        return float(self._meta(ref.path).started)

    def item(self, device_id: str, session_id: str) -> dict[str, Any]:
        path = self.existing(device_id, session_id)
        return self.summary(SessionRef(device_id, session_id, path))

    def summary(self, ref: SessionRef) -> dict[str, Any]:
        """What the list shows of a session: its meta, sample count and span, labels and files.

        LayoutError when recording.json is unreadable; unreadable parts or labels give ``error`` and zeros.
        """
        sig = _signature(ref.path)
        key = str(ref.path)
        with self._cache_lock:
            cached = self._summaries.get(key)
            if cached is not None and cached[0] == sig:
                self._summaries.move_to_end(key)
                return dict(cached[1])
        meta = self._meta(ref.path)
        error: Optional[str] = None
        try:
            t, _x = self.arrays(ref.path, sig, keep=False)  # only the summary is kept
            segments = _read_labels(ref.path)
        except LayoutError as exc:
            error = str(exc).splitlines()[0][:500]
            t, segments = np.empty(0), []
        start = float(t[0]) if len(t) else None
        end = float(t[-1]) if len(t) else None
        last = (end + 1.0 / meta.sample_rate_hz) if end is not None else None
        labelled = 0.0
        for seg in segments:
            stop = seg.end if seg.end is not None else last
            if stop is not None and stop > seg.start:
                labelled += stop - seg.start
        item = {
            "device_id": ref.device_id,
            "session_id": ref.session_id,
            "channels": list(meta.channels),
            "sample_rate_hz": float(meta.sample_rate_hz),
            "started": float(meta.started),
            "start": start,
            "end": end,
            "samples": int(len(t)),
            "labels": len(segments),
            "labelled_s": labelled,
            "capture": meta.capture if isinstance(meta.capture, dict) else None,
            "subject": meta.subject,
            "model_id": meta.model_id,
            "edited": (ref.path / EDITED_FILE).is_file(),
            "files": self.files(ref.device_id, ref.session_id),
            "error": error,
        }
        with self._cache_lock:
            self._summaries[key] = (sig, item)
            while len(self._summaries) > SUMMARIES_KEPT:
                self._summaries.popitem(last=False)
        return dict(item)

    def _meta(self, path: Path) -> RecordingMeta:
        """The session's recording.json (written once: kept while its size and time are unchanged)."""
        file = path / LAYOUT_FILE
        try:
            st = file.stat()
        except OSError:
            raise LayoutError(f"{file}: no such file") from None
        sig = (st.st_size, st.st_mtime_ns)
        key = str(path)
        with self._cache_lock:
            cached = self._metas.get(key)
            if cached is not None and cached[0] == sig:
                return cached[1]
        meta = read_meta(path)
        with self._cache_lock:
            self._metas[key] = (sig, meta)
            while len(self._metas) > SUMMARIES_KEPT:
                self._metas.popitem(last=False)
        return meta

    def arrays(self, path: Path, sig: Any = None, keep: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The session's ``(t float64, samples float32)`` (:func:`read_parts`); the last few sessions read are
        kept (``keep``), within :data:`ARRAYS_KEPT` sessions and :data:`ARRAYS_MAX_BYTES` bytes."""
        sig = _signature(path) if sig is None else sig
        key = str(path)
        with self._cache_lock:
            cached = self._arrays.get(key)
            if cached is not None and cached[0] == sig:
                self._arrays.move_to_end(key)
                return cached[1]
        t, x = read_parts(path)
        t = np.asarray(t, dtype=np.float64)
        x = np.asarray(x, dtype=np.float32)  # (n, C), C from recording.json even when n is 0
        size = t.nbytes + x.nbytes
        if keep and size <= ARRAYS_MAX_BYTES:
            with self._cache_lock:
                self._arrays[key] = (sig, (t, x))
                while len(self._arrays) > ARRAYS_KEPT or (
                    len(self._arrays) > 1
                    and sum(a.nbytes + b.nbytes for _s, (a, b) in self._arrays.values()) > ARRAYS_MAX_BYTES
                ):
                    self._arrays.popitem(last=False)
        return t, x

    def signal(
        self, device_id: str, session_id: str, start: Optional[float], end: Optional[float], max_points: int
    ) -> dict[str, Any]:
        """The samples of ``start <= t < end`` (whole session by default), min/max decimated to ``max_points``."""
        path = self.existing(device_id, session_id)
        meta = self._meta(path)
        t, x = self.arrays(path)
        lo = 0 if start is None else int(np.searchsorted(t, start, side="left"))
        hi = len(t) if end is None else int(np.searchsorted(t, end, side="left"))
        t, x = t[lo:hi], x[lo : max(lo, hi)]
        dt, dx, decimated = decimate(t, x, max_points)
        return {
            "channels": list(meta.channels),
            "t": _floats(dt),
            "values": [_floats(dx[:, c]) for c in range(dx.shape[1])],
            "decimated": decimated,
            "samples": int(len(t)),
        }

    # ------------------------------------------------------------------ export

    def export(self, device_id: Optional[str], session_id: Optional[str], labelled_only: bool) -> Iterator[bytes]:
        """A zip of ``edge-har-recordings/<device>/<session>/...`` (layout files only), made as it is sent."""
        refs = self.sessions(device_id, session_id)
        sink = _Sink()
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for ref in refs:
                if labelled_only:
                    try:
                        if not _read_labels(ref.path):
                            continue
                    except LayoutError as exc:
                        log.warning("export: %s left out: %s", ref.path, exc)
                        continue
                for name, size in self.files(ref.device_id, ref.session_id).items():
                    if not UPLOAD_NAME.match(name):
                        continue
                    file = ref.path / name
                    arcname = f"edge-har-recordings/{ref.device_id}/{ref.session_id}/{name}"
                    try:
                        info = zipfile.ZipInfo.from_file(file, arcname)  # the file's time, as unzip restores it
                    except (FileNotFoundError, ValueError):  # deleted since listed; a time before 1980
                        info = zipfile.ZipInfo(arcname)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.file_size = size
                    try:
                        with open(file, "rb") as src, zf.open(info, "w", force_zip64=size > 1 << 30) as dst:
                            left = size  # what was there when listed: a part still growing is cut there
                            while left > 0:
                                chunk = src.read(min(COPY_CHUNK, left))
                                if not chunk:
                                    break
                                dst.write(chunk)
                                left -= len(chunk)
                                if sink.pending() >= COPY_CHUNK:
                                    yield sink.take()
                    except FileNotFoundError:  # deleted since it was listed
                        continue
                    if sink.pending():
                        yield sink.take()
        yield sink.take()

    # ------------------------------------------------------------------ caches

    def _forget(self, path: Path) -> None:
        key = str(path)
        with self._cache_lock:
            self._summaries.pop(key, None)
            self._arrays.pop(key, None)
            self._metas.pop(key, None)


# ---------------------------------------------------------------------------------------------- helpers


def decimate(t: np.ndarray, x: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """At most ``max_points`` samples of ``(t, x)``: as they are when few enough, else min/max per bucket.

    The samples are cut into ``max_points // 2`` buckets of equal count; each gives two points, at its first
    and last time, holding per channel the bucket's minimum and maximum in the order they occur, so every
    peak of the signal stays visible however far it is zoomed out.
    """
    n = len(t)
    if n <= max_points:
        return t, x, False
    buckets = max(1, max_points // 2)
    width = -(-n // buckets)
    buckets = -(-n // width)
    padded = buckets * width
    channels = x.shape[1]
    xp = np.full((padded, channels), np.nan)
    xp[:n] = x
    xb = xp.reshape(buckets, width, channels)
    filled = np.where(np.isnan(xb), np.inf, xb)
    arg_min = np.argmin(filled, axis=1)
    arg_max = np.argmax(np.where(np.isnan(xb), -np.inf, xb), axis=1)
    rows = np.arange(buckets)[:, None]
    cols = np.arange(channels)[None, :]
    lo = xb[rows, arg_min, cols]
    hi = xb[rows, arg_max, cols]
    min_first = arg_min <= arg_max
    first = np.where(min_first, lo, hi)
    second = np.where(min_first, hi, lo)
    starts = np.arange(buckets) * width
    ends = np.minimum(starts + width, n) - 1
    out_t = np.empty(2 * buckets)
    out_t[0::2] = t[starts]
    out_t[1::2] = t[ends]
    out_x = np.empty((2 * buckets, channels))
    out_x[0::2] = first
    out_x[1::2] = second
    return out_t, out_x, True


def _floats(values: np.ndarray) -> list[Optional[float]]:
    """JSON-ready floats: a non-finite value (a NaN a reader let through) becomes null."""
    if np.isfinite(values).all():
        return [float(v) for v in values.tolist()]
    return [float(v) if math.isfinite(v) else None for v in values.tolist()]


def _read_labels(path: Path) -> list[LabelSegment]:
    if not (path / LABELS_FILE).is_file():
        return []
    return list(read_labels(path))


def _check_labels_bytes(path: Path, data: bytes) -> None:
    """``data`` as a ``labels.csv`` :func:`read_labels` accepts, else :class:`StoreError` 400 naming the line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    check_dir = Path(tempfile.mkdtemp(prefix=".labels-check-", dir=path.parent))
    try:
        (check_dir / LABELS_FILE).write_bytes(data)
        try:
            segments = read_labels(check_dir)
        except LayoutError as exc:
            text = str(exc).splitlines()[0].replace(str(check_dir / LABELS_FILE), LABELS_FILE)
            raise StoreError(400, text.replace(str(check_dir), "")) from None
        except UnicodeDecodeError:
            raise StoreError(400, "labels.csv: not UTF-8 text") from None
        if len(segments) > MAX_SEGMENTS:
            raise StoreError(400, f"labels.csv: {len(segments)} segments are more than {MAX_SEGMENTS}")
    finally:
        shutil.rmtree(check_dir, ignore_errors=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _append(path: Path, data: bytes, new: bool) -> None:
    with open(path, "ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if new:
        fsync_dir(path.parent)


def _names(path: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(path) if e.is_dir(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _valid_id(value: str) -> bool:
    try:
        check_id(value, "id")
    except StoreError:
        return False
    return True


def _existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _signature(path: Path) -> tuple[tuple[str, int, int], ...]:
    """The sizes and times of the session's files: a cached summary or array is good while it is unchanged."""
    sig: list[tuple[str, int, int]] = []
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return ()
    for entry in entries:
        if PART_RE.match(entry.name) or entry.name in (LAYOUT_FILE, LABELS_FILE, EDITED_FILE):
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            sig.append((entry.name, st.st_size, st.st_mtime_ns))
    return tuple(sorted(sig))


class _Sink(io.RawIOBase):
    """A write-only stream the zip is written into and the response takes from (no seek: zipfile then writes
    each entry's sizes after its data)."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self._pending = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._parts.append(data)
        self._pending += len(data)
        return len(data)

    def pending(self) -> int:
        return self._pending

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts = []
        self._pending = 0
        return data
