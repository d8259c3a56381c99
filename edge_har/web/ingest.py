"""MQTT -> store -> browsers: the live half of ``edge-har serve`` that runs beside the web requests.

Three parties with different speeds meet here, so each gets its own hand-off:

* **paho's network thread** (:mod:`edge_har.web.fast_mqtt`: whole socket chunks, plain PUBLISH packets
  decoded without paho's per-message objects) decodes no payload and waits for nothing: ``on_message``
  puts the raw message on a bounded queue (full: dropped and counted, never a stalled keepalive that would get the
  subscriber disconnected and lose every QoS 1 message in flight).
* **the ingest thread** drains that queue in batches (up to :data:`BATCH_MAX` messages or
  :data:`FLUSH_S` seconds, or fewer once the broker's in-flight window is all held), checks each message
  against what it is stored as (:mod:`edge_har.web.ingest_checks`), writes the batch in one transaction,
  then acknowledges its QoS 1 messages to the broker (one write for the batch) and tells the browsers.
  Nothing a message holds can stop it: a message that fails a check is counted by reason and by device,
  with the last :data:`SAMPLES_MAX` kept as samples, and logged at most every :data:`LOG_EVERY_S`
  seconds; an unexpected error on one message is counted (``internal_error``) and the loop goes on.
  A row the database refuses as data is set aside (the batch halved until it is alone) and counted
  (``db_rejected``); only a lost database is an outage, which holds the batch and retries it with
  backoff (:data:`RETRY_MIN_S` doubling to :data:`RETRY_MAX_S`, so ingest resumes within a couple of
  seconds of the database coming back), so nothing read from the broker is lost.
* **the browsers** (server-sent events, asyncio) each have a bounded queue in :class:`Hub`; the ingest
  thread hands events over with ``loop.call_soon_threadsafe``, so it never waits for a browser. A browser
  that falls a queue behind gets its queue replaced by one ``resync`` event (reload the device list)
  instead of making ingest or the other browsers wait.

Nothing is lost across restarts of the broker or of serve within the broker's bounds: the subscription
is a persistent session under a fixed client id (:func:`default_client_id`), so the broker queues QoS 1
predictions while serve is away (up to its ``max_queued_messages``). A QoS 1 message is acknowledged only
once its batch is committed (or it is rejected and counted), so a serve killed with messages in hand
gets them again from the broker on its next start: the broker keeps at most its in-flight window
unacknowledged (:data:`RECEIVE_MAXIMUM` under MQTT 5; mosquitto's ``max_inflight_messages`` under 3.1.1)
and queues the rest, which is also the backpressure while the database is away (``unacked`` in
:meth:`Ingest.status`). An acknowledgement is sent on the connection its message came on, never a later
one: the broker re-sends what an earlier connection left unacknowledged, and a message id it has reused
must not be acknowledged for a message serve has not stored. What is lost upstream anyway (beyond
that queue, or a device's own) shows as gaps in each run's ``seq``, counted in the store's seq books
(:meth:`edge_har.web.store.Store.write_predictions`) and shown by :meth:`Ingest.status` and per device.

With ``--ingest-processes N`` the predictions come through an MQTT shared subscription that the web
process shares with N - 1 worker processes (:mod:`edge_har.web.ingest_worker`: why status and stats stay
here, how the books of every process are added up and how the Live page still gets every prediction).

Liveness follows :func:`edge_har.mqtt.liveness.device_liveness` (the retained status and Last Will,
stale after three stats intervals without stats), re-judged every second so ``stale`` is pushed too.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional

from edge_har.mqtt.bounded_json import RejectedMessage
from edge_har.mqtt.liveness import device_liveness
from edge_har.web.config import ServeConfig
from edge_har.web.event_queries import public_event
from edge_har.web.ingest_checks import (
    DEVICE_ID,
    KINDS,
    SeqRef,
    Topic,
    check_event,
    check_prediction,
    check_stats,
    check_status,
    parse_topic,
    seq_ref,
)
from edge_har.web.store import SeqBook, Store, finite_number

__all__ = ["Hub", "Ingest", "IngestCounters", "default_client_id", "stats_brief"]

log = logging.getLogger("edge_har.web.ingest")

BATCH_MAX = 1000  # messages per database transaction
FLUSH_S = 0.1  # longest a message waits for its batch to fill (what the live page lags behind at most)
QUEUE_MAX = 100_000  # messages between paho and the ingest thread (~0.5 kB each)
CLIENT_QUEUE_MAX = 500  # events waiting for one browser before it is told to resync
LOG_EVERY_S = 60.0  # a flood of malformed payloads logs one line a minute, with the count
PRUNE_EVERY_S = 3600.0
RETRY_MIN_S = 0.5  # first wait after a failed write to an unreachable database; doubles up to RETRY_MAX_S
RETRY_MAX_S = 2.0  # a database back from an outage is written to again within this (one failed connect per try)
# MQTT 5 Receive Maximum: QoS 1 messages the broker sends ahead of serve's acknowledgements. Two batches, so
# the next batch arrives while one is written; a kill -9 gets at most this many re-delivered (as duplicates).
RECEIVE_MAXIMUM = 2 * BATCH_MAX
QUIET_S = 0.01  # with the broker's window unknown (MQTT 3.1.1), a batch this quiet is flushed: the window may be full
SAMPLES_MAX = 20  # the last rejections shown with their reason
BY_DEVICE_MAX = 100  # devices counted by name in rejected_by_device; the rest under "(other)"
SESSION_TAKEN_OVER = 142  # MQTT 5 DISCONNECT reason: another client connected with this client id
TOPICS_MAX = 100_000  # parsed topics kept; past this the cache starts over (a flood of made-up device ids)
SHORT_LINK_S = 5.0  # a link closed this soon after connecting, three times running, is a client id taken over


# The counters status() adds up over the ingest processes.
_SUMMED = (
    "received",
    "stored",
    "duplicates",
    "statuses",
    "stats",
    "events",
    "event_duplicates",
    "rejected_predictions",
    "dropped_full",
    "queued",
    "unacked",
    "loop_errors",
    "predictions",
    "malformed",
    "db_errors",
)


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
    """What arrived and what became of it (``/api/devices`` shows these under ``ingest``; :meth:`Ingest.status`
    has the full books)."""

    received: int = 0
    predictions: int = 0  # well-formed predictions written (re-deliveries included): stored + duplicates
    stored: int = 0  # rows new to the store
    duplicates: int = 0  # rows the store already had (QoS 1 re-deliveries)
    statuses: int = 0
    stats: int = 0
    events: int = 0  # event messages stored (a fall)
    event_duplicates: int = 0  # event messages the store already held (QoS 1 re-deliveries)
    malformed: int = 0  # messages refused by a check (rejected, less db_rejected and internal_error)
    dropped_full: int = 0  # the queue to the ingest thread was full
    db_errors: int = 0  # failed attempts to write while the database was unreachable
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
class _Row:
    topic: str
    row: dict[str, Any]


@dataclass
class _Batch:
    rows: list[_Row] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    refused: list[SeqRef] = field(default_factory=list)  # rejected predictions whose seq the books count

    def __len__(self) -> int:
        """Messages held (refused ones are already accounted for)."""
        return len(self.rows) + len(self.events)


class _Ack(NamedTuple):
    """What acknowledges one QoS 1 message: the link (connection) it came on, its packet id, its QoS."""

    link: int
    mid: int
    qos: int


class _Outage(Exception):
    """The database is unreachable (a lost connection, not a row it refuses): hold the batch, retry."""


def _is_outage(exc: BaseException) -> bool:
    """A lost or unusable connection, which a retry may cure; False for a row the database refuses as data.

    Data errors (out of range, too long, not null, a value the driver cannot bind: ``DataError``,
    ``IntegrityError``, a bind ``OverflowError`` or ``StatementError``) are about the row and would fail
    forever; everything else from the driver (connection lost, disk full, permissions, a table gone) is
    about the database and is retried with backoff.
    """
    import sqlalchemy as sa

    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        return not isinstance(exc, (sa.exc.DataError, sa.exc.IntegrityError))
    return isinstance(exc, (sa.exc.DisconnectionError, sa.exc.TimeoutError, sa.exc.ResourceClosedError))


def _is_data_error(exc: BaseException) -> bool:
    import sqlalchemy as sa

    return isinstance(exc, (sa.exc.SQLAlchemyError, OverflowError, ValueError, TypeError, UnicodeError, RecursionError))


def stats_brief(stats: Optional[Mapping[str, Any]]) -> Optional[dict[str, Any]]:
    """The figures the live page shows of a stats payload (missing or unservable ones are None).

    Whatever is stored (an older version kept stats as they came: 400-digit integers, NaN) gives numbers
    JSON can carry, so no stored stats can break a device listing.
    """
    if not isinstance(stats, Mapping):
        return None
    inference = stats.get("inference_ms")
    mqtt = stats.get("mqtt")
    return {
        "windows_per_s": finite_number(stats.get("windows_per_s")),
        "inference_p50_ms": finite_number(inference.get("p50")) if isinstance(inference, Mapping) else None,
        "queue_depth": finite_number(stats.get("queue_depth")),
        "reconnects": finite_number(mqtt.get("reconnects")) if isinstance(mqtt, Mapping) else None,
        "uptime_s": finite_number(stats.get("uptime_s")),
        "ts": finite_number(stats.get("ts")),
    }


# OS thread names (``top -H``, /proc/<pid>/task/<tid>/comm) of the two threads that do the ingest's work, so
# its CPU can be told from the web requests' in the same process (the benchmark reads them).
INGEST_THREAD = "edge-har-ingest"
MQTT_THREAD = "edge-har-mqtt"


def name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` (at most 15 bytes) as its OS name, on Linux; elsewhere nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # 15: PR_SET_NAME
    except (OSError, AttributeError):
        pass


def default_client_id(prefix: str) -> str:
    """``edge-har-serve-<host name>-<topic prefix>``: the same on every start of serve on this host, so its
    persistent session is resumed, and different for another host or another fleet on the same broker."""
    raw = f"edge-har-serve-{socket.gethostname() or 'host'}-{prefix}"
    return re.sub(r"[^A-Za-z0-9._-]", "-", raw)[:100]


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
        receive_maximum: Optional[int] = None,
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
        base_id = cfg.client_id or default_client_id(cfg.topic_prefix)
        # Several processes: predictions through a shared subscription (each process its own session); the
        # web process keeps status and stats, which a broker sends no shared subscription retained.
        self.shared = cfg.ingest_processes > 1 or cfg.ingest_only
        self.group = re.sub(r"[^A-Za-z0-9_-]", "-", base_id)[:100]
        self._worker_prefix = f"{base_id[:120]}-w"
        self.client_id = f"{self._worker_prefix}{cfg.worker_index}" if cfg.ingest_only else base_id
        self._workers: Any = None  # the worker processes this web process started
        self._peers: list[dict[str, Any]] = []  # the workers' last books (the web process's view)
        self._feed: Any = None  # the rows every process stored, for the Live page (shared mode, while watched)
        self._inbox: queue.Queue[tuple[str, bytes, float, Optional[_Ack]]] = queue.Queue(queue_max)
        self._stop = threading.Event()
        # Set once the broker acknowledged the subscriptions (cleared while disconnected): what a test or
        # the benchmark waits for before publishing, since a broker keeps no non-retained message for later.
        self.ready = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._client: Any = None
        self._devices: dict[str, _Device] = {}
        self._topics: dict[str, Topic] = {}  # topics already parsed (a fleet's few thousand, bounded)
        self._last_log = 0.0
        self._unlogged = 0
        self._stopping = False
        self._pending = _Batch()
        self._holding = 0  # messages taken from the inbox and not yet accounted for
        self._lock = threading.Lock()  # the books below are read by request threads
        self._rejected: dict[str, int] = {}
        self._rejected_predictions = 0
        self._rejected_by_device: dict[str, int] = {}
        self._samples: deque[dict[str, Any]] = deque(maxlen=SAMPLES_MAX)
        self._gaps: dict[str, dict[str, int]] = {}  # device -> run -> gaps
        self._gap_total = 0
        self._loop_errors = 0
        self._db: dict[str, Any] = {"state": "ok", "outages": 0, "last_error": None, "set_aside": 0}
        self._backoff = RETRY_MIN_S
        self._connected_at = 0.0
        self._short_links = 0  # consecutive links the broker closed within SHORT_LINK_S of connecting
        # Acknowledgements: QoS 1 messages taken into the pending batch are acknowledged once it is accounted
        # for. The window is what the broker sends unacknowledged (None: the broker's own, not known here).
        window = RECEIVE_MAXIMUM if receive_maximum is None else receive_maximum
        self.window: Optional[int] = window if cfg.mqtt.protocol == "5" else None
        self._taken: list[_Ack] = []  # the ingest thread's: messages in the pending batch still to acknowledge
        self._ack_lock = threading.Lock()  # the link generation and the window's count, across both threads
        self._link = 0  # bumped at each disconnect: an acknowledgement is sent on its message's link only
        self._unacked = 0  # messages received on the current link and not yet acknowledged
        self._acked = 0
        self._ack_stale = 0  # messages written after their link closed: the broker sends them again

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        from edge_har.mqtt.client import describe_broker, make_client
        from edge_har.web.fast_mqtt import speed_up

        for record in self.store.devices():  # liveness continues from what the store knew
            self._devices[record.device_id] = _Device(record.status, record.stats_at, record.stats_interval_s)
        self._restore_books(self.store.seq_books())
        self.started_at = self.clock()
        self._stop.clear()
        self._stopping = False
        self._taken = []  # acknowledgements for an earlier link are void: the broker re-sends those messages
        client = speed_up(
            make_client(
                self.mqtt_cfg,
                self.client_id,
                session_expiry_s=self.cfg.session_expiry_s or None,
                manual_ack=True,
                receive_maximum=self.window,
            )
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client
        self._thread = threading.Thread(target=self._run, name="edge-har-web-ingest", daemon=True)
        self._thread.start()
        session = (
            f"persistent session {self.client_id!r}, kept {self.cfg.session_expiry_s} s while away"
            if self.cfg.session_expiry_s
            else f"clean session {self.client_id!r}"
        )
        log.info(
            "ingest: subscribing to %s/+/prediction|status|stats on %s (%s)",
            self.prefix,
            describe_broker(self.mqtt_cfg),
            session,
        )
        client.connect_async(self.mqtt_cfg.host, self.mqtt_cfg.port, keepalive=self.mqtt_cfg.keepalive)
        client.loop_start()
        if self.cfg.ingest_processes > 1 and not self.cfg.ingest_only:
            from edge_har.web.ingest_worker import Workers

            self._workers = Workers(self.cfg)
            self._workers.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what was already received and acknowledge it, then disconnect.

        What arrives from here on is left unacknowledged (the broker sends it again on the next start of a
        persistent session); so is what the database does not take before ``timeout``.
        """
        self._stopping = True  # the disconnect that follows is ours, not a lost broker
        self._stop.set()
        if self._workers is not None:
            self._workers.stop()
            self._workers = None
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._client is not None:
            self._client.disconnect()  # sent after the acknowledgements queued before it
            self._client.loop_stop()
            self._client = None

    def broker_state(self) -> dict[str, Any]:
        from edge_har.mqtt.client import describe_broker

        return {
            "configured": True,
            "address": describe_broker(self.mqtt_cfg),
            "connected": self.counters.connected,
            "subscribed": self.ready.is_set(),
            "last_problem": self.counters.last_problem,
        }

    def status(self) -> dict[str, Any]:
        """The books of every ingest process together (:meth:`_own_status` plus the workers'), with
        ``processes`` listing each (one entry without workers)."""
        own = self._own_status()
        with self._lock:
            peers = list(self._peers)
        entry = {"worker": self.client_id, "connected": own["connected"], "stored": own["stored"], "updated_at": None}
        own["processes"] = [entry] + [
            {k: p.get(k) for k in ("worker", "connected", "stored", "updated_at")} for p in peers
        ]
        for peer in peers:
            for key in _SUMMED:
                if isinstance(peer.get(key), int):
                    own[key] += peer[key]
            for key in ("rejected", "rejected_by_device"):
                for name, n in (peer.get(key) or {}).items():
                    if isinstance(n, int):
                        own[key][name] = own[key].get(name, 0) + n
            own["samples"] = (own["samples"] + list(peer.get("samples") or []))[-SAMPLES_MAX:]
            own["connected"] = own["connected"] and bool(peer.get("connected"))
        return own

    def _own_status(self) -> dict[str, Any]:
        """This process's books (``GET /api/ingest``). Once devices stop and ``queued`` is 0::

        received == stored + duplicates + sum(rejected) + statuses + stats + events + event_duplicates
                    + dropped_full + queued
        published (per prediction sent once) == stored + rejected_predictions + gaps
        """
        c = self.counters
        with self._lock:
            rejected = dict(self._rejected)
            by_device = dict(self._rejected_by_device)
            samples = list(self._samples)
            gaps = self._gap_total
            rejected_predictions = self._rejected_predictions
            db = dict(self._db)
        return {
            "configured": True,
            "connected": c.connected,
            "subscribed": self.ready.is_set(),
            "last_problem": c.last_problem,
            "client_id": self.client_id,
            "received": c.received,
            "stored": c.stored,
            "duplicates": c.duplicates,
            "statuses": c.statuses,
            "stats": c.stats,
            "events": c.events,
            "event_duplicates": c.event_duplicates,
            "rejected": rejected,
            "rejected_predictions": rejected_predictions,
            "rejected_by_device": by_device,
            "samples": samples,
            "gaps": gaps,
            "dropped_full": c.dropped_full,
            "queued": self._inbox.qsize() + self._holding,
            # QoS 1 messages received and not yet acknowledged to the broker (written or counted first); at
            # ``window`` the broker sends no more and queues the rest (within its max_queued_messages)
            "unacked": self._unacked,
            "window": self.window,
            "loop_errors": self._loop_errors,
            "db": db,
            # the older names, which the benchmark reads
            "predictions": c.predictions,
            "malformed": c.malformed,
            "db_errors": c.db_errors,
        }

    def device_books(self, device_id: str) -> dict[str, int]:
        """``gaps`` (over every run of the device in the store) and ``rejected`` (since start, every process)."""
        with self._lock:
            runs = self._gaps.get(device_id)
            rejected = self._rejected_by_device.get(device_id, 0)
            for peer in self._peers:
                n = (peer.get("rejected_by_device") or {}).get(device_id, 0)
                rejected += n if isinstance(n, int) else 0
            return {"gaps": sum(runs.values()) if runs else 0, "rejected": rejected}

    # ------------------------------------------------------------------ paho's thread

    def _on_connect(self, client: Any, _userdata: Any, flags: Any, reason: Any, _props: Any = None) -> None:
        name_os_thread(MQTT_THREAD)  # paho's network thread
        if getattr(reason, "is_failure", False):
            self.counters.connected = False
            self._problem(f"broker refused the connection: {reason}")
            return
        self.counters.connected = True
        self._connected_at = time.monotonic()
        # Subscribed every time: a clean session (or an expired one) keeps no subscription. The prediction
        # subscription of the other mode is dropped, so a session resumed after a change of --ingest-processes
        # does not get every prediction twice.
        plain, shared = f"{self.prefix}/+/prediction", f"$share/{self.group}/{self.prefix}/+/prediction"
        client.unsubscribe(plain if self.shared else shared)
        topics = [(shared if self.shared else plain, 1)]
        if not self.cfg.ingest_only:
            topics += [(f"{self.prefix}/+/{kind}", 1) for kind in KINDS if kind != "prediction"]
        client.subscribe(topics)
        self.hub.publish({"type": "broker", **self.broker_state()})
        resumed = bool(getattr(flags, "session_present", False))
        log.info("ingest: connected to the broker (%s)", "session resumed" if resumed else "new session")

    def _on_subscribe(self, _client: Any, _userdata: Any, _mid: Any, reasons: Any, _props: Any = None) -> None:
        refused = [r for r in reasons if getattr(r, "is_failure", False)]
        if refused:
            self._problem(f"broker refused the subscription to {self.prefix}/+/...: {refused[0]} (check its ACL)")
            return
        self.ready.set()

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any = None) -> None:
        self.ready.clear()
        with self._ack_lock:  # what this link left unacknowledged, the broker sends again on the next one
            self._link += 1
            self._unacked = 0
        lasted = time.monotonic() - self._connected_at
        self._short_links = self._short_links + 1 if lasted < SHORT_LINK_S else 0
        if self._stopping:
            log.info("ingest: disconnected from the broker")
        elif getattr(reason, "value", None) == SESSION_TAKEN_OVER or self._short_links >= 3:
            # Two clients with one id take the session from each other at every reconnect (mosquitto closes
            # the older connection without a reason): say so once a minute instead of a line per reconnect.
            self._problem(
                f"the broker closed the link {self._short_links} times just after connecting: another client "
                f"connected with the client id {self.client_id!r} and took the session over (a second serve "
                "on this broker?): give each serve its own --client-id"
            )
        elif self.counters.connected:
            log.warning("ingest: lost the broker (%s); paho reconnects", reason)
        self.counters.connected = False
        self.hub.publish({"type": "broker", **self.broker_state()})

    def _on_message(self, client: Any, _userdata: Any, message: Any) -> None:
        if self._stopping:  # not acknowledged: the next start of the session gets it from the broker
            return
        self.counters.received += 1
        ack: Optional[_Ack] = None
        if message.qos > 0:
            with self._ack_lock:
                ack = _Ack(self._link, message.mid, message.qos)
                self._unacked += 1
        try:
            topic = message.topic
        except UnicodeDecodeError:  # paho decodes the topic lazily; the broker should have refused it
            topic = "\ufffd"
        try:
            self._inbox.put_nowait((topic, bytes(message.payload), self.clock(), ack))
        except queue.Full:
            self.counters.dropped_full += 1
            self._problem(f"ingest queue full ({self._inbox.maxsize}): messages dropped")
            if ack is not None:  # counted as dropped: holding it would shrink the broker's window for good
                self._ack([ack], client)

    # ------------------------------------------------------------------ the ingest thread

    def _run(self) -> None:
        """The ingest loop; an unexpected error is counted, shown and survived, never the end of ingest."""
        name_os_thread(INGEST_THREAD)
        clock = {"sweep": 0.0, "prune": 0.0}
        while True:
            try:
                if self._step(clock):
                    return
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any bug
                self._loop_errors += 1
                self._problem(f"internal error in the ingest loop: {type(exc).__name__}: {exc}"[:300], exc=exc)
                self._stop.wait(0.5)

    def _step(self, clock: dict[str, float]) -> bool:
        """One round: collect, write, sweep, prune. True when the ingest is to end."""
        stopping = self._stop.is_set()
        if not len(self._pending) and not self._pending.refused:
            self._collect(0.0 if stopping else 0.5)
        if len(self._pending) or self._pending.refused:
            if not self._write(self._pending):
                if stopping:
                    return True  # the database is down at shutdown: unwritten and unacknowledged (queued)
                self._stop.wait(self._backoff)  # outage: hold the batch (unacknowledged), retry with backoff
                self._backoff = min(RETRY_MAX_S, self._backoff * 2)
                return False
            self._ack_taken()
        else:
            self._ack_taken()  # messages accounted for without a write (a cleared retained status)
            if stopping:
                return True
        now = self.clock()
        if self.shared and now >= clock.get("books", 0.0):
            self._share_books()
            clock["books"] = now + 1.0
        if self._workers is not None and now >= clock.get("live", 0.0):
            self._push_stored()
            clock["live"] = now + self.flush_s
        if now >= clock["sweep"]:
            self._sweep(now)
            clock["sweep"] = now + 1.0
        if now >= clock["prune"]:
            self._prune(now)
            clock["prune"] = now + PRUNE_EVERY_S
        return False

    def _collect(self, wait_s: float) -> None:
        """Up to batch_max messages into the pending batch: the first within wait_s, the rest within flush_s.

        The batch ends sooner when the broker can send no more before an acknowledgement (every message of
        its window is held here, or, with the window unknown, nothing arrived for QUIET_S) and on a stop.
        """
        try:
            first = self._inbox.get(timeout=wait_s) if wait_s > 0 else self._inbox.get_nowait()
        except queue.Empty:
            return
        deadline = time.monotonic() + self.flush_s
        self._take(first)
        taken = 1
        while taken < self.batch_max:
            left = deadline - time.monotonic()
            try:
                item = self._inbox.get(timeout=min(left, QUIET_S)) if left > 0 else self._inbox.get_nowait()
            except queue.Empty:
                if left > QUIET_S and not self._window_held() and not self._stop.is_set():
                    continue
                break
            self._take(item)
            taken += 1

    def _window_held(self) -> bool:
        """True when the broker may be waiting for acknowledgements before it sends more."""
        if self.window is None:
            return True
        with self._ack_lock:
            return self._unacked >= self.window

    def _take(self, item: tuple[str, bytes, float, Optional[_Ack]]) -> None:
        self._holding += 1
        topic, payload, received_at, ack = item
        if ack is not None:
            self._taken.append(ack)
        self._decode(topic, payload, received_at, self._pending)

    def _ack_taken(self) -> None:
        """Acknowledge the messages of the batch just accounted for (stored, duplicates, rejected, set aside)."""
        if self._taken:
            taken, self._taken = self._taken, []
            self._ack(taken, self._client)

    def _ack(self, acks: list[_Ack], client: Any) -> None:
        """PUBACK each message on the link it came on; one from a closed link is left for its re-delivery.

        paho queues the packet for its network thread (``ack`` is safe from any thread); the lock orders it
        before the disconnect that bumps the link, and paho drops what is queued when it reconnects.
        """
        from edge_har.web.fast_mqtt import ack_many

        with self._ack_lock:
            mids = [ack.mid for ack in acks if ack.link == self._link and ack.qos == 1] if client is not None else []
            others = [ack for ack in acks if ack.link == self._link and ack.qos != 1] if client is not None else []
            ack_many(client, mids)  # one write for the batch, not a packet and a wake-up each
            for ack in others:
                client.ack(ack.mid, ack.qos)
            sent = len(mids) + len(others)
            self._unacked -= sent
            self._acked += sent
            self._ack_stale += len(acks) - sent

    def _decode(self, topic: str, payload: bytes, received_at: float, batch: _Batch) -> None:
        """Check one message into ``batch``; a message that fails any check is counted, never raised."""
        kind = ""
        device_id: Optional[str] = None
        try:
            where = self._topics.get(topic)
            if where is None:
                where = parse_topic(topic, self.prefix)
                if len(self._topics) >= TOPICS_MAX:
                    self._topics.clear()
                self._topics[topic] = where
            kind, device_id = where.kind, where.device_id
            if device_id is None:
                raise RejectedMessage("bad_device_id", f"{_shown(topic)}: the device id is not one the API accepts")
            if kind == "prediction":
                row = check_prediction(device_id, payload)
                row["received_at"] = received_at
                batch.rows.append(_Row(topic, row))
            elif kind == "status":
                text = check_status(payload)
                if not text:  # a retained status cleared on the broker: nothing to record
                    self.counters.statuses += 1
                    self._holding -= 1
                    return
                batch.events.append(
                    {"type": "status", "device_id": device_id, "status": text, "at": received_at, "topic": topic}
                )
            elif kind == "event":
                row = check_event(device_id, payload)
                row["received_at"] = received_at
                batch.events.append(
                    {"type": "event", "device_id": device_id, "event": row, "at": received_at, "topic": topic}
                )
            else:
                data = check_stats(device_id, payload)
                batch.events.append(
                    {"type": "stats", "device_id": device_id, "stats": data, "at": received_at, "topic": topic}
                )
        except RejectedMessage as exc:
            self._reject(topic, kind, device_id, exc.reason, exc.detail)
            if exc.reason not in ("too_large", "too_deep"):
                self._refused(kind, device_id, payload, batch)
        except Exception as exc:  # noqa: BLE001 - one message never ends the ingest
            self._reject(topic, kind, device_id, "internal_error", f"{type(exc).__name__}: {exc}", exc=exc)
            self._refused(kind, device_id, payload, batch)

    def _refused(self, kind: str, device_id: Optional[str], payload: bytes, batch: _Batch) -> None:
        """Note the seq of a rejected prediction where it is readable: it arrived, so it is no gap."""
        if kind != "prediction" or device_id is None:
            return
        try:
            ref = seq_ref(device_id, payload)
        except Exception:  # noqa: BLE001 - the books are best effort for a message already counted
            return
        if ref is not None:
            batch.refused.append(ref)

    def _reject(
        self,
        topic: str,
        kind: str,
        device_id: Optional[str],
        reason: str,
        detail: str,
        exc: Optional[BaseException] = None,
    ) -> None:
        """Count a message that will not be stored (by reason, by device, a sample) and log at most once a minute."""
        self._holding -= 1
        if reason not in ("db_rejected", "internal_error"):
            self.counters.malformed += 1
        device = device_id if device_id is not None else "(invalid id)"
        with self._lock:
            self._rejected[reason] = self._rejected.get(reason, 0) + 1
            if kind == "prediction":
                self._rejected_predictions += 1
            if device not in self._rejected_by_device and len(self._rejected_by_device) >= BY_DEVICE_MAX:
                device = "(other)"
            self._rejected_by_device[device] = self._rejected_by_device.get(device, 0) + 1
            self._samples.append({"at": self.clock(), "topic": _shown(topic), "reason": reason, "detail": detail[:300]})
        what = "malformed payload" if reason not in ("db_rejected", "internal_error") else reason.replace("_", " ")
        self._problem(f"{_shown(topic)}: {what} ({reason}: {detail[:200]})", exc=exc)

    # ------------------------------------------------------------------ writing

    def _write(self, batch: _Batch) -> bool:
        """Store the batch, then tell the browsers; False (the rest of the batch kept) on a database outage.

        A status, stats message or prediction row the database refuses as data is set aside (the batch is
        halved until the refused row is alone) and counted; the rest is stored.
        """
        try:
            while batch.events:  # status, stats and events first: few, and the live page orders by arrival
                event = batch.events[0]
                try:
                    new = self._write_event(event)
                except Exception as exc:  # noqa: BLE001 - classified below
                    if _is_outage(exc):
                        raise _Outage(_db_reason(exc)) from exc
                    batch.events.pop(0)
                    self._set_aside(event["topic"], event["type"], exc)
                    continue
                batch.events.pop(0)  # written: accounted for before anything else can fail
                self._holding -= 1
                self._published_event(event, new)
            self._write_rows(batch)
        except _Outage as exc:
            self.counters.db_errors += 1
            with self._lock:
                if self._db["state"] != "outage":
                    self._db["outages"] += 1
                self._db["state"] = "outage"
                self._db["last_error"] = str(exc)
            self._problem(
                f"database {self.store.describe()}: {exc} (retrying in {self._backoff:g} s; {self._unacked} "
                "messages held unacknowledged, the broker queues what follows)"
            )
            return False
        with self._lock:
            self._db["state"] = "ok"
        self._backoff = RETRY_MIN_S
        return True

    def _write_event(self, event: dict[str, Any]) -> bool:
        """Store a status, stats or event message; False for an event the store already held (a re-delivery)."""
        if event["type"] == "status":
            self.store.set_status(event["device_id"], event["status"], event["at"])
        elif event["type"] == "event":
            return self.store.add_event(event["event"])
        else:
            self.store.set_stats(event["device_id"], event["stats"], event["at"])
        return True

    def _write_rows(self, batch: _Batch) -> None:
        """Write batch.rows in chunks, halving a chunk the database refuses as data until the refused row is
        alone; what is written leaves the batch, so a retry after an outage writes only the rest."""
        chunks = [batch.rows] if batch.rows else []
        written: list[_Row] = []
        try:
            while chunks:
                chunk = chunks[-1]
                refused = [(r.device_id, r.run_id, r.seq) for r in batch.refused]
                try:
                    result = self.store.write_predictions([r.row for r in chunk], refused=refused)
                except Exception as exc:  # noqa: BLE001 - classified below
                    if _is_outage(exc):
                        raise _Outage(_db_reason(exc)) from exc
                    chunks.pop()
                    if len(chunk) > 1:
                        half = len(chunk) // 2
                        chunks += [chunk[half:], chunk[:half]]  # the first half next: rows stay in order
                    else:
                        self._set_aside(chunk[0].topic, "prediction", exc)
                        row = chunk[0].row
                        if row["run_id"]:
                            batch.refused.append(SeqRef(row["device_id"], row["run_id"], row["seq"]))
                    continue
                chunks.pop()
                batch.refused.clear()
                self._account(chunk, result.new, result.books)
                written += chunk
            if batch.refused:  # only refused predictions this time (or the last rows were set aside)
                refused = [(r.device_id, r.run_id, r.seq) for r in batch.refused]
                try:
                    result = self.store.write_predictions([], refused=refused, at=self.clock())
                except Exception as exc:  # noqa: BLE001 - classified below
                    if _is_outage(exc):
                        raise _Outage(_db_reason(exc)) from exc
                    self._problem(f"database refused the seq books: {_db_reason(exc)}")
                else:
                    self._account([], [], result.books)
                batch.refused.clear()
        finally:
            left = [row for chunk in chunks for row in chunk]
            batch.rows = left
            if written and self.hub.clients and not self.shared:  # shared: _push_stored pushes every process's
                keys = ("device_id", "run_id", "seq", "ts", "label", "confidence", "model_id")
                self.hub.publish({"type": "predictions", "items": [{k: r.row[k] for k in keys} for r in written]})

    def _share_books(self) -> None:
        """A worker writes its counters; the web process reads the workers' and the seq books they keep."""
        import sqlalchemy as sa

        from edge_har.web.ingest_worker import read_books, write_books

        try:
            if self.cfg.ingest_only:
                write_books(self.store, self.client_id, self._own_status())
            else:
                if self._workers is not None and not self._stopping:
                    self._workers.revive()
                peers = [  # this run's workers (a row from an earlier run is older than this start)
                    p
                    for p in read_books(self.store, self._worker_prefix)
                    if p.get("worker") != self.client_id and p["updated_at"] >= self.started_at - 1.0
                ]
                books = self.store.seq_books()
                with self._lock:
                    self._peers = peers
                self._restore_books(books)
        except sa.exc.SQLAlchemyError as exc:
            self._problem(f"the books of the ingest processes: {_db_reason(exc)}")

    def _push_stored(self) -> None:
        """Push the rows every process stored since the last look to the Live page (shared mode)."""
        import sqlalchemy as sa

        from edge_har.web.ingest_worker import StoredFeed, last_id

        try:
            if not self.hub.clients:
                self._feed = None  # nobody watching: no reads; a browser that connects starts from then
                return
            if self._feed is None:
                self._feed = StoredFeed(self.store, last_id(self.store))
            rows = self._feed.take(time.monotonic())
        except sa.exc.SQLAlchemyError as exc:
            self._problem(f"reading the stored rows for the live page: {_db_reason(exc)}")
            return
        if rows:
            self.hub.publish({"type": "predictions", "items": rows})

    def _account(self, chunk: list[_Row], new: list[bool], books: list[SeqBook]) -> None:
        added = sum(new)
        self.counters.stored += added
        self.counters.duplicates += len(chunk) - added
        self.counters.predictions += len(chunk)
        self._holding -= len(chunk)
        devices = self._devices
        for r in chunk:
            if r.row["device_id"] not in devices:
                devices[r.row["device_id"]] = _Device()
        with self._lock:
            for book in books:
                runs = self._gaps.setdefault(book.device_id, {})
                self._gap_total += book.gaps - runs.get(book.run_id, 0)
                runs[book.run_id] = book.gaps

    def _restore_books(self, books: list[SeqBook]) -> None:
        with self._lock:
            self._gaps = {}
            for book in books:
                self._gaps.setdefault(book.device_id, {})[book.run_id] = book.gaps
            self._gap_total = sum(book.gaps for book in books)

    def _set_aside(self, topic: str, kind: str, exc: BaseException) -> None:
        with self._lock:
            self._db["set_aside"] += 1
        reason = "db_rejected" if _is_data_error(exc) else "internal_error"
        parts = topic.split("/")
        device_id = parts[-2] if len(parts) >= 2 and DEVICE_ID.match(parts[-2]) else None
        self._reject(topic, kind, device_id, reason, _db_reason(exc), exc=exc if reason == "internal_error" else None)

    def _published_event(self, event: dict[str, Any], new: bool = True) -> None:
        device = self._devices.setdefault(event["device_id"], _Device())
        if event["type"] == "status":
            self.counters.statuses += 1
            device.status = event["status"]
        elif event["type"] == "event":
            if not new:  # a re-delivery: stored once, shown once
                self.counters.event_duplicates += 1
                return
            self.counters.events += 1
            event["event"] = public_event(event["event"])
        else:
            self.counters.stats += 1
            device.stats_at = event["at"]
            interval = finite_number(event["stats"].get("stats_interval_s"))
            device.stats_interval_s = interval if interval is not None else device.stats_interval_s
            event["stats"] = stats_brief(event["stats"])
        event.pop("topic", None)
        event["liveness"] = self.liveness(event["device_id"], event["at"])
        device.liveness = event["liveness"]
        self.hub.publish(event)

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
            self._problem(f"retention: cannot delete old rows: {_db_reason(exc)}")
            return
        if deleted:
            log.info("retention: deleted %d rows older than %g days", deleted, self.store.retention_days)
            self._restore_books(self.store.seq_books())

    def _problem(self, text: str, exc: Optional[BaseException] = None) -> None:
        """Log a problem now, or count it until LOG_EVERY_S has passed (a flood logs one line a minute)."""
        self.counters.last_problem = text
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_S or self._last_log == 0.0:
            more = f" (and {self._unlogged} more problems since the last report)" if self._unlogged else ""
            log.warning("ingest: %s%s", text, more, exc_info=exc)
            self._last_log = now
            self._unlogged = 0
        else:
            self._unlogged += 1


def _db_reason(exc: BaseException) -> str:
    """The driver's one-line reason (no statement dump) or the exception's own line."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    return f"{type(orig).__name__}: {text}"[:300]


def _shown(topic: str) -> str:
    """A topic as a log line or sample may show it: printable, at most 200 characters."""
    text = "".join(c if c.isprintable() and not "\ud800" <= c <= "\udfff" else "?" for c in topic[:200])
    return text + ("..." if len(topic) > 200 else "")
