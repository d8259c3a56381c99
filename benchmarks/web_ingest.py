"""Web ingest suite: how many predictions per second ``edge-har serve`` stores, and whether the page keeps up.

What a run does, precisely:

* **the server** is the real command, ``python -m edge_har serve --broker ... --db-path|--db-url ...``, in
  its own process, on a private mosquitto (a free loopback port) and a fresh database per backend: an
  SQLite file, and a new PostgreSQL database ``edge_har_bench_<random>`` (dropped afterwards) on
  ``--postgres-url``'s server.
* **the load**: one paho client (QoS 1, like the daemon's predictions) publishes real prediction
  payloads (:func:`edge_har.mqtt.payloads.prediction_payload`, 14 labels) for ``--devices`` device ids
  in turn, evenly paced, at each rate of ``--rates`` (predictions per second in total) for ``--trial-s``
  seconds. Rates step up on the same database, so later steps write into a table that already holds
  the earlier rows, as a server that has been up a while does.
* **stored/s**: rows new to the store during the publishing window (the server's ``ingest.stored``
  counter, read from ``/api/devices``) divided by the window; **drain s**: how long after the last
  publish the store held everything sent; **kept up**: drained within ``--max-drain-s`` (1 s: the
  backlog at the end was under a second's worth) and nothing dropped. Stepping stops after the first
  rate not kept up.
* **page responsiveness**: ``GET /api/devices`` (what the Live page loads: every device with its newest
  prediction and stats) every 100 ms from this process during each step: p50, p95 and max response time.

The ingest writes one transaction per batch (up to 1000 messages or 0.1 s), so the database sees a few
multi-row inserts per second, not one commit per prediction; that is what the figures measure. The load
generator and the server share the machine's cores with the broker.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from edge_har.benchmarks import report
from edge_har.benchmarks.fleet import LABELS  # the HMP model's classes, as the fleet suite sends them
from edge_har.core.errors import EdgeHarError

log = logging.getLogger(__name__)

DEFAULT_RATES = (250, 500, 1000, 2000, 3000, 4000, 6000)
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
# The ingest before its fast paths (orjson checks, driver-level inserts, buffered reads, batched PUBACKs).
BASELINE_REV = "636d327"
DRAIN_CLIENT_ID = "edge-har-bench-drain"


class WebIngestError(EdgeHarError, RuntimeError):
    """The suite cannot run (no mosquitto, no PostgreSQL, the server did not start): names what."""


@dataclass
class WebIngestSettings:
    rates: Sequence[int] = DEFAULT_RATES
    devices: int = 20
    trial_s: float = 10.0
    max_drain_s: float = 1.0  # a step is kept up when the store holds everything this soon after publishing stops
    wait_s: float = 10.0  # how long to wait for the store to catch up (to measure the drain beyond max_drain_s)
    backends: Sequence[str] = ("sqlite", "postgresql")
    postgres_url: str = DEFAULT_POSTGRES
    mosquitto: Optional[str] = None
    progress: bool = True
    # The drain comparison: a backlog of this many predictions queued for serve's persistent session while it
    # is away, then drained by the baseline's serve and by this checkout's, per store (0: skip it).
    backlog: int = 40_000
    baseline: Optional[str] = BASELINE_REV  # a git revision of this repository (None: this checkout only)
    processes: Sequence[int] = (1,)  # ingest processes (PostgreSQL only beyond 1)
    extra: dict[str, Any] = field(default_factory=dict)


def read_log_tail(path: Path, chars: int = 1500) -> str:
    """The end of a serve process's log, for an error or a result to show ("" when there is none yet)."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def stop_serve(proc: Optional[subprocess.Popen[bytes]]) -> None:
    """SIGTERM, then SIGKILL after 20 s: serve gets its chance to store what it holds and leave the broker."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class _Server:
    """``edge-har serve`` in its own process; ``devices()`` is one timed GET /api/devices."""

    def __init__(
        self, broker: str, db_args: list[str], workdir: Path, *, root: Optional[Path] = None, port: int = 0
    ) -> None:
        from edge_har.mqtt.local_broker import free_port

        self.port = port or free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"serve-{self.port}.log"
        argv = [sys.executable, "-m", "edge_har", "serve", "--port", str(self.port), "--broker", broker, *db_args]
        env = dict(os.environ)
        if root is not None:  # another checkout's package (the baseline), run from its folder
            env["PYTHONPATH"] = str(root)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(root) if root is not None else None
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise WebIngestError(f"edge-har serve exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                body, _ = self.devices()
                if body["broker"].get("subscribed"):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise WebIngestError(f"edge-har serve did not subscribe to the broker within 60 s: {self.log_tail()}")

    def devices(self) -> tuple[dict[str, Any], float]:
        started = time.perf_counter()
        with urllib.request.urlopen(self.url + "/api/devices", timeout=10) as response:
            body = json.loads(response.read())
        return body, (time.perf_counter() - started) * 1000.0

    def log_tail(self) -> str:
        return read_log_tail(self.log_path)

    def stop(self) -> None:
        stop_serve(self.proc)


class _Probe(threading.Thread):
    """GET /api/devices every 100 ms; keeps each response time and the last body."""

    def __init__(self, server: _Server) -> None:
        super().__init__(daemon=True, name="web-ingest-probe")
        self.server = server
        self.times_ms: list[float] = []
        self.errors = 0
        self.last: dict[str, Any] = {}
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                body, ms = self.server.devices()
                with self._lock:
                    self.times_ms.append(ms)
                    self.last = body
            except OSError:
                self.errors += 1
            self._halt.wait(0.1)

    def take(self) -> list[float]:
        with self._lock:
            times, self.times_ms = self.times_ms, []
        return times

    def stop(self) -> None:
        self._halt.set()
        self.join(15)


def _stored(server: _Server) -> tuple[int, dict[str, Any]]:
    body, _ = server.devices()
    ingest = body.get("ingest") or {}
    return int(ingest.get("stored", 0)), ingest


def _payloads(devices: int, rate: int, trial_s: float, seq0: int, run_id: str) -> list[tuple[str, bytes]]:
    """Every message of one step, made before it starts so the pacing measures publishing, not JSON."""
    from edge_har.mqtt.payloads import prediction_payload

    out = []
    start = time.time()
    for i in range(int(rate * trial_s)):
        device = f"bench-{i % devices:03d}"
        seq = seq0 + i // devices
        label = LABELS[(seq // 20 + i) % len(LABELS)]
        probabilities = {name: (0.87 if name == label else 0.01) for name in LABELS}
        payload = prediction_payload(
            device_id=device,
            model_id="bench-model",
            variant="int8",
            run_id=run_id,
            seq=seq,
            window_end_ts=start + seq * 0.5,
            label=label,
            confidence=0.87,
            probabilities=probabilities,
            inference_ms=0.8,
            e2e_ms=3.0,
        )
        out.append((f"edge-har/{device}/prediction", json.dumps(payload, separators=(",", ":")).encode()))
    return out


def _publisher(host: str, port: int) -> Any:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"bench-web-{uuid.uuid4().hex[:6]}"
    )
    client.max_inflight_messages_set(1000)  # paho's default of 20 would cap QoS 1 at 20 round trips
    client.connect(host, port, keepalive=60)
    client.loop_start()
    return client


def run_step(server: _Server, client: Any, probe: _Probe, settings: WebIngestSettings, rate: int, seq0: int) -> dict:
    """One rate: publish for trial_s, then wait up to wait_s for the store to hold everything."""
    messages = _payloads(settings.devices, rate, settings.trial_s, seq0, "bench0000001")
    stored_before, _ = _stored(server)
    probe.take()
    infos = []
    started = time.perf_counter()
    late_ms = 0.0
    for i, (topic, data) in enumerate(messages):
        due = started + i / rate
        ahead = due - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
        else:
            late_ms = max(late_ms, -ahead * 1000)
        infos.append(client.publish(topic, data, qos=1))
    published_s = time.perf_counter() - started
    stored_at_end, _ = _stored(server)
    for info in infos:
        info.wait_for_publish(30)
    acked_s = time.perf_counter() - started
    sent = len(messages)
    drain = None
    deadline = time.perf_counter() + settings.wait_s
    stored_now, ingest = _stored(server)
    while stored_now - stored_before < sent and time.perf_counter() < deadline:
        time.sleep(0.05)
        stored_now, ingest = _stored(server)
    if stored_now - stored_before >= sent:
        drain = max(0.0, time.perf_counter() - started - published_s)
    times = probe.take()
    window_stored = stored_at_end - stored_before
    row = {
        "rate": rate,
        "sent": sent,
        "published_per_s": sent / published_s,
        "acked_s": acked_s,
        "publisher_late_max_ms": late_ms,
        "stored": stored_now - stored_before,
        "stored_per_s": window_stored / published_s,
        "total_stored_per_s": (stored_now - stored_before) / (published_s + (drain or settings.wait_s)),
        "drain_s": drain,
        "dropped_full": ingest.get("dropped_full", 0),
        "malformed": ingest.get("malformed", 0),
        "db_errors": ingest.get("db_errors", 0),
        "devices_api": report.latency_summary(times),
        "devices_api_errors": probe.errors,
    }
    row["kept_up"] = bool(
        drain is not None and drain <= settings.max_drain_s and not row["dropped_full"] and not row["db_errors"]
    )
    return row


def _postgres_database(admin_url: str) -> tuple[str, Any]:
    """A fresh database on the server of ``admin_url``: (its URL, a function that drops it)."""
    import sqlalchemy as sa

    base = sa.engine.make_url(admin_url)
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"edge_har_bench_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.SQLAlchemyError as exc:
        admin.dispose()
        shown = base.render_as_string(hide_password=True)
        raise WebIngestError(
            f"--postgres-url {shown}: cannot create a database ({str(getattr(exc, 'orig', exc)).strip()[:200]}); "
            "or run with --backends sqlite"
        ) from None

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return base.set(database=name).render_as_string(hide_password=False), drop


def run_backend(backend: str, settings: WebIngestSettings, broker: Any, workdir: Path) -> dict[str, Any]:
    drop = None
    if backend == "sqlite":
        db_args = ["--db-path", str(workdir / "bench.sqlite3")]
        where = "SQLite (WAL) in a temporary folder"
    else:
        url, drop = _postgres_database(settings.postgres_url)
        db_args = ["--db-url", url]
        where = f"PostgreSQL {url.rsplit('@', 1)[-1]}"
    server = _Server(broker.address, db_args, workdir)
    client = _publisher(broker.host, broker.port)
    probe = _Probe(server)
    probe.start()
    rows = []
    try:
        seq0 = 0
        for rate in settings.rates:
            if settings.progress:
                report.stderr(f"web-ingest: {backend}: {rate}/s for {settings.trial_s:g} s ...")
            row = run_step(server, client, probe, settings, rate, seq0)
            rows.append(row)
            seq0 += row["sent"] // settings.devices + 1
            if settings.progress:
                report.stderr(
                    f"web-ingest: {backend}: {rate}/s -> stored {row['stored_per_s']:.0f}/s, drain "
                    f"{report.fmt(row['drain_s'], 2)} s, /api/devices p95 {row['devices_api']['p95_ms']:.1f} ms"
                )
            if not row["kept_up"]:
                break
    finally:
        probe.stop()
        client.disconnect()
        client.loop_stop()
        server.stop()
        log_tail = server.log_tail()
        if drop is not None:
            drop()
    kept = [r["rate"] for r in rows if r["kept_up"]]
    return {
        "backend": backend,
        "database": where,
        "steps": rows,
        "max_rate_kept_up": max(kept) if kept else None,
        "best_stored_per_s": max((r["stored_per_s"] for r in rows), default=None),
        "server_log_tail": log_tail,
    }


INGEST_THREADS = ("edge-har-ingest", "edge-har-mqtt")  # edge_har.web.ingest names its two threads so


def threads_cpu_s(pids: Sequence[int], names: Sequence[str] = INGEST_THREADS) -> Optional[float]:
    """CPU seconds of the threads called ``names`` in ``pids`` (Linux); None when there is none."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total, found = 0, False
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    text = f.read()
            except OSError:
                continue
            comm = text[text.index("(") + 1 : text.rindex(")")]
            if comm in names:
                fields = text.rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
                found = True
    return total / tick if found else None


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree = [pid]
    for member in tree:
        tree += [child for child, parent in parents.items() if parent == member and child not in tree]
    return tree


