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


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _variant_list(text: str) -> tuple[str, ...]:
    from edge_har.convert.quantize import VARIANTS

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    if "float32" not in names:
        raise argparse.ArgumentTypeError(
            f"{text!r} lacks float32: the float32 variant is the reference the quantized ones are checked against "
            "(e.g. float32,int8)"
        )
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

UCI_HAR_BASIC = ("WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING")

# Published protocols as flag sets; a preset fills only the flags left at their defaults.
# --train-stride 16: training windows every 16 samples (test windows keep the protocol's 64). Measured on
# HAPT's six basic activities, 6 channels (benchmarks/README.md): 90.9% -> 93.3% int8 test accuracy, as
# the 50%-overlap windows alone give the network 6366 training windows and it stops learning after 3
# epochs; HMP's default (0.5 s stride on 3 s windows) is as dense already.
PRESETS: dict[str, dict[str, Any]] = {
    # UCI HAR (Anguita et al., ESANN 2013) on HAPT's raw signals: the six basic activities, 2.56 s windows
    # (128 samples at 50 Hz) with 50% overlap; the test subjects are HAPT's predefined split.
    # --family tinyhar: over 5 seeds int8 95.25 +- 0.68% against the CNN-LSTM's 92.45 +- 0.55% (5 seeds),
    # every seed through the int8 gate (benchmarks/README.md, "Model families").
    "uci-har": {
        "window": "128",
        "stride": "64",
        "train_stride": "16",
        "classes": UCI_HAR_BASIC,
        "family": "tinyhar",
    },
    # the same windows over all twelve HAPT classes, the postural transitions included; a transition
    # shorter than one window (2.56 s) gives no window and is left out (counted in the log)
    "hapt-12": {"window": "128", "stride": "64", "train_stride": "16", "skip_short": True},
}


def apply_preset(args: argparse.Namespace) -> list[str]:
    """Fill the flags ``--preset`` names that were left at their defaults; return what was set."""
    from edge_har.convert.models import ModelConfig
    from edge_har.convert.pipeline import DEFAULT_STRIDE, DEFAULT_WINDOW

    preset = getattr(args, "preset", None)
    if not preset:
        return []
    defaults = {
        "window": DEFAULT_WINDOW,
        "stride": DEFAULT_STRIDE,
        "train_stride": None,
        "classes": None,
        "skip_short": False,
        "family": ModelConfig().family,
    }
    taken = []
    for key, value in PRESETS[preset].items():
        if getattr(args, key, defaults[key]) == defaults[key]:
            setattr(args, key, value)
            shown = "" if value is True else f" {','.join(value) if isinstance(value, tuple) else value}"
            taken.append(f"--{key.replace('_', '-')}{shown}")
    log.info("preset %s: %s", preset, "; ".join(taken) or "every flag given explicitly")
    return taken


