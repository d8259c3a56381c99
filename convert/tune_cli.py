"""``edge-har tune``: the search's command line.

The data, split and window flags are convert's own (the same helpers, the same
defaults), so a flag means the same in both commands and ``--convert`` hands the best
trial's flags to ``edge-har convert`` unchanged. Registration imports neither Optuna nor
TensorFlow: ``edge-har --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Any

from edge_har.core.errors import CommandError

log = logging.getLogger(__name__)

DEFAULT_STUDY = "edge-har-tune"
DEFAULT_TRIAL_EPOCHS = 30
DEFAULT_TRIAL_PATIENCE = 5
MAX_TRIALS = 100_000
EXIT_NO_TRIAL = 1  # the search ran, and no trial is usable (all over the budget, pruned or failed)


def _count(text: str) -> int:
    """A positive whole number of trials (at most MAX_TRIALS)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number 1..{MAX_TRIALS:,}, got {text!r}") from None
    if not 1 <= value <= MAX_TRIALS:
        raise argparse.ArgumentTypeError(f"expected a whole number 1..{MAX_TRIALS:,}, got {text!r}")
    return value


def _positive(text: str) -> float:
    """A finite number > 0 (a budget, a timeout)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _macs(text: str) -> int:
    """A whole number of multiply-accumulates > 0 (``2e6`` and ``2_000_000`` are fine)."""
    try:
        value = float(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of MACs > 0 (e.g. 2e6), got {text!r}") from None
    if not (math.isfinite(value) and value >= 1 and value < 1e18):
        raise argparse.ArgumentTypeError(f"expected a number of MACs 1..1e18 (e.g. 2e6), got {text!r}")
    return int(value)


def _names(text: str) -> tuple[str, ...]:
    from edge_har.convert.families import FAMILIES

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in FAMILIES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown family {', '.join(unknown) or text!r}; known: {', '.join(FAMILIES)}")
    return names


def _widths(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(not (math.isfinite(v) and 0 < v <= 4) for v in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated width factors in (0, 4], e.g. 0.25,0.5; got {text!r}"
        )
    return values


TUNE_EPILOG = """\
examples:
  edge-har tune --data ../shared/data/hmp/HMP --trials 40 --budget-size-kb 64 --out runs/tune-hmp
  edge-har tune --data ../shared/data/hapt --preset uci-har --trials 30 --budget-latency-ms 2 --convert --out runs/t
  # workers on several machines (or one per GPU) share one study:
  edge-har tune --data D --storage postgresql://tuner@db:5432/studies --study hmp-64k --trials 20 --out runs/w1
  # or one worker per GPU on one machine, each with its own --out:
  CUDA_VISIBLE_DEVICES=1 edge-har tune --data D --storage sqlite:///runs/hmp.sqlite3 --study hmp-64k --out runs/g1

Each trial samples a model family, its width (conv filters and LSTM units scaled), blocks, kernel and pool
sizes, dropouts, learning rate, batch size and augmentation (off, 'default', or sampled strengths); trains
on the training windows with a pruner watching validation accuracy per epoch; converts to int8 (calibrated
as convert does); and scores the int8 model's macro-F1 on the VALIDATION windows through the device's
interpreter (the test windows stay unseen). A trial over the budget is kept as infeasible (value -inf,
user attrs feasible=false and its reasons). One line per trial is logged; at the end the table of every
trial of the study (all workers, best first) is printed and written to OUT/trials.md, the plot of int8
macro-F1 against MACs (int8 size where MACs are not counted) with the budget line to OUT/trials.png, and
the best trial's convert flags to OUT/preset.json ('flags' and 'argv'):
  edge-har convert --data D $(python -c 'import json,shlex;print(shlex.join(json.load(open("OUT/preset.json"))["argv"]))') --out bundles/x
