"""MQTT -> store -> browsers: the live half of ``edge-har serve`` that runs beside the web requests.

Three parties with different speeds meet here, so each gets its own hand-off:

* **paho's network thread** decodes nothing and waits for nothing: ``on_message`` puts the raw
  message on a bounded queue (full: dropped and counted, never a stalled keepalive that would get the
  subscriber disconnected and lose every QoS 1 message in flight).
* **the ingest thread** drains that queue in batches (up to :data:`BATCH_MAX` messages or
  :data:`FLUSH_S` seconds), decodes and checks each payload (:func:`edge_har.mqtt.payloads.validate_prediction`;
  a malformed one is counted and logged at most every :data:`LOG_EVERY_S` seconds, never raised), writes
  the batch with one ``executemany``, then tells the browsers. A database outage holds the batch and
  retries it, so nothing read from the broker is lost while the queue has room.
* **the browsers** (server-sent events, asyncio) each have a bounded queue in :class:`Hub`; the ingest
  thread hands events over with ``loop.call_soon_threadsafe``, so it never waits for a browser. A browser
  that falls a queue behind gets its queue replaced by one ``resync`` event (reload the device list)
  instead of making ingest or the other browsers wait.

Liveness follows :func:`edge_har.mqtt.liveness.device_liveness` (the retained status and Last Will,
stale after three stats intervals without stats), re-judged every second so ``stale`` is pushed too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from edge_har.mqtt.liveness import device_liveness
from edge_har.mqtt.payloads import validate_prediction
from edge_har.web.config import ServeConfig
from edge_har.web.store import Store

__all__ = ["Hub", "Ingest", "IngestCounters", "stats_brief"]

log = logging.getLogger("edge_har.web.ingest")

BATCH_MAX = 1000  # messages per database transaction
FLUSH_S = 0.1  # longest a message waits for its batch to fill (what the live page lags behind at most)
QUEUE_MAX = 100_000  # messages between paho and the ingest thread (~0.5 kB each)
CLIENT_QUEUE_MAX = 500  # events waiting for one browser before it is told to resync
LOG_EVERY_S = 60.0  # a flood of malformed payloads logs one line a minute, with the count
PRUNE_EVERY_S = 3600.0
MAX_STATUS_LEN = 32


class Hub:
    """Fan-out of live events to the connected browsers (one asyncio queue each)."""

    def __init__(self, max_queue: int = CLIENT_QUEUE_MAX) -> None:
        self._lock = threading.Lock()
        self._clients: dict[asyncio.Queue[Optional[dict[str, Any]]], asyncio.AbstractEventLoop] = {}
        self.max_queue = max_queue
        self.resyncs = 0  # times a slow browser's backlog was replaced by a resync

    def subscribe(self) -> asyncio.Queue[Optional[dict[str, Any]]]:
        """A new browser's queue; call from the event loop that will read it. None in it means: end."""
        q: asyncio.Queue[Optional[dict[str, Any]]] = asyncio.Queue(self.max_queue)
        with self._lock:
            self._clients[q] = asyncio.get_running_loop()
        return q

    def unsubscribe(self, q: asyncio.Queue[Optional[dict[str, Any]]]) -> None:
        with self._lock:
            self._clients.pop(q, None)

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)

    def publish(self, event: dict[str, Any]) -> None:
        """Hand ``event`` to every browser; safe from any thread, never blocks."""
        self._each(event)

    def close(self) -> None:
        """End every stream (the server is stopping); browsers reconnect by themselves."""
        self._each(None)

    def _each(self, event: Optional[dict[str, Any]]) -> None:
        with self._lock:
            clients = list(self._clients.items())
        for q, loop in clients:
            try:
                loop.call_soon_threadsafe(self._offer, q, event)
            except RuntimeError:  # that loop is closed: the browser's request is gone
                self.unsubscribe(q)

    def _offer(self, q: asyncio.Queue[Optional[dict[str, Any]]], event: Optional[dict[str, Any]]) -> None:
        try:
            q.put_nowait(event)
            return
        except asyncio.QueueFull:
            pass
        while not q.empty():  # this browser is a queue behind: what it missed is reloaded instead
            q.get_nowait()
        self.resyncs += 1
        q.put_nowait({"type": "resync"} if event is not None else None)


