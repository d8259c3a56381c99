"""``edge-har convert`` end to end: data -> split -> windows -> train -> quantize -> evaluate -> gate -> bundle.

Each stage is logged with its duration. Order matters in three places:
* normalisation statistics are fit on the training windows only, after the
  split, so nothing of the validation or test data leaks into the model;
* the calibration set is drawn (and its size checked) before training, so a
  too-large ``--calibration-size`` fails in seconds, not after the training;
* the accuracy gate runs before anything is published: a refused conversion
  leaves no bundle behind (see ``edge_har.convert.export``).

The stage sequence, the gate, the metrics/training/provenance sections and the
atomic write are ``edge_har.convert.skeleton.run_skeleton``'s, shared with the
video conversion; this module supplies only what is sensor-specific
(``SensorPath``: recordings, windows, the CNN-LSTM, one ``.tflite`` per variant).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edge_har.convert.export import KERAS_MODEL_FILE
from edge_har.convert.models import ModelConfig
from edge_har.convert.quantize import DEFAULT_CALIBRATION_SIZE, DEFAULT_VARIANTS, calibration_windows
from edge_har.convert.quiet import collapse_repeats
from edge_har.convert.skeleton import (  # noqa: F401  (AccuracyGateError, slug, stage: re-exported for the CLIs)
    AccuracyGateError,
    ConvertError,
    Trained,
    check_default_variant,
    class_counts,
    model_id,
    run_skeleton,
    slug,
    stage,
)
from edge_har.convert.train import TrainConfig
from edge_har.core.bundle import Bundle
from edge_har.core.formats.windows import log_resampling
from edge_har.core.preprocessing import Preprocessing, fit_normalisation, normalise

log = logging.getLogger(__name__)

DEFAULT_WINDOW = "3s"
DEFAULT_STRIDE = "0.5s"
DEFAULT_MAX_INT8_DROP = 1.0

_slug = slug  # the private name edge_har.convert.video_cli imports


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
    # Step between *training* windows only (None: ``stride``): more overlapping training windows are a
    # cheap augmentation; validation and test windows, and the device, keep ``stride``.
    train_stride: str | int | None = None
    target_rate: float | None = None
    skip_short: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    default_variant: str = "int8"
    calibration_size: int = DEFAULT_CALIBRATION_SIZE
    max_int8_drop: float = DEFAULT_MAX_INT8_DROP
    allow_int8_drop: bool = False
    allow_degenerate: bool = False
    overwrite: bool = False
    evaluate_backend: str = "auto"
    progress: bool = True
    command: str | None = None
    # The data-set flags as given (``--sample-rate``, ``--channels``, ...; argparse dest -> value),
    # recorded as ``provenance.dataset.data_flags`` so that ``evaluate``, ``bench`` and
    # ``convert --from-keras`` can read the data again without the user repeating them.
    data_flags: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        check_default_variant(self.default_variant, self.variants)


@dataclass
class Windows:
    x: np.ndarray
    y: np.ndarray
    recordings: int


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


def split_windows(
    dataset: Any, split: Any, pre: Preprocessing, skip_short: bool, train_stride: int | None = None
) -> dict[str, Windows]:
    import dataclasses

    from edge_har.convert.datasets import make_window_set

    out = {}
    for side in ("train", "val", "test"):
        indices = np.asarray(getattr(split, side), dtype=np.int64)
        side_pre = pre if side != "train" or not train_stride else dataclasses.replace(pre, stride=train_stride)
        ws = make_window_set(dataset, side_pre, recording_indices=indices, skip_short=skip_short)
        out[side] = Windows(np.asarray(ws.x, np.float32), np.asarray(ws.y, np.int64), len(indices))
    labels = list(dataset.labels)
    train_classes = set(np.unique(out["train"].y).tolist())
    missing = [labels[i] for i in range(len(labels)) if i not in train_classes]
    if missing:
        raise ConvertError(
            f"the training split has no windows of class(es) {', '.join(missing)}; "
            "they need more (or longer) recordings, or a different split"
        )
    if len(out["test"].x) == 0:
        raise ConvertError("the test split has no windows; the quantized variants cannot be checked against float")
    for side in ("val", "test"):
        absent = [labels[i] for i in range(len(labels)) if i not in set(np.unique(out[side].y).tolist())]
        if absent:
            log.warning("the %s split has no windows of %s", side, ", ".join(absent))
    return out


class SensorPath:
    """The sensor conversion's pieces for ``edge_har.convert.skeleton.run_skeleton``.

    Recordings are cut into windows after the split; normalisation statistics are
    fit on the training windows only, so nothing of validation or test leaks in.
    """

    what = "conversion"
    keras_model_note = KERAS_MODEL_FILE

    def __init__(self, options: ConvertOptions, dataset: Any | None = None, split: Any | None = None) -> None:
        self.options = options
        self.dataset: Any = dataset  # set by prepare() when not given
        self.split: Any = split
        self.calibration: np.ndarray | None = None

    def prepare(self, specs: Sequence[Any], timings: dict[str, float]) -> None:
        options = self.options
        if self.dataset is None:  # (the CLI loads and splits before calling, to report bad input first)
            from edge_har.convert.datasets import load_dataset

            if options.data is None:
                raise ConvertError("no data set given")
            with stage("load data", timings):
                self.dataset = load_dataset(options.data, **options.dataset_options)
        dataset = self.dataset
        self.labels = list(dataset.labels)
        log.info(
            "data set %s: %d recordings, %d classes, %s Hz, channels %s",
            dataset.name,
            len(dataset.recordings),
            len(self.labels),
            dataset.sample_rate_hz,
            ", ".join(dataset.channels),
        )
        if self.split is None:
            from edge_har.convert.splits import split_recordings

            with stage("split", timings):
                self.split = split_recordings(dataset, **options.split_options)
        split = self.split
        log.info(
            "split: %d train / %d validation / %d test recordings", len(split.train), len(split.val), len(split.test)
        )
        with stage("windows", timings), collapse_repeats("edge_har"):  # per-recording lines: once, with a count
            pre = build_preprocessing(dataset, options)
            log_resampling(dataset, pre.sample_rate_hz)
            train_stride = (
                None
                if options.train_stride is None
                else _duration(options.train_stride, pre.sample_rate_hz, "train-stride")
            )
            sets = split_windows(dataset, split, pre, options.skip_short, train_stride)
            mean, std = fit_normalisation(sets["train"].x)  # training windows only
            pre = pre.with_normalisation(mean, std)
            for w in sets.values():
                w.x = normalise(w.x, pre)
            log.info(
                "windows of %d samples (%.2f s), stride %d%s: %d train / %d validation / %d test",
                pre.window,
                pre.window_seconds,
                pre.stride,
                "" if train_stride is None else f" ({train_stride} between training windows)",
                len(sets["train"].x),
                len(sets["val"].x),
                len(sets["test"].x),
            )
            if any(s.needs_calibration for s in specs):
                self.calibration = calibration_windows(
                    sets["train"].x, sets["train"].y, options.calibration_size, options.train.seed
                )
        self.pre, self.sets = pre, sets

    def train(self, work: Path) -> Trained:
        from edge_har.convert.macs import model_macs
        from edge_har.convert.train import train_model

        sets, options = self.sets, self.options
        self.result = train_model(
            sets["train"].x,
            sets["train"].y,
            sets["val"].x,
            sets["val"].y,
            len(self.labels),
            options.model,
            options.train,
            work,
            normalisation=(self.pre.mean, self.pre.std),
        )
        return Trained(self.result, {"model": options.model.to_json(), "macs": model_macs(self.result.model)})

    def keras_reference(self, staging: Path) -> np.ndarray:
        from edge_har.convert.models import float32_copy

        keras_float = float32_copy(self.result.model, self.options.model, batch_size=None)
        with warnings.catch_warnings():
            # HDF5 on purpose: one file that benchmarks and older tools load directly.
            warnings.filterwarnings("ignore", message=".*HDF5 file.*legacy", category=UserWarning)
            keras_float.save(staging / KERAS_MODEL_FILE, include_optimizer=False, save_format="h5")
        return keras_float.predict(self.sets["test"].x, batch_size=256, verbose=0)

    def test_labels(self) -> np.ndarray:
        return self.sets["test"].y

    def quantize(self, staging: Path, specs: Sequence[Any]) -> dict[str, dict[str, Any]]:
        from edge_har.convert import export
        from edge_har.convert.models import static_batch_copy
        from edge_har.convert.quantize import convert_variants

        static = static_batch_copy(self.result.model, self.options.model)
        return {c.name: export.write_variant(staging, c) for c in convert_variants(static, specs, self.calibration)}

    def document(self, variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
        from edge_har.convert import export

        return export.bundle_document(
            model_id=model_id(self.dataset.name, self.options.model.family, variants["float32"]["sha256"]),
            labels=self.labels,
            input_shape=[1, self.pre.window, self.pre.n_channels],
            preprocessing=self.pre.to_json(),
            variants=variants,
            default_variant=self.options.default_variant,
            label_map=getattr(self.dataset, "label_map", None),
        )

    def evaluate(self, bundle: Bundle, variant: str) -> Any:
        from edge_har.convert.evaluate import evaluate_model

        model = bundle.load_model(variant, backend=self.options.evaluate_backend, num_threads=1)
        test = self.sets["test"]
        return evaluate_model(model, test.x, test.y, self.labels, variant, progress=self.options.progress)

    def check_evaluations(self, evaluations: Mapping[str, Any], keras_probs: np.ndarray) -> dict[str, Any]:
        return {}  # one model per variant: float32 TFLite vs Keras needs no separate record

    def split_section(self) -> dict[str, Any]:
        from edge_har.convert.evaluate import relative_source

        dataset, split = self.dataset, self.split
        info = dict(split.describe())
        info["test_sources_relative"] = [
            relative_source(dataset.recordings[i].source, dataset.root) for i in np.asarray(split.test, dtype=np.int64)
        ]
        info["windows"] = {side: len(w.x) for side, w in self.sets.items()}
        info["windows_per_class"] = {side: class_counts(w.y, self.labels) for side, w in self.sets.items()}
        return info

    def calibration_info(self) -> dict[str, Any]:
        return {"calibration_size": None if self.calibration is None else len(self.calibration)}

    def self_test_windows(self) -> tuple[np.ndarray, np.ndarray] | None:
        test = self.sets["test"]
        return test.x, test.y

    def dataset_info(self) -> dict[str, Any]:
        info = dict(self.dataset.describe())
        info.setdefault("path", str(Path(self.dataset.root).resolve()))
        if self.options.data_flags:
            info["data_flags"] = dict(self.options.data_flags)
        return info


def run_convert(options: ConvertOptions, dataset: Any | None = None, split: Any | None = None) -> Path:
    """Run the whole conversion and return the bundle directory.

    Raises AccuracyGateError when a full-integer variant falls more than
    ``max_int8_drop`` points below float32 (and ``allow_int8_drop`` is off),
    leaving nothing at ``options.out``.
    """
    return run_skeleton(SensorPath(options, dataset, split), options)


# ---------------------------------------------------------------- re-quantize a kept Keras model


def load_source_document(source: str | Path, flag: str = "--from-keras") -> tuple[Path, dict[str, Any], Path]:
    """(folder, bundle document, Keras file) of ``--from-keras``: a bundle, a kept refused conversion, or its .h5.

    A refused conversion (``<out>.refused``) holds ``refused.json`` instead of
    ``bundle.json``; either records what re-quantizing needs. ``flag`` is the option
    the errors name (``convert --from-bundle`` reads its parent bundle here too).
    """
    import json

    from edge_har.convert.skeleton import REFUSED_FILE
    from edge_har.core.bundle import BUNDLE_FILE

    path = Path(source)
    folder = path.parent if path.is_file() else path
    if not folder.is_dir():
        raise ConvertError(f"{flag} {source}: no such bundle folder or .h5 file")
    doc_file = next((folder / n for n in (BUNDLE_FILE, REFUSED_FILE) if (folder / n).is_file()), None)
    if doc_file is None:
        raise ConvertError(
            f"{flag} {source}: {folder} has neither {BUNDLE_FILE} nor {REFUSED_FILE}, so the data, split, "
            "preprocessing and model config that made the model are unknown"
        )
    try:
        document = json.loads(doc_file.read_text())
    except (OSError, ValueError) as exc:
        raise ConvertError(f"{doc_file}: cannot be read as JSON: {exc}") from exc
    if document.get("kind", "sensor") != "sensor":
        raise ConvertError(f"{doc_file}: {flag} reads sensor models only (this is a {document['kind']} one)")
    keras_file = (
        path if path.is_file() else folder / str((document.get("files") or {}).get("keras_model") or KERAS_MODEL_FILE)
    )
    if not keras_file.is_file():
        raise ConvertError(f"{flag} {source}: {keras_file} is missing (the float Keras model to re-quantize)")
    for key in ("preprocessing", "labels", "training", "metrics"):
        if not isinstance(document.get(key), dict if key != "labels" else list):
            raise ConvertError(f"{doc_file}: {key} is missing or malformed")
    return folder, document, keras_file


def _recording_indices(dataset: Any, wanted: Sequence[str], what: str, where: str) -> np.ndarray:
    from edge_har.convert.evaluate import relative_source

    by_source = {relative_source(r.source, dataset.root): i for i, r in enumerate(dataset.recordings)}
    missing = [s for s in wanted if s not in by_source]
    if missing:
        raise ConvertError(
            f"{where}: {len(missing)} of the {len(wanted)} {what} recordings it records are not in {dataset.root} "
            f"(e.g. {missing[0]}); pass the data set the model was trained on (--data and its flags)"
        )
    return np.asarray([by_source[s] for s in wanted], dtype=np.int64)


class _RecordedTraining:
    """The original training's record, standing in for a TrainResult in ``training_section``."""

    def __init__(self, training: Mapping[str, Any], labels: list[str], work: Path) -> None:
        import json

        self.strategy = _Jsonable(training.get("strategy") or {})
        self.epochs_run = training.get("epochs_run")
        self.best_epoch = training.get("best_epoch")
        self.seconds = float(training.get("seconds") or 0.0)
        weights = training.get("class_weights")
        self.class_weights = None if weights is None else {labels.index(k): float(v) for k, v in weights.items()}
        self.history_file = work / "history.json"
        self.history = json.loads(self.history_file.read_text()) if self.history_file.is_file() else {}
        if not self.history_file.is_file():
            self.history_file.write_text("{}")
        curves = work / "training_curves.png"
        self.curves_file = curves if curves.is_file() else None


