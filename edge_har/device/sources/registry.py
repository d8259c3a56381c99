"""Source plugins by their ``type`` key: the one place a source is made known.

``source: {type: serial, ...}`` is validated by the config model registered for ``serial``
and built by its source class; :mod:`edge_har.device.config` builds its discriminated
``source`` union from this table, and :func:`edge_har.device.sources.make_source` looks the
class up here, so neither names a source. Adding a source is one module (config model +
class) and one ``register(...)`` line in :func:`_register_builtin`.

Source modules are imported here, so they must import nothing heavy at import time (OpenCV,
pyserial and smbus2 are imported inside their methods): config validation runs on machines
without them.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from edge_har.device.sources.config_base import SourceConfigBase

if TYPE_CHECKING:
    from edge_har.device.sources.base import Source

__all__ = ["SourcePlugin", "on_change", "plugins", "register", "type_key", "unregister"]


@dataclass(frozen=True)
class SourcePlugin:
    """One source type: its config model and the class that reads from it."""

    key: str
    config: type[SourceConfigBase]
    source: type[Source]


_PLUGINS: dict[str, SourcePlugin] = {}
_LISTENERS: list[Callable[[], None]] = []


def type_key(config: type[SourceConfigBase]) -> str:
    """The ``type`` value a config model declares (``type: Literal["serial"]``)."""
    field = config.model_fields.get("type")
    args = typing.get_args(field.annotation) if field is not None else ()
    if len(args) != 1 or not isinstance(args[0], str):
        raise TypeError(f"{config.__name__} needs a field type: Literal['<key>'] to be registered as a source")
    return args[0]


def register(config: type[SourceConfigBase], source: type[Source]) -> SourcePlugin:
    """Make a source type known under its config model's ``type`` key; the config union follows."""
    key = type_key(config)
    if key in _PLUGINS and _PLUGINS[key].config is not config:
        raise ValueError(f"source type {key!r} is already registered ({_PLUGINS[key].config.__name__})")
    plugin = SourcePlugin(key, config, source)
    _PLUGINS[key] = plugin
    _changed()
    return plugin


def unregister(key: str) -> None:
    """Forget a source type (tests that register their own); unknown keys are ignored."""
    if _PLUGINS.pop(key, None) is not None:
        _changed()


def plugins() -> dict[str, SourcePlugin]:
    """Registered source types, in registration order (the order error messages list them in)."""
    return dict(_PLUGINS)


def on_change(listener: Callable[[], None]) -> None:
    """Call ``listener`` after every register/unregister (the device config rebuilds its union)."""
    _LISTENERS.append(listener)


def _changed() -> None:
    for listener in _LISTENERS:
        listener()


def _register_builtin() -> None:
    """The built-in sources. A new source: import its module here and add one register line."""
    from edge_har.device.sources import camera, i2c_imu, mqtt_input, replay, serial_source

    register(replay.ReplaySourceConfig, replay.ReplaySource)
    register(serial_source.SerialSourceConfig, serial_source.SerialSource)
    register(mqtt_input.MqttSourceConfig, mqtt_input.MqttInputSource)
    register(i2c_imu.I2cImuSourceConfig, i2c_imu.I2cImuSource)
    register(camera.CameraSourceConfig, camera.CameraStreamSource)


_register_builtin()