CONVERT_EPILOG = """\
examples:
  edge-har convert --data /work/shared/data/hmp/HMP --out bundles/hmp
  edge-har convert --data /work/shared/data/hapt --preset uci-har --out bundles/hapt6       # UCI HAR protocol
  edge-har convert --data /work/shared/data/hapt --preset uci-har --columns acc_x,acc_y,acc_z --out bundles/hapt6-acc
  edge-har convert --data /work/shared/data/hapt --preset hapt-12 --out bundles/hapt12     # + postural transitions
  edge-har convert --data my_recordings/ --window 2s --stride 0.25s --epochs 50 --out bundles/mine
  edge-har convert --data data.csv --format csv ... --split subject --test-subjects s3,s7 --out bundles/subj

layouts (README's table; each data-set option's help shows an example of it):
  --data recs/ --sample-rate 50 --channels ax,ay,az --subject-regex '(s\\d+)'      class folders
  --data log.csv --label-column activity --subject-column user --trial-column trial --timestamp-column t
  --data "UCI HAR Dataset" --window 128 --stride 64                                 UCI HAR's windows
  --data ../shared/data/hapt --classes WALKING,WALKING_UPSTAIRS,WALKING_DOWNSTAIRS,SITTING,STANDING,LAYING
         --window 128 --stride 64 [--columns acc_x,acc_y,acc_z]                     UCI HAPT, UCI HAR protocol
  --data logs/ --intervals logs/labels.csv --recording-files '{recording}_acc.csv,{recording}_gyro.csv'
         --sample-rate 50 --interval-units seconds --unlabelled-class other         interval labels
  --data subjects/ --name-regex '(?P<subject>s\\d+)/(?P<label>[a-z]+)_(?P<trial>\\d+)\\.csv$' --sample-rate 50
  --data BasicMotions/ --sample-rate 10 --window 100 --stride 100                   UEA/UCR .ts (_TRAIN/_TEST)
  --label-map 'F*=fall,D*=adl' --columns 3,4,5 --channels ax,ay,az --scale 0.000598 --classes fall,adl

the other options, by example:
  split:    --split subject --test-subjects s2,s4 --val-subjects s9   --split predefined
            --split recording --test-fraction 0.2 --val-fraction 0.15 --seed 7
  windows:  --window 2.56s --stride 64 --target-rate 25 --skip-short
  model:    --conv-filters 32,64 --kernel-size 5 --pool-size 2 --conv-dropout 0.1 --lstm-units 64
            --bidirectional --dropout 0.3 --no-batch-norm --input-noise 0.05 --lstm-export fused
  training: --epochs 100 --batch-size 128 --patience 10 --learning-rate 0.0005 --no-class-weights
            --mixed-precision off --logical-cpus 2 --augment default,mixup=0.2
  family:   --family deepconvlstm   (or cnn-lstm, conv2d-lstm, tinyhar; the model flags size it)
  seeds:    --seeds 5   (5 training seeds on one split: mean +- std, table in OUT.seeds/seeds.md)
  bundle:   --variants float32,int8 --default-variant float32 --calibration-size 1000 --max-int8-drop 2
            --allow-int8-drop --allow-degenerate --out bundles/x --overwrite --no-progress

Falls are events (a file per fall, labelled as a whole): learn the impact, then choose the device's rule
(p >= threshold for k windows) on the validation trials for at most one false alarm per hour:
  edge-har convert --data ../shared/data/mobifall --label-from category --event-focus FALLS=3,3 --event-rest ADL \
      --skip-short --test-subjects 3,9,13,17,29 --val-subjects 4,14,19 --event-class FALLS \
      --target-false-alarms 1 --refractory 30 --impact-span 2,10 --out bundles/mobifall

The bundle (a directory) holds model_float32.tflite, model_dynamic_range.tflite, model_int8.tflite,
keras_model.h5, bundle.json (labels, input spec, preprocessing, metrics, provenance), the training
history and curves, and per-variant test metrics with confusion matrices. Every variant is evaluated
on the test split with the device's interpreter; the bundle is refused (exit status 3, no bundle written)
when int8 accuracy is more than --max-int8-drop points below float32, or when a variant predicts one
class for (nearly) every test window (a degenerate model). A refused conversion keeps the trained
Keras model, its training record and reports in <out>.refused/; re-quantize and re-gate it without
retraining (data, split and preprocessing come from what it records); the refusal names a variant
this run measured within the limit, or the dynamic-range variant to measure (int8 weights, float
activations; the gate applies to full-integer variants only):
  edge-har convert --from-keras bundles/hmp.refused --out bundles/hmp --variants float32,dynamic_range --default-variant dynamic_range
  edge-har convert --from-keras bundles/hmp/keras_model.h5 --out bundles/hmp-again --max-int8-drop 2

Personalise a bundle with your own recordings (fine-tune, re-quantize, gate; report.md compares before/after):
  edge-har convert --from-bundle bundles/hmp --data my_recordings/ --out bundles/hmp-me
  edge-har convert --from-bundle bundles/hmp --data my_recordings/ --add-classes --train-layers all --out bundles/hmp-me
  edge-har convert --from-bundle bundles/hapt6 --data my_recordings/ --original-data ../shared/data/hapt --rehearse 0.5 \
      --out bundles/hapt6-me
"""


