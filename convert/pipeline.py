"""``edge-har convert`` end to end: data -> split -> windows -> train -> quantize -> evaluate -> gate -> bundle.

Each stage is logged with its duration. Order matters in three places:
* normalisation statistics are fit on the training windows only, after the
  split, so nothing of the validation or test data leaks into the model;
* the calibration set is drawn (and its size checked) before training, so a
  too-large ``--calibration-size`` fails in seconds, not after the training;
* the accuracy gate runs before anything is published: a refused conversion
  leaves no bundle behind (see ``edge_har.convert.export``).
"""

from __future__ import annotations

from edge_har.core.errors import EdgeHarError

import contextlib
import datetime as _dt
import logging
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from edge_har.core.bundle import Bundle
from edge_har.core.preprocessing import Preprocessing, fit_normalisation, normalise

from edge_har.convert.models import ModelConfig
from edge_har.convert.quantize import DEFAULT_CALIBRATION_SIZE, DEFAULT_VARIANTS, calibration_windows, resolve_variants
from edge_har.convert.train import TrainConfig

log = logging.getLogger(__name__)

DEFAULT_WINDOW = "3s"
DEFAULT_STRIDE = "0.5s"
DEFAULT_MAX_INT8_DROP = 1.0


class ConvertError(EdgeHarError, RuntimeError):
    """A conversion that cannot go on; the message says why and what to change."""


class AccuracyGateError(ConvertError):
    """A quantized variant lost more accuracy than allowed; no bundle was written."""

    def __init__(self, message: str, float_accuracy: float, quantized: Mapping[str, float]) -> None:
        super().__init__(message)
        self.float_accuracy = float_accuracy
        self.quantized = dict(quantized)


@dataclass
class ConvertOptions:
    """Everything ``run_convert`` needs; the CLI fills it from flags, tests build it directly.

    ``data`` with ``dataset_options`` (keywords of ``edge_har.convert.datasets.load_dataset``)
    and ``split_options`` (keywords of ``edge_har.convert.splits.split_recordings``) are used
    when ``run_convert`` is not handed a loaded data set and split.
    """

    out: Path
    data: Path | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    split_options: dict[str, Any] = field(default_factory=dict)
    window: str | int = DEFAULT_WINDOW
    stride: str | int = DEFAULT_STRIDE
    target_rate: float | None = None
    skip_short: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    default_variant: str = "int8"
    calibration_size: int = DEFAULT_CALIBRATION_SIZE
    max_int8_drop: float = DEFAULT_MAX_INT8_DROP
    allow_int8_drop: bool = False
    overwrite: bool = False
    evaluate_backend: str = "auto"
    progress: bool = True
    command: str | None = None

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.default_variant not in self.variants:
            raise ConvertError(
                f"--default-variant {self.default_variant!r} is not among the variants produced ({', '.join(self.variants)})"
            )


@dataclass
class Windows:
    x: np.ndarray
    y: np.ndarray
    recordings: int


@contextlib.contextmanager
def stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    log.info("[%s] ...", name)
    started = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - started, 2)
    log.info("[%s] done in %.1f s", name, timings[name])


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "dataset"


def _duration(text: str | int, rate: float, what: str) -> int:
    from edge_har.convert.datasets import parse_duration

    if isinstance(text, int):
        return text
    try:
        samples = parse_duration(str(text), rate)
    except ValueError as exc:
        raise ConvertError(f"--{what} {text!r}: {exc}") from exc
    return int(samples)


def build_preprocessing(dataset: Any, options: ConvertOptions) -> Preprocessing:
    rate = float(options.target_rate or dataset.sample_rate_hz)
    window = _duration(options.window, rate, "window")
    stride = _duration(options.stride, rate, "stride")
    return Preprocessing(
        sample_rate_hz=rate,
        window=window,
        stride=stride,
        channels=tuple(dataset.channels),
        scale=tuple(float(v) for v in np.atleast_1d(dataset.scale)),
        offset=tuple(float(v) for v in np.atleast_1d(dataset.offset)),
        units=str(dataset.units or ""),
    )


def split_windows(dataset: Any, split: Any, pre: Preprocessing, skip_short: bool) -> dict[str, Windows]:
    from edge_har.convert.datasets import make_window_set

    out = {}
    for side in ("train", "val", "test"):
        indices = np.asarray(getattr(split, side), dtype=np.int64)
        ws = make_window_set(dataset, pre, recording_indices=indices, skip_short=skip_short)
        out[side] = Windows(np.asarray(ws.x, np.float32), np.asarray(ws.y, np.int64), len(indices))
    labels = list(dataset.labels)
    train_classes = set(np.unique(out["train"].y).tolist())
    missing = [labels[i] for i in range(len(labels)) if i not in train_classes]
    if missing:
        raise ConvertError(f"the training split has no windows of class(es) {', '.join(missing)}; "
                           "they need more (or longer) recordings, or a different split")
    if len(out["test"].x) == 0:
        raise ConvertError("the test split has no windows; the quantized variants cannot be checked against float")
    for side in ("val", "test"):
        absent = [labels[i] for i in range(len(labels)) if i not in set(np.unique(out[side].y).tolist())]
        if absent:
            log.warning("the %s split has no windows of %s", side, ", ".join(absent))
    return out


