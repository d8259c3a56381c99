"""``edge-har convert`` and ``edge-har evaluate``.

Registration imports nothing heavy: TensorFlow is imported only when
``convert`` runs (``edge_har.cli`` has checked the train extra is installed), and
``evaluate`` never imports it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from edge_har.core.errors import CommandError

log = logging.getLogger(__name__)

EXIT_GATE_REFUSED = 3


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _variant_list(text: str) -> tuple[str, ...]:
    from edge_har.convert.quantize import VARIANTS

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    return names


def _has_option(parser: argparse.ArgumentParser, option: str) -> bool:
    return option in parser._option_string_actions  # noqa: SLF001 - argparse has no public query


def _input_errors() -> tuple[type[BaseException], ...]:
    """Error types that mean "bad input or options", shown as one line rather than a traceback."""
    from edge_har.convert import datasets, splits
    from edge_har.convert.evaluate import EvaluationError
    from edge_har.convert.export import ExportError
    from edge_har.convert.quantize import CalibrationError
    from edge_har.core.bundle import BundleError
    from edge_har.core.preprocessing import PreprocessingError
    from edge_har.core.recordings import RecordingError

    extra = [getattr(datasets, "DatasetError", None), getattr(splits, "SplitError", None)]
    return tuple(
        [BundleError, PreprocessingError, RecordingError, EvaluationError, ExportError, CalibrationError]
        + [e for e in extra if isinstance(e, type)]
    )


# ---------------------------------------------------------------- convert

CONVERT_EPILOG = """\
examples:
  edge-har convert --data /work/shared/data/hmp/HMP --out bundles/hmp
  edge-har convert --data my_recordings/ --window 2s --stride 0.25s --epochs 50 --out bundles/mine
  edge-har convert --data data.csv --format csv ... --split subject --test-subjects s3,s7 --out bundles/subj

