"""An MPU-6050 class IMU on the Pi's I2C bus, polled at ``rate_hz`` (needs the ``imu`` extra: smbus2).

The register map and the decoding are pure functions (:func:`setup_registers`,
:func:`decode_sample`) so they are tested with real byte strings on any machine; only
:class:`I2cImuSource` touches the bus. Samples come out in g (accelerometer) and deg/s
(gyroscope), i.e. physical units: the bundle's raw-code scaling does not apply (see
``Source.delivers_physical_units``).

A bus error (a loose wire gives ``OSError: [Errno 121] Remote I/O error``) closes the bus and
reopens it with backoff, re-running the chip set-up (a brown-out resets its registers); the
stream resumes as a new segment. Polling, not the chip's FIFO: at HAR rates (20-100 Hz) one
14-byte block read per sample costs well under a millisecond on a Pi, and jitter of a
millisecond is far below what a 2-second window notices.
"""

from __future__ import annotations

import logging
import struct
import time
from typing import Any, Optional, Sequence

import numpy as np

from edge_har.device.config import I2cImuSourceConfig
from edge_har.device.sources.base import Backoff, Chunk, SampleChecker, Source, SourceError

log = logging.getLogger(__name__)

# Register map (MPU-6000/6050 Register Map and Descriptions, rev. 4.2).
REG_SMPLRT_DIV = 0x19
REG_CONFIG = 0x1A
REG_GYRO_CONFIG = 0x1B
REG_ACCEL_CONFIG = 0x1C
REG_ACCEL_XOUT_H = 0x3B  # 14 bytes: accel x y z, temperature, gyro x y z; big-endian int16
REG_PWR_MGMT_1 = 0x6B
REG_WHO_AM_I = 0x75
BLOCK_LEN = 14
PWR_RESET = 0x80
PWR_CLOCK_PLL_XGYRO = 0x01  # wake up, clock from the X gyro PLL (more stable than the internal oscillator)

# WHO_AM_I answers of chips with this register layout.
KNOWN_CHIPS = {0x68: "MPU-6050/6000", 0x70: "MPU-6500", 0x71: "MPU-9250", 0x73: "MPU-9255", 0x98: "ICM-20689"}

ACCEL_LSB_PER_G = {2: 16384.0, 4: 8192.0, 8: 4096.0, 16: 2048.0}
GYRO_LSB_PER_DPS = {250: 131.0, 500: 65.5, 1000: 32.8, 2000: 16.4}
_FS_SEL = {2: 0, 4: 1, 8: 2, 16: 3, 250: 0, 500: 1, 1000: 2, 2000: 3}
CHANNEL_INDEX = {"accel_x": 0, "accel_y": 1, "accel_z": 2, "gyro_x": 4, "gyro_y": 5, "gyro_z": 6}  # 3 is temperature


def setup_registers(rate_hz: float, dlpf: int, accel_range: int, gyro_range: int) -> list[tuple[int, int]]:
    """(register, value) writes, in order, that configure the chip after a reset.

    The sample rate divider makes the chip's own output rate the nearest it can do to
    ``rate_hz`` (1 kHz / (1 + div) with the low-pass filter on), so each poll reads a fresh
    sample rather than a repeat of the last one.
    """
    if accel_range not in ACCEL_LSB_PER_G:
        raise ValueError(f"accel_range must be one of {sorted(ACCEL_LSB_PER_G)}, got {accel_range}")
    if gyro_range not in GYRO_LSB_PER_DPS:
        raise ValueError(f"gyro_range must be one of {sorted(GYRO_LSB_PER_DPS)}, got {gyro_range}")
    if not 0 <= dlpf <= 6:
        raise ValueError(f"dlpf must be 0..6, got {dlpf}")
    base_hz = 8000.0 if dlpf == 0 else 1000.0
    div = int(round(base_hz / rate_hz)) - 1
    div = max(0, min(255, div))
    return [
        (REG_PWR_MGMT_1, PWR_CLOCK_PLL_XGYRO),
        (REG_CONFIG, dlpf & 0x07),
        (REG_SMPLRT_DIV, div),
        (REG_GYRO_CONFIG, _FS_SEL[gyro_range] << 3),
        (REG_ACCEL_CONFIG, _FS_SEL[accel_range] << 3),
    ]


def decode_block(block: bytes | Sequence[int], accel_range: int, gyro_range: int) -> np.ndarray:
    """The 14-byte block at ACCEL_XOUT_H -> [ax, ay, az (g), temperature (deg C), gx, gy, gz (deg/s)]."""
    data = bytes(block)
    if len(data) != BLOCK_LEN:
        raise ValueError(f"expected {BLOCK_LEN} bytes from ACCEL_XOUT_H, got {len(data)}")
    ax, ay, az, temp, gx, gy, gz = struct.unpack(">7h", data)
    a = ACCEL_LSB_PER_G[accel_range]
    g = GYRO_LSB_PER_DPS[gyro_range]
    return np.array([ax / a, ay / a, az / a, temp / 340.0 + 36.53, gx / g, gy / g, gz / g], dtype=np.float64)


