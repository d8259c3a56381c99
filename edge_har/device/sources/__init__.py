"""Sensor sources behind one interface (:class:`~edge_har.device.sources.base.Source`), chosen by ``source.type``.

Each source is a plugin: one module holding its config model and its class, registered by its
``type`` key in :mod:`edge_har.device.sources.registry`. Source modules import their device
libraries (pyserial, smbus2, OpenCV, paho) only when a source is built, so a Pi reading a serial
IMU does not need smbus2, a gateway does not need pyserial, and configs validate anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from edge_har.device.sources.base import (
    Chunk,
    MalformedCounter,
    ReopeningSource,
    SampleChecker,
    Source,
    SourceContext,
    SourceError,
)
from edge_har.device.sources.config_base import SourceConfigBase
from edge_har.device.sources.registry import SourcePlugin, plugins, register, unregister
from edge_har.mqtt.config import MqttConfig

__all__ = [
    "Chunk",
    "MalformedCounter",
    "ReopeningSource",
    "SampleChecker",
    "Source",
    "SourceContext",
    "SourceError",
    "SourceSettings",
    "SourcePlugin",
    "make_source",
    "plugins",
    "register",
    "unregister",
]


class SourceSettings(Protocol):
    """The parts of a device config that building a source reads.

    A structural type, so this package does not import :mod:`edge_har.device.config` (which
    builds its ``source`` union from this package's registry): a ``DeviceConfig`` fits it.
    """

    @property
    def source(self) -> SourceConfigBase: ...

    @property
    def mqtt(self) -> MqttConfig: ...

    @property
    def bundle(self) -> Path: ...


def make_source(
    cfg: SourceSettings, n_channels: int, model_rate_hz: float, client_id: str, preloaded: Any = None
) -> Source:
    """The configured source, not started. ``client_id`` names the MQTT input's connection.

    The source gets the default broker and the bundle directory through its
    :class:`SourceContext`, not the whole config; ``preloaded`` is what the start-up checks
    read for it (:attr:`StartupResult.source_data <edge_har.device.startup.StartupResult>`).
    """
    source = cfg.source
    plugin = plugins().get(getattr(source, "type", ""))
    if plugin is None or not isinstance(source, plugin.config):
        raise SourceError(f"source.type {getattr(source, 'type', source)!r} is not supported")
    ctx = SourceContext(
        n_channels=n_channels,
        model_rate_hz=model_rate_hz,
        client_id=client_id,
        broker=cfg.mqtt,
        bundle=cfg.bundle,
        preloaded=preloaded,
    )
    return plugin.source.from_config(source, ctx)