The bundle (a directory) holds model_float32.tflite, model_dynamic_range.tflite, model_int8.tflite,
keras_model.h5, bundle.json (labels, input spec, preprocessing, metrics, provenance), the training
history and curves, and per-variant test metrics with confusion matrices. Every variant is evaluated
on the test split with the device's interpreter; the bundle is refused (exit status 3, nothing written)
when int8 accuracy is more than --max-int8-drop points below float32.
"""


def register_convert(subparsers: Any) -> argparse.ArgumentParser:
    from edge_har.convert.datasets import add_dataset_arguments
    from edge_har.convert.models import add_model_arguments
    from edge_har.convert.pipeline import DEFAULT_MAX_INT8_DROP, DEFAULT_STRIDE, DEFAULT_WINDOW
    from edge_har.convert.quantize import DEFAULT_CALIBRATION_SIZE, DEFAULT_VARIANTS, VARIANTS
    from edge_har.convert.splits import add_split_arguments
    from edge_har.convert.train import add_train_arguments

    parser = subparsers.add_parser(
        "convert",
        description=(
            "Load a labelled IMU data set, split it by recording, train the CNN-LSTM (GPU when present, "
            "MirroredStrategy on several), quantize it to TFLite float32 / dynamic-range / full-integer int8, "
            "evaluate every variant with the device's interpreter, and write a model bundle."
        ),
        epilog=CONVERT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataset_arguments(parser)
    add_split_arguments(parser)
    group = parser.add_argument_group("windows")
    group.add_argument(
        "--window",
        default=DEFAULT_WINDOW,
        help="window length, in samples ('96') or seconds ('3s') (default: %(default)s)",
    )
    group.add_argument(
        "--stride", default=DEFAULT_STRIDE, help="step between windows, in samples or seconds (default: %(default)s)"
    )
    group.add_argument(
        "--target-rate",
        type=_positive_float,
        default=None,
        metavar="HZ",
        help="resample recordings to this rate before windowing (default: the data set's rate)",
    )
    group.add_argument(
        "--skip-short",
        action="store_true",
        help="skip recordings shorter than one window (with a warning and a count) instead of failing",
    )
    add_model_arguments(parser)
    add_train_arguments(parser)
    group = parser.add_argument_group("quantization and the bundle")
    group.add_argument(
        "--variants",
        type=_variant_list,
        default=DEFAULT_VARIANTS,
        metavar="NAME,...",
        help=f"variants to produce, from {', '.join(VARIANTS)} (default: {','.join(DEFAULT_VARIANTS)})",
    )
    group.add_argument(
        "--default-variant",
        default="int8",
        help="the variant a device runs unless told otherwise (default: %(default)s)",
    )
    group.add_argument(
        "--calibration-size",
        type=_positive_int,
        default=DEFAULT_CALIBRATION_SIZE,
        metavar="N",
        help="training windows (stratified by class) used to calibrate full-integer quantization; "
        "an error if the training split has fewer (default: %(default)s)",
    )
    group.add_argument(
        "--max-int8-drop",
        type=float,
        default=DEFAULT_MAX_INT8_DROP,
        metavar="POINTS",
        help="refuse the bundle when int8 test accuracy is more than this many percentage points "
        "below float32 (default: %(default)s)",
    )
    group.add_argument(
        "--allow-int8-drop",
        action="store_true",
        help="write the bundle even when int8 falls below the --max-int8-drop limit (recorded in bundle.json)",
    )
    group.add_argument(
        "--out", type=Path, default=None, help="bundle directory to write (default: bundles/<data set name>)"
    )
    group.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    group.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    if not _has_option(parser, "--seed"):
        parser.add_argument(
            "--seed",
            type=int,
            default=42,
            help="seed for the split, weight initialisation, shuffling and calibration (default: %(default)s)",
        )
    parser.set_defaults(func=run_convert_command)
    return parser


def run_convert_command(args: argparse.Namespace) -> int:
    from edge_har.convert.datasets import dataset_from_args
    from edge_har.convert.models import ModelConfig
    from edge_har.convert.pipeline import AccuracyGateError, ConvertError, ConvertOptions, run_convert, slug
    from edge_har.convert.splits import split_from_args
    from edge_har.convert.train import TrainingError, train_config_from_args

    errors = _input_errors() + (ConvertError, TrainingError)
    try:
        model_config = ModelConfig.from_args(args)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    try:
        dataset = dataset_from_args(args)
        split = split_from_args(args, dataset)
        options = ConvertOptions(
            out=args.out or Path("bundles") / slug(dataset.name),
            data=Path(dataset.root),
            window=args.window,
            stride=args.stride,
            target_rate=args.target_rate,
            skip_short=args.skip_short,
            model=model_config,
            train=train_config_from_args(args),
            variants=args.variants,
            default_variant=args.default_variant,
            calibration_size=args.calibration_size,
            max_int8_drop=args.max_int8_drop,
            allow_int8_drop=args.allow_int8_drop,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
        out = run_convert(options, dataset=dataset, split=split)
    except AccuracyGateError as exc:
        raise CommandError(str(exc), code=EXIT_GATE_REFUSED) from exc
    except errors as exc:
        raise CommandError(str(exc)) from exc
    print(summary_table(out))
    return 0


def summary_table(bundle_dir: Path) -> str:
    from edge_har.core.bundle import Bundle

    bundle = Bundle.load(bundle_dir)
    lines = [
        f"bundle {bundle.model_id} written to {bundle.root}",
        "",
        f"{'variant':<15} {'size':>10} {'accuracy':>9} {'macro-F1':>9}  quantization",
    ]
    for name, v in bundle.variants.items():
        m = v.metrics
        lines.append(
            f"{name + ('*' if name == bundle.default_variant else ''):<15} {v.size_bytes / 1024:>8.1f}kB "
            f"{m.get('accuracy', float('nan')):>9.4f} {m.get('macro_f1', float('nan')):>9.4f}  {v.quantization}"
        )
    split = bundle.metrics.get("split", {})
    lines += [
        "",
        f"* default variant. Test split: {split.get('windows', {}).get('test', '?')} windows; "
        f"training {bundle.data.get('training', {}).get('seconds', '?')} s, "
        f"{bundle.data.get('training', {}).get('epochs_run', '?')} epochs.",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- evaluate

EVALUATE_EPILOG = """\
examples:
  edge-har evaluate bundles/hmp --data /work/shared/data/hmp/HMP
  edge-har evaluate bundles/hmp --data other_recordings/ --split all --variant int8 --out runs/eval-other

