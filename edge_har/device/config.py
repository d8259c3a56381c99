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

import difflib
import socket
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Iterable, Literal, Optional, Sequence, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo

from edge_har.core.errors import EdgeHarError
from edge_har.core.events import K_MAX, REFRACTORY_MAX_S
from edge_har.device.capture import CaptureConfig
from edge_har.device.sources import registry as source_registry

# The built-in sources' config models, re-exported for existing imports. Each is owned by its
# source plugin module; a new source is registered in edge_har.device.sources.registry, not here.
from edge_har.device.sources.camera import CameraSourceConfig
from edge_har.device.sources.config_base import ReconnectConfig, SourceConfigBase, resolve_mqtt_paths, resolve_path
from edge_har.device.sources.i2c_imu import ACCEL_CHANNELS, GYRO_CHANNELS, I2cImuSourceConfig, ImuChannel
from edge_har.device.sources.mqtt_input import MqttSourceConfig
from edge_har.device.sources.replay import ReplaySourceConfig
from edge_har.device.sources.serial_source import SerialSourceConfig
from edge_har.device.trust import TrustConfig, trust_problems
from edge_har.device.update_config import UpdateConfig
from edge_har.device.video_config import VideoRuntimeConfig
from edge_har.mqtt.config import CREDENTIAL_KEYS, MqttConfig, security_warnings

__all__ = [
    "ACCEL_CHANNELS",
    "GYRO_CHANNELS",
    "AutoVariantConfig",
    "CameraSourceConfig",
    "CaptureConfig",
    "ConfigError",
    "DeviceConfig",
    "I2cImuSourceConfig",
    "ImuChannel",
    "InterpreterConfig",
    "LoggingConfig",
    "MqttSourceConfig",
    "QueuesConfig",
    "ReconnectConfig",
    "ReplaySourceConfig",
    "SerialSourceConfig",
    "SmoothingConfig",
    "SourceConfig",
    "SourceConfigBase",
    "check_files",
    "load_config",
    "source_channel_problems",
    "source_types",
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


class EventRuleConfig(_Model):
    """One event class's rule (``events: {fall: {...}}``): see :mod:`edge_har.core.events`."""

    threshold: float = Field(0.5, gt=0, le=1, description="p(class) at or above this fires the rule ...")
    k: int = Field(1, ge=1, le=K_MAX, description="... for this many consecutive windows.")
    refractory_s: float = Field(
        30.0, ge=0, le=REFRACTORY_MAX_S, description="After an event, the same class stays quiet this many seconds."
    )


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
            backend=self.backend,
            num_threads=self.num_threads,
            delegate=self.delegate,
            delegate_options=dict(self.delegate_options),
            verify_sha256=self.verify_sha256,
        )


def source_types() -> dict[str, type[SourceConfigBase]]:
    """``type`` key -> config model of every registered source (error messages list them in this order)."""
    return {key: plugin.config for key, plugin in source_registry.plugins().items()}


def _source_union() -> Any:
    """The discriminated union on ``type`` over the registered sources' config models."""
    models = tuple(source_types().values())
    return Annotated[Union[models], Field(discriminator="type")]


if TYPE_CHECKING:
    SourceConfig = SourceConfigBase  # what type checkers see; pydantic sees the registry's union
else:
    SourceConfig = _source_union()
SOURCE_TYPES: dict[str, type[BaseModel]] = dict(source_types())  # a snapshot kept for existing imports


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
        le=10_000,
        description=(
            "Windows waiting for inference (1..10000). When inference falls behind a live source, the oldest "
            "waiting window is dropped (counted in stats) so predictions stay current."
        ),
    )