def add_window_arguments(parser: argparse.ArgumentParser, title: str = "windows") -> None:
    """--preset, --window, --stride, --train-stride, --target-rate, --skip-short: how recordings become
    windows (convert and tune read them alike, so one search's preset converts as it was searched)."""
    from edge_har.convert.pipeline import DEFAULT_STRIDE, DEFAULT_WINDOW

    group = parser.add_argument_group(title)
    group.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="a published protocol's flags, for those not given: uci-har = --window 128 --stride 64 "
        "--train-stride 16 --family tinyhar --classes the six basic activities (UCI HAR on HAPT's raw signals; HAPT's own split: test subjects 2, 4, 9, 10, "
        "12, 13, 18, 20, 24, validation by subject from the other 21); hapt-12 = the same windows, all 12 "
        "classes with the postural transitions, --skip-short (transitions under 2.56 s give no window)",
    )
    group.add_argument(
        "--window",
        default=DEFAULT_WINDOW,
        help="window length, in samples ('96') or seconds ('3s') (default: %(default)s)",
    )
    group.add_argument(
        "--stride", default=DEFAULT_STRIDE, help="step between windows, in samples or seconds (default: %(default)s)"
    )
    group.add_argument(
        "--train-stride",
        default=None,
        metavar="STEP",
        help="step between training windows only, in samples or seconds, e.g. --train-stride 16: more "
        "overlapping training windows, a cheap augmentation; validation, test and the device keep --stride "
        "(default: --stride)",
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


def register_convert(subparsers: Any) -> argparse.ArgumentParser:
    from edge_har.convert.datasets import add_dataset_arguments
    from edge_har.convert.models import add_model_arguments
    from edge_har.convert.pipeline import DEFAULT_MAX_INT8_DROP
    from edge_har.convert.quantize import DEFAULT_CALIBRATION_SIZE, DEFAULT_VARIANTS, VARIANTS
    from edge_har.convert.splits import add_split_arguments
    from edge_har.convert.train import add_augment_argument, add_train_arguments

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
    add_dataset_arguments(parser, required=False)  # required unless --from-keras (checked when run)
    add_split_arguments(parser)
    add_window_arguments(parser)
    add_model_arguments(parser)
    add_train_arguments(parser)
    add_augment_argument(parser)
    parser.add_argument_group("seeds (an honest figure)").add_argument(
        "--seeds",
        default=None,
        metavar="N|LIST",
        help="train N seeds (from --seed on) or the listed ones on the same split, each through the whole "
        "conversion and gate, into OUT.seeds/seed-<n>; report mean +- std and the table per seed, and publish "
        "the seed with the lowest validation loss at --out (bundle.json metrics.seeds)",
    )
    group = parser.add_argument_group(
        "events (a fall: one alarm per event, few false ones)",
        "--event-class CLASS: after the bundle is written, its default variant runs over the validation "
        "recordings read whole, and the most sensitive event rule within --target-false-alarms goes into "
        "bundle.json (events.CLASS: threshold, k, refractory_s, the figures and the curve); the daemon "
        "publishes each event once on <prefix>/<id>/event. Pair it with --event-focus for files labelled as "
        "a whole.",
    )
    group.add_argument("--event-class", default=None, metavar="CLASS", help="the class that is an event (a fall)")
    add_event_rule_arguments(group)
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
        "--allow-degenerate",
        action="store_true",
        help="write the bundle even when a variant predicts one class for (nearly) every test window "
        "(recorded in bundle.json's metrics.gate)",
    )
    group.add_argument(
        "--from-keras",
        type=Path,
        default=None,
        metavar="BUNDLE_OR_H5",
        help="no training: re-quantize, evaluate and gate the float Keras model of a bundle, of a refused "
        "conversion (<out>.refused) or its keras_model.h5; data flags, split, window and model come from "
        "its bundle.json / refused.json (--data and data flags given here win)",
    )
    add_personalise_arguments(parser)
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
    from edge_har.convert.augment import parse_augment
    from edge_har.convert.datasets import dataset_from_args
    from edge_har.convert.evaluate import given_data_flags
    from edge_har.convert.models import ModelConfig
    from edge_har.convert.pipeline import AccuracyGateError, ConvertError, ConvertOptions, run_convert, slug
    from edge_har.convert.quiet import quiet_tensorflow
    from edge_har.convert.seeds import parse_seeds, run_seeds
    from edge_har.convert.splits import split_from_args
    from edge_har.convert.train import TrainingError, train_config_from_args

    quiet_tensorflow(getattr(args, "log_level", None))  # before anything imports TensorFlow
    errors = _input_errors() + (ConvertError, TrainingError)
    try:
        model_config = ModelConfig.from_args(args)
        augment = parse_augment(getattr(args, "augment", None))
        seeds = parse_seeds(getattr(args, "seeds", None), args.seed)
    except (ValueError, ConvertError) as exc:
        raise CommandError(str(exc)) from exc
    if seeds and (getattr(args, "from_bundle", None) is not None or args.from_keras is not None):
        raise CommandError("--seeds applies when training from the data (not to --from-bundle or --from-keras)")
    if augment.enabled and (getattr(args, "from_bundle", None) is not None or args.from_keras is not None):
        raise CommandError("--augment applies when training from the data (not to --from-bundle or --from-keras)")
    if getattr(args, "from_bundle", None) is not None:
        return _run_from_bundle(args)
    if args.from_keras is not None:
        return _run_from_keras(args)
    if args.data is None:
        raise CommandError("convert needs --data (the labelled data set), or --from-keras BUNDLE_OR_H5")
    apply_preset(args)
    try:
        dataset = dataset_from_args(args)
        split = split_from_args(args, dataset)
        options = ConvertOptions(
            out=args.out or Path("bundles") / slug(dataset.name),
            data=Path(dataset.root),
            window=args.window,
            stride=args.stride,
            train_stride=args.train_stride,
            target_rate=args.target_rate,
            skip_short=args.skip_short,
            model=model_config,
            train=train_config_from_args(args),
            variants=args.variants,
            default_variant=args.default_variant,
            calibration_size=args.calibration_size,
            max_int8_drop=args.max_int8_drop,
            allow_int8_drop=args.allow_int8_drop,
            allow_degenerate=args.allow_degenerate,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            data_flags=given_data_flags(args, dataset),
        )
        if args.event_class is not None and args.event_class not in dataset.labels:
            raise CommandError(
                f"--event-class {args.event_class!r}: not a class of the data ({', '.join(dataset.labels)})"
            )
        if seeds:
            out = run_seeds(options, seeds, run_convert, dataset=dataset, split=split)
        else:
            out = run_convert(options, dataset=dataset, split=split)
        event = None
        if args.event_class is not None:
            from edge_har.convert.evaluate import EvaluationError
            from edge_har.convert.event_choice import choose_event_rule

            try:
                event = choose_event_rule(out, args, args.event_class)
            except EvaluationError as exc:
                raise CommandError(str(exc)) from exc
    except AccuracyGateError as exc:
        raise CommandError(str(exc), code=EXIT_GATE_REFUSED) from exc
    except errors as exc:
        raise CommandError(str(exc)) from exc
    print(summary_table(out))
    if seeds:
        from edge_har.convert.seeds import seeds_dir

        print(f"\n{len(seeds)} seeds (table kept in {seeds_dir(out) / 'seeds.md'}):")
        print((seeds_dir(out) / "seeds.md").read_text().rstrip())
    if event is not None:
        f = event["chosen_on"]["figures"]
        print(
            f"events: {args.event_class} at p >= {event['threshold']:g} for k = {event['k']} window(s), refractory "
            f"{event['refractory_s']:g} s (chosen on the validation split: {f['detected']}/{f['event_recordings']} "
            f"detected, {f['false_alarms']} false alarm(s) in {f['other_hours']:.2f} h)"
        )
    return 0


