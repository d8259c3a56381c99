"""The device config: one YAML file, loaded once into typed models and passed down.

Every section is a pydantic model with ``extra="forbid"`` and a description on each field, so
a typo is an error instead of a setting silently ignored, and so ``validate-config`` can say
which key was meant. Errors come back as one line per problem::

    /etc/edge-har/config.yaml:14: source.baud_rate: unknown key; did you mean 'baudrate'?

naming the file, the line, the key path and, for unknown keys, the nearest valid key
(difflib). Relative paths in the file (bundle, replay recordings, TLS and password files)
resolve against the config file's folder, so a config and its bundle can move together.

Structural validation (:func:`load_config`) needs nothing but the file, so configs written for
a Pi can be checked on a workstation; :func:`check_files` adds what only the target machine can
answer (the bundle exists and fits the source, TLS files exist) and is what the daemon runs.
"""

from __future__ import annotations

from edge_har.core.errors import EdgeHarError

import difflib
import socket
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Optional, Sequence, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge_har.mqtt.config import MqttConfig
from edge_har.device.video_config import CameraSourceConfig, VideoRuntimeConfig

__all__ = [
    "ConfigError",
    "DeviceConfig",
    "I2cImuSourceConfig",
    "InterpreterConfig",
    "LoggingConfig",
    "MqttSourceConfig",
    "QueuesConfig",
    "ReplaySourceConfig",
    "SerialSourceConfig",
    "SmoothingConfig",
    "SourceConfig",
    "check_files",
    "load_config",
]

UNKNOWN_LABEL = "unknown"  # the payload schema's label for "below the confidence threshold"