def tree_cpu_s(pid: int) -> Optional[float]:
    """CPU seconds (user + system) of ``pid`` and its descendants so far, from Linux's /proc; None elsewhere."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    procs: dict[int, tuple[int, int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        procs[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    if pid not in procs:
        return None
    tree, total = {pid}, 0
    grew = True
    while grew:
        grew = False
        for child, (parent, _) in procs.items():
            if parent in tree and child not in tree:
                tree.add(child)
                grew = True
    for member in tree:
        total += procs[member][1]
    return total / tick


def baseline_checkout(rev: str, workdir: Path) -> Path:
    """``rev`` of this repository as a detached git worktree under ``workdir`` (removed by the caller)."""
    here = Path(__file__).resolve().parent.parent
    path = workdir / f"baseline-{rev}"
    done = subprocess.run(
        ["git", "-C", str(here), "worktree", "add", "--detach", str(path), rev], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise WebIngestError(f"--baseline {rev}: git worktree add failed: {done.stderr.strip()[:300]}")
    return path


def remove_checkout(path: Path) -> None:
    here = Path(__file__).resolve().parent.parent
    subprocess.run(["git", "-C", str(here), "worktree", "remove", "--force", str(path)], capture_output=True)


def _db_count(url: str) -> tuple[int, int]:
    """(rows, distinct (device, run, seq)) in the predictions table of ``url``."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT count(*) FROM predictions")).scalar() or 0
            distinct = (
                conn.execute(
                    sa.text("SELECT count(*) FROM (SELECT DISTINCT device_id, run_id, seq FROM predictions) AS d")
                ).scalar()
                or 0
            )
    finally:
        engine.dispose()
    return int(rows), int(distinct)


