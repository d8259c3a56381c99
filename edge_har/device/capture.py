"""Captured windows: the daemon keeps the windows its model was unsure of, and the ones a person corrects.

The daemon's ``capture:`` section (:class:`CaptureConfig`) turns it on. Every prediction is offered
to a :class:`CaptureStore` with its window; the store

* captures a window whose published confidence is under ``unsure_below`` (reason ``unsure``), or
  whose two most likely classes are closer than ``near_tie`` (reason ``near_tie``), at most one
  such automatic capture per ``min_interval_s`` of the stream's clock;
* keeps the last ``correct_window_s`` of windows in memory (raw samples, their times and the
  prediction), so that a "that was X" on ``<prefix>/<id>/label/correct`` captures the windows of
  that stretch that were predicted otherwise, labelled X (reason ``corrected``; a window already
  captured as unsure is rewritten as corrected);
* writes each capture as one session of the recording layout
  (:func:`edge_har.core.recording_layout.write_session`) under ``dir/<device_id>/capture-<ms>-<seq>``,
  so ``edge-har convert --data DIR`` (format ``recorded``) and serve read captures as recordings.

Raw samples: a window holds normalised values, so the store keeps its own short ring of the
source's samples as they were read (:class:`RawRing`, fed by :meth:`CaptureStore.feed` in the
source thread) and cuts each window's raw samples out of it by time. recording.json carries the scale and offset the windowing
applies (the source's value scaling when it sets one, else the bundle's), so raw * scale + offset
is the physical value training saw, as in any recording.

What it never does is slow inference: :meth:`CaptureStore.offer` copies a few hundred samples and
puts a job on a bounded queue (a full queue drops the capture and counts it); one writer thread
does the disk work. The folder is bounded by ``max_windows`` and ``max_mb``: the oldest captures
without labels.csv are deleted to make room, and when only labelled ones are left a new capture
is refused and counted. A full disk or any other write error is counted and logged at most once
a minute per kind of problem, and the daemon goes on.

Sensor bundles only: a video bundle has no sample stream to store, and ``check_files`` refuses
the section for one.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import queue
import shutil
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Deque, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field

from edge_har.core.errors import EdgeHarError

if TYPE_CHECKING:
    from edge_har.device.runtime_api import Prediction, Window
    from edge_har.device.sources.base import Chunk
    from edge_har.mqtt.config import MqttConfig

__all__ = [
    "CaptureConfig",
    "CaptureStore",
    "CorrectionError",
    "CorrectionListener",
    "RawRing",
    "StreamInfo",
    "default_capture_dir",
    "parse_correction",
]

log = logging.getLogger("edge_har.capture")

REASON_UNSURE = "unsure"
REASON_NEAR_TIE = "near_tie"
REASON_CORRECTED = "corrected"
REASONS = (REASON_UNSURE, REASON_NEAR_TIE, REASON_CORRECTED)

WRITE_QUEUE = 256  # capture jobs waiting for the writer thread; a correction of 10 s is about 20
LOG_EVERY_S = 60.0  # a repeating problem (disk full, folder full) is logged at most this often
MAX_CORRECTION_BYTES = 4096
MAX_LABEL_CHARS = 64
MAX_WARNED_LABELS = 256  # refused class names remembered for "logged once per name"; beyond: counted only
SESSION_PREFIX = "capture-"


class CaptureConfig(BaseModel):
    """Which windows the daemon keeps as recordings, where, and how much of them."""

    model_config = ConfigDict(extra="forbid")

    dir: Optional[Path] = Field(
        None,
        description=(
            "Folder of the captures, a recording set (sessions under <dir>/<device_id>/capture-...). Relative to "
            "the config file's folder. Default: $STATE_DIRECTORY/captures under systemd (/var/lib/edge-har/captures "
            "with the shipped unit), else $XDG_DATA_HOME/edge-har/captures or ~/.local/share/edge-har/captures."
        ),
    )
    unsure_below: float = Field(
        0.6,
        ge=0.0,
        le=1.01,
        description=(
            "A window whose published confidence is under this is captured (reason 'unsure'); 0 turns it off, "
            "a value above 1 captures every window (at most one per min_interval_s)."
        ),
    )
    near_tie: Optional[float] = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description=(
            "A window whose two most likely classes differ by less than this is captured (reason 'near_tie'); "
            "empty turns it off."
        ),
    )
    correct_window_s: float = Field(
        10.0,
        gt=0.0,
        le=600.0,
        description=(
            "Seconds of windows kept in memory for 'that was X' on <prefix>/<id>/label/correct: the windows of "
            "this long before the correction that were predicted otherwise are captured with label X."
        ),
    )
    max_windows: int = Field(
        2000,
        ge=1,
        le=10_000_000,
        description="Captures kept at most; past it the oldest unlabelled ones are deleted, then new ones refused.",
    )
    max_mb: float = Field(
        200.0,
        gt=0.0,
        le=10_000_000.0,
        description="MiB of captures kept at most; past it the oldest unlabelled ones are deleted, then new ones refused.",
    )
    min_interval_s: float = Field(
        5.0,
        ge=0.0,
        le=86_400.0,
        description=(
            "At most one automatic (unsure or near_tie) capture per this many seconds of the stream; "
            "corrections are not limited."
        ),
    )

    def resolve_paths(self, base: Path) -> CaptureConfig:
        """A copy whose relative ``dir`` is taken relative to ``base`` (the config file's folder)."""
        if self.dir is None or Path(self.dir).expanduser().is_absolute():
            return self.model_copy(update={"dir": None if self.dir is None else Path(self.dir).expanduser()})
        return self.model_copy(update={"dir": base / self.dir})

    def directory(self) -> Path:
        """The configured folder, else :func:`default_capture_dir`."""
        return Path(self.dir) if self.dir is not None else default_capture_dir()


def default_capture_dir() -> Path:
    """``$STATE_DIRECTORY/captures`` (systemd's StateDirectory), else the user's data folder."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state) / "captures"
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "edge-har" / "captures"


# ====================================================================== corrections


class CorrectionError(EdgeHarError, ValueError):
    """A label/correct payload that cannot be used; the message is one line naming what is wrong."""


def parse_correction(payload: bytes | str) -> tuple[str, Optional[float]]:
    """``(label, ts)`` from a label/correct payload: a class name as text, or ``{"label": X, "ts": unix}``.

    ``ts`` is None when the payload has none (the caller takes "now"). A JSON string (``"walk"``)
    is a class name too. Raises :class:`CorrectionError` and nothing else, whatever the bytes.
    """
    from edge_har.mqtt.bounded_json import RejectedMessage, decode_text, parse_message

    try:
        text = payload if isinstance(payload, str) else decode_text(payload, max_bytes=MAX_CORRECTION_BYTES)
    except RejectedMessage as exc:
        raise CorrectionError(f"payload refused: {exc.detail}") from None
    if len(text) > MAX_CORRECTION_BYTES:
        raise CorrectionError(f"payload refused: {len(text)} characters (at most {MAX_CORRECTION_BYTES})")
    text = text.strip()
    ts: Optional[float] = None
    if text.startswith(("{", '"')):
        try:
            data = parse_message(text, max_bytes=MAX_CORRECTION_BYTES, max_depth=4)
        except RejectedMessage as exc:
            raise CorrectionError(f"payload refused: {exc.detail}") from None
        if isinstance(data, dict):
            label = data.get("label")
            if not isinstance(label, str):
                raise CorrectionError('"label" must be a class name (a string)')
            raw_ts = data.get("ts")
            if raw_ts is not None:
                if isinstance(raw_ts, bool) or not isinstance(raw_ts, (int, float)):
                    raise CorrectionError('"ts" must be a Unix time in seconds (a number) or null')
                ts = float(raw_ts)
                if not (math.isfinite(ts) and 0 < ts < 1e11):
                    raise CorrectionError(f'"ts" must be a Unix time in seconds, got {raw_ts!r}')
        elif isinstance(data, str):
            label = data
        else:
            raise CorrectionError(
                f"payload must be a class name or {{'label': ..., 'ts': ...}}, got {type(data).__name__}"
            )
    else:
        label = text
    label = label.strip()
    if not label:
        raise CorrectionError("the label is empty")
    if len(label) > MAX_LABEL_CHARS:
        raise CorrectionError(f"the label has {len(label)} characters (at most {MAX_LABEL_CHARS})")
    if any(ord(c) < 32 or ord(c) == 127 for c in label):
        raise CorrectionError("the label holds a control character")
    return label, ts


# ====================================================================== the store


@dataclass(frozen=True)
class StreamInfo:
    """What the store needs to know of the stream it captures from."""

    device_id: str
    model_id: str
    labels: tuple[str, ...]
    channels: tuple[str, ...]
    source_rate_hz: float
    model_rate_hz: float
    window: int  # samples at the model's rate
    stride: int
    units: str = ""
    scale: Optional[tuple[float, ...]] = None  # raw * scale + offset = physical, per channel
    offset: Optional[tuple[float, ...]] = None
    source_type: str = ""
    queued_windows: int = 64  # the daemon's window queue: how far the source may run ahead of inference

    @property
    def window_s(self) -> float:
        """Seconds from a window's first sample to its last."""
        return (self.window - 1) / self.model_rate_hz


@dataclass
class _Seen:
    """One inferred window in the correction ring."""

    end_ts: float
    t: Any  # np.ndarray (n,) float64, unix seconds
    samples: Any  # np.ndarray (n, C), raw
    label: str
    confidence: float
    probabilities: dict[str, float]
    session: Optional[str] = None  # the capture it was written to, if any
    corrected: Optional[str] = None


@dataclass
class _Job:
    session_id: str
    entry: _Seen
    reason: str
    corrected: Optional[str]
    replaces: Optional[str] = None


@dataclass
class _Stored:
    bytes: int
    labelled: bool


@dataclass
class _Counters:
    captured: dict[str, int] = field(default_factory=lambda: {r: 0 for r in REASONS})
    deleted: int = 0  # oldest unlabelled captures deleted to make room
    refused: int = 0  # the folder is full of labelled captures
    dropped: int = 0  # the write queue was full
    failed: int = 0  # a write failed (disk full, permissions)
    no_samples: int = 0  # the window's raw samples had left the ring
    labels_refused: int = 0  # corrections naming a class the bundle lacks
    payloads_refused: int = 0  # corrections that are not a class name or {"label", "ts"}


class RawRing:
    """The last ``keep`` raw samples (plus the newest chunk whole) with a time each, found by time.

    One buffer, written at its end and slid back to the front when full, so a push is a copy of
    the chunk and a look-up two binary searches, whatever the chunks' sizes (a serial source
    delivers one sample at a time). Times are the chunk's stamp of its last sample, counted back
    at the source's rate; a chunk stamped slightly behind the one before (the jitter of a live
    source's read times) is moved to follow it, and a clock that goes back by more than a second
    starts the ring afresh. Not thread-safe: the store holds its lock around every call.
    """

    JUMP_S = 1.0

    def __init__(self, keep: int, rate_hz: float) -> None:
        self.keep = max(1, keep)
        self.rate_hz = rate_hz
        self._t: Any = None
        self._x: Any = None
        self._start = 0
        self._end = 0

    def __len__(self) -> int:
        return self._end - self._start

    def push(self, ts: float, samples: Any) -> None:
        import numpy as np

        x = np.asarray(samples)
        n = len(x)
        if n == 0:
            return
        t = ts - np.arange(n - 1, -1, -1, dtype=np.float64) / self.rate_hz
        if self._x is None or self._x.shape[1:] != x.shape[1:]:
            self._allocate(max(4 * (self.keep + n), 1024), x)
        if len(self):
            last = self._t[self._end - 1]
            if t[0] <= last:
                if last - t[0] > self.JUMP_S:
                    self._start = self._end  # the clock went back: older samples cannot be found by time
                else:
                    t += last + 1.0 / self.rate_hz - t[0]
        cap = len(self._t)
        if self._end + n > cap:
            live = self._end - self._start
            if live + n > cap:
                self._allocate(2 * (live + n), x)
                cap = len(self._t)
            else:
                self._t[:live] = self._t[self._start : self._end]
                self._x[:live] = self._x[self._start : self._end]
                self._start, self._end = 0, live
        self._t[self._end : self._end + n] = t
        self._x[self._end : self._end + n] = x
        self._end += n
        self._start = max(self._start, self._end - (self.keep + n))

    def between(self, lo: float, hi: float) -> tuple[Any, Any]:
        """Copies of (t, samples) of the samples with lo <= t <= hi."""
        import numpy as np

        if self._t is None:
            return np.empty(0), np.empty((0, 0))
        t = self._t[self._start : self._end]
        i = int(np.searchsorted(t, lo, "left"))
        j = int(np.searchsorted(t, hi, "right"))
        return t[i:j].copy(), self._x[self._start + i : self._start + j].copy()

    def _allocate(self, cap: int, like: Any) -> None:
        import numpy as np

        t = np.empty(cap, dtype=np.float64)
        x = np.empty((cap, *like.shape[1:]), dtype=like.dtype)
        live = len(self) if self._x is not None and self._x.shape[1:] == like.shape[1:] else 0
        if live:
            t[:live] = self._t[self._start : self._end]
            x[:live] = self._x[self._start : self._end]
        self._t, self._x, self._start, self._end = t, x, 0, live


class CaptureStore:
    """Decides, remembers and writes captured windows (see the module doc). Thread-safe.

    ``feed`` runs in the source thread, ``offer`` in the inference thread, ``correct`` in paho's,
    the disk work in the store's own writer thread (``start``/``close``).
    """

    def __init__(self, cfg: CaptureConfig, info: StreamInfo, *, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.info = info
        self.root = cfg.directory() / info.device_id
        self._clock = clock
        self._lock = threading.Lock()
        # the source's raw samples: enough for the queued windows plus the one inferred
        ratio = info.source_rate_hz / info.model_rate_hz
        keep = int(math.ceil((info.queued_windows + 4) * info.stride * ratio + 2 * info.window * ratio))
        self._raw_ring = RawRing(keep, info.source_rate_hz)
        per_s = info.model_rate_hz / info.stride
        self._seen: Deque[_Seen] = deque(maxlen=int(math.ceil(cfg.correct_window_s * per_s)) + 8)
        self._last_auto: Optional[float] = None
        self._seq = 0
        self._jobs: queue.Queue[_Job] = queue.Queue(maxsize=WRITE_QUEUE)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        # The folder's captures: changed by the writer thread only, under _lock (counters() reads it).
        self._stored: dict[str, _Stored] = {}
        self._counts = _Counters()
        self._warned_labels: set[str] = set()
        self._last_logged: dict[str, float] = {}
        self._log_lock = threading.Lock()
        self._max_bytes = int(cfg.max_mb * 1024 * 1024)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Read what the folder holds (for the bounds) and start the writer thread."""
        self._scan()
        self._thread = threading.Thread(target=self._write_loop, name="edge-har-capture", daemon=True)
        self._thread.start()
        log.info(
            "capture: into %s (unsure below %g, near tie %s, at most one per %g s; corrections over %g s; "
            "%d captures / %g MiB at most, %d there now)",
            self.root,
            self.cfg.unsure_below,
            "off" if self.cfg.near_tie is None else f"{self.cfg.near_tie:g}",
            self.cfg.min_interval_s,
            self.cfg.correct_window_s,
            self.cfg.max_windows,
            self.cfg.max_mb,
            len(self._stored),
        )

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued within ``timeout`` seconds, then stop the writer thread."""
        deadline = time.monotonic() + timeout
        while self._thread is not None and not self._jobs.empty() and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()) + 0.5)
        left = self._jobs.qsize()
        if left:
            log.warning("capture: stopped with %d capture(s) not written", left)

    # ------------------------------------------------------------ the stream (source and inference threads)

    def feed(self, chunk: Chunk) -> None:
        """Remember a chunk's raw samples (the source thread, before windowing)."""
        if len(chunk.samples):
            with self._lock:
                self._raw_ring.push(chunk.ts, chunk.samples)

    def offer(self, p: Prediction, window: Window) -> Optional[str]:
        """Remember an inferred window for corrections; capture it when the model was unsure.

        Returns the reason it was captured for (queued for writing), else None. Never blocks.
        """
        raw = self._raw(window.end_ts)
        if raw is None:
            return None
        entry = _Seen(window.end_ts, raw[0], raw[1], p.label, float(p.confidence), dict(p.probabilities))
        reason = self.reason(p.confidence, p.probabilities)
        with self._lock:
            self._seen.append(entry)
            if reason is None:
                return None
            last = self._last_auto
            if last is not None and last <= entry.end_ts < last + self.cfg.min_interval_s:
                return None
            self._last_auto = entry.end_ts
            entry.session = self._submit_locked(entry, reason, None, None)
        return reason if entry.session else None

    def reason(self, confidence: float, probabilities: dict[str, float]) -> Optional[str]:
        """``unsure``, ``near_tie`` or None for a prediction's confidence and class probabilities."""
        if confidence < self.cfg.unsure_below:
            return REASON_UNSURE
        if self.cfg.near_tie is not None and len(probabilities) >= 2:
            top = sorted(probabilities.values(), reverse=True)
            if top[0] - top[1] < self.cfg.near_tie:
                return REASON_NEAR_TIE
        return None

    def _raw(self, end_ts: float) -> Optional[tuple[Any, Any]]:
        """The raw samples (t, samples) of the window ending at ``end_ts``, cut out of the raw ring."""
        half = 0.5 / self.info.source_rate_hz
        with self._lock:
            t, samples = self._raw_ring.between(end_ts - self.info.window_s - half, end_ts + half)
        n = len(t)
        expected = self.info.window * self.info.source_rate_hz / self.info.model_rate_hz
        if n < max(1.0, 0.5 * expected):
            with self._lock:
                self._counts.no_samples += 1
            self._log_every("no_samples", "capture: a window's raw samples had left the ring; not captured (counted)")
            return None
        return t, samples

    # ------------------------------------------------------------ corrections (paho's thread)

    def correct(self, label: str, ts: Optional[float] = None) -> int:
        """Capture the windows of ``correct_window_s`` before ``ts`` (default now) predicted as other than
        ``label``, labelled ``label``; returns how many were queued. A class the bundle lacks: CorrectionError."""
        if label not in self.info.labels:
            with self._lock:
                self._counts.labels_refused += 1
                first = label not in self._warned_labels and len(self._warned_labels) < MAX_WARNED_LABELS
                if first:
                    self._warned_labels.add(label)
            message = f"{label!r} is not a class of model {self.info.model_id} ({', '.join(self.info.labels)})"
            if first:
                log.warning("capture: correction refused: %s; further refusals of it are counted only", message)
            raise CorrectionError(message)
        until = self._clock() if ts is None else ts
        since = until - self.cfg.correct_window_s
        queued = 0
        with self._lock:
            for entry in self._seen:
                if not since <= entry.end_ts <= until or entry.label == label or entry.corrected == label:
                    continue
                entry.corrected = label
                replaces, entry.session = entry.session, None
                entry.session = self._submit_locked(entry, REASON_CORRECTED, label, replaces)
                queued += entry.session is not None
        log.info("capture: 'that was %s' over %.3f..%.3f: %d window(s) to capture", label, since, until, queued)
        return queued

    def on_correction(self, payload: bytes) -> int:
        """A label/correct message: parse and apply it; refusals are logged (once per name) and counted."""
        try:
            label, ts = parse_correction(payload)
        except CorrectionError as exc:
            with self._lock:
                self._counts.payloads_refused += 1
            self._log_every("payload", f"capture: a label/correct message refused: {exc}")
            return 0
        try:
            return self.correct(label, ts)
        except CorrectionError:
            return 0

    # ------------------------------------------------------------ stats

    def counters(self) -> dict[str, Any]:
        """The stats message's ``captures``: captures written per reason, and what went wrong, counted."""
        with self._lock:
            c = self._counts
            out: dict[str, Any] = dict(c.captured)
            out.update(
                deleted=c.deleted,
                refused=c.refused,
                dropped=c.dropped,
                failed=c.failed,
                no_samples=c.no_samples,
                labels_refused=c.labels_refused,
                payloads_refused=c.payloads_refused,
                stored=len(self._stored),
                stored_mb=round(sum(s.bytes for s in self._stored.values()) / (1024 * 1024), 3),
            )
            return out

    # ------------------------------------------------------------ writing (the writer thread)

    def _submit_locked(
        self, entry: _Seen, reason: str, corrected: Optional[str], replaces: Optional[str]
    ) -> Optional[str]:
        self._seq += 1
        session_id = f"{SESSION_PREFIX}{int(round(entry.end_ts * 1000))}-{self._seq:06d}"
        try:
            self._jobs.put_nowait(_Job(session_id, entry, reason, corrected, replaces))
        except queue.Full:
            self._counts.dropped += 1
            self._log_every("dropped", f"capture: the write queue is full ({WRITE_QUEUE}); capture dropped (counted)")
            return None
        return session_id

    def _write_loop(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            try:
                self._write(job)
            except Exception:  # a bug here must not end the thread: the next capture may work
                with self._lock:
                    self._counts.failed += 1
                log.exception("capture: writing %s failed", job.session_id)

    def _write(self, job: _Job) -> None:
        from edge_har.core.recording_layout import LabelSegment, LayoutError, RecordingMeta, write_session

        entry, info = job.entry, self.info
        estimate = self._estimate(entry)
        if not self._make_room(estimate, job.replaces):
            with self._lock:
                self._counts.refused += 1
            self._log_every(
                "refused",
                f"capture: {self.root} holds {len(self._stored)} captures, all labelled, at the bound "
                f"(max_windows {self.cfg.max_windows}, max_mb {self.cfg.max_mb:g}); new captures are refused (counted)",
            )
            return
        c = len(info.channels)
        meta = RecordingMeta(
            device_id=info.device_id,
            session_id=job.session_id,
            started=float(entry.t[0]),
            channels=list(info.channels),
            sample_rate_hz=float(info.source_rate_hz),
            units=info.units,
            scale=_per_channel(info.scale, c),
            offset=_per_channel(info.offset, c),
            source=info.source_type,
            subject=None,
            model_id=info.model_id,
            capture={
                "reason": job.reason,
                "predicted": entry.label,
                "confidence": entry.confidence,
                "probabilities": dict(entry.probabilities),
                "model_id": info.model_id,
                "window_end_ts": entry.end_ts,
                "corrected": job.corrected,
            },
        )
        end = float(entry.t[-1]) + 1.0 / info.source_rate_hz
        segments = [LabelSegment(job.corrected, float(entry.t[0]), end)] if job.corrected else []
        session_dir = self.root / job.session_id
        if session_dir.exists():  # the same millisecond and sequence number from an earlier run: never touched
            with self._lock:
                self._counts.failed += 1
            self._log_every("exists", f"capture: {session_dir} exists already; capture not written")
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            write_session(session_dir, meta, entry.t, entry.samples, segments)
        except LayoutError as exc:  # samples the layout cannot hold (a source bug): not a disk problem
            shutil.rmtree(session_dir, ignore_errors=True)
            with self._lock:
                self._counts.failed += 1
            self._log_every("layout", f"capture: not written: {exc}")
            return
        except OSError as exc:
            shutil.rmtree(session_dir, ignore_errors=True)
            with self._lock:
                self._counts.failed += 1
            what = "the disk is full" if exc.errno == errno.ENOSPC else f"{type(exc).__name__}: {exc}"
            self._log_every(
                f"write-{exc.errno}", f"capture: cannot write {session_dir}: {what}; captures are counted as failed"
            )
            return
        stored = _Stored(_dir_bytes(session_dir), bool(segments))
        with self._lock:
            self._stored[job.session_id] = stored
        with self._lock:
            self._counts.captured[job.reason] += 1
        if job.replaces:
            self._delete(job.replaces)
        log.debug("capture: %s (%s, predicted %s %.2f)", session_dir, job.reason, entry.label, entry.confidence)

    def _estimate(self, entry: _Seen) -> int:
        """Bytes a capture will take: its CSV lines at about 12 characters a value, plus the JSON files."""
        return len(entry.t) * (len(self.info.channels) + 1) * 12 + 2048

    def _make_room(self, new_bytes: int, replaces: Optional[str]) -> bool:
        """Delete the oldest unlabelled captures until one more of ``new_bytes`` fits; False if it cannot."""

        def over() -> bool:
            kept = {k: v for k, v in self._stored.items() if k != replaces}
            return (
                len(kept) + 1 > self.cfg.max_windows
                or sum(v.bytes for v in kept.values()) + new_bytes > self._max_bytes
            )

        while over():
            victims = [
                k for k in sorted(self._stored, key=_session_order) if k != replaces and not self._stored[k].labelled
            ]
            victim = next((k for k in victims if not _labelled(self.root / k)), None)
            for k in victims[: victims.index(victim) if victim is not None else len(victims)]:
                self._stored[k].labelled = True  # labelled since it was written (by a person): kept
            if victim is None:
                return False
            self._delete(victim)
            with self._lock:
                self._counts.deleted += 1
        return True

    def _delete(self, session_id: str) -> None:
        with self._lock:
            self._stored.pop(session_id, None)
        shutil.rmtree(self.root / session_id, ignore_errors=True)

    def _scan(self) -> None:
        """The captures already in the folder (a restart keeps counting them against the bounds)."""
        found: dict[str, _Stored] = {}
        try:
            if self.root.is_dir():
                for path in self.root.iterdir():
                    if path.name.startswith(SESSION_PREFIX) and path.is_dir():
                        found[path.name] = _Stored(_dir_bytes(path), _labelled(path))
        except OSError as exc:
            log.warning("capture: cannot list %s: %s", self.root, exc)
        with self._lock:
            self._stored = found

    def _log_every(self, key: str, message: str) -> None:
        """Log ``message`` as a warning unless the same kind of problem was logged within LOG_EVERY_S."""
        now = time.monotonic()
        with self._log_lock:  # not self._lock: callers may hold that one
            last = self._last_logged.get(key)
            if last is not None and now - last < LOG_EVERY_S:
                return
            self._last_logged[key] = now
        log.warning("%s", message)


def _labelled(session_dir: Path) -> bool:
    """Whether a capture's labels.csv holds a segment; one that cannot be read counts as labelled (kept)."""
    from edge_har.core.recording_layout import LABELS_FILE, LayoutError, read_labels

    if not (session_dir / LABELS_FILE).exists():
        return False
    try:
        return bool(read_labels(session_dir))
    except (LayoutError, OSError):
        return True


def _per_channel(values: Optional[Sequence[float]], n: int) -> Optional[list[float]]:
    if values is None:
        return None
    out = [float(v) for v in values]
    return out * n if len(out) == 1 else out


def _session_order(session_id: str) -> tuple[int, str]:
    """Oldest first: by the milliseconds in ``capture-<ms>-<seq>``, then by name."""
    parts = session_id[len(SESSION_PREFIX) :].split("-")
    try:
        return int(parts[0]), session_id
    except (ValueError, IndexError):
        return 0, session_id


def _dir_bytes(path: Path) -> int:
    try:
        return sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    except OSError:
        return 0


# ====================================================================== wiring into the daemon


def correction_topic(prefix: str, device_id: str) -> str:
    return f"{prefix}/{device_id}/label/correct"


class CorrectionListener:
    """A small MQTT client subscribed to ``<prefix>/<id>/label/correct`` that hands payloads to the store.

    The daemon's publisher keeps its paho client to itself, so corrections come through their own
    connection (client id ``<publisher's>-capture``), configured like the publisher's (TLS,
    credentials, reconnect backoff). A retained correction is ignored: replayed at a restart, it
    would relabel windows its sender never saw.
    """

    def __init__(self, cfg: MqttConfig, device_id: str, client_id: str, store: CaptureStore) -> None:
        self.cfg = cfg
        self.topic = correction_topic(cfg.topic_prefix, device_id)
        self.client_id = client_id
        self.store = store
        self._client: Any = None
        self._refusal_logged = False

    def start(self) -> None:
        from edge_har.mqtt.client import start_client

        self._client = start_client(
            self.cfg,
            self.client_id,
            on_connect=self._on_connect,
            on_subscribe=self._on_subscribe,
            on_message=self._on_message,
        )
        log.info("capture: corrections from %s", self.topic)

    def stop(self) -> None:
        from edge_har.mqtt.client import stop_client

        client, self._client = self._client, None
        stop_client(client)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            return
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        if any(getattr(code, "is_failure", False) for code in reason_codes) and not self._refusal_logged:
            self._refusal_logged = True
            log.warning(
                "capture: the broker refused the subscription to %s (check its ACL lets this device read it); "
                "corrections will not arrive",
                self.topic,
            )

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if message.retain:
            log.info("capture: a retained message on %s ignored (corrections are not retained)", message.topic)
            return
        self.store.on_correction(bytes(message.payload))


def stream_info(device_id: str, runtime: Any, windowing: Any, source_type: str, queued_windows: int) -> StreamInfo:
    """The :class:`StreamInfo` of a sensor runtime's windowing (its effective scale and offset)."""
    pre = windowing.pre
    return StreamInfo(
        device_id=device_id,
        model_id=str(runtime.model_id),
        labels=tuple(runtime.labels),
        channels=tuple(pre.channels),
        source_rate_hz=float(windowing.source_rate_hz),
        model_rate_hz=float(pre.sample_rate_hz),
        window=int(pre.window),
        stride=int(pre.stride),
        units=str(pre.units or ""),
        scale=tuple(float(v) for v in pre.scale) if pre.scale is not None else None,
        offset=tuple(float(v) for v in pre.offset) if pre.offset is not None else None,
        source_type=source_type,
        queued_windows=queued_windows,
    )
