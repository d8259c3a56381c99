"""The ``mqtt:`` section of a device config: broker, auth, TLS, topics, QoS, offline queue.

Pydantic models with ``extra="forbid"`` so a typo in a config is an error naming the key
rather than a setting silently ignored. The password itself never lives in these models:
they hold the *name* of an environment variable or the *path* of a file, and
:meth:`MqttConfig.resolve_password` reads it when the client is built. That keeps the
secret out of ``repr()``, out of logs and out of ``validate-config`` output.

File paths (TLS files, password file) are not checked for existence here, because configs
are validated on workstations where ``/etc/edge-har/...`` does not exist;
:meth:`MqttConfig.missing_files` lists them for the daemon (or ``validate-config --strict``)
to report, and :func:`edge_har.mqtt.client.make_client` fails naming the field.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_har.core.errors import EdgeHarError

__all__ = [
    "CREDENTIAL_KEYS",
    "HomeAssistantConfig",
    "MqttConfig",
    "MqttConfigError",
    "QosConfig",
    "TlsConfig",
    "is_loopback_host",
    "security_warnings",
]

# MQTT topic levels we build from a prefix must not contain wildcards or NUL.
_BAD_TOPIC_CHARS = re.compile(r"[+#\x00]")

# What an environment variable name may look like (POSIX portable names). A value that is not
# one is most likely the password itself, typed into the wrong key: refused without echoing it.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

CREDENTIAL_KEYS = ("password_env", "password_file")
"""Keys whose values are never echoed (logs, validate-config, exceptions): a password typed into the
wrong key would otherwise be printed. Error messages name the key, never its value."""

# Bounds of the timing and size settings: outside them a setting does harm (a stats interval of
# 1e-6 s floods the broker at 100 % CPU; 1e300 s overflows the stats thread's wait), so it is an
# error that names the key and the range.
RECONNECT_S = (0.01, 3600.0)
STATS_INTERVAL_S = (0.1, 86400.0)
# keepalive: at least 1 s (0 turns the dead-link check off on both sides), at most an hour, so a dead
# broker or a half-open link is noticed within 1.5 h at worst (mosquitto's max_keepalive defaults to 65535).
KEEPALIVE_MIN_S, KEEPALIVE_MAX_S = 1, 3600
QUEUE_SIZE_MAX = 200_000  # a queued prediction is ~0.5 kB: 100 MB at the bound (the unit's MemoryMax is 300M)


class MqttConfigError(EdgeHarError, ValueError):
    """A setting that cannot work at run time (missing password variable or file, unreadable TLS file)."""


class TlsConfig(BaseModel):
    """TLS to the broker. With only ``ca_file`` the broker is authenticated; add
    ``cert_file``/``key_file`` for mutual TLS (brokers with ``require_certificate true``)."""

    model_config = ConfigDict(extra="forbid")

    ca_file: Optional[Path] = Field(
        None,
        description=(
            "PEM file of the CA that signed the broker's certificate. Leave empty to trust the "
            "system store (public brokers with a certificate from a public CA)."
        ),
    )
    cert_file: Optional[Path] = Field(
        None, description="PEM client certificate for mutual TLS; may also contain the key."
    )
    key_file: Optional[Path] = Field(
        None, description="PEM private key of cert_file (leave empty when cert_file holds both)."
    )
    insecure: bool = Field(
        False,
        description=(
            "Skip the check that the broker certificate's name matches host. Encryption stays on but "
            "a man in the middle is no longer detected; for lab use with IP-only certificates only. "
            "The daemon logs a warning when set."
        ),
    )
    ciphers: Optional[str] = Field(
        None, description="OpenSSL cipher string to restrict the TLS ciphers (default: Python's defaults)."
    )

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TlsConfig:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError(
                "key_file is set but cert_file is not; mutual TLS needs both (or cert_file alone holding both)"
            )
        return self


class QosConfig(BaseModel):
    """MQTT QoS per topic. QoS 1 (at least once) is what makes the offline queue lossless:
    a prediction leaves the queue only when the broker acknowledged it."""

    model_config = ConfigDict(extra="forbid")

    prediction: int = Field(
        1, ge=0, le=2, description="QoS of prediction messages (1: at least once; subscribers de-duplicate on seq)."
    )
    status: int = Field(1, ge=0, le=2, description="QoS of the retained online/offline status and the Last Will.")
    stats: int = Field(
        0, ge=0, le=2, description="QoS of periodic stats messages (0: a lost one is replaced by the next)."
    )


class HomeAssistantConfig(BaseModel):
    """Home Assistant MQTT discovery: an ``activity`` sensor appears in HA without YAML."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        False, description="Publish a retained Home Assistant discovery config for the activity sensor."
    )
    discovery_prefix: str = Field(
        "homeassistant",
        description=(
            "Home Assistant's discovery prefix (its MQTT integration setting). Discovery is re-sent when HA "
            "publishes 'online' on <discovery_prefix>/status."
        ),
    )
    node_name: Optional[str] = Field(
        None,
        description=(
            "Device name shown in Home Assistant and used as node id in the discovery topic "
            "(default: the device id). Keep it equal to the device's broker username when the broker ACL "
            "allows a device only <discovery_prefix>/sensor/<username>/#."
        ),
    )

    @field_validator("discovery_prefix")
    @classmethod
    def _prefix_is_topic(cls, value: str) -> str:
        return _check_topic_prefix(value)