def run_drain(
    code: str, root: Optional[Path], backend: str, processes: int, settings: WebIngestSettings, workdir: Path
) -> dict[str, Any]:
    """One drain: queue ``backlog`` predictions for serve's persistent session while it is away, start it and
    time how fast it stores them (wall and CPU seconds of serve's processes), with /api/devices probed."""
    from edge_har.benchmarks.faults import persistent_broker

    work = workdir / f"drain-{code}-{backend}-{processes}"
    work.mkdir(parents=True)
    broker = persistent_broker(work / "broker", settings.mosquitto, max_queued=0).start()
    drop = None
    if backend == "sqlite":
        url = f"sqlite:///{work / 'bench.sqlite3'}"
        db_args = ["--db-path", str(work / "bench.sqlite3")]
    else:
        url, drop = _postgres_database(settings.postgres_url)
        db_args = ["--db-url", url]
    db_args += ["--protocol", "5", "--client-id", DRAIN_CLIENT_ID]
    if processes > 1:
        db_args += ["--ingest-processes", str(processes)]
    server: Optional[_Server] = None
    try:
        _Server(broker.address, db_args, work, root=root).stop()  # the session exists; serve is away
        client = _publisher(broker.host, broker.port)
        messages = _payloads(settings.devices, settings.backlog, 1.0, 0, "bench0000001")
        infos = [client.publish(topic, data, qos=1) for topic, data in messages]
        for info in infos:
            info.wait_for_publish(120)
        client.disconnect()
        client.loop_stop()
        sent = len(messages)
        server = _Server(broker.address, db_args, work, root=root)
        probe = _Probe(server)
        probe.start()
        first: Optional[tuple[int, float, Optional[float], Optional[float]]] = None
        last: tuple[int, float, Optional[float], Optional[float]] = (0, time.perf_counter(), None, None)
        deadline = time.perf_counter() + max(60.0, sent / 500)
        while time.perf_counter() < deadline:
            stored, _ = _stored(server)
            tree = process_tree(server.proc.pid)
            now = (stored, time.perf_counter(), tree_cpu_s(server.proc.pid), threads_cpu_s(tree))
            if first is None:  # serve has just subscribed: the drain starts here (a few rows may be in already)
                first = now
            last = now
            if stored >= sent:
                break
            time.sleep(0.05)
        probe.stop()
        time.sleep(1.0)  # anything stored twice or late would show now
        _, ingest = _stored(server)
        rows, distinct = _db_count(url)
    finally:
        if server is not None:
            server.stop()
        broker.stop()
        if drop is not None:
            drop()
    wall = cpu = ingest_cpu = None
    if first is not None and last[0] > first[0]:
        wall = (last[0] - first[0]) / max(1e-9, last[1] - first[1])
        if first[2] is not None and last[2] is not None and last[2] > first[2]:
            cpu = (last[0] - first[0]) / (last[2] - first[2])
        if first[3] is not None and last[3] is not None and last[3] > first[3]:
            ingest_cpu = (last[0] - first[0]) / (last[3] - first[3])
    return {
        "code": code,
        "store": backend,
        "processes": processes,
        "sent": sent,
        "stored_per_s": wall,
        "stored_per_cpu_s": cpu,
        "stored_per_ingest_cpu_s": ingest_cpu,
        "stored": int(ingest.get("stored", 0)),
        "rows": rows,
        "distinct_keys": distinct,
        "exactly_once": rows == sent and distinct == sent,
        "devices_api": report.latency_summary(probe.times_ms),
        "log_tail": server.log_tail()[-600:] if server is not None else "",
    }


