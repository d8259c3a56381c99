"""The loop of ``edge-har record``: the daemon's source into session folders, labelled as it goes.

One thread (the caller's) owns the source and the :class:`RecordingWriter`: it reads chunks,
stamps each sample with Unix time (the chunk's arrival time is its last sample; the ones before
it are spaced by the nominal rate, and never before the previous sample), writes them, and
applies the commands that the terminal and MQTT threads queue (label changes at the time they
arrived, start, stop). Everything else is on other threads and can fail without touching the
data: the MQTT link (states, the decimated live signal, label/error) and the pusher.

A full disk or a reached budget ends the command: the writer leaves every file valid, the
session is closed, ``record/state`` carries the error, and :class:`RecordingStopped` (exit
status 3) reaches the command line as one line naming the path. The budget covers every
session under ``DIR/<device>`` (earlier runs' included), so a Pi's card cannot fill up over days.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import queue
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from edge_har.core.errors import CommandError, EdgeHarError
from edge_har.core.recording_layout import RecordingMeta
from edge_har.core.video_recording_layout import VideoMeta
from edge_har.device.recording.label_input import ClassSet, Command, LabelControl, TerminalLabels
from edge_har.device.recording.video_writer import VideoRecordingWriter
from edge_har.device.recording.writer import MIB, RecordingFull, RecordingWriter

if TYPE_CHECKING:  # the MQTT link and the pusher are imported by the command only when used
    from edge_har.device.recording.push import Pusher
    from edge_har.device.recording.record_mqtt import RecordLink
    from edge_har.device.sources.base import Chunk, Source

__all__ = ["EXIT_FULL", "RecordOptions", "Recorder", "RecordingStopped", "session_id_for"]

log = logging.getLogger(__name__)

EXIT_FULL = 3  # disk full or budget reached: recording stopped, files valid
SIGNAL_INTERVAL_S = 0.25  # record/signal about 4 times a second
SIGNAL_MAX_HZ = 25.0  # samples per second in record/signal at most
STATE_INTERVAL_S = 2.0  # record/state refreshed while recording (samples and bytes grow)


class RecordingStopped(EdgeHarError, OSError):
    """The recording stopped: the disk or the budget is full, or the folder cannot be written; the message
    names the path."""

    exit_code = EXIT_FULL


@dataclass
class RecordOptions:
    """The loop's settings (see ``edge-har record --help``)."""

    out: Path
    device_id: str
    channels: list[str]
    rate_hz: float
    classes: list[str]
    units: str = ""
    scale: Optional[list[float]] = None
    offset: Optional[list[float]] = None
    source_type: str = ""
    model_id: Optional[str] = None
    subject: Optional[str] = None
    rotate_bytes: int = 8 * MIB
    rotate_s: float = 600.0
    budget_bytes: Optional[int] = 500 * MIB
    duration_s: Optional[float] = None
    start_stopped: bool = False
    fsync_interval_s: float = 1.0
    frames: bool = False  # a camera source: frames to Motion-JPEG parts (no channels)
    jpeg_quality: int = 90


def session_id_for(ts: float) -> str:
    """``YYYYmmddTHHMMSSZ`` of ``ts`` (UTC)."""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def folder_bytes(root: Path) -> int:
    """Bytes of the files under ``root`` (0 when it does not exist)."""
    if not root.is_dir():
        return 0
    total = 0
    for path in root.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:
            pass
    return total


