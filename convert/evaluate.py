"""Evaluate bundle variants through the device's own interpreter code.

Accuracy is measured by running each ``.tflite`` file with
``edge_har.core.bundle.Bundle.load_model`` (ai-edge-litert or tflite-runtime, the
same wrapper, quantization and sha256 check as the daemon), never with Keras:
the numbers in ``bundle.json`` are then the numbers the device will see.
This module imports no TensorFlow, so ``edge-har evaluate`` runs on a machine
with only the device extra (plus matplotlib for the PNGs).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edge_har.core.bundle import Bundle
from edge_har.core.errors import EdgeHarError
from edge_har.core.formats.event_focus import whole_source
from edge_har.core.formats.windows import log_resampling
from edge_har.core.interpreter import TFLiteModel
from edge_har.core.metrics import classification_report
from edge_har.core.preprocessing import Preprocessing, denormalise, normalise

log = logging.getLogger(__name__)

SPLITS = ("test", "val", "all")


class EvaluationError(EdgeHarError, ValueError):
    """The data does not fit the bundle (labels, channels, test recordings missing)."""


@dataclass
class VariantEvaluation:
    variant: str
    report: dict[str, Any]
    probabilities: np.ndarray  # (n, classes) float32
    seconds: float
    backend: str

    def summary(self) -> dict[str, Any]:
        keys = ("accuracy", "macro_f1", "macro_precision", "macro_recall", "n_windows")
        out = {k: self.report[k] for k in keys}
        out["mean_inference_ms"] = round(1000 * self.seconds / max(1, self.report["n_windows"]), 4)
        return out


def predict_probabilities(model: TFLiteModel, windows: np.ndarray, desc: str = "", progress: bool = True) -> np.ndarray:
    """Run every window through the model (static batch of 1) with a progress bar."""
    from tqdm import tqdm

    n = len(windows)
    out = np.empty((n,) + tuple(model.output.shape[1:]), dtype=np.float32)
    for i in tqdm(range(n), desc=desc or model.path.name, unit="win", leave=False, disable=not progress or n < 200):
        out[i] = model.predict(windows[i])
    return out


def evaluate_model(
    model: TFLiteModel, windows: np.ndarray, y: np.ndarray, labels: Sequence[str], variant: str, progress: bool = True
) -> VariantEvaluation:
    started = time.perf_counter()
    probs = predict_probabilities(model, windows, desc=f"evaluate {variant}", progress=progress)
    seconds = time.perf_counter() - started
    report = classification_report(y, probs.argmax(axis=1), labels)
    report["variant"] = variant
    report["backend"] = f"{model.backend.name} {model.backend.version}"
    return VariantEvaluation(variant, report, probs, seconds, report["backend"])


def write_evaluation(evaluation: VariantEvaluation, out_dir: str | Path, title: str = "") -> dict[str, str]:
    """``<out_dir>/<variant>/metrics.json`` and ``confusion_matrix.png``; returns the paths written."""
    folder = Path(out_dir) / evaluation.variant
    folder.mkdir(parents=True, exist_ok=True)
    metrics_file = folder / "metrics.json"
    metrics_file.write_text(json.dumps(evaluation.report, indent=2))
    written = {"metrics": str(metrics_file)}
    try:
        from edge_har.convert.plots import confusion_matrix_png

        png = confusion_matrix_png(
            evaluation.report["confusion_matrix"],
            evaluation.report["labels"],
            folder / "confusion_matrix.png",
            title=title
            or f"{evaluation.variant}: accuracy {evaluation.report['accuracy']:.3f}, "
            f"macro-F1 {evaluation.report['macro_f1']:.3f}",
        )
        written["confusion_png"] = str(png)
    except Exception as exc:  # the JSON has the same matrix; a missing matplotlib loses nothing
        log.warning("confusion matrix PNG not written for %s: %s", evaluation.variant, exc)
    return written


# ---------------------------------------------------------------- data for a bundle


def relative_source(source: str, root: str | Path) -> str:
    """A recording's source relative to its data set root, so a moved data set still matches."""
    try:
        rel = os.path.relpath(source, str(root))
    except ValueError:
        return source
    return source if rel.startswith("..") else rel.replace(os.sep, "/")


