"""Camera source on OpenCV: a device index or V4L2 node, a video file, or a network stream (RTSP/HTTP).

A capture thread reads frames as fast as the camera delivers them and keeps
only the newest ``buffer_frames`` in a slot; the daemon takes the newest. When
inference is slower than the camera, frames that were never taken are
**dropped** (and counted) rather than queued: the model always sees the
present, not a backlog that grows by the minute. OpenCV's own capture buffer
is shrunk to one frame where the backend allows it, for the same reason.

When a live camera stops delivering (unplugged, a network stream that dies,
``read()`` failing or blocking past ``read_timeout_s``) the thread releases
it and reopens it with exponential backoff (``reconnect_initial_s`` doubling
up to ``reconnect_max_s``) until it is back or the source is closed; the
daemon never dies of a lost camera. Every (re)opening starts a new
``segment``, and frames carry it, so the video runtime can drop a window that
would span the gap.

Files are for tests, demos and benchmarks: ``realtime: true`` paces them at
their own frame rate (frames are then dropped exactly as from a camera whose
consumer is slow); ``realtime: false`` hands every frame over, waiting for the
consumer (no drops, as fast as inference allows). File frames carry the
timestamp ``index / file_fps``, the rule training used, so the model's frame
sampling keeps the same frames it was trained on.

Requested ``width``/``height``/``fps``/``fourcc`` are sent to the driver and
what it actually granted is logged (cameras round to their own modes).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional, Union

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from edge_har.core.errors import EdgeHarError
from edge_har.device.sources.base import Backoff, Chunk, Source, SourceContext, SourceError
from edge_har.device.sources.config_base import SourceConfigBase, Where, resolve_path

log = logging.getLogger(__name__)


class CameraSourceConfig(SourceConfigBase):
    """``source: {type: camera, ...}`` in a device config."""

    needs_video_bundle: ClassVar[bool] = True

    type: Literal["camera"] = "camera"
    device: Union[int, str] = Field(
        0,
        description=(
            "What to open: a camera index (0 = /dev/video0), a V4L2 node such as /dev/video0, a video file path, "
            "or a network stream URL (rtsp://user@host:554/stream, http://host:8080/video)."
        ),
    )
    width: Optional[int] = Field(
        None, ge=16, le=7680, description="Requested frame width in pixels (the driver may round it)."
    )
    height: Optional[int] = Field(None, ge=16, le=4320, description="Requested frame height in pixels.")
    fps: Optional[float] = Field(
        None, gt=0, le=240, description="Requested camera frame rate; the model samples its own rate from it."
    )
    fourcc: Optional[str] = Field(
        None,
        description="Requested pixel format, e.g. MJPG: USB webcams deliver higher rates and sizes in MJPG than in raw YUYV.",
    )
    backend: Literal["auto", "v4l2", "ffmpeg", "gstreamer"] = Field(
        "auto",
        description=(
            "OpenCV capture backend; auto lets OpenCV choose (V4L2 for /dev/video*, FFmpeg for files and URLs). "
            "v4l2 opens camera nodes and indexes only, ffmpeg files and network streams only."
        ),
    )
    realtime: bool = Field(
        True,
        description=(
            "Files only: true plays at the file's own frame rate and drops frames the consumer does not take, "
            "like a camera; false hands over every frame as fast as the consumer takes them (benchmarks)."
        ),
    )
    loop: bool = Field(False, description="Files only: start again at the end instead of stopping.")
    stop_at_end: bool = Field(
        False,
        description=(
            "Files only: when the file ends (without loop), infer what is queued, publish stopped and exit 0. "
            "Otherwise the daemon stays up with an idle source."
        ),
    )
    buffer_frames: int = Field(
        1, ge=1, le=30, description="Newest frames kept for the consumer; older ones are dropped and counted in stats."
    )
    read_timeout_s: float = Field(
        5.0,
        ge=0.1,
        le=3600,
        description="A live camera that delivers no frame for this long (0.1..3600 s) is treated as lost and reopened.",
    )
    reconnect_initial_s: float = Field(
        1.0,
        ge=0.01,
        le=3600,
        description="First wait before reopening a lost camera (0.01..3600 s); doubles each failure.",
    )
    reconnect_max_s: float = Field(
        30.0, ge=0.01, le=3600, description="Longest wait between reopening attempts (0.01..3600 s)."
    )

    @field_validator("fourcc")
    @classmethod
    def _fourcc(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and len(value) != 4:
            raise ValueError(f"fourcc must be 4 characters such as MJPG or YUYV, got {value!r}")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: Union[int, str]) -> Union[int, str]:
        if isinstance(value, str) and not value.strip():
            raise ValueError("device must be a camera index, a /dev/video* path, a file or a URL")
        if isinstance(value, int) and value < 0:
            raise ValueError(f"a camera index must be >= 0, got {value}")
        return value

    @field_validator("backend")
    @classmethod
    def _backend_fits_device(cls, value: str, info: ValidationInfo) -> str:
        """A backend that cannot open this kind of device fails here, not as an idle daemon that exits 0.

        OpenCV's V4L2 backend opens only camera nodes and indexes (a file given to it "cannot be
        decoded"); its FFmpeg backend opens files and network streams, not camera indexes.
        """
        if "device" not in info.data:  # the device itself was invalid: that error is reported
            return value
        kind = target_kind_of(info.data["device"])
        allowed = BACKEND_KINDS.get(value)
        if allowed is not None and kind not in allowed:
            fits = [b for b, kinds in BACKEND_KINDS.items() if kinds is None or kind in kinds]
            raise ValueError(
                f"backend {value} cannot open a {KIND_NAMES[kind]} (source.device {info.data['device']!r}); "
                f"use backend {' or '.join(fits)}"
            )
        return value

    def lossless(self) -> bool:
        return not self.realtime

    def stops_at_end(self) -> bool:
        return self.stop_at_end

    def resolve_paths(self, base: Path) -> SourceConfigBase:
        if self.target_kind() != "file":
            return self
        return self.model_copy(update={"device": str(resolve_path(Path(str(self.device)), base))})

    def check_files(self, where: Where) -> tuple[list[str], list[str]]:
        kind = self.target_kind()
        node = Path(str(self.device)) if kind != "index" else Path(f"/dev/video{int(self.device)}")
        if kind == "file" and not node.is_file():
            return [f"{where('device')}: video file {node} does not exist"], []
        if kind in ("index", "v4l2") and not node.exists():
            return [], [f"{where('device')}: {node} does not exist now; the daemon will wait for the camera"]
        return [], []

    def target_kind(self) -> str:
        """``index``, ``v4l2``, ``url`` or ``file``."""
        return target_kind_of(self.device)


# Which device kinds each OpenCV backend opens (None: any). auto lets OpenCV pick per kind.
BACKEND_KINDS: dict[str, Optional[tuple[str, ...]]] = {
    "auto": None,
    "v4l2": ("index", "v4l2"),
    "ffmpeg": ("file", "url"),
    "gstreamer": None,
}
KIND_NAMES = {"index": "camera index", "v4l2": "V4L2 camera node", "url": "network stream", "file": "video file"}


def target_kind_of(device: Union[int, str]) -> str:
    """``index``, ``v4l2``, ``url`` or ``file``: what ``source.device`` names."""
    if isinstance(device, int) or str(device).isdigit():
        return "index"
    text = str(device)
    if "://" in text:
        return "url"
    if text.startswith("/dev/"):
        return "v4l2"
    return "file"


class CameraError(EdgeHarError, RuntimeError):
    """A camera that cannot be used as configured (bad target, missing file, OpenCV missing)."""


@dataclass
class Frame:
    """One captured frame."""

    image: np.ndarray  # BGR uint8, as OpenCV decodes
    timestamp: float  # seconds: index / file_fps for files, monotonic clock for live sources
    wall_time: float  # epoch seconds at capture
    index: int  # frames read in this segment
    segment: int  # increments at every (re)opening: windows must not span two segments
    arrival: float = 0.0  # time.perf_counter() at capture: where end-to-end latency starts


@dataclass
class CameraStats:
    frames_read: int = 0
    frames_delivered: int = 0
    frames_dropped: int = 0  # read but replaced before the consumer took them
    reconnects: int = 0
    open_failures: int = 0
    file_errors: int = 0  # a file that cannot be decoded, or ends before the frame count its header states
    segment: int = 0
    connected: bool = False
    finished: bool = False
    last_error: str | None = None
    width: int | None = None
    height: int | None = None
    source_fps: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover
        raise CameraError("the camera source needs OpenCV: pip install 'edge-har[device]'") from exc
    return cv2


class CameraSource:
    """See the module doc. ``start()``, then ``read(timeout)`` in a loop, then ``close()``."""

    def __init__(self, config: CameraSourceConfig, stop_event: threading.Event | None = None) -> None:
        self.config = config
        self.kind = config.target_kind()
        if self.kind == "file" and not Path(str(config.device)).is_file():
            raise CameraError(f"source.device: video file {config.device} does not exist")
        self.stats = CameraStats()
        self._stop = stop_event or threading.Event()
        self._closing = threading.Event()
        self._slot: deque[Frame] = deque(maxlen=config.buffer_frames)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._cap: Any = None
        self._file_fps = 0.0

    # ------------------------------------------------------------ public

    @property
    def is_live(self) -> bool:
        return self.kind != "file"

    def start(self) -> CameraSource:
        _cv2()
        self._thread = threading.Thread(target=self._run, name="camera", daemon=True)
        self._thread.start()
        return self

    def read(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not yet taken, waiting up to ``timeout`` seconds; None on timeout or end."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._slot:
                if self.stats.finished or self._closing.is_set():
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining if remaining is not None else 0.5)
            frame = self._slot.pop()  # the newest
            older = len(self._slot)
            self._slot.clear()
            self.stats.frames_dropped += older
            self.stats.frames_delivered += 1
            self._cond.notify_all()
            return frame

    @property
    def finished(self) -> bool:
        """True once a file (without loop) has been read to its end and every frame was taken."""
        with self._cond:
            return self.stats.finished and not self._slot

    def close(self) -> None:
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._release()

    def __enter__(self) -> CameraSource:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------ capture thread

    def _stopping(self) -> bool:
        return self._closing.is_set() or self._stop.is_set()

    def _open(self) -> bool:
        cv2 = _cv2()
        cfg = self.config
        api = {"auto": cv2.CAP_ANY, "v4l2": cv2.CAP_V4L2, "ffmpeg": cv2.CAP_FFMPEG, "gstreamer": cv2.CAP_GSTREAMER}[
            cfg.backend
        ]
        target: Any = int(cfg.device) if self.kind == "index" else str(cfg.device)
        params: list[int] = []
        if self.kind == "url":
            # Give up on a dead network stream after read_timeout_s instead of FFmpeg's default 30 s or more.
            ms = int(cfg.read_timeout_s * 1000)
            for name in ("CAP_PROP_OPEN_TIMEOUT_MSEC", "CAP_PROP_READ_TIMEOUT_MSEC"):
                if hasattr(cv2, name):
                    params += [getattr(cv2, name), ms]
        cap = cv2.VideoCapture(target, api, params) if params else cv2.VideoCapture(target, api)
        if not cap.isOpened():
            cap.release()
            return False
        if self.kind != "file":
            if cfg.fourcc:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*cfg.fourcc))
            if cfg.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, cfg.width)
            if cfg.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cfg.height)
            if cfg.fps:
                cap.set(cv2.CAP_PROP_FPS, cfg.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # not every backend honours it; the slot drops the rest
        self._cap = cap
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._file_fps = fps if math.isfinite(fps) and 0 < fps <= 1000 else 25.0
        self.stats.width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0) or None
        self.stats.height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0) or None
        self.stats.source_fps = self._file_fps
        self.stats.connected = True
        self.stats.segment += 1
        log.info(
            "camera %s opened (%s): %sx%s at %.3g fps%s",
            cfg.device,
            self.kind,
            self.stats.width,
            self.stats.height,
            self._file_fps,
            "" if self.kind == "file" else self._granted_note(),
        )
        return True

    def _granted_note(self) -> str:
        cfg = self.config
        asked = [f"{k} {v}" for k, v in (("width", cfg.width), ("height", cfg.height), ("fps", cfg.fps)) if v]
        return f" (asked {', '.join(asked)})" if asked else ""

    def _release(self) -> None:
        if self._cap is not None:
            try:
                self._cap.release()
            except Exception:  # pragma: no cover - a driver failing on release must not stop shutdown
                pass
            self._cap = None
        self.stats.connected = False

    def _wait(self, seconds: float) -> None:
        """Sleep, waking early when the source closes or the daemon stops."""
        end = time.monotonic() + seconds
        while not self._stopping():
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            self._closing.wait(min(0.2, remaining))

    def _deliver(self, frame: Frame) -> None:
        """Put a frame in the slot; a frame pushed out unread is a drop. Files without pacing wait instead."""
        with self._cond:
            if self.kind == "file" and not self.config.realtime:
                while self._slot and not self._stopping():
                    self._cond.wait(0.1)
            if len(self._slot) == self._slot.maxlen:
                self.stats.frames_dropped += 1
            self._slot.append(frame)
            self._cond.notify_all()

    def _run(self) -> None:
        # The same backoff policy as ReopeningSource (serial, I2C); the camera reopens in its own
        # capture thread, so it waits here instead of between read() calls.
        backoff = Backoff(self.config.reconnect_initial_s, self.config.reconnect_max_s)
        while not self._stopping():
            if self._cap is None:
                if not self._open():
                    self.stats.open_failures += 1
                    self.stats.last_error = f"cannot open {self.config.device}"
                    if self.kind == "file":
                        self.stats.file_errors += 1
                        self.stats.last_error = (
                            f"cannot open video file {self.config.device}: OpenCV cannot decode it "
                            "(not a video, damaged, or a codec this build lacks)"
                        )
                        log.error("camera: %s; the source stops", self.stats.last_error)
                        self._finish()
                        return
                    delay = backoff.failed()
                    log.warning("camera %s unavailable; retrying in %.1f s", self.config.device, delay)
                    self._wait(delay)
                    continue
                if self.stats.segment > 1:
                    self.stats.reconnects += 1
                    log.info("camera %s reconnected (reconnect %d)", self.config.device, self.stats.reconnects)
                backoff.reset()
            self._read_segment()
            if self.stats.finished:
                return

    def _read_segment(self) -> None:
        """Read from the open capture until it ends, fails or the source closes."""
        cfg = self.config
        index = 0
        started = time.monotonic()
        watchdog = _ReadWatchdog(cfg.read_timeout_s) if self.is_live else None
        while not self._stopping():
            if watchdog:
                watchdog.arm()
            ok, image = self._cap.read()
            if watchdog:
                watchdog.disarm()
            now_wall, now_mono, now_perf = time.time(), time.monotonic(), time.perf_counter()
            if not ok or image is None:
                if self.kind == "file":
                    self._check_file_end(index)
                    if cfg.loop and index > 0:
                        self._release()
                        if self._open():
                            index, started = 0, time.monotonic()
                            continue
                    log.info("camera: end of %s after %d frames", cfg.device, index)
                    self._finish()
                    return
                self.stats.last_error = (
                    "read failed" if not (watchdog and watchdog.fired) else f"no frame for {cfg.read_timeout_s:g} s"
                )
                log.warning("camera %s lost (%s); reconnecting", cfg.device, self.stats.last_error)
                self._release()
                return
            self.stats.frames_read += 1
            if self.kind == "file":
                timestamp = index / self._file_fps
                if cfg.realtime:
                    due = started + timestamp
                    if due > now_mono:
                        self._wait(due - now_mono)
                        # The frame "arrives" when playback releases it, as a camera would deliver it:
                        # taken before the wait, e2e latency counted the pacing (35.7 ms vs 2.7 ms unpaced).
                        now_wall, now_perf = time.time(), time.perf_counter()
            else:
                timestamp = now_mono
            self._deliver(Frame(image, timestamp, now_wall, index, self.stats.segment, now_perf))
            index += 1
            if watchdog and watchdog.fired:
                log.warning("camera %s: read blocked past %.1f s; reconnecting", cfg.device, cfg.read_timeout_s)
                self._release()
                return

    def _check_file_end(self, frames: int) -> None:
        """A file that ends before the frame count its header states is truncated or damaged: count and report it.

        The count is the container's (exact for AVI and MP4, an estimate from the duration for some
        others), so a shortfall of up to 2 frames or 1 % is taken as rounding, not damage.
        """
        cv2 = _cv2()
        stated = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if self._cap is not None else 0
        if stated <= 0 or frames >= stated - max(2, stated // 100):
            return
        self.stats.file_errors += 1
        self.stats.last_error = (
            f"video file {self.config.device} ended after {frames} of its {stated} frames (truncated or damaged)"
        )
        log.error("camera: %s", self.stats.last_error)

    def _finish(self) -> None:
        self._release()
        with self._cond:
            self.stats.finished = True
            self._cond.notify_all()


class _ReadWatchdog:
    """Flags a ``read()`` that blocks longer than ``timeout`` (a frozen USB camera or network stream).

    OpenCV cannot interrupt a blocking read; the flag makes the capture thread
    reconnect as soon as the read returns, and ``read_timeout_s`` also bounds
    how long FFmpeg waits on a dead network stream (set in ``_open``).
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.fired = False
        self._deadline: float | None = None

    def arm(self) -> None:
        self._deadline = time.monotonic() + self.timeout

    def disarm(self) -> None:
        if self._deadline is not None and time.monotonic() > self._deadline:
            self.fired = True
        self._deadline = None


