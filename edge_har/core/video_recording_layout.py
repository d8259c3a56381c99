"""The on-disk layout of a camera recording: ``video.json``, ``part-NNNNN.mjpeg`` + index, ``labels.csv``.

``edge-har record`` writes it from a camera source and ``convert-video --data`` reads it in place
(layout ``recorded``), so this module is the one definition both share. A *video session* is a
folder holding ``video.json`` (written once, atomically); its frames are JPEG images appended one
after another to ``part-NNNNN.mjpeg`` (a Motion-JPEG stream that ffmpeg, VLC and OpenCV play as
it is), and each frame's capture time and place in the part is a line ``t,offset,length`` of
``part-NNNNN.frames.csv``, written after the frame's bytes. Labels are the sensor layout's
``labels.csv`` (:mod:`edge_har.core.recording_layout`), so the same label inputs, pages and
interval rules apply.

A power cut leaves at most a partial last frame and a partial last index line: a line without
its newline, or one whose bytes run past the end of the part, is skipped with one warning, and
every frame before it stays valid. A video session has no ``recording.json``, so the sensor
format never mistakes it for samples.

Every reader takes outside input (a copied folder), so each is bounded and raises only
:class:`~edge_har.core.recording_layout.LayoutError`, whose one-line message names the file and
the line or key at fault. numpy-free and without OpenCV: this runs on the device.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from edge_har.core.recording_layout import (
    DETECT_DEPTH,
    LayoutError,
    _finite,
    _read_bounded,
    check_session_keys,
    key_error,
    optional_texts,
    read_json_file,
    session_dirs,
    write_json_once,
)

__all__ = [
    "INDEX_HEADER",
    "MAX_FRAME_BYTES",
    "VIDEO_FORMAT_NAME",
    "VIDEO_META_FILE",
    "VideoFrameRef",
    "VideoMeta",
    "index_name",
    "iter_frames",
    "read_frame_index",
    "read_video_meta",
    "video_part_files",
    "video_part_name",
    "video_session_dirs",
    "write_video_meta",
]

log = logging.getLogger(__name__)

VIDEO_META_FILE = "video.json"
VIDEO_FORMAT_NAME = "edge-har-video-recording"
VIDEO_VERSION = 1
INDEX_HEADER = "t,offset,length\n"
VIDEO_PART_RE = re.compile(r"^part-(\d{5})\.mjpeg$")
MAX_VIDEO_META_BYTES = 64 * 1024
MAX_INDEX_BYTES = 64 * 1024 * 1024  # about 1.5 million frames: far above any rotation
MAX_FRAME_BYTES = 32 * 1024 * 1024  # one JPEG; an 8K frame at quality 100 stays below it


@dataclass
class VideoMeta:
    """What ``video.json`` says about one camera session."""

    device_id: str
    session_id: str
    started: float
    width: int
    height: int
    fps: float  # the rate the camera granted (nominal; each frame carries its own time)
    source: str = ""
    subject: str | None = None
    model_id: str | None = None
    jpeg_quality: int = 90

    @property
    def effective_subject(self) -> str:
        """The subject the footage shows: ``subject``, else the device id."""
        return self.subject or self.device_id

    def to_json(self) -> dict[str, Any]:
        return {
            "format": VIDEO_FORMAT_NAME,
            "version": VIDEO_VERSION,
            "device_id": self.device_id,
            "session_id": self.session_id,
            "started": float(self.started),
            "width": int(self.width),
            "height": int(self.height),
            "fps": float(self.fps),
            "source": self.source,
            "subject": self.subject,
            "model_id": self.model_id,
            "jpeg_quality": int(self.jpeg_quality),
        }

    @classmethod
    def from_json(cls, d: object, where: str | Path = VIDEO_META_FILE) -> VideoMeta:
        """Validate a parsed ``video.json``; a LayoutError names ``where`` and the key (unknown keys are ignored)."""
        d = check_session_keys(d, where, VIDEO_FORMAT_NAME, VIDEO_VERSION)

        def bad(key: str, why: str) -> LayoutError:
            return key_error(d, where, key, why)

        sizes: dict[str, int] = {}
        for key in ("width", "height"):
            value = d.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 16384:
                raise bad(key, "expected a whole number of pixels, 1-16384")
            sizes[key] = value
        fps = d.get("fps")
        if not _finite(fps) or not 0 < float(fps) <= 1000:  # type: ignore[arg-type]
            raise bad("fps", "expected a frame rate in (0, 1000]")
        quality = d.get("jpeg_quality", 90)
        if not isinstance(quality, int) or isinstance(quality, bool) or not 1 <= quality <= 100:
            raise bad("jpeg_quality", "expected a whole number 1-100")
        source = d.get("source", "")
        if not isinstance(source, str) or len(source) > 256:
            raise bad("source", "expected a string of at most 256 characters")
        optional = optional_texts(d, where, ("subject", "model_id"))
        return cls(
            device_id=str(d["device_id"]),
            session_id=str(d["session_id"]),
            started=float(d["started"]),
            width=sizes["width"],
            height=sizes["height"],
            fps=float(fps),  # type: ignore[arg-type]
            source=source,
            subject=optional["subject"],
            model_id=optional["model_id"],
            jpeg_quality=quality,
        )


def read_video_meta(session_dir: str | Path) -> VideoMeta:
    """The session's ``video.json``, validated."""
    path = Path(session_dir) / VIDEO_META_FILE
    return VideoMeta.from_json(read_json_file(path, MAX_VIDEO_META_BYTES), path)