@dataclass
class IngestCounters:
    """What arrived and what became of it (``/api/devices`` shows these under ``ingest``)."""

    received: int = 0
    predictions: int = 0  # well-formed predictions written (re-deliveries included)
    stored: int = 0  # rows new to the store
    statuses: int = 0
    stats: int = 0
    malformed: int = 0
    dropped_full: int = 0  # the queue to the ingest thread was full
    db_errors: int = 0
    connected: bool = False
    last_problem: Optional[str] = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Device:
    """What the liveness sweep needs of a device, kept in memory by the ingest thread."""

    status: Optional[str] = None
    stats_at: Optional[float] = None
    stats_interval_s: Optional[float] = None
    liveness: Optional[str] = None


@dataclass
class _Batch:
    rows: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def stats_brief(stats: Optional[Mapping[str, Any]]) -> Optional[dict[str, Any]]:
    """The four figures the live page shows of a stats payload (missing ones are None)."""
    if not isinstance(stats, Mapping):
        return None
    inference = stats.get("inference_ms")
    mqtt = stats.get("mqtt")
    return {
        "windows_per_s": _num(stats.get("windows_per_s")),
        "inference_p50_ms": _num(inference.get("p50")) if isinstance(inference, Mapping) else None,
        "queue_depth": _num(stats.get("queue_depth")),
        "reconnects": _num(mqtt.get("reconnects")) if isinstance(mqtt, Mapping) else None,
        "uptime_s": _num(stats.get("uptime_s")),
        "ts": _num(stats.get("ts")),
    }


