"""Building a configured paho client and naming the topics: shared by the publisher, the
MQTT input source and ``edge-har subscribe`` so all three speak to a broker the same way."""

from __future__ import annotations

import logging
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_har.mqtt.config import MqttConfig, MqttConfigError

__all__ = ["MAX_SESSION_EXPIRY_S", "EdgeHarClient", "Topics", "describe_broker", "make_client", "topics"]

log = logging.getLogger("edge_har.mqtt")

# The longest session a client asks to be kept: MQTT 5 caps the interval at 2**32 - 1 s ("never expires");
# a month bounds what a broker holds for a consumer that is gone for good.
MAX_SESSION_EXPIRY_S = 30 * 86400

# A device id becomes one topic level: no separators or wildcards.
_DEVICE_ID = re.compile(r"^[^/+#\x00\s]+$")


@dataclass(frozen=True)
class Topics:
    """The topics of one device, ``<prefix>/<device_id>/...``."""

    base: str
    prediction: str
    status: str
    stats: str
    event: str = ""  # <base>/event: event classes' detections (QoS 1, not retained)


def topics(cfg: MqttConfig, device_id: str) -> Topics:
    """Topics for ``device_id`` under ``cfg.topic_prefix``; raises ValueError for an id that
    cannot be one topic level (contains '/', '+', '#' or whitespace)."""
    if not device_id or not _DEVICE_ID.match(device_id):
        raise ValueError(f"device_id {device_id!r} cannot be an MQTT topic level (no '/', '+', '#', spaces; not empty)")
    base = f"{cfg.topic_prefix}/{device_id}"
    return Topics(
        base=base,
        prediction=f"{base}/prediction",
        status=f"{base}/status",
        stats=f"{base}/stats",
        event=f"{base}/event",
    )


class EdgeHarClient(mqtt.Client):
    """A paho Client that remembers why the last connection attempt failed.

    paho's ``on_connect_fail`` callback does not say why (refused TCP, DNS, TLS verification), and
    "cannot connect" without a reason is what makes broker problems slow to diagnose on a device.
    """

    last_connect_error: Optional[BaseException] = None
    # Seconds the broker keeps this client's session (subscriptions and QoS 1 messages) while it is away;
    # None: a clean session. Set by make_client; applied at every connect, reconnects included.
    session_expiry_s: Optional[int] = None
    # paho's last error-level log line, e.g. "failed to receive on socket: [SSL: ...]": the only
    # place paho says why a connection closed before CONNACK (TLS 1.3 client-cert rejection).
    last_paho_error: Optional[str] = None
    # MQTT 5 Receive Maximum: how many QoS 1/2 messages the broker may send before this client acknowledges
    # them. None: the protocol's default (the broker's own limit, mosquitto's max_inflight_messages).
    receive_maximum: Optional[int] = None

    def connect_async(self, host: str, port: int = 1883, keepalive: int = 60, *args: Any, **kwargs: Any) -> None:
        """paho's connect_async with this client's MQTT 5 CONNECT properties, on the first connect as on every
        reconnect: a persistent session asks to resume (``clean_start=False``) with a Session Expiry Interval;
        ``receive_maximum`` bounds the messages the broker sends ahead of this client's acknowledgements."""
        if self.protocol == mqtt.MQTTv5 and (self.session_expiry_s is not None or self.receive_maximum is not None):
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            properties = Properties(PacketTypes.CONNECT)
            if self.session_expiry_s is not None:
                properties.SessionExpiryInterval = self.session_expiry_s
                kwargs["clean_start"] = False
            if self.receive_maximum is not None:
                properties.ReceiveMaximum = self.receive_maximum
            kwargs["properties"] = properties
        super().connect_async(host, port, keepalive, *args, **kwargs)

    def reconnect(self) -> mqtt.MQTTErrorCode:  # noqa: D102 - paho's docstring applies
        self.last_paho_error = None
        try:
            result = super().reconnect()
        except OSError as exc:
            self.last_connect_error = exc
            raise
        self.last_connect_error = None
        return result


class _PahoLog(logging.LoggerAdapter):  # type: ignore[type-arg,unused-ignore]
    """paho's logger: everything at DEBUG, except exceptions caught in our callbacks (a bug: ERROR).

    paho logs a dropped socket at ERROR on every reconnect attempt; during a long outage that
    would be a line per attempt. The publisher reports the problem once instead, and this keeps
    paho's wording (``client.last_paho_error``) for that report.
    """

    def __init__(self, client: EdgeHarClient) -> None:
        super().__init__(logging.getLogger("edge_har.mqtt.paho"), {})
        self.client = client

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        if level >= logging.ERROR:
            text = str(msg) % args if args else str(msg)
            if text.startswith("Caught exception"):
                self.logger.error("%s", text)
                return
            self.client.last_paho_error = text
        self.logger.log(logging.DEBUG, msg, *args)


def describe_broker(cfg: MqttConfig) -> str:
    """``host:port (MQTT 3.1.1, TLS)``: how log lines name the broker."""
    return f"{cfg.host}:{cfg.port} (MQTT {cfg.protocol}{', TLS' if cfg.tls else ''})"


