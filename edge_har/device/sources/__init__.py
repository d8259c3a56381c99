"""Sensor sources behind one interface (:class:`~edge_har.device.sources.base.Source`), chosen by ``source.type``.

Each source module is imported only when its type is configured, so a Pi reading a serial
IMU does not need smbus2 and a gateway does not need pyserial.
"""

from __future__ import annotations

from edge_har.device.config import (
    CameraSourceConfig,
    DeviceConfig,
    I2cImuSourceConfig,
    MqttSourceConfig,
    ReplaySourceConfig,
    SerialSourceConfig,
)
from edge_har.device.sources.base import Chunk, MalformedCounter, SampleChecker, Source, SourceError

__all__ = ["Chunk", "MalformedCounter", "SampleChecker", "Source", "SourceError", "make_source"]


def make_source(cfg: DeviceConfig, n_channels: int, model_rate_hz: float, client_id: str) -> Source:
    """The configured source, not started. ``client_id`` names the MQTT input's connection."""
    source = cfg.source
    if isinstance(source, ReplaySourceConfig):
        from edge_har.device.sources.replay import ReplaySource

        return ReplaySource(source, n_channels, default_rate_hz=model_rate_hz)
    if isinstance(source, SerialSourceConfig):
        from edge_har.device.sources.serial_source import SerialSource

        return SerialSource(source, n_channels)
    if isinstance(source, MqttSourceConfig):
        from edge_har.device.sources.mqtt_input import MqttInputSource

        return MqttInputSource(source, cfg.input_broker(), n_channels, source.client_id or f"{client_id}-input")
    if isinstance(source, I2cImuSourceConfig):
        from edge_har.device.sources.i2c_imu import I2cImuSource

        return I2cImuSource(source, n_channels)
    if isinstance(source, CameraSourceConfig):
        from edge_har.device.sources.camera import CameraStreamSource

        return CameraStreamSource(source)
    raise SourceError(f"source.type {getattr(source, 'type', source)!r} is not supported")  # pragma: no cover