class MqttConfig(BaseModel):
    """Where and how a device publishes. One instance is built when the config is loaded
    and passed down to the publisher and to the MQTT input source."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", min_length=1, description="Broker host name or IP address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port (1883 plain, 8883 TLS by convention).")
    protocol: Literal["3.1.1", "5"] = Field(
        "3.1.1", description="MQTT protocol version: '3.1.1' (every broker) or '5'."
    )
    client_id: Optional[str] = Field(
        None,
        description=(
            "MQTT client id; must be unique on the broker (a second client with the same id kicks the first off). "
            "Default: edge-har-<device_id>."
        ),
    )
    keepalive: int = Field(
        30,
        ge=KEEPALIVE_MIN_S,
        le=KEEPALIVE_MAX_S,
        description=(
            "Seconds between keepalive pings; the broker declares the device gone (and publishes the Last Will "
            "'offline') after 1.5x this without traffic, and the client gives up on a broker that answers no "
            f"ping within it. {KEEPALIVE_MIN_S}..{KEEPALIVE_MAX_S}: 0 (no keepalive) is refused, because then a "
            "dead or silent broker or a half-open link is never noticed and nothing reconnects."
        ),
    )
    username: Optional[str] = Field(None, description="Username for broker authentication (often the device id).")
    password_env: Optional[str] = Field(
        None,
        repr=False,
        description=(
            "Name of the environment variable holding the password (e.g. set by systemd's EnvironmentFile). "
            "Never the password itself: the value of this key is never printed."
        ),
    )
    password_file: Optional[Path] = Field(
        None,
        repr=False,
        description=(
            "File whose first line is the password (readable by the daemon's user only: a file readable by group "
            "or others is warned about). Its path is never printed."
        ),
    )
    tls: Optional[TlsConfig] = Field(None, description="TLS settings; leave out for plain TCP.")
    qos: QosConfig = Field(default_factory=QosConfig, description="QoS per topic.")
    topic_prefix: str = Field(
        "edge-har",
        description="First topic level(s); topics are <topic_prefix>/<device_id>/prediction|status|stats.",
    )
    queue_size: int = Field(
        1000,
        ge=0,
        le=QUEUE_SIZE_MAX,
        description=(
            "Predictions kept while the broker is unreachable, published in order on reconnect. Beyond this the "
            f"oldest are dropped and counted (dropped_offline in stats). 0 keeps none; at most {QUEUE_SIZE_MAX} "
            "(about 0.5 kB of memory each)."
        ),
    )
    reconnect_min_s: float = Field(
        1.0,
        ge=RECONNECT_S[0],
        le=RECONNECT_S[1],
        description="First reconnect delay in seconds (0.01..3600); doubles after each failure.",
    )
    reconnect_max_s: float = Field(
        60.0, ge=RECONNECT_S[0], le=RECONNECT_S[1], description="Longest reconnect delay in seconds (0.01..3600)."
    )
    stats_interval_s: float = Field(
        30.0,
        ge=STATS_INTERVAL_S[0],
        le=STATS_INTERVAL_S[1],
        description="Seconds between stats messages (0.1..86400).",
    )
    home_assistant: HomeAssistantConfig = Field(
        default_factory=HomeAssistantConfig, description="Home Assistant MQTT discovery."
    )

    # ------------------------------------------------------------------ validation

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_from_yaml(cls, value: Any) -> Any:
        # YAML reads `protocol: 5` as an int and `protocol: 5.0` as a float; accept both spellings.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            text = value.strip().lower().lstrip("v")
            return {"5.0": "5", "mqttv5": "5", "311": "3.1.1", "mqttv311": "3.1.1"}.get(text, text)
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_is_topic(cls, value: str) -> str:
        return _check_topic_prefix(value)

    @field_validator("password_env")
    @classmethod
    def _env_name(cls, value: Optional[str]) -> Optional[str]:
        # The message must not contain the value: it may be the password typed into the wrong key.
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError(
                "must be the NAME of an environment variable (letters, digits and '_', not starting with a digit), "
                "not the password itself; the value given is not shown"
            )
        return value

    @field_validator("client_id")
    @classmethod
    def _client_id_not_empty(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not value.strip():
            raise ValueError("client_id must not be empty; leave it out for the default edge-har-<device_id>")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MqttConfig:
        if self.password_env and self.password_file:
            raise ValueError("set either password_env or password_file, not both")
        if (self.password_env or self.password_file) and not self.username:
            raise ValueError("a password (password_env/password_file) needs a username")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(
                f"reconnect_max_s ({self.reconnect_max_s}) must be >= reconnect_min_s ({self.reconnect_min_s})"
            )
        return self

    # ------------------------------------------------------------------ run time

    def client_id_for(self, device_id: str) -> str:
        """The client id to use: the configured one, else ``edge-har-<device_id>``."""
        return self.client_id or f"edge-har-{device_id}"

    def resolve_password(self) -> Optional[str]:
        """Read the password from its environment variable or file; ``None`` when none is configured.

        Raises MqttConfigError naming the variable or file, never showing the value.
        """
        if self.password_env:
            value = os.environ.get(self.password_env)
            # The variable's name is not printed: it may be the password typed into the wrong key.
            if value is None:
                raise MqttConfigError(
                    "mqtt.password_env: the environment variable named in mqtt.password_env is not set "
                    "(under systemd, set it with EnvironmentFile= or LoadCredential=)"
                )
            if value == "":
                raise MqttConfigError("mqtt.password_env: the environment variable named in mqtt.password_env is empty")
            return value
        if self.password_file:
            # The path is not printed: it may be the password typed into the wrong key.
            named = "mqtt.password_file: the file named in mqtt.password_file"
            try:
                text = _expand(self.password_file).read_text(encoding="utf-8")
            except FileNotFoundError:
                raise MqttConfigError(f"{named} does not exist") from None
            except PermissionError:
                raise MqttConfigError(f"{named} is not readable by this user (uid {os.getuid()})") from None
            except UnicodeDecodeError:
                raise MqttConfigError(f"{named} is not UTF-8 text") from None
            except (OSError, ValueError):  # a folder, a name too long, a NUL byte: no path, no errno text
                raise MqttConfigError(f"{named} cannot be read as a file") from None
            lines = text.splitlines()
            password = lines[0].rstrip("\r") if lines else ""
            if not password:
                raise MqttConfigError(f"{named} is empty (the password is its first line)")
            return password
        return None

    def missing_files(self) -> list[str]:
        """Configured files that do not exist, as ``"mqtt.<key>: <path> does not exist"`` lines.

        The password file's path is not shown (it may be the password in the wrong key)."""
        problems = []
        if self.password_file is not None and not _is_file(self.password_file):
            problems.append("mqtt.password_file: the file named in mqtt.password_file does not exist")
        candidates: list[tuple[str, Optional[Path]]] = []
        if self.tls is not None:
            candidates += [
                ("tls.ca_file", self.tls.ca_file),
                ("tls.cert_file", self.tls.cert_file),
                ("tls.key_file", self.tls.key_file),
            ]
        for key, path in candidates:
            if path is not None and not _is_file(path):
                problems.append(f"mqtt.{key}: {path} does not exist")
        return problems


