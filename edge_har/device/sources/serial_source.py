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
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field, field_validator

from edge_har.device.sources.base import Chunk, ReopeningSource, SampleChecker, SourceError
from edge_har.device.sources.config_base import ReconnectConfig, SensorSourceConfig, Where

log = logging.getLogger(__name__)

MAX_LINE = 4096  # bytes; a longer "line" is noise on the wire (wrong baud rate)


class SerialSourceConfig(SensorSourceConfig):
    """A microcontroller sending one text line per sample, e.g. ``0.01,-0.98,0.12``."""

    type: Literal["serial"] = Field(description="Source type.")
    port: str = Field(
        min_length=1,
        description=(
            "Serial device, e.g. /dev/ttyACM0, /dev/ttyUSB0, /dev/serial0. Prefer a stable /dev/serial/by-id/... "
            "name: a USB device re-plugged may come back under another ttyACM number."
        ),
    )
    baudrate: int = Field(
        115200, ge=50, le=12_000_000, description="Line speed (50..12000000); must match the microcontroller's."
    )
    rate_hz: float = Field(ge=0.1, le=10_000, description="Samples per second the microcontroller sends (0.1..10000).")
    columns: Optional[list[int]] = Field(
        None,
        min_length=1,
        description=(
            "Zero-based fields of each line to use, in the model's channel order, e.g. [1, 2, 3] for 't,ax,ay,az'. "
            "Default: every field; a line must then have exactly one field per channel. Fields are separated by "
            "commas, semicolons or whitespace."
        ),
    )
    timeout: float = Field(
        5.0,
        ge=0,
        le=3600,
        description=(
            "Seconds (0..3600) without a single byte after which the port is closed and reopened (a hung adapter); "
            "0 = never."
        ),
    )
    reconnect: ReconnectConfig = Field(
        default_factory=ReconnectConfig, description="Backoff for reopening a lost port."
    )

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: Optional[list[int]]) -> Optional[list[int]]:
        if value is not None and any(c < 0 for c in value):
            raise ValueError("column indices are zero-based and must be >= 0")
        return value

    def channel_count(self) -> Optional[tuple[str, int]]:
        return ("columns", len(self.columns)) if self.columns is not None else None

    def check_files(self, where: Where) -> tuple[list[str], list[str]]:
        # A warning, not an error: USB serial devices come and go, and the daemon waits for them.
        if not Path(self.port).exists():
            return [], [f"{where('port')}: {self.port} does not exist now; the daemon will wait for it"]
        return [], []


class SerialSource(ReopeningSource):
    kind = "serial"
    device_noun = "port"

    def __init__(self, cfg: SerialSourceConfig, n_channels: int) -> None:
        super().__init__(n_channels, f"serial {cfg.port}", cfg.reconnect.min_s, cfg.reconnect.max_s)
        try:
            import serial  # noqa: F401  (pyserial)
        except ImportError as exc:
            raise SourceError(
                "the serial source needs pyserial: pip install 'edge-har[device]' (or pip install pyserial)"
            ) from exc
        self.cfg = cfg
        self.checker = SampleChecker(n_channels, self.malformed, cfg.valid_range, cfg.columns)
        self._buffer = b""
        self._skip_partial = True
        self._last_byte = 0.0

    @property
    def rate_hz(self) -> float:
        return self.cfg.rate_hz

    # ---------------------------------------------------------------- port handling (ReopeningSource)

    def _open_errors(self) -> tuple[type[BaseException], ...]:
        import serial

        return (serial.SerialException, OSError, ValueError)

    def _open_device(self) -> Any:
        import serial

        port = serial.Serial(self.cfg.port, self.cfg.baudrate, timeout=0, exclusive=True)
        try:
            port.reset_input_buffer()  # bytes from before we opened belong to no sample we can time
        except (serial.SerialException, OSError):
            pass
        return port

    def _opened(self, first: bool) -> None:
        self._buffer = b""
        self._skip_partial = True
        self._last_byte = time.monotonic()
        if first:
            log.info("%s: opened at %d baud, expecting %g samples/s", self.name, self.cfg.baudrate, self.cfg.rate_hz)

    # ---------------------------------------------------------------- reading

    def read(self, timeout: float) -> Optional[Chunk]:
        import serial

        deadline = time.monotonic() + timeout
        if not self._ensure_open(timeout):
            return None
        port = self._device
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
        return self._segment_chunk(self.checker.rows(rows))

    def status(self) -> dict[str, Any]:
        out = super().status()
        out["port"] = self.cfg.port
        return out
