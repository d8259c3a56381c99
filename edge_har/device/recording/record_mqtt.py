"""The MQTT link of ``edge-har record``: label/set and record/set in; states, signal and errors out.

Topics (``<p>/<id>/``, see the recording contract): ``label/set`` and ``record/set`` are handed to
a :class:`~edge_har.device.recording.label_input.LabelControl`; ``label/state`` and
``record/state`` are retained and re-sent on every connect (a broker without persistence forgets
them); ``record/signal`` is QoS 0 and dropped while the link is down (it is a live view, not
data); ``label/error`` answers a refused label. The Last Will is a ``record/state`` saying
``recording: false`` with ``error: "offline"``. A retained label/set or record/set is ignored:
it is a stale request replayed by the broker on every connect, and would start a session after
each reconnect. The client id is the daemon's with ``-record`` appended, so both run at once.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Optional

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge_har.device.recording import ha_discovery
from edge_har.device.recording.label_input import LabelControl
from edge_har.mqtt import discovery
from edge_har.mqtt.client import EdgeHarClient, describe_broker, make_client, topics
from edge_har.mqtt.config import MqttConfig

__all__ = ["RecordLink", "RecordTopics"]

log = logging.getLogger(__name__)


class RecordTopics:
    """The recording topics of one device."""

    def __init__(self, cfg: MqttConfig, device_id: str) -> None:
        base = topics(cfg, device_id).base  # validates the id as one topic level
        self.base = base
        self.label_set = f"{base}/label/set"
        self.label_state = f"{base}/label/state"
        self.label_error = f"{base}/label/error"
        self.record_set = f"{base}/record/set"
        self.record_state = f"{base}/record/state"
        self.record_signal = f"{base}/record/signal"


def _encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


class RecordLink:
    """Connects in the background and keeps retrying; never raises for a broker that is down."""

    def __init__(
        self,
        cfg: MqttConfig,
        device_id: str,
        control: LabelControl,
        will_state: dict[str, Any],
        *,
        on_link_change: Optional[Callable[[bool], None]] = None,
    ) -> None:
        self.cfg = cfg
        self.device_id = device_id
        self.control = control
        self.topics = RecordTopics(cfg, device_id)
        self.client_id = f"{cfg.client_id_for(device_id)}-record"
        self.will_state = dict(will_state, recording=False, session_id=None, error=ha_discovery.OFFLINE_ERROR)
        self.on_link_change = on_link_change
        self._broker = describe_broker(cfg)
        self._lock = threading.Lock()
        self._connected = False
        self._client: Optional[EdgeHarClient] = None
        self._last_state: Optional[bytes] = None
        self._last_label: bytes = b"none"
        self._warned_connect = False
        self._ignored_retained: set[str] = set()

    # ---------------------------------------------------------------- life cycle

    def start(self) -> None:
        client = make_client(self.cfg, self.client_id)
        client.will_set(self.topics.record_state, _encode(self.will_state), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.message_callback_add(self.topics.label_set, self._on_label)
        client.message_callback_add(self.topics.record_set, self._on_record)
        if self.cfg.home_assistant.enabled:
            client.message_callback_add(discovery.birth_topic(self.cfg.home_assistant), self._on_ha_status)
        client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive)
        self._client = client
        log.info("MQTT: recording controls on %s/{label,record}/set via %s", self.topics.base, self._broker)
        client.loop_start()

    def stop(self, final_state: Optional[dict[str, Any]] = None, timeout: float = 3.0) -> None:
        """Publish ``final_state`` (retained) when connected, wait for it briefly, disconnect."""
        client = self._client
        if client is None:
            return
        if final_state is not None and self.connected:
            info = client.publish(self.topics.record_state, _encode(final_state), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):  # the link went down meanwhile: the Last Will says offline
                pass
        client.disconnect()
        client.loop_stop()
        self._client = None

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    # ---------------------------------------------------------------- publishing (any thread)

    def publish_state(self, state: dict[str, Any]) -> None:
        data = _encode(state)
        with self._lock:
            self._last_state = data
        self._publish(self.topics.record_state, data, qos=1, retain=True)

    def publish_label_state(self, label: Optional[str]) -> None:
        data = (label or "none").encode()
        with self._lock:
            self._last_label = data
        self._publish(self.topics.label_state, data, qos=1, retain=True)

    def publish_signal(self, payload: dict[str, Any]) -> None:
        if self.connected:
            self._publish(self.topics.record_signal, _encode(payload), qos=0, retain=False)

    def publish_error(self, payload: dict[str, Any]) -> None:
        self._publish(self.topics.label_error, _encode(payload), qos=1, retain=False)

    def _publish(self, topic: str, data: bytes, qos: int, retain: bool) -> None:
        client = self._client
        if client is None or not self.connected:
            return  # retained states are re-sent on connect; the rest is live-only
        client.publish(topic, data, qos=qos, retain=retain)

    # ---------------------------------------------------------------- paho callbacks (network thread)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any) -> None:
        if reason_code.is_failure:
            log.error("MQTT: %s refused the connection: %s", self._broker, reason_code)
            return
        client.subscribe([(self.topics.label_set, 1), (self.topics.record_set, 1)])
        with self._lock:
            self._connected = True
            state, label = self._last_state, self._last_label
        if state is not None:
            client.publish(self.topics.record_state, state, qos=1, retain=True)
        client.publish(self.topics.label_state, label, qos=1, retain=True)
        if self.cfg.home_assistant.enabled:
            client.subscribe(discovery.birth_topic(self.cfg.home_assistant), qos=1)
            self._publish_discovery(client)
        log.info("MQTT: connected to %s as %s", self._broker, self.client_id)
        self._warned_connect = False
        if self.on_link_change is not None:
            self.on_link_change(True)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        if not self._warned_connect:
            error = getattr(client, "last_connect_error", None)
            log.warning(
                "MQTT: cannot reach %s (%s); recording goes on, retrying every %g..%g s",
                self._broker,
                error or "connection failed",
                self.cfg.reconnect_min_s,
                self.cfg.reconnect_max_s,
            )
            self._warned_connect = True

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        with self._lock:
            was_up, self._connected = self._connected, False
        if was_up and self._client is not None:
            log.warning("MQTT: lost the connection to %s (%s); recording goes on", self._broker, reason_code)
        if was_up and self.on_link_change is not None:
            self.on_link_change(False)

    def _stale(self, message: mqtt.MQTTMessage) -> bool:
        if message.retain:
            if message.topic not in self._ignored_retained:
                self._ignored_retained.add(message.topic)
                log.info("MQTT: ignoring the retained message on %s (a stale request, not a new one)", message.topic)
            return True
        return False

    def _on_label(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if not self._stale(message):
            self.control.on_label(bytes(message.payload))

    def _on_record(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if not self._stale(message):
            self.control.on_record(bytes(message.payload))

    def _on_ha_status(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.payload.strip().lower() == b"online":
            self._publish_discovery(client)

    def _publish_discovery(self, client: Any) -> None:
        ha = self.cfg.home_assistant
        t = self.topics
        select = ha_discovery.label_select_config(
            ha,
            device_id=self.device_id,
            classes=self.control.classes.classes,
            label_set=t.label_set,
            label_state=t.label_state,
            record_state=t.record_state,
        )
        switch = ha_discovery.recording_switch_config(
            ha, device_id=self.device_id, record_set=t.record_set, record_state=t.record_state
        )
        client.publish(ha_discovery.select_topic(ha, self.device_id), _encode(select), qos=1, retain=True)
        client.publish(ha_discovery.switch_topic(ha, self.device_id), _encode(switch), qos=1, retain=True)
