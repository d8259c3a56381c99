"""The one conversion skeleton behind ``edge-har convert`` and ``edge-har convert-video``.

Both conversions run the same sequence: check the destination, prepare the data
(load, split, windows, calibration draw), then in a hidden staging directory
train, save the float Keras reference, convert every variant, write
``bundle.json``, evaluate every variant *through the device's bundle reader and
interpreter wrapper*, apply the int8 accuracy gate, record metrics, training and
provenance, and publish atomically (``edge_har.convert.export``). The order is
the contract, so it lives here once:

* the destination is checked and the calibration set drawn before training, so
  a bad ``--out`` or a too-large ``--calibration-size`` fails in seconds;
* the gate runs before anything is published: a refused conversion raises
  ``AccuracyGateError`` inside the staging directory, which is then removed,
  so nothing is left at (or beside) ``--out``.

What differs between the sensor and the video path (how data is loaded and
windowed, how the model is built, trained and converted, how a variant is run,
the kind-specific ``bundle.json`` sections) is supplied by a ``ConversionPath``.
This module imports no TensorFlow; the paths import it where they need it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, Sequence

import numpy as np

from edge_har.core.errors import EdgeHarError

log = logging.getLogger(__name__)

EVALUATION_DIR = "evaluation"
CHECKPOINT = Path("training") / "best.weights.h5"


class ConvertError(EdgeHarError, RuntimeError):
    """A conversion that cannot go on; the message says why and what to change."""


class AccuracyGateError(ConvertError):
    """A quantized variant lost more accuracy than allowed; no bundle was written."""

    def __init__(
        self,
        message: str,
        float_accuracy: float,
        quantized: Mapping[str, float],
        advice_flags: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.float_accuracy = float_accuracy
        self.quantized = dict(quantized)
        self.advice_flags = tuple(advice_flags)  # the variant flags the advice names, for the --from-keras line


# ---------------------------------------------------------------- small shared pieces


@contextlib.contextmanager
def stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    """Log a stage's start and duration and record it in ``timings`` (``training.stage_seconds``)."""
    log.info("[%s] ...", name)
    started = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - started, 2)
    log.info("[%s] done in %.1f s", name, timings[name])