def label_indices(dataset_labels: Sequence[str], bundle_labels: Sequence[str], where: str) -> np.ndarray:
    """Map the data set's label indices onto the bundle's; unknown labels are an error."""
    index = {label: i for i, label in enumerate(bundle_labels)}
    missing = [label for label in dataset_labels if label not in index]
    if missing:
        raise EvaluationError(
            f"{where}: the data has classes the model does not know: {', '.join(missing)} "
            f"(model classes: {', '.join(bundle_labels)})"
        )
    return np.asarray([index[label] for label in dataset_labels], dtype=np.int64)


def check_channels(dataset: Any, pre: Preprocessing, where: str) -> None:
    if tuple(dataset.channels) != tuple(pre.channels):
        raise EvaluationError(
            f"{where}: the data's channels {list(dataset.channels)} differ from the model's {list(pre.channels)}"
        )


def test_recording_indices(bundle: Bundle, dataset: Any, side: str = "test") -> np.ndarray:
    """The recordings of the test (or validation) split recorded in ``bundle.json``, found again in ``dataset``."""
    split = bundle.metrics.get("split") or {}
    wanted = split.get(f"{side}_sources_relative")
    if not wanted:
        raise EvaluationError(
            f"{bundle.root / 'bundle.json'}: metrics.split.{side}_sources_relative is missing, so the {side} split "
            "cannot be re-created; use --split all"
        )
    by_source = {relative_source(rec.source, dataset.root): i for i, rec in enumerate(dataset.recordings)}
    # a piece --event-focus cut (source@first-last) is found in its whole recording (--event-focus -: whole trials)
    wanted = list(dict.fromkeys(s if s in by_source else whole_source(s) for s in wanted))
    missing = [s for s in wanted if s not in by_source]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise EvaluationError(
            f"{dataset.root}: {len(missing)} of the bundle's {len(wanted)} test recordings are not in this data "
            f"({shown}); pass the data set the bundle was trained on, or use --split all"
        )
    recorded_hash = ((bundle.data.get("provenance") or {}).get("dataset") or {}).get("file_list_sha256")
    if recorded_hash and getattr(dataset, "file_list_sha256", None) and recorded_hash != dataset.file_list_sha256:
        log.warning(
            "%s: the data set's file list differs from the one the bundle was trained on; "
            "the test recordings are all present, so evaluating them anyway",
            dataset.root,
        )
    return np.asarray([by_source[s] for s in wanted], dtype=np.int64)


def bundle_windows(bundle: Bundle, dataset: Any, split: str = "test") -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Normalised windows and bundle-label indices of ``dataset`` for ``split`` ("test" or "all")."""
    x, y, _, info = bundle_windows_grouped(bundle, dataset, split)
    return x, y, info


def bundle_windows_grouped(
    bundle: Bundle, dataset: Any, split: str = "test"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """``bundle_windows`` plus each window's recording index (for recording-level event metrics)."""
    from edge_har.convert.datasets import make_window_set

    if split not in SPLITS:
        raise EvaluationError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    pre = bundle.preprocessing
    check_channels(dataset, pre, str(dataset.root))
    remap = label_indices(dataset.labels, bundle.labels, str(dataset.root))
    indices = test_recording_indices(bundle, dataset, split) if split != "all" else None
    log_resampling(dataset, pre.sample_rate_hz, indices)
    # skip_short: a test recording shorter than one window gave convert no window either (--skip-short)
    windows = make_window_set(dataset, pre, recording_indices=indices, skip_short=True)
    if len(windows.x) == 0:
        raise EvaluationError(f"{dataset.root}: no windows of {pre.window} samples in the {split} data")
    x = normalise(windows.x, pre)
    y = remap[np.asarray(windows.y, dtype=np.int64)]
    n_recordings = len(dataset.recordings) if indices is None else len(indices)
    groups = np.asarray(windows.groups, dtype=np.int64)
    return x, y, groups, {"split": split, "recordings": n_recordings, "windows": int(len(x))}