--convert does that here, through convert's gate, into OUT/bundle (--convert-out). No trial within the budget
is an error (exit 1) naming the smallest figures seen.
"""


def register_tune(subparsers: Any) -> argparse.ArgumentParser:
    from edge_har.convert.cli import _positive_int, add_window_arguments
    from edge_har.convert.datasets import add_dataset_arguments
    from edge_har.convert.quantize import DEFAULT_CALIBRATION_SIZE
    from edge_har.convert.splits import add_split_arguments

    parser = subparsers.add_parser(
        "tune",
        description=(
            "Search model families, sizes, augmentation and training settings with Optuna for the int8 model "
            "with the best validation macro-F1 within a size / MACs / latency budget; write the best as convert "
            "flags and, with --convert, convert it."
        ),
        epilog=TUNE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataset_arguments(parser, required=True)
    add_split_arguments(parser)
    add_window_arguments(parser, "windows (as edge-har convert)")

    group = parser.add_argument_group("search")
    group.add_argument("--trials", type=_count, default=20, metavar="N", help="trials this worker runs (default: 20)")
    group.add_argument(
        "--timeout", type=_positive, default=None, metavar="S", help="stop starting trials after S seconds"
    )
    group.add_argument(
        "--families", type=_names, default=None, metavar="NAME,...", help="model families to search (default: all)"
    )
    group.add_argument(
        "--widths",
        type=_widths,
        default=None,
        metavar="W,...",
        help="width factors of the filters (64,128,128) and LSTM units (128) (default: 0.125,0.25,0.5,1)",
    )
    group.add_argument(
        "--epochs",
        type=_positive_int,
        default=DEFAULT_TRIAL_EPOCHS,
        help="most epochs per trial (default: %(default)s)",
    )
    group.add_argument(
        "--patience",
        type=_positive_int,
        default=DEFAULT_TRIAL_PATIENCE,
        help="early stopping on validation loss, per trial (default: %(default)s)",
    )
    group.add_argument(
        "--pruner",
        default="median",
        metavar="SPEC",
        help="stop poor trials on their validation accuracy curve: median (MedianPruner, after 3 trials and "
        "1 epoch), none, or below:ACC (any epoch under ACC) (default: %(default)s)",
    )
    group.add_argument(
        "--calibration-size",
        type=_positive_int,
        default=DEFAULT_CALIBRATION_SIZE,
        metavar="N",
        help="training windows calibrating each int8 model, as convert (default: %(default)s)",
    )
    group.add_argument(
        "--latency-runs",
        type=_positive_int,
        default=50,
        metavar="N",
        help="windows timed for the int8 latency (median) (default: %(default)s)",
    )

    group = parser.add_argument_group("budget (int8 model; a trial over any bound is infeasible)")
    group.add_argument(
        "--budget-size-kb", type=_positive, default=None, metavar="K", help="int8 .tflite size, kB (1024 B)"
    )
    group.add_argument("--budget-macs", type=_macs, default=None, metavar="M", help="multiply-accumulates per window")
    group.add_argument(
        "--budget-latency-ms",
        type=_positive,
        default=None,
        metavar="L",
        help="int8 ms per window through the TFLite interpreter, 1 thread, on THIS machine",
    )

    group = parser.add_argument_group("study and output")
    group.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="the study's database: sqlite:///FILE or postgresql://USER@HOST:PORT/DB, shared by every worker "
        "(default: SQLite in OUT.optuna.sqlite3, beside --out)",
    )
    group.add_argument(
        "--study",
        default=DEFAULT_STUDY,
        metavar="NAME",
        help="study name; a worker joins an existing study of this name (default: %(default)s)",
    )
    group.add_argument("--out", type=Path, required=True, help="this worker's folder: trials, table, plot, preset")
    group.add_argument(
        "--preset-out",
        type=Path,
        default=None,
        metavar="FILE",
        help="the best trial's flags (.json or .yaml; default: OUT/preset.json)",
    )
    group.add_argument(
        "--convert", action="store_true", help="convert the best trial with edge-har convert (its gate too)"
    )
    group.add_argument("--convert-out", type=Path, default=None, metavar="DIR", help="its bundle (default: OUT/bundle)")
    group.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --convert-out")
    group.add_argument("--no-progress", action="store_true", help="no progress bars (--convert)")
    parser.set_defaults(func=run_tune_command)
    return parser


def _tune_options(args: argparse.Namespace, dataset: Any) -> Any:
    from edge_har.convert.models import ModelConfig
    from edge_har.convert.pipeline import ConvertOptions
    from edge_har.convert.train import TrainConfig
    from edge_har.convert.tune import Budget, TuneOptions
    from edge_har.convert.tune_space import DEFAULT_WIDTHS, SearchSpace, default_space

    space = default_space()
    space = SearchSpace(
        families=args.families or space.families, widths=args.widths or DEFAULT_WIDTHS, augment=space.augment
    )
    convert = ConvertOptions(
        out=args.out,
        data=Path(dataset.root),
        window=args.window,
        stride=args.stride,
        train_stride=args.train_stride,
        target_rate=args.target_rate,
        skip_short=args.skip_short,
        model=ModelConfig(),
        train=TrainConfig(epochs=args.epochs, patience=args.patience, seed=args.seed),
        calibration_size=args.calibration_size,
        progress=False,
    )
    budget = Budget(size_kb=args.budget_size_kb, macs=args.budget_macs, latency_ms=args.budget_latency_ms)
    return TuneOptions(
        convert=convert,
        space=space,
        budget=budget,
        trials=args.trials,
        timeout_s=args.timeout,
        storage=args.storage,
        study=args.study,
        pruner=args.pruner,
        latency_runs=args.latency_runs,
        protocol=args.preset,
    )


def convert_namespace(args: argparse.Namespace, argv: list[str], out: Path) -> argparse.Namespace:
    """``edge-har convert``'s arguments for the preset's ``argv``, with tune's data and split flags as given."""
    from edge_har.convert.cli import register_convert
    from edge_har.convert.evaluate import data_flag_defaults
    from edge_har.convert.splits import add_split_arguments

    parser = argparse.ArgumentParser(prog="edge-har")
    register_convert(parser.add_subparsers(dest="command"))
    ns = parser.parse_args(["convert", "--data", str(args.data), *argv, "--out", str(out)])
    split_parser = argparse.ArgumentParser(add_help=False)
    add_split_arguments(split_parser)
    dests = set(data_flag_defaults()) | {a.dest for a in split_parser._actions} | {"data"}  # noqa: SLF001
    for dest in dests - {"seed"}:
        if hasattr(args, dest):
            setattr(ns, dest, getattr(args, dest))
    ns.overwrite, ns.no_progress, ns.log_level = args.overwrite, args.no_progress, getattr(args, "log_level", "INFO")
    return ns


