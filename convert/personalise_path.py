"""``edge-har convert --from-bundle BUNDLE --data MY_SET``: a bundle fine-tuned on a user's own recordings.

The parent bundle's kept float Keras model (what ``--from-keras`` re-quantizes) is
fine-tuned on the user's data (:func:`edge_har.convert.personalise.fine_tune`) and
then goes through the same skeleton as every conversion: quantize, evaluate each
variant with the device's interpreter, the int8 / degenerate gate, the atomic
publish. :class:`PersonalisePath` is ``--from-keras``'s :class:`RequantizePath`
with the training step put back.

The user's data is read as it comes, then windowed, scaled and normalised with
the *parent's* preprocessing (the device keeps feeding the new model exactly as
it fed the old one); channels are matched by name, labels mapped onto the
parent's (``--add-classes`` appends the ones it lacks). Whole recordings (the
recorded format's sessions' segments) are held out, never single windows. The
report compares the parent and the new bundle, same variant, through the
interpreter: on the user's held-out windows (what was gained) and on the parent's
own test split (what was forgotten), the latter read with the parent's reader
record, or skipped with the reason when that data cannot be found.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from edge_har.convert.pipeline import (
    ConvertError,
    ConvertOptions,
    RequantizePath,
    SensorPath,
    Windows,
    _recording_indices,
    load_source_document,
    split_windows,
)
from edge_har.convert.skeleton import Trained, model_id, run_skeleton, stage
from edge_har.core.preprocessing import Preprocessing, normalise

log = logging.getLogger(__name__)

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
KIND = "cnn-lstm-personalised"
# Measured on HAPT (parent: the six basic activities; user: test subject s10's 3 sessions, 20 epochs of the
# head at lr 1e-3): the parent's test accuracy 93.7% fell to 87.7% fine-tuned on s10 alone, and stayed at
# 94.1% with as many of the parent's training windows mixed in (95.0% with twice as many, 10 epochs).
DEFAULT_REHEARSE = 1.0


@dataclass(frozen=True)
class PersonaliseOptions:
    """What ``--from-bundle`` adds to a conversion's options."""

    train_layers: str = "head"
    add_classes: bool = False
    original_data: Path | None = None  # None: the parent's recorded data set (skipped when it is absent)
    calibration_size_given: bool = False  # False: a smaller pool than --calibration-size is used whole
    # Original training windows mixed into fine-tuning per user training window (rehearsal, against
    # forgetting); 0: the user's windows alone. Needs the parent's data (else skipped, said in the report).
    rehearse: float = DEFAULT_REHEARSE


# ---------------------------------------------------------------- checks of the user's data


def parent_preprocessing(document: Mapping[str, Any], where: str) -> Preprocessing:
    return Preprocessing.from_json(document["preprocessing"], where=f"{where}: preprocessing")


def match_channels(dataset: Any, pre: Preprocessing, where: str) -> Any:
    """The data set with its channels in the bundle's order (by name); a one-line error when any is missing.

    Same names in another order, or more channels than the model reads, are
    fine: the columns are picked and reordered (and said so in the log).
    """
    have = list(dataset.channels)
    want = list(pre.channels)
    if have == want:
        return dataset
    missing = [c for c in want if c not in have]
    if missing:
        raise ConvertError(
            f"{where}: the data's channels {have} do not match the bundle's {want} by name "
            f"(missing {', '.join(missing)}); name them with --channels {','.join(want)}"
        )
    order = [have.index(c) for c in want]
    log.info("%s: channels %s read as the bundle's %s", where, have, want)

    def pick(values: Sequence[float]) -> tuple[float, ...]:
        values = tuple(float(v) for v in np.atleast_1d(values))
        return values if len(values) == 1 else tuple(values[i] for i in order)

    recordings = [replace(r, samples=np.ascontiguousarray(np.asarray(r.samples)[:, order])) for r in dataset.recordings]
    return replace(
        dataset, recordings=recordings, channels=tuple(want), scale=pick(dataset.scale), offset=pick(dataset.offset)
    )