def run_drain_comparison(settings: WebIngestSettings, workdir: Path) -> list[dict[str, Any]]:
    """The baseline's serve and this checkout's, per store, per process count (PostgreSQL only beyond 1)."""
    codes: list[tuple[str, Optional[Path]]] = [("current", None)]
    checkout = baseline_checkout(settings.baseline, workdir) if settings.baseline else None
    if checkout is not None:
        codes.insert(0, (f"baseline {settings.baseline}", checkout))
    out = []
    try:
        for backend in settings.backends:
            for code, root in codes:
                counts = [1] if root is not None or backend == "sqlite" else list(settings.processes)
                for n in counts:
                    if settings.progress:
                        report.stderr(
                            f"web-ingest: drain {settings.backlog} into {backend}: {code}, {n} process(es) ..."
                        )
                    row = run_drain(code.split()[0], root, backend, n, settings, workdir)
                    row["code"] = code
                    out.append(row)
                    if settings.progress:
                        report.stderr(
                            f"web-ingest: {code} {backend} x{n}: {report.fmt(row['stored_per_s'], 0)}/s, "
                            f"{report.fmt(row['stored_per_cpu_s'], 0)}/CPU-s, exactly once: {row['exactly_once']}"
                        )
    finally:
        if checkout is not None:
            remove_checkout(checkout)
    return out


