"""``edge-har run`` and ``edge-har validate-config``: the device's two subcommands.

Imports only argparse at import time, so ``edge-har --help`` stays fast on a Pi.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

_RUN_EPILOG = """\
examples:
  edge-har run --config /etc/edge-har/config.yaml
  edge-har --log-level DEBUG run --config firmware_configs/pi4-imu-i2c.yaml
  edge-har run --config demo.yaml --max-windows 200 --summary-json run.json   # benchmarks, tests

Stops cleanly on SIGTERM (systemctl stop) or SIGINT (Ctrl-C): queued windows are inferred, the
retained status 'stopped' is published, exit status 0 ('offline' is the Last Will of a crash).
SIGHUP (systemctl reload) is a restart: the same clean stop, then exit status 75, which the shipped
unit restarts at once with the config read afresh. Both mean the same during start-up (before the
model has loaded: exit at once with 0 or 75). Exit status 78 means the config, bundle or
runtime cannot work (check with `edge-har validate-config FILE`); 1 means inference kept failing.
"""

_VALIDATE_EPILOG = """\
examples:
  edge-har validate-config /etc/edge-har/config.yaml          # on the device: structure and files
  edge-har validate-config --no-files firmware_configs/*.yaml # on a workstation: structure only

Prints 'FILE: OK' per valid file; otherwise one line per problem, FILE:LINE: key.path: message,
with the nearest valid key for a misspelt one. Exit status 0 when every file is valid, else 1.
Without --no-files it runs the daemon's own start-up checks: bundle.json validated whole, every
model of the variant loaded (sha256, a corrupt or foreign file, input shape, label count against
the outputs) and the source's channels against the model; what passes here passes `run`'s start.
A config with an accelerator delegate opens it too: stop the service first if it holds a Coral.
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def register_run(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "run",
        description=(
            "Run the edge daemon: read samples from the configured source (replay, serial, MQTT topic, I2C IMU), "
            "window and normalise them as in training, infer with the bundle's TFLite model, smooth, and publish "
            "predictions, status and stats over MQTT. Survives broker outages, bad samples and lost devices."
        ),
        epilog=_RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", required=True, type=Path, metavar="FILE", help="device config (YAML); see firmware_configs/"
    )
    parser.add_argument(
        "--max-windows",
        type=_positive_int,
        default=None,
        metavar="N",
        help="stop cleanly after N predictions (tests, benchmarks)",
    )
    parser.add_argument(
        "--duration",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="stop cleanly after this many seconds (tests, benchmarks)",
    )
    parser.add_argument(
        "--summary-json",
        type=Path,
        default=None,
        metavar="PATH",
        help="at exit, write the run's totals and latency percentiles (and replay accuracy) as JSON",
    )
    parser.set_defaults(func=_run)
    return parser


def _run(args: argparse.Namespace) -> int:
    from edge_har.device import early_signals

    # Before the slow imports and the config: a SIGHUP from here on is a clean restart (exit 75),
    # never the default action's death by signal (129), which the unit does not restart.
    early_signals.install()
    from edge_har.device.daemon import run_daemon

    return run_daemon(
        args.config, max_windows=args.max_windows, duration_s=args.duration, summary_json=args.summary_json
    )


def register_validate_config(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "validate-config",
        description=(
            "Validate device config files. Every problem is reported as FILE:LINE: key.path: message, with the "
            "nearest valid key for an unknown one. Without --no-files the files the config names are checked too "
            "(bundle and its model, recordings, TLS and password files) and the model is loaded and checked against "
            "the bundle and the source: the same start-up checks as `edge-har run`."
        ),
        epilog=_VALIDATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="config file(s) to check")
    parser.add_argument(
        "--no-files",
        action="store_true",
        help="structure only: do not check that the bundle, recordings, TLS or password files exist "
        "(for configs written for another machine, e.g. bundles under /opt/edge-har on a Pi)",
    )
    parser.set_defaults(func=_validate)
    return parser


def _validate(args: argparse.Namespace) -> int:
    return validate_files(args.files, check_paths=not args.no_files)


def validate_files(files: list[Path], check_paths: bool = True, out: Any = None, err: Any = None) -> int:
    """Print OK or the problems of each file; 0 when all are valid. A CLI tool for people: it prints."""
    from edge_har.device.config import ConfigError, load_config

    out = out or sys.stdout
    err = err or sys.stderr
    failed = 0
    for file in files:
        try:
            loaded = load_config(file)
        except ConfigError as exc:
            failed += 1
            for line in exc.problems:
                print(line, file=err)
            continue
        errors: list[str] = []
        warnings: list[str] = []
        if check_paths:
            from edge_har.device.startup import run_startup_checks  # loads the interpreter: only when asked

            checked = run_startup_checks(loaded)  # exactly what `edge-har run` checks before it starts
            errors, warnings = checked.errors, checked.warnings
        for line in warnings:
            print(f"warning: {line}", file=err)
        if errors:
            failed += 1
            for line in errors:
                print(line, file=err)
        else:
            print(f"{file}: OK" + ("" if check_paths else " (structure; files not checked)"), file=out)
    return 1 if failed else 0
