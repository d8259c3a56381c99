"""Samples published on an MQTT topic by remote sensor nodes (an ESP32 on a wrist, a phone app).

One message may carry one sample or many. The payload formats (``format: json``)::

    {"samples": [[0.01, -0.98, 0.12], [0.02, -0.97, 0.11]]}
    {"samples": [{"ax": 0.01, "ay": -0.98, "az": 0.12}, ...]}      # keys from source.fields
    {"ax": 0.01, "ay": -0.98, "az": 0.12}                           # one sample, keys from source.fields
    [[0.01, -0.98, 0.12], ...]   or   [0.01, -0.98, 0.12]

and ``format: csv``: one sample per line, ``0.01,-0.98,0.12``. A message that is not valid
JSON is dropped and counted as ``payload``; inside a valid message each bad sample is dropped
and counted by reason, the good ones are kept.

Hostile or broken senders are bounded twice: a message over ``max_payload_bytes`` (default
256 KiB) is dropped before it is decoded or parsed (counted once as ``too_large``), and at
most ``max_samples_per_message`` samples (default: 10 s at ``rate_hz``) are taken from one
message, the rest counted as ``too_many``. Without these one 10 MB message of JSON samples
took the daemon past its unit's ``MemoryMax=300M`` and injected hundreds of windows of
fabricated data. (The payload still crosses the network first: for a hard cap at the broker,
set mosquitto's ``max_packet_size``.)

The subscription is made in ``on_connect`` (after checking the CONNACK reason code), so it is
restored after every reconnect: a broker restarted without persistence forgets it. Samples
are treated as one continuous stream, so all nodes matching ``topic`` must be one sensor;
run one daemon per wearer. After a reconnect the stream restarts as a new segment.
"""

from __future__ import annotations

import json
import logging
import math
import reprlib
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Deque, Literal, Optional

import numpy as np
from pydantic import Field

from edge_har.device.sources.base import (
    REASON_COLUMNS,
    REASON_PAYLOAD,
    REASON_TEXT,
    Chunk,
    SampleChecker,
    Source,
    SourceContext,
)
from edge_har.device.sources.config_base import SensorSourceConfig, SourceConfigBase, Where, resolve_mqtt_paths
from edge_har.mqtt.config import MqttConfig, security_warnings

log = logging.getLogger(__name__)

REASON_OVERFLOW = "overflow"  # samples dropped because the daemon did not read them in time
REASON_TOO_LARGE = "too_large"  # a message over max_payload_bytes, dropped unparsed (counted once per message)
REASON_TOO_MANY = "too_many"  # samples of one message past max_samples_per_message (counted per sample)

DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024
MAX_PAYLOAD_BYTES_LIMIT = 16 * 1024 * 1024
MESSAGE_SECONDS = 10.0  # default max_samples_per_message: this many seconds of samples at rate_hz

# Examples in warnings are built with bounded cost: str() of a hostile nested value is as large as the value.
_EXAMPLE = reprlib.Repr()
_EXAMPLE.maxlevel, _EXAMPLE.maxlist, _EXAMPLE.maxdict, _EXAMPLE.maxstring, _EXAMPLE.maxother = 3, 8, 8, 40, 40