def evaluate_bundle(
    bundle: Bundle,
    dataset: Any,
    *,
    variants: Sequence[str] | None = None,
    split: str = "test",
    out_dir: str | Path | None = None,
    backend: str = "auto",
    num_threads: int | None = 1,
    progress: bool = True,
    events: Mapping[str, Any] | None = None,
    explain: Any | None = None,
) -> dict[str, Any]:
    """Evaluate ``variants`` (default: all) of ``bundle`` on ``dataset``; write reports to ``out_dir``.

    ``explain`` (an :class:`edge_har.convert.explain.ExplainOptions`) adds, per variant, the
    attribution report of :mod:`edge_har.convert.explain` under ``<out>/<variant>/explain/``.

    ``events`` (keywords of ``event_report``: ``positive``, ``k``, ``thresholds``; and of the
    per-recording event figures: ``target_per_hour``, ``refractory_s``, ``before_s``, ``after_s``)
    adds the event-class report per variant (``<out>/<variant>/events.json``) with the device's
    event rule swept over the recordings (false alarms per hour, sensitivity, delay) and its plot
    (``<out>/<variant>/events_sweep.png``).
    """
    names = list(variants) if variants else list(bundle.variants)
    for name in names:
        bundle.variant(name)  # raises BundleError naming the known variants
    if events is not None and events.get("positive") not in bundle.labels:
        raise EvaluationError(
            f"--positive-class {events.get('positive')!r}: not a class of the model ({', '.join(bundle.labels)})"
        )
    x, y, groups, data_info = bundle_windows_grouped(bundle, dataset, split)
    if events is not None or explain is not None:  # the same for every variant: the windows in physical units
        physical = denormalise(x, bundle.preprocessing)
    if explain is not None:
        if out_dir is None:
            raise EvaluationError("explanations are written as files: give an output directory")
        from edge_har.convert.explain import load_keras_for

        keras_model = load_keras_for(bundle, explain)
    if events is not None:
        recording_names = [relative_source(r.source, dataset.root) for r in dataset.recordings]
    results: dict[str, Any] = {
        "bundle": str(bundle.root),
        "model_id": bundle.model_id,
        "data": data_info,
        "variants": {},
    }
    for name in names:
        model = bundle.load_model(name, backend=backend, num_threads=num_threads)
        evaluation = evaluate_model(model, x, y, bundle.labels, name, progress=progress)
        log.info(
            "%s: accuracy %.4f, macro-F1 %.4f on %d %s windows",
            name,
            evaluation.report["accuracy"],
            evaluation.report["macro_f1"],
            len(x),
            split,
        )
        entry: dict[str, Any] = evaluation.summary()
        if out_dir is not None:
            entry["files"] = write_evaluation(evaluation, out_dir)
        if events is not None:
            event = event_report(y, evaluation.probabilities, groups, bundle.labels, **window_event_keys(events))
            event["per_hour"] = per_hour_events(
                bundle, physical, y, groups, evaluation.probabilities, events, recording_names
            )
            entry["events"] = {
                "argmax": event["argmax"],
                "positive_class": event["positive_class"],
                "k": event["k"],
                "per_hour": event["per_hour"]["chosen"],
            }
            if out_dir is not None:
                from edge_har.convert.event_eval import plot_sweep

                events_file = Path(out_dir) / name / "events.json"
                events_file.write_text(json.dumps(event, indent=2))
                plot = plot_sweep(
                    event["per_hour"], Path(out_dir) / name / "events_sweep.png", f"{name}: {event['positive_class']}"
                )
                entry.setdefault("files", {})["events"] = str(events_file)
                entry["files"]["events_sweep"] = str(plot)
        if explain is not None and out_dir is not None:
            from edge_har.convert.explain import explain_variant

            document = explain_variant(
                bundle,
                model,
                name,
                x,
                y,
                evaluation.probabilities,
                physical,
                Path(out_dir) / name / "explain",
                explain,
                keras_model,
            )
            entry.setdefault("files", {})["explain"] = str(Path(out_dir) / name / "explain" / "explain.json")
            entry["explain_ms_per_window"] = document["ms_per_window"]
        results["variants"][name] = entry
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(results, indent=2))
    return results