def _requantize_options(args: argparse.Namespace, document: dict[str, Any], dataset: Any) -> dict[str, Any]:
    """ConvertOptions of the quantize/evaluate/gate half that --from-keras and --from-bundle share. A
    --calibration-size left at its default takes the source bundle's own (a larger one is the usual fix)."""
    from edge_har.convert.evaluate import given_data_flags
    from edge_har.convert.quantize import DEFAULT_CALIBRATION_SIZE

    calibration_size = args.calibration_size
    recorded = (document.get("training") or {}).get("calibration_size")
    if calibration_size == DEFAULT_CALIBRATION_SIZE and isinstance(recorded, int):
        calibration_size = recorded
    return dict(
        variants=args.variants,
        default_variant=args.default_variant,
        calibration_size=calibration_size,
        max_int8_drop=args.max_int8_drop,
        allow_int8_drop=args.allow_int8_drop,
        allow_degenerate=args.allow_degenerate,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        data_flags=given_data_flags(args, dataset),
    )


def _run_from_keras(args: argparse.Namespace) -> int:
    """``convert --from-keras``: the data flags the source records, unless given, then re-quantize and re-gate."""
    from edge_har.convert.datasets import dataset_from_args
    from edge_har.convert.evaluate import fill_data_flags
    from edge_har.convert.pipeline import (
        AccuracyGateError,
        ConvertError,
        ConvertOptions,
        load_source_document,
        run_from_keras,
    )

    try:
        folder, document, _ = load_source_document(args.from_keras)
        fill_data_flags(args, document, where=str(folder))
        dataset = dataset_from_args(args)
        default_out = folder.with_name(folder.name[: -len(".refused")]) if folder.name.endswith(".refused") else None
        out = args.out or default_out
        if out is None:
            raise CommandError(f"--from-keras {args.from_keras}: give --out (the source is a published bundle)")
        options = ConvertOptions(out=out, **_requantize_options(args, document, dataset))
        result = run_from_keras(args.from_keras, options, dataset)
    except AccuracyGateError as exc:
        raise CommandError(str(exc), code=EXIT_GATE_REFUSED) from exc
    except _input_errors() + (ConvertError,) as exc:
        raise CommandError(str(exc)) from exc
    print(summary_table(result))
    return 0


# ---------------------------------------------------------------- convert --from-bundle