class MqttSourceConfig(SensorSourceConfig):
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
    rate_hz: float = Field(ge=0.1, le=10_000, description="Samples per second the sensor nodes sample at (0.1..10000).")
    qos: int = Field(1, ge=0, le=2, description="Subscription QoS.")
    client_id: Optional[str] = Field(
        None, description="Client id of the input connection (default: the publisher's id + '-input')."
    )
    buffer_samples: int = Field(
        10000,
        ge=1,
        le=1_000_000,
        description="Samples held between reads (1..1000000); beyond it the oldest are dropped and counted as 'overflow'.",
    )
    max_payload_bytes: int = Field(
        DEFAULT_MAX_PAYLOAD_BYTES,
        ge=64,
        le=MAX_PAYLOAD_BYTES_LIMIT,
        description=(
            f"Largest message accepted, in bytes (64..{MAX_PAYLOAD_BYTES_LIMIT}); a larger one is dropped unparsed "
            "and counted as 'too_large'. The default, 256 KiB, holds thousands of samples."
        ),
    )
    max_samples_per_message: Optional[int] = Field(
        None,
        ge=1,
        le=100_000,
        description=(
            "Most samples taken from one message (1..100000); the rest are dropped and counted as 'too_many'. "
            f"Default: {MESSAGE_SECONDS:g} s of samples at rate_hz. A node batching more than that per message "
            "is sending a backlog, not a live stream."
        ),
    )
    broker: Optional[MqttConfig] = Field(
        None,
        description="Broker to read from when it is not the one the predictions go to (default: the mqtt section).",
    )

    def channel_count(self) -> Optional[tuple[str, int]]:
        return ("fields", len(self.fields)) if self.fields is not None else None

    def samples_per_message(self) -> int:
        """``max_samples_per_message``, else :data:`MESSAGE_SECONDS` of samples at ``rate_hz`` (at least 1)."""
        if self.max_samples_per_message is not None:
            return self.max_samples_per_message
        return max(1, math.ceil(MESSAGE_SECONDS * self.rate_hz))

    def resolve_paths(self, base: Path) -> SourceConfigBase:
        if self.broker is None:
            return self
        return self.model_copy(update={"broker": resolve_mqtt_paths(self.broker, base)})

    def check_files(self, where: Where) -> tuple[list[str], list[str]]:
        if self.broker is None:
            return [], []
        # missing_files() lines read "mqtt.tls.ca_file: ...": re-root the key under source.broker.
        errors = [
            f"{where('broker.' + line.split(':', 1)[0][5:])}: {line.split(': ', 1)[1]}"
            for line in self.broker.missing_files()
        ]
        warnings = [f"{where('broker.' + key)}: {msg}" for key, msg in security_warnings(self.broker)]
        return errors, warnings


def parse_payload(payload: bytes, cfg: MqttSourceConfig, checker: SampleChecker) -> np.ndarray:
    """One message -> (n, C) checked samples; bad samples and bad messages are counted in ``checker``.

    Never raises for any payload: every message or sample it rejects is counted by reason
    (``too_large``, ``payload``, ``too_many``, and the per-sample reasons of :class:`SampleChecker`).
    """
    counter = checker.malformed
    if len(payload) > cfg.max_payload_bytes:
        counter.add(
            REASON_TOO_LARGE,
            example=f"a message of {len(payload)} bytes (source.max_payload_bytes is {cfg.max_payload_bytes})",
        )
        return checker.rows([])
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        counter.add(REASON_PAYLOAD, example=repr(payload[:60]))
        return checker.rows([])
    limit = cfg.samples_per_message()
    if cfg.format == "csv":
        lines = [line for line in text.splitlines() if line.strip()]
        counter.add(REASON_TOO_MANY, len(lines) - limit, example=_too_many(len(lines), limit))
        return checker.rows(checker.parse_line(line) for line in lines[:limit])
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError, and an integer of more than 4300 digits
        counter.add(REASON_PAYLOAD, example=text[:80])
        return checker.rows([])
    if isinstance(data, dict) and "samples" in data:
        items = data["samples"]
        if not isinstance(items, list):
            counter.add(REASON_PAYLOAD, example=text[:80])
            return checker.rows([])
    elif isinstance(data, dict):
        items = [data]
    elif isinstance(data, list) and data and all(isinstance(v, list) for v in data):
        items = data
    elif isinstance(data, list) and data and not any(isinstance(v, (list, dict)) for v in data):
        items = [data]
    elif isinstance(data, list) and data and all(isinstance(v, dict) for v in data):
        items = data
    else:
        counter.add(REASON_PAYLOAD, example=text[:80])
        return checker.rows([])
    counter.add(REASON_TOO_MANY, len(items) - limit, example=_too_many(len(items), limit))
    return checker.rows(_sample(item, cfg, checker) for item in items[:limit])


def _too_many(n: int, limit: int) -> str:
    return f"a message of {n} samples (at most {limit} are taken from one; source.max_samples_per_message)"


def _example(item: Any) -> str:
    try:
        return _EXAMPLE.repr(item)
    except (RecursionError, ValueError):  # ValueError: an int too long to print
        return f"<{type(item).__name__}>"


