"""What every source's config model shares, and the hooks the config and the daemon call on it.

A source plugin's config model subclasses :class:`SourceConfigBase` (a camera) or
:class:`SensorSourceConfig` (anything delivering numeric samples), declares
``type: Literal["<key>"]`` and overrides only the hooks that apply to it. The device config
(:mod:`edge_har.device.config`) and the daemon then ask the model instead of probing its type
with ``isinstance``/``getattr``, which is what lets a new source be one file plus one
registration line (:mod:`edge_har.device.sources.registry`).

This module must stay light (pydantic and the MQTT config model only): config validation runs
on workstations without OpenCV, pyserial or smbus2.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_har.mqtt.config import MqttConfig

__all__ = [
    "ReconnectConfig",
    "SensorSourceConfig",
    "SourceConfigBase",
    "Where",
    "resolve_mqtt_paths",
    "resolve_path",
]

Where = Callable[[str], str]
"""``where("port")`` -> ``"FILE:LINE: source.port"``: a key under ``source`` as an error line prefix."""


def resolve_path(p: Optional[Path], base: Path) -> Optional[Path]:
    """``p`` taken relative to ``base`` (the config file's folder) unless it is absolute; ``~`` expanded."""
    if p is None:
        return None
    try:
        p = Path(p).expanduser()
    except RuntimeError:  # "~nosuchuser/...": no such home; kept as written (then reported as missing)
        p = Path(p)
    return p if p.is_absolute() else (base / p)


def resolve_mqtt_paths(m: MqttConfig, base: Path) -> MqttConfig:
    """A copy of a broker section with its password and TLS files resolved against ``base``."""
    update: dict[str, Any] = {"password_file": resolve_path(m.password_file, base)}
    if m.tls is not None:
        update["tls"] = m.tls.model_copy(
            update={k: resolve_path(getattr(m.tls, k), base) for k in ("ca_file", "cert_file", "key_file")}
        )
    return m.model_copy(update=update)


class SourceConfigBase(BaseModel):
    """``source:`` of a device config: the base of every source plugin's config model.

    The defaults describe a live sensor that needs no files: override what differs.
    """

    model_config = ConfigDict(extra="forbid")

    if TYPE_CHECKING:  # every plugin declares it as type: Literal["<key>"]; pydantic must not see it here
        type: str

    needs_video_bundle: ClassVar[bool] = False
    """True for frame sources: check_files then requires a video bundle (and a sensor bundle refuses them)."""

    def lossless(self) -> bool:
        """True when the source can wait for the consumer (a replay as fast as possible): the daemon's
        window queue then blocks instead of dropping the oldest window, so every window is inferred."""
        return False

    def stops_at_end(self) -> bool:
        """True when the daemon should drain, publish offline and exit once the source finishes."""
        return False

    def value_scaling(self) -> tuple[Optional[list[float]], Optional[list[float]]]:
        """(scale, offset) the config sets, None for either to keep the bundle's (frame sources have none)."""
        return None, None

    def channel_count(self) -> Optional[tuple[str, int]]:
        """(key under ``source``, count) of a setting that lists the channels, checked against the model's."""
        return None

    def resolve_paths(self, base: Path) -> SourceConfigBase:
        """A copy whose relative file paths are taken relative to ``base`` (the config file's folder)."""
        return self

    def check_files(self, where: Where) -> tuple[list[str], list[str]]:
        """(errors, warnings) about files and devices only the target machine can answer for.

        Errors stop the daemon (a recording that is not there); warnings are for devices that
        come and go (a USB port unplugged now), which the daemon waits for.
        """
        return [], []


class SensorSourceConfig(SourceConfigBase):
    """Fields every sample (numeric) source shares: value scaling and the valid range."""

    scale: Optional[list[float]] = Field(
        None,
        min_length=1,
        description=(
            "value = raw * scale + offset, one value for all channels or one per channel. Leave empty to use the "
            "bundle's scaling (right when the source delivers the same raw codes as the training data); set it when "
            "the source delivers other units, e.g. [1.0] with offset [0.0] for a sensor already in g."
        ),
    )
    offset: Optional[list[float]] = Field(
        None, min_length=1, description="See scale: one value for all channels or one per channel."
    )
    valid_range: Optional[tuple[float, float]] = Field(
        None,
        description=(
            "[low, high] in raw units, inclusive: samples with a value outside are dropped and counted as "
            "'range' in stats (a saturated or garbled sensor). Leave empty to accept any finite value."
        ),
    )

    @field_validator("valid_range")
    @classmethod
    def _ordered(cls, value: Optional[tuple[float, float]]) -> Optional[tuple[float, float]]:
        if value is not None and any(math.isnan(v) for v in value):
            raise ValueError("low and high must be numbers, not NaN (NaN would let every value through)")
        if value is not None and value[0] > value[1]:
            raise ValueError(f"low ({value[0]}) must be <= high ({value[1]})")
        return value

    @field_validator("scale", "offset")
    @classmethod
    def _finite(cls, value: Optional[list[float]]) -> Optional[list[float]]:
        if value is not None and not all(math.isfinite(v) for v in value):
            raise ValueError("must be finite numbers (NaN or inf would turn every sample into NaN)")
        return value

    def value_scaling(self) -> tuple[Optional[list[float]], Optional[list[float]]]:
        return self.scale, self.offset


class ReconnectConfig(BaseModel):
    """Backoff of a source that reopens a lost device (see ``ReopeningSource``)."""

    model_config = ConfigDict(extra="forbid")

    min_s: float = Field(
        0.5,
        ge=0.01,
        le=3600,
        description="First delay before reopening a lost port, in seconds (0.01..3600); doubles after each failure.",
    )
    max_s: float = Field(
        30.0, ge=0.01, le=3600, description="Longest delay between attempts to reopen the port (0.01..3600 s)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> ReconnectConfig:
        if self.max_s < self.min_s:
            raise ValueError(f"max_s ({self.max_s}) must be >= min_s ({self.min_s})")
        return self