class AutoVariantConfig(_Model):
    """``variant: auto``: the time budget of the measurement and where its result is cached."""

    budget_s: float = Field(
        1.0,
        ge=0.05,
        le=60.0,
        description=(
            "Seconds spent timing the candidate variants at start, loading included (each still gets at least "
            "5 timed windows)."
        ),
    )
    cache: bool = Field(
        True,
        description="Keep the choice on disk so that a restart on the same bundle, runtime and CPU does not measure.",
    )
    cache_dir: Optional[Path] = Field(
        None,
        description=(
            "Folder of the cache file (variant-choice.json). Default: $CACHE_DIRECTORY or $STATE_DIRECTORY under "
            "systemd (/var/lib/edge-har with the shipped unit), else $XDG_CACHE_HOME/edge-har or ~/.cache/edge-har."
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
        None,
        description=(
            "Bundle variant to run (float32, dynamic_range, int8, ...), or 'auto': time every variant that passed "
            "the bundle's accuracy gate on this device at start (about a second, cached; see auto_variant) and run "
            "the fastest. Default: the bundle's default_variant."
        ),
    )
    auto_variant: AutoVariantConfig = Field(
        default_factory=AutoVariantConfig, description="How 'variant: auto' measures and caches its choice."
    )
    interpreter: InterpreterConfig = Field(default_factory=InterpreterConfig, description="TFLite runtime settings.")
    source: SourceConfig = Field(
        description="Where samples come from; `type` picks replay, serial, mqtt, i2c_imu or camera (video bundles)."
    )
    smoothing: SmoothingConfig = Field(
        default_factory=SmoothingConfig, description="Smoothing of the prediction stream."
    )
    mqtt: MqttConfig = Field(
        default_factory=MqttConfig, description="Broker and topics the predictions are published to."
    )
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logging.")
    queues: QueuesConfig = Field(default_factory=QueuesConfig, description="Bounded queues between the threads.")
    video: VideoRuntimeConfig = Field(
        default_factory=VideoRuntimeConfig,
        description="How a video bundle is streamed (camera source); ignored for sensor bundles.",
    )
    events: Optional[dict[str, EventRuleConfig]] = Field(
        None,
        description=(
            "Classes that are events (a fall): each published once on <prefix>/<id>/event when its rule fires, "
            "and a Home Assistant event entity. Replaces the bundle's own events section; absent: the bundle's."
        ),
    )
    trust: Optional[TrustConfig] = Field(
        None,
        description=(
            "Which signed bundles this device runs: the public keys it trusts and whether a signature is required. "
            "Absent: a bundle's signature is not checked."
        ),
    )
    update: Optional[UpdateConfig] = Field(
        None,
        description=(
            "Take new bundles while running: listen on <prefix>/<id>/update/set, download from serve, check "
            "(sha256, trust, self-test, fit), swap between two windows, keep the one before for a rollback. "
            "Absent: the bundle changes only by editing the config."
        ),
    )
    capture: Optional[CaptureConfig] = Field(
        None,
        description=(
            "Keep the windows the model was unsure of, and those corrected on <prefix>/<id>/label/correct, as "
            "recordings (sensor bundles only). Absent: nothing is captured."
        ),
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

    def resolve_paths(self, base: Path) -> DeviceConfig:
        """A copy whose relative paths are taken relative to ``base`` (the config file's folder)."""

        def fix(p: Optional[Path]) -> Optional[Path]:
            return resolve_path(p, base)

        def fix_mqtt(m: MqttConfig) -> MqttConfig:
            return resolve_mqtt_paths(m, base)

        source = self.source.resolve_paths(base)
        auto = self.auto_variant.model_copy(update={"cache_dir": fix(self.auto_variant.cache_dir)})
        capture = self.capture.resolve_paths(base) if self.capture is not None else None
        trust = self.trust.resolve_paths(base) if self.trust is not None else None
        update = self.update.resolve_paths(base) if self.update is not None else None
        return self.model_copy(
            update={
                "bundle": fix(self.bundle),
                "trust": trust,
                "update": update,
                "source": source,
                "mqtt": fix_mqtt(self.mqtt),
                "auto_variant": auto,
                "capture": capture,
            }
        )

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
    except (ValueError, RecursionError) as exc:
        # A scalar YAML reads but Python cannot build (an integer of more than 4300 digits, a
        # date such as 2024-13-45), or nesting deeper than the parser's stack.
        raise ConfigError([f"{file}: a value in the file cannot be read: {type(exc).__name__}: {exc}"]) from None
    if data is None:
        raise ConfigError([f"{file}: the config file is empty; it needs at least 'bundle' and 'source'"])
    if not isinstance(data, dict):
        raise ConfigError(
            [f"{file}: the top level must be a mapping of keys (bundle:, source:, ...), got {type(data).__name__}"]
        )
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
            msg = f"{tag!r} is not a source type" + _suggest(tag, list(source_types()))
        elif etype == "union_tag_not_found":
            key = f"{key}.type" if key else "type"
            msg = f"required key is missing: one of {', '.join(source_types())}"
        elif etype in _BOUND_ERRORS and _range_text(raw_loc):
            msg = f"must be {_range_text(raw_loc)}"
            if not _is_credential(raw_loc):
                msg += f" (got {_short(err.get('input'))})"
        else:
            text = str(err["msg"]).removeprefix("Value error, ")
            shown = _is_leaf(err.get("input")) and not _is_credential(raw_loc)
            msg = f"{text} (got {_short(err.get('input'))})" if shown else text
        out.append((line or 0, f"{where}: {key or '(top level)'}: {msg}"))
    return [text for _line, text in sorted(out, key=lambda item: item[0])]


_BOUND_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _is_credential(raw_loc: Sequence[Any]) -> bool:
    """True when the error is about a credential key, whose value must never be echoed (see CREDENTIAL_KEYS)."""
    return any(part in CREDENTIAL_KEYS for part in raw_loc)


def _range_text(raw_loc: Sequence[Any]) -> str:
    """``between 0.1 and 86400`` (or ``> 0 and <= 1000``) for the field at a pydantic location; '' if unknown.

    Pydantic's own message names only the bound that was crossed; a user fixing a config wants both."""
    model = _model_at(DeviceConfig, raw_loc[:-1]) if raw_loc else None
    field = model.model_fields.get(str(raw_loc[-1])) if model is not None else None
    if field is None:
        return ""
    bounds: dict[str, Any] = {}
    for item in field.metadata:
        for name in ("ge", "gt", "le", "lt"):
            value = getattr(item, name, None)
            if value is not None:
                bounds[name] = value
    low = ("ge", bounds["ge"]) if "ge" in bounds else ("gt", bounds["gt"]) if "gt" in bounds else None
    high = ("le", bounds["le"]) if "le" in bounds else ("lt", bounds["lt"]) if "lt" in bounds else None
    if low and high and low[0] == "ge" and high[0] == "le":
        return f"between {_num(low[1])} and {_num(high[1])}"
    symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return " and ".join(f"{symbols[b[0]]} {_num(b[1])}" for b in (low, high) if b is not None)


def _num(value: Any) -> str:
    return str(value) if isinstance(value, int) else f"{value:.12g}"


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
        if (
            isinstance(node, dict)
            and part in node
            or isinstance(node, list)
            and isinstance(part, int)
            and 0 <= part < len(node)
        ):
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
    found = _model_at(model, raw_loc)
    return list(found.model_fields) if found is not None else None


def _model_at(model: type[BaseModel], raw_loc: Iterable[Any]) -> Optional[type[BaseModel]]:
    """The model whose fields are the keys at a raw pydantic location (which includes union tags)."""
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
            by_tag = {
                typing.get_args(m.model_fields["type"].annotation)[0]: m for m in candidates if "type" in m.model_fields
            }
            if tag not in by_tag:
                return None
            model = by_tag[tag]
            i += 2
            continue
        model = candidates[0]
        i += 1
    return model


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
    (USB devices come and go; the daemon waits for them); a password file readable by others or a
    password going over plain TCP to another machine (:func:`edge_har.mqtt.config.security_warnings`).
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
    if cfg.capture is not None:
        video = (
            f"source type {cfg.source.type} streams video frames"
            if cfg.source.needs_video_bundle
            else f"{cfg.bundle} is a video bundle"
            if bundle is not None and bundle.kind == "video"
            else None
        )
        if video:
            errors.append(
                f"{loaded.where('capture')}: capture is for sensor bundles only; {video} (remove the capture section)"
            )
        folder = cfg.capture.directory()
        if folder.exists() and not folder.is_dir():
            errors.append(f"{loaded.where('capture.dir' if cfg.capture.dir else 'capture')}: {folder} is not a folder")
    if bundle is not None:
        trust_errors, trust_warnings = trust_problems(
            cfg.trust, bundle.root, cfg.interpreter.verify_sha256, loaded.where
        )
        errors += trust_errors
        warnings += trust_warnings
    if cfg.update is not None:
        folder = cfg.update.directory()
        if folder.exists() and not folder.is_dir():
            errors.append(f"{loaded.where('update.dir' if cfg.update.dir else 'update')}: {folder} is not a folder")
        if cfg.update.password_file is not None and not Path(cfg.update.password_file).is_file():
            errors.append(f"{loaded.where('update.password_file')}: {cfg.update.password_file} does not exist")
    if bundle is not None and cfg.events:
        for label in cfg.events:
            if label not in bundle.labels:
                errors.append(
                    f"{loaded.where(f'events.{label}')}: not one of the bundle's classes ({', '.join(bundle.labels)})"
                )
    if bundle is not None:
        frames = cfg.source.needs_video_bundle
        if bundle.kind == "video" and not frames:
            video_types = " or ".join(k for k, m in source_types().items() if m.needs_video_bundle)
            errors.append(
                f"{loaded.where('source.type')}: {cfg.bundle} is a video bundle; it needs source type {video_types}"
            )
        elif bundle.kind != "video" and frames:
            errors.append(
                f"{loaded.where('bundle')}: source type {cfg.source.type} needs a video bundle; {cfg.bundle} is a {bundle.kind} bundle"
            )
        try:
            # variant auto: every variant may be timed, so every file must be there
            variants = list(bundle.variants.values()) if cfg.variant == "auto" else [bundle.variant(cfg.variant)]
            for variant in variants:
                for _key, file, _size, _sha in variant.files():
                    if not file.is_file():
                        errors.append(
                            f"{loaded.where('variant' if cfg.variant else 'bundle')}: model file {file} does not exist"
                        )
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
    source_errors, source_warnings = cfg.source.check_files(lambda key: loaded.where(f"source.{key}"))
    errors += source_errors
    warnings += source_warnings
    errors += [f"{loaded.where(_mqtt_key(line))}: {line.split(': ', 1)[1]}" for line in cfg.mqtt.missing_files()]
    warnings += [f"{loaded.where('mqtt.' + key)}: {msg}" for key, msg in security_warnings(cfg.mqtt)]
    return errors, warnings


def _mqtt_key(line: str) -> str:
    return line.split(":", 1)[0]


def source_channel_problems(cfg: DeviceConfig, n_channels: int) -> list[tuple[str, str]]:
    """(key, message) for source settings that do not give ``n_channels`` values per sample."""
    source = cfg.source
    out: list[tuple[str, str]] = []
    for key, value in zip(("scale", "offset"), source.value_scaling()):  # a camera source has no value scaling
        if value is not None and len(value) not in (1, n_channels):
            out.append(
                (
                    f"source.{key}",
                    f"has {len(value)} values; the model has {n_channels} channels (give 1 or {n_channels})",
                )
            )
    counted = source.channel_count()
    if counted and counted[1] != n_channels:
        out.append((f"source.{counted[0]}", f"lists {counted[1]} channels; the model takes {n_channels}"))
    return out


def _rebuild_source_union() -> None:
    """Rebuild ``DeviceConfig.source`` after a source is (un)registered, so load_config accepts it."""
    global SourceConfig
    SourceConfig = _source_union()
    old = DeviceConfig.model_fields["source"]
    DeviceConfig.model_fields["source"] = FieldInfo.from_annotation(SourceConfig)
    DeviceConfig.model_fields["source"].description = old.description
    DeviceConfig.model_rebuild(force=True)


source_registry.on_change(_rebuild_source_union)