def window_event_keys(events: Mapping[str, Any]) -> dict[str, Any]:
    """The keywords of :func:`event_report` among ``events`` (the rest are the per-recording rule's)."""
    return {k: v for k, v in events.items() if k in ("positive", "k", "thresholds")}


def per_hour_events(
    bundle: Bundle,
    x_physical: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    probabilities: np.ndarray,
    events: Mapping[str, Any],
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The device's event rule over each recording's windows (see :mod:`edge_har.convert.event_eval`)."""
    from edge_har.convert.event_eval import event_streams, per_hour_report

    pre = bundle.preprocessing
    streams = event_streams(x_physical, probabilities, y, groups, pre, bundle.labels, events["positive"], names)
    before_s, after_s = float(events.get("before_s", 2.0)), float(events.get("after_s", 10.0))
    report = per_hour_report(
        streams,
        events["positive"],
        bundle.labels,
        target_per_hour=float(events.get("target_per_hour", 1.0)),
        refractory_s=float(events.get("refractory_s", 30.0)),
        before_s=before_s,
        after_s=after_s,
    )
    shipped = (bundle.data.get("events") or {}).get(events["positive"])
    if shipped:  # the rule the bundle ships with (chosen on its validation split): what the device will do
        from edge_har.core.event_metrics import event_figures
        from edge_har.core.events import rules_from_json

        (rule,) = rules_from_json({events["positive"]: shipped}, bundle.labels, "bundle.json events")
        report["bundle_rule"] = event_figures(
            streams, rule, bundle.labels, before_s=before_s, after_s=after_s
        ).to_json()
    return report


def load_bundle(path: str | Path) -> Bundle:
    return Bundle.load_verified(path)


# ---------------------------------------------------------------- data flags recorded in the bundle
#
# ``convert`` records the data-set flags it was given (argparse dest -> value) as
# ``provenance.dataset.data_flags``; ``evaluate``, ``bench`` and ``convert --from-keras`` fill in
# every flag the user leaves out from there, so nobody repeats ``--sample-rate 50 --channels ...``.

# What an older bundle's provenance.dataset records, by data-set flag dest (no data_flags there).
_DESCRIBED = {"sample_rate": "sample_rate_hz", "channels": "channels", "scale": "scale", "offset": "offset"}


def data_flag_defaults() -> dict[str, Any]:
    """Every data-set flag's argparse dest and default (``add_dataset_arguments``' own, so new flags come along)."""
    import argparse

    from edge_har.convert.datasets import add_dataset_arguments

    parser = argparse.ArgumentParser(add_help=False)
    add_dataset_arguments(parser, required=False)
    return {a.dest: a.default for a in parser._actions if a.dest != "data"}  # noqa: SLF001


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value.absolute())
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def given_data_flags(args: Any, dataset: Any | None = None) -> dict[str, Any]:
    """The data-set flags ``args`` sets away from their defaults, JSON-ready; plus the layout actually read."""
    out = {}
    for dest, default in data_flag_defaults().items():
        value = getattr(args, dest, default)
        if value != default:
            out[dest] = _jsonable(value)
    if dataset is not None and getattr(dataset, "format", None):
        out["format"] = str(dataset.format)
    return out


def recorded_data_flags(document: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(data path, data-set flags) a bundle document records; older bundles: what provenance.dataset describes."""
    from edge_har.core.formats import formats

    info = ((document.get("provenance") or {}).get("dataset")) or {}
    path = info.get("path")
    if "data_flags" in info:
        return path, dict(info["data_flags"])
    flags: dict[str, Any] = {}
    fmt = info.get("format")
    if fmt:
        flags["format"] = fmt
        known = formats().get(fmt)
        accepted = set(known.options.model_fields) if known is not None else set()
        for dest, key in _DESCRIBED.items():
            if dest in accepted and info.get(key) is not None:
                flags[dest] = info[key]
    return path, flags