def class_counts(y: np.ndarray, labels: list[str]) -> dict[str, int]:
    counts = np.bincount(y, minlength=len(labels))
    return {label: int(counts[i]) for i, label in enumerate(labels)}


def run_convert(options: ConvertOptions, dataset: Any | None = None, split: Any | None = None) -> Path:
    """Run the whole conversion and return the bundle directory.

    Raises AccuracyGateError when a full-integer variant falls more than
    ``max_int8_drop`` points below float32 (and ``allow_int8_drop`` is off),
    leaving nothing at ``options.out``.
    """
    from edge_har.convert import export
    from edge_har.convert.evaluate import evaluate_model, relative_source, write_evaluation

    timings: dict[str, float] = {}
    started = time.perf_counter()
    specs = resolve_variants(options.variants)
    export.check_destination(options.out, options.overwrite)

    if dataset is None:  # (the CLI loads and splits before calling, to report bad input first)
        from edge_har.convert.datasets import load_dataset

        if options.data is None:
            raise ConvertError("no data set given")
        with stage("load data", timings):
            dataset = load_dataset(options.data, **options.dataset_options)
    labels = list(dataset.labels)
    log.info("data set %s: %d recordings, %d classes, %s Hz, channels %s",
             dataset.name, len(dataset.recordings), len(labels), dataset.sample_rate_hz, ", ".join(dataset.channels))
    if split is None:
        from edge_har.convert.splits import split_recordings

        with stage("split", timings):
            split = split_recordings(dataset, **options.split_options)
    log.info("split: %d train / %d validation / %d test recordings", len(split.train), len(split.val), len(split.test))
    with stage("windows", timings):
        pre = build_preprocessing(dataset, options)
        sets = split_windows(dataset, split, pre, options.skip_short)
        mean, std = fit_normalisation(sets["train"].x)  # training windows only
        pre = pre.with_normalisation(mean, std)
        for w in sets.values():
            w.x = normalise(w.x, pre)
        log.info("windows of %d samples (%.2f s), stride %d: %d train / %d validation / %d test",
                 pre.window, pre.window_seconds, pre.stride, len(sets["train"].x), len(sets["val"].x), len(sets["test"].x))
        calibration = None
        if any(s.needs_calibration for s in specs):
            calibration = calibration_windows(sets["train"].x, sets["train"].y, options.calibration_size, options.train.seed)

    with export.staging_dir(options.out) as staging:
        from edge_har.convert.models import float32_copy, static_batch_copy
        from edge_har.convert.quantize import convert_variants
        from edge_har.convert.train import train_model

        with stage("train", timings):
            result = train_model(
                sets["train"].x, sets["train"].y, sets["val"].x, sets["val"].y,
                len(labels), options.model, options.train, staging / "training",
            )
            checkpoint = staging / "training" / "best.weights.h5"
            if checkpoint.exists():  # same weights as keras_model.h5; keep the bundle lean
                checkpoint.unlink()
            keras_float = float32_copy(result.model, options.model, batch_size=None)
            with warnings.catch_warnings():
                # HDF5 on purpose: one file that benchmarks and older tools load directly.
                warnings.filterwarnings("ignore", message=".*HDF5 file.*legacy", category=UserWarning)
                keras_float.save(staging / export.KERAS_MODEL_FILE, include_optimizer=False, save_format="h5")
            keras_probs = keras_float.predict(sets["test"].x, batch_size=256, verbose=0)
            keras_accuracy = float((keras_probs.argmax(axis=1) == sets["test"].y).mean())
            log.info("Keras float model: test accuracy %.4f", keras_accuracy)

        variants: dict[str, dict[str, Any]] = {}
        with stage("quantize", timings):
            static = static_batch_copy(result.model, options.model)
            for converted in convert_variants(static, specs, calibration):
                variants[converted.name] = export.write_variant(staging, converted)

        model_id = "{}-cnn-lstm-{}-{}".format(
            _slug(dataset.name), _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d"), variants["float32"]["sha256"][:8]
        )
        document = export.bundle_document(
            model_id=model_id,
            labels=labels,
            input_shape=[1, pre.window, pre.n_channels],
            preprocessing=pre.to_json(),
            variants=variants,
            default_variant=options.default_variant,
        )
        export.write_json(staging, document)

        with stage("evaluate", timings):
            # Through the device's reader and interpreter wrapper, sha256 check included.
            bundle = Bundle.load(staging)
            evaluations = {}
            for spec in specs:
                model = bundle.load_model(spec.name, backend=options.evaluate_backend, num_threads=1)
                ev = evaluate_model(model, sets["test"].x, sets["test"].y, labels, spec.name, progress=options.progress)
                files = write_evaluation(ev, staging / "evaluation")
                evaluations[spec.name] = ev
                summary = ev.summary()
                summary["report"] = str(Path(files["metrics"]).relative_to(staging))
                if "confusion_png" in files:
                    summary["confusion_png"] = str(Path(files["confusion_png"]).relative_to(staging))
                document["variants"][spec.name]["metrics"] = summary
                log.info("%-14s test accuracy %.4f  macro-F1 %.4f  (%d windows, %s)", spec.name,
                         ev.report["accuracy"], ev.report["macro_f1"], ev.report["n_windows"], ev.backend)

        float_acc = evaluations["float32"].report["accuracy"]
        drops = {
            name: round(100.0 * (float_acc - ev.report["accuracy"]), 3) for name, ev in evaluations.items() if name != "float32"
        }
        gated = {s.name: drops[s.name] for s in specs if s.full_integer}
        over = {name: d for name, d in gated.items() if d > options.max_int8_drop}
        if over:
            text = "; ".join(
                f"{name} test accuracy {100 * evaluations[name].report['accuracy']:.2f}% is {d:.2f} points below "
                f"float32's {100 * float_acc:.2f}%" for name, d in over.items()
            )
            if not options.allow_int8_drop:
                raise AccuracyGateError(
                    f"refusing to write the bundle: {text} (limit --max-int8-drop {options.max_int8_drop:g}). "
                    "Use a larger --calibration-size, retrain, or pass --allow-int8-drop to accept it.",
                    float_acc, {n: evaluations[n].report["accuracy"] for n in over},
                )
            log.warning("accepting the accuracy drop as asked (--allow-int8-drop): %s", text)

        split_info = dict(split.describe())
        split_info["test_sources_relative"] = [
            relative_source(dataset.recordings[i].source, dataset.root) for i in np.asarray(split.test, dtype=np.int64)
        ]
        split_info["windows"] = {side: len(w.x) for side, w in sets.items()}
        split_info["windows_per_class"] = {side: class_counts(w.y, labels) for side, w in sets.items()}
        document["metrics"] = {
            "evaluated_on": "test split",
            "split": split_info,
            "reference_variant": "float32",
            "variants": {name: {k: ev.report[k] for k in ("accuracy", "macro_f1")} for name, ev in evaluations.items()},
            "keras_float_accuracy": keras_accuracy,
            "drop_points": drops,
            "int8_drop_points": drops.get("int8"),
            "max_int8_drop_points": options.max_int8_drop,
            "int8_drop_allowed": bool(over) and options.allow_int8_drop,
            "backend": evaluations["float32"].backend,
        }
        document["training"] = {
            "model": options.model.to_json(),
            "config": options.train.to_json(),
            "strategy": result.strategy.to_json(),
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "seconds": round(result.seconds, 2),
            "class_weights": None if result.class_weights is None
            else {labels[i]: round(w, 6) for i, w in result.class_weights.items()},
            "calibration_size": None if calibration is None else len(calibration),
            "history_file": str(result.history_file.relative_to(staging)),
            "curves_file": None if result.curves_file is None else str(result.curves_file.relative_to(staging)),
            "keras_model": export.KERAS_MODEL_FILE,
            "final": {k: v[-1] for k, v in result.history.items() if isinstance(v, list) and v},
            "stage_seconds": timings,
        }
        dataset_info = dict(dataset.describe())
        dataset_info.setdefault("path", str(Path(dataset.root).resolve()))
        document["provenance"] = {
            "dataset": dataset_info,
            "command": options.command or export.command_line(),
            "packages": export.package_versions(),
            "created": export.utc_now(),
            "git": export.git_revision(),
        }
        document["files"] = {
            "keras_model": export.KERAS_MODEL_FILE,
            "history": document["training"]["history_file"],
            "training_curves": document["training"]["curves_file"],
            "evaluation": "evaluation/<variant>/metrics.json, confusion_matrix.png",
        }
        timings["total"] = round(time.perf_counter() - started, 2)
        export.write_json(staging, document)
        out = export.publish(staging, options.out, options.overwrite)
    log.info("conversion finished in %.1f s: %s", time.perf_counter() - started, out)
    return out
