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
from typing import Any, Sequence

import numpy as np

from edge_har.core.bundle import Bundle, BundleError
from edge_har.core.errors import EdgeHarError
from edge_har.core.interpreter import TFLiteModel
from edge_har.core.metrics import classification_report
from edge_har.core.preprocessing import Preprocessing, normalise

log = logging.getLogger(__name__)

SPLITS = ("test", "all")


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


def test_recording_indices(bundle: Bundle, dataset: Any) -> np.ndarray:
    """The recordings of the test split recorded in ``bundle.json``, found again in ``dataset``."""
    split = bundle.metrics.get("split") or {}
    wanted = split.get("test_sources_relative")
    if not wanted:
        raise EvaluationError(
            f"{bundle.root / 'bundle.json'}: metrics.split.test_sources_relative is missing, so the test split "
            "cannot be re-created; use --split all"
        )
    by_source = {relative_source(rec.source, dataset.root): i for i, rec in enumerate(dataset.recordings)}
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
    from edge_har.convert.datasets import make_window_set

    if split not in SPLITS:
        raise EvaluationError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    pre = bundle.preprocessing
    check_channels(dataset, pre, str(dataset.root))
    remap = label_indices(dataset.labels, bundle.labels, str(dataset.root))
    indices = test_recording_indices(bundle, dataset) if split == "test" else None
    windows = make_window_set(dataset, pre, recording_indices=indices, skip_short=split == "all")
    if len(windows.x) == 0:
        raise EvaluationError(f"{dataset.root}: no windows of {pre.window} samples in the {split} data")
    x = normalise(windows.x, pre)
    y = remap[np.asarray(windows.y, dtype=np.int64)]
    n_recordings = len(dataset.recordings) if indices is None else len(indices)
    return x, y, {"split": split, "recordings": n_recordings, "windows": int(len(x))}


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
) -> dict[str, Any]:
    """Evaluate ``variants`` (default: all) of ``bundle`` on ``dataset``; write reports to ``out_dir``."""
    names = list(variants) if variants else list(bundle.variants)
    for name in names:
        bundle.variant(name)  # raises BundleError naming the known variants
    x, y, data_info = bundle_windows(bundle, dataset, split)
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
        results["variants"][name] = entry
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(results, indent=2))
    return results


def load_bundle(path: str | Path) -> Bundle:
    bundle = Bundle.load(path)
    problems = bundle.verify()
    if problems:
        raise BundleError(f"{bundle.root}: " + "; ".join(problems))
    return bundle
