"""Personalisation suite: how much a few minutes of a user's own labelled data buy, and what they cost.

The protocol, per data set with a subject-independent test side (UCI HAPT's UCI HAR split):

* **one base model** trained by ``edge-har convert``'s own pipeline on the training subjects
  only, so every test subject is unseen; it is cached as a bundle (``--base``) and reused by
  later runs, which check that none of the subjects under test was trained on;
* **per test subject S**, S's labelled segments are split by time, per activity, into an
  *adaptation pool* (the earlier segments, ``pool_fraction`` of them) and an *evaluation part*
  (the later ones). Whole segments go to one side, so no window of the pool overlaps one of the
  evaluation part; an activity with a single segment is cut in time with a gap of one window;
* **per budget** (minutes of labelled data), the first minutes of S's pool, balanced across S's
  activities as far as each activity's pool goes (an activity with less than its share gives
  the rest to the others), fine-tune a copy of the base model with
  :func:`edge_har.convert.personalise.fine_tune` (``train_layers="head"`` by default);
* **figures**: accuracy and macro-F1 on S's evaluation part before (base model) and after, and
  the *forgetting*: the pooled accuracy on the other test subjects' windows with the base model
  minus with S's personalised model (points; positive = worse on everyone else).

Every figure is the float Keras model's. For one subject and one budget the base and the
personalised models are also quantized to int8 and run through the device's interpreter
(:mod:`edge_har.core.interpreter`) on the same windows, to show how far the float figures carry
to a device. The section is written after every subject, so an interrupted sweep leaves the
subjects it finished.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edge_har.benchmarks import report
from edge_har.benchmarks.cpuinfo import cpu_line
from edge_har.core.errors import EdgeHarError

log = logging.getLogger(__name__)

SUITE = "personalise"
DEFAULT_MINUTES = (1.0, 2.0, 5.0, 10.0)
DEFAULT_POOL_FRACTION = 2 / 3
DEFAULT_SEED = 42
DEFAULT_BASE_EPOCHS = 20
DEFAULT_BASE_PATIENCE = 5
DEFAULT_INT8_MINUTES = 5.0
PLOT_FILE = "personalise.png"
MARKDOWN_FILE = "personalise.md"

_ROWS = re.compile(r"(?P<file>.*):rows (?P<start>\d+)-(?P<end>\d+)", re.DOTALL)


class PersonaliseBenchError(EdgeHarError, ValueError):
    """The benchmark cannot run on this data or base model; the message says which and why."""


@dataclass
class PersonaliseSettings:
    data: Path
    dataset_options: dict[str, Any] = field(default_factory=dict)
    base: Path | None = None  # cached base bundle; trained and written here when it holds no bundle.json
    subjects: tuple[str, ...] | None = None  # None: every subject of the base model's test side
    minutes: tuple[float, ...] = DEFAULT_MINUTES
    pool_fraction: float = DEFAULT_POOL_FRACTION
    train_layers: str = "head"
    epochs: int | None = None  # None: fine_tune's default
    learning_rate: float | None = None
    batch_size: int | None = None
    seed: int = DEFAULT_SEED
    # rehearsal, as ``convert --from-bundle --rehearse``: this many of the base model's training windows per
    # adaptation window mixed into fine-tuning (drawn with the seed); 0: the subject's windows alone
    rehearse: float = 0.0
    int8_subject: str | None = None  # None: the first subject
    int8_minutes: float | None = DEFAULT_INT8_MINUTES  # None: no int8 check
    # training the base model when --base holds none (convert's pipeline and defaults otherwise)
    base_epochs: int = DEFAULT_BASE_EPOCHS
    base_patience: int = DEFAULT_BASE_PATIENCE
    base_model: Any = None  # a ModelConfig; None: convert's default CNN-LSTM
    base_variants: tuple[str, ...] | None = None  # None: convert's default variants (int8 is needed for the int8 check)
    window: str | int | None = None  # None: convert's default
    stride: str | int | None = None
    data_flags: dict[str, Any] = field(default_factory=dict)
    progress: bool = True


# ---------------------------------------------------------------- the windows of one subject


@dataclass
class SubjectWindows:
    """A test subject's normalised windows with where each one lies in the subject's time line."""

    subject: str
    x: np.ndarray  # (n, window, C) normalised
    y: np.ndarray  # (n,) bundle label index
    part: np.ndarray  # (n,) "pool" | "eval" | "gap"
    pool_end_s: np.ndarray  # (n,) end of a pool window on its activity's pool time line (s); nan elsewhere
    pool_seconds: dict[int, float]  # labelled pool time per class index
    eval_seconds: dict[int, float]


def recording_order(source: str, index: int) -> tuple[str, int, int]:
    """Sort key putting a data set's segments in time order: file, then first row (``path:rows A-B``)."""
    match = _ROWS.fullmatch(source)
    if match:
        return (match.group("file"), int(match.group("start")), index)
    return (source, 0, index)