class ConfigError(EdgeHarError, ValueError):
    """A config that cannot be used; ``problems`` holds one line per problem, each naming the file."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ====================================================================== sections


class InterpreterConfig(_Model):
    """Which TFLite runtime runs the bundle, and how."""

    backend: Literal["auto", "ai_edge_litert", "tflite_runtime", "tf_lite"] = Field(
        "auto",
        description=(
            "TFLite runtime: 'auto' tries ai_edge_litert, then tflite_runtime, then tf_lite (TensorFlow; "
            "slow start, large memory: a last resort). Force one to fail loudly when it is missing."
        ),
    )
    num_threads: Optional[int] = Field(
        1,
        ge=1,
        le=64,
        description=(
            "CPU threads for the interpreter. 1 gives the steadiest latency for small HAR models and leaves "
            "cores for the rest of the system; leave empty for the runtime's default."
        ),
    )
    delegate: Optional[str] = Field(
        None,
        description=(
            "External delegate library, e.g. 'libedgetpu.so.1' for a Coral Edge TPU (use the bundle's int8 "
            "variant with it). Leave empty to run on the CPU."
        ),
    )
    delegate_options: dict[str, str] = Field(
        default_factory=dict,
        description="Options passed to the delegate, e.g. {device: 'usb'} for the Edge TPU.",
    )
    verify_sha256: bool = Field(
        True,
        description="Check the .tflite file's sha256 against bundle.json before loading (catches a corrupt SD card).",
    )

    def options(self) -> Any:
        """The :class:`edge_har.core.interpreter.InterpreterOptions` both runtimes pass whole down to
        every TFLiteModel (delegate options included). Imported here, not at the top, so reading a
        config loads no numpy; typed ``Any`` so that the module needs no import of it at all."""
        from edge_har.core.interpreter import InterpreterOptions

        return InterpreterOptions(
            backend=self.backend, num_threads=self.num_threads, delegate=self.delegate,
            delegate_options=dict(self.delegate_options), verify_sha256=self.verify_sha256,
        )


class _SourceBase(_Model):
    """Fields every sensor source shares: value scaling and the valid range."""

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
        if value is not None and value[0] > value[1]:
            raise ValueError(f"low ({value[0]}) must be <= high ({value[1]})")
        return value


class ReplaySourceConfig(_SourceBase):
    """Replays recorded data as if it came from a sensor; emits each recording's ground-truth label,
    so the predictions can be scored (``extra.truth`` in the prediction payload)."""

    type: Literal["replay"] = Field(description="Source type.")
    path: Path = Field(description="Recording(s): a folder (format folder), a CSV file (csv) or one sample file (file).")
    format: Literal["folder", "csv", "file"] = Field(
        "folder",
        description=(
            "'folder': <path>/<Label>/<recording files> (the HMP layout); 'csv': one long CSV with a label column; "
            "'file': one recording of whitespace/comma separated samples (set label for its ground truth)."
        ),
    )
    label_col: Optional[str] = Field(None, description="csv: the column holding the activity label (required for csv).")
    channel_cols: Optional[list[str]] = Field(
        None, min_length=1, description="csv: the columns holding the channels, in the model's channel order (default: the rest)."
    )
    subject_col: Optional[str] = Field(None, description="csv: the column naming the subject, if any.")
    timestamp_col: Optional[str] = Field(None, description="csv: a timestamp column to leave out of the channels, if any.")
    label: Optional[str] = Field(None, description="file: the ground-truth label of the recording (optional).")
    rate_hz: Optional[float] = Field(
        None, gt=0, description="Rate the recordings were made at (default: the bundle's sample rate)."
    )
    realtime: bool = Field(
        True,
        description=(
            "true: deliver samples at rate_hz (x speed), like a live sensor; false: as fast as possible (benchmarks). "
            "When false, the window queue waits instead of dropping, so every window is inferred."
        ),
    )
    speed: float = Field(1.0, gt=0, description="realtime pacing factor: 2.0 replays twice as fast as recorded.")
    loop: bool = Field(False, description="Start again from the first recording after the last one.")
    stop_at_end: bool = Field(
        False,
        description=(
            "At the end (without loop): true makes the daemon process what is left, publish 'offline' and exit 0; "
            "false keeps it running (status online, stats published) until it is stopped."
        ),
    )
    chunk_samples: Optional[int] = Field(
        None, ge=1, description="Samples per chunk handed to the runtime (default: 1 when realtime, 256 otherwise)."
    )

    @model_validator(mode="after")
    def _format_keys(self) -> "ReplaySourceConfig":
        if self.format == "csv" and not self.label_col:
            raise ValueError("format csv needs label_col (the column holding the activity label)")
        csv_only = [k for k in ("label_col", "channel_cols", "subject_col", "timestamp_col") if getattr(self, k) is not None]
        if self.format != "csv" and csv_only:
            raise ValueError(f"{', '.join(csv_only)}: only for format csv (format is {self.format})")
        if self.label is not None and self.format != "file":
            raise ValueError(f"label only applies to format file (format {self.format} reads labels from the data)")
        return self


class ReconnectConfig(_Model):
    min_s: float = Field(0.5, gt=0, description="First delay before reopening a lost port, in seconds; doubles after each failure.")
    max_s: float = Field(30.0, gt=0, description="Longest delay between attempts to reopen the port.")

    @model_validator(mode="after")
    def _ordered(self) -> "ReconnectConfig":
        if self.max_s < self.min_s:
            raise ValueError(f"max_s ({self.max_s}) must be >= min_s ({self.min_s})")
        return self


class SerialSourceConfig(_SourceBase):
    """A microcontroller sending one text line per sample, e.g. ``0.01,-0.98,0.12``."""

    type: Literal["serial"] = Field(description="Source type.")
    port: str = Field(
        min_length=1,
        description=(
            "Serial device, e.g. /dev/ttyACM0, /dev/ttyUSB0, /dev/serial0. Prefer a stable /dev/serial/by-id/... "
            "name: a USB device re-plugged may come back under another ttyACM number."
        ),
    )
    baudrate: int = Field(115200, gt=0, description="Line speed; must match the microcontroller's.")
    rate_hz: float = Field(gt=0, description="Samples per second the microcontroller sends.")
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
        description="Seconds without a single byte after which the port is closed and reopened (a hung adapter); 0 = never.",
    )
    reconnect: ReconnectConfig = Field(default_factory=ReconnectConfig, description="Backoff for reopening a lost port.")

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: Optional[list[int]]) -> Optional[list[int]]:
        if value is not None and any(c < 0 for c in value):
            raise ValueError("column indices are zero-based and must be >= 0")
        return value


class MqttSourceConfig(_SourceBase):
    """Samples published by remote sensor nodes on an MQTT topic, one or many per message.

    JSON payloads: ``{"samples": [[ax, ay, az], ...]}``, ``{"samples": [{"ax": ..}, ...]}``,
    ``{"ax": .., "ay": .., "az": ..}`` (keys from ``fields``), ``[[..], ..]`` or ``[ax, ay, az]``.
    CSV payloads: one sample per line, ``ax,ay,az``."""

    type: Literal["mqtt"] = Field(description="Source type.")
    topic: str = Field(min_length=1, description="Topic to subscribe to; wildcards allowed (e.g. sensors/+/imu).")
    format: Literal["json", "csv"] = Field("json", description="Payload format.")
    fields: Optional[list[str]] = Field(
        None,
        min_length=1,
        description="JSON: keys of object samples, in the model's channel order, e.g. [ax, ay, az].",
    )
    rate_hz: float = Field(gt=0, description="Samples per second the sensor nodes sample at.")
    qos: int = Field(1, ge=0, le=2, description="Subscription QoS.")
    client_id: Optional[str] = Field(None, description="Client id of the input connection (default: the publisher's id + '-input').")
    buffer_samples: int = Field(
        10000,
        ge=1,
        description="Samples held between reads; beyond it the oldest are dropped and counted as 'overflow'.",
    )
    broker: Optional[MqttConfig] = Field(
        None,
        description="Broker to read from when it is not the one the predictions go to (default: the mqtt section).",
    )


ACCEL_CHANNELS = ("accel_x", "accel_y", "accel_z")
GYRO_CHANNELS = ("gyro_x", "gyro_y", "gyro_z")
ImuChannel = Literal["accel_x", "accel_y", "accel_z", "gyro_x", "gyro_y", "gyro_z"]


class I2cImuSourceConfig(_SourceBase):
    """An MPU-6050 class IMU on an I2C bus (needs the ``imu`` extra: smbus2). Delivers g and deg/s,
    so the bundle's raw-code scaling is replaced by scale 1, offset 0 unless scale/offset are set."""

    type: Literal["i2c_imu"] = Field(description="Source type.")
    chip: Literal["mpu6050"] = Field("mpu6050", description="IMU model (MPU-6050 / MPU-6000 / MPU-9250 register map).")
    bus: int = Field(1, ge=0, description="I2C bus number: 1 is /dev/i2c-1, the header pins of every Pi since the B+.")
    address: int = Field(0x68, ge=0x03, le=0x77, description="7-bit I2C address: 0x68, or 0x69 with AD0 pulled high.")
    rate_hz: float = Field(50.0, gt=0, le=1000, description="Samples per second to read (the chip is set to this rate).")
    accel_range: Literal[2, 4, 8, 16] = Field(4, description="Accelerometer full scale in g (+-).")
    gyro_range: Literal[250, 500, 1000, 2000] = Field(500, description="Gyroscope full scale in deg/s (+-).")
    dlpf: int = Field(
        3, ge=0, le=6, description="Digital low-pass filter setting 0..6 (3: ~44 Hz bandwidth; keep below rate_hz / 2)."
    )
    channels: list[ImuChannel] = Field(
        default_factory=lambda: list(ACCEL_CHANNELS),
        min_length=1,
        description=(
            "Values read per sample, in the model's channel order, e.g. [accel_x, accel_y, accel_z]. Reorder them "
            "(and use a negative scale) to match how the sensor sits relative to the training data's axes."
        ),
    )