def fill_data_flags(args: Any, document: Mapping[str, Any], where: str = "bundle.json") -> list[str]:
    """Set every data-set flag of ``args`` the user left at its default from the bundle; return those set.

    ``--data`` too, when not given (the bundle records the data set's path). A flag the
    user gives always wins; a flag the bundle records under a name this version lacks is
    ignored with a warning, not an error.
    """
    defaults = data_flag_defaults()
    path, flags = recorded_data_flags(document)
    taken = []
    if getattr(args, "data", None) is None:
        if not path:
            raise EvaluationError(f"{where}: records no data set path; give --data")
        args.data = Path(path)
        taken.append(f"--data {path}")
    for dest, value in flags.items():
        if dest not in defaults:
            log.warning("%s: data flag %r is not known to this version; ignored", where, dest)
            continue
        if getattr(args, dest, defaults[dest]) != defaults[dest]:
            continue  # given on the command line
        if isinstance(value, list):
            value = tuple(value)
        setattr(args, dest, value)
        taken.append(
            f"--{dest.replace('_', '-')} {value if not isinstance(value, tuple) else ','.join(map(str, value))}"
        )
    if taken:
        log.info("data flags from %s: %s", where, "; ".join(taken))
    return taken


# ---------------------------------------------------------------- event-like classes
#
# For a class that is an event to catch (a fall, a seizure, a cough) accuracy and macro-F1
# say little: what matters is how many of the events were caught (sensitivity), how often
# anything else raised an alarm (specificity), per recording as an alert would fire, and how
# both move with the decision threshold.

DEFAULT_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def _rates(tp: int, fn: int, tn: int, fp: int) -> dict[str, Any]:
    def ratio(a: int, b: int) -> float | None:
        return None if b == 0 else a / b

    precision = ratio(tp, tp + fp)
    sensitivity = ratio(tp, tp + fn)
    f1 = None
    if precision is not None and sensitivity is not None and precision + sensitivity > 0:
        f1 = 2 * precision * sensitivity / (precision + sensitivity)
    return {
        "tp": tp,
        "fn": fn,
        "tn": tn,
        "fp": fp,
        "sensitivity": sensitivity,
        "specificity": ratio(tn, tn + fp),
        "precision": precision,
        "f1": f1,
    }


def one_vs_rest(y: np.ndarray, predicted_positive: np.ndarray, positive: int) -> dict[str, Any]:
    """Window-level sensitivity, specificity, precision and F1 of class ``positive`` against all others."""
    truth = np.asarray(y) == positive
    pred = np.asarray(predicted_positive, dtype=bool)
    return _rates(
        int((truth & pred).sum()), int((truth & ~pred).sum()), int((~truth & ~pred).sum()), int((~truth & pred).sum())
    )


def recording_detection(
    y: np.ndarray, predicted_positive: np.ndarray, groups: np.ndarray, positive: int, k: int
) -> dict[str, Any]:
    """Recording-level rates: a recording is *detected* when at least ``k`` of its windows are called positive.

    A positive recording (its windows are of class ``positive``) detected is a true
    positive, one missed a false negative; any other recording detected is a false
    alarm (false positive).
    """
    y, pred, groups = np.asarray(y), np.asarray(predicted_positive, dtype=bool), np.asarray(groups)
    tp = fn = tn = fp = 0
    for g in np.unique(groups):
        member = groups == g
        truth = bool((y[member] == positive).any())
        detected = int(pred[member].sum()) >= k
        if truth:
            tp, fn = tp + detected, fn + (not detected)
        else:
            fp, tn = fp + detected, tn + (not detected)
    out = _rates(tp, fn, tn, fp)
    out["k"] = k
    out["recordings"] = tp + fn + tn + fp
    return out


