"""``edge-har``: one command line, one subcommand per job.

Each subcommand lives in the module that owns the job and registers itself via
a ``register(subparsers)`` function that sets ``func`` on its parser. Those
modules import nothing heavy at import time, so ``edge-har --help`` is fast on
a Pi and works without TensorFlow; workstation subcommands import TensorFlow
only when they run, and say which extra to install when it is missing.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from edge_har import __version__

# subcommand module -> (its register function). Order is the order in --help.
SUBCOMMANDS: tuple[str, ...] = (
    "edge_har.convert.cli:register_convert",
    "edge_har.convert.cli:register_evaluate",
    "edge_har.convert.video_cli:register_convert_video",
    "edge_har.convert.video_cli:register_evaluate_video",
    "edge_har.device.daemon_cli:register_run",
    "edge_har.device.daemon_cli:register_validate_config",
    "edge_har.subscribe:register",
    "edge_har.benchmarks.cli:register",
    "edge_har.demo:register",
)

log = logging.getLogger("edge_har")


class CliError(Exception):
    """An error to show the user as one line, with exit status ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def require_tensorflow() -> None:
    """Fail with the install hint instead of a traceback when TensorFlow is absent."""
    try:
        importlib.import_module("tensorflow")
        importlib.import_module("tf_keras")
    except ImportError as exc:
        raise CliError(
            f"this subcommand runs on the workstation and needs TensorFlow ({exc.name} is missing). "
            "Install the workstation extra: pip install 'edge-har[train]'"
        ) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-har",
        description=(
            "Human activity recognition from a workstation to a Raspberry Pi: train and quantize a "
            "CNN-LSTM into a model bundle (convert, evaluate), run it on a device and publish over "
            "MQTT (run, validate-config, subscribe), and measure it (bench)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"edge-har {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="logging verbosity (default: INFO)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for spec in SUBCOMMANDS:
        module_name, func_name = spec.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A subcommand whose module is not part of this install (or not written yet)
            # is left out rather than breaking the others.
            if exc.name and (exc.name == module_name or module_name.startswith(exc.name + ".")):
                continue
            raise
        getattr(module, func_name)(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except CliError as exc:
        print(f"edge-har {args.command}: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