def map_labels(
    data_labels: Sequence[str], parent_labels: Sequence[str], add_classes: bool, where: str, bundle: str
) -> tuple[list[str], np.ndarray]:
    """(the new bundle's labels, data label index -> new label index); unknown labels need ``add_classes``."""
    labels = list(parent_labels)
    unknown = [label for label in data_labels if label not in labels]
    if unknown and not add_classes:
        raise ConvertError(
            f"{where}: label(s) {', '.join(repr(u) for u in unknown)} not among the classes of {bundle} "
            f"({', '.join(labels)}); pass --add-classes to append them, or --label-map / --classes to map or drop them"
        )
    labels += unknown
    return labels, np.asarray([labels.index(label) for label in data_labels], dtype=np.int64)


def check_scaling(dataset: Any, pre: Preprocessing, where: str) -> Preprocessing:
    """The preprocessing that turns this data's raw values into the bundle's physical units.

    The bundle's own, unless the data declares its own scaling (not the identity)
    that differs: then the data's ``raw * scale + offset`` is what is physical, and
    only windowing and normalisation stay the bundle's.
    """
    scale = tuple(float(v) for v in np.atleast_1d(dataset.scale))
    offset = tuple(float(v) for v in np.atleast_1d(dataset.offset))
    identity = all(v == 1.0 for v in scale) and all(v == 0.0 for v in offset)
    if identity or (scale, offset) == (tuple(pre.scale), tuple(pre.offset)):
        return pre
    if dataset.units and pre.units and dataset.units != pre.units:
        raise ConvertError(f"{where}: the data is scaled to {dataset.units!r}, the bundle's model reads {pre.units!r}")
    log.info(
        "%s: raw values scaled with the data's own scale %s / offset %s (the bundle's: %s / %s)",
        where,
        list(scale),
        list(offset),
        list(pre.scale),
        list(pre.offset),
    )
    return replace(pre, scale=scale, offset=offset)


def check_user_data(dataset: Any, document: Mapping[str, Any], add_classes: bool, bundle: str) -> Any:
    """Channels and labels of the user's data against the parent bundle, before anything is split or trained."""
    where = str(getattr(dataset, "path", None) or dataset.root)
    dataset = match_channels(dataset, parent_preprocessing(document, bundle), where)
    map_labels(dataset.labels, document["labels"], add_classes, where, bundle)
    return dataset


# ---------------------------------------------------------------- the parent's own data


@dataclass
class OriginalData:
    """The parent's test windows (the forgetting check) and training windows (calibration), or why not."""

    path: str | None = None
    test: Windows | None = None
    train: Windows | None = None
    skipped: str | None = None


def load_original(
    document: Mapping[str, Any], pre: Preprocessing, given: Path | None, bundle: str, timings: dict[str, float]
) -> OriginalData:
    """The parent's data set, read with its reader record; with ``given`` (--original-data) a failure is an error.

    Without ``given`` the recorded path is tried and anything missing becomes
    ``skipped: <reason>`` in the report: the new bundle does not depend on it.
    """
    from edge_har.convert.datasets import make_window_set
    from edge_har.convert.evaluate import check_channels, label_indices, recorded_data_flags
    from edge_har.core.formats import load_dataset
    from edge_har.core.formats.registry import load_recorded

    info = ((document.get("provenance") or {}).get("dataset")) or {}
    recorded_path, flags = recorded_data_flags(document)
    path = str(given) if given is not None else recorded_path
    if not path:
        return OriginalData(skipped="the parent bundle records no data set path; give --original-data PATH")
    split = (document.get("metrics") or {}).get("split") or {}
    try:
        if not split.get("test_sources_relative"):
            raise ConvertError(f"{bundle}: metrics.split.test_sources_relative is missing; its test split is unknown")
        if not Path(path).exists():
            raise ConvertError(f"{path}: no such file or folder (the parent's data set; give --original-data PATH)")
        with stage("original data", timings):
            reader = info.get("reader")
            if reader:
                dataset = load_recorded(path, reader)
            else:
                flags = dict(flags)
                fmt = str(flags.pop("format", "auto"))
                dataset = load_dataset(path, format=fmt, **flags)
            check_channels(dataset, pre, path)
            remap = label_indices(dataset.labels, document["labels"], path)
            sides: dict[str, Windows | None] = {"test": None, "train": None}
            for side in ("test", "train"):
                wanted = split.get(f"{side}_sources_relative")
                if not wanted:
                    continue
                indices = _recording_indices(dataset, wanted, side, bundle)
                ws = make_window_set(dataset, pre, recording_indices=indices, skip_short=True)
                x = normalise(np.asarray(ws.x, np.float32), pre)
                sides[side] = Windows(x, remap[np.asarray(ws.y, np.int64)], len(indices))
    except _original_errors() as exc:
        if given is not None:
            raise ConvertError(f"--original-data {given}: {exc}") from exc
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.warning("the parent's test set is not evaluated: %s", reason)
        return OriginalData(path=path, skipped=reason)
    return OriginalData(path=path, test=sides["test"], train=sides["train"])


