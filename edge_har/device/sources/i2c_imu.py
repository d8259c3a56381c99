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
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import numpy as np
from pydantic import Field

from edge_har.device.sources.base import Chunk, ReopeningSource, SampleChecker, SourceError
from edge_har.device.sources.config_base import SensorSourceConfig, Where

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


ImuChannel = Literal["accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z"]
ACCEL_CHANNELS: tuple[ImuChannel, ...] = ("accel_x", "accel_y", "accel_z")
GYRO_CHANNELS: tuple[ImuChannel, ...] = ("gyro_x", "gyro_y", "gyro_z")


class I2cImuSourceConfig(SensorSourceConfig):
    """An MPU-6050 class IMU on an I2C bus (needs the ``imu`` extra: smbus2). Delivers g and deg/s,
    so the bundle's raw-code scaling is replaced by scale 1, offset 0 unless scale/offset are set."""

    type: Literal["i2c_imu"] = Field(description="Source type.")
    chip: Literal["mpu6050"] = Field("mpu6050", description="IMU model (MPU-6050 / MPU-6000 / MPU-9250 register map).")
    bus: int = Field(
        1, ge=0, le=255, description="I2C bus number: 1 is /dev/i2c-1, the header pins of every Pi since the B+."
    )
    address: int = Field(0x68, ge=0x03, le=0x77, description="7-bit I2C address: 0x68, or 0x69 with AD0 pulled high.")
    rate_hz: float = Field(
        50.0, ge=0.1, le=1000, description="Samples per second to read, 0.1..1000 (the chip is set to this rate)."
    )
    accel_range: Literal[2, 4, 8, 16] = Field(4, description="Accelerometer full scale in g (+-).")
    gyro_range: Literal[250, 500, 1000, 2000] = Field(500, description="Gyroscope full scale in deg/s (+-).")
    dlpf: int = Field(
        3, ge=0, le=6, description="Digital low-pass filter setting 0..6 (3: ~44 Hz bandwidth; keep below rate_hz / 2)."
    )
    channels: list[ImuChannel] = Field(
        default_factory=lambda: list[ImuChannel](ACCEL_CHANNELS),
        min_length=1,
        description=(
            "Values read per sample, in the model's channel order, e.g. [accel_x, accel_y, accel_z]. Reorder them "
            "(and use a negative scale) to match how the sensor sits relative to the training data's axes."
        ),
    )

    def channel_count(self) -> Optional[tuple[str, int]]:
        return ("channels", len(self.channels))

    def check_files(self, where: Where) -> tuple[list[str], list[str]]:
        dev = Path(f"/dev/i2c-{self.bus}")
        if not dev.exists():
            return [], [f"{where('bus')}: {dev} does not exist; enable I2C (raspi-config nonint do_i2c 0) and reboot"]
        return [], []


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


def decode_sample(
    block: bytes | Sequence[int], channels: Sequence[str], accel_range: int, gyro_range: int
) -> list[float]:
    """The configured channels of one block, in order (g and deg/s)."""
    values = decode_block(block, accel_range, gyro_range)
    return [float(values[CHANNEL_INDEX[c]]) for c in channels]


class I2cImuSource(ReopeningSource):
    kind = "i2c_imu"
    device_noun = "IMU"

    def __init__(self, cfg: I2cImuSourceConfig, n_channels: int) -> None:
        super().__init__(n_channels, f"i2c imu bus {cfg.bus} 0x{cfg.address:02x}", 0.5, 30.0)
        if len(cfg.channels) != n_channels:
            raise SourceError(f"source.channels lists {len(cfg.channels)} channels; the model takes {n_channels}")
        try:
            import smbus2  # noqa: F401
        except ImportError as exc:
            raise SourceError("the i2c_imu source needs smbus2: pip install 'edge-har[imu]'") from exc
        self.cfg = cfg
        self.checker = SampleChecker(n_channels, self.malformed, cfg.valid_range)
        self._period = 1.0 / cfg.rate_hz
        self._next_due = 0.0
        self._who: Optional[int] = None

    @property
    def rate_hz(self) -> float:
        return self.cfg.rate_hz

    @property
    def delivers_physical_units(self) -> bool:
        return True

    # ---------------------------------------------------------------- bus handling (ReopeningSource)

    def _open_device(self) -> Any:
        from smbus2 import SMBus

        bus = None
        try:
            bus = SMBus(self.cfg.bus)
            who = bus.read_byte_data(self.cfg.address, REG_WHO_AM_I)
            if who not in KNOWN_CHIPS:
                log.warning("%s: WHO_AM_I is 0x%02x, not a known MPU-6050 class chip; trying anyway", self.name, who)
            bus.write_byte_data(self.cfg.address, REG_PWR_MGMT_1, PWR_RESET)
            time.sleep(0.1)  # the reset takes up to 100 ms
            for reg, value in setup_registers(
                self.cfg.rate_hz, self.cfg.dlpf, self.cfg.accel_range, self.cfg.gyro_range
            ):
                bus.write_byte_data(self.cfg.address, reg, value)
            time.sleep(0.05)  # gyro PLL settles
        except (OSError, ValueError):
            if bus is not None:
                bus.close()
            raise
        self._who = who
        return bus

    def _open_failure(self, exc: BaseException) -> str:
        return f"cannot set up the IMU: {exc}"

    def _open_failure_hint(self, exc: BaseException) -> str:
        return (
            " (is I2C enabled and is the user in group i2c?)"
            if isinstance(exc, (FileNotFoundError, PermissionError))
            else ""
        )

    def _opened(self, first: bool) -> None:
        self._next_due = time.monotonic()
        if first:
            who = self._who if self._who is not None else 0
            log.info(
                "%s: %s, +-%d g, +-%d deg/s, %g Hz, channels %s",
                self.name,
                KNOWN_CHIPS.get(who, f"chip 0x{who:02x}"),
                self.cfg.accel_range,
                self.cfg.gyro_range,
                self.cfg.rate_hz,
                ", ".join(self.cfg.channels),
            )

    # ---------------------------------------------------------------- reading

    def read(self, timeout: float) -> Optional[Chunk]:
        if not self._ensure_open(timeout):
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
            block = self._device.read_i2c_block_data(self.cfg.address, REG_ACCEL_XOUT_H, BLOCK_LEN)
        except OSError as exc:
            self._lost(f"bus error: {exc}")
            return None
        row = self.checker.check_values(
            decode_sample(block, self.cfg.channels, self.cfg.accel_range, self.cfg.gyro_range)
        )
        return self._segment_chunk(self.checker.rows([row]))