class _Jsonable:
    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = dict(data)

    def to_json(self) -> dict[str, Any]:
        return dict(self.data)


class RequantizePath(SensorPath):
    """``convert --from-keras``: the kept float Keras model, re-quantized and re-gated; no training.

    Preprocessing (normalisation included), labels, model config and the split come
    from the source's document; the data set is read again (its flags from the same
    document) for the calibration windows (the recorded training recordings) and the
    test windows (the recorded test recordings).
    """

    def __init__(self, options: ConvertOptions, dataset: Any, source: Path, document: dict[str, Any], keras_file: Path):
        super().__init__(options, dataset, None)
        self.source, self.source_doc, self.keras_file = source, document, keras_file
        self.model_config = ModelConfig.from_json(document["training"].get("model") or {})

    def prepare(self, specs: Sequence[Any], timings: dict[str, float]) -> None:
        from edge_har.convert.datasets import make_window_set
        from edge_har.convert.evaluate import label_indices

        doc, dataset = self.source_doc, self.dataset
        where = str(self.source)
        self.labels = list(doc["labels"])
        self.pre = Preprocessing.from_json(doc["preprocessing"], where=f"{where}: preprocessing")
        split = doc["metrics"].get("split") or {}
        if not split.get("test_sources_relative"):
            raise ConvertError(f"{where}: metrics.split.test_sources_relative is missing; the test split is unknown")
        with stage("windows", timings):
            test = _recording_indices(dataset, split["test_sources_relative"], "test", where)
            if split.get("train_sources_relative"):
                train = _recording_indices(dataset, split["train_sources_relative"], "training", where)
            else:
                log.warning("%s records no training recordings; calibrating on every non-test recording", where)
                train = np.setdiff1d(np.arange(len(dataset.recordings)), test)
            remap = label_indices(dataset.labels, self.labels, str(dataset.root))
            self.sets = {}
            for side, indices in (("train", train), ("test", test)):
                ws = make_window_set(dataset, self.pre, recording_indices=indices, skip_short=True)
                x = normalise(np.asarray(ws.x, np.float32), self.pre)
                self.sets[side] = Windows(x, remap[np.asarray(ws.y, np.int64)], len(indices))
            if any(s.needs_calibration for s in specs):
                self.calibration = calibration_windows(
                    self.sets["train"].x, self.sets["train"].y, self.options.calibration_size, self.options.train.seed
                )
        log.info(
            "re-quantizing %s: %d calibration candidates, %d test windows",
            self.keras_file,
            len(self.sets["train"].x),
            len(self.sets["test"].x),
        )

    def train(self, work: Path) -> Trained:
        import shutil

        from edge_har.convert.models import build_from_config

        original = self.source / "training"
        if original.is_dir():
            shutil.copytree(original, work)
        else:
            work.mkdir(parents=True)
        self.model = build_from_config(self.model_config, (self.pre.window, self.pre.n_channels), len(self.labels))
        self.model.load_weights(str(self.keras_file))
        training = self.source_doc["training"]
        recorded = _RecordedTraining(training, self.labels, work)
        info = {"model": self.model_config.to_json(), "requantized_from": str(self.keras_file.absolute())}
        return Trained(recorded, info)

    def keras_reference(self, staging: Path) -> np.ndarray:
        import shutil

        shutil.copyfile(self.keras_file, staging / KERAS_MODEL_FILE)
        return self.model.predict(self.sets["test"].x, batch_size=256, verbose=0)

    def quantize(self, staging: Path, specs: Sequence[Any]) -> dict[str, dict[str, Any]]:
        from edge_har.convert import export
        from edge_har.convert.models import static_batch_copy
        from edge_har.convert.quantize import convert_variants

        static = static_batch_copy(self.model, self.model_config)
        return {c.name: export.write_variant(staging, c) for c in convert_variants(static, specs, self.calibration)}

    def split_section(self) -> dict[str, Any]:
        info = dict(self.source_doc["metrics"].get("split") or {})
        info.setdefault("windows", {})["test"] = len(self.sets["test"].x)
        return info

    def dataset_info(self) -> dict[str, Any]:
        info = super().dataset_info()
        recorded = ((self.source_doc.get("provenance") or {}).get("dataset")) or {}
        if "data_flags" in recorded and "data_flags" not in info:
            info["data_flags"] = recorded["data_flags"]
        return info


def run_from_keras(source: str | Path, options: ConvertOptions, dataset: Any) -> Path:
    """Re-quantize, re-evaluate and re-gate the float Keras model at ``source``; return the new bundle.

    ``options`` supplies the output, variants, calibration size and gate limits; the
    window, model and training options are the source's. Raises AccuracyGateError as
    ``run_convert`` does (keeping the model again in ``<out>.refused``).
    """
    from dataclasses import replace

    folder, document, keras_file = load_source_document(source)
    train = TrainConfig(**{k: v for k, v in (document["training"].get("config") or {}).items() if k in _TRAIN_FIELDS})
    options = replace(options, train=train)
    return run_skeleton(RequantizePath(options, dataset, folder, document, keras_file), options)


_TRAIN_FIELDS = set(TrainConfig.__dataclass_fields__)