def split_subject(
    subject: str,
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    sources: Mapping[int, str],
    lengths: Mapping[int, int],
    window: int,
    stride: int,
    rate_hz: float,
    pool_fraction: float,
) -> SubjectWindows:
    """Cut one subject's windows into adaptation pool and evaluation part, per activity, by time.

    ``groups`` is each window's recording (segment) index; windows of a segment are consecutive
    and start ``stride`` samples apart, as ``make_window_set`` cuts them. Per class, the segments
    in time order: the first ``round(n * pool_fraction)`` (at least one, at most n - 1) are the
    pool, the rest the evaluation part. A class with one segment is cut at ``pool_fraction`` of
    its length: pool windows end at or before the cut, evaluation windows start at least one
    window after it, and the windows between are left out ("gap").
    """
    n = len(y)
    part = np.full(n, "eval", dtype=object)
    start = np.zeros(n, dtype=np.int64)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        start[idx] = np.arange(len(idx)) * stride
    pool_end = np.full(n, np.nan)
    pool_seconds: dict[int, float] = {}
    eval_seconds: dict[int, float] = {}
    for c in np.unique(y):
        segs = sorted({int(g) for g in groups[y == c]}, key=lambda g: recording_order(sources[g], g))
        offset = 0.0  # seconds of pool before this segment on the class's pool time line
        if len(segs) == 1:
            g = segs[0]
            cut = int(round(lengths[g] * pool_fraction))
            idx = np.flatnonzero(groups == g)
            ends = start[idx] + window
            pooled = idx[ends <= cut]
            part[idx] = "gap"
            part[idx[start[idx] >= cut + window]] = "eval"
            part[pooled] = "pool"
            pool_end[pooled] = (start[pooled] + window) / rate_hz
            pool_seconds[int(c)] = cut / rate_hz
            eval_seconds[int(c)] = max(0, lengths[g] - cut - window) / rate_hz
            continue
        n_pool = min(len(segs) - 1, max(1, int(round(len(segs) * pool_fraction))))
        for g in segs[:n_pool]:
            idx = np.flatnonzero(groups == g)
            part[idx] = "pool"
            pool_end[idx] = offset + (start[idx] + window) / rate_hz
            offset += lengths[g] / rate_hz
        pool_seconds[int(c)] = offset
        eval_seconds[int(c)] = sum(lengths[g] for g in segs[n_pool:]) / rate_hz
    return SubjectWindows(subject, x, y, part, pool_end, pool_seconds, eval_seconds)


def class_quotas(available: Mapping[int, float], budget_s: float) -> dict[int, float]:
    """Seconds per class for a budget, shared equally; a class with less gives its rest to the others."""
    quotas = {c: 0.0 for c in available}
    left = dict(available)
    remaining = float(budget_s)
    while left and remaining > 1e-9:
        share = remaining / len(left)
        short = {c: t for c, t in left.items() if t <= share}
        if not short:
            for c in left:
                quotas[c] += share
            break
        for c, t in short.items():
            quotas[c] += t
            remaining -= t
            del left[c]
    return quotas


def select_budget(sw: SubjectWindows, minutes: float) -> tuple[np.ndarray, dict[int, float]]:
    """Indices of the pool windows inside the first ``minutes`` of the pool (balanced), and the seconds used per class."""
    quotas = class_quotas(sw.pool_seconds, 60.0 * minutes)
    chosen = []
    for c, quota in quotas.items():
        idx = np.flatnonzero((sw.part == "pool") & (sw.y == c))
        chosen.append(idx[sw.pool_end_s[idx] <= quota + 1e-9])
    index = np.sort(np.concatenate(chosen)) if chosen else np.empty(0, np.int64)
    used = {c: min(q, sw.pool_seconds[c]) for c, q in quotas.items()}
    return index.astype(np.int64), used


# ---------------------------------------------------------------- scores


def scores(y: np.ndarray, predicted: np.ndarray, n_classes: int) -> dict[str, Any]:
    from edge_har.core.metrics import accuracy, macro_f1

    if len(y) == 0:
        return {"accuracy": None, "macro_f1": None, "windows": 0}
    return {"accuracy": accuracy(y, predicted), "macro_f1": macro_f1(y, predicted, n_classes), "windows": int(len(y))}