def start_client(cfg: MqttConfig, client_id: str, **callbacks: Any) -> EdgeHarClient:
    """A :func:`make_client` client with ``callbacks`` set (``on_connect=...``, ``on_message=...``), connecting
    and looping in paho's thread: the small listeners beside the main links (corrections, updates,
    rollouts, the Record page's relay) subscribe in their ``on_connect``, so a reconnect resubscribes."""
    client = make_client(cfg, client_id)
    for name, callback in callbacks.items():
        setattr(client, name, callback)
    client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive)
    client.loop_start()
    return client


def stop_client(client: Optional[EdgeHarClient]) -> None:
    """Disconnect and end the loop of a :func:`start_client` client; None (never started) is nothing to do."""
    if client is not None:
        client.disconnect()
        client.loop_stop()


def make_client(
    cfg: MqttConfig,
    client_id: str,
    *,
    session_expiry_s: Optional[int] = None,
    manual_ack: bool = False,
    receive_maximum: Optional[int] = None,
) -> EdgeHarClient:
    """A paho client (callback API 2) with protocol, credentials, TLS and reconnect backoff applied.

    It is not connected: callers set their callbacks and Last Will, then ``connect_async`` and
    ``loop_start``. Raises :class:`MqttConfigError` naming the setting when the password or a TLS
    file cannot be read, which is a configuration problem, not a broker outage.

    ``session_expiry_s`` asks for a persistent session, so the broker keeps the subscriptions and
    queues QoS 1 messages while this client is away (within its ``max_queued_messages``): MQTT 5
    resumes it (``clean_start=False``) and the broker drops it that many seconds after a disconnect;
    MQTT 3.1.1 has ``clean_session=False``, kept until the broker's ``persistent_client_expiration``.
    It needs a fixed ``client_id``: the session belongs to the id. None (or 0) is a clean session.

    ``manual_ack`` leaves the acknowledgement of each QoS 1 message to the caller (``client.ack(mid, 1)``,
    safe from any thread while ``loop_start`` runs): a consumer that acknowledges only what it has stored
    loses nothing the broker handed over when it dies. The broker stops sending once its in-flight window
    is unacknowledged: under MQTT 5 that window is ``receive_maximum`` (1..65535, sent in CONNECT; None:
    the broker's own limit); under MQTT 3.1.1 it is the broker's (mosquitto: ``max_inflight_messages``).
    """
    if session_expiry_s is not None and not 0 <= session_expiry_s <= MAX_SESSION_EXPIRY_S:
        raise ValueError(f"session_expiry_s: {session_expiry_s} is not within 0..{MAX_SESSION_EXPIRY_S} seconds")
    if receive_maximum is not None and not 1 <= receive_maximum <= 65535:
        raise ValueError(f"receive_maximum: {receive_maximum} is not within 1..65535 messages")
    persistent = bool(session_expiry_s)
    if cfg.protocol == "5":
        client = EdgeHarClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
    else:
        client = EdgeHarClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=not persistent,
            manual_ack=manual_ack,
        )
    client.session_expiry_s = session_expiry_s if persistent else None
    client.receive_maximum = receive_maximum if cfg.protocol == "5" else None
    # paho's log goes under our logger at DEBUG (see _PahoLog); our own callers log the problems
    # users must see, once, with the broker named.
    client.enable_logger(_PahoLog(client))  # type: ignore[arg-type]
    # An exception in a callback must not end paho's network thread (and with it all reconnects).
    client.suppress_exceptions = True

    if cfg.username:
        client.username_pw_set(cfg.username, cfg.resolve_password())

    if cfg.tls is not None:
        _apply_tls(client, cfg)

    client.reconnect_delay_set(min_delay=cfg.reconnect_min_s, max_delay=cfg.reconnect_max_s)  # type: ignore[arg-type]
    return client


def _apply_tls(client: mqtt.Client, cfg: MqttConfig) -> None:
    tls = cfg.tls
    assert tls is not None
    for key, path in (("ca_file", tls.ca_file), ("cert_file", tls.cert_file), ("key_file", tls.key_file)):
        if path is not None and not Path(path).expanduser().is_file():
            raise MqttConfigError(f"mqtt.tls.{key}: {path} does not exist")
    try:
        client.tls_set(
            ca_certs=_str(tls.ca_file),
            certfile=_str(tls.cert_file),
            keyfile=_str(tls.key_file),
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
            ciphers=tls.ciphers,
        )
    except ssl.SSLError as exc:
        raise MqttConfigError(
            f"mqtt.tls: cannot load the TLS files (ca_file={tls.ca_file}, cert_file={tls.cert_file}, "
            f"key_file={tls.key_file}): {exc}"
        ) from exc
    if tls.insecure:
        client.tls_insecure_set(True)
        log.warning(
            "mqtt.tls.insecure is set: the broker certificate's host name is NOT checked against %s; "
            "use this only in a lab",
            cfg.host,
        )


def _str(path: Optional[Path]) -> Optional[str]:
    return None if path is None else str(Path(path).expanduser())