def slug(text: str) -> str:
    """A file- and id-safe form of a data set name (bundle folder names, model ids)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "dataset"


def model_id(dataset_name: str, kind: str, float32_sha256: str) -> str:
    """``<data set>-<kind>-<UTC date>-<float32 sha prefix>``: readable, and distinct per trained model."""
    return "{}-{}-{}-{}".format(
        slug(dataset_name), kind, _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d"), float32_sha256[:8]
    )


def class_counts(y: np.ndarray, labels: list[str]) -> dict[str, int]:
    counts = np.bincount(y, minlength=len(labels))
    return {label: int(counts[i]) for i, label in enumerate(labels)}


def check_default_variant(default_variant: str, variants: Sequence[str]) -> None:
    """Refuse a ``--default-variant`` that would not be produced, before any work is done."""
    if default_variant not in variants:
        raise ConvertError(
            f"--default-variant {default_variant!r} is not among the variants produced ({', '.join(variants)})"
        )


# ---------------------------------------------------------------- the int8 gate


def gate_drops(
    evaluations: Mapping[str, Any], specs: Sequence[Any], max_int8_drop: float
) -> tuple[dict[str, float], dict[str, float]]:
    """(drop in points vs float32 of every variant, the full-integer ones over ``max_int8_drop``); no verdict."""
    float_acc = evaluations["float32"].report["accuracy"]
    drops = {
        name: round(100.0 * (float_acc - ev.report["accuracy"]), 3)
        for name, ev in evaluations.items()
        if name != "float32"
    }
    return drops, {s.name: drops[s.name] for s in specs if s.full_integer and drops[s.name] > max_int8_drop}


def gate_advice(
    evaluations: Mapping[str, Any], specs: Sequence[Any], drops: Mapping[str, float], max_int8_drop: float
) -> tuple[str, tuple[str, ...]]:
    """(what to do about a refused int8 variant, the variant flags it names), from this run's own figures.

    A larger calibration set is not offered: measured on MobiFall, re-quantizing with more
    windows moved int8 further from float32 (-1.24 to -2.05 points). What is known to hold is a
    variant this run measured within the limit: a dynamic-range model keeps activations in float
    (int8 weights, 4x smaller than float32), and the gate does not apply to it.
    """
    integer = {s.name for s in specs if s.full_integer}
    within = {n: d for n, d in drops.items() if n not in integer and d <= max_int8_drop}
    if within:
        best = min(within, key=lambda n: (within[n], n))
        flags = ("--variants", f"float32,{best}", "--default-variant", best)
        accuracy = 100 * evaluations[best].report["accuracy"]
        return (
            f"Measured in this run: {best} scores {accuracy:.2f}% ({within[best]:.2f} points below float32; int8 "
            f"weights, float activations): ship it with {' '.join(flags)}, or accept int8's drop with "
            "--allow-int8-drop.",
            flags,
        )
    flags = ("--variants", "float32,dynamic_range", "--default-variant", "dynamic_range")
    return (
        "No variant of this run is within the limit: measure a dynamic-range variant (int8 weights, float "
        f"activations) with {' '.join(flags)}, retrain with another --seed, or accept the drop with "
        "--allow-int8-drop.",
        flags,
    )


def int8_gate(
    evaluations: Mapping[str, Any], specs: Sequence[Any], max_int8_drop: float, allow_int8_drop: bool
) -> tuple[dict[str, float], bool]:
    """Return (accuracy drop in points vs float32 per variant, whether a full-integer variant is over the limit).

    Only full-integer variants are gated: they are the ones the device's integer
    kernels run, and the ones calibration can spoil. Over the limit raises
    AccuracyGateError unless ``allow_int8_drop``, in which case it is logged and
    recorded (``metrics.int8_drop_allowed``).
    """
    float_acc = evaluations["float32"].report["accuracy"]
    drops, over = gate_drops(evaluations, specs, max_int8_drop)
    if over:
        text = "; ".join(
            f"{name} test accuracy {100 * evaluations[name].report['accuracy']:.2f}% is {d:.2f} points below "
            f"float32's {100 * float_acc:.2f}%"
            for name, d in over.items()
        )
        if not allow_int8_drop:
            advice, flags = gate_advice(evaluations, specs, drops, max_int8_drop)
            raise AccuracyGateError(
                f"refusing to write the bundle: {text} (limit --max-int8-drop {max_int8_drop:g}). {advice}",
                float_acc,
                {n: evaluations[n].report["accuracy"] for n in over},
                flags,
            )
        log.warning("accepting the accuracy drop as asked (--allow-int8-drop): %s", text)
    return drops, bool(over)


# A model that answers one class for (nearly) every test window has learnt nothing, whatever its
# accuracy says (on a test split dominated by one class it can even pass the int8 gate).
DEGENERATE_SHARE = 0.95  # that class takes at least this share of the predictions ...
DEGENERATE_MARGIN = 0.10  # ... and at least this much more than its share of the true labels


class DegenerateModelError(AccuracyGateError):
    """A variant predicts one class for (nearly) every test window; no bundle was written."""


def degenerate_variants(evaluations: Mapping[str, Any], labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The variants whose test predictions collapse onto one class, from each report's confusion matrix.

    Only meaningful with at least two classes in the test split; a test split that
    really is 97% one class is not flagged for predicting that class 97% of the time
    (the margin over the true share), only a model that ignores its input.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, ev in evaluations.items():
        cm = np.asarray(ev.report.get("confusion_matrix") or [], dtype=np.float64)
        if cm.ndim != 2 or cm.size == 0 or cm.sum() <= 0 or int((cm.sum(axis=1) > 0).sum()) < 2:
            continue
        predicted, true = cm.sum(axis=0) / cm.sum(), cm.sum(axis=1) / cm.sum()
        top = int(predicted.argmax())
        if predicted[top] >= DEGENERATE_SHARE and predicted[top] - true[top] >= DEGENERATE_MARGIN:
            name_of = labels[top] if top < len(labels) else str(top)
            out[name] = {
                "class": name_of,
                "predicted_share": round(float(predicted[top]), 4),
                "true_share": round(float(true[top]), 4),
            }
    return out


def degenerate_check(evaluations: Mapping[str, Any], labels: Sequence[str], allow: bool) -> dict[str, dict[str, Any]]:
    """Raise DegenerateModelError when any variant predicts one class for (nearly) everything, unless ``allow``."""
    flagged = degenerate_variants(evaluations, labels)
    if not flagged:
        return flagged
    text = "; ".join(
        f"{name} predicts {d['class']!r} for {100 * d['predicted_share']:.1f}% of the test windows "
        f"({100 * d['true_share']:.1f}% are {d['class']!r})"
        for name, d in flagged.items()
    )
    if not allow:
        evaluations_float = evaluations.get("float32")
        float_acc = float(evaluations_float.report["accuracy"]) if evaluations_float is not None else float("nan")
        raise DegenerateModelError(
            f"refusing to write the bundle: the model is degenerate: {text}. It has learnt (almost) nothing "
            "from its input: check the labels and the normalisation, train longer (--epochs, --patience), "
            "or give more data; --allow-degenerate writes it anyway.",
            float_acc,
            {n: float(evaluations[n].report["accuracy"]) for n in flagged},
        )
    log.warning("writing a degenerate model as asked (--allow-degenerate): %s", text)
    return flagged


def gate_section(
    drops: Mapping[str, float],
    specs: Sequence[Any],
    over: bool,
    degenerate: Mapping[str, Any],
    refusal: BaseException | None,
    options: Any,
) -> dict[str, Any]:
    """``metrics.gate``: the gate's verdict in words, beside the older flat keys it replaces for readers.

    ``verdict`` is ``pass`` (every full-integer variant within the limit, no degenerate
    variant), ``accepted`` (over the limit or degenerate, written because
    ``--allow-int8-drop`` / ``--allow-degenerate`` said so) or ``refused`` (only in the
    ``refused.json`` of a kept refused conversion: no bundle is written).
    """
    gated = [s.name for s in specs if s.full_integer]
    worst = max((drops[n] for n in gated if n in drops), default=None)
    if refusal is not None:
        verdict = "refused"
    elif over or degenerate:
        verdict = "accepted"
    else:
        verdict = "pass"
    reasons = []
    if over:
        reasons.append("int8 drop over the limit")
    if degenerate:
        reasons.append("degenerate model")
    return {
        "verdict": verdict,
        "drop_points": worst,
        "allowed_drop_points": float(options.max_int8_drop),
        "gated_variants": gated,
        "reasons": reasons,
        "degenerate": dict(degenerate),
        "message": None if refusal is None else str(refusal),
    }


# ---------------------------------------------------------------- the interface


class ConvertOptionsLike(Protocol):
    """The options both ``ConvertOptions`` and ``VideoConvertOptions`` carry and the skeleton reads."""

    out: Path
    variants: tuple[str, ...]
    default_variant: str
    max_int8_drop: float
    allow_int8_drop: bool
    overwrite: bool
    progress: bool
    command: str | None


@dataclass
class Trained:
    """What a path's ``train`` hands back: the TrainResult, and ``bundle.json``'s leading ``training`` keys."""

    result: Any  # edge_har.convert.train.TrainResult
    model_info: dict[str, Any]  # "model" (and e.g. "trained"), first in the training section


class ConversionPath(Protocol):
    """What a conversion supplies to ``run_skeleton``; everything else is shared.

    A path is stateful: ``prepare`` keeps the data, split and windows it needs
    for the later steps. Methods are called in the order listed.
    """

    #: the final log line's subject ("conversion", "video conversion")
    what: str
    #: ``files.keras_model`` in bundle.json
    keras_model_note: str

    def prepare(self, specs: Sequence[Any], timings: dict[str, float]) -> None:
        """Load, split, window; draw calibration data for the ``specs`` that need it (own stages)."""

    def train(self, work: Path) -> Trained:
        """Train into ``work`` (``<staging>/training``)."""

    def keras_reference(self, staging: Path) -> np.ndarray:
        """Save the float Keras model in ``staging`` and return its test-split probabilities."""

    def test_labels(self) -> np.ndarray:
        """Class indices of the test windows, in evaluation order."""

    def quantize(self, staging: Path, specs: Sequence[Any]) -> dict[str, dict[str, Any]]:
        """Convert and write every variant; return ``bundle.json``'s variant entries."""

    def document(self, variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """``bundle.json`` before evaluation (id, labels, input, preprocessing, variants, kind sections)."""

    def evaluate(self, bundle: Any, variant: str) -> Any:
        """One variant's VariantEvaluation on the test windows, run as the device runs it."""

    def check_evaluations(self, evaluations: Mapping[str, Any], keras_probs: np.ndarray) -> dict[str, Any]:
        """Extra ``metrics`` keys (after ``keras_float_accuracy``) from comparing evaluations with Keras."""

    def split_section(self) -> dict[str, Any]:
        """``metrics.split``: the split's description, test sources, windows (per class)."""

    def self_test_windows(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The test windows and their classes, in evaluation order, that the bundle's self-test is drawn
        from; None where the device's runtime cannot take one window as the model does (video)."""

    def calibration_info(self) -> dict[str, Any]:
        """``training`` keys saying how much calibration data was used."""

    def dataset_info(self) -> dict[str, Any]:
        """``provenance.dataset``."""


# ---------------------------------------------------------------- the shared steps


def evaluate_variants(
    staging: Path, specs: Sequence[Any], path: ConversionPath, document: dict[str, Any]
) -> dict[str, Any]:
    """Evaluate every variant from the staged bundle, write its report, and record its summary in ``document``.

    Loading the staged bundle (``Bundle.load``) puts the device's reader,
    schema check and sha256 check in the loop, so the recorded numbers are the
    device's.
    """
    from edge_har.convert.evaluate import write_evaluation
    from edge_har.core.bundle import Bundle

    bundle = Bundle.load(staging)
    evaluations: dict[str, Any] = {}
    for spec in specs:
        ev = path.evaluate(bundle, spec.name)
        files = write_evaluation(ev, staging / EVALUATION_DIR)
        evaluations[spec.name] = ev
        summary = ev.summary()
        summary["report"] = str(Path(files["metrics"]).relative_to(staging))
        if "confusion_png" in files:
            summary["confusion_png"] = str(Path(files["confusion_png"]).relative_to(staging))
        document["variants"][spec.name]["metrics"] = summary
        log.info(
            "%-14s test accuracy %.4f  macro-F1 %.4f  (%d windows, %s)",
            spec.name,
            ev.report["accuracy"],
            ev.report["macro_f1"],
            ev.report["n_windows"],
            ev.backend,
        )
    return evaluations


def self_test_section(
    staging: Path, windows: tuple[np.ndarray, np.ndarray], evaluations: Mapping[str, Any]
) -> dict[str, Any]:
    """Write ``selftest.npz`` (a few test windows of every class and each variant's outputs for them, from
    the evaluation just run through the device's interpreter code) and return ``bundle.json``'s entry."""
    from edge_har.core.self_test import pick_windows, write_self_test

    x, y = windows
    picked = pick_windows(np.asarray(y))
    return write_self_test(staging, x[picked], {name: ev.probabilities[picked] for name, ev in evaluations.items()})


def metrics_section(
    split_info: dict[str, Any],
    evaluations: Mapping[str, Any],
    keras_accuracy: float,
    extra: Mapping[str, Any],
    drops: dict[str, float],
    over: bool,
    options: ConvertOptionsLike,
    gate: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "evaluated_on": "test split",
        "split": split_info,
        "reference_variant": "float32",
        "variants": {name: {k: ev.report[k] for k in ("accuracy", "macro_f1")} for name, ev in evaluations.items()},
        "keras_float_accuracy": keras_accuracy,
        **extra,
        "drop_points": drops,
        "int8_drop_points": drops.get("int8"),
        "max_int8_drop_points": options.max_int8_drop,
        "int8_drop_allowed": over and options.allow_int8_drop,  # kept for older readers; see "gate"
        "gate": dict(gate) if gate is not None else None,
        "backend": evaluations["float32"].backend,
    }


def training_section(
    trained: Trained,
    options: Any,
    labels: list[str],
    calibration: Mapping[str, Any],
    staging: Path,
    timings: dict[str, float],
    keras_model_file: str,
) -> dict[str, Any]:
    result = trained.result
    return {
        **trained.model_info,
        "config": options.train.to_json(),
        "strategy": result.strategy.to_json(),
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "seconds": round(result.seconds, 2),
        "class_weights": None
        if result.class_weights is None
        else {labels[i]: round(w, 6) for i, w in result.class_weights.items()},
        **calibration,
        "history_file": str(result.history_file.relative_to(staging)),
        "curves_file": None if result.curves_file is None else str(result.curves_file.relative_to(staging)),
        "keras_model": keras_model_file,
        "final": {k: v[-1] for k, v in result.history.items() if isinstance(v, list) and v},
        "stage_seconds": timings,
    }


def provenance_section(dataset_info: dict[str, Any], command: str | None) -> dict[str, Any]:
    """Where the bundle came from: data, command line, package versions, time, git revision."""
    from edge_har.convert import export

    return {
        "dataset": dataset_info,
        "command": command or export.command_line(),
        "packages": export.package_versions(),
        "created": export.utc_now(),
        "git": export.git_revision(),
    }


REFUSED_SUFFIX = ".refused"
REFUSED_FILE = "refused.json"


def refused_dir(out: str | Path) -> Path:
    """Where a refused conversion keeps its trained model: ``<out>.refused`` beside ``--out``."""
    dest = Path(out).absolute()
    return dest.with_name(dest.name + REFUSED_SUFFIX)


def keep_refused(staging: Path, document: Mapping[str, Any], out: str | Path) -> Path:
    """Move a refused conversion's staging to ``<out>.refused``: Keras model, training, reports; no bundle.

    The ``.tflite`` files go (they are what was refused, and ``--from-keras`` makes new
    ones); ``bundle.json`` is written as ``refused.json``, so nothing there loads as a
    bundle, yet it records everything ``edge-har convert --from-keras`` needs (data and
    split flags, preprocessing, model config) to re-quantize without retraining.
    """
    import json
    import os
    import shutil

    from edge_har.core.bundle import BUNDLE_FILE

    for f in [*staging.glob("*.tflite"), staging / BUNDLE_FILE]:  # bundle.json: the one evaluation read
        f.unlink(missing_ok=True)
    (staging / REFUSED_FILE).write_text(json.dumps(document, indent=2))
    dest = refused_dir(out)
    if dest.exists():
        shutil.rmtree(dest)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)
    staging.rename(dest)  # the staging context's clean-up then finds nothing to remove
    log.warning("refused conversion: the trained model and its reports are kept in %s", dest)
    return dest


# ---------------------------------------------------------------- the skeleton


def run_skeleton(path: ConversionPath, options: ConvertOptionsLike) -> Path:
    """Run the whole conversion through ``path`` and return the published bundle directory.

    Raises AccuracyGateError (leaving nothing at ``options.out``) when a
    full-integer variant falls more than ``options.max_int8_drop`` points below
    float32 and ``options.allow_int8_drop`` is off.
    """
    from edge_har.convert import export
    from edge_har.convert.quantize import resolve_variants

    timings: dict[str, float] = {}
    started = time.perf_counter()
    specs = resolve_variants(options.variants)
    export.check_destination(options.out, options.overwrite)
    path.prepare(specs, timings)

    with export.staging_dir(options.out) as staging:
        with stage("train", timings):
            trained = path.train(staging / "training")
            checkpoint = staging / CHECKPOINT
            if checkpoint.exists():  # same weights as the Keras model file; keep the bundle lean
                checkpoint.unlink()
            keras_probs = path.keras_reference(staging)
            keras_accuracy = float((keras_probs.argmax(axis=1) == path.test_labels()).mean())
            log.info("Keras float model: test accuracy %.4f", keras_accuracy)

        with stage("quantize", timings):
            variants = path.quantize(staging, specs)

        document = path.document(variants)
        export.write_json(staging, document)

        with stage("evaluate", timings):
            evaluations = evaluate_variants(staging, specs, path, document)
            extra = path.check_evaluations(evaluations, keras_probs)
            windows = path.self_test_windows()
            if windows is not None:
                document["self_test"] = self_test_section(staging, windows, evaluations)

        labels = list(document["labels"])
        refusal: AccuracyGateError | None = None
        degenerate: dict[str, Any] = {}
        try:
            degenerate = degenerate_check(evaluations, labels, bool(getattr(options, "allow_degenerate", False)))
        except DegenerateModelError as exc:
            refusal, degenerate = exc, degenerate_variants(evaluations, labels)
        try:
            drops, over = int8_gate(evaluations, specs, options.max_int8_drop, options.allow_int8_drop)
        except AccuracyGateError as exc:
            if refusal is None:
                refusal = exc
            else:  # degenerate and over the int8 limit: say both
                quantized = {**exc.quantized, **refusal.quantized}
                refusal = type(refusal)(f"{refusal} Also: {exc}", refusal.float_accuracy, quantized)
            drops, over_limit = gate_drops(evaluations, specs, options.max_int8_drop)
            over = bool(over_limit)
        gate = gate_section(drops, specs, over, degenerate, refusal, options)
        document["metrics"] = metrics_section(
            path.split_section(), evaluations, keras_accuracy, extra, drops, over, options, gate
        )
        document["training"] = training_section(
            trained, options, labels, path.calibration_info(), staging, timings, export.KERAS_MODEL_FILE
        )
        document["provenance"] = provenance_section(path.dataset_info(), options.command)
        document["files"] = {
            "keras_model": path.keras_model_note,
            "history": document["training"]["history_file"],
            "training_curves": document["training"]["curves_file"],
            "evaluation": f"{EVALUATION_DIR}/<variant>/metrics.json, confusion_matrix.png",
        }
        timings["total"] = round(time.perf_counter() - started, 2)
        if refusal is not None:
            kept = keep_refused(staging, document, options.out)
            raise type(refusal)(
                f"{refusal} The trained model is kept in {kept} (no bundle there); re-quantize and re-gate it "
                f"without retraining: edge-har convert --from-keras {kept} "
                f"{' '.join(refusal.advice_flags) + ' ' if refusal.advice_flags else ''}--out {options.out}",
                refusal.float_accuracy,
                refusal.quantized,
                refusal.advice_flags,
            ) from None
        export.write_json(staging, document)
        out = export.publish(staging, options.out, options.overwrite)
    log.info("%s finished in %.1f s: %s", path.what, time.perf_counter() - started, out)
    return out