--split test re-creates the exact test split recorded in bundle.json (the data set must hold those
recordings); --split all evaluates every window of the data given. Give the same data-set flags
as for convert (--format, --sample-rate, ...); value scaling, resampling, windowing and
normalisation always come from the bundle. For each variant it writes
<out>/<variant>/metrics.json (accuracy, macro-F1, per-class precision/recall/F1, confusion matrix)
and <out>/<variant>/confusion_matrix.png, plus <out>/summary.json. No TensorFlow needed.
"""


def register_evaluate(subparsers: Any) -> argparse.ArgumentParser:
    from edge_har.convert.datasets import add_dataset_arguments

    parser = subparsers.add_parser(
        "evaluate",
        description=(
            "Run a bundle's .tflite variants with the device's interpreter over a data set's windows, prepared "
            "with the bundle's own preprocessing, and report the scores."
        ),
        epilog=EVALUATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bundle", type=Path, metavar="BUNDLE", help="bundle directory (or its bundle.json)")
    add_dataset_arguments(parser)
    group = parser.add_argument_group("evaluation")
    group.add_argument("--variant", default="all", help="variant name, or 'all' (default: %(default)s)")
    group.add_argument(
        "--split",
        choices=("test", "all"),
        default="test",
        help="the bundle's recorded test split, or every window of the data (default: %(default)s)",
    )
    group.add_argument(
        "--out", type=Path, default=None, help="report directory (default: runs/evaluate/<bundle name>-<split>)"
    )
    group.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "ai_edge_litert", "tflite_runtime", "tf_lite"),
        help="TFLite runtime (default: %(default)s, the first of ai_edge_litert, tflite_runtime, tf_lite)",
    )
    group.add_argument("--threads", type=_positive_int, default=1, help="interpreter threads (default: %(default)s)")
    group.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_evaluate_command)
    return parser


def run_evaluate_command(args: argparse.Namespace) -> int:
    from edge_har.convert.datasets import dataset_from_args
    from edge_har.convert.evaluate import evaluate_bundle, load_bundle
    from edge_har.core.interpreter import InterpreterError
    from edge_har.core.metrics import format_report

    try:
        bundle = load_bundle(args.bundle)
        if bundle.kind == "video":
            raise CommandError(
                f"{bundle.root} is a video bundle: use edge-har evaluate-video {args.bundle} --data CLIPS"
            )
        dataset = dataset_from_args(args)
        out = args.out or Path("runs") / "evaluate" / f"{bundle.root.resolve().name}-{args.split}"
        variants = None if args.variant == "all" else [args.variant]
        results = evaluate_bundle(
            bundle,
            dataset,
            variants=variants,
            split=args.split,
            out_dir=out,
            backend=args.backend,
            num_threads=args.threads,
            progress=not args.no_progress,
        )
    except _input_errors() + (InterpreterError,) as exc:
        raise CommandError(str(exc)) from exc
    import json

    for name, entry in results["variants"].items():
        report = json.loads(Path(entry["files"]["metrics"]).read_text())
        print(format_report(report, title=f"\n== {name} ({args.split}: {results['data']['windows']} windows)"))
    print(f"\nreports written to {out}")
    return 0