def event_report(
    y: np.ndarray,
    probabilities: np.ndarray,
    groups: np.ndarray,
    labels: Sequence[str],
    positive: str,
    *,
    k: int = 1,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> dict[str, Any]:
    """Sensitivity/specificity per class (one against the rest), and for ``positive`` per recording and per threshold.

    At the ``argmax`` operating point a window is positive when ``positive`` is its
    most probable class (what the daemon publishes); in the sweep when its
    probability is at least the threshold, whatever the other classes score.
    """
    if positive not in labels:
        raise EvaluationError(f"--positive-class {positive!r}: not a class of the model ({', '.join(labels)})")
    if k < 1:
        raise EvaluationError(f"--detect-k must be >= 1, got {k}")
    bad = [t for t in thresholds if not 0.0 <= float(t) <= 1.0]
    if bad:
        raise EvaluationError(f"--thresholds must lie in [0, 1], got {bad}")
    probs = np.asarray(probabilities, dtype=np.float64)
    pred = probs.argmax(axis=1)
    index = list(labels).index(positive)
    per_class = {label: one_vs_rest(y, pred == i, i) for i, label in enumerate(labels)}
    sweep = []
    for t in thresholds:
        called = probs[:, index] >= float(t)
        sweep.append(
            {
                "threshold": float(t),
                "windows": one_vs_rest(y, called, index),
                "recordings": recording_detection(y, called, groups, index, k),
            }
        )
    return {
        "positive_class": positive,
        "k": k,
        "windows": int(len(y)),
        "recordings": int(len(np.unique(groups))),
        "per_class": per_class,
        "argmax": {
            "windows": per_class[positive],
            "recordings": recording_detection(y, pred == index, groups, index, k),
        },
        "threshold_sweep": sweep,
    }


def _pct(value: float | None) -> str:
    return "    -" if value is None else f"{100 * value:5.1f}"


def format_event_report(report: Mapping[str, Any], title: str = "") -> str:
    """The event report as three small fixed-width tables."""
    pos, k = report["positive_class"], report["k"]
    lines = [title] if title else []
    width = max([len(c) for c in report["per_class"]] + [5])
    lines.append(f"one class against the rest (windows): {'class':<{width}}  sens%  spec%  prec%")
    for label, r in report["per_class"].items():
        mark = " <- positive" if label == pos else ""
        lines.append(
            f"{'':<38}{label:<{width}}  {_pct(r['sensitivity'])}  {_pct(r['specificity'])}  {_pct(r['precision'])}{mark}"
        )
    rec = report["argmax"]["recordings"]
    lines.append(
        f"recordings ({rec['recordings']}; detected when >= {k} window(s) are {pos!r}, argmax): "
        f"sensitivity {_pct(rec['sensitivity']).strip()}% ({rec['tp']}/{rec['tp'] + rec['fn']}), "
        f"specificity {_pct(rec['specificity']).strip()}% ({rec['fp']} false alarm(s) in {rec['tn'] + rec['fp']})"
    )
    lines.append(
        f"threshold sweep on p({pos}): threshold  win sens%  win spec%  win prec%  rec sens%  rec false alarms"
    )
    for row in report["threshold_sweep"]:
        w, r = row["windows"], row["recordings"]
        lines.append(
            f"{'':<30}{row['threshold']:9.2f}  {_pct(w['sensitivity']):>9}  {_pct(w['specificity']):>9}  "
            f"{_pct(w['precision']):>9}  {_pct(r['sensitivity']):>9}  {r['fp']:>4} of {r['tn'] + r['fp']}"
        )
    return "\n".join(lines)