def spread(values: Sequence[float | None]) -> dict[str, Any]:
    """mean, std (population), min, max and count of the values that exist."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=np.float64)
    if len(v) == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()), "max": float(v.max()), "n": len(v)}


def _points(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else 100.0 * (a - b)


# ---------------------------------------------------------------- the base model


def _bundle_test_subjects(bundle: Any, dataset: Any) -> tuple[list[str], set[str]]:
    """(subjects of the bundle's test side, subjects it was trained or validated on)."""
    from edge_har.convert.evaluate import relative_source

    split = bundle.metrics.get("split") or {}
    test = set(split.get("test_sources_relative") or [])
    if not test:
        raise PersonaliseBenchError(
            f"{bundle.root / 'bundle.json'}: metrics.split.test_sources_relative is missing; which subjects are "
            "unseen is unknown"
        )
    test_subjects: set[str] = set()
    trained: set[str] = set()
    for rec in dataset.recordings:
        (test_subjects if relative_source(rec.source, dataset.root) in test else trained).add(rec.subject)
    return sorted(s for s in test_subjects if s), {s for s in trained if s}


def train_base(settings: PersonaliseSettings, out: Path) -> Path:
    """The base bundle, by ``edge-har convert``'s pipeline on the data set's own split (predefined: UCI HAR)."""
    from edge_har.convert.models import ModelConfig
    from edge_har.convert.pipeline import DEFAULT_STRIDE, DEFAULT_WINDOW, ConvertOptions, run_convert
    from edge_har.convert.train import TrainConfig

    extra: dict[str, Any] = {} if settings.base_variants is None else {"variants": tuple(settings.base_variants)}
    options = ConvertOptions(
        **extra,
        out=out,
        data=settings.data,
        dataset_options=dict(settings.dataset_options),
        window=settings.window or DEFAULT_WINDOW,
        stride=settings.stride or DEFAULT_STRIDE,
        skip_short=True,
        model=settings.base_model or ModelConfig(),
        train=TrainConfig(epochs=settings.base_epochs, patience=settings.base_patience, seed=settings.seed),
        progress=settings.progress,
        command=f"edge-har bench {SUITE} (base model)",
        allow_int8_drop=True,  # the gate is convert's business; here int8 is measured, not shipped
        data_flags=dict(settings.data_flags),
    )
    log.info("training the base model into %s (%d epochs at most)", out, settings.base_epochs)
    return run_convert(options)


def training_windows(bundle: Any, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """The base model's training windows (normalised, bundle label indices), for rehearsal."""
    from edge_har.convert.datasets import make_window_set
    from edge_har.convert.evaluate import label_indices, relative_source
    from edge_har.core.preprocessing import normalise

    wanted = set((bundle.metrics.get("split") or {}).get("train_sources_relative") or [])
    if not wanted:
        raise PersonaliseBenchError(
            f"{bundle.root / 'bundle.json'}: metrics.split.train_sources_relative is missing; no windows to rehearse"
        )
    indices = [i for i, r in enumerate(dataset.recordings) if relative_source(r.source, dataset.root) in wanted]
    pre = bundle.preprocessing
    windows = make_window_set(dataset, pre, recording_indices=indices, skip_short=True)
    remap = label_indices(dataset.labels, bundle.labels, str(dataset.root))
    return normalise(np.asarray(windows.x, np.float32), pre), remap[np.asarray(windows.y, np.int64)]


def load_keras(bundle: Any) -> tuple[Any, Any]:
    """(the bundle's float Keras model, its ModelConfig), rebuilt from bundle.json and keras_model.h5."""
    from edge_har.convert.export import KERAS_MODEL_FILE
    from edge_har.convert.models import ModelConfig, build_from_config

    doc = bundle.data
    config = ModelConfig.from_json((doc.get("training") or {}).get("model") or {})
    name = (doc.get("files") or {}).get("keras_model") or KERAS_MODEL_FILE
    file = Path(bundle.root) / name
    if not file.is_file():
        raise PersonaliseBenchError(f"{file}: missing; the base bundle needs its float Keras model")
    model = build_from_config(config, tuple(bundle.input_shape[1:]), len(bundle.labels))
    model.load_weights(str(file))
    return model, config


def _predict(model: Any, x: np.ndarray) -> np.ndarray:
    if len(x) == 0:
        return np.empty(0, np.int64)
    return np.argmax(model.predict(x, batch_size=256, verbose=0), axis=1).astype(np.int64)


# ---------------------------------------------------------------- the run


def run_personalise(
    settings: PersonaliseSettings, dataset: Any, checkpoint: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Run the sweep and return the suite's section; ``checkpoint`` gets the section after every subject."""
    from edge_har.convert.evaluate import bundle_windows_grouped
    from edge_har.convert.personalise import fine_tune
    from edge_har.core.bundle import Bundle

    started = time.perf_counter()
    if not 0 < settings.pool_fraction < 1:
        raise PersonaliseBenchError(f"pool fraction must be in (0, 1), got {settings.pool_fraction}")
    if not settings.rehearse >= 0:
        raise PersonaliseBenchError(f"rehearse must be >= 0, got {settings.rehearse}")
    base_dir = settings.base
    if base_dir is None:
        base_dir = Path("bundles") / f"personalise-base-{dataset.name}"
    base_trained_s = None
    if not (base_dir / "bundle.json").is_file():
        t0 = time.perf_counter()
        train_base(settings, base_dir)
        base_trained_s = time.perf_counter() - t0
    bundle = Bundle.load(base_dir)
    where = str(base_dir / "bundle.json")
    test_subjects, trained = _bundle_test_subjects(bundle, dataset)
    subjects = list(settings.subjects or test_subjects)
    seen = [s for s in subjects if s in trained]
    if seen:
        raise PersonaliseBenchError(f"{where}: subject(s) {', '.join(seen)} were in the base model's training data")
    unknown = [s for s in subjects if s not in test_subjects]
    if unknown:
        raise PersonaliseBenchError(
            f"subject(s) {', '.join(unknown)} are not on the base model's test side ({', '.join(test_subjects)})"
        )
    if len(subjects) < 2:
        raise PersonaliseBenchError("the forgetting needs at least two test subjects")

    pre = bundle.preprocessing
    x_all, y_all, groups, _ = bundle_windows_grouped(bundle, dataset, "test")
    subject_of = np.asarray([dataset.recordings[int(g)].subject for g in groups], dtype=object)
    rate = float(pre.sample_rate_hz)
    for g in np.unique(groups):
        rec_rate = float(dataset.recordings[int(g)].sample_rate_hz or dataset.sample_rate_hz)
        if rec_rate != rate:
            raise PersonaliseBenchError(
                f"{dataset.recordings[int(g)].source}: {rec_rate:g} Hz, the model's {rate:g} Hz; "
                "the time split needs recordings at the model's rate"
            )
    sources = {int(g): dataset.recordings[int(g)].source for g in np.unique(groups)}
    lengths = {int(g): len(dataset.recordings[int(g)]) for g in np.unique(groups)}
    in_scope = np.isin(subject_of, subjects)
    labels = list(bundle.labels)
    n_classes = len(labels)

    model, model_config = load_keras(bundle)
    x_rehearse = y_rehearse = None
    if settings.rehearse > 0:
        x_rehearse, y_rehearse = training_windows(bundle, dataset)
    t0 = time.perf_counter()
    base_pred = np.full(len(y_all), -1, np.int64)
    base_pred[in_scope] = _predict(model, x_all[in_scope])
    base_predict_s = time.perf_counter() - t0

    int8_subject = settings.int8_subject or subjects[0]
    if settings.int8_minutes is not None and settings.int8_minutes not in settings.minutes:
        log.warning(
            "no int8 check: its budget (%g min) is not among the budgets (%s)",
            settings.int8_minutes,
            ", ".join(f"{m:g}" for m in settings.minutes),
        )
    if settings.int8_minutes is not None and int8_subject not in subjects:
        raise PersonaliseBenchError(f"--int8-subject {int8_subject}: not among the subjects ({', '.join(subjects)})")

    section = report.suite_header(SUITE, bundle)
    section.update(
        {
            "cpu": cpu_line(),
            "complete": False,
            "model": "float Keras (keras_model.h5 of the base bundle; fine-tuned copies), unless a row says int8",
            "data": {
                "path": str(Path(settings.data).resolve()),
                "name": dataset.name,
                "labels": labels,
                "window": pre.window,
                "stride": pre.stride,
                "sample_rate_hz": rate,
                "test_subjects": test_subjects,
                "subjects": subjects,
                "test_windows": int(in_scope.sum()),
            },
            "settings": {
                "minutes": list(settings.minutes),
                "pool_fraction": settings.pool_fraction,
                "train_layers": settings.train_layers,
                "epochs": settings.epochs,
                "learning_rate": settings.learning_rate,
                "batch_size": settings.batch_size,
                "seed": settings.seed,
                "rehearse": settings.rehearse,
                "class_weight": "balanced",
                "validation": "none: every epoch runs, the last weights are kept",
                "split": "per activity, the earlier segments (pool_fraction of them) are the adaptation pool, "
                "the later ones the evaluation part; whole segments, so no window is on both sides",
                "budget": "the first N minutes of the pool, shared equally across the subject's activities, an "
                "activity with less pool giving the rest to the others; windows lying wholly inside",
                "forgetting": "pooled accuracy on the other subjects' windows (all of them), base minus "
                "personalised, in points (positive: worse on everyone else)",
            },
            "base": {
                "path": str(Path(base_dir).resolve()),
                "model_id": bundle.model_id,
                "trained_here_s": None if base_trained_s is None else round(base_trained_s, 1),
                "training": {
                    k: (bundle.data.get("training") or {}).get(k)
                    for k in ("config", "epochs_run", "best_epoch", "seconds")
                },
                "test_accuracy_float": scores(y_all[in_scope], base_pred[in_scope], n_classes),
                "predict_s": round(base_predict_s, 2),
            },
            "subjects": [],
        }
    )

    for s_i, subject in enumerate(subjects):
        t_subject = time.perf_counter()
        mine = np.flatnonzero(subject_of == subject)
        others = np.flatnonzero(in_scope & (subject_of != subject))
        sw = split_subject(
            subject,
            x_all[mine],
            y_all[mine],
            groups[mine],
            sources,
            lengths,
            pre.window,
            pre.stride,
            rate,
            settings.pool_fraction,
        )
        ev = np.flatnonzero(sw.part == "eval")
        before = scores(sw.y[ev], base_pred[mine][ev], n_classes)
        others_before = scores(y_all[others], base_pred[others], n_classes)
        entry: dict[str, Any] = {
            "subject": subject,
            "windows": {p: int((sw.part == p).sum()) for p in ("pool", "eval", "gap")},
            "pool_minutes": round(sum(sw.pool_seconds.values()) / 60.0, 3),
            "eval_minutes": round(sum(sw.eval_seconds.values()) / 60.0, 3),
            "pool_seconds_per_class": {labels[c]: round(t, 1) for c, t in sorted(sw.pool_seconds.items())},
            "before": before,
            "others_before": others_before,
            "budgets": [],
        }
        previous: tuple[np.ndarray, dict[str, Any]] | None = None
        for minutes in settings.minutes:
            index, used = select_budget(sw, minutes)
            row: dict[str, Any] = {
                "minutes": minutes,
                "minutes_used": round(sum(used.values()) / 60.0, 3),
                "capped": sum(used.values()) < 60.0 * minutes - 1e-6,
                "windows": int(len(index)),
                "windows_per_class": {labels[c]: int((sw.y[index] == c).sum()) for c in range(n_classes)},
            }
            if len(index) == 0:
                row.update({"status": "no windows in this budget"})
                entry["budgets"].append(row)
                continue
            if previous is not None and np.array_equal(previous[0], index):
                # the pool ran out: the same windows give the same (seeded) model
                same = previous[1]
                row.update(
                    {k: same[k] for k in ("status", "after", "others_after", "gain_points", "forgetting_points")}
                )
                row.update({"same_as_minutes": same["minutes"], "fine_tune_s": 0.0, "epochs_run": same["epochs_run"]})
                entry["budgets"].append(row)
                continue
            t0 = time.perf_counter()
            history: dict[str, Any] = {}
            kwargs: dict[str, Any] = {"train_layers": settings.train_layers, "seed": settings.seed}
            for name in ("epochs", "learning_rate", "batch_size"):
                if getattr(settings, name) is not None:
                    kwargs[name] = getattr(settings, name)
            x_tune, y_tune = sw.x[index], sw.y[index]
            if x_rehearse is not None and y_rehearse is not None:
                k = min(len(x_rehearse), int(round(settings.rehearse * len(index))))
                pick = np.sort(np.random.default_rng(settings.seed).choice(len(x_rehearse), size=k, replace=False))
                x_tune = np.concatenate([x_tune, x_rehearse[pick]])
                y_tune = np.concatenate([y_tune, y_rehearse[pick]])
                row["rehearsal_windows"] = int(k)
            tuned = fine_tune(model, x_tune, y_tune, class_weight="balanced", history=history, **kwargs)
            tune_s = time.perf_counter() - t0
            after_eval = _predict(tuned, sw.x[ev])
            after_others = _predict(tuned, x_all[others])
            after = scores(sw.y[ev], after_eval, n_classes)
            others_after = scores(y_all[others], after_others, n_classes)
            row.update(
                {
                    "status": "ok",
                    "after": after,
                    "others_after": others_after,
                    "gain_points": _points(after["accuracy"], before["accuracy"]),
                    "forgetting_points": _points(others_before["accuracy"], others_after["accuracy"]),
                    "epochs_run": history.get("epochs_run"),
                    "fine_tune_s": round(tune_s, 2),
                    "evaluate_s": round(time.perf_counter() - t0 - tune_s, 2),
                }
            )
            if settings.int8_minutes is not None and subject == int8_subject and minutes == settings.int8_minutes:
                section["int8"] = int8_check(
                    bundle, tuned, model_config, sw, index, ev, x_all[others], y_all[others], n_classes,
                    float_figures={"before": before, "after": after, "others_before": others_before,
                                   "others_after": others_after},
                    minutes=minutes, seed=settings.seed,
                )  # fmt: skip
            entry["budgets"].append(row)
            previous = (index, row)
            log.info(
                "%s, %g min (%d windows): accuracy %.3f -> %.3f, others %.3f -> %.3f (%.1f s)",
                subject,
                minutes,
                len(index),
                before["accuracy"] or 0.0,
                after["accuracy"] or 0.0,
                others_before["accuracy"] or 0.0,
                others_after["accuracy"] or 0.0,
                tune_s,
            )
        entry["seconds"] = round(time.perf_counter() - t_subject, 1)
        section["subjects"].append(entry)
        section["summary"] = summarise(section)
        report.finish_section(section, started)
        if checkpoint is not None:
            checkpoint(section)
        log.info("subject %s done (%d of %d), %.0f s", subject, s_i + 1, len(subjects), entry["seconds"])
    section["complete"] = True
    section["summary"] = summarise(section)
    return report.finish_section(section, started)


def int8_check(
    bundle: Any,
    tuned: Any,
    model_config: Any,
    sw: SubjectWindows,
    adapt: np.ndarray,
    ev: np.ndarray,
    x_others: np.ndarray,
    y_others: np.ndarray,
    n_classes: int,
    *,
    float_figures: Mapping[str, Any],
    minutes: float,
    seed: int,
) -> dict[str, Any]:
    """The base bundle's int8 and the personalised model quantized to int8, through the device's interpreter.

    The personalised model is calibrated as ``convert`` calibrates, on stratified windows of
    data it was trained for: the subject's adaptation pool (up to convert's calibration size).
    The base model's int8 is the bundle's own variant, calibrated on its training windows.
    """
    from edge_har.convert.models import static_batch_copy
    from edge_har.convert.quantize import (
        DEFAULT_CALIBRATION_SIZE,
        VARIANTS,
        calibration_windows,
        convert_variants,
    )
    from edge_har.core.interpreter import TFLiteModel

    t0 = time.perf_counter()
    base_int8 = bundle.load_model("int8", num_threads=1)
    pool = np.flatnonzero(sw.part == "pool")
    size = min(DEFAULT_CALIBRATION_SIZE, len(pool))
    calibration = calibration_windows(sw.x[pool], sw.y[pool], size, seed)
    static = static_batch_copy(tuned, model_config)
    (converted,) = convert_variants(static, [VARIANTS["int8"]], calibration)
    with tempfile.TemporaryDirectory(prefix="edge-har-personalise-") as tmp:
        path = Path(tmp) / "personalised-int8.tflite"
        path.write_bytes(converted.content)
        tuned_int8 = TFLiteModel(path, num_threads=1)

        def run(m: Any, x: np.ndarray) -> np.ndarray:
            return np.argmax(m.predict_batch(x), axis=1).astype(np.int64) if len(x) else np.empty(0, np.int64)

        figures = {
            "before": scores(sw.y[ev], run(base_int8, sw.x[ev]), n_classes),
            "after": scores(sw.y[ev], run(tuned_int8, sw.x[ev]), n_classes),
            "others_before": scores(y_others, run(base_int8, x_others), n_classes),
            "others_after": scores(y_others, run(tuned_int8, x_others), n_classes),
        }
        backend = tuned_int8.backend.name
    rows = []
    for key in ("before", "after", "others_before", "others_after"):
        f, q = float_figures[key], figures[key]
        rows.append(
            {
                "figure": key,
                "float_accuracy": f["accuracy"],
                "int8_accuracy": q["accuracy"],
                "int8_minus_float_points": _points(q["accuracy"], f["accuracy"]),
                "float_macro_f1": f["macro_f1"],
                "int8_macro_f1": q["macro_f1"],
                "windows": q["windows"],
            }
        )
    return {
        "subject": sw.subject,
        "minutes": minutes,
        "adaptation_windows": int(len(adapt)),
        "calibration": f"{size} windows of the subject's adaptation pool, stratified by class (seed {seed})",
        "interpreter": f"edge_har.core.interpreter.TFLiteModel, backend {backend}, 1 thread",
        "base_variant": "the base bundle's int8 variant",
        "rows": rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }


# ---------------------------------------------------------------- summary, tables, plot


def summarise(section: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Mean, std, min and max over the subjects, per budget."""
    rows = []
    for minutes in section["settings"]["minutes"]:
        per = [(s, b) for s in section["subjects"] for b in s["budgets"] if b["minutes"] == minutes and b.get("after")]
        rows.append(
            {
                "minutes": minutes,
                "subjects": len(per),
                "minutes_used": spread([b["minutes_used"] for _, b in per]),
                "capped_subjects": sum(1 for _, b in per if b["capped"]),
                "windows": spread([b["windows"] for _, b in per]),
                "before_accuracy": spread([s["before"]["accuracy"] for s, _ in per]),
                "after_accuracy": spread([b["after"]["accuracy"] for _, b in per]),
                "gain_points": spread([b["gain_points"] for _, b in per]),
                "before_macro_f1": spread([s["before"]["macro_f1"] for s, _ in per]),
                "after_macro_f1": spread([b["after"]["macro_f1"] for _, b in per]),
                "others_before_accuracy": spread([s["others_before"]["accuracy"] for s, _ in per]),
                "others_after_accuracy": spread([b["others_after"]["accuracy"] for _, b in per]),
                "forgetting_points": spread([b["forgetting_points"] for _, b in per]),
            }
        )
    return rows


def _pct(stat: Mapping[str, Any]) -> str:
    if stat.get("mean") is None:
        return "-"
    return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f} ({100 * stat['min']:.1f}-{100 * stat['max']:.1f})"


def _pts(stat: Mapping[str, Any]) -> str:
    if stat.get("mean") is None:
        return "-"
    return f"{stat['mean']:+.1f} ± {stat['std']:.1f} ({stat['min']:+.1f}..{stat['max']:+.1f})"


def summary_table(section: Mapping[str, Any]) -> str:
    headers = [
        "minutes",
        "used (mean, min-max)",
        "subjects",
        "accuracy before %",
        "accuracy after %",
        "gain (points)",
        "macro-F1 before %",
        "macro-F1 after %",
        "others' accuracy after %",
        "forgetting (points)",
    ]
    rows = []
    for r in section.get("summary") or []:
        used = r["minutes_used"]
        rows.append(
            [
                f"{r['minutes']:g}",
                "-" if used["mean"] is None else f"{used['mean']:.2f} ({used['min']:.2f}-{used['max']:.2f})",
                r["subjects"],
                _pct(r["before_accuracy"]),
                _pct(r["after_accuracy"]),
                _pts(r["gain_points"]),
                _pct(r["before_macro_f1"]),
                _pct(r["after_macro_f1"]),
                _pct(r["others_after_accuracy"]),
                _pts(r["forgetting_points"]),
            ]
        )
    return report.format_table(headers, rows, title="Personalisation, mean ± std (min-max) over the subjects")


def subject_table(section: Mapping[str, Any]) -> str:
    minutes = section["settings"]["minutes"]
    headers = ["subject", "pool min", "eval min", "before %"] + [f"{m:g} min %" for m in minutes]
    headers += [f"forgetting {m:g} min" for m in minutes]
    rows = []
    for s in section["subjects"]:
        by = {b["minutes"]: b for b in s["budgets"]}
        after = ["-" if not by.get(m, {}).get("after") else f"{100 * by[m]['after']['accuracy']:.1f}" for m in minutes]
        forget = [
            "-" if by.get(m, {}).get("forgetting_points") is None else f"{by[m]['forgetting_points']:+.1f}"
            for m in minutes
        ]
        rows.append(
            [
                s["subject"],
                f"{s['pool_minutes']:.2f}",
                f"{s['eval_minutes']:.2f}",
                f"{100 * s['before']['accuracy']:.1f}",
            ]
            + after
            + forget
        )
    return report.format_table(
        headers, rows, title="Per subject: accuracy on its evaluation part, forgetting in points"
    )


def int8_table(section: Mapping[str, Any]) -> str:
    q = section.get("int8")
    if not q:
        return ""
    rows = [
        [
            r["figure"],
            r["windows"],
            "-" if r["float_accuracy"] is None else f"{100 * r['float_accuracy']:.2f}",
            "-" if r["int8_accuracy"] is None else f"{100 * r['int8_accuracy']:.2f}",
            "-" if r["int8_minus_float_points"] is None else f"{r['int8_minus_float_points']:+.2f}",
        ]
        for r in q["rows"]
    ]
    return report.format_table(
        ["figure", "windows", "float Keras %", "int8 TFLite %", "int8 - float (points)"],
        rows,
        title=f"int8 through the device interpreter: subject {q['subject']}, {q['minutes']:g} min ({q['interpreter']})",
    )


def format_personalise(section: Mapping[str, Any]) -> str:
    base = section["base"]
    acc = base["test_accuracy_float"]["accuracy"]
    parts = [
        report.context_lines(section),
        f"base model {base['model_id']}: float accuracy {100 * acc:.2f}% on all "
        f"{base['test_accuracy_float']['windows']} test windows of the subjects; figures are the float Keras "
        "model's unless a row says int8",
        summary_table(section),
        subject_table(section),
    ]
    if section.get("int8"):
        parts.append(int8_table(section))
    if not section.get("complete"):
        parts.append(f"PARTIAL: {len(section['subjects'])} of {len(section['data']['subjects'])} subjects")
    return "\n\n".join(p for p in parts if p)


def personalise_png(section: Mapping[str, Any], path: str | Path) -> Path | None:
    """Accuracy on the subject's evaluation part against minutes (before, after with min-max), and the forgetting."""
    rows = [r for r in section.get("summary") or [] if r["subjects"]]
    if not rows:
        return None
    plt = report._pyplot()
    minutes = [r["minutes"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))

    def line(ax: Any, key: str, label: str, color: str, scale: float = 100.0, band: bool = True) -> None:
        mean = [scale * r[key]["mean"] for r in rows]
        ax.plot(minutes, mean, "o-", color=color, label=label)
        if band:
            lo = [scale * r[key]["min"] for r in rows]
            hi = [scale * r[key]["max"] for r in rows]
            ax.fill_between(minutes, lo, hi, color=color, alpha=0.18, label="min-max over the subjects")

    before = section["summary"][0]["before_accuracy"]
    left.axhline(100 * before["mean"], color="grey", ls="--", label="before (base model), mean")
    left.axhspan(100 * before["min"], 100 * before["max"], color="grey", alpha=0.08, label="before: min-max")
    line(left, "after_accuracy", "after fine-tuning, mean", "tab:blue")
    for r in rows:
        if r["capped_subjects"]:  # the pool ran out: fewer minutes than the budget were there to use
            used = r["minutes_used"]
            left.annotate(
                f"pool ran out:\n{used['min']:.1f}-{used['max']:.1f} min used",
                (r["minutes"], 100 * r["after_accuracy"]["mean"]),
                textcoords="offset points",
                xytext=(-4, -80),
                ha="right",
                fontsize=7,
            )
    left.set_xlabel("minutes of the subject's labelled data (budget)")
    left.set_ylabel("accuracy on the subject's held-out part (%)")
    left.set_title(f"Personalisation ({section['settings']['train_layers']} layers, float Keras)")
    left.legend(fontsize=8, loc="lower right")
    left.grid(alpha=0.3)

    line(right, "forgetting_points", "forgetting, mean", "tab:red", scale=1.0)
    right.axhline(0.0, color="grey", lw=0.8)
    right.set_xlabel("minutes of the subject's labelled data (budget)")
    right.set_ylabel("others' accuracy: base - personalised (points)")
    right.set_title("Forgetting on the other test subjects")
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    n = max(r["subjects"] for r in rows)
    fig.suptitle(f"{section['data']['name']}: {n} unseen subjects, {section['base']['model_id']}", fontsize=9)
    fig.tight_layout()
    return report.save_figure(fig, path)


def _epochs(section: Mapping[str, Any]) -> str:
    given = section["settings"].get("epochs")
    if given:
        return str(given)
    run = sorted({b["epochs_run"] for s in section["subjects"] for b in s["budgets"] if b.get("epochs_run")})
    return f"{', '.join(map(str, run)) or '?'} (fine_tune's default)"


def markdown(section: Mapping[str, Any]) -> str:
    """The kept summary: what was run, on what, the tables."""
    m = section.get("machine") or {}
    base = section["base"]
    training = base.get("training") or {}
    lines = [
        f"# Personalisation on {section['data']['name']}",
        "",
        f"- command: `{section.get('command')}`",
        f"- date {section.get('date')}, commit {((section.get('git') or {}).get('commit') or '?')[:10]}, "
        f"{section.get('seconds')} s wall{' (noisy: load above half the cores)' if section.get('noisy') else ''}",
        f"- {section.get('cpu') or 'CPU: ' + str(m.get('cpu_model'))}; {m.get('cores_logical')} logical cores",
        f"- base model `{base['model_id']}` (training: {training.get('epochs_run')} epochs, best "
        f"{training.get('best_epoch')}, {training.get('seconds')} s), float accuracy "
        f"{100 * base['test_accuracy_float']['accuracy']:.2f}% on the subjects' {base['test_accuracy_float']['windows']} "
        "windows"
        + ("" if base.get("trained_here_s") is None else f"; trained by this run in {base['trained_here_s']} s"),
        f"- windows of {section['data']['window']} samples, stride {section['data']['stride']}, at "
        f"{section['data']['sample_rate_hz']:g} Hz; classes {', '.join(section['data']['labels'])}",
        f"- fine-tuning: train_layers={section['settings']['train_layers']}, epochs {_epochs(section)}, "
        f"seed {section['settings']['seed']}, no validation (every epoch runs), rehearsal "
        f"{section['settings'].get('rehearse') or 0:g}; figures are the float Keras models'"
        + (" (int8 below for one subject)" if section.get("int8") else ""),
        "",
        summary_table(section),
        "",
        subject_table(section),
        "",
    ]
    if section.get("int8"):
        lines += [int8_table(section), ""]
    if not section.get("complete"):
        lines.append(f"PARTIAL: {len(section['subjects'])} of {len(section['data']['subjects'])} subjects")
    return "\n".join(lines)


# ---------------------------------------------------------------- command line


def flags(p: Any) -> None:
    """``edge-har bench personalise``'s own flags (the data set's come from the format registry)."""
    from edge_har.benchmarks.cli import _add_data, _name_list, _positive_int

    _add_data(
        p,
        required=True,
        help_text="the data set: one base model is trained on its training subjects, each test subject is "
        "personalised in turn (UCI HAPT: ../shared/data/hapt; its six basic activities unless --classes)",
    )
    p.add_argument(
        "--base",
        type=Path,
        default=None,
        metavar="BUNDLE",
        help="the base model's bundle: used when it holds bundle.json, otherwise trained there first with "
        "convert's pipeline (default: bundles/personalise-base-<data set name>)",
    )
    p.add_argument(
        "--minutes",
        type=_float_list,
        default=list(DEFAULT_MINUTES),
        metavar="M,M",
        help="budgets: minutes of each subject's labelled adaptation data",
    )
    p.add_argument(
        "--subjects", type=_name_list, default=None, metavar="ID,ID", help="test subjects (default: the test side)"
    )
    p.add_argument(
        "--pool-fraction",
        type=float,
        default=DEFAULT_POOL_FRACTION,
        help="share of each activity's segments (the earlier ones) in the adaptation pool",
    )
    p.add_argument("--train-layers", default="head", help="what fine-tunes: head, lstm, dense or all")
    p.add_argument("--epochs", type=_positive_int, default=None, help="fine-tuning epochs (default: fine_tune's)")
    p.add_argument("--learning-rate", type=float, default=None, help="fine-tuning learning rate (default: fine_tune's)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the base training and the fine-tuning")
    p.add_argument(
        "--rehearse",
        type=float,
        default=0.0,
        metavar="R",
        help="mix R of the base model's training windows per adaptation window into fine-tuning, as convert "
        "--from-bundle --rehearse does (0: the subject's windows alone)",
    )
    p.add_argument("--int8-subject", default=None, metavar="ID", help="subject of the int8 check (default: the first)")
    p.add_argument(
        "--int8-minutes",
        type=float,
        default=DEFAULT_INT8_MINUTES,
        metavar="M",
        help="budget of the int8 check; 0 for none",
    )
    p.add_argument("--base-epochs", type=_positive_int, default=DEFAULT_BASE_EPOCHS, help="base training's epoch cap")
    p.add_argument(
        "--base-patience", type=_positive_int, default=DEFAULT_BASE_PATIENCE, help="base training's early-stop patience"
    )


def _float_list(text: str) -> list[float]:
    import argparse

    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated minutes such as 1,2,5,10; got {text!r}") from None
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"minutes must be > 0; got {text!r}")
    return sorted(dict.fromkeys(values))


def run_command(args: Any) -> int:
    from edge_har.benchmarks.cli import _finish, _load_dataset, _plot
    from edge_har.convert.evaluate import given_data_flags
    from edge_har.core.errors import CommandError
    from edge_har.core.formats import detect_format
    from edge_har.core.formats.hapt import HAPT_BASIC, HAPT_NAME

    try:
        if getattr(args, "classes", None) is None and detect_format(args.data) == HAPT_NAME:
            args.classes = HAPT_BASIC
    except (OSError, ValueError) as exc:
        raise CommandError(f"--data {args.data}: {exc}") from exc
    dataset = _load_dataset(args)
    from edge_har.core.formats.cli import dataset_options

    settings = PersonaliseSettings(
        data=args.data,
        dataset_options=dataset_options(args),
        base=args.base,
        subjects=tuple(args.subjects) if args.subjects else None,
        minutes=tuple(args.minutes),
        pool_fraction=args.pool_fraction,
        train_layers=args.train_layers,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        seed=args.seed,
        rehearse=args.rehearse,
        int8_subject=args.int8_subject,
        int8_minutes=args.int8_minutes or None,
        base_epochs=args.base_epochs,
        base_patience=args.base_patience,
        data_flags=given_data_flags(args, dataset),
        progress=not args.no_progress,
    )
    out: Path = args.out
    json_path = args.json or out / report.RESULTS_FILE

    def checkpoint(section: dict[str, Any]) -> None:
        write_outputs(section, out, json_path)

    try:
        section = run_personalise(settings, dataset, checkpoint)
    except PersonaliseBenchError as exc:
        raise CommandError(str(exc)) from exc
    _plot(section, SUITE, lambda path: personalise_png(section, path), out / PLOT_FILE)
    (out / MARKDOWN_FILE).write_text(markdown(section) + "\n")
    _finish(args, section, SUITE, format_personalise(section))
    return 0


def write_outputs(section: dict[str, Any], out: Path, json_path: Path) -> None:
    """JSON section, plot and Markdown as they stand (after each subject; a partial sweep keeps them)."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        png = personalise_png(section, out / PLOT_FILE)
        if png:
            section.setdefault("plots", {})[SUITE] = str(png)
    except Exception as exc:  # noqa: BLE001 - a missing matplotlib must not lose the figures
        log.warning("personalise plot not drawn: %s", exc)
    (out / MARKDOWN_FILE).write_text(markdown(section) + "\n")
    report.write_section(json_path, section)


def suite() -> Any:
    """This suite's row of ``edge_har.benchmarks.cli.SUITES``."""
    from edge_har.benchmarks.cli import Suite

    return Suite(
        SUITE,
        help="personalisation: fine-tune a base model on 1-10 minutes of each unseen subject's data; accuracy "
        "before/after and the forgetting on the other subjects",
        description=(
            "Train (or reuse, --base) one base model on the data set's training subjects with convert's pipeline; "
            "for every test subject split its segments by time into an adaptation pool and an evaluation part, "
            "fine-tune copies of the base model (edge_har.convert.personalise.fine_tune) on the first --minutes of "
            "the pool, balanced across the subject's activities, and report accuracy and macro-F1 on the "
            "evaluation part before and after, and the forgetting: the other test subjects' accuracy with the "
            "base model minus with the personalised one. Float Keras figures; for one subject and budget also "
            "the int8 models through the device interpreter. Writes results.json, personalise.png and "
            "personalise.md after every subject. See benchmarks/personalise.py.\n\nexample:\n"
            "  edge-har bench personalise --data ../shared/data/hapt --out benchmarks/results/personalise"
        ),
        formatter_class=_formatter(),
        flags=flags,
        run=run_command,
        shared="output",
    )


def _formatter() -> Any:
    import argparse

    class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    return Formatter


__all__ = [
    "PersonaliseBenchError",
    "PersonaliseSettings",
    "SubjectWindows",
    "class_quotas",
    "format_personalise",
    "markdown",
    "personalise_png",
    "run_personalise",
    "select_budget",
    "split_subject",
    "suite",
    "summarise",
]