class Recorder:
    """Reads ``source`` and records sessions under ``options.out/<device>/`` until stopped.

    ``link`` is made by ``make_link(control)`` (MQTT; None without), ``pusher`` uploads in the
    background (None without ``--push``), ``terminal`` reads labels from the keyboard.
    """

    def __init__(
        self,
        options: RecordOptions,
        source: Source,
        *,
        make_link: Optional[Callable[[LabelControl, dict[str, Any]], RecordLink]] = None,
        pusher: Optional[Pusher] = None,
        label_keys: bool = False,
        push_wait_s: float = 10.0,
        install_signal_handlers: bool = True,
    ) -> None:
        self.options = options
        self.source = source
        self.pusher = pusher
        self.push_wait_s = push_wait_s
        self.install_signal_handlers = install_signal_handlers
        self.root = Path(options.out) / options.device_id
        self.stop_event = threading.Event()
        self.commands: queue.Queue[Command] = queue.Queue()
        self.control = LabelControl(ClassSet(options.classes), self.commands.put)
        self.writer: Optional[Any] = None  # a RecordingWriter, or a VideoRecordingWriter for a camera
        self._last_writer: Optional[Any] = None
        self._frame_size: Optional[tuple[int, int]] = None  # (width, height) of the camera's first frame
        self._pending_start: Optional[float] = None  # a camera session waits for its first frame's size
        self.label: Optional[str] = None  # the current label, kept across sessions
        self.error: Optional[str] = None
        self.link = make_link(self.control, self._state_payload()) if make_link is not None else None
        if self.link is not None:
            self.control.publish_error = self.link.publish_error
        self.terminal = TerminalLabels(self.control) if label_keys else None
        self.sessions: list[Path] = []
        self._last_t = -math.inf
        self._signal_t: list[float] = []
        self._signal_v: list[list[float]] = []
        self._signal_phase = 0
        self._next_signal = 0.0
        self._next_state = 0.0
        self._finished_seen = 0

    @property
    def rate_hz(self) -> float:
        rate = getattr(self.source, "rate_hz", None)
        return float(rate) if rate else self.options.rate_hz

    # ---------------------------------------------------------------- life cycle

    def request_stop(self, reason: str) -> None:
        if not self.stop_event.is_set():
            log.info("stopping: %s", reason)
            self.stop_event.set()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.request_stop(signal.Signals(signum).name)

    def run(self) -> int:
        """Record until stopped (signal, --duration, the source's end); 0, or raises RecordingStopped."""
        previous: dict[signal.Signals, Any] = {}
        if self.install_signal_handlers and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                previous[sig] = signal.signal(sig, self._on_signal)
        try:
            return self._run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(self) -> int:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"--out: cannot create {self.root}: {exc.strerror or exc}") from None
        try:
            self.source.start()
            if self.link is not None:
                self.link.start()
            if self.pusher is not None:
                self.pusher.start()
            if self.terminal is not None:
                self.terminal.start()
            deadline = None if self.options.duration_s is None else time.monotonic() + self.options.duration_s
            log.info(
                "recording %s into %s; classes: %s",
                "camera frames" if self.options.frames else f"{','.join(self.options.channels)} at {self.rate_hz:g} Hz",
                self.root,
                ", ".join(self.options.classes),
            )
            self._publish_label_state()
            if not self.options.start_stopped:
                self._start_session(time.time())
            else:
                self._publish_state()
            while not self.stop_event.is_set():
                self._apply_commands()
                chunk = self.source.read(0.1)
                if chunk is not None and getattr(chunk, "frame", None) is not None:
                    self._on_frame(chunk.frame)  # type: ignore[attr-defined]
                elif chunk is not None and len(chunk):
                    self._on_chunk(chunk)
                self._periodic()
                if self.source.finished:
                    log.info("the source has no more samples")
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    log.info("--duration reached")
                    break
            self._apply_commands()
        except RecordingFull as exc:
            self.error = str(exc)
            raise RecordingStopped(str(exc)) from None
        except OSError as exc:  # a read-only card, a folder removed under us: the same clean stop, saying so
            where = self.writer.session_dir if self.writer is not None else self.root
            self.error = f"{where}: cannot write the recording: {exc.strerror or exc}"
            raise RecordingStopped(self.error) from None
        finally:
            self._shutdown()
        return 0

    def _shutdown(self) -> None:
        self._stop_session(time.time())
        if self.terminal is not None:
            self.terminal.stop()
        if self.link is not None:
            self.link.stop(self._state_payload())
        if self.pusher is not None:
            self.pusher.stop(self.push_wait_s)
        self.source.stop()

    # ---------------------------------------------------------------- sessions

    def _start_session(self, ts: float) -> None:
        if self.writer is not None:
            return
        if self.options.frames and self._frame_size is None:
            self._pending_start = ts  # the frame size goes into video.json: start with the first frame
            return
        budget = None
        if self.options.budget_bytes is not None:
            budget = self.options.budget_bytes - folder_bytes(self.root)
            if budget <= 0:
                raise RecordingFull(
                    f"{self.root}: the recording budget of {self.options.budget_bytes / MIB:.4g} MB is used up by "
                    "earlier sessions; move them away or raise --budget-mb"
                )
        started = ts
        while (self.root / session_id_for(started)).exists():  # two starts within one second
            started += 1.0
        sid = session_id_for(started)
        limits: dict[str, Any] = {
            "rotate_bytes": self.options.rotate_bytes,
            "rotate_s": self.options.rotate_s,
            "budget_bytes": budget,
            "fsync_interval_s": self.options.fsync_interval_s,
        }
        if self.options.frames:
            self.writer = VideoRecordingWriter(self.root / sid, self._video_meta(sid, ts), **limits)
        else:
            self.writer = RecordingWriter(self.root / sid, self._sample_meta(sid, ts), **limits)
        self.sessions.append(self.writer.session_dir)
        self._finished_seen = 0
        if self.label is not None:
            self.writer.set_label(self.label, ts)
        if self.pusher is not None:
            self.pusher.set_active(self.writer.session_dir)
        log.info("session %s started (%s)", sid, self.writer.session_dir)
        self._publish_state()

    def _sample_meta(self, sid: str, ts: float) -> RecordingMeta:
        return RecordingMeta(
            device_id=self.options.device_id,
            session_id=sid,
            started=ts,
            channels=list(self.options.channels),
            sample_rate_hz=self.rate_hz,
            units=self.options.units,
            scale=self.options.scale,
            offset=self.options.offset,
            source=self.options.source_type,
            subject=self.options.subject,
            model_id=self.options.model_id,
        )

    def _video_meta(self, sid: str, ts: float) -> VideoMeta:
        assert self._frame_size is not None
        return VideoMeta(
            device_id=self.options.device_id,
            session_id=sid,
            started=ts,
            width=self._frame_size[0],
            height=self._frame_size[1],
            fps=self.rate_hz,
            source=self.options.source_type,
            subject=self.options.subject,
            model_id=self.options.model_id,
            jpeg_quality=self.options.jpeg_quality,
        )

    def _stop_session(self, ts: float) -> None:
        self._pending_start = None
        writer, self.writer = self.writer, None
        if writer is None:
            return
        try:
            writer.close()
        except (RecordingFull, OSError) as exc:  # the last flush on a full disk: the lines before stay valid
            log.warning("%s: closing the session: %s", writer.session_dir, exc)
        log.info(
            "session %s stopped: %d %s, %d bytes, %d label segment(s)",
            writer.session_dir.name,
            writer.samples_written,
            writer.unit,
            writer.bytes_written,
            len(writer.segments()),
        )
        self._last_writer = writer
        self._signal_t, self._signal_v = [], []
        if self.pusher is not None:
            self.pusher.set_active(None)  # every part of it is finished now
        self._publish_state(writer)

    # ---------------------------------------------------------------- commands

    def _apply_commands(self) -> None:
        while True:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                return
            if command.kind == "record":
                if command.recording:
                    self._start_session(command.ts)
                else:
                    self._stop_session(command.ts)
                continue
            if command.label == self.label:
                continue
            self.label = command.label
            log.info("label: %s (from %s)", command.label or "none", command.origin)
            if self.writer is not None:
                self.writer.set_label(command.label, command.ts)
                if self.pusher is not None:
                    self.pusher.poke()
            self._publish_label_state()
            self._publish_state()

    # ---------------------------------------------------------------- samples

    def stamps(self, n: int, last_ts: float) -> np.ndarray:
        """Unix times of ``n`` samples whose last arrived at ``last_ts``: spaced by the rate, increasing."""
        period = 1.0 / self.rate_hz
        t = last_ts - period * np.arange(n - 1, -1, -1, dtype=np.float64)
        floor = self._last_t + 1e-6 + 1e-6 * np.arange(n, dtype=np.float64)
        t = np.maximum(t, floor)
        self._last_t = float(t[-1])
        return t

    def _on_chunk(self, chunk: Chunk) -> None:
        t = self.stamps(len(chunk.samples), chunk.ts)
        if self.writer is None:
            return
        self.writer.write(t, chunk.samples)
        finished = self.writer.finished_parts()
        if self.pusher is not None and len(finished) != self._finished_seen:
            self._finished_seen = len(finished)
            self.pusher.note_finished(finished)
        if self.link is not None:
            self._collect_signal(t, chunk.samples)

    def _on_frame(self, frame: Any) -> None:
        """One camera frame, at its capture time; the first one's size starts a pending session."""
        if self._frame_size is None:
            height, width = frame.image.shape[:2]
            self._frame_size = (int(width), int(height))
            if self._pending_start is not None:
                self._start_session(self._pending_start)
                self._pending_start = None
        if self.writer is None:
            return
        self.writer.write_frame(frame.wall_time, frame.image)

    def _collect_signal(self, t: np.ndarray, samples: np.ndarray) -> None:
        step = max(1, math.ceil(self.rate_hz / SIGNAL_MAX_HZ))
        idx = np.arange(len(t))
        keep = ((idx + self._signal_phase) % step == 0) & np.isfinite(samples).all(axis=1)  # JSON has no NaN
        self._signal_phase = (self._signal_phase + len(t)) % step
        self._signal_t.extend(np.round(t[keep], 3).tolist())
        self._signal_v.extend(np.asarray(samples, dtype=np.float64)[keep].tolist())
        if len(self._signal_t) > 4 * SIGNAL_MAX_HZ:  # a stalled loop must not grow it
            self._signal_t = self._signal_t[-int(SIGNAL_MAX_HZ) :]
            self._signal_v = self._signal_v[-int(SIGNAL_MAX_HZ) :]

    def _periodic(self) -> None:
        now = time.monotonic()
        if self.link is not None and self.writer is not None and now >= self._next_signal:
            self._next_signal = now + SIGNAL_INTERVAL_S
            if self._signal_t:
                self.link.publish_signal(
                    {
                        "session_id": self.writer.session_dir.name,
                        "channels": list(self.options.channels),
                        "t": self._signal_t,
                        "values": self._signal_v,
                    }
                )
                self._signal_t, self._signal_v = [], []
        if self.writer is not None and now >= self._next_state:
            self._publish_state()

    # ---------------------------------------------------------------- state

    def _state_payload(self, writer: Optional[Any] = None) -> dict[str, Any]:
        w = self.writer or writer or self._last_writer  # after a stop: the session that just ended
        return {
            "recording": self.writer is not None,
            "session_id": w.session_dir.name if w is not None else None,
            "label": self.label,
            "samples": w.samples_written if w is not None else 0,
            "bytes": w.bytes_written if w is not None else 0,
            "budget_bytes": self.options.budget_bytes,
            "classes": list(self.options.classes),
            "channels": list(self.options.channels),
            "sample_rate_hz": self.rate_hz,
            "error": self.error,
        }

    def _publish_state(self, writer: Optional[Any] = None) -> None:
        self._next_state = time.monotonic() + STATE_INTERVAL_S
        if self.link is not None:
            self.link.publish_state(self._state_payload(writer))

    def _publish_label_state(self) -> None:
        if self.link is not None:
            self.link.publish_label_state(self.label)
