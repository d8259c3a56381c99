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

from edge_har.core.errors import EdgeHarError

import logging
import math
import re
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

import numpy as np

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
            f = float(v)
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


@dataclass
class SourceStatus:
    """What the stats message says about a source besides its malformed counts."""

    connected: bool = True
    finished: bool = False
    reconnects: int = 0
    last_error: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = {"connected": self.connected, "finished": self.finished, "reconnects": self.reconnects, "last_error": self.last_error}
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

    def _chunk(self, samples: np.ndarray, *, label: Optional[str] = None, segment_start: bool = False) -> Optional[Chunk]:
        if len(samples) == 0 and not segment_start:
            return None
        self.samples_read += len(samples)
        return Chunk(samples, time.perf_counter(), time.time(), label=label, segment_start=segment_start)

    def __enter__(self) -> "Source":
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