def _expand(path: Path) -> Path:
    """``~`` expanded where it can be (``~nosuchuser`` stays as written instead of raising)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        return Path(path)


def _is_file(path: Path) -> bool:
    try:
        return _expand(path).is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte
        return False


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1): traffic that never leaves the machine.

    Names are not resolved (no DNS lookup while validating a config): any other name counts as remote."""
    name = host.strip().rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def security_warnings(cfg: MqttConfig) -> list[tuple[str, str]]:
    """(key under the section, message) for credentials at risk; none of them shows a credential.

    * a password file readable by group or others (``mode & 0o077``): other local users can read it;
    * a password sent over plain TCP (no ``tls``) to a broker that is not on this machine: anyone on the
      network path can read it.
    Warnings, not errors: a lab network may accept both knowingly.
    """
    out: list[tuple[str, str]] = []
    if cfg.password_file is not None:
        try:
            mode = _expand(cfg.password_file).stat().st_mode
        except (OSError, ValueError):
            mode = None  # missing: missing_files() reports it
        if mode is not None and stat.S_ISREG(mode) and mode & 0o077:
            out.append(
                (
                    "password_file",
                    f"the file named in password_file is readable by group or others (mode {stat.S_IMODE(mode):04o}); "
                    "make it readable by the daemon's user only (chmod 600)",
                )
            )
    if (cfg.password_env or cfg.password_file) and cfg.tls is None and not is_loopback_host(cfg.host):
        out.append(
            (
                "host",
                f"the password goes to {cfg.host} over plain TCP (no tls section): anyone on the network path can "
                "read it; add tls (port 8883) or use a broker on this machine",
            )
        )
    return out


def _check_topic_prefix(value: str) -> str:
    if not value or value.startswith("/") or value.endswith("/") or "//" in value:
        raise ValueError(f"{value!r} is not a usable topic prefix (no empty levels, no leading or trailing '/')")
    if _BAD_TOPIC_CHARS.search(value):
        raise ValueError(f"{value!r} must not contain the MQTT wildcards '+' or '#'")
    return value