SourceConfig = Annotated[
    Union[ReplaySourceConfig, SerialSourceConfig, MqttSourceConfig, I2cImuSourceConfig, CameraSourceConfig],
    Field(discriminator="type"),
]
SOURCE_TYPES: dict[str, type[BaseModel]] = {
    "replay": ReplaySourceConfig,
    "serial": SerialSourceConfig,
    "mqtt": MqttSourceConfig,
    "i2c_imu": I2cImuSourceConfig,
    "camera": CameraSourceConfig,  # edge_har.device.video_config: frames for a video bundle
}


class SmoothingConfig(_Model):
    """Smoothing of the prediction stream over the last N windows."""

    method: Literal["majority", "mean_prob"] = Field(
        "mean_prob",
        description=(
            "'mean_prob': average the class probabilities of the last N windows; 'majority': the label most "
            "windows voted for (its confidence is its mean probability over those windows)."
        ),
    )
    window: int = Field(5, ge=1, le=1000, description="N, the windows smoothed over; 1 disables smoothing.")
    threshold: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Confidence under which the published label is unknown_label (0 never gives unknown).",
    )
    unknown_label: str = Field(
        UNKNOWN_LABEL,
        min_length=1,
        description="Label published under the threshold: 'unknown', or one of the model's labels (e.g. a Null class).",
    )


