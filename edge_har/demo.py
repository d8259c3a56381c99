"""``edge-har demo``: the whole product on one machine, in one command.

Makes a bundle (from a data set, or from synthetic wrist-IMU data the project
generates, since the public data sets may not be redistributed), starts a
private mosquitto, runs the real daemon (``python -m edge_har run``, as
systemd would) replaying recordings through the bundle, and shows the
predictions arriving through ``edge-har subscribe``. Everything it makes stays
in ``--workdir``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEVICE_ID = "demo-pi"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  edge-har demo                                   # synthetic data, ~2 minutes on 2 cores\n"
            "  edge-har demo --bundle bundles/hmp --data ../shared/data/hmp/HMP --seconds 60\n"
        ),
    )
    p.add_argument("--workdir", type=Path, default=Path("demo-run"), help="where everything goes (default: ./demo-run)")
    p.add_argument(
        "--bundle",
        type=Path,
        default=None,
        help="use this bundle instead of converting one (default: convert one in WORKDIR/bundle)",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="recordings in the folder layout to convert and replay (default: synthetic data in WORKDIR/data)",
    )
    p.add_argument("--rebuild", action="store_true", help="convert again even if WORKDIR/bundle exists")
    p.add_argument("--epochs", type=int, default=25, help="training epochs for the demo bundle (default 25)")
    p.add_argument("--seconds", type=float, default=20.0, help="how long to show predictions (default 20)")
    p.add_argument(
        "--speed",
        type=float,
        default=4.0,
        help="replay speed: 4 replays four seconds of recording per second (default 4)",
    )
    p.add_argument(
        "--mode",
        choices=["lines", "table"],
        default="lines",
        type=str,
        help="how the subscriber shows predictions (default: lines)",
    )
    p.set_defaults(func=run)


def make_bundle(args: argparse.Namespace, workdir: Path) -> tuple[Path, Path]:
    """The bundle and the folder of recordings to replay."""
    from edge_har.core.errors import CommandError, require_modules

    data = args.data
    if data is None:
        from edge_har.convert.synthetic import write_synthetic_imu_dataset

        data = workdir / "data"
        if not data.is_dir():
            log.info("writing synthetic wrist-IMU recordings (walk, sit, wave) to %s", data)
            write_synthetic_imu_dataset(data, recordings_per_class=8, subjects=4, seconds=(20.0, 40.0))
    if args.bundle is not None:
        return args.bundle, data
    bundle = workdir / "bundle"
    if (bundle / "bundle.json").is_file() and not args.rebuild:
        log.info("reusing %s (pass --rebuild to convert again)", bundle)
        return bundle, data
    require_modules(
        ("tensorflow", "tf_keras"), "train", "the demo converts a bundle on this machine and needs TensorFlow"
    )
    from edge_har.convert.pipeline import AccuracyGateError, ConvertError, ConvertOptions, run_convert
    from edge_har.convert.quantize import CalibrationError
    from edge_har.convert.train import TrainConfig

    options = ConvertOptions(
        out=bundle,
        data=data,
        overwrite=True,
        train=TrainConfig(epochs=args.epochs, patience=8),
        calibration_size=200,
        command=" ".join(["edge-har", "demo", *sys.argv[2:]]),
    )
    try:
        return run_convert(options), data
    except (ConvertError, AccuracyGateError, CalibrationError) as exc:
        raise CommandError(str(exc)) from exc


def replay_folder(data: Path, workdir: Path, per_class: int = 1) -> Path:
    """A few recordings of each class, so a short demo shows every activity, not only the first."""
    import shutil

    out = workdir / "replay"
    shutil.rmtree(out, ignore_errors=True)
    for folder in sorted(p for p in data.iterdir() if p.is_dir() and not p.name.endswith("_MODEL")):
        files = sorted(f for f in folder.iterdir() if f.suffix in (".txt", ".csv"))[-per_class:]
        if files:
            (out / folder.name).mkdir(parents=True)
            for f in files:
                shutil.copy2(f, out / folder.name / f.name)
    if not out.is_dir():
        raise ValueError(f"{data}: no <Class>/<recording> files to replay")
    return out


def write_config(path: Path, bundle: Path, data: Path, host: str, port: int, speed: float) -> Path:
    import yaml

    config: dict[str, Any] = {
        "device_id": DEVICE_ID,
        "bundle": str(bundle.resolve()),
        "interpreter": {"backend": "auto", "num_threads": 1},
        "source": {
            "type": "replay",
            "path": str(data.resolve()),
            "format": "folder",
            "realtime": True,
            "speed": speed,
            "loop": True,
        },
        "smoothing": {"method": "mean_prob", "window": 3, "threshold": 0.5},
        "mqtt": {"host": host, "port": port, "stats_interval_s": 5.0},
        "logging": {"level": "INFO"},
    }
    path.write_text("# written by edge-har demo\n" + yaml.safe_dump(config, sort_keys=False))
    return path


def run(args: argparse.Namespace) -> int:
    from edge_har.core.errors import CommandError
    from edge_har.device.config import ConfigError, load_config
    from edge_har.mqtt.local_broker import BrokerError, LocalBroker
    from edge_har.subscribe import run as subscribe

    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    bundle, data = make_bundle(args, workdir)
    print(f"\n== bundle: {bundle}")
    try:
        broker = LocalBroker(workdir / "broker").start()
    except BrokerError as exc:
        raise CommandError(str(exc)) from exc
    config = write_config(
        workdir / "device.yaml", bundle, replay_folder(data, workdir), broker.host, broker.port, args.speed
    )
    try:
        load_config(config)
    except ConfigError as exc:
        broker.stop()
        raise CommandError(f"the demo's own config is invalid: {exc}") from exc
    print(f"== broker: mosquitto on {broker.address}; daemon config: {config}")
    daemon_log = workdir / "daemon.log"
    summary = workdir / "daemon-summary.json"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(daemon_log, "wb") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "edge_har", "run", "--config", str(config), "--summary-json", str(summary)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    print(f"== daemon: pid {daemon.pid}, log {daemon_log}")
    print(
        f"== predictions on edge-har/{DEVICE_ID}/prediction for {args.seconds:g} s "
        f"(edge-har subscribe --broker {broker.address}):\n",
        flush=True,
    )
    jsonl = workdir / "predictions.jsonl"
    jsonl.unlink(missing_ok=True)
    try:
        from edge_har.cli import build_parser

        # Through the real command line, so the demo shows exactly what a user would type.
        sub_args = build_parser("subscribe").parse_args(
            [
                "subscribe",
                "--broker",
                broker.address,
                "--mode",
                args.mode,
                "--jsonl",
                str(jsonl),
                "--timeout",
                str(args.seconds),
            ]
        )
        subscribe(sub_args)
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            code = daemon.wait(5)
        broker.stop()
    predictions = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
    predictions = [p for p in predictions if isinstance(p, dict) and "label" in p]
    scored = [p for p in predictions if isinstance(p.get("extra"), dict) and p["extra"].get("truth")]
    print(f"\n== {len(predictions)} predictions received; daemon exited with status {code} after SIGTERM")
    if scored:
        right = sum(p["label"] == p["extra"]["truth"] for p in scored)
        print(
            f"== labels matching the replayed recording's truth: {right}/{len(scored)} ({100 * right / len(scored):.0f}%)"
        )
    if summary.exists():
        totals = json.loads(summary.read_text())
        print(f"== daemon summary: {summary}\n{json.dumps(totals, indent=1)[:1200]}")
    print(f"== done in {time.monotonic() - started:.0f} s; everything is in {workdir}/")
    if not predictions:
        raise CommandError(f"no predictions arrived; see {daemon_log} and {broker.log_path}", code=1)
    return 0 if code == 0 else 1
