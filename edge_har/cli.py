"""``edge-har``: one command line, one subcommand per job, each imported only when it runs.

The table below is the only place that lists the subcommands. ``edge-har --help``
is built from it alone, so it is fast on a Pi and shows every subcommand whatever
extras are installed; ``edge-har X`` imports X's module and nothing else. Before X
runs, the packages of its extra are looked up (not imported), so a missing extra is
one line naming ``pip install 'edge-har[...]'``; an import error inside a module is
a bug and is never swallowed. Every :class:`~edge_har.core.errors.EdgeHarError` that
reaches here becomes one line on stderr and its exit status.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from edge_har import __version__
from edge_har.core.errors import EdgeHarError, require_modules

INTERPRETERS = ("ai_edge_litert", "tflite_runtime", "tensorflow")


@dataclass(frozen=True)
class Subcommand:
    """One ``edge-har`` subcommand: where its parser lives and what it needs installed."""

    name: str
    help: str
    target: str  # "module:function" that adds the subcommand's parser to the subparsers
    extra: str = ""  # the install extra whose packages it needs ("" for none)
    requires: tuple[str, ...] = ()  # import names looked up before it runs
    any_of: bool = False  # one of ``requires`` is enough (the interpreter backends)
    needs: str = ""  # how the missing-extra message describes the need

    def check_installed(self) -> None:
        if self.requires:
            require_modules(self.requires, self.extra, f"edge-har {self.name} {self.needs}", any_of=self.any_of)


def _workstation(name: str, help: str, target: str) -> Subcommand:
    return Subcommand(
        name, help, target, "train", ("tensorflow", "tf_keras"), False, "runs on the workstation and needs TensorFlow"
    )


def _interpreter(name: str, help: str, target: str) -> Subcommand:
    return Subcommand(name, help, target, "device", INTERPRETERS, True, "needs a TFLite interpreter")


# Order is the order in --help.
SUBCOMMANDS: tuple[Subcommand, ...] = (
    _workstation(
        "convert",
        "train the CNN-LSTM on a data set and write an int8 TFLite model bundle (workstation; needs TensorFlow)",
        "edge_har.convert.cli:register_convert",
    ),
    Subcommand(
        "tune",
        "search model families, sizes and training settings (Optuna) for the best int8 validation macro-F1 "
        "within a size/MACs/latency budget; write the best as convert flags (workstation)",
        "edge_har.convert.tune_cli:register_tune",
        "train",
        ("tensorflow", "tf_keras", "optuna"),
        False,
        "runs on the workstation and needs TensorFlow and Optuna",
    ),
    _interpreter(
        "evaluate",
        "accuracy, macro-F1, per-class scores and confusion matrices of a bundle's variants on a data set",
        "edge_har.convert.cli:register_evaluate",
    ),
    _workstation(
        "convert-video",
        "train a video CNN-LSTM on clips (or images) and write a bundle with a frame "
        "encoder and a temporal head (workstation; needs TensorFlow)",
        "edge_har.convert.video_cli:register_convert_video",
    ),
    _interpreter(
        "evaluate-video",
        "accuracy, macro-F1, per-class scores and confusion matrices of a video bundle on clips (no TensorFlow)",
        "edge_har.convert.video_cli:register_evaluate_video",
    ),
    _interpreter(
        "run",
        "run the edge daemon: a sensor source through a model bundle, predictions published over MQTT",
        "edge_har.device.daemon_cli:register_run",
    ),
    Subcommand(
        "validate-config",
        "check device configs: unknown keys, wrong types, missing files; exit 0 or 1",
        "edge_har.device.daemon_cli:register_validate_config",
    ),
    Subcommand(
        "record",
        "record labelled sensor data on the device into session folders (no model needed); push to serve",
        "edge_har.device.record_cli:register",
    ),
    Subcommand(
        "subscribe",
        "show predictions arriving over MQTT, live (lines or a table); optionally append them to JSONL",
        "edge_har.subscribe:register",
    ),
    Subcommand(
        "serve",
        "a web app: drop a recording, clip or image and see the prediction; a live view and history "
        "of every device on a broker (loopback by default)",
        "edge_har.web.serve_cli:register",
        "web",
        ("fastapi", "uvicorn", "multipart", "sqlalchemy"),
        False,
        "needs the web extra",
    ),
    Subcommand(
        "keygen",
        "make an Ed25519 key pair for signing bundles (NAME.key stays here, NAME.pub goes to the devices)",
        "edge_har.sign_cli:register_keygen",
        "device",
        ("cryptography",),
        False,
        "needs the cryptography package",
    ),
    Subcommand(
        "sign",
        "sign a bundle (bundle.sig over bundle.json, which holds every file's sha256) so devices that trust the key run it",
        "edge_har.sign_cli:register_sign",
        "device",
        ("cryptography",),
        False,
        "needs the cryptography package",
    ),
    Subcommand(
        "verify",
        "check a bundle as a device does: every file's sha256 and bundle.sig by a trusted key; exit 0 or 1",
        "edge_har.sign_cli:register_verify",
        "device",
        ("cryptography",),
        False,
        "needs the cryptography package",
    ),
    _interpreter("bench", "benchmark a bundle: latency, accuracy, end to end", "edge_har.benchmarks.cli:register"),
    _interpreter(
        "demo",
        "end to end on this machine: make a bundle, start mosquitto, run the daemon on a "
        "replay, show the predictions over MQTT",
        "edge_har.demo:register",
    ),
)
BY_NAME = {s.name: s for s in SUBCOMMANDS}

log = logging.getLogger("edge_har")


def _top_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-har",
        add_help=add_help,
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
    return parser


def selected_command(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names, found without importing any subcommand module."""
    parser = _top_parser(add_help=False)
    sub = parser.add_subparsers(dest="command")
    for s in SUBCOMMANDS:
        sub.add_parser(s.name, add_help=False)
    known, _ = parser.parse_known_args(argv)
    return known.command


class _OneSubcommand:
    """What a module's ``register`` function is given: ``add_parser`` for its own subcommand only.

    The one-line help comes from :data:`SUBCOMMANDS`, so it has one source whether or not the
    module is imported.
    """

    def __init__(self, subparsers: Any, spec: Subcommand) -> None:
        self._subparsers = subparsers
        self._spec = spec

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if name != self._spec.name:
            raise ValueError(f"{self._spec.target} registers {name!r}, but the table names it {self._spec.name!r}")
        kwargs.pop("help", None)
        return self._subparsers.add_parser(name, help=self._spec.help, **kwargs)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with ``command``'s full options (its module imported) and a one-line entry for the rest."""
    parser = _top_parser()
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for s in SUBCOMMANDS:
        if s.name == command:
            module_name, func_name = s.target.split(":")
            register: Callable[[_OneSubcommand], object] = getattr(importlib.import_module(module_name), func_name)
            register(_OneSubcommand(subparsers, s))
        else:
            subparsers.add_parser(s.name, help=s.help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = selected_command(argv)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        BY_NAME[args.command].check_installed()
        result = args.func(args)
    except EdgeHarError as exc:
        print(f"edge-har {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
