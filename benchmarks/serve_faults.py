"""Serve fault suite: ``edge-har serve`` under publishing devices while its broker, itself, its database or its disk fail.

Each scenario starts, on loopback only:

* a private **mosquitto** with persistence (autosave every second) and ``max_queued_messages``
  (``--max-queued``) on a free port; a restart comes back on the same port and persistence file;
* the real **server**, ``python -m edge_har serve --broker ... --db-path|--db-url ...``, in its own
  process, on a fresh store: an SQLite file, an SQLite file on a small tmpfs (``disk_full``), or a
  throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl`` on a free port in a temporary folder; the
  machine's own PostgreSQL is never touched);
* ``--devices`` simulated devices, each the daemon's own :class:`edge_har.mqtt.publisher.Publisher`
  (offline queue, QoS 1, a run id, ``seq`` from 0) publishing real prediction payloads at ``--rate``
  per second (:func:`edge_har.benchmarks.fleet.publisher_main`, in a child process).

The devices publish for ``before_s + down_s + after_s``; at ``before_s`` the fault is applied and held
for ``down_s``:

``broker_kill``                 mosquitto SIGKILLed, restarted after ``down_s`` (same port, same persistence file)
``serve_kill``                  the server SIGKILLed, started again after ``down_s`` (same arguments, same store)
``postgres_restart_fast``       ``pg_ctl stop -m fast``, ``pg_ctl start`` after ``down_s``
``postgres_restart_immediate``  ``pg_ctl stop -m immediate`` (no checkpoint: crash recovery at the start)
``disk_full``                   a filler file takes every free byte of the SQLite store's tmpfs for ``down_s``

Then the devices stop (each waits for the broker's acknowledgement of everything it queued), the
suite waits until ``GET /api/ingest`` shows ``queued`` 0 and its counts stay unchanged for ``settle_s``,
and takes the books:

``published``   predictions the devices made and handed to their Publisher (one per ``seq``; a
                Publisher's own QoS 1 re-sends are the same prediction)
``stored``      rows in the store for those devices, counted by SQL
``duplicates``  re-deliveries the server recognised as already stored (``/api/ingest``)
``rejected``    predictions dropped by a check (``rejected_predictions``), and every rejection by reason
``gaps``        predictions the server counted as never received (per-device ``seq`` jumps)
``unaccounted`` published - stored - rejected - gaps: 0 when every prediction is stored or counted
``outage s``    from the fault until the part is back (broker accepting, server subscribed, PostgreSQL
                accepting, filler deleted)
``recovery s``  from the end of the outage until every device has a prediction stored that it made
                after the outage ended (not measured, ``-``, when the outage outlasted the publishing)

A server killed with SIGKILL loses its in-memory counters: for ``serve_kill`` the rejections,
duplicates and database outages read from ``/api/ingest`` just before the kill are added to the
restarted server's. Gaps are not added: the server keeps them in the store (its seq books) and the
restarted server reports the whole run's.
"""

from __future__ import annotations

import errno
import json
import logging
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from edge_har.benchmarks import report
from edge_har.benchmarks.faults import persistent_broker
from edge_har.benchmarks.fleet import publisher_main
from edge_har.benchmarks.web_ingest import read_log_tail, stop_serve
from edge_har.core.errors import EdgeHarError
from edge_har.mqtt.local_broker import BrokerError, LocalBroker, free_port

log = logging.getLogger(__name__)

SCENARIOS = ("broker_kill", "serve_kill", "postgres_restart_fast", "postgres_restart_immediate", "disk_full")
STORE_OF = {
    "broker_kill": "sqlite",
    "serve_kill": "sqlite",
    "postgres_restart_fast": "postgresql",
    "postgres_restart_immediate": "postgresql",
    "disk_full": "sqlite (small tmpfs)",
}
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
TOPIC_PREFIX = "edge-har"


class ServeFaultsError(EdgeHarError, RuntimeError):
    """A scenario cannot run here (no mosquitto, no PostgreSQL binaries, no mount); the message says why."""