def format_drain(rows: list[dict[str, Any]], backlog: int) -> str:
    table = report.format_table(
        ["code", "store", "processes", "stored/s", "stored/CPU-s", "stored/ingest CPU-s", "api p50 ms", "exactly once"],
        [
            [
                r["code"],
                r["store"],
                r["processes"],
                r["stored_per_s"],
                r["stored_per_cpu_s"],
                r.get("stored_per_ingest_cpu_s"),
                r["devices_api"]["p50_ms"],
                r["exactly_once"],
            ]
            for r in rows
        ],
        title=f"edge-har serve draining a backlog of {backlog} QoS 1 predictions queued while it was away",
    )
    return table


def run_web_ingest(settings: WebIngestSettings) -> dict[str, Any]:
    from edge_har.mqtt.local_broker import BrokerError, LocalBroker

    started = time.perf_counter()
    section = report.suite_header("web_ingest")
    section["settings"] = asdict(settings)
    section["definition"] = {
        "stored_per_s": "rows new to the server's store during the publishing window / the window",
        "drain_s": "from the last publish until the store held every prediction sent (none: not within wait_s)",
        "kept_up": "everything stored within max_drain_s after publishing stopped, nothing dropped or failed",
        "devices_api": "GET /api/devices (the Live page's load) every 100 ms during the step, milliseconds",
        "drain stored_per_s": "rows stored from serve's subscription until the backlog is stored / that time",
        "drain stored_per_cpu_s": "the same rows / CPU seconds (user + system) of serve and its child processes "
        "(web requests included)",
        "drain stored_per_ingest_cpu_s": "the same rows / CPU seconds of the ingest's own threads (MQTT and "
        "ingest, named by edge_har.web.ingest) in every serve process; none for code that does not name them",
        "drain exactly_once": "the table holds as many rows, and distinct (device, run, seq), as were published",
    }
    with tempfile.TemporaryDirectory(prefix="edge-har-web-ingest-") as tmp:
        try:
            broker = LocalBroker(Path(tmp) / "broker", binary=settings.mosquitto).start()
        except BrokerError as exc:
            raise WebIngestError(f"{exc} (bench web-ingest starts its own broker)") from exc
        try:
            section["broker"] = {"address": broker.address, "binary": broker.binary}
            if settings.backlog:
                section["drain"] = run_drain_comparison(settings, Path(tmp))
            section["backends"] = (
                [run_backend(b, settings, broker, Path(tmp)) for b in settings.backends] if settings.rates else []
            )
        finally:
            broker.stop()
    return report.finish_section(section, started)