@contextlib.contextmanager
def _quiet_empty_validation(empty: bool) -> Iterator[None]:
    """Leave out split_windows' "the val split has no windows of ..." when no validation was asked for."""

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("the val split has no windows")

    logger = logging.getLogger("edge_har.convert.pipeline")
    if empty:
        logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def _original_errors() -> tuple[type[BaseException], ...]:
    """What reading the parent's data can raise for a reason worth a line in the report."""
    from edge_har.convert.evaluate import EvaluationError
    from edge_har.core.formats import DatasetError
    from edge_har.core.preprocessing import PreprocessingError
    from edge_har.core.recordings import RecordingError

    return (ConvertError, EvaluationError, DatasetError, PreprocessingError, RecordingError, OSError, ValueError)


def _summary(report: Mapping[str, Any]) -> dict[str, Any]:
    return {"accuracy": round(float(report["accuracy"]), 4), "macro_f1": round(float(report["macro_f1"]), 4)}


# ---------------------------------------------------------------- the conversion path


class PersonalisePath(RequantizePath):
    """``--from-keras``'s path with a fine-tuning step: the parent's Keras model, trained on the user's windows.

    The sets are the user's: ``train`` (fine-tuning, calibration), ``val`` (early
    stopping, when ``--val-fraction`` asks for it) and ``test`` (the held-out
    recordings every variant is evaluated and gated on).
    """

    what = "personalisation"

    def __init__(
        self,
        options: ConvertOptions,
        dataset: Any,
        split: Any,
        source: Path,
        document: dict[str, Any],
        keras_file: Path,
        personal: PersonaliseOptions,
    ) -> None:
        super().__init__(options, dataset, source, document, keras_file)
        self.split = split
        self.personal = personal
        self.where = str(source)
        self.parent_labels = list(document["labels"])
        self.model_info: dict[str, Any] = {}
        self.after_original: Any = None
        self.staged: Path | None = None
        self.specs: Sequence[Any] = ()

    # -- data

    def prepare(self, specs: Sequence[Any], timings: dict[str, float]) -> None:
        from edge_har.convert.quantize import calibration_windows
        from edge_har.core.formats.windows import log_resampling

        self.specs = specs
        options = self.options
        where = str(getattr(self.dataset, "path", None) or self.dataset.root)
        parent_pre = parent_preprocessing(self.source_doc, self.where)
        self.dataset = dataset = match_channels(self.dataset, parent_pre, where)
        self.labels, remap = map_labels(
            dataset.labels, self.parent_labels, self.personal.add_classes, where, self.where
        )
        self.pre = parent_pre  # what the new bundle records: the device keeps feeding it as before
        read_pre = check_scaling(dataset, parent_pre, where)
        log.info(
            "personalising %s on %s: %d recordings, classes %s; split %d train / %d validation / %d held out",
            self.source_doc.get("model_id"),
            dataset.name,
            len(dataset.recordings),
            ", ".join(dataset.labels),
            len(self.split.train),
            len(self.split.val),
            len(self.split.test),
        )
        with stage("windows", timings):
            log_resampling(dataset, read_pre.sample_rate_hz)
            train_stride = None
            if options.train_stride is not None:
                from edge_har.convert.pipeline import _duration

                train_stride = _duration(options.train_stride, read_pre.sample_rate_hz, "train-stride")
            with _quiet_empty_validation(len(self.split.val) == 0):
                sets = split_windows(dataset, self.split, read_pre, options.skip_short, train_stride)
            for w in sets.values():
                w.x = normalise(w.x, parent_pre)
                w.y = remap[w.y]
            self.sets = sets
        self.original = load_original(self.source_doc, parent_pre, self.personal.original_data, self.where, timings)
        if any(s.needs_calibration for s in specs):
            pool_x, pool_y = [sets["train"].x], [sets["train"].y]
            if self.original.train is not None:
                pool_x.append(self.original.train.x)
                pool_y.append(self.original.train.y)
            x, y = np.concatenate(pool_x), np.concatenate(pool_y)
            size = options.calibration_size
            if len(x) < size and not self.personal.calibration_size_given:
                log.info("calibrating on all %d windows (fewer than the %d asked by default)", len(x), size)
                size = len(x)
            self.calibration = calibration_windows(x, y, size, options.train.seed)
            self.calibration_sources = {
                "user_training_windows": int(len(sets["train"].x)),
                "original_training_windows": 0 if self.original.train is None else int(len(self.original.train.x)),
            }
        log.info(
            "windows: %d train / %d validation / %d held out%s",
            len(sets["train"].x),
            len(sets["val"].x),
            len(sets["test"].x),
            "" if self.original.test is None else f"; the parent's test split: {len(self.original.test.x)}",
        )

    # -- training

    def train(self, work: Path) -> Trained:
        from edge_har.convert.models import build_from_config
        from edge_har.convert.personalise import add_classes, fine_tune
        from edge_har.convert.train import StrategyInfo, TrainResult, balanced_class_weights

        work.mkdir(parents=True, exist_ok=True)
        pre, config = self.pre, self.options.train
        parent = build_from_config(self.model_config, (pre.window, pre.n_channels), len(self.parent_labels))
        parent.load_weights(str(self.keras_file))
        added = self.labels[len(self.parent_labels) :]
        model = add_classes(parent, len(added), seed=config.seed) if added else parent
        train, val = self.sets["train"], self.sets["val"]
        x, y, rehearsal = self.rehearsal_windows(train, config.seed)
        weights = balanced_class_weights(y, len(self.labels)) if config.class_weights else None
        history: dict[str, Any] = {}
        started = time.perf_counter()
        self.model = fine_tune(
            model,
            x,
            y,
            train_layers=self.personal.train_layers,
            epochs=config.epochs,
            learning_rate=config.learning_rate,
            batch_size=config.batch_size or 32,
            x_val=val.x,
            y_val=val.y,
            seed=config.seed,
            class_weight=weights,
            patience=config.patience,
            history=history,
        )
        seconds = time.perf_counter() - started
        curves = {k: v for k, v in history.items() if isinstance(v, list) and all(isinstance(x, float) for x in v)}
        history_file = work / "history.json"
        history_file.write_text(json.dumps(history, indent=2))
        curves_file: Path | None
        try:
            from edge_har.convert.plots import training_curves_png

            curves_file = training_curves_png(
                curves, work / "training_curves.png", title=f"fine-tuning ({self.personal.train_layers})"
            )
        except Exception as exc:  # a missing matplotlib must not lose a fine-tuned model
            log.warning("training curves not plotted: %s", exc)
            curves_file = None
        log.info(
            "fine-tuned %s for %d epochs in %.1f s (best epoch %d)",
            ", ".join(history["trained_layers"]),
            history["epochs_run"],
            seconds,
            history["best_epoch"],
        )
        self.fine_tune_record = {
            "train_layers": self.personal.train_layers,
            "trained_layers": history["trained_layers"],
            "epochs_run": history["epochs_run"],
            "best_epoch": history["best_epoch"],
            "learning_rate": config.learning_rate,
            "seconds": round(seconds, 2),
            "rehearsal": rehearsal,
        }
        result = TrainResult(
            model=self.model,
            history=curves,
            epochs_run=history["epochs_run"],
            best_epoch=history["best_epoch"],
            seconds=seconds,
            strategy=StrategyInfo("default", ("keras default device",), 1, False, True),
            class_weights=weights,
            history_file=history_file,
            curves_file=curves_file,
        )
        self.model_info = {
            "model": self.model_config.to_json(),
            "personalised_from": str(self.source_doc.get("model_id")),
        }
        return Trained(result, self.model_info)

    def rehearsal_windows(self, train: Windows, seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """The user's training windows plus ``rehearse`` times as many of the parent's (drawn with ``seed``)."""
        ratio = self.personal.rehearse
        original = self.original.train
        if ratio <= 0:
            return train.x, train.y, {"ratio": 0.0, "original_windows": 0}
        if original is None or len(original.x) == 0:
            reason = self.original.skipped or "the parent records no training recordings"
            log.warning("fine-tuning on the user's windows alone (no rehearsal): %s", reason)
            return train.x, train.y, {"ratio": ratio, "original_windows": 0, "skipped": reason}
        k = min(len(original.x), int(round(ratio * len(train.x))))
        pick = np.sort(np.random.default_rng(seed).choice(len(original.x), size=k, replace=False))
        log.info("rehearsal: %d of the parent's training windows mixed in with the user's %d", k, len(train.x))
        x = np.concatenate([train.x, original.x[pick]])
        y = np.concatenate([train.y, original.y[pick]])
        return x, y, {"ratio": ratio, "original_windows": int(k)}

    def keras_reference(self, staging: Path) -> np.ndarray:
        import warnings

        from edge_har.convert.export import KERAS_MODEL_FILE
        from edge_har.convert.models import float32_copy

        keras_float = float32_copy(self.model, self.model_config, batch_size=None)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*HDF5 file.*legacy", category=UserWarning)
            keras_float.save(staging / KERAS_MODEL_FILE, include_optimizer=False, save_format="h5")
        return np.asarray(self.model.predict(self.sets["test"].x, batch_size=256, verbose=0))

    # -- the bundle

    def document(self, variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
        doc = SensorPath.document(self, variants)
        doc["model_id"] = model_id(self.dataset.name, KIND, variants["float32"]["sha256"])
        return doc

    def evaluate(self, bundle: Any, variant: str) -> Any:
        from edge_har.convert.evaluate import evaluate_model

        self.staged = Path(bundle.root)
        evaluation = SensorPath.evaluate(self, bundle, variant)
        if variant == self.compare_variant(bundle) and self.original.test is not None:
            model = bundle.load_model(variant, backend=self.options.evaluate_backend, num_threads=1)
            test = self.original.test
            self.after_original = evaluate_model(model, test.x, test.y, self.labels, variant, progress=False)
        return evaluation

    def compare_variant(self, bundle: Any) -> str:
        """The variant compared before/after: the new bundle's default one."""
        return str(bundle.default_variant)

    def check_evaluations(self, evaluations: Mapping[str, Any], keras_probs: np.ndarray) -> dict[str, Any]:
        from edge_har.convert.evaluate import evaluate_model
        from edge_har.convert.skeleton import degenerate_variants, gate_drops
        from edge_har.core.bundle import Bundle

        parent = Bundle.load(self.source)
        variant = self.options.default_variant
        parent_variant = variant if variant in parent.variants else parent.default_variant
        model = parent.load_model(parent_variant, backend=self.options.evaluate_backend, num_threads=1)
        held = self.sets["test"]
        before_held = evaluate_model(model, held.x, held.y, self.labels, parent_variant, progress=False)
        section: dict[str, Any] = {
            "parent": {
                "model_id": parent.model_id,
                "bundle": str(Path(self.source).absolute()),
                "labels": self.parent_labels,
            },
            "variant": variant,
            "parent_variant": parent_variant,
            "added_classes": self.labels[len(self.parent_labels) :],
            "fine_tune": self.fine_tune_record,
            "user_data": {
                "path": str(Path(getattr(self.dataset, "path", None) or self.dataset.root).resolve()),
                "format": getattr(self.dataset, "format", None),
                "recordings": {side: len(getattr(self.split, side)) for side in ("train", "val", "test")},
                "windows": {side: int(len(w.x)) for side, w in self.sets.items()},
            },
            "held_out": {
                "windows": int(len(held.x)),
                "before": _summary(before_held.report),
                "after": _summary(evaluations[variant].report),
            },
        }
        original = self.original
        if original.test is None or self.after_original is None:
            section["original_test"] = {"skipped": original.skipped or "the parent records no test recordings"}
        else:
            before_original = evaluate_model(
                model, original.test.x, original.test.y, self.labels, parent_variant, progress=False
            )
            section["original_test"] = {
                "data": original.path,
                "windows": int(len(original.test.x)),
                "before": _summary(before_original.report),
                "after": _summary(self.after_original.report),
            }
        drops, over = gate_drops(evaluations, self.specs, self.options.max_int8_drop)
        degenerate = degenerate_variants(evaluations, self.labels)
        section["gate"] = {
            "int8_over_limit": sorted(over),
            "degenerate": sorted(degenerate),
            "allowed_drop_points": self.options.max_int8_drop,
            "note": "bundle.json metrics.gate holds the verdict",
        }
        self.model_info["personalisation"] = section
        if self.staged is not None:
            write_report(self.staged, section)
        return {}

    def split_section(self) -> dict[str, Any]:
        info = SensorPath.split_section(self)
        info["held_out_of"] = "the user's data (convert --from-bundle)"
        return info

    def calibration_info(self) -> dict[str, Any]:
        info = SensorPath.calibration_info(self)
        if self.calibration is not None:
            info["calibration_sources"] = dict(self.calibration_sources)
        return info

    def dataset_info(self) -> dict[str, Any]:
        info = SensorPath.dataset_info(self)
        info["personalised_from"] = {
            "model_id": self.source_doc.get("model_id"),
            "bundle": str(Path(self.source).absolute()),
            "dataset": ((self.source_doc.get("provenance") or {}).get("dataset") or {}).get("path"),
        }
        return info


# ---------------------------------------------------------------- the report


def _pct(summary: Mapping[str, Any] | None, key: str) -> str:
    return "-" if not summary else f"{100 * float(summary[key]):.1f}%"


def report_markdown(section: Mapping[str, Any]) -> str:
    """``report.md``: before and after, on the user's held-out windows and on the parent's test set."""
    parent = section["parent"]
    lines = [
        f"# Personalised from {parent['model_id']}",
        "",
        f"Variant compared: {section['variant']} (parent: {section['parent_variant']}), run with the device's "
        f"interpreter. Fine-tuned layers: {section['fine_tune']['train_layers']} "
        f"({', '.join(section['fine_tune']['trained_layers'])}), {section['fine_tune']['epochs_run']} epochs.",
    ]
    rehearsal = section["fine_tune"].get("rehearsal") or {}
    if rehearsal.get("original_windows"):
        lines.append(f"Rehearsal: {rehearsal['original_windows']} of the parent's training windows mixed in.")
    elif rehearsal.get("skipped"):
        lines.append(f"Rehearsal skipped: {rehearsal['skipped']}.")
    if section["added_classes"]:
        lines.append(f"Classes added: {', '.join(section['added_classes'])}.")
    lines += ["", "| data | windows | accuracy before | after | macro-F1 before | after |", "|---|---|---|---|---|---|"]
    rows = [("your held-out recordings", section["held_out"])]
    rows.append(("the parent's test set", section["original_test"]))
    for name, entry in rows:
        if "skipped" in entry:
            lines.append(f"| {name} | skipped: {entry['skipped']} | | | | |")
            continue
        b, a = entry["before"], entry["after"]
        lines.append(
            f"| {name} | {entry['windows']} | {_pct(b, 'accuracy')} | {_pct(a, 'accuracy')} | "
            f"{_pct(b, 'macro_f1')} | {_pct(a, 'macro_f1')} |"
        )
    data = section["user_data"]
    rec, win = data["recordings"], data["windows"]
    lines += [
        "",
        f"Your data: {data['path']} ({data['format']}): {rec['train']} recordings ({win['train']} windows) for "
        f"training, {rec['val']} ({win['val']}) for validation, {rec['test']} ({win['test']}) held out.",
    ]
    return "\n".join(lines) + "\n"


def write_report(root: Path, section: Mapping[str, Any]) -> None:
    (root / REPORT_JSON).write_text(json.dumps(section, indent=2))
    (root / REPORT_MD).write_text(report_markdown(section))


def run_from_bundle(
    source: str | Path, options: ConvertOptions, personal: PersonaliseOptions, dataset: Any, split: Any
) -> Path:
    """Fine-tune the bundle at ``source`` on ``dataset`` (split by ``split``); return the new bundle.

    ``options.train`` is the fine-tuning's (epochs, learning rate, batch, seed,
    class weights); ``options`` otherwise as for ``run_convert`` (variants, gate,
    output). Raises AccuracyGateError as every conversion does.
    """
    folder, document, keras_file = load_source_document(source, flag="--from-bundle")
    path = PersonalisePath(options, dataset, split, folder, document, keras_file, personal)
    return run_skeleton(path, options)