class ScenarioSkipped(ServeFaultsError):
    """The machine cannot apply this fault (e.g. no permission to mount a small filesystem)."""


@dataclass
class ServeFaultsSettings:
    devices: int = 20
    rate_hz: float = 5.0  # predictions per second per device
    before_s: float = 6.0  # publishing before the fault
    down_s: float = 4.0  # how long the fault holds
    after_s: float = 10.0  # publishing after the fault is applied and lifted
    settle_s: float = 2.0  # /api/ingest unchanged this long with nothing queued: the books are taken
    settle_timeout_s: float = 60.0
    startup_timeout_s: float = 60.0
    max_queued: int = 10000  # mosquitto's max_queued_messages per client (the server's backlog while away)
    disk_mb: int = 16  # size of the tmpfs under the SQLite store in disk_full
    scenarios: tuple[str, ...] = SCENARIOS
    mosquitto: Optional[str] = None
    postgres_bin: Optional[str] = None  # folder with initdb and pg_ctl
    progress: bool = True
    quick: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def quick_settings(cls, **overrides: Any) -> ServeFaultsSettings:
        base: dict[str, Any] = dict(before_s=3.0, down_s=2.0, after_s=6.0, settle_s=1.5, quick=True)
        base.update(overrides)
        return cls(**base)


# ====================================================================== the parts


def _broker(work: Path, settings: ServeFaultsSettings, port: Optional[int] = None) -> LocalBroker:
    """mosquitto with persistence (autosave every second) and the per-client queue bound of the settings."""
    try:
        return persistent_broker(work, settings.mosquitto, port, max_queued=settings.max_queued)
    except BrokerError as exc:
        raise ServeFaultsError(f"{exc} (bench serve-faults starts its own broker)") from exc