class Ingest:
    """A paho subscriber to ``<prefix>/+/prediction|status|stats`` feeding a :class:`Store` and a :class:`Hub`."""

    def __init__(
        self,
        cfg: ServeConfig,
        store: Store,
        hub: Hub,
        *,
        batch_max: int = BATCH_MAX,
        flush_s: float = FLUSH_S,
        queue_max: int = QUEUE_MAX,
        clock: Any = time.time,
    ) -> None:
        if cfg.mqtt is None:
            raise ValueError("Ingest needs cfg.mqtt (a broker)")
        self.cfg = cfg
        self.mqtt_cfg = cfg.mqtt
        self.store = store
        self.hub = hub
        self.batch_max = batch_max
        self.flush_s = flush_s
        self.clock = clock
        self.counters = IngestCounters()
        self.started_at = clock()
        self.prefix = cfg.topic_prefix
        self._inbox: queue.Queue[tuple[str, bytes, float]] = queue.Queue(queue_max)
        self._stop = threading.Event()
        # Set once the broker acknowledged the subscriptions (cleared while disconnected): what a test or
        # the benchmark waits for before publishing, since a broker keeps no non-retained message for later.
        self.ready = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._client: Any = None
        self._devices: dict[str, _Device] = {}
        self._last_log = 0.0
        self._unlogged = 0
        self._stopping = False

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        from edge_har.mqtt.client import describe_broker, make_client

        for record in self.store.devices():  # liveness continues from what the store knew
            self._devices[record.device_id] = _Device(record.status, record.stats_at, record.stats_interval_s)
        self.started_at = self.clock()
        self._stop.clear()
        self._stopping = False
        client_id = f"edge-har-serve-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        client = make_client(self.mqtt_cfg, client_id)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client
        self._thread = threading.Thread(target=self._run, name="edge-har-web-ingest", daemon=True)
        self._thread.start()
        log.info(
            "ingest: subscribing to %s/+/prediction|status|stats on %s", self.prefix, describe_broker(self.mqtt_cfg)
        )
        client.connect_async(self.mqtt_cfg.host, self.mqtt_cfg.port, keepalive=self.mqtt_cfg.keepalive)
        client.loop_start()

    def stop(self, timeout: float = 10.0) -> None:
        """Disconnect, then write what was already received before returning."""
        self._stopping = True  # the disconnect that follows is ours, not a lost broker
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def broker_state(self) -> dict[str, Any]:
        from edge_har.mqtt.client import describe_broker

        return {
            "configured": True,
            "address": describe_broker(self.mqtt_cfg),
            "connected": self.counters.connected,
            "subscribed": self.ready.is_set(),
            "last_problem": self.counters.last_problem,
        }

    # ------------------------------------------------------------------ paho's thread

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            self.counters.connected = False
            self._problem(f"broker refused the connection: {reason}")
            return
        self.counters.connected = True
        # Subscriptions are not restored after a reconnect with a clean session: subscribe every time.
        client.subscribe([(f"{self.prefix}/+/{kind}", 1) for kind in ("prediction", "status", "stats")])
        self.hub.publish({"type": "broker", **self.broker_state()})
        log.info("ingest: connected to the broker")

    def _on_subscribe(self, _client: Any, _userdata: Any, _mid: Any, reasons: Any, _props: Any = None) -> None:
        refused = [r for r in reasons if getattr(r, "is_failure", False)]
        if refused:
            self._problem(f"broker refused the subscription to {self.prefix}/+/...: {refused[0]} (check its ACL)")
            return
        self.ready.set()

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        self.ready.clear()
        if self._stopping:
            log.info("ingest: disconnected from the broker")
        elif self.counters.connected:
            log.warning("ingest: lost the broker (%s); paho reconnects", reason)
        self.counters.connected = False
        self.hub.publish({"type": "broker", **self.broker_state()})

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        self.counters.received += 1
        try:
            self._inbox.put_nowait((message.topic, bytes(message.payload), self.clock()))
        except queue.Full:
            self.counters.dropped_full += 1
            self._problem(f"ingest queue full ({self._inbox.maxsize}): messages dropped")

    # ------------------------------------------------------------------ the ingest thread

    def _run(self) -> None:
        next_prune = 0.0
        next_sweep = 0.0
        pending = _Batch()
        while True:
            stopping = self._stop.is_set()
            if not pending.rows and not pending.events:
                pending = self._collect(0.0 if stopping else 0.5)
            if pending.rows or pending.events:
                if self._write(pending):
                    pending = _Batch()
                elif stopping:
                    break  # the database is down at shutdown: the rows stay unwritten (counted in db_errors)
                else:
                    self._stop.wait(1.0)  # database outage: hold the batch, retry
                    continue
            elif stopping:
                break
            now = self.clock()
            if now >= next_sweep:
                self._sweep(now)
                next_sweep = now + 1.0
            if now >= next_prune:
                self._prune(now)
                next_prune = now + PRUNE_EVERY_S

    def _collect(self, wait_s: float) -> _Batch:
        """Up to batch_max messages: the first within wait_s, the rest within flush_s after it."""
        batch = _Batch()
        try:
            first = self._inbox.get(timeout=wait_s) if wait_s > 0 else self._inbox.get_nowait()
        except queue.Empty:
            return batch
        deadline = time.monotonic() + self.flush_s
        self._decode(*first, batch)
        taken = 1
        while taken < self.batch_max:
            left = deadline - time.monotonic()
            try:
                item = self._inbox.get(timeout=left) if left > 0 else self._inbox.get_nowait()
            except queue.Empty:
                break
            self._decode(*item, batch)
            taken += 1
        return batch

    def _decode(self, topic: str, payload: bytes, received_at: float, batch: _Batch) -> None:
        parts = topic.split("/")
        device_id, kind = (parts[-2], parts[-1]) if len(parts) >= 3 else ("", "")
        try:
            if kind == "status":
                self._decode_status(device_id, payload, received_at, batch)
            elif kind in ("prediction", "stats"):
                data = json.loads(payload.decode("utf-8"))
                if not isinstance(data, dict):
                    raise ValueError("JSON but not an object")
                if kind == "prediction":
                    self._decode_prediction(device_id, data, received_at, batch)
                else:
                    self._decode_stats(device_id, data, received_at, batch)
            else:
                raise ValueError("not a prediction, status or stats topic")
        except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
            self.counters.malformed += 1
            self._problem(f"{topic}: malformed payload ({str(exc)[:120]})")

    def _decode_prediction(self, device_id: str, data: dict[str, Any], received_at: float, batch: _Batch) -> None:
        problems = validate_prediction(data)
        if problems:
            raise ValueError("; ".join(problems[:3]))
        if data["device_id"] != device_id:
            raise ValueError(f"device_id {data['device_id']!r} is not the topic's {device_id!r}")
        row = {
            "device_id": device_id,
            "run_id": data.get("run_id") or "",
            "seq": int(data["seq"]),
            "ts": float(data["window_end_ts"]),
            "label": data["label"],
            "confidence": float(data["confidence"]),
            "probabilities": {str(k): float(v) for k, v in data["probabilities"].items()},
            "model_id": data["model_id"],
            "variant": data.get("variant"),
            "inference_ms": float(data["inference_ms"]),
            "received_at": received_at,
        }
        batch.rows.append(row)

    def _decode_status(self, device_id: str, payload: bytes, received_at: float, batch: _Batch) -> None:
        text = payload.decode("utf-8").strip()
        if not text:
            return  # a retained status cleared on the broker: nothing to record
        if len(text) > MAX_STATUS_LEN or text.startswith("{"):
            raise ValueError(f"status is a short word (online, stopped, offline), got {text[:40]!r}")
        batch.events.append({"type": "status", "device_id": device_id, "status": text, "at": received_at})

    def _decode_stats(self, device_id: str, data: dict[str, Any], received_at: float, batch: _Batch) -> None:
        if data.get("device_id", device_id) != device_id:
            raise ValueError(f"device_id {data.get('device_id')!r} is not the topic's {device_id!r}")
        batch.events.append({"type": "stats", "device_id": device_id, "stats": data, "at": received_at})

    def _write(self, batch: _Batch) -> bool:
        """Store the batch, then tell the browsers; False (batch kept) when the database failed."""
        import sqlalchemy as sa

        try:
            for event in batch.events:  # status and stats first: few, and the live page orders by arrival
                if event["type"] == "status" and "_done" not in event:
                    self.store.set_status(event["device_id"], event["status"], event["at"])
                elif event["type"] == "stats" and "_done" not in event:
                    self.store.set_stats(event["device_id"], event["stats"], event["at"])
                event["_done"] = True  # a retry after a database error does not record it twice
            added = self.store.add_predictions(batch.rows)
        except sa.exc.SQLAlchemyError as exc:
            self.counters.db_errors += 1
            self._problem(f"database {self.store.describe()}: {str(getattr(exc, 'orig', exc)).strip()[:200]}")
            return False
        self.counters.stored += added
        self.counters.predictions += len(batch.rows)
        for event in batch.events:
            event.pop("_done", None)
            device = self._devices.setdefault(event["device_id"], _Device())
            if event["type"] == "status":
                self.counters.statuses += 1
                device.status = event["status"]
            else:
                self.counters.stats += 1
                device.stats_at = event["at"]
                interval = _num(event["stats"].get("stats_interval_s"))
                device.stats_interval_s = interval if interval is not None else device.stats_interval_s
                event["stats"] = stats_brief(event["stats"])
            event["liveness"] = self.liveness(event["device_id"], event["at"])
            device.liveness = event["liveness"]
            self.hub.publish(event)
        if batch.rows:
            for row in batch.rows:
                self._devices.setdefault(row["device_id"], _Device())
            keys = ("device_id", "run_id", "seq", "ts", "label", "confidence", "model_id")
            items = [{k: r[k] for k in keys} for r in batch.rows]
            self.hub.publish({"type": "predictions", "items": items})
        return True

    def liveness(self, device_id: str, now: float) -> str:
        device = self._devices.get(device_id) or _Device()
        return device_liveness(
            device.status,
            now=now,
            last_stats_at=device.stats_at,
            stats_interval_s=device.stats_interval_s,
            watching_since=self.started_at,
        )

    def _sweep(self, now: float) -> None:
        """Push liveness changes that no message announces (``online`` turning ``stale``)."""
        for device_id, device in self._devices.items():
            shown = self.liveness(device_id, now)
            if device.liveness is not None and shown != device.liveness:
                self.hub.publish({"type": "liveness", "device_id": device_id, "liveness": shown, "at": now})
            device.liveness = shown

    def _prune(self, now: float) -> None:
        import sqlalchemy as sa

        try:
            deleted = self.store.prune(now)
        except sa.exc.SQLAlchemyError as exc:
            self._problem(f"retention: cannot delete old rows: {str(getattr(exc, 'orig', exc)).strip()[:200]}")
            return
        if deleted:
            log.info("retention: deleted %d rows older than %g days", deleted, self.store.retention_days)

    def _problem(self, text: str) -> None:
        """Log a problem now, or count it until LOG_EVERY_S has passed (a flood logs one line a minute)."""
        self.counters.last_problem = text
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_S or self._last_log == 0.0:
            more = f" (and {self._unlogged} more problems since the last report)" if self._unlogged else ""
            log.warning("ingest: %s%s", text, more)
            self._last_log = now
            self._unlogged = 0
        else:
            self._unlogged += 1


def _num(value: Any) -> Optional[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None
