"""Web device-list suite: how long ``GET /api/devices`` takes with a fleet of 10,000 devices, per store.

What a run does, precisely:

* **the store**: a fresh SQLite file and a fresh PostgreSQL database ``edge_har_bench_<random>`` (dropped
  afterwards) on ``--postgres-url``'s server, each filled through :class:`edge_har.web.store.Store` with
  ``--devices`` devices (a status and a stats row each, as the ingest leaves them) of which every one has
  ``--predictions`` predictions, one a second ending now.
* **the server** is the real command, ``python -m edge_har serve --db-url ...`` (no broker: only the store
  is read), in its own process on a free loopback port.
* **the requests**, from this process, one at a time, each ``--repeat`` times after one warm-up:
  the first page (``limit=100``, the default), a page deep in the list (``after=`` the id 90 % of the way
  through), the largest page (``limit=1000``), the Live page's request (``limit=24&hour_step_s=10&today=true``:
  24 cards with their last hour and today) and a filtered page (``q=`` matching 1 device in 1,000).
  p50 and max response time in ms, and the response size.

The store answers a page with two statements (the count and the page joined with each device's newest
prediction), and the API one more for the current stretch of the devices whose newest prediction changed
since a page last showed them, whatever the fleet size; ``tests/test_web_devices_scale.py`` asserts that.
These figures say what it costs on this machine.

    python -m edge_har.benchmarks.web_devices [--devices 10000] [--predictions 20] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

from edge_har.benchmarks.cpuinfo import format_cpu
from edge_har.benchmarks.web_ingest import (
    DEFAULT_POSTGRES,
    WebIngestError,
    _postgres_database,
    read_log_tail,
    stop_serve,
)

log = logging.getLogger(__name__)

LABELS = ("Sit", "Walk", "Wave", "Stand")


def fill(url: str, n_devices: int, per_device: int, now: float) -> None:
    """``n_devices`` devices with a status, stats and ``per_device`` predictions each, through the store."""
    from edge_har.web.store import devices, open_store_url

    store = open_store_url(url)
    try:
        ids = [f"pi-{i:05d}" for i in range(n_devices)]
        stats = {
            "windows_per_s": 1.0,
            "inference_ms": {"p50": 0.6},
            "queue_depth": 0,
            "mqtt": {"reconnects": 0},
            "stats_interval_s": 30.0,
        }
        with store.engine.begin() as conn:  # the device rows as set_status and set_stats leave them, in one go
            conn.execute(
                devices.insert(),
                [
                    {
                        "device_id": d,
                        "status": "online",
                        "status_at": now,
                        "stats": stats,
                        "stats_at": now,
                        "stats_interval_s": 30.0,
                        "last_seen": now,
                    }
                    for d in ids
                ],
            )
        batch: list[dict[str, Any]] = []
        for i, device in enumerate(ids):
            for seq in range(per_device):
                ts = now - per_device + seq
                label = LABELS[(i + seq // 10) % len(LABELS)]
                batch.append(
                    {
                        "device_id": device,
                        "run_id": "a1b2c3d4e5f6",
                        "seq": seq,
                        "ts": ts,
                        "label": label,
                        "confidence": 0.9,
                        "probabilities": {name: (0.9 if name == label else 0.1 / 3) for name in LABELS},
                        "model_id": "tiny-cnn-lstm",
                        "variant": "int8",
                        "inference_ms": 0.6,
                        "received_at": ts,
                    }
                )
            if len(batch) >= 20_000:
                store.add_predictions(batch)
                batch = []
        store.add_predictions(batch)
    finally:
        store.close()


class _Serve:
    """``edge-har serve --db-url URL`` in its own process."""

    def __init__(self, url: str, workdir: Path) -> None:
        from edge_har.mqtt.local_broker import free_port

        self.port = free_port("127.0.0.1")
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"serve-{self.port}.log"
        argv = [sys.executable, "-m", "edge_har", "serve", "--port", str(self.port), "--db-url", url]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise WebIngestError(f"edge-har serve exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                self.get("/api/devices?limit=1")
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise WebIngestError(f"edge-har serve did not answer within 60 s: {self.log_tail()}")

    def get(self, path: str) -> tuple[dict[str, Any], float, int]:
        started = time.perf_counter()
        with urllib.request.urlopen(self.base + path, timeout=30) as response:
            raw = response.read()
        ms = (time.perf_counter() - started) * 1000.0
        return json.loads(raw), ms, len(raw)

    def log_tail(self) -> str:
        return read_log_tail(self.log_path)

    def stop(self) -> None:
        stop_serve(self.proc)


def requests_for(n_devices: int) -> dict[str, str]:
    deep = f"pi-{int(n_devices * 0.9):05d}"
    return {
        "first page (limit=100)": "/api/devices",
        f"deep page (after={deep})": f"/api/devices?after={deep}",
        "largest page (limit=1000)": "/api/devices?limit=1000",
        "Live page (24 cards, hour + today)": "/api/devices?limit=24&hour_step_s=10&today=true",
        "filter (q=pi-0042)": "/api/devices?q=pi-0042",
    }


def run_backend(backend: str, url: str, n_devices: int, per_device: int, repeat: int, workdir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    fill(url, n_devices, per_device, time.time())
    fill_s = time.perf_counter() - started
    serve = _Serve(url, workdir)
    try:
        rows = []
        for name, path in requests_for(n_devices).items():
            body, _, _ = serve.get(path)  # warm-up (and the check that it answers)
            times, size = [], 0
            for _ in range(repeat):
                _, ms, size = serve.get(path)
                times.append(ms)
            rows.append(
                {
                    "request": name,
                    "devices": len(body["devices"]),
                    "total": body["total"],
                    "p50_ms": statistics.median(times),
                    "max_ms": max(times),
                    "kB": size / 1024.0,
                }
            )
    finally:
        serve.stop()
    return {"backend": backend, "fill_s": fill_s, "requests": rows}


def run_web_devices(
    n_devices: int = 10_000,
    per_device: int = 20,
    repeat: int = 20,
    backends: tuple[str, ...] = ("sqlite", "postgresql"),
    postgres_url: str = DEFAULT_POSTGRES,
) -> dict[str, Any]:
    results = []
    with tempfile.TemporaryDirectory(prefix="edge-har-web-devices-") as tmp:
        workdir = Path(tmp)
        for backend in backends:
            drop = None
            if backend == "sqlite":
                url = f"sqlite:///{workdir / 'devices.sqlite3'}"
            elif backend == "postgresql":
                url, drop = _postgres_database(postgres_url)
            else:
                raise WebIngestError(f"--backends: {backend!r} is neither sqlite nor postgresql")
            try:
                log.info("%s: %d devices x %d predictions", backend, n_devices, per_device)
                results.append(run_backend(backend, url, n_devices, per_device, repeat, workdir))
            finally:
                if drop is not None:
                    drop()
    return {
        "cpu": format_cpu(),
        "devices": n_devices,
        "predictions_per_device": per_device,
        "repeat": repeat,
        "backends": results,
    }


def format_web_devices(section: dict[str, Any]) -> str:
    lines = [
        section["cpu"],
        f"{section['devices']:,} devices x {section['predictions_per_device']} predictions; "
        f"each request {section['repeat']} times after a warm-up",
        "",
        "| store | request | devices | total | p50 ms | max ms | kB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for backend in section["backends"]:
        for r in backend["requests"]:
            lines.append(
                f"| {backend['backend']} | {r['request']} | {r['devices']} | {r['total']:,} | "
                f"{r['p50_ms']:.1f} | {r['max_ms']:.1f} | {r['kB']:.0f} |"
            )
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge_har.benchmarks.web_devices", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--devices", type=int, default=10_000, help="devices in the store (default: 10000)")
    parser.add_argument("--predictions", type=int, default=20, help="predictions per device (default: 20)")
    parser.add_argument("--repeat", type=int, default=20, help="timed requests of each kind (default: 20)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated (default: sqlite,postgresql)")
    parser.add_argument(
        "--postgres-url", default=DEFAULT_POSTGRES, help=f"a server to create a database on ({DEFAULT_POSTGRES})"
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.devices <= 1_000_000 or not 1 <= args.predictions <= 10_000 or not 1 <= args.repeat <= 10_000:
        parser.error("--devices 1..1000000, --predictions 1..10000 and --repeat 1..10000")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        section = run_web_devices(
            args.devices,
            args.predictions,
            args.repeat,
            tuple(b.strip() for b in args.backends.split(",") if b.strip()),
            args.postgres_url,
        )
    except WebIngestError as exc:
        print(f"web-devices: {exc}", file=sys.stderr)
        return 2
    print(format_web_devices(section))
    if args.json:
        args.json.write_text(json.dumps(section, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
