"""The recording side of the broker for ``edge-har serve``: devices' record state and live signal, and commands.

A small MQTT client of its own, beside the ingest: the ingest's session is persistent and acknowledges
each QoS 1 message only once it is stored, while what the Record page needs is the opposite, the last
retained ``<prefix>/+/record/state`` and a few seconds of the QoS 0 ``<prefix>/+/record/signal``, kept in
memory and lost without harm on a restart. So this client has a clean session and keeps, per device, the
last state and the last :data:`SIGNAL_S` seconds of signal (at most :data:`SIGNAL_SAMPLES` samples), for at
most :data:`MAX_DEVICES` devices (the least recently heard of goes first). It also publishes the commands of
the Record and Label pages (``record/set``, ``label/set``, ``label/correct``).

Anyone who may publish under the prefix can send anything: a payload is parsed within bounds
(:func:`edge_har.mqtt.bounded_json.parse_message`) and held to the contract's shapes, with every string,
list and number bounded; what fails is counted by reason and dropped, never the client's thread.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import OrderedDict, deque
from typing import Any, Optional

from edge_har.mqtt.bounded_json import RejectedMessage, parse_message
from edge_har.web.config import ServeConfig
from edge_har.web.ingest_checks import DEVICE_ID

__all__ = ["PublishFailed", "RecordRelay", "check_signal", "check_state"]

log = logging.getLogger("edge_har.web.record_relay")

MAX_DEVICES = 200  # devices whose state and signal are kept; the least recently heard of is forgotten first
SIGNAL_S = 30.0  # seconds of signal kept per device (behind its newest sample)
SIGNAL_SAMPLES = int(SIGNAL_S * 50)  # at most this many samples per device (30 s at 50 Hz)
MAX_STATE_BYTES = 16 * 1024  # a real state message is a few hundred bytes (100 classes: about 2 kB)
MAX_SIGNAL_BYTES = 64 * 1024  # a quarter second at 25 samples/s of 64 channels is about 20 kB
MAX_SIGNAL_POINTS = 1000  # samples one signal message may hold
MAX_CHANNELS = 64
MAX_CLASSES = 1000
MAX_TEXT = 128  # characters of a session id, label, channel or class name
MAX_ERROR_TEXT = 500
MAX_TS = 1e10  # later than any real clock (the ingest's bound)
PUBLISH_TIMEOUT_S = 5.0  # how long a command waits for the broker's acknowledgement
_BAD_TEXT = re.compile(r"[\x00\ud800-\udfff]")


class PublishFailed(Exception):
    """A command that did not reach the broker; the message says why (no broker, not connected, no ack)."""


# ---------------------------------------------------------------------------------------------- payload checks


def _text(value: Any, field: str, *, limit: int = MAX_TEXT, optional: bool = False) -> Optional[str]:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > limit or _BAD_TEXT.search(value):
        raise RejectedMessage("field", f"{field}: not a string of at most {limit} characters without NUL")
    return value


def _count(value: Any, field: str, optional: bool = False) -> Optional[int]:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RejectedMessage("field", f"{field}: not a whole number >= 0")
    return value


def _names(value: Any, field: str, limit: int) -> list[str]:
    if not isinstance(value, list) or len(value) > limit:
        raise RejectedMessage("field", f"{field}: not a list of at most {limit} names")
    return [str(_text(v, f"{field}[{i}]")) for i, v in enumerate(value)]


def check_state(payload: bytes) -> dict[str, Any]:
    """A ``record/state`` message as the API shows it: the contract's fields, each checked, others dropped.

    Raises :class:`RejectedMessage` (and nothing else) for a payload that is not such a state.
    """
    data = parse_message(payload, max_bytes=MAX_STATE_BYTES, max_depth=4)
    if not isinstance(data, dict):
        raise RejectedMessage("not_json", "record/state: JSON but not an object")
    recording = data.get("recording")
    if not isinstance(recording, bool):
        raise RejectedMessage("field", "recording: not true or false")
    rate = data.get("sample_rate_hz")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1e6):
        raise RejectedMessage("field", "sample_rate_hz: not a number within 0..1e6")
    return {
        "recording": recording,
        "session_id": _text(data.get("session_id"), "session_id", optional=True),
        "label": _text(data.get("label"), "label", optional=True),
        "samples": _count(data.get("samples", 0), "samples"),
        "bytes": _count(data.get("bytes", 0), "bytes"),
        "budget_bytes": _count(data.get("budget_bytes"), "budget_bytes", optional=True),
        "classes": _names(data.get("classes", []), "classes", MAX_CLASSES),
        "channels": _names(data.get("channels", []), "channels", MAX_CHANNELS),
        "sample_rate_hz": None if rate is None else float(rate),
        "error": _text(data.get("error"), "error", limit=MAX_ERROR_TEXT, optional=True),
    }


def check_signal(payload: bytes) -> dict[str, Any]:
    """A ``record/signal`` message: session id, channel names, times and one row of values per time.

    Raises :class:`RejectedMessage` (and nothing else) for a payload that is not such a message.
    """
    data = parse_message(payload, max_bytes=MAX_SIGNAL_BYTES, max_depth=4)
    if not isinstance(data, dict):
        raise RejectedMessage("not_json", "record/signal: JSON but not an object")
    channels = _names(data.get("channels"), "channels", MAX_CHANNELS)
    if not channels:
        raise RejectedMessage("field", "channels: empty")
    t, values = data.get("t"), data.get("values")
    if not isinstance(t, list) or not isinstance(values, list) or len(t) != len(values) or len(t) > MAX_SIGNAL_POINTS:
        raise RejectedMessage("field", f"t, values: not two lists of the same length, at most {MAX_SIGNAL_POINTS}")
    times: list[float] = []
    rows: list[list[float]] = []
    for i, (ts, row) in enumerate(zip(t, values)):
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not 0 <= ts <= MAX_TS:
            raise RejectedMessage("field", f"t[{i}]: not a Unix time")
        if not isinstance(row, list) or len(row) != len(channels):
            raise RejectedMessage("field", f"values[{i}]: not {len(channels)} values (one per channel)")
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in row):
            raise RejectedMessage("field", f"values[{i}]: not all numbers")
        times.append(float(ts))
        rows.append([float(v) for v in row])  # finite: parse_message refuses the others
    session_id = _text(data.get("session_id"), "session_id", optional=True)
    return {"session_id": session_id, "channels": channels, "t": times, "values": rows}


# ---------------------------------------------------------------------------------------------- what is kept


class _Device:
    __slots__ = ("state", "state_at", "session_id", "channels", "samples")

    def __init__(self) -> None:
        self.state: Optional[dict[str, Any]] = None
        self.state_at: Optional[float] = None
        self.session_id: Optional[str] = None
        self.channels: list[str] = []
        self.samples: deque[tuple[float, list[float]]] = deque(maxlen=SIGNAL_SAMPLES)

    def add_signal(self, signal: dict[str, Any]) -> None:
        if signal["channels"] != self.channels or signal["session_id"] != self.session_id:
            self.samples.clear()  # another session or channel set: the old samples would not line up
            self.channels = signal["channels"]
            self.session_id = signal["session_id"]
        newest = self.samples[-1][0] if self.samples else -math.inf
        for ts, row in zip(signal["t"], signal["values"]):
            if ts > newest:  # in time order only: a repeated or late message adds nothing
                self.samples.append((ts, row))
                newest = ts
        while self.samples and self.samples[0][0] < newest - SIGNAL_S:
            self.samples.popleft()


class RecordRelay:
    """The client described in the module doc; :meth:`view` is what ``GET /api/devices/{id}/record`` answers."""

    def __init__(self, cfg: ServeConfig, clock: Any = None) -> None:
        import time

        self.cfg = cfg
        self.prefix = cfg.topic_prefix
        self.clock = clock or time.time
        self._devices: OrderedDict[str, _Device] = OrderedDict()
        self._lock = threading.Lock()
        self._client: Any = None
        self._starts = 0
        self.ready = threading.Event()  # set once the broker acknowledged the subscriptions
        self.rejected: dict[str, int] = {}
        self._last_log = -math.inf

    @property
    def configured(self) -> bool:
        return self.cfg.mqtt is not None

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Connect and subscribe (in paho's thread). Counted: an app whose lifespan runs twice at once (a test
        client beside schemathesis's) shares one client, which the last :meth:`stop` disconnects."""
        with self._lock:
            self._starts += 1
            if self._starts > 1 or self.cfg.mqtt is None:
                return
        from edge_har.mqtt.client import start_client
        from edge_har.web.ingest import default_client_id

        base = self.cfg.client_id or default_client_id(self.cfg.topic_prefix)
        self._client = start_client(  # a clean session: nothing to resume
            self.cfg.mqtt,
            f"{base[:120]}-record",
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
            on_subscribe=self._on_subscribe,
            on_message=self._on_message,
        )

    def stop(self) -> None:
        with self._lock:
            self._starts = max(0, self._starts - 1)
            if self._starts:
                return
        from edge_har.mqtt.client import stop_client

        client, self._client = self._client, None
        stop_client(client)

    # ------------------------------------------------------------------ commands

    def publish(self, device_id: str, kind: str, payload: str) -> str:
        """Publish ``payload`` to ``<prefix>/<device_id>/<kind>`` (QoS 1, not retained) and wait for the broker's
        acknowledgement; the topic on success, :class:`PublishFailed` saying why otherwise."""
        if not DEVICE_ID.match(device_id):
            raise ValueError(f"device_id {device_id[:60]!r} is not one MQTT topic level")
        if self.cfg.mqtt is None:
            raise PublishFailed("serve has no broker: start it with --broker HOST[:PORT] to send commands to devices")
        client = self._client
        if client is None or not client.is_connected():
            raise PublishFailed(f"not connected to the broker {self.cfg.mqtt.host}:{self.cfg.mqtt.port}; try again")
        topic = f"{self.prefix}/{device_id}/{kind}"
        info = client.publish(topic, payload.encode("utf-8"), qos=1, retain=False)
        try:
            info.wait_for_publish(PUBLISH_TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:  # paho: the queue is full or the link went away
            raise PublishFailed(f"{topic}: not published ({exc})") from None
        if not info.is_published():
            raise PublishFailed(f"{topic}: the broker did not acknowledge it within {PUBLISH_TIMEOUT_S:g} s")
        return topic

    # ------------------------------------------------------------------ what the API reads

    def view(self, device_id: str) -> dict[str, Any]:
        """The device's last state (None when none was heard) and its kept signal, one list per channel."""
        with self._lock:
            device = self._devices.get(device_id)
            if device is None:
                return {"state": None, "state_at": None, "signal": _signal(None, [], [])}
            samples = list(device.samples)
            return {
                "state": None if device.state is None else dict(device.state),
                "state_at": device.state_at,
                "signal": _signal(device.session_id, device.channels, samples),
            }

    def devices(self) -> int:
        with self._lock:
            return len(self._devices)

    # ------------------------------------------------------------------ paho's thread

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("record relay: the broker refused the connection: %s", reason)
            return
        client.subscribe([(f"{self.prefix}/+/record/state", 0), (f"{self.prefix}/+/record/signal", 0)])

    def _on_subscribe(self, _client: Any, _userdata: Any, _mid: Any, reasons: Any, _props: Any = None) -> None:
        refused = [r for r in reasons if getattr(r, "is_failure", False)]
        if refused:
            log.warning("record relay: the broker refused %s/+/record/...: %s (check its ACL)", self.prefix, refused[0])
            return
        self.ready.set()

    def _on_disconnect(self, *_args: Any) -> None:
        self.ready.clear()

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        try:
            self.take(message.topic, bytes(message.payload))
        except Exception as exc:  # noqa: BLE001 - paho's thread must outlive any bug
            self._reject("internal_error", f"{type(exc).__name__}: {exc}")

    def take(self, topic: str, payload: bytes) -> None:
        """One message of ``<prefix>/<device>/record/state|signal``; anything else is counted and dropped."""
        parts = topic[len(self.prefix) + 1 :].split("/") if topic.startswith(self.prefix + "/") else []
        if len(parts) != 3 or parts[1] != "record" or parts[2] not in ("state", "signal"):
            self._reject("topic", f"{topic[:200]!r}: not {self.prefix}/<device>/record/state|signal")
            return
        device_id = parts[0]
        if not DEVICE_ID.match(device_id):
            self._reject("bad_device_id", f"{topic[:200]!r}: the device id is not one the API accepts")
            return
        try:
            checked = check_state(payload) if parts[2] == "state" else check_signal(payload)
        except RejectedMessage as exc:
            self._reject(exc.reason, f"{topic[:200]}: {exc.detail}")
            return
        with self._lock:
            device = self._devices.get(device_id)
            if device is None:
                if len(self._devices) >= MAX_DEVICES:
                    self._devices.popitem(last=False)
                device = self._devices[device_id] = _Device()
            else:
                self._devices.move_to_end(device_id)
            if parts[2] == "state":
                device.state = checked
                device.state_at = self.clock()
            else:
                device.add_signal(checked)

    def _reject(self, reason: str, detail: str) -> None:
        with self._lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + 1
        now = self.clock()
        if now - self._last_log >= 60.0:  # a flood logs a line a minute
            self._last_log = now
            log.warning("record relay: dropped a message (%s: %s)", reason, detail[:300])


def _signal(session_id: Optional[str], channels: list[str], samples: list[tuple[float, list[float]]]) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "channels": list(channels),
        "t": [ts for ts, _row in samples],
        "values": [[row[c] for _ts, row in samples] for c in range(len(channels))],
    }