PERSONALISE_HELP = """\
fine-tune a bundle on your own recordings (--data MY_SET, any format; the recorded layout of edge-har record
is detected): the data is windowed, scaled and normalised with BUNDLE's preprocessing (channels matched by
name, other sample rates resampled as convert does), whole recordings are held out (--test-fraction, default
0.2; --val-fraction for early stopping, default 0 here), the bundle's float Keras model is fine-tuned
(--epochs 20, --learning-rate 0.001, --batch-size 32, --patience 5 unless given; the parent's training
windows mixed in, --rehearse), then quantized (calibrated on your and the parent's training windows),
evaluated and gated like any conversion. report.md / report.json in the new bundle compare the parent and
the new bundle on your held-out windows and on the parent's own test set (what the model forgot)"""


def add_personalise_arguments(parser: argparse.ArgumentParser) -> None:
    """``--from-bundle`` and its options (``edge_har.convert.personalise_path``)."""
    from edge_har.convert.personalise import TRAIN_LAYERS, TRAIN_LAYERS_HELP
    from edge_har.convert.personalise_path import DEFAULT_REHEARSE

    group = parser.add_argument_group("personalise (--from-bundle)", PERSONALISE_HELP)
    group.add_argument(
        "--from-bundle",
        type=Path,
        default=None,
        metavar="BUNDLE",
        help="the bundle to personalise (its keras_model.h5, bundle.json and .tflite files); needs --data and --out",
    )
    group.add_argument(
        "--train-layers",
        choices=TRAIN_LAYERS,
        default="head",
        help=f"which layers fine-tuning trains: {TRAIN_LAYERS_HELP} (default: %(default)s)",
    )
    group.add_argument(
        "--add-classes",
        action="store_true",
        help="append the labels of --data that BUNDLE lacks as new classes (default: such a label is an error)",
    )
    group.add_argument(
        "--original-data",
        type=Path,
        default=None,
        metavar="PATH",
        help="the parent's data set, read with its recorded reader, for the before/after on its test split "
        "and rehearsal (default: the path bundle.json records; skipped, with the reason in the report, when absent)",
    )
    group.add_argument(
        "--rehearse",
        type=_non_negative_float,
        default=DEFAULT_REHEARSE,
        metavar="RATIO",
        help="mix this many of the parent's training windows per training window of yours into fine-tuning, "
        "so the model keeps what it knew (needs the parent's data); 0: your windows alone (default: %(default)s)",
    )


# Fine-tuning's defaults where the flag is left at convert's (training from scratch) default.
_FINE_TUNE_DEFAULTS: dict[str, Any] = {"epochs": 20, "learning_rate": 1e-3, "batch_size": 32, "patience": 5}