# ---------------------------------------------------------------- the daemon's Source interface

_NO_SAMPLES = np.zeros((0, 3), np.float32)


@dataclass
class FrameChunk(Chunk):
    """A :class:`~edge_har.device.sources.base.Chunk` carrying one frame instead of samples.

    ``samples`` stays empty (so sample counters are untouched); the video
    runtime's ``FrameWindowing.push`` reads ``frame``.
    """

    frame: Frame | None = None


class CameraStreamSource(Source):
    """:class:`CameraSource` behind the daemon's ``Source`` interface (``read(timeout)`` -> FrameChunk).

    ``status()`` carries the camera's counters, so the daemon's stats message
    reports frames read, delivered and **dropped** (inference slower than the
    camera), reconnects and the size and rate the driver granted.
    """

    kind = "camera"

    @classmethod
    def from_config(cls, cfg: SourceConfigBase, ctx: SourceContext) -> CameraStreamSource:
        assert isinstance(cfg, CameraSourceConfig)
        return cls(cfg)  # frames, not samples: the model's channel count does not apply

    def __init__(self, config: CameraSourceConfig, stop_event: threading.Event | None = None) -> None:
        super().__init__(n_channels=3, name=f"camera {config.device}")
        self.config = config
        try:
            self.camera = CameraSource(config, stop_event)
        except CameraError as exc:
            raise SourceError(str(exc)) from exc
        self._segment: int | None = None

    @property
    def rate_hz(self) -> float | None:
        return self.camera.stats.source_fps

    def start(self) -> None:
        try:
            self.camera.start()
        except CameraError as exc:
            raise SourceError(str(exc)) from exc

    def read(self, timeout: float) -> FrameChunk | None:
        frame = self.camera.read(timeout)
        if frame is None:
            if self.camera.finished:
                self._status.finished = True
            return None
        new_segment = frame.segment != self._segment
        self._segment = frame.segment
        self.samples_read += 1
        return FrameChunk(_NO_SAMPLES, frame.arrival, frame.wall_time, segment_start=new_segment, frame=frame)

    def stop(self) -> None:
        self.camera.close()

    @property
    def finished(self) -> bool:
        return self._status.finished

    def status(self) -> dict[str, Any]:
        st = self.camera.stats
        self._status.connected = st.connected
        self._status.reconnects = st.reconnects
        self._status.last_error = st.last_error
        self._status.extra = {
            "frames_read": st.frames_read,
            "frames_delivered": st.frames_delivered,
            "frames_dropped": st.frames_dropped,
            "open_failures": st.open_failures,
            "file_errors": st.file_errors,
            "frame_size": [st.width, st.height] if st.width else None,
            "camera_fps": st.source_fps,
        }
        return self._status.to_json()