def format_web_ingest(section: dict[str, Any]) -> str:
    drain = format_drain(section["drain"], section["settings"]["backlog"]) if section.get("drain") else ""
    steps = format_steps(section) if section.get("backends") else ""
    return "\n\n".join(part for part in (report.context_lines(section), drain, steps) if part)


def format_steps(section: dict[str, Any]) -> str:
    rows = []
    for backend in section["backends"]:
        for r in backend["steps"]:
            api = r["devices_api"]
            rows.append(
                [
                    backend["backend"],
                    r["rate"],
                    r["published_per_s"],
                    r["stored_per_s"],
                    r["drain_s"],
                    r["kept_up"],
                    api["p50_ms"],
                    api["p95_ms"],
                    api["max_ms"],
                ]
            )
    table = report.format_table(
        [
            "store",
            "offered/s",
            "published/s",
            "stored/s",
            "drain s",
            "kept up",
            "api p50 ms",
            "api p95 ms",
            "api max ms",
        ],
        rows,
        title=f"edge-har serve ingest: {section['settings']['devices']} devices, QoS 1, "
        f"{section['settings']['trial_s']:g} s per rate; /api/devices timed every 100 ms",
    )
    best = "; ".join(
        f"{b['backend']}: kept up to {report.fmt(b['max_rate_kept_up'])}/s (best stored {report.fmt(b['best_stored_per_s'], 0)}/s)"
        for b in section["backends"]
    )
    return f"{table}\n\n{best}"
