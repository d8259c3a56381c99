"""Fleet suite: many simulated devices against one real broker, every message accounted for.

What a trial does, precisely:

* **devices**: N of the daemon's own :class:`edge_har.mqtt.publisher.Publisher`, each with its
  own device id, client id, topics, retained status and Last Will, spread over a few publisher
  processes (``--workers``; one Python process cannot use more than one core, and paho's
  ``select()`` loop limits a process to about 300 connections). Each device publishes real
  prediction payloads (:func:`edge_har.mqtt.payloads.prediction_payload`, 14 labels like the HMP
  model) at ``--rate`` per second for ``--duration`` seconds with ``--qos``; the devices of a
  process are spread evenly over each period, so the broker sees a steady stream, not bursts.
  ``window_end_ts`` of each payload is the wall-clock time it was made.
* **subscribers**: ``--subscribers`` processes, each subscribed to its share of the devices'
  prediction topics with the same QoS, count every message by ``(device_id, run_id, seq)``:
  ``received`` (all deliveries), ``duplicated`` (a key seen again), ``out_of_order`` (a seq lower
  than one already received from the same run), and the delivery latency: arrival time minus the
  payload's ``window_end_ts`` (same host, same clock).
* **accounting**: ``sent`` is what the devices handed to their Publisher; ``lost`` is sent minus
  the distinct keys received, after the publishers stopped (each waits for its broker
  acknowledgements) and the subscribers drained. The Publisher's own counters (published,
  dropped while offline, still queued, reconnects) are summed beside it.
* **CPU**: ``psutil`` CPU time of the broker (private broker only), of the publisher processes and
  of the subscriber processes over the publishing period, in percent of one core.

The **search** (``--search``) steps the device count up (doubling) at ``--search-rate`` (10/s by
default) until a trial is not sustained, then bisects between the last sustained count and the
first failure, within ``--search-budget-s``. A trial is *sustained* when nothing was lost or
dropped, every device connected, the devices published at least 98% on time and ran at most
``--max-p99-ms`` behind their schedule (p99; the simulated devices share the machine's cores with
the broker, and a late load generator offers less than asked), and the delivery p99 stayed under
``--max-p99-ms``. The result is the largest sustained count found.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import os
import resource
import time
import uuid
from array import array
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from edge_har.benchmarks import report
from edge_har.core.errors import EdgeHarError

log = logging.getLogger(__name__)

# The HMP model's classes: a real prediction payload carries every label's probability.
LABELS = (
    "Brush_teeth",
    "Climb_stairs",
    "Comb_hair",
    "Descend_stairs",
    "Drink_glass",
    "Eat_meat",
    "Eat_soup",
    "Getup_bed",
    "Liedown_bed",
    "Pour_water",
    "Sitdown_chair",
    "Standup_chair",
    "Use_telephone",
    "Walk",
)
MODEL_ID = "bench-fleet-model"
# paho's network loop uses select(), which cannot watch descriptors above 1023; each Publisher
# holds a socket and paho's wake-up socket pair (3 descriptors), so one process stays well under.
MAX_DEVICES_PER_WORKER = 250
ACHIEVED_RATE_MIN = 0.98  # a trial whose devices kept less of their schedule is not sustained


class FleetError(EdgeHarError, RuntimeError):
    """The suite cannot run here (no mosquitto, a broker that refuses the devices); the message says why."""


@dataclass
class FleetSettings:
    devices: int = 100
    rate_hz: float = 10.0
    duration_s: float = 60.0
    qos: int = 1
    broker: Optional[str] = None  # HOST:PORT of an existing broker; None: a private mosquitto
    mosquitto: Optional[str] = None
    workers: Optional[int] = None  # publisher processes; None: see workers_for
    subscribers: int = 1
    connect_timeout_s: float = 60.0
    drain_timeout_s: float = 15.0
    max_p99_ms: float = 1000.0
    search: bool = False
    search_rate_hz: float = 10.0
    search_start: int = 50
    search_trial_s: float = 15.0
    search_budget_s: float = 300.0
    search_max_devices: int = 20000
    search_resolution: float = 0.1  # stop bisecting when the gap is under this share of the count
    progress: bool = True


def workers_for(devices: int, requested: Optional[int] = None) -> int:
    """Publisher processes for ``devices``: as asked, else one per core, and enough for the select() bound."""
    if requested:
        wanted = requested
    else:
        wanted = os.cpu_count() or 1
    return max(1, min(devices, max(wanted, math.ceil(devices / MAX_DEVICES_PER_WORKER))))


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to the hard limit (inherited by the broker and the workers)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return int(soft)


# ====================================================================== counting


class Tally:
    """Every delivery counted by ``(device_id, run_id, seq)``: distinct, duplicated, out of order, latency.

    A delivery whose key was seen before is a duplicate (QoS 1 re-delivery) and adds no latency
    sample; a new key whose seq is below the highest seq already received from that run is out of
    order (it still counts as received).
    """

    def __init__(self) -> None:
        self.received = 0
        self.duplicated = 0
        self.out_of_order = 0
        self.unparsable = 0
        self.seen: dict[tuple[str, str], set[int]] = {}
        self.highest: dict[tuple[str, str], int] = {}
        self.latencies_ms = array("d")

    def add(self, device_id: str, run_id: str, seq: int, made_ts: float, at: float) -> None:
        self.received += 1
        key = (device_id, run_id)
        seen = self.seen.get(key)
        if seen is None:
            seen = self.seen[key] = set()
        if seq in seen:
            self.duplicated += 1
            return
        seen.add(seq)
        if seq < self.highest.get(key, -1):
            self.out_of_order += 1
        else:
            self.highest[key] = seq
        self.latencies_ms.append(1000.0 * (at - made_ts))

    def add_payload(self, data: bytes, at: float) -> None:
        try:
            payload = json.loads(data)
            self.add(
                str(payload["device_id"]),
                str(payload.get("run_id") or ""),
                int(payload["seq"]),
                float(payload["window_end_ts"]),
                at,
            )
        except (ValueError, KeyError, TypeError):
            self.received += 1
            self.unparsable += 1

    def distinct(self) -> int:
        return sum(len(s) for s in self.seen.values())

    def summary(self) -> dict[str, Any]:
        """What a subscriber process reports: counts, distinct keys per device and run, latencies."""
        return {
            "received": self.received,
            "duplicated": self.duplicated,
            "out_of_order": self.out_of_order,
            "unparsable": self.unparsable,
            "distinct": {f"{d}\x00{r}": len(s) for (d, r), s in self.seen.items()},
            "latencies_ms": self.latencies_ms.tobytes(),
        }


# ====================================================================== processes


def _child_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(processName)s %(levelname)s %(name)s: %(message)s")
    # A forked child inherits the caller's levels: one "connected" line per simulated device is noise.
    logging.getLogger("edge_har").setLevel(logging.WARNING)


def subscriber_main(spec: dict[str, Any], conn: Any) -> None:
    """A subscriber process: count every prediction on its topic filters until told to finish."""
    _child_logging()
    import threading

    from edge_har.mqtt.client import make_client
    from edge_har.mqtt.config import MqttConfig

    tally = Tally()
    lock = threading.Lock()
    subscribed = threading.Event()
    cfg = MqttConfig(host=spec["host"], port=spec["port"], keepalive=30, reconnect_min_s=0.2, reconnect_max_s=2)
    client = make_client(cfg, spec["client_id"])
    filters = [(topic, spec["qos"]) for topic in spec["topics"]]

    def on_connect(c: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if not reason_code.is_failure:
            c.subscribe(filters)

    def on_message(c: Any, userdata: Any, message: Any) -> None:
        at = time.time()
        with lock:
            tally.add_payload(message.payload, at)

    client.on_connect = on_connect
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = on_message
    client.connect_async(spec["host"], spec["port"], keepalive=30)
    client.loop_start()
    try:
        if not subscribed.wait(spec["connect_timeout_s"]):
            conn.send(("error", f"subscriber could not subscribe on {spec['host']}:{spec['port']}"))
            return
        conn.send(("ready", None))
        expected: Optional[int] = None
        deadline = math.inf
        last_count, last_change = 0, time.monotonic()
        while True:
            if conn.poll(0.5):
                message = conn.recv()
                if message[0] == "finish":
                    expected, quiet_s = message[1], message[2]
                    deadline = time.monotonic() + message[3]
                elif message[0] == "abort":
                    break
            with lock:
                got, distinct = tally.received, tally.distinct()
            now = time.monotonic()
            if got != last_count:
                last_count, last_change = got, now
            if expected is None:
                if spec["progress"]:
                    conn.send(("progress", got))
                continue
            # done: everything arrived, or nothing new for a while, or out of time
            if distinct >= expected or now - last_change >= quiet_s or now >= deadline:
                break
        with lock:
            conn.send(("done", tally.summary()))
    finally:
        client.disconnect()
        client.loop_stop()


def _probabilities(seq: int, offset: int) -> dict[str, float]:
    n = len(LABELS)
    top = (seq // 20 + offset) % n  # the activity changes every 20 windows
    rest = 0.2 / (n - 1)
    return {label: (0.8 if i == top else rest) for i, label in enumerate(LABELS)}


def publisher_main(spec: dict[str, Any], conn: Any) -> None:
    """A publisher process: its devices connect, publish on schedule from ``t0`` to ``t_end``, stop cleanly."""
    _child_logging()
    from edge_har.mqtt.config import MqttConfig
    from edge_har.mqtt.payloads import prediction_payload
    from edge_har.mqtt.publisher import Publisher

    cfg = MqttConfig(
        host=spec["host"],
        port=spec["port"],
        topic_prefix=spec["topic_prefix"],
        qos={"prediction": spec["qos"], "status": 1, "stats": 0},
        keepalive=30,
        reconnect_min_s=0.5,
        reconnect_max_s=5,
        queue_size=100000,
    )
    devices = list(spec["device_ids"])
    publishers = [
        Publisher(cfg.model_copy(update={"client_id": f"{spec['client_prefix']}-{d}"}), d, MODEL_ID, LABELS)
        for d in devices
    ]
    try:
        for publisher in publishers:
            publisher.start()
        deadline = time.monotonic() + spec["connect_timeout_s"]
        for publisher in publishers:
            publisher.wait_connected(max(0.0, deadline - time.monotonic()))
        connected = sum(p.connected for p in publishers)
        conn.send(("ready", {"connected": connected, "devices": len(publishers)}))
        message = conn.recv()
        if message[0] != "go":
            return
        t0, t_end, rate = message[1], message[2], spec["rate_hz"]
        n = len(publishers)
        sent = [0] * n
        in_window = 0  # published before t_end: a late generator sends the rest after it
        lateness = array("d")
        k = 0
        running = True
        while running:
            for i, publisher in enumerate(publishers):
                due = t0 + (k + i / n) / rate
                if due >= t_end:
                    running = False
                    break
                delay = due - time.time()
                if delay > 0.0005:
                    time.sleep(delay)
                elif delay < 0:
                    lateness.append(-1000.0 * delay)
                payload = prediction_payload(
                    device_id=devices[i],
                    model_id=MODEL_ID,
                    variant="int8",
                    run_id=publisher.run_id,
                    seq=k,
                    window_end_ts=time.time(),
                    label=LABELS[(k // 20 + i) % len(LABELS)],
                    confidence=0.8,
                    probabilities=_probabilities(k, i),
                    inference_ms=0.05,
                    e2e_ms=0.6,
                )
                publisher.publish_prediction(payload)
                sent[i] += 1
                if payload["window_end_ts"] < t_end:
                    in_window += 1
            k += 1
        scheduled = sum(max(0, math.ceil((t_end - t0) * rate - i / n)) for i in range(n))
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda p: p.stop(timeout=spec["drain_timeout_s"]), publishers))
        counters = [p.counters() for p in publishers]
        late = np.frombuffer(lateness.tobytes(), dtype=np.float64) if len(lateness) else np.zeros(0)
        conn.send(
            (
                "done",
                {
                    "devices": [
                        {"device_id": d, "run_id": p.run_id, "sent": s, "mqtt": c}
                        for d, p, s, c in zip(devices, publishers, sent, counters)
                    ],
                    "scheduled": scheduled,
                    "sent_in_window": in_window,
                    "late_publishes": int(late.size),
                    "lateness_ms_p99": float(np.percentile(late, 99)) if late.size else 0.0,
                    "lateness_ms_max": float(late.max()) if late.size else 0.0,
                },
            )
        )
    finally:
        for publisher in publishers:
            publisher.stop(timeout=0.5)


# ====================================================================== one trial


@dataclass
class _Proc:
    proc: Any
    conn: Any
    ps: Any = None
    cpu0: float = 0.0
    cpu1: float = 0.0


def _cpu_seconds(ps: Any) -> float:
    try:
        t = ps.cpu_times()
        return float(t.user + t.system)
    except Exception:  # the process is gone: its last figure stands
        return math.nan


def _recv(item: _Proc, timeout: float, what: str, on_progress: Optional[Callable[[Any], None]] = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if item.conn.poll(0.2):
            kind, value = item.conn.recv()
            if kind == "progress":
                if on_progress:
                    on_progress(value)
                continue
            if kind == "error":
                raise FleetError(value)
            return kind, value
        if not item.proc.is_alive():
            raise FleetError(f"{what} process exited with status {item.proc.exitcode}")
    raise FleetError(f"{what} did not answer within {timeout:g} s")


def run_trial(
    settings: FleetSettings,
    host: str,
    port: int,
    devices: int,
    rate_hz: float,
    duration_s: float,
    broker_pid: Optional[int] = None,
) -> dict[str, Any]:
    """One fleet run: ``devices`` Publishers at ``rate_hz`` for ``duration_s``; returns the trial's row."""
    import psutil

    # fork: no re-import of the caller's main module (a script without a __main__ guard works), and
    # quick; this process holds no threads or broker connections when it forks.
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context("spawn")
    nonce = uuid.uuid4().hex[:6]
    n_workers = workers_for(devices, settings.workers)
    n_subs = max(1, min(settings.subscribers, n_workers))
    groups = [list(range(w, devices, n_workers)) for w in range(n_workers)]
    prefix = f"edge-har-fleet/{nonce}"
    subs: list[_Proc] = []
    workers: list[_Proc] = []
    started = time.perf_counter()
    row: dict[str, Any] = {
        "devices": devices,
        "rate_hz": rate_hz,
        "duration_s": duration_s,
        "qos": settings.qos,
        "publisher_processes": n_workers,
        "subscriber_processes": n_subs,
    }
    try:
        for s in range(n_subs):
            topics = [f"{prefix}/g{w}/+/prediction" for w in range(n_workers) if w % n_subs == s]
            spec = {
                "host": host,
                "port": port,
                "qos": settings.qos,
                "topics": topics,
                "client_id": f"fleet-sub-{nonce}-{s}",
                "connect_timeout_s": settings.connect_timeout_s,
                "progress": settings.progress,
            }
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=subscriber_main, args=(spec, child), name=f"fleet-sub-{s}", daemon=True)
            proc.start()
            subs.append(_Proc(proc, parent))
        for sub in subs:
            _recv(sub, settings.connect_timeout_s + 30, "a subscriber")
        for w, members in enumerate(groups):
            spec = {
                "host": host,
                "port": port,
                "qos": settings.qos,
                "topic_prefix": f"{prefix}/g{w}",
                "client_prefix": f"fleet-{nonce}",
                "device_ids": [f"dev-{i:05d}" for i in members],
                "rate_hz": rate_hz,
                "connect_timeout_s": settings.connect_timeout_s,
                "drain_timeout_s": settings.drain_timeout_s,
            }
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=publisher_main, args=(spec, child), name=f"fleet-pub-{w}", daemon=True)
            proc.start()
            workers.append(_Proc(proc, parent))
        connected = 0
        for worker in workers:
            _, ready = _recv(worker, settings.connect_timeout_s + 60, "a publisher")
            connected += ready["connected"]
        row["connected"] = connected
        row["connect_s"] = time.perf_counter() - started
        if connected < devices:
            log.warning(
                "fleet: only %d of %d devices connected within %g s", connected, devices, settings.connect_timeout_s
            )

        for item in workers + subs:
            item.ps = psutil.Process(item.proc.pid)
        broker_ps = psutil.Process(broker_pid) if broker_pid else None
        t0 = time.time() + 0.5
        t_end = t0 + duration_s
        for worker in workers:
            worker.conn.send(("go", t0, t_end))
        time.sleep(max(0.0, t0 - time.time()))
        for item in workers + subs:
            item.cpu0 = _cpu_seconds(item.ps)
        broker0 = _cpu_seconds(broker_ps) if broker_ps else math.nan
        received_so_far = [0] * len(subs)
        next_note = time.time() + 10
        while time.time() < t_end:
            for i, sub in enumerate(subs):
                while sub.conn.poll(0):
                    kind, value = sub.conn.recv()
                    if kind == "progress":
                        received_so_far[i] = value
            if settings.progress and time.time() >= next_note:
                next_note += 10
                report.stderr(
                    f"fleet: {devices} devices x {rate_hz:g}/s: {time.time() - t0:.0f}/{duration_s:g} s, "
                    f"{sum(received_so_far)} received"
                )
            time.sleep(min(0.5, max(0.0, t_end - time.time())))
        for item in workers + subs:
            item.cpu1 = _cpu_seconds(item.ps)
        broker1 = _cpu_seconds(broker_ps) if broker_ps else math.nan
        measured = time.time() - t0

        reports = [_recv(w, settings.drain_timeout_s + 60 + devices * 0.01, "a publisher")[1] for w in workers]
        sent_by_key = {(d["device_id"], d["run_id"]): d["sent"] for r in reports for d in r["devices"]}
        sub_of_worker = {w: w % n_subs for w in range(n_workers)}
        for s, sub in enumerate(subs):
            expected = sum(d["sent"] for w, r in enumerate(reports) if sub_of_worker[w] == s for d in r["devices"])
            sub.conn.send(("finish", expected, 3.0, settings.drain_timeout_s))
        tallies = [_recv(s, settings.drain_timeout_s + 30, "a subscriber")[1] for s in subs]
    finally:
        for item in workers + subs:
            if item.proc.is_alive():
                try:
                    item.conn.send(("abort", None))
                except (OSError, ValueError):
                    pass
        for item in workers + subs:
            item.proc.join(10)
            if item.proc.is_alive():
                item.proc.kill()
                item.proc.join(5)

    distinct: dict[tuple[str, str], int] = {}
    for t in tallies:
        for key, count in t["distinct"].items():
            device_id, run_id = key.split("\x00")
            distinct[(device_id, run_id)] = distinct.get((device_id, run_id), 0) + count
    sent = sum(sent_by_key.values())
    unique = sum(min(distinct.get(k, 0), v) for k, v in sent_by_key.items())
    unexpected = sum(v for k, v in distinct.items() if k not in sent_by_key)
    latencies = np.concatenate([np.frombuffer(t["latencies_ms"], dtype=np.float64) for t in tallies])
    counters = [d["mqtt"] for r in reports for d in r["devices"]]
    scheduled = sum(r["scheduled"] for r in reports)
    cores = os.cpu_count() or 1

    def cpu_percent(items: Sequence[_Proc]) -> Optional[float]:
        total = sum(i.cpu1 - i.cpu0 for i in items)
        return None if not math.isfinite(total) else 100.0 * total / measured

    row.update(
        {
            "measured_s": measured,
            "scheduled": scheduled,
            "sent": sent,
            "achieved_rate": sum(r["sent_in_window"] for r in reports) / scheduled if scheduled else None,
            "received": sum(t["received"] for t in tallies),
            "distinct": unique,
            "lost": sent - unique,
            "duplicated": sum(t["duplicated"] for t in tallies),
            "out_of_order": sum(t["out_of_order"] for t in tallies),
            "unparsable": sum(t["unparsable"] for t in tallies),
            "unexpected": unexpected,
            "messages_per_s": sent / measured if measured > 0 else None,
            "latency_ms": report.latency_summary(latencies),
            "publisher": {
                "published": sum(c["published"] for c in counters),
                "dropped_offline": sum(c["dropped_offline"] for c in counters),
                "queued_at_end": sum(c["queued"] + c["inflight"] for c in counters),
                "reconnects": sum(c["reconnects"] for c in counters),
                "late_publishes": sum(r["late_publishes"] for r in reports),
                "lateness_ms_p99_worst": max((r["lateness_ms_p99"] for r in reports), default=0.0),
                "lateness_ms_max": max((r["lateness_ms_max"] for r in reports), default=0.0),
            },
            "cpu_percent_of_one_core": {
                "broker": None if not math.isfinite(broker1 - broker0) else 100.0 * (broker1 - broker0) / measured,
                "publishers": cpu_percent(workers),
                "subscribers": cpu_percent(subs),
                "machine_cores": cores,
            },
            "seconds": time.perf_counter() - started,
        }
    )
    row["sustained"], row["verdict"] = _verdict(row, settings.max_p99_ms)
    return row