def _fine_tune_config(args: argparse.Namespace) -> Any:
    from dataclasses import replace

    from edge_har.convert.train import TrainConfig, train_config_from_args

    config = train_config_from_args(args)
    scratch = TrainConfig()
    taken = {k: v for k, v in _FINE_TUNE_DEFAULTS.items() if getattr(config, k) == getattr(scratch, k)}
    if taken:
        log.info("fine-tuning defaults: %s", ", ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in taken.items()))
    return replace(config, **taken)


def _run_from_bundle(args: argparse.Namespace) -> int:
    """``convert --from-bundle BUNDLE --data MY_SET``: fine-tune, then the conversion's quantize/evaluate/gate."""
    from edge_har.convert.datasets import dataset_from_args
    from edge_har.convert.evaluate import load_bundle
    from edge_har.convert.personalise import PersonaliseError
    from edge_har.convert.personalise_path import PersonaliseOptions, check_user_data, run_from_bundle
    from edge_har.convert.pipeline import AccuracyGateError, ConvertError, ConvertOptions, load_source_document
    from edge_har.convert.quantize import DEFAULT_CALIBRATION_SIZE
    from edge_har.convert.splits import split_from_args
    from edge_har.core.bundle import BUNDLE_FILE

    source = args.from_bundle
    if args.from_keras is not None:
        raise CommandError("--from-bundle and --from-keras exclude each other (fine-tune, or re-quantize)")
    if args.data is None:
        raise CommandError(f"--from-bundle {source}: give --data MY_SET (your labelled recordings)")
    if args.out is None:
        raise CommandError(f"--from-bundle {source}: give --out (the personalised bundle to write)")
    try:
        folder, document, _ = load_source_document(source, flag="--from-bundle")
        if not (folder / BUNDLE_FILE).is_file():
            raise ConvertError(
                f"--from-bundle {source}: {folder} has no {BUNDLE_FILE} (a refused conversion is no bundle)"
            )
        load_bundle(folder)  # every variant file present, with its recorded size and sha256
        dataset = dataset_from_args(args)
        dataset = check_user_data(dataset, document, args.add_classes, str(folder))
        if args.val_fraction is None:
            args.val_fraction = 0.0  # a few recordings of one's own: all of them train, but the held-out ones
        split = split_from_args(args, dataset)
        given = args.calibration_size != DEFAULT_CALIBRATION_SIZE
        options = ConvertOptions(
            out=args.out,
            data=Path(dataset.root),
            train_stride=args.train_stride,
            skip_short=args.skip_short,
            train=_fine_tune_config(args),
            **_requantize_options(args, document, dataset),
        )
        personal = PersonaliseOptions(
            train_layers=args.train_layers,
            add_classes=args.add_classes,
            original_data=args.original_data,
            calibration_size_given=given,
            rehearse=args.rehearse,
        )
        out = run_from_bundle(source, options, personal, dataset, split)
    except AccuracyGateError as exc:
        raise CommandError(str(exc), code=EXIT_GATE_REFUSED) from exc
    except _input_errors() + (ConvertError, PersonaliseError) as exc:
        raise CommandError(str(exc)) from exc
    print(summary_table(out))
    print()
    print(personalisation_lines(out))
    return 0


def personalisation_lines(bundle_dir: Path) -> str:
    """The before/after figures of a personalised bundle's report.json, one line per data."""
    import json

    from edge_har.convert.personalise_path import REPORT_JSON

    report = json.loads((Path(bundle_dir) / REPORT_JSON).read_text())
    lines = [f"personalised from {report['parent']['model_id']} ({report['variant']}; before -> after):"]
    for name, key in (("your held-out windows", "held_out"), ("the parent's test set", "original_test")):
        entry = report[key]
        if "skipped" in entry:
            lines.append(f"  {name}: skipped: {entry['skipped']}")
            continue
        b, a = entry["before"], entry["after"]
        lines.append(
            f"  {name} ({entry['windows']}): accuracy {b['accuracy']:.4f} -> {a['accuracy']:.4f}, "
            f"macro-F1 {b['macro_f1']:.4f} -> {a['macro_f1']:.4f}"
        )
    lines.append(f"  report: {Path(bundle_dir) / 'report.md'}")
    return "\n".join(lines)


def gate_line(metrics: Any) -> str:
    """The int8 gate's verdict in one line (older bundles: derived from their flat keys)."""
    gate = metrics.get("gate") or {}
    drop = gate.get("drop_points", metrics.get("int8_drop_points"))
    limit = gate.get("allowed_drop_points", metrics.get("max_int8_drop_points"))
    verdict = gate.get("verdict") or ("accepted" if metrics.get("int8_drop_allowed") else "pass")
    reasons = ", ".join(gate.get("reasons") or ["int8 drop over the limit"])
    text = {"pass": "PASS", "accepted": f"ACCEPTED as asked ({reasons})", "refused": f"REFUSED ({reasons})"}.get(
        verdict, verdict
    )
    parts = [f"int8 gate: {text}"]
    if drop is not None:
        side = "below" if drop >= 0 else "above"
        allowed = f" (allowed: {limit:g} below)" if limit is not None else ""
        parts.append(f"int8 {abs(drop):.2f} points {side} float32{allowed}")
    if gate.get("degenerate"):
        parts.append("degenerate: " + ", ".join(f"{n} predicts {d['class']!r}" for n, d in gate["degenerate"].items()))
    return "; ".join(parts)


def summary_table(bundle_dir: Path) -> str:
    from edge_har.core.bundle import Bundle

    bundle = Bundle.load(bundle_dir)
    lines = [
        f"bundle {bundle.model_id} written to {bundle.root}",
        "",
        f"{'variant':<15} {'size':>10} {'accuracy':>9} {'macro-F1':>9} {'vs float32':>11}  quantization",
    ]
    drops = bundle.metrics.get("drop_points") or {}
    for name, v in bundle.variants.items():
        m = v.metrics
        drop = "reference" if name == "float32" else ("-" if name not in drops else f"{0.0 - drops[name]:+.2f} pt")
        lines.append(
            f"{name + ('*' if name == bundle.default_variant else ''):<15} {v.size_bytes / 1024:>8.1f}kB "
            f"{m.get('accuracy', float('nan')):>9.4f} {m.get('macro_f1', float('nan')):>9.4f} {drop:>11}  "
            f"{v.quantization}"
        )
    split = bundle.metrics.get("split", {})
    lines += [
        "",
        gate_line(bundle.metrics),
        f"* default variant. Test split: {split.get('windows', {}).get('test', '?')} windows; "
        f"training {bundle.data.get('training', {}).get('seconds', '?')} s, "
        f"{bundle.data.get('training', {}).get('epochs_run', '?')} epochs.",
    ]
    lines += [f"{m:,} MACs per window" for m in [bundle.data.get("training", {}).get("macs")] if m is not None]
    if bundle.data.get("pose"):
        from edge_har.convert.pose_coverage import summary_lines

        lines += summary_lines(bundle.data)
    return "\n".join(lines)


# ---------------------------------------------------------------- evaluate

EVALUATE_EPILOG = """\
examples:
  edge-har evaluate bundles/hmp --data /work/shared/data/hmp/HMP
  edge-har evaluate bundles/hmp --data other_recordings/ --split all --variant int8 --out runs/eval-other

  edge-har evaluate bundles/falls --positive-class fall --detect-k 2 --thresholds 0.3,0.5,0.7,0.9
  edge-har evaluate bundles/hapt6 --variant int8 --explain --out runs/explain-hapt6

--split test re-creates the exact test split recorded in bundle.json (the data set must hold those
recordings); --split all evaluates every window of the data given. --data and the data-set flags
convert was given (--format, --sample-rate, --channels, --scale, ...) are taken from bundle.json
unless given here; value scaling, resampling, windowing and normalisation always come from the
bundle. --positive-class adds, for an event-like class, sensitivity and specificity of every class
against the rest, recording-level detection (a recording counts as detected when at least
--detect-k of its windows are the positive class) and a sweep over the positive class's probability
threshold (<out>/<variant>/events.json), and the device's own event rule run over each recording as a
stream: recordings detected, false alarms per hour of the other recordings and the delay from the
impact, for every threshold and k, the rule chosen for --target-false-alarms, and the curve
(<out>/<variant>/events_sweep.png). For each variant it writes
<out>/<variant>/metrics.json (accuracy, macro-F1, per-class precision/recall/F1, confusion matrix)
and <out>/<variant>/confusion_matrix.png, plus <out>/summary.json. No TensorFlow needed.

--explain adds <out>/<variant>/explain/ (class_attribution.png, mistake_NN.png, features_pca.png,
lstm_states.png, attention.png, explain.json): red where hiding a part of a channel lowers the label's
probability (that part made the label), blue where hiding it raises it. Occlusion runs through the
variant's own interpreter; the gradient half (integrated gradients, features, states) needs
TensorFlow and the bundle's keras_model.h5 and is left out without them.
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
    add_dataset_arguments(parser, required=False)  # default: the data set and flags bundle.json records
    add_event_arguments(parser)
    group = parser.add_argument_group("evaluation")
    group.add_argument("--variant", default="all", help="variant name, or 'all' (default: %(default)s)")
    group.add_argument(
        "--split",
        choices=("test", "val", "all"),
        default="test",
        help="the bundle's recorded test (or validation) split, or every window of the data (default: %(default)s)",
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
    explain = parser.add_argument_group("explanations (why windows got their labels)")
    explain.add_argument(
        "--explain",
        action="store_true",
        help="write <out>/<variant>/explain/: per class, the mean occlusion attribution (channel x time) of its "
        "correct windows; the most confident mistakes drawn as their signal over the attribution band; with "
        "TensorFlow and the bundle's keras_model.h5, integrated gradients beside occlusion, the penultimate "
        "features in 2-D (PCA), the last LSTM's hidden states and any attention weights",
    )
    explain.add_argument(
        "--explain-windows",
        type=_positive_int,
        default=30,
        metavar="N",
        help="correct windows averaged per class (default: %(default)s; occlusion costs segments x channels + 1 "
        "model calls per window)",
    )
    explain.add_argument(
        "--explain-mistakes",
        type=int,
        default=4,
        metavar="N",
        help="most confident mistakes drawn (default: %(default)s)",
    )
    explain.add_argument(
        "--explain-segment",
        type=_positive_int,
        default=None,
        metavar="SAMPLES",
        help="occlusion segment length in samples (default: the window cut into 16)",
    )
    explain.add_argument(
        "--no-gradients",
        action="store_true",
        help="occlusion only: no TensorFlow, no integrated gradients or internals",
    )
    parser.set_defaults(func=run_evaluate_command)
    return parser


def _thresholds(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in [0, 1], got {text!r}") from None
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in [0, 1], got {text!r}")
    return values


def add_event_arguments(parser: argparse.ArgumentParser) -> None:
    """``--positive-class``, ``--detect-k``, ``--thresholds``: shared by ``evaluate`` and ``bench accuracy``."""
    from edge_har.convert.evaluate import DEFAULT_THRESHOLDS

    group = parser.add_argument_group("event-like classes (a fall, a cough: catch them, without false alarms)")
    group.add_argument(
        "--positive-class",
        default=None,
        metavar="CLASS",
        help="report sensitivity/specificity of every class against the rest, recording-level detection and "
        "a threshold sweep for this class",
    )
    group.add_argument(
        "--detect-k",
        type=_positive_int,
        default=1,
        metavar="K",
        help="a recording counts as detected when at least K of its windows are the positive class (default: 1)",
    )
    group.add_argument(
        "--thresholds",
        type=_thresholds,
        default=DEFAULT_THRESHOLDS,
        metavar="T,T,...",
        help="probability thresholds of the positive class to sweep (default: "
        + ",".join(f"{t:g}" for t in DEFAULT_THRESHOLDS)
        + ")",
    )
    add_event_rule_arguments(group)


def add_event_rule_arguments(group: Any) -> None:
    """``--target-false-alarms``, ``--refractory``, ``--impact-span``: how the device's event rule is chosen
    (``convert --event-class``) or reported (``evaluate``, ``bench accuracy``)."""
    group.add_argument(
        "--target-false-alarms",
        type=_non_negative_float,
        default=1.0,
        metavar="PER_HOUR",
        help="the device's event rule (p >= threshold for k windows, then --refractory) is swept over each "
        "recording; the rule taken is the most sensitive within this many false alarms per hour of the "
        "other recordings (default: 1)",
    )
    group.add_argument(
        "--refractory",
        type=_non_negative_float,
        default=30.0,
        metavar="S",
        help="seconds the rule stays quiet after an event (default: 30)",
    )
    group.add_argument(
        "--impact-span",
        type=_span,
        default=(2.0, 10.0),
        metavar="BEFORE,AFTER",
        help="an event counts as the recording's when detected this many seconds before/after its impact, the "
        "acceleration peak of its event windows (default: 2,10)",
    )


def _span(text: str) -> tuple[float, float]:
    try:
        before, after = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BEFORE,AFTER in seconds (e.g. 2,10), got {text!r}") from None
    if not (0 <= before <= 600 and 0 <= after <= 600):
        raise argparse.ArgumentTypeError(f"expected two numbers of seconds 0-600, got {text!r}")
    return before, after


def event_options(args: argparse.Namespace) -> dict[str, Any] | None:
    if not getattr(args, "positive_class", None):
        return None
    before, after = args.impact_span
    return {
        "positive": args.positive_class,
        "k": args.detect_k,
        "thresholds": tuple(args.thresholds),
        "target_per_hour": args.target_false_alarms,
        "refractory_s": args.refractory,
        "before_s": before,
        "after_s": after,
    }


def explain_options(args: argparse.Namespace) -> Any:
    """``--explain`` and its flags as ExplainOptions, or None without ``--explain``."""
    if not args.explain:
        return None
    from edge_har.convert.explain import ExplainOptions

    if args.explain_mistakes < 0:
        raise CommandError(f"--explain-mistakes: {args.explain_mistakes}; give 0 or more")
    return ExplainOptions(
        windows_per_class=args.explain_windows,
        mistakes=args.explain_mistakes,
        segment=args.explain_segment,
        gradients=not args.no_gradients,
    )


def run_evaluate_command(args: argparse.Namespace) -> int:
    from edge_har.convert.datasets import dataset_from_args
    from edge_har.convert.evaluate import evaluate_bundle, fill_data_flags, format_event_report, load_bundle
    from edge_har.core.interpreter import InterpreterError
    from edge_har.core.metrics import format_report

    try:
        bundle = load_bundle(args.bundle)
        if bundle.kind == "video":
            raise CommandError(
                f"{bundle.root} is a video bundle: use edge-har evaluate-video {args.bundle} --data CLIPS"
            )
        fill_data_flags(args, bundle.data, where=str(bundle.root / "bundle.json"))
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
            events=event_options(args),
            explain=explain_options(args),
        )
    except _input_errors() + (InterpreterError,) as exc:
        raise CommandError(str(exc)) from exc
    import json

    for name, entry in results["variants"].items():
        report = json.loads(Path(entry["files"]["metrics"]).read_text())
        print(format_report(report, title=f"\n== {name} ({args.split}: {results['data']['windows']} windows)"))
        if "events" in entry["files"]:
            from edge_har.convert.event_eval import format_per_hour

            event = json.loads(Path(entry["files"]["events"]).read_text())
            print(format_event_report(event, title=f"-- {name}: event class {event['positive_class']!r}"))
            print(format_per_hour(event["per_hour"]))
        if "explain" in entry["files"]:
            costs = ", ".join(f"{k.replace('_', ' ')} {v:g} ms" for k, v in entry["explain_ms_per_window"].items())
            print(f"-- {name}: explanations in {Path(entry['files']['explain']).parent} (per window: {costs})")
    print(f"\nreports written to {out}")
    return 0