def decode_sample(block: bytes | Sequence[int], channels: Sequence[str], accel_range: int, gyro_range: int) -> list[float]:
    """The configured channels of one block, in order (g and deg/s)."""
    values = decode_block(block, accel_range, gyro_range)
    return [float(values[CHANNEL_INDEX[c]]) for c in channels]


class I2cImuSource(Source):
    kind = "i2c_imu"

    def __init__(self, cfg: I2cImuSourceConfig, n_channels: int) -> None:
        super().__init__(n_channels, name=f"i2c imu bus {cfg.bus} 0x{cfg.address:02x}")
        if len(cfg.channels) != n_channels:
            raise SourceError(f"source.channels lists {len(cfg.channels)} channels; the model takes {n_channels}")
        try:
            import smbus2  # noqa: F401
        except ImportError as exc:
            raise SourceError("the i2c_imu source needs smbus2: pip install 'edge-har[imu]'") from exc
        self.cfg = cfg
        self.checker = SampleChecker(n_channels, self.malformed, cfg.valid_range)
        self._bus: Any = None
        self._backoff = Backoff(0.5, 30.0)
        self._period = 1.0 / cfg.rate_hz
        self._next_due = 0.0
        self._new_segment = True
        self._opened_once = False
        self._logged_failure = False
        self._stopped = False
        self._status.connected = False

    @property
    def rate_hz(self) -> float:
        return self.cfg.rate_hz

    @property
    def delivers_physical_units(self) -> bool:
        return True

    def start(self) -> None:
        self._stopped = False
        self._try_open()

    def stop(self) -> None:
        self._stopped = True
        self._close()

    def _try_open(self) -> bool:
        from smbus2 import SMBus

        if not self._backoff.due():
            return False
        bus = None
        try:
            bus = SMBus(self.cfg.bus)
            who = bus.read_byte_data(self.cfg.address, REG_WHO_AM_I)
            if who not in KNOWN_CHIPS:
                log.warning("%s: WHO_AM_I is 0x%02x, not a known MPU-6050 class chip; trying anyway", self.name, who)
            bus.write_byte_data(self.cfg.address, REG_PWR_MGMT_1, PWR_RESET)
            time.sleep(0.1)  # the reset takes up to 100 ms
            for reg, value in setup_registers(self.cfg.rate_hz, self.cfg.dlpf, self.cfg.accel_range, self.cfg.gyro_range):
                bus.write_byte_data(self.cfg.address, reg, value)
            time.sleep(0.05)  # gyro PLL settles
        except (OSError, ValueError) as exc:
            if bus is not None:
                bus.close()
            delay = self._backoff.failed()
            self._status.last_error = f"cannot set up the IMU: {exc}"
            if not self._logged_failure:
                hint = " (is I2C enabled and is the user in group i2c?)" if isinstance(exc, (FileNotFoundError, PermissionError)) else ""
                log.warning("%s: cannot set up the IMU (%s)%s; retrying every %.1f..30 s", self.name, exc, hint, delay)
                self._logged_failure = True
            return False
        self._bus = bus
        self._backoff.reset()
        self._logged_failure = False
        self._next_due = time.monotonic()
        self._new_segment = True
        self._status.connected = True
        if self._opened_once:
            self._status.reconnects += 1
            log.info("%s: IMU is back (reconnect #%d)", self.name, self._status.reconnects)
        else:
            log.info(
                "%s: %s, +-%d g, +-%d deg/s, %g Hz, channels %s",
                self.name, KNOWN_CHIPS.get(who, f"chip 0x{who:02x}"), self.cfg.accel_range, self.cfg.gyro_range,
                self.cfg.rate_hz, ", ".join(self.cfg.channels),
            )
        self._opened_once = True
        return True

    def _close(self) -> None:
        bus, self._bus = self._bus, None
        self._status.connected = False
        if bus is not None:
            try:
                bus.close()
            except OSError:
                pass

    def read(self, timeout: float) -> Optional[Chunk]:
        if self._stopped:
            time.sleep(timeout)
            return None
        if self._bus is None and not self._try_open():
            time.sleep(max(0.0, min(timeout, self._backoff.next_try - time.monotonic())))
            return None
        wait = self._next_due - time.monotonic()
        if wait > timeout:
            time.sleep(timeout)
            return None
        if wait > 0:
            time.sleep(wait)
        # Fixed schedule; if we fell more than a period behind (a busy system), skip ahead
        # rather than firing a burst of reads that would all return the same sample.
        self._next_due = max(self._next_due + self._period, time.monotonic())
        try:
            block = self._bus.read_i2c_block_data(self.cfg.address, REG_ACCEL_XOUT_H, BLOCK_LEN)
        except OSError as exc:
            self._status.last_error = f"bus error: {exc}"
            log.warning("%s: bus error (%s); setting the IMU up again with backoff", self.name, exc)
            self._close()
            self._backoff.failed()
            return None
        row = self.checker.check_values(decode_sample(block, self.cfg.channels, self.cfg.accel_range, self.cfg.gyro_range))
        samples = self.checker.rows([row])
        segment_start = self._new_segment and len(samples) > 0
        if segment_start:
            self._new_segment = False
        return self._chunk(samples, segment_start=segment_start)