class ServeProcess:
    """``python -m edge_har serve`` in its own process on a fixed HTTP port; restartable with the same arguments."""

    def __init__(self, broker: str, db_args: list[str], work: Path) -> None:
        self.port = free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}"
        self.argv = [sys.executable, "-m", "edge_har", "serve", "--port", str(self.port), "--broker", broker]
        self.argv += db_args
        self.log_path = work / "serve.log"
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.starts = 0
        self._has_ingest_route: Optional[bool] = None

    def start(self, timeout: float) -> float:
        """Start the server and wait until it is subscribed to the broker; returns the seconds that took."""
        started = time.monotonic()
        with open(self.log_path, "ab") as out:
            out.write(f"---- start #{self.starts + 1}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
        self.starts += 1
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServeFaultsError(f"edge-har serve exited with {self.proc.returncode}: {self.log_tail()}")
            status = self.ingest(quiet=True)
            if status and status.get("subscribed"):
                return time.monotonic() - started
            time.sleep(0.1)
        raise ServeFaultsError(f"edge-har serve did not subscribe within {timeout:g} s: {self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no flush of what was received, no goodbye to the broker."""
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        stop_serve(self.proc)

    def get(self, path: str, timeout: float = 5.0) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
            return json.loads(response.read())

    def ingest(self, quiet: bool = False) -> Optional[dict[str, Any]]:
        """``GET /api/ingest`` in the contract's shape (keys a server does not report are None); None: no answer."""
        try:
            if self._has_ingest_route is not False:
                try:
                    return normalise_ingest(self.get("/api/ingest"), "/api/ingest")
                except urllib.error.HTTPError as exc:
                    if exc.code != 404:
                        raise
                    self._has_ingest_route = False
            body = self.get("/api/devices")
            legacy = dict(body.get("ingest") or {})
            legacy.update(body.get("broker") or {})
            return normalise_ingest(legacy, "/api/devices")
        except (OSError, ValueError) as exc:
            if not quiet:
                log.debug("serve-faults: %s/api/ingest: %s", self.url, exc)
            return None

    def device_books(self, contains: str) -> Optional[dict[str, dict[str, Any]]]:
        """``gaps`` and ``rejected`` of each device listed by ``/api/devices?q=contains`` (every page); None: not shown."""
        books: dict[str, dict[str, Any]] = {}
        after: Optional[str] = None
        for _ in range(100):  # pages of 1000: far more devices than a run has
            query = {"limit": "1000", "q": contains, **({"after": after} if after else {})}
            try:
                body = self.get("/api/devices?" + urllib.parse.urlencode(query))
            except (OSError, ValueError) as exc:
                log.warning("serve-faults: %s/api/devices: %s", self.url, exc)
                return None
            items = body.get("devices") if isinstance(body, dict) else None
            if not isinstance(items, list):
                return None
            for item in items:
                books[str(item.get("device_id"))] = {"gaps": item.get("gaps"), "rejected": item.get("rejected")}
            after = body.get("next")
            if not after:
                break
        return books

    def log_tail(self, chars: int = 1500) -> str:
        return read_log_tail(self.log_path, chars)


COUNT_KEYS = ("received", "stored", "duplicates", "rejected_predictions", "gaps", "dropped_full", "queued")


def normalise_ingest(body: Any, source: str) -> dict[str, Any]:
    """The ingest status a server reports, as the contract names it; what it does not report is None.

    A server older than ``/api/ingest`` reports ``ingest`` counters in ``/api/devices`` with
    ``malformed`` for rejections and no gaps: those map to ``rejected={"malformed": n}`` and None.
    """
    if not isinstance(body, dict):
        raise ValueError(f"{source}: not a JSON object")
    out: dict[str, Any] = {"source": source}
    for key in ("configured", "connected", "subscribed", "last_problem"):
        out[key] = body.get(key)
    for key in COUNT_KEYS:
        value = body.get(key)
        out[key] = int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    rejected = body.get("rejected")
    if isinstance(rejected, dict):
        out["rejected"] = {str(k): int(v) for k, v in rejected.items() if isinstance(v, (int, float))}
    elif isinstance(body.get("malformed"), int):
        out["rejected"] = {"malformed": int(body["malformed"])} if body["malformed"] else {}
    else:
        out["rejected"] = None
    if out["duplicates"] is None and isinstance(body.get("predictions"), int) and out["stored"] is not None:
        out["duplicates"] = int(body["predictions"]) - out["stored"]
    db = body.get("db")
    out["db"] = dict(db) if isinstance(db, dict) else None
    by_device = body.get("rejected_by_device")
    out["rejected_by_device"] = dict(by_device) if isinstance(by_device, dict) else None
    samples = body.get("samples")
    out["samples"] = list(samples)[-5:] if isinstance(samples, list) else None
    return out


def _pg_bin(explicit: Optional[str]) -> Path:
    import glob

    candidates = [Path(explicit)] if explicit else []
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(Path(found).parent)
    candidates += [Path(p) for p in sorted(glob.glob(PG_BIN_GLOB), reverse=True)]
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise ServeFaultsError(
        "no PostgreSQL server binaries (initdb, pg_ctl) found on PATH or in "
        f"{PG_BIN_GLOB}; install postgresql or pass --postgres-bin DIR"
    )


class PostgresCluster:
    """A throwaway PostgreSQL cluster on a free loopback port, in its own folder, started and stopped by pg_ctl.

    PostgreSQL refuses to run as root, so as root every command runs as the ``postgres`` user
    (``runuser``) on a folder it owns.
    """

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="edge-har-serve-faults-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = free_port("127.0.0.1")
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            import pwd

            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise ServeFaultsError("running as root and there is no 'postgres' user to run PostgreSQL") from None
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        argv = [*self.as_user, *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise ServeFaultsError(f"{Path(args[0]).name} {args[1:4]}: exit {done.returncode}: {' | '.join(tail)}")

    def init(self) -> PostgresCluster:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path), "-o", options, "-w", "start"
        )
        # -w: returns once the server accepts connections

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def close(self) -> None:
        try:
            self.stop("fast")
        except (ServeFaultsError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.root, ignore_errors=True)


class SmallDisk:
    """A tmpfs of ``size_mb`` mounted on a folder: the store's disk, filled and freed on demand (needs root)."""

    def __init__(self, mount_point: Path, size_mb: int) -> None:
        self.path = mount_point
        self.size_mb = size_mb
        self.filler = mount_point / "filler.bin"
        self.mounted = False

    def mount(self) -> SmallDisk:
        self.path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m,mode=0755", "tmpfs", str(self.path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0:
            raise ScenarioSkipped(
                f"cannot mount a {self.size_mb} MB tmpfs on {self.path} ({(done.stderr or '').strip()[:160]}); "
                "a disk that fills needs root (or CAP_SYS_ADMIN)"
            )
        self.mounted = True
        return self

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return int(st.f_bavail * st.f_frsize)

    def fill(self) -> int:
        """Write a filler file until the filesystem says ENOSPC; returns the bytes it took."""
        written = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for chunk in (1 << 20, 1 << 12, 1):
                block = b"\0" * chunk
                for _ in range(self.size_mb * (1 << 20) // chunk + 2):  # bounded: more than the disk holds
                    try:
                        written += os.write(fd, block)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
                if chunk == 1 and written:
                    break
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        if not self.mounted:
            return
        done = subprocess.run(["umount", str(self.path)], capture_output=True, timeout=30)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, timeout=30)
        self.mounted = False


class StoreReader:
    """Counts rows in the server's store by SQL, from this process (a second connection, read only)."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self.url = url
        self.engine = sa.create_engine(url, pool_pre_ping=True)

    def rows(self) -> list[tuple[str, str, int]]:
        import sqlalchemy as sa

        from edge_har.web.store import predictions

        query = sa.select(predictions.c.device_id, predictions.c.run_id, predictions.c.seq)
        with self.engine.connect() as conn:
            return [(str(d), str(r), int(s)) for d, r, s in conn.execute(query)]

    def devices_since(self, ts: float) -> int:
        """How many devices have a prediction stored that they made at or after ``ts`` (Unix time)."""
        import sqlalchemy as sa

        from edge_har.web.store import predictions

        query = sa.select(sa.func.count(sa.distinct(predictions.c.device_id))).where(predictions.c.ts >= ts)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def close(self) -> None:
        self.engine.dispose()


# ====================================================================== the devices


def _devices_main(spec: dict[str, Any], conn: Any) -> None:
    """The fleet's publisher process, with one line per device per failed reconnect left out (the faults are ours)."""
    logging.getLogger("edge_har.mqtt.publisher").setLevel(logging.ERROR)
    publisher_main(spec, conn)


class Devices:
    """The simulated devices: :func:`fleet.publisher_main` in a forked child process, driven over a pipe."""

    def __init__(self, broker: LocalBroker, settings: ServeFaultsSettings) -> None:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context("spawn")
        self.nonce = nonce = uuid.uuid4().hex[:6]
        self.device_ids = [f"sf-{nonce}-{i:02d}" for i in range(settings.devices)]
        spec = {
            "host": broker.host,
            "port": broker.port,
            "qos": 1,
            "topic_prefix": TOPIC_PREFIX,
            "client_prefix": f"serve-faults-{nonce}",
            "device_ids": self.device_ids,
            "rate_hz": settings.rate_hz,
            "connect_timeout_s": 30.0,
            "drain_timeout_s": 60.0,
        }
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_devices_main, args=(spec, child), name="serve-faults-devices", daemon=True)
        self.proc.start()
        try:
            ready = self.receive(60.0, "ready")
            if ready["connected"] < settings.devices:
                raise ServeFaultsError(f"only {ready['connected']} of {settings.devices} devices connected")
        except BaseException:
            self.close()
            raise

    def go(self, t0: float, t_end: float) -> None:
        self.conn.send(("go", t0, t_end))

    def receive(self, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.conn.poll(0.2):
                kind, value = self.conn.recv()
                if kind == "error":
                    raise ServeFaultsError(f"the devices: {value}")
                return value
            if not self.proc.is_alive():
                raise ServeFaultsError(f"the devices' process exited ({self.proc.exitcode}) before '{what}'")
        raise ServeFaultsError(f"the devices did not report '{what}' within {timeout:g} s")

    def close(self) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


# ====================================================================== one scenario


@dataclass
class _Run:
    """What a fault function works on and records."""

    settings: ServeFaultsSettings
    broker: LocalBroker
    serve: ServeProcess
    cluster: Optional[PostgresCluster] = None
    disk: Optional[SmallDisk] = None
    events: list[str] = field(default_factory=list)
    carried: list[dict[str, Any]] = field(default_factory=list)  # /api/ingest of a server before its SIGKILL
    t0: float = 0.0

    def note(self, text: str) -> None:
        self.events.append(f"{time.time() - self.t0:6.2f} s {text}")


def _broker_kill(run: _Run) -> None:
    run.broker.kill()
    run.note("broker kill -9")
    time.sleep(run.settings.down_s)
    run.broker.start()
    run.note("broker up (same port, same persistence file)")


def _serve_kill(run: _Run) -> None:
    before = run.serve.ingest()
    run.serve.kill()
    run.note("serve kill -9")
    if before is not None:
        run.carried.append(before)
    time.sleep(run.settings.down_s)
    took = run.serve.start(run.settings.startup_timeout_s)
    run.note(f"serve subscribed again ({took:.2f} s after its start)")


def _postgres(mode: str) -> Callable[[_Run], None]:
    def fault(run: _Run) -> None:
        assert run.cluster is not None
        run.cluster.stop(mode)
        run.note(f"pg_ctl stop -m {mode}")
        time.sleep(run.settings.down_s)
        run.cluster.start()
        run.note("pg_ctl start: accepting")

    return fault


def _disk_full(run: _Run) -> None:
    assert run.disk is not None
    took = run.disk.fill()
    run.note(f"disk full: filler took {took / 1e6:.1f} MB, {run.disk.free_bytes()} bytes left")
    time.sleep(run.settings.down_s)
    run.disk.free()
    run.note(f"filler deleted: {run.disk.free_bytes() / 1e6:.1f} MB free")


FAULTS: dict[str, Callable[[_Run], None]] = {
    "broker_kill": _broker_kill,
    "serve_kill": _serve_kill,
    "postgres_restart_fast": _postgres("fast"),
    "postgres_restart_immediate": _postgres("immediate"),
    "disk_full": _disk_full,
}


def _settle(serve: ServeProcess, settings: ServeFaultsSettings) -> tuple[Optional[dict[str, Any]], bool]:
    """Wait until nothing is queued and the counts stay unchanged for ``settle_s``; (last status, settled)."""
    deadline = time.monotonic() + settings.settle_timeout_s
    last: Optional[dict[str, Any]] = None
    last_key: Any = None
    since = time.monotonic()
    while time.monotonic() < deadline:
        status = serve.ingest()
        if status is not None:
            key = tuple(status.get(k) for k in COUNT_KEYS) + (json.dumps(status.get("rejected"), sort_keys=True),)
            if key != last_key:
                last_key, since = key, time.monotonic()
            elif not status.get("queued") and time.monotonic() - since >= settings.settle_s:
                return status, True
            last = status
        time.sleep(0.2)
    return last, False


def _sum_counts(statuses: list[dict[str, Any]], key: str) -> Optional[int]:
    values = [s.get(key) for s in statuses]
    if any(v is None for v in values):
        return None
    return sum(int(v) for v in values if v is not None)


def _books(
    settings: ServeFaultsSettings,
    device_ids: list[str],
    devices_report: dict[str, Any],
    rows: list[tuple[str, str, int]],
    statuses: list[dict[str, Any]],
    shown: Optional[dict[str, dict[str, Any]]],
) -> dict[str, Any]:
    """Published by the devices against stored (SQL) + rejected + gaps (the server's counters), in total and per device.

    ``statuses``: ``/api/ingest`` of each server that ran, the last one's after the run; ``shown``: the last
    server's per-device ``gaps`` and ``rejected`` from ``/api/devices``.
    """
    made = {d["device_id"]: d for d in devices_report["devices"]}
    mine = set(device_ids)
    stored_seqs: dict[str, set[int]] = {d: set() for d in device_ids}
    foreign_run = 0
    for device_id, run_id, seq in rows:
        if device_id not in mine:
            continue
        if run_id != made[device_id]["run_id"]:
            foreign_run += 1
        stored_seqs[device_id].add(seq)
    per_device = []
    for device_id in device_ids:
        sent = int(made[device_id]["sent"])
        seqs = stored_seqs[device_id]
        mqtt = made[device_id]["mqtt"]
        per_device.append(
            {
                "device_id": device_id,
                "published": sent,
                "stored": sum(1 for seq in seqs if 0 <= seq < sent),
                "missing_seqs": [seq for seq in range(sent) if seq not in seqs][:50],
                "acknowledged_by_broker": mqtt.get("published"),
                "device_dropped": int(mqtt.get("dropped_offline", 0)) + int(mqtt.get("dropped_unconfirmed", 0)),
                "device_unsent": int(mqtt.get("queued", 0)) + int(mqtt.get("inflight", 0)),
            }
        )
        entry = per_device[-1]
        view = (shown or {}).get(device_id) or {}
        gaps_d, rejected_d = view.get("gaps"), view.get("rejected")
        if isinstance(gaps_d, int) and isinstance(rejected_d, int):
            rejected_d += sum(int((s.get("rejected_by_device") or {}).get(device_id, 0)) for s in statuses[:-1])
            entry.update(gaps=gaps_d, rejected=rejected_d, unaccounted=sent - len(seqs) - rejected_d - gaps_d)
        else:
            entry.update(gaps=None, rejected=None, unaccounted=None)
    published = sum(d["published"] for d in per_device)
    stored = sum(len(s) for s in stored_seqs.values())
    rejected_by_reason: dict[str, int] = {}
    for status in statuses:
        for reason, count in (status.get("rejected") or {}).items():
            rejected_by_reason[reason] = rejected_by_reason.get(reason, 0) + int(count)
    rejected_predictions = _sum_counts(statuses, "rejected_predictions")
    gaps = statuses[-1].get("gaps")  # kept in the store's seq books: the last server's figure covers every run
    missing_keys = [k for k, v in (("rejected_predictions", rejected_predictions), ("gaps", gaps)) if v is None]
    unaccounted = published - stored - (rejected_predictions or 0) - (gaps or 0)
    if any(d["unaccounted"] is None for d in per_device):
        missing_keys.append("/api/devices gaps, rejected")
    devices_unaccounted = sum(1 for d in per_device if d["unaccounted"])
    return {
        "published": published,
        "stored": stored,
        "stored_other_run": foreign_run,
        "missing_in_store": published - sum(d["stored"] for d in per_device),
        "duplicates": _sum_counts(statuses, "duplicates"),
        "rejected_predictions": rejected_predictions,
        "rejected_by_reason": rejected_by_reason,
        "gaps": gaps,
        "unaccounted": unaccounted,
        "contract_keys_missing": missing_keys,
        "devices_unaccounted": devices_unaccounted,
        "books_exact": unaccounted == 0 and devices_unaccounted == 0 and not missing_keys,
        "device_dropped": sum(d["device_dropped"] for d in per_device),
        "device_unsent": sum(d["device_unsent"] for d in per_device),
        "per_device": per_device,
    }


def _store_for(name: str, run_dir: Path, settings: ServeFaultsSettings) -> tuple[list[str], str, Any, Any]:
    """(serve's database arguments, the URL this process reads, cluster, disk) for the scenario's store."""
    if STORE_OF[name] == "postgresql":
        cluster = PostgresCluster(_pg_bin(settings.postgres_bin)).init()
        try:
            cluster.start()
        except ServeFaultsError:
            cluster.close()
            raise
        return ["--db-url", cluster.url], cluster.url, cluster, None
    disk = None
    folder = run_dir
    if name == "disk_full":
        disk = SmallDisk(run_dir / "small-disk", settings.disk_mb).mount()
        folder = disk.path
    path = folder / "serve.sqlite3"
    return ["--db-path", str(path)], f"sqlite:///{path}", None, disk


def run_scenario(name: str, settings: ServeFaultsSettings, work: Path) -> dict[str, Any]:
    """One fault under ``settings.devices`` publishing devices; returns its row with the books."""
    work.mkdir(parents=True, exist_ok=True)
    row: dict[str, Any] = {"fault": name, "store": STORE_OF[name]}
    broker = _broker(work / "broker", settings)
    db_args, read_url, cluster, disk = _store_for(name, work, settings)
    serve = ServeProcess(broker.address, db_args, work)
    devices: Optional[Devices] = None
    reader: Optional[StoreReader] = None
    run = _Run(settings, broker, serve, cluster, disk)
    try:
        broker.start()
        row["serve_start_s"] = serve.start(settings.startup_timeout_s)
        reader = StoreReader(read_url)
        devices = Devices(broker, settings)
        time.sleep(1.2)  # an autosave holds the server's session before any broker SIGKILL
        publish_s = settings.before_s + settings.down_s + settings.after_s
        run.t0 = time.time() + 0.5
        t_end = run.t0 + publish_s
        devices.go(run.t0, t_end)
        time.sleep(max(0.0, run.t0 + settings.before_s - time.time()))
        fault_at = time.monotonic()
        FAULTS[name](run)
        row["outage_s"] = time.monotonic() - fault_at
        back_at_wall, back_at = time.time(), time.monotonic()
        # An outage that outlasts the publishing (a server slow to start on a busy machine) leaves nothing to
        # recover to: recovery is then not measured (None) and the row says so; the books still are.
        row["outlasted_publishing"] = back_at_wall >= t_end - 0.5
        if row["outlasted_publishing"]:
            run.note("the outage outlasted the publishing: recovery not measured")
            row["recovery_s"] = None
        else:
            row["recovery_s"] = _recovery(reader, settings.devices, back_at_wall, back_at, t_end + 30.0)
        report_ = devices.receive(publish_s + 120.0, "done")
        row["devices_report"] = {k: v for k, v in report_.items() if k != "devices"}
        status, settled = _settle(serve, settings)
        row["settled"] = settled
        row["ingest"] = status
        statuses = [*run.carried, status] if status is not None else list(run.carried)
        if status is None:
            raise ServeFaultsError(f"no answer from {serve.url}/api/ingest after the run: {serve.log_tail()}")
        shown = serve.device_books(devices.nonce)
        row.update(_books(settings, devices.device_ids, report_, reader.rows(), statuses, shown))
        row["db_outages"] = sum(int((s.get("db") or {}).get("outages") or 0) for s in statuses)
        row["serve_restarts"] = serve.starts - 1
    finally:
        if devices is not None:
            devices.close()
        serve.stop()
        if reader is not None:
            reader.close()
        broker.stop()
        if cluster is not None:
            cluster.close()
        if disk is not None:
            disk.unmount()
    text = serve.log_tail(10**7)
    row["events"] = run.events
    row["serve_log_warnings"] = sum(" WARNING " in line or " ERROR " in line for line in text.splitlines())
    row["serve_tracebacks"] = text.count("Traceback")
    row["serve_log_tail"] = text[-1500:]
    return row


def _recovery(
    reader: StoreReader, devices: int, since_wall: float, since: float, give_up_wall: float
) -> Optional[float]:
    """Seconds from ``since`` until every device has a prediction stored that it made after ``since_wall``."""
    while time.time() < give_up_wall:
        try:
            if reader.devices_since(since_wall) >= devices:
                return time.monotonic() - since
        except Exception as exc:  # the database may be coming back: keep asking until give_up_wall
            log.debug("serve-faults: store not readable yet: %s", exc)
        time.sleep(0.1)
    return None


# ====================================================================== the suite


_DEFINITIONS = dict(
    published="predictions the devices made and handed to their Publisher (distinct seq; its re-sends are one)",
    stored="rows in the store for those devices, counted by SQL after the run",
    duplicates="re-deliveries the server found already stored (/api/ingest duplicates)",
    rejected="/api/ingest rejected_predictions; rejected_by_reason: every rejected message by reason",
    gaps="/api/ingest gaps: predictions counted as never received from seq jumps per device and run",
    unaccounted="published - stored - rejected - gaps: 0 when nothing is lost uncounted",
    outage_s="from the fault until the part is back (broker accepting / server subscribed / PostgreSQL "
    "accepting / filler deleted)",
    recovery_s="from the end of the outage until every device has a prediction stored that it made after it",
    missing_in_store="published predictions whose seq is not in the store (SQL), for comparison with gaps + rejected",
    device_dropped="predictions the devices' offline queues dropped (they reach the server as gaps)",
    devices_unaccounted="devices whose own books do not close: published - stored - rejected - gaps (per device "
    "from /api/devices) is not 0",
    serve_kill="a SIGKILLed server's rejections, duplicates and outages, read from /api/ingest just before the "
    "kill, are added to the restarted server's; gaps are kept in the store, so the last server's figure stands",
)


def run_serve_faults(settings: ServeFaultsSettings) -> dict[str, Any]:
    """Every scenario in ``settings.scenarios``; returns the suite's results section."""
    started = time.perf_counter()
    section = report.suite_header("serve_faults")
    section["settings"] = asdict(settings)
    section["definition"] = dict(_DEFINITIONS)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edge-har-serve-faults-") as tmp:
        for name in settings.scenarios:
            if settings.progress:
                total = settings.before_s + settings.down_s + settings.after_s
                report.stderr(f"serve-faults: {name} ({settings.devices} devices, {total:g} s) ...")
            try:
                row = run_scenario(name, settings, Path(tmp) / name)
            except ScenarioSkipped as exc:
                log.warning("serve-faults: %s skipped: %s", name, exc)
                row = {"fault": name, "store": STORE_OF[name], "status": "skipped", "error": str(exc)}
            except (ServeFaultsError, BrokerError, OSError, subprocess.SubprocessError) as exc:
                log.warning("serve-faults: %s failed: %s", name, exc)
                row = {"fault": name, "store": STORE_OF[name], "status": "error", "error": str(exc)}
            else:
                row["status"] = "ok"
            if settings.progress and row["status"] == "ok":
                report.stderr(
                    f"serve-faults: {name}: published {row['published']}, stored {row['stored']}, "
                    f"gaps {row['gaps']}, rejected {row['rejected_predictions']}, unaccounted {row['unaccounted']}"
                )
            rows.append(row)
    section["rows"] = rows
    return report.finish_section(section, started)


def format_serve_faults(section: dict[str, Any]) -> str:
    headers = [
        "fault",
        "store",
        "published",
        "stored",
        "duplicates",
        "rejected",
        "gaps",
        "unaccounted",
        "outage s",
        "recovery s",
        "books",
    ]
    rows = []
    for r in section.get("rows", []):
        if r.get("status") != "ok":
            rows.append([r["fault"], r["store"], f"{r.get('status')}: {str(r.get('error', ''))[:70]}"] + [""] * 8)
            continue
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(r["rejected_by_reason"].items()) if v)
        rejected = report.fmt(r["rejected_predictions"]) + (f" ({reasons})" if reasons else "")
        rows.append(
            [
                r["fault"],
                r["store"],
                r["published"],
                r["stored"],
                r["duplicates"],
                rejected,
                r["gaps"],
                r["unaccounted"],
                r["outage_s"],
                r["recovery_s"],
                "exact" if r["books_exact"] else "NOT EXACT",
            ]
        )
    s = section.get("settings", {})
    title = (
        f"edge-har serve under faults: {s.get('devices')} devices x {s.get('rate_hz')}/s QoS 1; fault after "
        f"{s.get('before_s')} s, held {s.get('down_s')} s, {s.get('after_s')} s more publishing; mosquitto "
        f"persistence (autosave 1 s), max_queued_messages {s.get('max_queued')}"
    )
    return report.context_lines(section) + "\n\n" + report.format_table(headers, rows, title)


__all__ = [
    "SCENARIOS",
    "PostgresCluster",
    "ServeFaultsError",
    "ServeFaultsSettings",
    "ServeProcess",
    "SmallDisk",
    "format_serve_faults",
    "normalise_ingest",
    "run_scenario",
    "run_serve_faults",
]
