"""Publishing a device's predictions, status and stats over MQTT, through broker outages.

Who owns an unsent prediction
-----------------------------
Exactly one place at a time, so nothing is lost silently and nothing is sent twice by us:

* the **offline queue** (a bounded deque, ``mqtt.queue_size``) owns every prediction that has
  not been handed to paho, and every prediction paho had not got acknowledged when a link died;
* **paho** owns a prediction from ``client.publish`` until the broker acknowledges it (QoS 1/2)
  or it is written to the socket (QoS 0), *within one connection*.

paho keeps unacknowledged QoS>0 messages across a reconnect and re-sends them itself after
``on_connect``; left alone, it would send those old ones *after* anything we publish in
``on_connect`` and without any bound. So on every successful connect we take them back with
``client.drop_out_messages()`` and put the predictions among them back at the front of the
queue, in their original order (oldest dropped first if that overflows the bound). The same
happens to QoS 0 predictions paho had buffered but never wrote (paho marks them
``MQTT_ERR_CONN_LOST``). The queue is then sent oldest first by one sender thread; a prediction
arriving while the queue is not empty goes to its tail, so order holds during the drain.

What this gives subscribers: with QoS 1 (default) every prediction reaches the broker at least
once, in order, unless more than ``queue_size`` piled up while it was away (the oldest are then
dropped and counted in ``dropped_offline``). A prediction whose acknowledgement was lost with the
link is sent again, so a subscriber can see a ``seq`` twice after a reconnect (that is what QoS 1
means); de-duplicate on ``(device_id, seq, window_end_ts)``. QoS 0 predictions are best effort:
one already written to a socket that dies is gone.

Threads
-------
``publish_prediction``/``publish_stats``/``counters``/``stop`` may be called from any thread;
paho's network thread runs the callbacks. Lock order is ``_send_lock`` then ``_lock``, and no
paho call is made while holding ``_lock`` (paho calls ``on_publish`` holding its own mutex,
which would otherwise deadlock against us). ``on_link_change(connected: bool)`` runs in paho's
network thread: keep it short and do not call ``stop()`` from it.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Mapping, NamedTuple, Optional, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_har.mqtt import discovery
from edge_har.mqtt.client import EdgeHarClient, describe_broker, make_client, topics
from edge_har.mqtt.config import MqttConfig
from edge_har.mqtt.liveness import online_expiry_s
from edge_har.mqtt.payloads import STATUS_OFFLINE, STATUS_ONLINE, STATUS_STOPPED, encode, new_run_id

__all__ = ["Publisher"]

log = logging.getLogger("edge_har.mqtt.publisher")

_SUCCESS = mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
_NO_CONN = mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN
_CONN_LOST = mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST

# Predictions handed to paho and not yet acknowledged, at most (paho's own default in-flight window).
# Beyond it they wait in the bounded offline queue, so a broker that keeps TCP open but acknowledges
# nothing (hung, SIGSTOPped) cannot make paho hold an unbounded backlog until the keepalive gives up.
MAX_INFLIGHT = 20

# Hints appended to a refused CONNACK, keyed by words of paho's reason string.
_REFUSAL_HINTS = (
    ("user name or password", "check mqtt.username and the password in mqtt.password_env / mqtt.password_file"),
    ("not authori", "check mqtt.username, the password, and that the broker's password file / ACL has this user"),
    (
        "identifier",
        "the broker rejects mqtt.client_id (in use or malformed) or mqtt.keepalive (above its max_keepalive, or 0)",
    ),
    ("protocol", "the broker does not speak this mqtt.protocol; try '3.1.1'"),
    ("unavailable", "the broker is up but not accepting clients right now"),
)


class _Item(NamedTuple):
    order: int  # publish order, so predictions taken back from paho can be re-sorted
    data: bytes
    # Written to a link that died before the broker acknowledged it: the broker may have delivered it,
    # so dropping it later is counted apart (dropped_unconfirmed), not as a certain loss.
    sent: bool = False
    event: bool = False  # an event (<base>/event, QoS 1 at least) rather than a prediction


class Publisher:
    """Publishes one device's predictions (``<prefix>/<device_id>/prediction``), its retained
    status (``online``; ``stopped`` after :meth:`stop`; the Last Will ``offline``), periodic stats,
    and optionally Home Assistant discovery. See the module docstring for delivery guarantees and
    :mod:`edge_har.mqtt.liveness` for the status protocol."""

    def __init__(
        self,
        cfg: MqttConfig,
        device_id: str,
        model_id: str,
        labels: Sequence[str],
        *,
        on_link_change: Optional[Callable[[bool], None]] = None,
        run_id: Optional[str] = None,
        event_types: Sequence[str] = (),
    ) -> None:
        self.cfg = cfg
        # One id per run of the device (see payloads' module docstring): added to every prediction
        # and stats payload that does not carry one, so a subscriber can tell a restart from a repeat.
        self.run_id = run_id or new_run_id()
        self.device_id = device_id
        self.model_id = model_id
        self.labels = [str(label) for label in labels]
        self.event_types = [str(e) for e in event_types]  # Home Assistant's event entity lists them
        self.topics = topics(cfg, device_id)
        self.client_id = cfg.client_id_for(device_id)
        self._on_link_change = on_link_change
        self._broker = describe_broker(cfg)
        self.max_inflight = MAX_INFLIGHT  # bound of ``inflight`` in counters(); queued <= cfg.queue_size

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        # Held while a prediction is handed to paho and while on_connect takes messages back,
        # so no prediction can be between "popped from the queue" and "recorded as pending" then.
        self._send_lock = threading.Lock()

        self._queue: Deque[_Item] = deque()
        self._pending: Deque[tuple[_Item, mqtt.MQTTMessageInfo]] = deque()  # handed to paho, not yet done
        self._order = itertools.count()
        self._client: Optional[EdgeHarClient] = None
        self._sender: Optional[threading.Thread] = None

        self._connected = False
        self._started = False
        self._closing = False
        self._halted = False  # set by stop() just before "stopped": nothing is sent after it
        self._sending = False  # a prediction is between the queue and the pending list
        self._connections = 0
        self._published = 0
        self._dropped = 0
        self._dropped_unconfirmed = 0
        self._requeued = 0
        self._stats_skipped = 0
        self._failures_in_a_row = 0
        self._last_error: Optional[str] = None  # the current problem; cleared when a connection is accepted
        self._last_error_ts: Optional[float] = None
        self._last_resolved_error: Optional[str] = None  # the one a successful connect cleared
        self._last_logged_problem: Optional[str] = None
        self._drop_warned = False
        self._refused = False  # the current attempt got a refusing CONNACK (already logged)
        self._refused_messages = 0  # MQTT 5 PUBACKs with a failure reason code
        self._refusal_warned = False

        self._json_props: Optional[Properties] = None
        # MQTT 5: the retained "online" expires unless refreshed (see edge_har.mqtt.liveness), so a
        # broker restored from its persistence file cannot keep a dead device online.
        self._online_props: Optional[Properties] = None
        self._online_at = 0.0  # monotonic time "online" was last published
        if cfg.protocol == "5":
            props = Properties(PacketTypes.PUBLISH)
            props.PayloadFormatIndicator = 1
            props.ContentType = "application/json"
            self._json_props = props
            online = Properties(PacketTypes.PUBLISH)
            online.MessageExpiryInterval = online_expiry_s(cfg.stats_interval_s)
            self._online_props = online

    # ================================================================ lifecycle

    def start(self) -> None:
        """Start connecting in the background and return at once.

        Never raises because the broker is down or refuses us: that is logged and retried with
        backoff between ``reconnect_min_s`` and ``reconnect_max_s`` while predictions queue up.
        Raises :class:`~edge_har.mqtt.config.MqttConfigError` for configuration that cannot work
        (password variable unset, TLS file missing).
        """
        with self._lock:
            if self._started:
                return
            if self._closing:
                raise RuntimeError("this Publisher was stopped; create a new one")
        client = make_client(self.cfg, self.client_id)
        client.will_set(self.topics.status, STATUS_OFFLINE, qos=self.cfg.qos.status, retain=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        if self.cfg.home_assistant.enabled:
            client.message_callback_add(discovery.birth_topic(self.cfg.home_assistant), self._on_ha_status)
        extra: dict[str, Any] = {"clean_start": True} if self.cfg.protocol == "5" else {}
        client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive, **extra)
        with self._lock:
            self._client = client
            self._started = True
        self._sender = threading.Thread(
            target=self._send_loop, name=f"edge-har-mqtt-send-{self.device_id}", daemon=True
        )
        self._sender.start()
        log.info(
            "MQTT: publishing as %s (run %s) to %s under %s/ (QoS prediction %d, status %d, stats %d; offline queue %d)",
            self.client_id,
            self.run_id,
            self._broker,
            self.topics.base,
            self.cfg.qos.prediction,
            self.cfg.qos.status,
            self.cfg.qos.stats,
            self.cfg.queue_size,
        )
        client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop cleanly within about ``timeout`` seconds.

        In order: if the link is up, send what is queued and wait until the broker acknowledged
        every prediction; publish the retained ``stopped`` status and wait for it; disconnect
        (a clean disconnect, so the broker does not also fire the Last Will ``offline``, which
        stays the sign of a crash); stop paho's thread.
        If the broker is unreachable, queued predictions cannot be delivered: their number is
        logged, and the broker publishes the Last Will ``offline`` once it notices. Idempotent.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
            client = self._client
        if client is None:
            return

        with self._cond:
            while self._connected and (self._queue or self._sending or self._unfinished_locked()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(0.01, remaining))
            connected = self._connected
            self._halted = True
            self._cond.notify_all()

        stopped_sent = False
        if connected:
            with self._send_lock:  # after any "online" refresh in progress, never before one
                info = client.publish(self.topics.status, STATUS_STOPPED, qos=self.cfg.qos.status, retain=True)
            stopped_sent = _wait_published(info, deadline)
        client.disconnect()
        _join(client.loop_stop, deadline, "paho network thread")
        if self._sender is not None:
            self._sender.join(max(0.0, deadline - time.monotonic()))

        with self._cond:
            self._prune_locked()
            left = len(self._queue) + len(self._pending)
            published, dropped = self._published, self._dropped + self._dropped_unconfirmed
        if left:
            log.warning(
                "MQTT: stopped with %d prediction(s) not delivered (broker %s); %d published, %d dropped while offline",
                left,
                "unreachable" if not connected else "too slow to acknowledge",
                published,
                dropped,
            )
        else:
            log.info(
                "MQTT: stopped (%d published, %d dropped while offline%s)",
                published,
                dropped,
                ", retained stopped sent" if stopped_sent else "",
            )

    # ================================================================ publishing

    def publish_prediction(self, payload: Mapping[str, Any]) -> None:
        """Publish a prediction now if the link is up and nothing older waits, else queue it.

        Never blocks on the network. Adds ``run_id`` = :attr:`run_id` when the payload has none.
        Raises ValueError only for a payload that is not valid JSON (NaN, infinity, unserialisable
        objects): see :func:`~edge_har.mqtt.payloads.prediction_payload`.
        """
        self._publish_item(payload, event=False)

    def publish_event(self, payload: Mapping[str, Any]) -> None:
        """Publish an event (:func:`~edge_har.mqtt.payloads.event_payload`) on ``<base>/event``.

        In the same ordered queue as the predictions, with the same guarantees (kept while the
        link is down, re-sent after a reconnect), at QoS 1 at least and never retained: an event
        is a moment, and a subscriber that joins later must not see an old fall as new.
        """
        self._publish_item(payload, event=True)

    def _publish_item(self, payload: Mapping[str, Any], *, event: bool) -> None:
        if "run_id" not in payload:
            payload = _with_run_id(payload, self.run_id)
        item = _Item(next(self._order), encode(payload), event=event)
        with self._cond:
            if not self._can_send_now_locked() or self._queue:
                self._enqueue_locked(item)
                return
        with self._send_lock:
            with self._cond:
                if not self._can_send_now_locked() or self._queue:
                    self._enqueue_locked(item)
                    return
                self._sending = True
            self._send_locked(item)

    def publish_stats(self, payload: Mapping[str, Any]) -> bool:
        """Publish a stats payload if the link is up; stats are not queued (the next one
        supersedes it). Adds ``mqtt`` = :meth:`counters`, ``run_id`` and ``stats_interval_s`` when the
        payload has none.
        Returns whether it was handed to the broker connection."""
        if "run_id" not in payload:
            payload = _with_run_id(payload, self.run_id)
        if "stats_interval_s" not in payload:
            payload = {**payload, "stats_interval_s": float(self.cfg.stats_interval_s)}
        if "mqtt" not in payload:
            payload = {**payload, "mqtt": self.counters()}
        data = encode(payload)
        with self._cond:
            client = self._client
            if not self._connected or client is None:
                self._stats_skipped += 1
                return False
        info = client.publish(self.topics.stats, data, qos=self.cfg.qos.stats, properties=self._json_props)
        return info.rc == _SUCCESS

    def counters(self) -> dict[str, Any]:
        """Link and queue state for the stats message and for health checks.

        ``connected``: link up (CONNACK accepted). ``queued``: predictions waiting in the offline
        queue. ``inflight``: handed to paho, not yet acknowledged. ``dropped_offline``: dropped
        because the queue was full, never written to the broker (certainly lost).
        ``dropped_unconfirmed``: dropped because the queue was full after a link died before the
        broker acknowledged it: it may or may not have been delivered (QoS 1 cannot tell). The books:
        predictions made = published + dropped_offline + dropped_unconfirmed + queued + inflight.
        ``published``: acknowledged by the broker (QoS 0: written).
        ``reconnects``: successful connections after the first. ``requeued``: predictions taken back
        from paho after a link died unacknowledged. ``stats_skipped``: stats not sent while offline.
        ``refused_by_broker``: messages an MQTT 5 broker acknowledged with an error (ACL); they count
        as published too, since the broker will not take them. ``last_error``: the current problem
        (an outage, a refused message since the link came up), None once a connection is accepted;
        ``last_error_ts``: its Unix time. ``last_resolved_error``: the problem the last successful
        connect cleared, for the record (how the last outage looked).
        """
        with self._cond:
            self._prune_locked()
            return {
                "connected": self._connected,
                "queued": len(self._queue),
                # plus the one the sender holds between the queue and paho, so the books add up at any moment
                "inflight": len(self._pending) + int(self._sending),
                "dropped_offline": self._dropped,
                "dropped_unconfirmed": self._dropped_unconfirmed,
                "published": self._published,
                "reconnects": max(0, self._connections - 1),
                "requeued": self._requeued,
                "stats_skipped": self._stats_skipped,
                "refused_by_broker": self._refused_messages,
                "last_error": self._last_error,
                "last_error_ts": self._last_error_ts,
                "last_resolved_error": self._last_resolved_error,
            }

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    def wait_connected(self, timeout: float) -> bool:
        """Block until the link is up or ``timeout`` passes; returns whether it is up."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._connected:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    # ================================================================ queue internals (hold _lock)

    def _link_up_locked(self) -> bool:
        return self._connected and not self._halted

    def _can_send_now_locked(self) -> bool:
        """Link up and room in the in-flight window (acknowledged hand-offs are retired first)."""
        if not self._link_up_locked():
            return False
        if len(self._pending) >= self.max_inflight:
            self._prune_locked()
        return len(self._pending) < self.max_inflight

    def _enqueue_locked(self, item: _Item) -> None:
        if self.cfg.queue_size == 0:
            self._count_drops_locked([item])
        else:
            if len(self._queue) >= self.cfg.queue_size:
                self._count_drops_locked([self._queue.popleft()])
            self._queue.append(item)
        self._cond.notify_all()

    def _requeue_front_locked(self, items: list[_Item]) -> None:
        """Put predictions taken back from paho before everything queued (they are older)."""
        if not items:
            return
        items.sort(key=lambda it: it.order)
        self._requeued += len(items)
        room = max(0, self.cfg.queue_size - len(self._queue))
        if len(items) > room:
            self._count_drops_locked(items[: len(items) - room])
            items = items[len(items) - room :]
        self._queue.extendleft(reversed(items))
        self._cond.notify_all()

    def _count_drops_locked(self, items: list[_Item]) -> None:
        unconfirmed = sum(1 for it in items if it.sent)
        self._dropped_unconfirmed += unconfirmed
        self._dropped += len(items) - unconfirmed
        if not self._drop_warned:
            self._drop_warned = True
            log.warning(
                "MQTT: offline queue full (%d predictions): dropping the oldest; the count is dropped_offline in stats",
                self.cfg.queue_size,
            )

    def _prune_locked(self) -> None:
        """Retire finished hand-offs from the left of the pending list (they finish in order)."""
        lost: list[_Item] = []
        while self._pending and _finished(self._pending[0][1]):
            item, info = self._pending.popleft()
            if info.rc == _CONN_LOST:  # QoS 0 buffered in paho when the link died: never written
                lost.append(item._replace(sent=False))
            else:
                self._published += 1
        self._requeue_front_locked(lost)

    def _unfinished_locked(self) -> bool:
        self._prune_locked()
        return bool(self._pending)

    # ================================================================ sending

    def _send_locked(self, item: _Item) -> bool:
        """Hand one prediction to paho; caller holds _send_lock (not _lock). False: it went back to the queue."""
        client = self._client
        assert client is not None
        qos = max(1, self.cfg.qos.prediction) if item.event else self.cfg.qos.prediction
        topic = self.topics.event if item.event else self.topics.prediction
        try:
            info = client.publish(topic, item.data, qos=qos, properties=self._json_props)
        except ValueError as exc:  # e.g. payload over the MQTT size limit: it can never be sent
            with self._cond:
                self._sending = False
                self._set_error_locked(f"prediction not publishable: {exc}")
            log.error("MQTT: dropping a prediction paho refuses: %s", exc)
            return True
        with self._cond:
            self._sending = False
            if info.rc == _SUCCESS or (qos > 0 and info.rc == _NO_CONN):
                # QoS>0 with NO_CONN: paho keeps it and on_connect takes it back; either way it is pending.
                # rc SUCCESS: paho wrote it or will; NO_CONN: it waits in paho and has not left
                self._pending.append((item._replace(sent=info.rc == _SUCCESS), info))
                self._prune_locked()
                return True
            self._requeue_front_locked([item])
            return False

    def _send_loop(self) -> None:
        """Sender thread: drains the queue, oldest first, whenever the link is up; refreshes the
        MQTT 5 retained ``online`` every stats interval."""
        while True:
            # (a lock-free look first: this runs once per prediction sent)
            if self._online_props is not None and time.monotonic() - self._online_at >= self.cfg.stats_interval_s:
                self._refresh_online()
            with self._cond:
                while not (self._can_send_now_locked() and self._queue):
                    if self._closing and not self._link_up_locked():
                        return
                    if self._online_due_locked():
                        break
                    # In-flight window full: paho marks a message published only after on_publish
                    # (which wakes us) returns, so look again soon instead of at the next ack.
                    window_full = self._link_up_locked() and bool(self._queue)
                    self._cond.wait(0.002 if window_full else 0.5)
            with self._send_lock:
                with self._cond:
                    if not (self._can_send_now_locked() and self._queue):
                        continue
                    item = self._queue.popleft()
                    self._sending = True
                sent = self._send_locked(item)
            if not sent:
                # paho says there is no connection although on_disconnect has not run yet.
                with self._cond:
                    self._cond.wait(0.05)

    def _online_due_locked(self) -> bool:
        return (
            self._online_props is not None
            and self._link_up_locked()
            and time.monotonic() - self._online_at >= self.cfg.stats_interval_s
        )

    def _refresh_online(self) -> None:
        """Re-publish the retained ``online`` (MQTT 5, with its expiry) when a stats interval passed."""
        with self._send_lock:  # stop() publishes "stopped" under it: no "online" can follow that
            with self._cond:
                if not self._online_due_locked():
                    return
                client = self._client
                self._online_at = time.monotonic()
            assert client is not None
            client.publish(
                self.topics.status, STATUS_ONLINE, qos=self.cfg.qos.status, retain=True, properties=self._online_props
            )

    # ================================================================ paho callbacks (network thread)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags, reason_code: ReasonCode, properties: Any
    ) -> None:
        if reason_code.is_failure:
            with self._lock:
                self._refused = True
            self._note_problem(_refusal_message(self._broker, reason_code), level=logging.ERROR)
            return

        with self._send_lock:
            # Take back what paho still holds from the previous connection (see module docstring).
            taken = {id(message.info) for message in client.drop_out_messages()}
            with self._cond:
                back: list[_Item] = []
                keep: Deque[tuple[_Item, mqtt.MQTTMessageInfo]] = deque()
                for item, info in self._pending:
                    if id(info) in taken or (_finished(info) and info.rc == _CONN_LOST):
                        # taken from paho: it may have reached the broker (if it was written); a CONN_LOST one never left
                        back.append(item if id(info) in taken else item._replace(sent=False))
                    elif _finished(info):
                        self._published += 1
                    else:
                        keep.append((item, info))
                self._pending = keep
                self._requeue_front_locked(back)
                queued = len(self._queue)
                failures = self._failures_in_a_row
            client.publish(
                self.topics.status, STATUS_ONLINE, qos=self.cfg.qos.status, retain=True, properties=self._online_props
            )
            self._online_at = time.monotonic()
            if self.cfg.home_assistant.enabled:
                client.subscribe(discovery.birth_topic(self.cfg.home_assistant), qos=1)
                self._publish_discovery(client)
            with self._cond:
                self._connected = True
                self._connections += 1
                self._failures_in_a_row = 0
                self._last_logged_problem = None
                # The link is up: what kept it down is history, not a current problem (stats would
                # otherwise show connected together with the outage's error).
                if self._last_error is not None:
                    self._last_resolved_error, self._last_error, self._last_error_ts = self._last_error, None, None
                self._drop_warned = False
                self._refusal_warned = False
                self._cond.notify_all()
        log.info(
            "MQTT: connected to %s as %s%s%s",
            self._broker,
            self.client_id,
            f" after {failures} failed attempt(s)" if failures else "",
            f"; sending {queued} queued prediction(s) first" if queued else "",
        )
        self._notify_link(True)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        error = getattr(client, "last_connect_error", None)
        reason = f"{type(error).__name__}: {error}" if error else "connection failed"
        self._note_problem(
            f"cannot reach broker {self._broker}: {reason}; retrying with backoff up to {self.cfg.reconnect_max_s:g} s",
            level=logging.WARNING,
        )

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode, properties: Any
    ) -> None:
        with self._cond:
            was_up = self._connected
            self._connected = False
            closing = self._closing
            refused, self._refused = self._refused, False
            if was_up and not closing:
                self._set_error_locked(f"connection lost: {getattr(client, 'last_paho_error', None) or reason_code}")
            self._cond.notify_all()
        if not was_up and not refused and not closing:
            # Closed after TCP (and TLS) but before a CONNACK, e.g. a client certificate the broker
            # rejects under TLS 1.3: paho's own log line is the only place that says why.
            why = getattr(client, "last_paho_error", None) or str(reason_code)
            tls = self.cfg.tls
            hint = (
                "; a broker that requires a client certificate closes TLS connections without one: "
                "set mqtt.tls.cert_file and mqtt.tls.key_file"
                if tls is not None and tls.cert_file is None and "certificate" not in str(why).lower()
                else ""
            )
            self._note_problem(
                f"broker {self._broker} closed the connection before accepting it: {why}{hint}", level=logging.WARNING
            )
        if was_up:
            if not closing:
                log.warning(
                    "MQTT: lost the connection to %s (%s); queueing predictions (up to %d) until it is back",
                    self._broker,
                    getattr(client, "last_paho_error", None) or reason_code,
                    self.cfg.queue_size,
                )
            self._notify_link(False)

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode, properties: Any
    ) -> None:
        # paho holds its message mutex here: only take our lock, never call paho.
        warn = False
        with self._cond:
            if reason_code.is_failure:  # an MQTT 5 broker refused a message (ACL, quota, topic)
                self._refused_messages += 1
                warn, self._refusal_warned = not self._refusal_warned, True
                self._set_error_locked(f"broker refused a message: {reason_code}")
            self._cond.notify_all()
        if warn:
            log.warning(
                "MQTT: the broker refused a message: %s (check its ACL allows this user to publish under %s/); "
                "further refusals are counted in refused_by_broker",
                reason_code,
                self.topics.base,
            )

    def _on_ha_status(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.payload.strip().lower() == STATUS_ONLINE.encode():
            log.info("MQTT: Home Assistant announced itself on %s; re-sending discovery", message.topic)
            self._publish_discovery(client)

    # ================================================================ helpers

    def _publish_discovery(self, client: mqtt.Client) -> None:
        ha = self.cfg.home_assistant
        config = discovery.activity_sensor_config(
            ha, self.topics, device_id=self.device_id, model_id=self.model_id, labels=self.labels
        )
        client.publish(
            discovery.discovery_topic(ha, self.device_id),
            encode(config),
            qos=1,
            retain=True,
            properties=self._json_props,
        )
        # Without event classes an empty retained config removes an event entity an earlier bundle made.
        event_config = (
            encode(
                discovery.event_entity_config(
                    ha, self.topics, device_id=self.device_id, model_id=self.model_id, event_types=self.event_types
                )
            )
            if self.event_types
            else b""
        )
        client.publish(discovery.event_discovery_topic(ha, self.device_id), event_config, qos=1, retain=True)

    def _note_problem(self, message: str, level: int) -> None:
        """Log a connection problem once (at ``level``), repeats of the same one at DEBUG."""
        with self._cond:
            self._failures_in_a_row += 1
            self._set_error_locked(message)
            repeat = message == self._last_logged_problem
            self._last_logged_problem = message
        log.log(logging.DEBUG if repeat else level, "MQTT: %s", message)

    def _set_error_locked(self, message: str) -> None:
        self._last_error = message
        self._last_error_ts = time.time()

    def _notify_link(self, up: bool) -> None:
        if self._on_link_change is None:
            return
        try:
            self._on_link_change(up)
        except Exception:  # a faulty callback must not kill paho's network thread
            log.exception("MQTT: on_link_change callback failed")


def _with_run_id(payload: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """A copy with ``run_id`` next to the identifying fields (before ``seq``/``ts``), for readability."""
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if key in ("seq", "ts") and "run_id" not in out:
            out["run_id"] = run_id
        out[key] = value
    out.setdefault("run_id", run_id)
    return out


def _refusal_message(broker: str, reason_code: ReasonCode) -> str:
    reason = str(reason_code)
    hint = next((h for words, h in _REFUSAL_HINTS if words in reason.lower()), None)
    return f"broker {broker} refused the connection: {reason}" + (f" ({hint})" if hint else "")


def _finished(info: mqtt.MQTTMessageInfo) -> bool:
    """paho's ``is_published``, without its exceptions: a hand-off paho took while it had no
    connection (``MQTT_ERR_NO_CONN``, the link died after our connected check) makes it raise
    RuntimeError, yet paho keeps such a QoS>0 message and ``on_connect`` takes it back: not finished."""
    try:
        return info.is_published()
    except (RuntimeError, ValueError):
        return False


def _wait_published(info: mqtt.MQTTMessageInfo, deadline: float) -> bool:
    while not _finished(info):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return info.rc == _SUCCESS


def _join(func: Callable[[], Any], deadline: float, what: str) -> None:
    """Run a blocking shutdown step, giving up at ``deadline`` (paho's loop_stop has no timeout)."""
    thread = threading.Thread(target=func, name=f"edge-har-stop-{what}", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()) + 0.5)
    if thread.is_alive():
        log.warning("MQTT: %s did not stop in time; leaving it to exit with the process", what)
