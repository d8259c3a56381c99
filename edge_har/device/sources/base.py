"""The one small interface every sensor source implements, and the sample checks they share.

A source turns a device (a recording, a serial line, an MQTT topic, an I2C chip) into
:class:`Chunk` s of raw samples. The daemon's source thread calls :meth:`Source.read` in a
loop with a short timeout so it can notice the stop event; a source never blocks longer than
that timeout and never raises for a bad sample or a lost device: bad samples are dropped and
counted by reason (:class:`MalformedCounter`), lost devices are reopened with backoff inside
the source. Values stay raw here: scaling to physical units belongs to
``edge_har.core.preprocessing``, the code training used.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

import numpy as np

from edge_har.core.errors import EdgeHarError
from edge_har.mqtt.config import MqttConfig

if TYPE_CHECKING:
    from edge_har.device.sources.config_base import SourceConfigBase

log = logging.getLogger(__name__)

# Reasons a sample is dropped; the keys of ``samples_dropped`` in the stats message.
REASON_COLUMNS = "columns"  # wrong number of fields
REASON_TEXT = "text"  # a field that is not a number
REASON_NON_FINITE = "nan"  # NaN or +-inf
REASON_RANGE = "range"  # outside the configured valid range
REASON_PAYLOAD = "payload"  # a whole message that cannot be parsed (MQTT input)
REASONS = (REASON_COLUMNS, REASON_TEXT, REASON_NON_FINITE, REASON_RANGE, REASON_PAYLOAD)

_SPLIT = re.compile(r"[,;\s]+")


class SourceError(EdgeHarError, RuntimeError):
    """A source that cannot work at all (missing recording file, unknown format); raised at start."""


@dataclass
class Chunk:
    """Consecutive raw samples as they arrived.

    ``arrival`` (``time.perf_counter()``) is when the last of them was read: the start of
    the end-to-end latency of any window they complete. ``ts`` is the Unix time of the last
    sample. ``segment_start`` marks a discontinuity before this chunk (the next recording of a
    replay, a serial port that came back): windows must not span it, so the runtime restarts
    windowing and smoothing there. ``label`` is the ground truth a replay knows.
    """

    samples: np.ndarray  # (n, C) float32, raw
    arrival: float
    ts: float
    label: Optional[str] = None
    segment_start: bool = False

    def __len__(self) -> int:
        return len(self.samples)


class MalformedCounter:
    """Thread-safe counts of dropped samples by reason, with a rate-limited warning.

    One warning per reason per ``warn_every_s`` keeps a sensor spewing garbage from filling
    the journal, while the totals stay exact for the stats message.
    """

    def __init__(self, source_name: str, warn_every_s: float = 60.0) -> None:
        self.source_name = source_name
        self.warn_every_s = warn_every_s
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._last_warned: dict[str, float] = {}

    def add(self, reason: str, n: int = 1, example: str = "") -> None:
        if n <= 0:
            return
        now = time.monotonic()
        with self._lock:
            self._counts[reason] = self._counts.get(reason, 0) + n
            last = self._last_warned.get(reason)
            warn = last is None or now - last >= self.warn_every_s
            if warn:
                self._last_warned[reason] = now
            total = self._counts[reason]
        if warn:
            log.warning(
                "%s: dropped malformed sample(s) (%s)%s; %d so far for this reason (counted in stats, "
                "next warning for it in %g s at the earliest)",
                self.source_name,
                reason,
                f": {example[:120]!r}" if example else "",
                total,
                self.warn_every_s,
            )

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())


class SampleChecker:
    """Parses and checks samples: the column count, numbers only, finite, within range.

    ``columns`` picks (zero-based) which fields of a text line are the channels, in the model's
    channel order, e.g. ``[1, 2, 3]`` for a line ``t,ax,ay,az``; without it a line must have
    exactly ``n_channels`` fields. ``valid_range`` (raw units, inclusive) catches a sensor that
    saturates or a line garbled into a plausible-looking number.
    """

    def __init__(
        self,
        n_channels: int,
        malformed: MalformedCounter,
        valid_range: Optional[Sequence[float]] = None,
        columns: Optional[Sequence[int]] = None,
    ) -> None:
        if columns is not None and len(columns) != n_channels:
            raise SourceError(f"columns lists {len(columns)} fields but the model has {n_channels} channels")
        self.n_channels = n_channels
        self.malformed = malformed
        self.columns = list(columns) if columns is not None else None
        self.lo, self.hi = (float(valid_range[0]), float(valid_range[1])) if valid_range else (-math.inf, math.inf)

    def parse_line(self, line: str) -> Optional[list[float]]:
        """One text line -> one sample, or None (counted) when it is malformed. Blank lines are skipped silently."""
        text = line.strip()
        if not text:
            return None
        fields = [f for f in _SPLIT.split(text) if f]
        if self.columns is not None:
            if len(fields) <= max(self.columns):
                self.malformed.add(REASON_COLUMNS, example=text)
                return None
            fields = [fields[i] for i in self.columns]
        elif len(fields) != self.n_channels:
            self.malformed.add(REASON_COLUMNS, example=text)
            return None
        try:
            values = [float(f) for f in fields]
        except ValueError:
            self.malformed.add(REASON_TEXT, example=text)
            return None
        return self.check_values(values, example=text)

    def check_values(self, values: Sequence[Any], example: str = "") -> Optional[list[float]]:
        """A sequence of numbers -> a checked sample, or None (counted)."""
        if len(values) != self.n_channels:
            self.malformed.add(REASON_COLUMNS, example=example or repr(list(values)))
            return None
        out = []
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                if isinstance(v, str):
                    try:
                        v = float(v)
                    except ValueError:
                        self.malformed.add(REASON_TEXT, example=example or repr(list(values)))
                        return None
                else:
                    self.malformed.add(REASON_TEXT, example=example or repr(list(values)))
                    return None
            try:
                f = float(v)
            except OverflowError:  # an integer beyond float range (JSON allows 400-digit integers)
                f = math.inf
            if not math.isfinite(f):
                self.malformed.add(REASON_NON_FINITE, example=example or repr(list(values)))
                return None
            if f < self.lo or f > self.hi:
                self.malformed.add(REASON_RANGE, example=example or repr(list(values)))
                return None
            out.append(f)
        return out

    def check_array(self, samples: np.ndarray) -> np.ndarray:
        """Drop (and count) rows of an (n, C) array that are non-finite or out of range."""
        arr = np.asarray(samples, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != self.n_channels:
            self.malformed.add(REASON_COLUMNS, n=len(arr) if arr.ndim else 1, example=f"array of shape {arr.shape}")
            return np.empty((0, self.n_channels), np.float32)
        finite = np.isfinite(arr).all(axis=1)
        in_range = finite & (arr >= self.lo).all(axis=1) & (arr <= self.hi).all(axis=1)
        self.malformed.add(REASON_NON_FINITE, int((~finite).sum()), example="NaN/inf in a replayed recording")
        self.malformed.add(REASON_RANGE, int((finite & ~in_range).sum()), example="value outside valid_range")
        return arr if in_range.all() else arr[in_range]

    def rows(self, rows: Iterable[Optional[list[float]]]) -> np.ndarray:
        good = [r for r in rows if r is not None]
        if not good:
            return np.empty((0, self.n_channels), np.float32)
        return np.asarray(good, dtype=np.float32)


@dataclass(frozen=True)
class SourceContext:
    """What a source may need from outside its own config section to be built.

    One object instead of per-source constructor arguments, so :func:`make_source` builds any
    registered source the same way (:meth:`Source.from_config`). It carries the few settings of
    the device config a source needs, not the config itself, so sources do not depend on the
    config module that is built from them.
    """

    n_channels: int  # the model's channels per sample
    model_rate_hz: float  # the bundle's sample rate (a replay's default rate)
    client_id: str  # the publisher's MQTT client id (the MQTT input derives its own from it)
    broker: MqttConfig = field(default_factory=MqttConfig)  # the default broker (the MQTT input's, unless it names one)
    bundle: Optional[Path] = None  # the bundle directory (a replay's default format, options and rate)
    preloaded: Any = None  # what the start-up checks already read for this source (a replay's recordings), or None


@dataclass
class SourceStatus:
    """What the stats message says about a source besides its malformed counts."""

    connected: bool = True
    finished: bool = False
    reconnects: int = 0
    last_error: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = {
            "connected": self.connected,
            "finished": self.finished,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
        }
        out.update(self.extra)
        return out


class Source(ABC):
    """A stream of raw samples.

    Life cycle: ``start()`` (may raise :class:`SourceError` for a configuration that cannot
    work, e.g. a missing recording), then ``read(timeout)`` repeatedly from one thread, then
    ``stop()`` (idempotent, callable from any thread). ``read`` returns a :class:`Chunk`, or
    None when nothing arrived within ``timeout``; it returns within about ``timeout`` seconds
    even when the device is gone. ``finished`` becomes true when the source will never deliver
    again (a replay that reached its end without ``loop``).
    """

    kind: str = "source"

    @classmethod
    def from_config(cls, cfg: SourceConfigBase, ctx: SourceContext) -> Source:
        """Build from the config section; the default suits sources taking ``(cfg, n_channels)``.

        Override when a source needs more of ``ctx`` (a replay's default rate, the MQTT broker).
        """
        factory: Any = cls  # subclasses take (cfg, n_channels); the base's own signature differs
        return factory(cfg, ctx.n_channels)

    def __init__(self, n_channels: int, name: Optional[str] = None) -> None:
        self.n_channels = n_channels
        self.name = name or self.kind
        self.malformed = MalformedCounter(self.name)
        self.samples_read = 0  # good samples delivered
        self._status = SourceStatus()

    @property
    @abstractmethod
    def rate_hz(self) -> Optional[float]:
        """Samples per second the source delivers; None when it does not know (the model's rate is assumed)."""

    @property
    def delivers_physical_units(self) -> bool:
        """True when samples are already in physical units (an IMU driver), so the bundle's
        raw-code scaling does not apply unless the config sets one."""
        return False

    @property
    def finished(self) -> bool:
        return self._status.finished

    def status(self) -> dict[str, Any]:
        return self._status.to_json()

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def read(self, timeout: float) -> Optional[Chunk]: ...

    @abstractmethod
    def stop(self) -> None: ...

    def _chunk(
        self, samples: np.ndarray, *, label: Optional[str] = None, segment_start: bool = False
    ) -> Optional[Chunk]:
        if len(samples) == 0 and not segment_start:
            return None
        self.samples_read += len(samples)
        return Chunk(samples, time.perf_counter(), time.time(), label=label, segment_start=segment_start)

    def __enter__(self) -> Source:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class Backoff:
    """Reconnect delays that double from ``min_s`` up to ``max_s``; reset after a success."""

    def __init__(self, min_s: float, max_s: float) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self.reset()

    def reset(self) -> None:
        self.delay = self.min_s
        self.next_try = 0.0  # monotonic time of the next attempt

    def due(self) -> bool:
        return time.monotonic() >= self.next_try

    def failed(self) -> float:
        """Schedule the next attempt; returns the delay."""
        delay = self.delay
        self.next_try = time.monotonic() + delay
        self.delay = min(self.delay * 2, self.max_s)
        return delay


class ReopeningSource(Source):
    """A source on a device that comes and goes (a USB serial port, an I2C bus), reopened with backoff.

    Subclasses say how to open and close the device (:meth:`_open_device`, :meth:`_close_device`)
    and read from ``self._device`` in :meth:`read`, starting with ``if not self._ensure_open(timeout):
    return None`` and calling :meth:`_lost` when the device fails. This base owns the rest, once
    for all of them: the backoff (``min_s`` doubling to ``max_s``, reset after a success), one
    warning per outage instead of one per attempt, the reconnect count and the new segment after
    every (re)opening, so no window spans the gap.
    """

    device_noun = "device"  # for log lines: "cannot open the <noun>", "<noun> is back"

    def __init__(self, n_channels: int, name: Optional[str], min_s: float, max_s: float) -> None:
        super().__init__(n_channels, name=name)
        self._backoff = Backoff(min_s, max_s)
        self._device: Any = None
        self._new_segment = True
        self._opened_once = False
        self._logged_failure = False
        self._stopped = False
        self._status.connected = False

    # ---------------------------------------------------------------- for subclasses

    @abstractmethod
    def _open_device(self) -> Any:
        """Open and set up the device; raise one of :meth:`_open_errors` when it is not available."""

    def _close_device(self, device: Any) -> None:
        """Release the device; errors are ignored (a vanished device fails to close in odd ways)."""
        device.close()

    def _open_errors(self) -> tuple[type[BaseException], ...]:
        """Exceptions of :meth:`_open_device` that mean "not available now, try again later"."""
        return (OSError, ValueError)

    def _open_failure(self, exc: BaseException) -> str:
        """``status.last_error`` after a failed attempt."""
        return f"cannot open: {exc}"

    def _open_failure_hint(self, exc: BaseException) -> str:
        """Extra text for the outage warning (e.g. a permission hint)."""
        return ""

    def _opened(self, first: bool) -> None:
        """Called after every successful opening, e.g. to reset parse buffers; logs the first one."""
        if first:
            log.info("%s: opened", self.name)

    # ---------------------------------------------------------------- life cycle

    def start(self) -> None:
        self._stopped = False
        self._try_open()

    def stop(self) -> None:
        self._stopped = True
        self._close()

    def _try_open(self) -> bool:
        """One attempt when the backoff allows it; True when the device is open now."""
        if not self._backoff.due():
            return False
        try:
            device = self._open_device()
        except self._open_errors() as exc:
            delay = self._backoff.failed()
            self._status.last_error = self._open_failure(exc)
            if not self._logged_failure:
                log.warning(
                    "%s: cannot open the %s (%s)%s; retrying every %.1f..%g s",
                    self.name,
                    self.device_noun,
                    exc,
                    self._open_failure_hint(exc),
                    delay,
                    self._backoff.max_s,
                )
                self._logged_failure = True
            return False
        self._device = device
        self._new_segment = True
        self._logged_failure = False
        self._backoff.reset()
        self._status.connected = True
        first = not self._opened_once
        if not first:
            self._status.reconnects += 1
            log.info("%s: %s is back (reconnect #%d); resuming", self.name, self.device_noun, self._status.reconnects)
        self._opened_once = True
        self._opened(first)
        return True

    def _close(self) -> None:
        device, self._device = self._device, None
        self._status.connected = False
        if device is not None:
            try:
                self._close_device(device)
            except Exception:  # closing a vanished device can fail in odd ways; it is gone either way
                pass

    def _lost(self, why: str) -> None:
        """The open device failed: close it and schedule the first reopening after ``min_s``."""
        self._status.last_error = why
        log.warning(
            "%s: %s; reopening with backoff (%g..%g s)", self.name, why, self._backoff.min_s, self._backoff.max_s
        )
        self._close()
        self._backoff.reset()
        self._backoff.failed()

    def _ensure_open(self, timeout: float) -> bool:
        """For :meth:`read`: True when the device is open; otherwise waits (at most ``timeout``) and is False."""
        if self._stopped:
            time.sleep(timeout)
            return False
        if self._device is None and not self._try_open():
            time.sleep(max(0.0, min(timeout, self._backoff.next_try - time.monotonic())))
            return False
        return True

    def _segment_chunk(self, samples: np.ndarray) -> Optional[Chunk]:
        """A chunk of ``samples``, flagged as a segment start when it is the first since an opening."""
        segment_start = self._new_segment and len(samples) > 0
        if segment_start:
            self._new_segment = False
        return self._chunk(samples, segment_start=segment_start)
