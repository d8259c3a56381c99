"""Accuracy suite: float against every quantized variant, a classical baseline, streaming accuracy.

Everything is scored on the bundle's own test split, re-created from
``bundle.json`` by ``edge_har.convert.evaluate`` (the code ``edge-har evaluate`` uses),
and every variant runs through the device's interpreter wrapper: the figures
are the ones a Pi would produce. The metrics and the confusion PNGs are
``edge_har.core.metrics`` / ``edge_har.convert.evaluate.write_evaluation``, so this suite,
``convert`` and ``evaluate`` can never disagree on what "accuracy" means.

Three questions, each in its own guarded step (one failure is reported in its
row and the others go on):

1. What does quantization cost? Accuracy, macro-F1 and per-class F1 of each
   variant, and the drop in points from float32.
2. Is the network worth shipping? A random forest on per-window statistics
   (``edge_har.benchmarks.baseline``) trained on the same training recordings, and the
   margin the CNN-LSTM beats it by.
3. What does a device actually report? Whole test recordings replayed through
   the daemon's windowing and smoothing (``edge_har.benchmarks.streaming``), scored
   over time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_har.benchmarks import report

log = logging.getLogger(__name__)

DEFAULT_TREES = 200
QUICK_TREES = 50


@dataclass
class AccuracySettings:
    variants: list[str] | None = None  # None: every variant of the bundle
    runtime: str = "auto"
    trees: int = DEFAULT_TREES
    baseline: bool = True
    streaming: bool = True
    seed: int = 0
    stream_variant: str | None = None  # None: the bundle's default variant, what the daemon runs
    smoothing_method: str | None = None  # None: the daemon's default (edge_har.device.config.SmoothingConfig)
    smoothing_window: int | None = None
    threshold: float | None = None
    quick: bool = False
    # event-like class report (keywords of edge_har.convert.evaluate.event_report: positive, k, thresholds)
    events: dict[str, Any] | None = None

    @classmethod
    def quick_settings(cls, **overrides: Any) -> AccuracySettings:
        base: dict[str, Any] = dict(trees=QUICK_TREES, quick=True)
        base.update(overrides)
        return cls(**base)


# ---------------------------------------------------------------- the test split


@dataclass
class SplitData:
    """The test windows (normalised, for the networks; scaled, for the baseline) and the training recordings."""

    x_norm: np.ndarray
    x_scaled: np.ndarray
    y: np.ndarray  # bundle label indices
    groups: np.ndarray  # each test window's recording index (recording-level event metrics)
    test_indices: np.ndarray
    train_indices: np.ndarray
    train_source: str  # which recordings the baseline trains on, in words
    info: dict[str, Any]


def _split_indices(bundle: Any, dataset: Any, test: np.ndarray) -> tuple[np.ndarray, str]:
    """The recordings the network was trained on, when bundle.json names them; else every non-test recording."""
    from edge_har.convert.evaluate import relative_source

    split = bundle.metrics.get("split") or {}
    wanted = split.get("train_sources_relative")
    if wanted:
        by_source = {relative_source(r.source, dataset.root): i for i, r in enumerate(dataset.recordings)}
        found = [by_source[s] for s in wanted if s in by_source]
        if len(found) == len(wanted):
            return np.asarray(found, dtype=np.int64), "the bundle's training recordings (bundle.json)"
        log.warning(
            "%d of the bundle's training recordings are not in the data; the baseline trains on every "
            "non-test recording instead",
            len(wanted) - len(found),
        )
    rest = np.setdiff1d(np.arange(len(dataset.recordings)), test)
    return rest.astype(np.int64), "every recording outside the test split (training and validation)"


def load_split(bundle: Any, dataset: Any) -> SplitData:
    from edge_har.convert.datasets import make_window_set
    from edge_har.convert.evaluate import (
        EvaluationError,
        bundle_windows_grouped,
        label_indices,
        test_recording_indices,
    )

    x_norm, y, groups, info = bundle_windows_grouped(bundle, dataset, "test")
    test = test_recording_indices(bundle, dataset)
    pre = bundle.preprocessing
    scaled = make_window_set(dataset, pre, recording_indices=test, skip_short=True)  # as bundle_windows
    x_scaled = np.asarray(scaled.x, dtype=np.float32)
    if len(x_scaled) != len(x_norm):
        raise EvaluationError(
            f"{dataset.root}: the baseline's test windows ({len(x_scaled)}) differ from the networks' ({len(x_norm)})"
        )
    remap = label_indices(dataset.labels, bundle.labels, str(dataset.root))
    if not np.array_equal(remap[np.asarray(scaled.y, dtype=np.int64)], y):
        raise EvaluationError(f"{dataset.root}: the baseline's test labels differ from the networks'")
    train, train_source = _split_indices(bundle, dataset, test)
    info = dict(info, path=str(dataset.root), test_recordings=int(len(test)), train_recordings=int(len(train)))
    return SplitData(x_norm, x_scaled, y, groups, test, train, train_source, info)


# ---------------------------------------------------------------- variants


def score_variant(
    bundle: Any, name: str, split: SplitData, settings: AccuracySettings, out_dir: Path, progress: bool
) -> dict[str, Any]:
    from edge_har.convert.evaluate import evaluate_model, write_evaluation

    variant = bundle.variant(name)
    row: dict[str, Any] = {
        "name": name,
        "kind": "variant",
        "quantization": variant.quantization,
        "size_bytes": variant.size_bytes,
    }
    model = bundle.load_model(name, backend=settings.runtime, num_threads=1)
    evaluation = evaluate_model(model, split.x_norm, split.y, bundle.labels, name, progress=progress)
    files = write_evaluation(evaluation, out_dir / "confusion")
    row.update(_scores(evaluation.report))
    row["backend"] = evaluation.backend
    row["mean_inference_ms"] = 1000 * evaluation.seconds / max(1, len(split.y))
    row["files"] = files
    if settings.events:
        from edge_har.convert.evaluate import event_report, per_hour_events, window_event_keys
        from edge_har.convert.event_eval import plot_sweep

        events = settings.events
        row["events"] = event_report(
            split.y, evaluation.probabilities, split.groups, bundle.labels, **window_event_keys(events)
        )
        per_hour = per_hour_events(bundle, split.x_scaled, split.y, split.groups, evaluation.probabilities, events)
        row["events"]["per_hour"] = per_hour
        row["files"]["events_sweep"] = str(plot_sweep(per_hour, out_dir / f"events_sweep-{name}.png", name))
    return row


def _scores(rep: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": "ok",
        "accuracy": rep["accuracy"],
        "macro_f1": rep["macro_f1"],
        "macro_precision": rep["macro_precision"],
        "macro_recall": rep["macro_recall"],
        "n_windows": rep["n_windows"],
        "per_class_f1": {label: s["f1"] for label, s in rep["per_class"].items()},
        "per_class": rep["per_class"],
        "classes_absent": rep["classes_absent"],
        "confusion_matrix": rep["confusion_matrix"],
    }


# ---------------------------------------------------------------- baseline


def score_baseline(
    bundle: Any, dataset: Any, split: SplitData, settings: AccuracySettings, out_dir: Path
) -> dict[str, Any]:
    from edge_har.benchmarks.baseline import FEATURES, predict_timed, train_baseline
    from edge_har.convert.datasets import make_window_set
    from edge_har.convert.evaluate import label_indices
    from edge_har.convert.plots import confusion_matrix_png
    from edge_har.core.metrics import classification_report

    pre = bundle.preprocessing
    train = make_window_set(dataset, pre, recording_indices=split.train_indices, skip_short=True)
    remap = label_indices(dataset.labels, bundle.labels, str(dataset.root))
    y_train = remap[np.asarray(train.y, dtype=np.int64)]
    model = train_baseline(np.asarray(train.x, np.float32), y_train, trees=settings.trees, seed=settings.seed)
    pred, per_window_ms = predict_timed(model, split.x_scaled)
    rep = classification_report(split.y, pred, bundle.labels)
    row: dict[str, Any] = {"name": "random_forest", "kind": "baseline"}
    row.update(_scores(rep))
    row.update(
        {
            "features": f"{', '.join(FEATURES)} per channel ({len(FEATURES) * pre.n_channels} features) of the scaled window",
            "trees": settings.trees,
            "class_weight": "balanced",
            "train_windows": int(len(y_train)),
            "train_recordings": split.train_source,
            "fit_seconds": model.fit_seconds,
            "mean_inference_ms": per_window_ms,
            "size_bytes": model.size_bytes(),
        }
    )
    try:
        png = confusion_matrix_png(
            rep["confusion_matrix"],
            bundle.labels,
            out_dir / "confusion" / "random_forest" / "confusion_matrix.png",
            title=f"random forest: accuracy {rep['accuracy']:.3f}, macro-F1 {rep['macro_f1']:.3f}",
        )
        row["files"] = {"confusion_png": str(png)}
    except Exception as exc:  # the matrix is in the JSON; a missing matplotlib loses nothing
        log.warning("baseline confusion PNG not written: %s", exc)
    return row


def margins(rows: Sequence[dict[str, Any]], default_variant: str) -> dict[str, Any] | None:
    """By how many points each network variant beats the random forest (negative: it loses)."""
    base = next((r for r in rows if r.get("kind") == "baseline" and r.get("status") == "ok"), None)
    if base is None:
        return None
    out: dict[str, Any] = {"default_variant": default_variant, "variants": {}}
    for r in rows:
        if r.get("kind") == "variant" and r.get("status") == "ok":
            out["variants"][r["name"]] = {
                "accuracy_points": 100 * (r["accuracy"] - base["accuracy"]),
                "macro_f1_points": 100 * (r["macro_f1"] - base["macro_f1"]),
            }
    return out


# ---------------------------------------------------------------- the suite


def _guarded(name: str, fn: Any, kind: str) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        row = fn()
    except Exception as exc:
        log.warning("%s failed: %s: %s", name, type(exc).__name__, exc)
        log.debug("%s failed", name, exc_info=True)
        row = {"name": name, "kind": kind, "status": "error", "error": f"{type(exc).__name__}: {exc}"}
    row["seconds"] = time.perf_counter() - started
    return row


def run_accuracy(
    bundle: Any, dataset: Any, settings: AccuracySettings, out_dir: str | Path, progress: bool = True
) -> dict[str, Any]:
    """Run the three parts of the suite and return its results section."""
    started = time.perf_counter()
    out = Path(out_dir)
    section = report.suite_header("accuracy", bundle)
    section["settings"] = dict(vars(settings))
    split = load_split(bundle, dataset)  # no split, no suite: the error names the data and the key
    section["data"] = split.info
    names = settings.variants or list(bundle.variants)
    if "float32" in bundle.variants and "float32" not in names:
        names = ["float32"] + list(names)
    rows = [_guarded(n, lambda n=n: score_variant(bundle, n, split, settings, out, progress), "variant") for n in names]
    reference = next((r for r in rows if r["name"] == "float32" and r["status"] == "ok"), None)
    for r in rows:
        if r["status"] == "ok" and reference is not None:
            r["drop_points"] = 100 * (reference["accuracy"] - r["accuracy"])
            r["macro_f1_drop_points"] = 100 * (reference["macro_f1"] - r["macro_f1"])
    if settings.baseline:
        rows.append(
            _guarded("random_forest", lambda: score_baseline(bundle, dataset, split, settings, out), "baseline")
        )
    section["rows"] = rows
    section["baseline_margin"] = margins(rows, bundle.default_variant)
    if settings.streaming:
        from edge_har.benchmarks.streaming import run_streaming
        from edge_har.convert.quiet import collapse_repeats

        try:
            with collapse_repeats("edge_har"):  # one "resampling ..." line per recording otherwise
                section["streaming"] = run_streaming(bundle, dataset, split.test_indices, settings, progress=progress)
        except Exception as exc:
            log.warning("streaming accuracy failed: %s: %s", type(exc).__name__, exc)
            log.debug("streaming accuracy failed", exc_info=True)
            section["streaming"] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    return report.finish_section(section, started)


# ---------------------------------------------------------------- output


def accuracy_plot_entries(section: dict[str, Any]) -> list[dict[str, Any]]:
    """(name, accuracy, macro-F1) per variant, the baseline and each streaming mode, for the plot and --compare."""
    entries = [
        {"name": r["name"], "accuracy": r.get("accuracy"), "macro_f1": r.get("macro_f1")}
        for r in section.get("rows", [])
        if r.get("status") == "ok"
    ]
    streaming = section.get("streaming") or {}
    for mode in streaming.get("modes", []):
        if mode.get("status") == "ok":
            entries.append(
                {
                    "name": f"streaming {mode['name']}",
                    "accuracy": mode.get("window_accuracy"),
                    "macro_f1": mode.get("macro_f1"),
                }
            )
    return entries


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    return f"{size / 1024:.1f} KB" if size < 10 * 2**20 else f"{size / 2**20:.1f} MB"


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _pts(value: Any) -> str:
    return "-" if value is None else f"{value + 0.0:+.2f}".replace("-0.00", "+0.00")


def format_accuracy(section: dict[str, Any]) -> str:
    from edge_har.benchmarks.streaming import format_streaming

    rows = section["rows"]
    data = section.get("data", {})
    parts = [
        report.context_lines(section),
        f"data: {data.get('path')}: test split of {data.get('test_recordings')} recordings, {data.get('windows')} "
        "windows (re-created from bundle.json)",
    ]
    headers = ["model", "quantization", "status", "accuracy", "macro-F1", "vs float32 (points)", "size"]
    table: list[list[Any]] = []
    notes: list[str] = []
    for r in rows:
        status = "ok"
        if r.get("status") != "ok":
            notes.append(f"[{len(notes) + 1}] {r['name']}: {r.get('error')}")
            status = f"error [{len(notes)}]"
        quant = r.get("quantization") or (
            f"{r.get('trees')} trees, per-window stats" if r.get("kind") == "baseline" else "-"
        )
        size = r.get("size_bytes")
        change = "-"
        if r["name"] == "float32" and r.get("status") == "ok":
            change = "reference"
        elif r.get("drop_points") is not None:
            change = _pts(0.0 - r["drop_points"] + 0.0)
        table.append([r["name"], quant, status, _pct(r.get("accuracy")), _pct(r.get("macro_f1")), change, _size(size)])
    parts.append(
        report.format_table(headers, table, title=f"Accuracy on the test split: {section['bundle']['model_id']}")
    )
    if notes:
        parts.append("\n".join(notes))
    ok = [r for r in rows if r.get("status") == "ok"]
    if ok:
        labels = section["bundle"]["labels"]
        per_class = [
            [label]
            + [f"{r['per_class_f1'].get(label, float('nan')):.3f}" for r in ok]
            + [str(ok[0]["per_class"][label]["support"])]
            for label in labels
        ]
        parts.append(
            report.format_table(["class"] + [r["name"] for r in ok] + ["support"], per_class, title="Per-class F1")
        )
    margin = section.get("baseline_margin")
    if margin:
        default = margin["default_variant"]
        base = next(r for r in rows if r.get("kind") == "baseline" and r.get("status") == "ok")
        lines = [
            f"CNN-LSTM over the random-forest baseline (points of accuracy / macro-F1); the forest: "
            f"{base['train_windows']} training windows, {base['fit_seconds']:.1f} s to fit, "
            f"{base['mean_inference_ms']:.2f} ms per window one at a time, {_size(base['size_bytes'])} pickled:"
        ]
        for name, m in margin["variants"].items():
            tag = " (default variant)" if name == default else ""
            lines.append(f"  {name:<14} {m['accuracy_points']:+.2f} / {m['macro_f1_points']:+.2f}{tag}")
        parts.append("\n".join(lines))
    with_events = [r for r in rows if r.get("status") == "ok" and r.get("events")]
    if with_events:
        from edge_har.convert.evaluate import format_event_report

        shown = next((r for r in with_events if r["name"] == section["bundle"].get("default_variant")), with_events[-1])
        lines = [format_event_report(shown["events"], title=f"Event class, {shown['name']}:")]
        for r in with_events:
            w, rec = r["events"]["argmax"]["windows"], r["events"]["argmax"]["recordings"]
            lines.append(
                f"  {r['name']:<14} windows: sensitivity {_pct(w['sensitivity'])}, specificity "
                f"{_pct(w['specificity'])}; recordings (k={rec['k']}): sensitivity {_pct(rec['sensitivity'])}, "
                f"{rec['fp']} false alarm(s)"
            )
        parts.append("\n".join(lines))
    if section.get("streaming"):
        parts.append(format_streaming(section["streaming"]))
    return "\n\n".join(parts)