def _verdict(row: dict[str, Any], max_p99_ms: float) -> tuple[bool, str]:
    """Whether this trial's load was carried, and if not the first reason why."""
    p99 = row["latency_ms"].get("p99_ms")
    if row.get("connected", 0) < row["devices"]:
        return False, f"only {row.get('connected')} of {row['devices']} devices connected"
    if row["lost"]:
        return False, f"{row['lost']} lost"
    if row["publisher"]["dropped_offline"]:
        return False, f"{row['publisher']['dropped_offline']} dropped by the publishers' queues"
    if row["achieved_rate"] is not None and row["achieved_rate"] < ACHIEVED_RATE_MIN:
        return (
            False,
            f"the devices sent only {100 * row['achieved_rate']:.1f}% on time (the load generator is CPU-bound)",
        )
    late = row["publisher"]["lateness_ms_p99_worst"]
    if late > max_p99_ms:
        return False, f"the devices ran {late:.0f} ms behind their schedule (p99; the load generator is CPU-bound)"
    if p99 is None or not math.isfinite(p99) or p99 > max_p99_ms:
        return False, f"delivery p99 {p99:.0f} ms > {max_p99_ms:g} ms" if p99 is not None else "nothing received"
    return True, "sustained"


# ====================================================================== the search


def search_capacity(
    trial: Callable[[int], dict[str, Any]],
    start: int,
    budget_s: float,
    max_devices: int,
    resolution: float = 0.1,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Step the device count up (doubling) until a trial fails, then bisect; stop when the budget runs out.

    A trial is started only when the previous trial's duration still fits in the budget, so the
    total stays near ``budget_s``. Returns the largest sustained count found (None when even
    ``start`` failed and nothing smaller did either), the smallest failing count, and every step.
    """
    began = clock()
    steps: list[dict[str, Any]] = []
    good: Optional[int] = None
    bad: Optional[int] = None
    n = max(1, min(start, max_devices))
    last_cost = 0.0
    stopped = "budget spent"
    while True:
        if steps and clock() - began + last_cost > budget_s:
            break
        t = clock()
        row = trial(n)
        last_cost = clock() - t
        steps.append(row)
        if row["sustained"]:
            good = n if good is None else max(good, n)
        else:
            bad = n if bad is None else min(bad, n)
        if bad is None:
            if n >= max_devices:
                stopped = f"reached the maximum of {max_devices} devices"
                break
            n = min(max_devices, 2 * n)
        elif good is None:
            if bad <= 1:
                stopped = "even one device was not sustained"
                break
            n = max(1, bad // 2)
        else:
            if bad - good <= max(1, int(resolution * good)):
                stopped = f"bracketed to within {100 * resolution:g}%"
                break
            n = (good + bad) // 2
    return {
        "largest_sustained": good,
        "smallest_failing": bad,
        "stopped": stopped,
        "seconds": clock() - began,
        "steps": steps,
    }


# ====================================================================== the suite


def parse_broker(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise FleetError(f"--broker {text!r}: expected HOST:PORT")
    try:
        number = int(port)
    except ValueError:
        raise FleetError(f"--broker {text!r}: the port {port!r} is not a number") from None
    if not 1 <= number <= 65535:
        raise FleetError(f"--broker {text!r}: the port must be 1-65535")
    return host, number


def run_fleet(settings: FleetSettings, work_dir: str | Path | None = None) -> dict[str, Any]:
    """The main trial, then the search if asked; returns the suite's results section."""
    import tempfile

    from edge_har.mqtt.local_broker import BrokerError, LocalBroker

    started = time.perf_counter()
    section = report.suite_header("fleet")
    section["settings"] = asdict(settings)
    section["definition"] = {
        "sent": "predictions the simulated devices handed to their Publisher (the daemon's own class)",
        "received": "deliveries counted by the subscribers, duplicates included",
        "lost": "sent minus the distinct (device_id, run_id, seq) received, after the publishers stopped "
        "and the subscribers drained",
        "duplicated": "deliveries of a (device_id, run_id, seq) already received (QoS 1 re-delivery)",
        "out_of_order": "first deliveries whose seq is below one already received from the same run",
        "latency_ms": "subscriber's time.time() at arrival minus the payload's window_end_ts, the time the "
        "payload was made; same machine, same clock",
        "cpu_percent_of_one_core": "psutil CPU time over the publishing period / its length: 100 = one core",
        "achieved_rate": "predictions published before the end of the period / scheduled",
        "devices_late_p99_ms": "how far behind its schedule a device published (p99 of the worst publisher process): "
        "the load generator's own lag, not the broker's",
        "sustained": f"nothing lost or dropped, every device connected, >= {100 * ACHIEVED_RATE_MIN:g}% published on "
        f"time, devices' lateness p99 and delivery p99 <= max_p99_ms ({settings.max_p99_ms:g} ms)",
    }
    section["fd_limit"] = raise_fd_limit()
    broker: Optional[LocalBroker] = None
    with tempfile.TemporaryDirectory(prefix="edge-har-fleet-", dir=work_dir) as tmp:
        if settings.broker:
            host, port = parse_broker(settings.broker)
            _check_reachable(host, port)
            section["broker"] = {"address": f"{host}:{port}", "private": False}
            pid = None
        else:
            try:
                broker = LocalBroker(tmp, binary=settings.mosquitto).start()
            except BrokerError as exc:
                raise FleetError(f"{exc} (bench fleet starts its own broker on a free loopback port)") from exc
            host, port = broker.host, broker.port
            assert broker.proc is not None
            pid = broker.proc.pid
            section["broker"] = {
                "address": broker.address,
                "private": True,
                "binary": broker.binary,
                "version": _mosquitto_version(broker.binary),
                "config": broker.config_text().splitlines(),
            }
        try:
            if settings.progress:
                report.stderr(
                    f"fleet: {settings.devices} devices x {settings.rate_hz:g}/s for {settings.duration_s:g} s "
                    f"(QoS {settings.qos}) against {host}:{port} ..."
                )
            section["runs"] = [
                run_trial(settings, host, port, settings.devices, settings.rate_hz, settings.duration_s, pid)
            ]
            if settings.search:

                def trial(n: int) -> dict[str, Any]:
                    if settings.progress:
                        report.stderr(f"fleet search: {n} devices x {settings.search_rate_hz:g}/s ...")
                    row = run_trial(settings, host, port, n, settings.search_rate_hz, settings.search_trial_s, pid)
                    if settings.progress:
                        report.stderr(f"fleet search: {n} devices: {row['verdict']}")
                    return row

                section["search"] = search_capacity(
                    trial,
                    settings.search_start,
                    settings.search_budget_s,
                    settings.search_max_devices,
                    settings.search_resolution,
                )
                section["search"]["rate_hz"] = settings.search_rate_hz
                section["search"]["trial_s"] = settings.search_trial_s
        finally:
            if broker is not None:
                section["broker"]["log_tail"] = broker.log_text()[-2000:]
                broker.stop()
    return report.finish_section(section, started)


def _check_reachable(host: str, port: int, timeout: float = 5.0) -> None:
    """Fail at once, naming the address, rather than after every device's connect timeout."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise FleetError(f"--broker {host}:{port}: cannot connect: {exc}") from exc


def _mosquitto_version(binary: str) -> Optional[str]:
    from edge_har.benchmarks.e2e import _mosquitto_version as version

    return version(binary)


# ====================================================================== output


def _f(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def _table_rows(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in rows:
        lat = r["latency_ms"]
        cpu = r["cpu_percent_of_one_core"]
        out.append(
            [
                str(r["devices"]),
                f"{r['rate_hz']:g}",
                f"{r['duration_s']:g}",
                str(r["sent"]),
                str(r["received"]),
                str(r["lost"]),
                str(r["duplicated"]),
                str(r["out_of_order"]),
                _f(lat.get("p50_ms"), 2),
                _f(lat.get("p99_ms"), 2),
                _f(r.get("messages_per_s"), 0),
                _f(r["publisher"].get("lateness_ms_p99_worst"), 1),
                _f(cpu.get("broker")),
                _f(cpu.get("publishers")),
                _f(cpu.get("subscribers")),
                r["verdict"],
            ]
        )
    return out


HEADERS = [
    "devices",
    "rate/s",
    "s",
    "sent",
    "received",
    "lost",
    "dup",
    "out of order",
    "latency p50 ms",
    "latency p99 ms",
    "msg/s",
    "devices late p99 ms",
    "broker CPU %",
    "publishers CPU %",
    "subscribers CPU %",
    "verdict",
]


def format_fleet(section: dict[str, Any]) -> str:
    parts = [report.context_lines(section)]
    broker = section.get("broker") or {}
    parts.append(
        f"broker: {broker.get('version') or 'external'} at {broker.get('address')}"
        f"{' (private, this run)' if broker.get('private') else ''}; CPU in % of one core "
        f"({(section.get('machine') or {}).get('cores_logical')} cores)"
    )
    parts.append(report.format_table(HEADERS, _table_rows(section.get("runs", [])), title="Fleet (QoS 1 unless said)"))
    search = section.get("search")
    if search:
        steps = sorted(search["steps"], key=lambda r: r["devices"])
        parts.append(
            report.format_table(
                HEADERS,
                _table_rows(steps),
                title=f"Search at {search['rate_hz']:g} predictions/s per device, {search['trial_s']:g} s per trial",
            )
        )
        parts.append(
            f"largest device count sustained without loss: {search['largest_sustained']}"
            f" (smallest failing: {search['smallest_failing']}; {search['stopped']}; {search['seconds']:.0f} s)"
        )
    return "\n\n".join(parts)


def fleet_png(section: dict[str, Any], path: str | Path) -> Optional[Path]:
    """Devices against lost share and delivery p99: the search's steps and the main run."""
    rows = list(section.get("runs", [])) + list((section.get("search") or {}).get("steps", []))
    rows = [r for r in rows if r.get("sent")]
    if not rows:
        return None
    rows.sort(key=lambda r: r["devices"])
    plt = report._pyplot()  # noqa: SLF001 - the suites' one matplotlib loader
    fig, ax = plt.subplots(figsize=(7, 4))
    try:
        x = np.array([r["devices"] for r in rows], dtype=float)
        loss = np.array([100.0 * r["lost"] / r["sent"] for r in rows])
        p99 = np.array([r["latency_ms"].get("p99_ms") or np.nan for r in rows], dtype=float)
        ax.plot(x, loss, "o-", color="tab:red", label="lost %")
        ax.set_xlabel("devices")
        ax.set_ylabel("lost, % of sent", color="tab:red")
        ax.set_ylim(0, max(1.0, float(loss.max()) * 1.2))  # zero loss sits on the axis, not mid-chart
        ax.set_xscale("log")
        ax2 = ax.twinx()
        ax2.plot(x, p99, "s--", color="tab:blue", label="delivery p99 ms")
        ax2.set_ylabel("delivery p99, ms", color="tab:blue")
        ax2.set_yscale("log")
        ax.set_title("Fleet: devices vs loss and delivery latency", fontsize=10)
        ax.grid(True, alpha=0.3)
        return report.save_figure(fig, path)
    finally:
        plt.close(fig)
