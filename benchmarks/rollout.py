"""Rollout suite: N real daemons take a staged rollout from a real serve over a real broker.

What a run does, precisely:

* a private mosquitto on a free loopback port, and ``edge-har serve`` (its bundle store, ingest and
  rollout engine) in this process on SQLite;
* three bundles made from ``--bundle``, all signed with a key made for the run: ``bench-a`` (what
  the devices start on), ``bench-b`` (the update: the same model under a new id) and ``bench-bad``
  (the same model with its normalisation wrecked, so every window saturates to one class: it passes
  its self-test, which feeds the model normalised windows, and says one class all day);
* ``--devices`` real daemons (``edge_har.device.daemon.Daemon``, each in its own threads with its own
  MQTT links and update folder), spread over ``--workers`` processes, replaying ``--data`` in real
  time (``--speed``), each with ``update:`` pointing at the serve and ``trust:`` at the run's key;
* a subscriber counts every prediction by device, run and seq, with its model id and arrival time.

Then the good rollout (``--canary`` first, then the rest) and the bad one. Reported: the time from
starting the rollout to the last device predicting with ``bench-b``, and to serve calling it done
(which includes each stage's ``--soak-s``); predictions lost (seq numbers of a run that never arrived,
over every device and run) and windows the daemons dropped, both must be 0; for the bad bundle, the
stage it stopped at, how many devices ever predicted with it (must be the canary only), the reason
serve gave and the time to roll the canary back.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from edge_har.core.errors import EdgeHarError

log = logging.getLogger(__name__)


class RolloutBenchError(EdgeHarError):
    """The suite cannot run here, or a step did not finish in time; the message says which."""


@dataclass
class RolloutSettings:
    bundle: Path
    data: Path
    devices: int = 20
    workers: int = 2
    canary: str = "10%"
    speed: float = 8.0
    soak_s: float = 15.0
    min_predictions: int = 20
    mosquitto: Optional[str] = None
    timeout_s: float = 600.0


# ====================================================================== bundles


def _derive(src: Path, dest: Path, key: Path, model_id: str, wreck: bool = False) -> Path:
    from edge_har.core.signing import sign_bundle

    shutil.copytree(src, dest)
    (dest / "bundle.sig").unlink(missing_ok=True)
    doc = json.loads((dest / "bundle.json").read_text())
    doc["model_id"] = model_id
    if wreck:
        norm = doc["preprocessing"]["normalisation"]
        norm["mean"] = [1000.0] * len(norm["mean"])
    (dest / "bundle.json").write_text(json.dumps(doc, indent=2))
    sign_bundle(dest, key)
    return dest


# ====================================================================== device workers


def worker_main(spec: dict[str, Any], conn: Any) -> None:
    """One process of daemons: start them, report ready, run until told to stop, report their books."""
    logging.basicConfig(level=logging.WARNING)
    from edge_har.device.config import load_config
    from edge_har.device.daemon import Daemon

    daemons, threads, codes = [], [], {}
    for config in spec["configs"]:
        daemon = Daemon(load_config(config), install_signal_handlers=False)
        daemons.append(daemon)

        def run(d: Daemon = daemon) -> None:
            codes[d.device_id] = d.run()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
    conn.send("started")
    conn.recv()  # "stop"
    for daemon in daemons:
        daemon.request_stop("benchmark over")
    for thread in threads:
        thread.join(30)
    conn.send(
        {
            d.device_id: {
                "code": codes.get(d.device_id),
                "windows": d.stats.windows_total,
                "dropped": d.stats.windows_dropped,
            }
            for d in daemons
        }
    )


# ====================================================================== the subscriber


class Counter:
    """Every prediction by device and run: its seqs, the model of each, the first arrival per model."""

    def __init__(self, host: str, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.lock = threading.Lock()
        self.seqs: dict[tuple[str, str], list[int]] = {}
        self.first_model_at: dict[tuple[str, str], float] = {}
        self.count: dict[str, int] = {}
        self.states: dict[str, list[dict[str, Any]]] = {}
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-rollout-counter")
        self.client.on_connect = lambda c, *a: c.subscribe(
            [("edge-har/+/prediction", 1), ("edge-har/+/update/state", 1)]
        )
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        data = json.loads(message.payload or b"null")
        if not isinstance(data, dict):
            return
        device = message.topic.split("/")[1]
        with self.lock:
            if message.topic.endswith("/prediction"):
                self.seqs.setdefault((device, data.get("run_id", "")), []).append(int(data["seq"]))
                self.first_model_at.setdefault((device, data["model_id"]), time.time())
                self.count[device] = self.count.get(device, 0) + 1
            else:
                self.states.setdefault(device, []).append(data)

    def lost_and_repeated(self) -> tuple[int, int]:
        lost = repeated = 0
        with self.lock:
            for seqs in self.seqs.values():
                distinct = set(seqs)
                repeated += len(seqs) - len(distinct)
                lost += max(distinct) - min(distinct) + 1 - len(distinct) + min(distinct)  # a run starts at 0
        return lost, repeated

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ====================================================================== the run


def _post(url: str, body: bytes, content_type: str) -> dict[str, Any]:
    import urllib.request

    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _get(url: str) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise RolloutBenchError(f"timed out after {timeout:g} s waiting for {what}")


def run_rollout(settings: RolloutSettings, work_dir: Optional[Path] = None) -> dict[str, Any]:
    import yaml

    from edge_har.benchmarks.report import suite_header
    from edge_har.core.bundle_archive import pack_bundle
    from edge_har.core.signing import generate_key
    from edge_har.mqtt.config import MqttConfig
    from edge_har.mqtt.local_broker import LocalBroker
    from edge_har.web.app import create_app
    from edge_har.web.background import BackgroundServer
    from edge_har.web.config import ServeConfig

    header = suite_header("rollout")
    work = Path(work_dir or tempfile.mkdtemp(prefix="edge-har-rollout-"))
    key, public = generate_key(work / "keys", "bench")
    a = _derive(settings.bundle, work / "bench-a", key, "bench-a")
    b = _derive(settings.bundle, work / "bench-b", key, "bench-b")
    bad = _derive(settings.bundle, work / "bench-bad", key, "bench-bad", wreck=True)
    broker = LocalBroker(work / "broker", binary=settings.mosquitto).start()
    mqtt = MqttConfig(host=broker.host, port=broker.port, reconnect_min_s=0.1, reconnect_max_s=1.0)
    serve = BackgroundServer(
        create_app(ServeConfig(mqtt=mqtt, db_path=work / "serve.sqlite3", bundle_store_dir=work / "store"))
    ).start()
    counter = Counter(broker.host, broker.port)
    workers: list[tuple[Any, Any]] = []
    devices = [f"bench-{i:03d}" for i in range(settings.devices)]
    try:
        items = {
            name: _post(
                f"{serve.url}/api/bundles", pack_bundle(path, work / f"{name}.tar").read_bytes(), "application/x-tar"
            )
            for name, path in (("good", b), ("bad", bad))
        }
        configs = []
        for device in devices:
            config = work / "configs" / f"{device}.yaml"
            config.parent.mkdir(parents=True, exist_ok=True)
            doc = {
                "device_id": device,
                "bundle": str(a),
                "source": {
                    "type": "replay",
                    "path": str(settings.data),
                    "realtime": True,
                    "speed": settings.speed,
                    "loop": True,
                },
                "mqtt": {"host": broker.host, "port": broker.port, "stats_interval_s": 5.0},
                "queues": {"windows": 1000},
                "update": {"server": serve.url, "dir": str(work / "slots" / device), "confirm_after_windows": 5},
                "trust": {"keys": [str(public)], "require_signature": True},
            }
            config.write_text(yaml.safe_dump(doc))
            configs.append(str(config))
        ctx = mp.get_context("spawn")
        for w in range(settings.workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main, args=({"configs": configs[w :: settings.workers]}, child), daemon=True
            )
            proc.start()
            workers.append((proc, parent))
        for _, pipe in workers:
            if not pipe.poll(120):
                raise RolloutBenchError("a worker's daemons did not start within 120 s")
            pipe.recv()
        _wait(lambda: all(counter.count.get(d, 0) >= 10 for d in devices), 180, "every device to predict 10 windows")

        criteria = {"soak_s": settings.soak_s, "min_predictions": settings.min_predictions, "online_within_s": 180}

        def rollout(item: dict[str, Any], what: str) -> tuple[dict[str, Any], dict[str, Any], float, float]:
            """Start a rollout of ``item``; (as started, as it ended, when it started, seconds it took)."""
            started = time.time()
            body = {"bundle_id": item["id"], "devices": devices, "canary": settings.canary, "criteria": criteria}
            made = _post(f"{serve.url}/api/rollouts", json.dumps(body).encode(), "application/json")
            ended = _wait(
                lambda: (lambda r: r if r["state"] in ("done", "failed") else None)(
                    _get(f"{serve.url}/api/rollouts/{made['id']}")
                ),
                settings.timeout_s,
                f"the {what} rollout to end",
            )
            return made, ended, started, time.time() - started

        good, done, t0, t_done = rollout(items["good"], "good")
        arrived = [counter.first_model_at.get((d, "bench-b")) for d in devices]
        good_row = {
            "rollout": good["id"],
            "state": done["state"],
            "reason": done["reason"],
            "stages": [len(s["devices"]) for s in done["stages"]],
            "devices_on_new_model": sum(t is not None for t in arrived),
            "time_to_all_devices_s": round(max(t for t in arrived if t is not None) - t0, 2) if all(arrived) else None,
            "time_to_done_s": round(t_done, 2),
        }
        bad_rollout, failed, t1, t_failed = rollout(items["bad"], "bad")
        canary = failed["stages"][0]["devices"]

        took = [d for d in canary if (d, "bench-bad") in counter.first_model_at]

        def rolled_back() -> bool:
            with counter.lock:
                return all(any(s.get("state") == "rolled_back" for s in counter.states.get(d, [])) for d in took)

        _wait(rolled_back, 120, f"the canary to roll back (the rollout: {failed['reason']})")
        t_back = time.time() - t1
        time.sleep(3.0)
        ran_bad = sorted({d for (d, model) in counter.first_model_at if model == "bench-bad"})
        bad_row = {
            "rollout": bad_rollout["id"],
            "state": failed["state"],
            "reason": failed["reason"],
            "stopped_at_stage": failed["stage"],
            "canary": len(canary),
            "devices_that_ran_it": len(ran_bad),
            "reached_beyond_canary": sorted(set(ran_bad) - set(canary)),
            "time_to_stop_s": round(t_failed, 2),
            "time_to_roll_back_s": round(t_back, 2),
            "canary_health": {d: failed["devices"][d].get("health") for d in canary},
        }
    finally:
        books: dict[str, Any] = {}
        for proc, pipe in workers:
            try:
                pipe.send("stop")
                if pipe.poll(60):
                    books.update(pipe.recv())
            except (OSError, EOFError):
                pass
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        counter.close()
        serve.stop()
        broker.stop()
    lost, repeated = counter.lost_and_repeated()
    return header | {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
        "devices": settings.devices,
        "good": good_row,
        "bad": bad_row,
        "predictions": sum(counter.count.values()),
        "predictions_lost": lost,
        "predictions_repeated": repeated,
        "windows_dropped": sum(int(v.get("dropped") or 0) for v in books.values()),
        "daemon_exit_codes": sorted({v.get("code") for v in books.values()}, key=str),
    }


def format_rollout(section: dict[str, Any]) -> str:
    g, b = section["good"], section["bad"]
    m = section["machine"]
    lines = [
        f"Rollout of {section['devices']} real daemons ({m.get('cpu_model')}, {m.get('cores_logical')} logical CPUs):",
        f"  good bundle: {g['state']} in stages {g['stages']}; every device on it after {g['time_to_all_devices_s']} s, "
        f"done (with soak) after {g['time_to_done_s']} s",
        f"  predictions: {section['predictions']}, lost {section['predictions_lost']}, repeated "
        f"{section['predictions_repeated']}, windows dropped {section['windows_dropped']}",
        f"  bad bundle: {b['state']} at stage {b['stopped_at_stage']} ({b['reason']}); ran on {b['devices_that_ran_it']} "
        f"device(s), the canary was {b['canary']}; stopped after {b['time_to_stop_s']} s, rolled back after "
        f"{b['time_to_roll_back_s']} s",
    ]
    return "\n".join(lines)


def add_flags(p: Any) -> None:
    """``edge-har bench rollout``'s own flags."""
    p.add_argument("--bundle", type=Path, required=True, help="a sensor bundle the devices start from (copied)")
    p.add_argument("--data", type=Path, required=True, help="recordings the daemons replay (they must fit the bundle)")
    p.add_argument("--devices", type=int, default=20, help="real daemons")
    p.add_argument("--workers", type=int, default=2, help="processes the daemons are spread over")
    p.add_argument("--canary", default="10%", help="the first stage: devices or a percentage")
    p.add_argument(
        "--speed",
        type=float,
        default=8.0,
        help="replay speed (1: real time): fast enough that a soak sees several activities, which "
        "the degenerate-output check compares with the model before",
    )
    p.add_argument("--soak-s", type=float, default=15.0, help="seconds each stage watches a device on the new model")
    p.add_argument("--mosquitto", metavar="PATH", help="the mosquitto binary (None: found on PATH)")


def run_command(args: Any) -> int:
    from edge_har.benchmarks.cli import _finish
    from edge_har.core.errors import CommandError

    settings = RolloutSettings(
        args.bundle,
        args.data,
        args.devices,
        args.workers,
        args.canary,
        args.speed,
        args.soak_s,
        mosquitto=args.mosquitto,
    )
    if settings.devices < 2 or settings.workers < 1:
        raise CommandError("--devices: at least 2 (a canary and the rest); --workers: at least 1")
    section = run_rollout(settings)
    _finish(args, section, "rollout", format_rollout(section))
    return 0