def _sample(item: Any, cfg: MqttSourceConfig, checker: SampleChecker) -> Optional[list[float]]:
    if isinstance(item, dict):
        if not cfg.fields:
            checker.malformed.add(REASON_COLUMNS, example=f"{_example(item)} (object samples need source.fields)")
            return None
        missing = [f for f in cfg.fields if f not in item]
        if missing:
            checker.malformed.add(REASON_COLUMNS, example=f"{_example(item)} (missing {', '.join(missing)})")
            return None
        return checker.check_values([item[f] for f in cfg.fields], example=_example(item))
    if isinstance(item, list):
        if len(item) != checker.n_channels:  # before building an example of a long list
            checker.malformed.add(REASON_COLUMNS, example=_example(item))
            return None
        return checker.check_values(item, example=_example(item))
    checker.malformed.add(REASON_TEXT, example=_example(item))
    return None


class MqttInputSource(Source):
    kind = "mqtt"

    @classmethod
    def from_config(cls, cfg: SourceConfigBase, ctx: SourceContext) -> MqttInputSource:
        assert isinstance(cfg, MqttSourceConfig)
        broker = cfg.broker if cfg.broker is not None else ctx.broker
        return cls(cfg, broker, ctx.n_channels, cfg.client_id or f"{ctx.client_id}-input")

    def __init__(self, cfg: MqttSourceConfig, broker: MqttConfig, n_channels: int, client_id: str) -> None:
        super().__init__(n_channels, name=f"mqtt input {cfg.topic}")
        self.cfg = cfg
        self.broker = broker
        self.client_id = client_id
        self.checker = SampleChecker(n_channels, self.malformed, cfg.valid_range)
        self._cond = threading.Condition()
        self._pending: Deque[Chunk] = deque()
        self._pending_samples = 0
        self._client: Any = None
        self._new_segment = True
        self._connections = 0
        self._messages = 0
        self._status.connected = False

    @property
    def rate_hz(self) -> float:
        return self.cfg.rate_hz

    def start(self) -> None:
        from edge_har.mqtt.client import describe_broker, make_client

        client = make_client(self.broker, self.client_id)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        extra: dict[str, Any] = {"clean_start": True} if self.broker.protocol == "5" else {}
        client.connect_async(self.broker.host, self.broker.port, keepalive=self.broker.keepalive, **extra)
        self._client = client
        client.loop_start()
        log.info(
            "%s: reading samples from %s as %s (%s payloads)",
            self.name,
            describe_broker(self.broker),
            self.client_id,
            self.cfg.format,
        )

    def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.disconnect()
            finally:
                client.loop_stop()
        with self._cond:
            self._status.connected = False
            self._cond.notify_all()

    # ---------------------------------------------------------------- paho callbacks (network thread)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._status.last_error = f"connection refused: {reason_code}"
            log.error("%s: broker refused the connection: %s", self.name, reason_code)
            return
        client.subscribe(self.cfg.topic, qos=self.cfg.qos)
        with self._cond:
            self._connections += 1
            self._status.connected = True
            self._status.reconnects = max(0, self._connections - 1)
            self._new_segment = True
        log.info("%s: connected; subscribed to %s (QoS %d)", self.name, self.cfg.topic, self.cfg.qos)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        with self._cond:
            was = self._status.connected
            self._status.connected = False
            if was and self._client is not None:
                self._status.last_error = f"connection lost: {reason_code}"
        if was and self._client is not None:
            log.warning("%s: lost the broker (%s); paho reconnects with backoff", self.name, reason_code)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        arrival = time.perf_counter()
        samples = parse_payload(bytes(message.payload), self.cfg, self.checker)
        if not len(samples):
            return
        with self._cond:
            self._messages += 1
            chunk = Chunk(samples, arrival, time.time(), segment_start=self._new_segment)
            self._new_segment = False
            self._pending.append(chunk)
            self._pending_samples += len(samples)
            while self._pending_samples > self.cfg.buffer_samples and len(self._pending) > 1:
                old = self._pending.popleft()
                self._pending_samples -= len(old)
                self.malformed.add(REASON_OVERFLOW, len(old), example="the daemon fell behind the MQTT input")
                if self._pending:  # the stream has a hole now
                    self._pending[0].segment_start = True
            self._cond.notify_all()

    # ---------------------------------------------------------------- reading (source thread)

    def read(self, timeout: float) -> Optional[Chunk]:
        with self._cond:
            if not self._pending:
                self._cond.wait(timeout)
            if not self._pending:
                return None
            chunk = self._pending.popleft()
            self._pending_samples -= len(chunk)
        self.samples_read += len(chunk)
        return chunk

    def status(self) -> dict[str, Any]:
        out = super().status()
        with self._cond:
            out.update({"messages": self._messages, "buffered_samples": self._pending_samples})
        return out
