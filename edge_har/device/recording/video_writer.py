"""Write one camera session as frames arrive: Motion-JPEG parts with a frame index, rotated, synced, bounded.

Each frame is encoded to JPEG and appended to ``part-NNNNN.mjpeg`` with one ``os.write``, then its
line ``t,offset,length`` goes to ``part-NNNNN.frames.csv`` (:mod:`edge_har.core.video_recording_layout`):
the index never names bytes that were not handed to the OS first, so a killed process loses
nothing, and both files are fsync'd at most every ``fsync_interval_s`` (and on rotation and close),
so a power cut loses at most about that much. A part is rotated by size or by age.

The same two limits as the sensor writer stop a session with :class:`RecordingFull`, each
leaving every file valid: the byte budget (checked before a frame is written) and a full disk
(both files are cut back to the last whole frame). Labels are the shared ``labels.csv``.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from edge_har.core.recording_layout import LayoutError, fsync_dir
from edge_har.core.video_recording_layout import (
    INDEX_HEADER,
    VIDEO_META_FILE,
    VideoMeta,
    index_name,
    video_part_name,
    write_video_meta,
)
from edge_har.device.recording.writer import MIB, SessionWriter

__all__ = ["VideoRecordingWriter", "encode_jpeg"]

log = logging.getLogger(__name__)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """A BGR uint8 image as JPEG bytes (OpenCV, as the camera source already needs)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise LayoutError(f"OpenCV could not encode a frame of shape {image.shape} as JPEG")
    return bytes(buf)


class VideoRecordingWriter(SessionWriter):
    """Write ``meta``'s camera session into ``session_dir`` (created; it must not hold a session yet).

    ``video.json`` and an empty ``labels.csv`` are written at once; frames go through
    :meth:`write_frame`. Thread-safe like the sensor writer (a camera loop writing, an MQTT thread
    setting labels). ``samples_written`` counts frames, so the recorder's state reads alike.
    """

    unit = "frames"

    def __init__(
        self,
        session_dir: Path,
        meta: VideoMeta,
        *,
        rotate_bytes: int = 64 * MIB,
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
        self._fds: tuple[int, int] | None = None  # (frames, index)
        self._paths: tuple[Path, Path] | None = None
        self._sizes = [0, 0]
        self._part_frames = 0
        self._begin(VIDEO_META_FILE, lambda: write_video_meta(self.session_dir, meta))

    @property
    def part_path(self) -> Path | None:
        """The ``.mjpeg`` part being written (None before the first frame or after close)."""
        return None if self._paths is None else self._paths[0]

    def write_frame(self, t: float, image: np.ndarray) -> None:
        """Encode ``image`` (BGR uint8) and append it at unix time ``t``; see :meth:`write_jpeg`."""
        self.write_jpeg(t, encode_jpeg(image, self.meta.jpeg_quality))

    def write_jpeg(self, t: float, jpeg: bytes) -> None:
        """Append one encoded frame. A time before the previous frame's is raised to it (a clock step).

        Raises :class:`RecordingFull` when the budget would be passed (nothing of the frame is
        written) or the disk is full (both files are cut back to the frame before).
        """
        if not np.isfinite(t):
            raise LayoutError(f"{self.session_dir}: frame time {t!r} is not a finite number")
        if not jpeg:
            raise LayoutError(f"{self.session_dir}: an empty frame")
        with self._lock:
            if self._closed:
                raise LayoutError(f"{self.session_dir}: the recording is closed")
            if self.full is not None:
                raise self.full
            t = float(t) if self._last_t is None else max(float(t), self._last_t)
            now = self._clock()
            rotate = self._fds is None or (
                self._part_frames > 0
                and (self._sizes[0] + len(jpeg) > self.rotate_bytes or now - self._part_opened >= self.rotate_s)
            )
            line = f"{t:.6f},{0 if rotate else self._sizes[0]},{len(jpeg)}\n".encode("ascii")
            self._over_budget(len(jpeg) + len(line) + (len(INDEX_HEADER) if rotate else 0), self.part_path)
            if rotate:
                self._next_part(now)
            self._append(0, jpeg)
            self._append(1, line)
            self._part_frames += 1
            self.samples_written += 1
            self._last_t = t
            if now - self._last_sync >= self.fsync_interval_s:
                self._sync()

    def _next_part(self, now: float) -> None:
        if self._fds is not None:
            self._close_part()
        self._index += 1
        frames = self.session_dir / video_part_name(self._index)
        index = self.session_dir / index_name(frames)
        for path in (frames, index):
            if path.is_file() and path.stat().st_size > 0:
                raise LayoutError(f"{path}: already exists; a session's parts are written once")
        fds: list[int] = []
        for path in (frames, index):
            try:
                fds.append(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644))
            except OSError as exc:
                for fd in fds:
                    os.close(fd)
                self._raise_os(exc, path)
        self._fds = (fds[0], fds[1])
        self._paths = (frames, index)
        self._sizes = [0, 0]
        self._part_frames = 0
        self._part_opened = now
        fsync_dir(self.session_dir)
        self._append(1, INDEX_HEADER.encode("ascii"))

    def _append(self, which: int, data: bytes) -> None:
        """Write all of ``data`` to the frames (0) or index (1) file, or cut both back to the last frame and raise."""
        assert self._fds is not None and self._paths is not None
        done = 0
        try:
            while done < len(data):
                n = os.write(self._fds[which], data[done:])
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += n
        except OSError as exc:
            self._cut_back()
            self._raise_os(exc, self._paths[which])
        self._sizes[which] += len(data)
        self.bytes_written += len(data)

    def _cut_back(self) -> None:
        """Truncate both files to the end of the last frame the index names; best effort."""
        assert self._fds is not None
        for fd, size in zip(self._fds, self._sizes):
            try:
                os.ftruncate(fd, size)
                os.fsync(fd)
            except OSError:
                pass  # a device file or a failing disk: the reader skips what the index cannot vouch for

    def _abandon_part(self) -> None:
        if self._fds is None:
            return
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        if self._part_frames > 0 and self._paths is not None:
            self._finished.extend(self._paths)
        self._fds = None
        self._paths = None

    @property
    def period_s(self) -> float:
        return 1.0 / self.meta.fps

    def _part_open(self) -> bool:
        return self._fds is not None

    def _sync_files(self) -> None:
        if self._fds is not None and self._paths is not None:
            for fd, path in zip(self._fds, self._paths):  # the frames before the index that names them
                self._fsync(fd, path)

    def _close_part(self) -> None:
        assert self._fds is not None and self._paths is not None
        fds, paths = self._fds, self._paths
        try:
            self._sync()
        finally:
            for fd in fds:
                os.close(fd)
            self._finished.extend(paths)
            self._fds = None
            self._paths = None
