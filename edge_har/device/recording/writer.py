"""Write one recording session as samples arrive: CSV parts, rotated, synced, bounded.

Samples go to ``part-NNNNN.csv`` with one ``os.write`` per chunk (no user-space buffer, so a
crashed or killed process loses nothing the call returned from), fsync'd at most every
``fsync_interval_s`` (and on rotation and close), so a power cut loses at most about that
much. A part is rotated by size or by age; a rotated part never changes again and can be
uploaded whole (:meth:`RecordingWriter.finished_parts`).

Two limits stop a session with :class:`RecordingFull`, each leaving every file valid: the
session's byte budget (checked before a chunk is written, so nothing past it is written) and
a full disk (``ENOSPC`` / ``EDQUOT``: the part is cut back to its last complete line).
Labels are segments in ``labels.csv``, rewritten atomically on every change.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Callable, Self

import numpy as np

from edge_har.core.errors import EdgeHarError
from edge_har.core.recording_layout import (
    LABELS_FILE,
    LAYOUT_FILE,
    LabelSegment,
    LayoutError,
    RecordingMeta,
    format_rows,
    fsync_dir,
    part_name,
    write_labels,
    write_meta,
)

__all__ = ["RecordingFull", "RecordingWriter", "SessionWriter"]

log = logging.getLogger(__name__)

MIB = 1024 * 1024
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


class RecordingFull(EdgeHarError, OSError):
    """The session cannot take more samples: its byte budget is reached or the disk is full.

    The message says which, and names the file; what was written before stays valid.
    """


def _mb(n: int) -> str:
    return f"{n / MIB:.4g} MB"


class SessionWriter:
    """What every session writer shares: the folder, the lock, the limits, the counters and the labels.

    Labels are segments in ``labels.csv``, rewritten atomically on every change. A subclass writes
    its own media into parts (:meth:`_close_part`, :meth:`_abandon_part`, :meth:`_sync_files`) and
    names its unit (``unit``: samples or frames) and the period that ends an open label at close.
    """

    unit = "samples"

    def __init__(
        self,
        session_dir: Path,
        *,
        rotate_bytes: int,
        rotate_s: float,
        budget_bytes: int | None,
        fsync_interval_s: float,
        clock: Callable[[], float],
    ) -> None:
        if rotate_bytes <= 0 or not rotate_s > 0 or not fsync_interval_s >= 0:
            raise ValueError("rotate_bytes and rotate_s must be > 0, fsync_interval_s >= 0")
        if budget_bytes is not None and budget_bytes <= 0:
            raise ValueError(f"budget_bytes must be > 0, got {budget_bytes}")
        self.rotate_bytes = int(rotate_bytes)
        self.rotate_s = float(rotate_s)
        self.budget_bytes = None if budget_bytes is None else int(budget_bytes)
        self.fsync_interval_s = float(fsync_interval_s)
        self._clock = clock
        self.samples_written = 0  # samples or frames handed to the OS (a killed process keeps them)
        self.samples_synced = 0  # ... fsync'd (a power cut keeps them)
        self.bytes_written = 0  # bytes of every part, headers included
        self._last_t: float | None = None
        self._finished: list[Path] = []
        self._index = -1
        self._part_opened = 0.0
        self._last_sync = clock()
        self.session_dir = Path(session_dir)
        self._lock = threading.RLock()
        self.label: str | None = None
        self.full: RecordingFull | None = None  # set once the session is full; every later write raises it
        self._segments: list[LabelSegment] = []
        self._closed = False
        try:
            self.session_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if exc.errno not in _FULL_ERRNOS:
                raise
            raise RecordingFull(f"{self.session_dir}: disk full ({exc.strerror}); the session cannot start") from None

    def _begin(self, meta_file: str, write_meta: Callable[[], None]) -> None:
        """Write the session's metadata file and an empty ``labels.csv``, and make the new folder durable."""
        self._small_file(meta_file, write_meta)
        self._small_file(LABELS_FILE, lambda: write_labels(self.session_dir, []))
        fsync_dir(self.session_dir.parent)

    def _small_file(self, name: str, write: Callable[[], None]) -> None:
        """Run an atomic write of a metadata file or ``labels.csv``; a full disk is :class:`RecordingFull`."""
        try:
            write()
        except OSError as exc:
            if exc.errno not in _FULL_ERRNOS:
                raise
            raise RecordingFull(
                f"{self.session_dir / name}: disk full ({exc.strerror or exc}); the file keeps its last complete version"
            ) from None

    def set_label(self, label: str | None, ts: float) -> None:
        """End the open segment at ``ts`` and open one of ``label`` there (None: no label from ``ts``).

        The same label again changes nothing. ``ts`` earlier than the open segment's start (a clock
        step) is taken as that start. ``labels.csv`` is rewritten atomically.
        """
        if not math.isfinite(ts):
            raise LayoutError(f"{self.session_dir}: label time {ts!r} is not a finite number")
        with self._lock:
            if label == self.label:
                return
            segments = list(self._segments)
            if segments and segments[-1].end is None:
                open_seg = segments[-1]
                ts = max(float(ts), open_seg.start)
                if ts > open_seg.start:
                    segments[-1] = LabelSegment(open_seg.label, open_seg.start, ts)
                else:
                    segments.pop()  # no time passed under that label
            elif segments and segments[-1].end is not None:
                ts = max(float(ts), segments[-1].stop)
            if label is not None:
                segments.append(LabelSegment(label, float(ts), None))
            # validates the label before anything changes
            self._small_file(LABELS_FILE, lambda: write_labels(self.session_dir, segments))
            self._segments = segments
            self.label = label

    def segments(self) -> list[LabelSegment]:
        """The labels so far (the open one last, with end None)."""
        with self._lock:
            return list(self._segments)

    def _end_labels(self, end: float | None) -> None:
        """Close the open segment at ``end`` (dropped when None or not after its start) and write the file."""
        if self._segments and self._segments[-1].end is None:
            open_seg = self._segments[-1]
            if end is not None and end > open_seg.start:
                self._segments[-1] = LabelSegment(open_seg.label, open_seg.start, end)
            else:
                self._segments.pop()  # nothing was recorded under it
            done = list(self._segments)
            self._small_file(LABELS_FILE, lambda: write_labels(self.session_dir, done))
        self.label = None

    # -------------------------------------------------------------- limits

    def _over_budget(self, need: int, where: Path | None) -> None:
        """Raise (and keep) :class:`RecordingFull` when ``need`` more bytes would pass the budget."""
        if self.budget_bytes is None or self.bytes_written + need <= self.budget_bytes:
            return
        self.full = RecordingFull(
            f"{where or self.session_dir}: the recording budget of {_mb(self.budget_bytes)} ({self.budget_bytes} "
            f"bytes) is reached ({self.bytes_written} bytes written); the session takes no more {self.unit}"
        )
        self._sync()
        raise self.full

    def _raise_os(self, exc: OSError, path: Path) -> None:
        """A full disk closes the part and raises (and keeps) :class:`RecordingFull`; anything else re-raises."""
        if exc.errno in _FULL_ERRNOS:
            self._abandon_part()
            self.full = RecordingFull(
                f"{path}: disk full ({exc.strerror or exc}); the session stops at {self.samples_written} "
                f"{self.unit}, everything before stays valid"
            )
            raise self.full from None
        raise exc

    def _fsync(self, fd: int, path: Path) -> None:
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno in _FULL_ERRNOS:
                self._raise_os(exc, path)
            if exc.errno != errno.EINVAL:  # EINVAL: a file that cannot be synced (a device, a pipe)
                raise

    def _sync(self) -> None:
        """fsync the open part; what was written so far survives a power cut."""
        self._sync_files()
        self.samples_synced = self.samples_written
        self._last_sync = self._clock()

    def sync(self) -> None:
        """fsync now (a caller whose input stalls can call this on its own timer)."""
        with self._lock:
            self._sync()

    def finished_parts(self) -> list[Path]:
        """Files that no longer change (rotated parts, or all of them after :meth:`close`): safe to upload whole."""
        with self._lock:
            return list(self._finished)

    # -------------------------------------------------------------- what a subclass writes

    @property
    def period_s(self) -> float:  # pragma: no cover - every subclass has its own
        """One sample (or frame) period: an open label ends this long after the last one at close."""
        raise NotImplementedError

    def _part_open(self) -> bool:  # pragma: no cover
        raise NotImplementedError

    def _sync_files(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def _close_part(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def _abandon_part(self) -> None:  # pragma: no cover
        raise NotImplementedError

    # -------------------------------------------------------------- end

    def close(self) -> None:
        """fsync and close the part; an open segment ends one period after the last sample or frame.

        On a full disk the part is closed first, then :class:`RecordingFull` is raised (``labels.csv``
        then keeps its last complete version).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._part_open():
                    self._close_part()
            finally:
                self._end_labels(None if self._last_t is None else self._last_t + self.period_s)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecordingWriter(SessionWriter):
    """Write ``meta``'s session into ``session_dir`` (created; it must not hold a session yet).

    ``recording.json`` and an empty ``labels.csv`` are written at once; samples go through
    :meth:`write`. Safe to call from several threads (a source thread writing, an MQTT thread
    setting labels). ``clock`` (monotonic seconds) drives rotation by age and the fsync cadence.
    """

    def __init__(
        self,
        session_dir: Path,
        meta: RecordingMeta,
        *,
        rotate_bytes: int = 8 * MIB,
        rotate_s: float = 600,
        budget_bytes: int | None = None,
        fsync_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            session_dir,
            rotate_bytes=rotate_bytes,
            rotate_s=rotate_s,
            budget_bytes=budget_bytes,
            fsync_interval_s=fsync_interval_s,
            clock=clock,
        )
        self.meta = meta
        self._header = ("t," + ",".join(meta.channels) + "\n").encode("utf-8")
        self.samples_dropped = 0  # rows with a non-finite time or value, left out
        self._fd: int | None = None
        self._path: Path | None = None
        self._part_bytes = 0
        self._part_rows = 0
        self._begin(LAYOUT_FILE, lambda: write_meta(self.session_dir, meta))

    # -------------------------------------------------------------- samples

    @property
    def part_path(self) -> Path | None:
        """The part being written (None before the first sample or after close)."""
        return self._path

    def write(self, t: np.ndarray, samples: np.ndarray) -> None:
        """Append samples (``t`` (n,) unix seconds, ``samples`` (n, C) raw values).

        Rows with a non-finite time or value are left out (counted in ``samples_dropped``). Raises
        :class:`RecordingFull` when the budget would be passed (nothing of the chunk is written) or
        the disk is full (the part is cut back to its last complete line).
        """
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim == 1 and len(self.meta.channels) == x.shape[0] and len(t) == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape != (len(t), len(self.meta.channels)):
            raise LayoutError(
                f"{self.session_dir}: samples of shape {x.shape} for {len(t)} time stamps and "
                f"{len(self.meta.channels)} channels"
            )
        good = np.isfinite(t) & np.isfinite(x).all(axis=1)
        if not good.all():
            dropped = int((~good).sum())
            if self.samples_dropped == 0:
                log.warning("%s: %d sample(s) with a non-finite time or value left out", self.session_dir, dropped)
            self.samples_dropped += dropped
            t, x = t[good], x[good]
        if len(t) == 0:
            return
        data = format_rows(t, x).encode("utf-8")
        with self._lock:
            if self._closed:
                raise LayoutError(f"{self.session_dir}: the recording is closed")
            if self.full is not None:
                raise self.full
            now = self._clock()
            rotate = self._fd is None or (
                self._part_rows > 0
                and (self._part_bytes + len(data) > self.rotate_bytes or now - self._part_opened >= self.rotate_s)
            )
            self._over_budget(len(data) + (len(self._header) if rotate else 0), self._path)
            if rotate:
                self._next_part(now)
            self._append(data)
            self._part_rows += len(t)
            self.samples_written += len(t)
            self._last_t = float(t[-1])
            if now - self._last_sync >= self.fsync_interval_s:
                self._sync()

    def _next_part(self, now: float) -> None:
        if self._fd is not None:
            self._close_part()
        self._index += 1
        path = self.session_dir / part_name(self._index)
        if path.is_file() and path.stat().st_size > 0:
            raise LayoutError(f"{path}: already exists; a session's parts are written once")
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            self._raise_os(exc, path)
        self._path = path
        self._part_bytes = 0
        self._part_rows = 0
        self._part_opened = now
        fsync_dir(self.session_dir)
        self._append(self._header)

    def _append(self, data: bytes) -> None:
        """Write all of ``data`` to the part, or cut the part back to where it was and raise."""
        assert self._fd is not None and self._path is not None
        done = 0
        try:
            while done < len(data):
                n = os.write(self._fd, data[done:])
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += n
        except OSError as exc:
            self._cut_back(self._part_bytes)
            self._raise_os(exc, self._path)
        self._part_bytes += len(data)
        self.bytes_written += len(data)

    def _cut_back(self, size: int) -> None:
        """Truncate the part to ``size`` bytes (the end of its last complete line); best effort."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, size)
            os.fsync(self._fd)
        except OSError:
            pass  # a device file (/dev/full) or a failing disk: nothing more can be done here

    def _abandon_part(self) -> None:
        """Close the part after a full disk without another write; it counts as finished when it holds rows."""
        if self._fd is None:
            return
        try:
            os.close(self._fd)
        except OSError:
            pass
        if self._part_rows > 0 and self._path is not None:
            self._finished.append(self._path)
        self._fd = None
        self._path = None

    @property
    def period_s(self) -> float:
        return 1.0 / self.meta.sample_rate_hz

    def _part_open(self) -> bool:
        return self._fd is not None

    def _sync_files(self) -> None:
        if self._fd is not None:
            self._fsync(self._fd, self._path or self.session_dir)

    def _close_part(self) -> None:
        assert self._fd is not None and self._path is not None
        fd, path = self._fd, self._path
        try:
            self._sync()
        finally:
            os.close(fd)
            self._finished.append(path)
            self._fd = None
            self._path = None