class LoggingConfig(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO",
        description=(
            "Log level. `edge-har --log-level X run ...` overrides it when X is not INFO (the flag's default). "
            "Logs go to stderr: the journal under systemd."
        ),
    )

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class QueuesConfig(_Model):
    windows: int = Field(
        64,
        ge=1,
        description=(
            "Windows waiting for inference. When inference falls behind a live source, the oldest waiting window "
            "is dropped (counted in stats) so predictions stay current."
        ),
    )


class DeviceConfig(_Model):
    """One device: which bundle runs on which source, and where the predictions go."""

    device_id: Optional[str] = Field(
        None,
        description="Name of this device in MQTT topics (edge-har/<device_id>/...). Default: the host name.",
    )
    bundle: Path = Field(description="Model bundle directory (holding bundle.json), made by `edge-har convert`.")
    variant: Optional[str] = Field(
        None, description="Bundle variant to run (float32, dynamic_range, int8, ...). Default: the bundle's default_variant."
    )
    interpreter: InterpreterConfig = Field(default_factory=InterpreterConfig, description="TFLite runtime settings.")
    source: SourceConfig = Field(description="Where samples come from; `type` picks replay, serial, mqtt, i2c_imu or camera (video bundles).")
    smoothing: SmoothingConfig = Field(default_factory=SmoothingConfig, description="Smoothing of the prediction stream.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Broker and topics the predictions are published to.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logging.")
    queues: QueuesConfig = Field(default_factory=QueuesConfig, description="Bounded queues between the threads.")
    video: VideoRuntimeConfig = Field(
        default_factory=VideoRuntimeConfig, description="How a video bundle is streamed (camera source); ignored for sensor bundles."
    )

    @field_validator("device_id")
    @classmethod
    def _device_id(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and (not value or any(c in value for c in "/+#") or any(c.isspace() for c in value)):
            raise ValueError(f"{value!r} cannot be an MQTT topic level (no '/', '+', '#' or spaces)")
        return value

    def effective_device_id(self) -> str:
        """The configured id, else the host name (with characters a topic level cannot hold replaced)."""
        if self.device_id:
            return self.device_id
        name = socket.gethostname() or "edge-har"
        return "".join("-" if (c in "/+#" or c.isspace()) else c for c in name)

    def resolve_paths(self, base: Path) -> "DeviceConfig":
        """A copy whose relative paths are taken relative to ``base`` (the config file's folder)."""

        def fix(p: Optional[Path]) -> Optional[Path]:
            if p is None:
                return None
            p = Path(p).expanduser()
            return p if p.is_absolute() else (base / p)

        def fix_mqtt(m: MqttConfig) -> MqttConfig:
            update: dict[str, Any] = {"password_file": fix(m.password_file)}
            if m.tls is not None:
                update["tls"] = m.tls.model_copy(
                    update={k: fix(getattr(m.tls, k)) for k in ("ca_file", "cert_file", "key_file")}
                )
            return m.model_copy(update=update)

        source = self.source
        if isinstance(source, ReplaySourceConfig):
            source = source.model_copy(update={"path": fix(source.path)})
        elif isinstance(source, CameraSourceConfig) and source.target_kind() == "file":
            source = source.model_copy(update={"device": str(fix(Path(str(source.device))))})
        elif isinstance(source, MqttSourceConfig) and source.broker is not None:
            source = source.model_copy(update={"broker": fix_mqtt(source.broker)})
        return self.model_copy(update={"bundle": fix(self.bundle), "source": source, "mqtt": fix_mqtt(self.mqtt)})

    def input_broker(self) -> MqttConfig:
        """The broker the MQTT input source reads from."""
        if isinstance(self.source, MqttSourceConfig) and self.source.broker is not None:
            return self.source.broker
        return self.mqtt


# ====================================================================== loading


@dataclass
class LoadedConfig:
    """A validated config and where it came from (for error lines of later checks)."""

    config: DeviceConfig
    path: Path
    lines: dict[tuple[Any, ...], int]

    def where(self, key: str) -> str:
        """``FILE:LINE: key`` for a dotted key path (the line when the key is in the file)."""
        parts = tuple(int(p) if p.isdigit() else p for p in key.split(".")) if key else ()
        line = _line_for(self.lines, parts)
        return f"{self.path}:{line}: {key}" if line else f"{self.path}: {key}"


def load_config(path: str | Path) -> LoadedConfig:
    """Read and validate a config file; raises :class:`ConfigError` with one line per problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{file}: config file does not exist"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{file}: cannot read the config file: {exc}"]) from None
    try:
        data = yaml.safe_load(text)
        lines = _key_lines(yaml.compose(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(file)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: YAML syntax error: {problem}"]) from None
    if data is None:
        raise ConfigError([f"{file}: the config file is empty; it needs at least 'bundle' and 'source'"])
    if not isinstance(data, dict):
        raise ConfigError([f"{file}: the top level must be a mapping of keys (bundle:, source:, ...), got {type(data).__name__}"])
    try:
        config = DeviceConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(file, exc, data, lines)) from None
    return LoadedConfig(config.resolve_paths(file.resolve().parent), file, lines)


def _format_errors(file: Path, exc: ValidationError, data: Any, lines: dict[tuple[Any, ...], int]) -> list[str]:
    out: list[tuple[int, str]] = []
    for err in exc.errors():
        raw_loc = tuple(err["loc"])
        loc = _data_loc(raw_loc, data, keep_last=err["type"] == "missing")
        key = ".".join(str(p) for p in loc)
        line = _line_for(lines, loc)
        where = f"{file}:{line}" if line else str(file)
        etype = err["type"]
        if etype == "extra_forbidden":
            valid = _valid_keys(DeviceConfig, raw_loc[:-1])
            msg = "unknown key" + _suggest(str(raw_loc[-1]), valid)
        elif etype == "missing":
            msg = "required key is missing"
        elif etype == "union_tag_invalid":
            tag = str(err.get("ctx", {}).get("tag", ""))
            key = f"{key}.type" if key else "type"
            msg = f"{tag!r} is not a source type" + _suggest(tag, list(SOURCE_TYPES))
        elif etype == "union_tag_not_found":
            key = f"{key}.type" if key else "type"
            msg = f"required key is missing: one of {', '.join(SOURCE_TYPES)}"
        else:
            text = str(err["msg"]).removeprefix("Value error, ")
            msg = f"{text} (got {_short(err.get('input'))})" if _is_leaf(err.get("input")) else text
        out.append((line or 0, f"{where}: {key or '(top level)'}: {msg}"))
    return [text for _line, text in sorted(out, key=lambda item: item[0])]


def _is_leaf(value: Any) -> bool:
    return not isinstance(value, (dict, list))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _suggest(word: str, valid: Optional[Sequence[str]]) -> str:
    if not valid:
        return ""
    close = difflib.get_close_matches(word, valid, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f"; valid keys here: {', '.join(valid)}"


def _data_loc(raw_loc: tuple[Any, ...], data: Any, keep_last: bool) -> tuple[Any, ...]:
    """Pydantic's error location minus the parts that are not keys in the file (union tags).

    ``keep_last``: the last part names a key that is missing from the file, so it is kept."""
    out: list[Any] = []
    node = data
    for i, part in enumerate(raw_loc):
        last = i == len(raw_loc) - 1
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif last and keep_last:
            out.append(part)
        # else: a union tag or validator name pydantic put in the location: not in the file
    return tuple(out)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """BaseModel classes inside an annotation (Optional, Union, Annotated, list)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out += _models_in(arg)
    return out


def _valid_keys(model: type[BaseModel], raw_loc: Iterable[Any]) -> Optional[list[str]]:
    """The keys allowed at a raw pydantic location (which includes union tags)."""
    parts = list(raw_loc)
    i = 0
    while i < len(parts):
        part = parts[i]
        if isinstance(part, int):
            i += 1
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        candidates = _models_in(field.annotation)
        if not candidates:
            return None
        if len(candidates) > 1:  # a discriminated union: the next part is the tag
            tag = parts[i + 1] if i + 1 < len(parts) else None
            by_tag = {typing.get_args(m.model_fields["type"].annotation)[0]: m for m in candidates if "type" in m.model_fields}
            if tag not in by_tag:
                return None
            model = by_tag[tag]
            i += 2
            continue
        model = candidates[0]
        i += 1
    return list(model.model_fields)


def _key_lines(node: Any, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Key path -> 1-based line of that key in the YAML text."""
    out: dict[tuple[Any, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[path + (key,)] = key_node.start_mark.line + 1
            out.update(_key_lines(value_node, path + (key,)))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[path + (i,)] = item.start_mark.line + 1
            out.update(_key_lines(item, path + (i,)))
    return out


def _line_for(lines: dict[tuple[Any, ...], int], loc: Sequence[Any]) -> Optional[int]:
    """Line of the deepest part of ``loc`` found in the file (a missing key points at its parent)."""
    loc = tuple(loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None


# ====================================================================== checks on the target machine


def check_files(loaded: LoadedConfig) -> tuple[list[str], list[str]]:
    """What the target machine must have: returns (errors, warnings), one line each naming file and key.

    Errors: the bundle is missing or unreadable, its variant does not exist or its file is missing,
    the source does not fit the model's channels, unknown_label cannot be published, a recording,
    TLS file or password file is missing. Warnings: a serial port or I2C bus that is absent now
    (USB devices come and go; the daemon waits for them).
    """
    from edge_har.core.bundle import Bundle, BundleError  # light: no interpreter is loaded

    cfg = loaded.config
    errors: list[str] = []
    warnings: list[str] = []
    bundle = None
    if not Path(cfg.bundle).exists():
        errors.append(f"{loaded.where('bundle')}: {cfg.bundle} does not exist")
    else:
        try:
            bundle = Bundle.load(cfg.bundle)
        except BundleError as exc:
            errors.append(f"{loaded.where('bundle')}: {exc}")
    if bundle is not None:
        camera = isinstance(cfg.source, CameraSourceConfig)
        if bundle.kind == "video" and not camera:
            errors.append(f"{loaded.where('source.type')}: {cfg.bundle} is a video bundle; it needs source type camera")
        elif bundle.kind != "video" and camera:
            errors.append(f"{loaded.where('bundle')}: source type camera needs a video bundle; {cfg.bundle} is a {bundle.kind} bundle")
        try:
            variant = bundle.variant(cfg.variant)
            for _key, file, _size, _sha in variant.files():
                if not file.is_file():
                    errors.append(f"{loaded.where('variant' if cfg.variant else 'bundle')}: model file {file} does not exist")
        except BundleError as exc:
            errors.append(f"{loaded.where('variant')}: {exc}")
        n = bundle.preprocessing.n_channels
        errors += [f"{loaded.where(k)}: {m}" for k, m in source_channel_problems(cfg, n)]
        unknown = cfg.smoothing.unknown_label
        if unknown != UNKNOWN_LABEL and unknown not in bundle.labels:
            errors.append(
                f"{loaded.where('smoothing.unknown_label')}: {unknown!r} must be '{UNKNOWN_LABEL}' or one of the "
                f"model's labels ({', '.join(bundle.labels)}); subscribers rely on it"
            )
    source = cfg.source
    if isinstance(source, ReplaySourceConfig):
        want_dir = source.format == "folder"
        if not source.path.exists():
            errors.append(f"{loaded.where('source.path')}: {source.path} does not exist")
        elif want_dir and not source.path.is_dir():
            errors.append(f"{loaded.where('source.path')}: {source.path} is not a folder (format folder)")
        elif not want_dir and not source.path.is_file():
            errors.append(f"{loaded.where('source.path')}: {source.path} is not a file (format {source.format})")
    elif isinstance(source, SerialSourceConfig):
        if not Path(source.port).exists():
            warnings.append(f"{loaded.where('source.port')}: {source.port} does not exist now; the daemon will wait for it")
    elif isinstance(source, I2cImuSourceConfig):
        dev = Path(f"/dev/i2c-{source.bus}")
        if not dev.exists():
            warnings.append(
                f"{loaded.where('source.bus')}: {dev} does not exist; enable I2C (raspi-config nonint do_i2c 0) and reboot"
            )
    elif isinstance(source, CameraSourceConfig):
        kind = source.target_kind()
        node = Path(str(source.device)) if kind != "index" else Path(f"/dev/video{int(source.device)}")
        if kind == "file" and not node.is_file():
            errors.append(f"{loaded.where('source.device')}: video file {node} does not exist")
        elif kind in ("index", "v4l2") and not node.exists():
            warnings.append(f"{loaded.where('source.device')}: {node} does not exist now; the daemon will wait for the camera")
    errors += [f"{loaded.where(_mqtt_key(line))}: {line.split(': ', 1)[1]}" for line in cfg.mqtt.missing_files()]
    if isinstance(source, MqttSourceConfig) and source.broker is not None:
        errors += [
            f"{loaded.where('source.broker.' + _mqtt_key(line)[5:])}: {line.split(': ', 1)[1]}"
            for line in source.broker.missing_files()
        ]
    return errors, warnings


def _mqtt_key(line: str) -> str:
    return line.split(":", 1)[0]


def source_channel_problems(cfg: DeviceConfig, n_channels: int) -> list[tuple[str, str]]:
    """(key, message) for source settings that do not give ``n_channels`` values per sample."""
    source = cfg.source
    out: list[tuple[str, str]] = []
    for key in ("scale", "offset"):
        value = getattr(source, key, None)  # a camera source has no value scaling
        if value is not None and len(value) not in (1, n_channels):
            out.append((f"source.{key}", f"has {len(value)} values; the model has {n_channels} channels (give 1 or {n_channels})"))
    counted: Optional[tuple[str, int]] = None
    if isinstance(source, SerialSourceConfig) and source.columns is not None:
        counted = ("source.columns", len(source.columns))
    elif isinstance(source, MqttSourceConfig) and source.fields is not None:
        counted = ("source.fields", len(source.fields))
    elif isinstance(source, I2cImuSourceConfig):
        counted = ("source.channels", len(source.channels))
    elif isinstance(source, ReplaySourceConfig) and source.channel_cols is not None:
        counted = ("source.channel_cols", len(source.channel_cols))
    if counted and counted[1] != n_channels:
        out.append((counted[0], f"lists {counted[1]} channels; the model takes {n_channels}"))
    return out
