"""A microcontroller on a serial line sending one text line per sample (``ax,ay,az``).

The port is expected to come and go (a USB cable pulled, an adapter reset, a board flashed):
losing it is logged once, the port is reopened with backoff, and the stream resumes as a new
segment so no window spans the gap. A line cut in half by the loss, or garbage at start-up
while the board boots, is just a malformed sample. A port that stays silent longer than
``timeout`` seconds is reopened too (some USB-serial adapters hang without disappearing).
Needs pyserial (in the ``device`` extra).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

from edge_har.device.config import SerialSourceConfig
from edge_har.device.sources.base import Backoff, Chunk, SampleChecker, Source, SourceError

log = logging.getLogger(__name__)

MAX_LINE = 4096  # bytes; a longer "line" is noise on the wire (wrong baud rate)


class SerialSource(Source):
    kind = "serial"

    def __init__(self, cfg: SerialSourceConfig, n_channels: int) -> None:
        super().__init__(n_channels, name=f"serial {cfg.port}")
        try:
            import serial  # noqa: F401  (pyserial)
        except ImportError as exc:
            raise SourceError(
                "the serial source needs pyserial: pip install 'edge-har[device]' (or pip install pyserial)"
            ) from exc
        self.cfg = cfg
        self.checker = SampleChecker(n_channels, self.malformed, cfg.valid_range, cfg.columns)
        self._serial: Any = None
        self._buffer = b""
        self._skip_partial = True
        self._backoff = Backoff(cfg.reconnect.min_s, cfg.reconnect.max_s)
        self._last_byte = 0.0
        self._new_segment = True
        self._opened_once = False
        self._logged_absent = False
        self._stopped = False
        self._status.connected = False

    @property
    def rate_hz(self) -> float:
        return self.cfg.rate_hz

    def start(self) -> None:
        self._stopped = False
        self._try_open()

    def stop(self) -> None:
        self._stopped = True
        self._close()

    # ---------------------------------------------------------------- port handling

    def _try_open(self) -> bool:
        import serial

        if not self._backoff.due():
            return False
        try:
            port = serial.Serial(self.cfg.port, self.cfg.baudrate, timeout=0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            delay = self._backoff.failed()
            self._status.last_error = f"cannot open: {exc}"
            if not self._logged_absent:
                log.warning("%s: cannot open the port (%s); retrying every %.1f..%g s", self.name, exc, delay, self.cfg.reconnect.max_s)
                self._logged_absent = True
            return False
        try:
            port.reset_input_buffer()  # bytes from before we opened belong to no sample we can time
        except (serial.SerialException, OSError):
            pass
        self._serial = port
        self._buffer = b""
        self._skip_partial = True
        self._last_byte = time.monotonic()
        self._new_segment = True
        self._logged_absent = False
        self._backoff.reset()
        self._status.connected = True
        if self._opened_once:
            self._status.reconnects += 1
            log.info("%s: port is back (reconnect #%d); resuming", self.name, self._status.reconnects)
        else:
            log.info("%s: opened at %d baud, expecting %g samples/s", self.name, self.cfg.baudrate, self.cfg.rate_hz)
        self._opened_once = True
        return True

    def _close(self) -> None:
        port, self._serial = self._serial, None
        self._status.connected = False
        if port is not None:
            try:
                port.close()
            except Exception:  # closing a vanished device can fail in odd ways; it is gone either way
                pass

    def _lost(self, why: str) -> None:
        self._status.last_error = why
        log.warning("%s: %s; reopening with backoff (%g..%g s)", self.name, why, self.cfg.reconnect.min_s, self.cfg.reconnect.max_s)
        self._close()
        self._backoff.reset()
        self._backoff.failed()

    # ---------------------------------------------------------------- reading

    def read(self, timeout: float) -> Optional[Chunk]:
        import serial

        if self._stopped:
            time.sleep(timeout)
            return None
        deadline = time.monotonic() + timeout
        if self._serial is None:
            if not self._try_open():
                time.sleep(max(0.0, min(timeout, self._backoff.next_try - time.monotonic())))
                return None
        port = self._serial
        try:
            port.timeout = max(0.0, deadline - time.monotonic())
            data = port.read(max(1, port.in_waiting))
            if data and port.in_waiting:
                data += port.read(port.in_waiting)
        except (serial.SerialException, OSError) as exc:
            self._lost(f"port lost ({exc})")
            return None
        now = time.monotonic()
        if not data:
            if self.cfg.timeout and now - self._last_byte > self.cfg.timeout:
                self._lost(f"no data for {self.cfg.timeout:g} s")
            return None
        self._last_byte = now
        self._buffer += data
        if self._skip_partial:
            # Opening the port lands anywhere in the byte stream: the bytes before the first
            # newline are the tail of a line we did not see, not a malformed sample.
            head, sep, rest = self._buffer.partition(b"\n")
            if not sep:
                if len(self._buffer) > MAX_LINE:  # no newline at all: wrong baud rate or not a text protocol
                    self.malformed.add("columns", example=self._buffer[:60].decode("ascii", "replace"))
                    self._buffer = b""
                return None
            self._buffer, self._skip_partial = rest, False
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > MAX_LINE:
            self.malformed.add("columns", example=self._buffer[:60].decode("ascii", "replace"))
            self._buffer = b""
        rows = []
        for raw in lines:
            try:
                text = raw.decode("ascii")
            except UnicodeDecodeError:
                self.malformed.add("text", example=raw[:60].decode("ascii", "replace"))
                continue
            rows.append(self.checker.parse_line(text))
        samples = self.checker.rows(rows)
        segment_start = self._new_segment and len(samples) > 0
        if segment_start:
            self._new_segment = False
        return self._chunk(samples, segment_start=segment_start)

    def status(self) -> dict[str, Any]:
        out = super().status()
        out["port"] = self.cfg.port
        return out