def write_video_meta(session_dir: str | Path, meta: VideoMeta) -> None:
    """Write ``video.json`` atomically; a LayoutError when the session already has one."""
    write_json_once(Path(session_dir) / VIDEO_META_FILE, meta.to_json(), VideoMeta.from_json)


# ------------------------------------------------------------------ parts and their index


def video_part_name(index: int) -> str:
    """``part-00007.mjpeg`` for 7."""
    return f"part-{index:05d}.mjpeg"


def index_name(part: str | Path) -> str:
    """The index file of a part: ``part-00007.frames.csv`` for ``part-00007.mjpeg``."""
    return Path(part).name.removesuffix(".mjpeg") + ".frames.csv"


def video_part_files(session_dir: str | Path) -> list[Path]:
    """The session's ``part-NNNNN.mjpeg`` files in order."""
    root = Path(session_dir)
    try:
        names = sorted(p.name for p in root.iterdir() if VIDEO_PART_RE.match(p.name) and p.is_file())
    except OSError as exc:
        raise LayoutError(f"{root}: cannot list the session ({exc.strerror or exc})") from None
    return [root / n for n in names]


@dataclass(frozen=True)
class VideoFrameRef:
    """One frame: its capture time (unix seconds) and where its JPEG lies in ``part``."""

    t: float
    part: Path
    offset: int
    length: int


def read_frame_index(part: str | Path) -> list[VideoFrameRef]:
    """The frames of one part, from its index, in file order.

    A last line without its newline, or a frame whose bytes run past the end of the part (a power
    cut), ends the part with one warning; any other bad line is a LayoutError naming the line.
    Times must not go back (a frame earlier than the one before is a LayoutError).
    """
    part = Path(part)
    path = part.with_name(index_name(part))
    data = _read_bounded(path, MAX_INDEX_BYTES, "the frame index")
    try:
        size = part.stat().st_size
    except OSError as exc:
        raise LayoutError(f"{part}: cannot read the part ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LayoutError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    lines = text.split("\n")
    if not lines or lines[0] + "\n" != INDEX_HEADER:
        if len(lines) == 1:  # a power cut before the header reached the disk
            log.warning("%s: no complete header; the part holds no frames", path)
            return []
        raise LayoutError(f"{path}:1: expected the header {INDEX_HEADER.strip()!r}, got {lines[0][:60]!r}")
    refs: list[VideoFrameRef] = []
    last_t = -math.inf
    end = 0
    for lineno, line in enumerate(lines[1:-1], start=2):  # the piece after the last newline is never complete
        fields = line.split(",")
        if len(fields) != 3:
            raise LayoutError(f"{path}:{lineno}: {len(fields)} fields; a line is 't,offset,length'")
        try:
            t = float(fields[0])
            offset, length = int(fields[1]), int(fields[2])
        except ValueError:
            raise LayoutError(f"{path}:{lineno}: not 't,offset,length' numbers: {line[:60]!r}") from None
        if not math.isfinite(t):
            raise LayoutError(f"{path}:{lineno}: time {fields[0][:40]!r} is not a finite number")
        if t < last_t:
            raise LayoutError(f"{path}:{lineno}: time {fields[0]} goes back (the frame before is at {last_t:.6f})")
        if offset != end or not 0 < length <= MAX_FRAME_BYTES:
            raise LayoutError(
                f"{path}:{lineno}: frame at byte {offset} of {length} bytes; expected it at byte {end}, "
                f"1-{MAX_FRAME_BYTES} bytes"
            )
        if offset + length > size:
            log.warning(
                "%s:%d: the frame runs past the end of %s (a cut recording); the part ends before it",
                path,
                lineno,
                part.name,
            )
            return refs
        refs.append(VideoFrameRef(t, part, offset, length))
        last_t, end = t, offset + length
    if lines[-1]:
        log.warning("%s: the last line has no newline (a cut recording); it is left out", path)
    return refs


def iter_frames(
    session_dir: str | Path, start: float = -math.inf, stop: float = math.inf
) -> Iterator[tuple[float, bytes]]:
    """(time, JPEG bytes) of every frame with ``start <= t < stop``, part by part, in time order."""
    for part in video_part_files(session_dir):
        refs = [r for r in read_frame_index(part) if start <= r.t < stop]
        if not refs:
            continue
        try:
            with open(part, "rb") as f:
                for ref in refs:
                    f.seek(ref.offset)
                    yield ref.t, f.read(ref.length)
        except OSError as exc:
            raise LayoutError(f"{part}: cannot read ({exc.strerror or exc})") from None


def video_session_dirs(root: str | Path, max_depth: int = DETECT_DEPTH) -> list[Path]:
    """Every folder at or below ``root`` (at most ``max_depth`` down) holding ``video.json``, sorted."""
    return session_dirs(root, max_depth, VIDEO_META_FILE)