def run_tune_command(args: argparse.Namespace) -> int:
    from edge_har.convert.cli import _input_errors, apply_preset, run_convert_command
    from edge_har.convert.datasets import dataset_from_args
    from edge_har.convert.pipeline import ConvertError
    from edge_har.convert.quiet import quiet_tensorflow
    from edge_har.convert.splits import split_from_args

    quiet_tensorflow(getattr(args, "log_level", None))
    from edge_har.convert.train import TrainingError
    from edge_har.convert.tune import PRESET_FILE, TuneError, make_pruner, run_tune, write_preset

    try:
        make_pruner(args.pruner)  # a bad --pruner is refused before the data is read
    except TuneError as exc:
        raise CommandError(str(exc)) from exc
    apply_preset(args)
    try:
        dataset = dataset_from_args(args)
        split = split_from_args(args, dataset)
        options = _tune_options(args, dataset)
        result = run_tune(options, dataset=dataset, split=split)
    except (TuneError, ConvertError, TrainingError, ValueError) + _input_errors() as exc:
        raise CommandError(str(exc)) from exc
    print(f"study {args.study}: {len(result.study.trials)} trials ({result.storage.split('://')[0]})")
    print(result.table)
    print(f"\ntable: {result.files['table']}  plot: {result.files['plot']}")
    if result.best is None:
        raise CommandError(result.infeasible_message(options.budget), code=EXIT_NO_TRIAL)
    preset = result.files["preset"]
    if args.preset_out is not None:
        from edge_har.convert.tune import read_preset

        preset = write_preset(read_preset(result.files["preset"]), args.preset_out)
    print(f"best: trial {result.best.number}, int8 val macro-F1 {result.best.user_attrs['int8_val_macro_f1']:.4f}")
    print(f"preset ({PRESET_FILE}): {preset}")
    if not args.convert:
        return 0
    from edge_har.convert.tune import read_preset

    argv = [str(a) for a in read_preset(result.files["preset"])["argv"]]
    out = args.convert_out or Path(args.out) / "bundle"
    log.info("converting trial %d: edge-har convert %s --out %s", result.best.number, " ".join(argv), out)
    return int(run_convert_command(convert_namespace(args, argv, out)) or 0)
