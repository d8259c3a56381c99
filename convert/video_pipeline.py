"""``edge-har convert-video`` end to end: clips -> split -> windows -> train -> quantize -> evaluate -> gate -> bundle.

The sensor pipeline (``edge_har.convert.pipeline``) with a video model. What is shared
is reused, not copied: the variant table and converter (``edge_har.convert.quantize``),
the stratified calibration draw, ``edge_har.convert.train.train_model`` (strategy
choice, class weights, early stopping, curves), evaluation through the
device's interpreter wrapper and its reports (``edge_har.convert.evaluate``), and the
whole stage sequence with its int8 accuracy gate, metrics, training and provenance
sections and the atomic bundle writer (``edge_har.convert.skeleton.run_skeleton``,
``edge_har.convert.export``). ``VideoPath`` supplies what is video-specific.

What differs:

* A video variant is exported as **two** ``.tflite`` parts, a frame
  ``encoder`` and a temporal ``head`` (``bundle.json`` ``variants.<v>.parts``),
  because the device runs the encoder once per frame and the head over a ring
  buffer of features (``edge_har.device.video_runtime``). ``--clip-model`` adds the
  whole clip model as a third part, for comparisons. The image-seq mode has
  nothing to stream and exports one model per variant.
* Each part is quantized on its own inputs: the encoder on training frames,
  the head on feature windows computed by *the same variant's encoder*, i.e.
  the features the head will see on the device.
* Evaluation runs the parts exactly as the device does: encoder per frame,
  head per window of T features.
* With a frozen (pretrained) backbone, frame features are computed once and
  only the head trains, through ``train_model`` unchanged; a backbone trained
  from scratch goes end to end through ``train_model``'s ``build_model`` hook.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edge_har.convert.export import KERAS_MODEL_FILE, bundle_document, write_tflite, write_variant
from edge_har.convert.quantize import DEFAULT_CALIBRATION_SIZE, DEFAULT_VARIANTS, calibration_windows
from edge_har.convert.skeleton import (  # noqa: F401  (AccuracyGateError re-exported for callers of this module)
    AccuracyGateError,
    ConvertError,
    Trained,
    check_default_variant,
    class_counts,
    int8_gate,
    model_id,
    run_skeleton,
    stage,
)
from edge_har.convert.train import TrainConfig
from edge_har.convert.video_datasets import (
    ClipSplit,
    VideoDataset,
    WindowIndex,
    load_video_dataset,
    split_clips,
    window_index,
)
from edge_har.convert.video_models import VideoModel, VideoModelConfig
from edge_har.core.bundle import Bundle
from edge_har.core.frames import FrameSpec, normalise_frames
from edge_har.core.interpreter import TFLiteModel
from edge_har.core.video_models import VideoModels

log = logging.getLogger(__name__)

DEFAULT_FPS = 10.0
DEFAULT_STRIDE = 4
MAX_AUTO_BATCH = 128
MIN_AUTO_BATCH = 8
AUTO_BATCH_STEPS = 16  # an automatic batch size leaves at least this many steps per epoch (above 8)


def auto_batch_size(n_train: int) -> int:
    """The batch size when none is given: the largest power of two with >= 16 steps per epoch, in 8..128.

    128 (the sensor default) from 2048 training windows up; 8 below 256, so a handful of clips still
    gets tens of steps per epoch instead of the one or two a fixed 128 gave.
    """
    size = MAX_AUTO_BATCH
    while size > MIN_AUTO_BATCH and n_train < size * AUTO_BATCH_STEPS:
        size //= 2
    return size


def auto_calibration_size(available: int) -> int:
    """The calibration set when none is given: DEFAULT_CALIBRATION_SIZE items, or all there are."""
    return min(DEFAULT_CALIBRATION_SIZE, available)


DEFAULT_MAX_INT8_DROP = 1.0
PART_FILE = "{part}_{variant}.tflite"


@dataclass
class VideoConvertOptions:
    """Everything ``run_convert_video`` needs; the CLI fills it from flags, tests build it directly.

    ``dataset_options`` are keywords of ``edge_har.convert.video_datasets.load_video_dataset``
    and ``split_options`` of ``split_clips``. ``stride`` is in kept frames: the
    device predicts every ``stride`` frames at ``fps``; training windows use
    the same stride.
    """

    out: Path
    data: Path | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    split_options: dict[str, Any] = field(default_factory=dict)
    fps: float = DEFAULT_FPS
    stride: int = DEFAULT_STRIDE
    fit: str = "stretch"
    interpolation: str = "area"
    model: VideoModelConfig = field(default_factory=VideoModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    default_variant: str = "int8"
    calibration_size: int | None = None  # None: auto_calibration_size of the training frames
    max_int8_drop: float = DEFAULT_MAX_INT8_DROP
    allow_int8_drop: bool = False
    allow_degenerate: bool = False  # write a model that predicts one class for (nearly) every test clip
    clip_model: bool = False
    overwrite: bool = False
    evaluate_backend: str = "auto"
    progress: bool = True
    command: str | None = None
    pose: Any = None  # edge_har.convert.pose_pipeline.PoseOptions: --backbone pose (BlazePose keypoints + head)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        check_default_variant(self.default_variant, self.variants)
        if self.stride < 1:
            raise ConvertError(f"--stride must be >= 1 frame, got {self.stride}")
        # Argument mistakes fail here, before any clip is decoded or TensorFlow imported.
        by, subjects = self.split_options.get("by", "clip"), self.split_options.get("test_subjects")
        if by == "subject" and not subjects:
            raise ConvertError("--split subject needs --test-subjects (ids from --subject-regex)")
        if by != "subject" and subjects:
            raise ConvertError(f"--test-subjects applies to --split subject only (the split is by {by})")
        if self.calibration_size is not None and self.calibration_size < 1:
            raise ConvertError(f"--calibration-size must be >= 1, got {self.calibration_size}")
        if self.train.batch_size is not None and self.train.batch_size < 1:
            raise ConvertError(f"--batch-size must be >= 1, got {self.train.batch_size}")

    def frame_spec(self) -> FrameSpec:
        scale, offset = self.model.frame_scaling()
        video = self.model.mode == "video"
        return FrameSpec(
            height=self.model.size,
            width=self.model.size,
            fps=self.fps,
            window=self.model.frames if video else 1,
            stride=self.stride if video else 1,
            scale=scale,
            offset=offset,
            interpolation=self.interpolation,
            fit=self.fit,
        )


@dataclass
class SplitData:
    """Windows of one side of the split, as indices into the clips' frames."""

    index: WindowIndex
    clips: list[int]

    @property
    def y(self) -> np.ndarray:
        return self.index.y


# ---------------------------------------------------------------- features


def keras_features(
    encoder: Any,
    dataset: VideoDataset,
    clip_ids: Sequence[int],
    spec: FrameSpec,
    batch_size: int = 64,
    progress: bool = True,
) -> dict[int, np.ndarray]:
    """Float Keras encoder features of every frame of the given clips (frozen-backbone training)."""
    from tqdm import tqdm

    out: dict[int, np.ndarray] = {}
    for ci in tqdm(list(clip_ids), desc="frame features", unit="clip", leave=False, disable=not progress):
        frames = normalise_frames(dataset.clips[ci].frames, spec)
        out[ci] = encoder.predict(frames, batch_size=batch_size, verbose=0).astype(np.float32)
    return out


def tflite_features(
    encoder: TFLiteModel,
    dataset: VideoDataset,
    clip_ids: Sequence[int],
    spec: FrameSpec,
    frames_needed: dict[int, set[int]] | None = None,
    progress: bool = True,
) -> dict[int, np.ndarray]:
    """Features of the clips' frames from a ``.tflite`` encoder, one frame per call, as on the device.

    ``frames_needed`` restricts the work to some frames per clip (the others stay zero).
    """
    from tqdm import tqdm

    out: dict[int, np.ndarray] = {}
    shape = tuple(encoder.output.shape[1:])
    total = sum(len(dataset.clips[c]) if frames_needed is None else len(frames_needed.get(c, ())) for c in clip_ids)
    with tqdm(
        total=total, desc=f"encode {encoder.path.name}", unit="frame", leave=False, disable=not progress or total < 200
    ) as bar:
        for ci in clip_ids:
            clip = dataset.clips[ci]
            feats = np.zeros((len(clip),) + shape, np.float32)
            wanted = range(len(clip)) if frames_needed is None else sorted(frames_needed.get(ci, ()))
            for fi in wanted:
                feats[fi] = encoder.predict(normalise_frames(clip.frames[fi], spec))
                bar.update(1)
            out[ci] = feats
    return out


def frames_of(index: WindowIndex, picks: np.ndarray) -> dict[int, set[int]]:
    need: dict[int, set[int]] = {}
    for w in picks:
        c, s = int(index.clip[w]), int(index.start[w])
        need.setdefault(c, set()).update(range(s, s + index.window))
    return need


def per_clip(arrays: dict[int, np.ndarray], n_clips: int, shape: tuple[int, ...]) -> list[np.ndarray]:
    """A list indexable by clip id (what ``WindowIndex.gather`` takes); clips not computed are empty."""
    empty = np.zeros((0,) + tuple(shape), np.float32)
    return [arrays.get(i, empty) for i in range(n_clips)]


def stratified_pick(y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of ``size`` items stratified by class, drawn by ``edge_har.convert.quantize.calibration_windows``."""
    ids = np.arange(len(y), dtype=np.float64)[:, None]
    return calibration_windows(ids, y, size, seed)[:, 0].astype(np.int64)


# ---------------------------------------------------------------- training


def _normalised_windows(dataset: VideoDataset, data: SplitData, spec: FrameSpec) -> np.ndarray:
    frames = (
        data.index.gather([c.frames for c in dataset.clips])
        if len(data.index)
        else np.empty((0, spec.window) + spec.shape, np.uint8)
    )
    x = normalise_frames(frames, spec) if len(frames) else frames.astype(np.float32)
    return x if spec.window > 1 else x[:, 0]


def train_video(
    options: VideoConvertOptions, dataset: VideoDataset, sets: dict[str, SplitData], spec: FrameSpec, work: Path
) -> tuple[VideoModel, Any, dict[str, Any]]:
    """Train and return (model with float weights, TrainResult, extra info)."""
    from edge_har.convert.train import train_model
    from edge_har.convert.video_models import build_video_model, split_trained

    config = options.model
    n_classes = len(dataset.labels)
    if config.freeze_backbone:
        model = build_video_model(config, n_classes)  # loads the pretrained weights once
        clip_ids = sorted(set(sets["train"].clips) | set(sets["val"].clips) | set(sets["test"].clips))
        feats = keras_features(model.encoder, dataset, clip_ids, spec, progress=options.progress)
        x = {side: d.index.gather(per_clip(feats, len(dataset.clips), model.feature_shape)) for side, d in sets.items()}
        if config.mode == "image-seq":
            x = {side: arr[:, 0] for side, arr in x.items()}
        result = train_model(
            x["train"], sets["train"].y, x["val"], sets["val"].y, n_classes, config.head_config(), options.train, work
        )
        model.head.set_weights(result.model.get_weights())  # model.whole shares these layers
        return model, result, {"trained": "head only (frozen backbone, features computed once per frame)"}
    x_train = _normalised_windows(dataset, sets["train"], spec)
    x_val = _normalised_windows(dataset, sets["val"], spec)
    built: dict[str, VideoModel] = {}

    def build() -> Any:
        built["model"] = build_video_model(config, n_classes)
        return built["model"].whole

    log.info("end-to-end training on %.1f MB of frames", (x_train.nbytes + x_val.nbytes) / 1e6)
    result = train_model(
        x_train,
        sets["train"].y,
        x_val,
        sets["val"].y,
        n_classes,
        config.head_config(),
        options.train,
        work,
        build_model=build,
    )
    encoder, head = split_trained(result.model, config)
    model = VideoModel(config, encoder, head, result.model, n_classes)
    return model, result, {"trained": "end to end (backbone and head)"}


def keras_probabilities(
    model: VideoModel, dataset: VideoDataset, data: SplitData, spec: FrameSpec, progress: bool = True
) -> np.ndarray:
    """The float Keras model's probabilities on ``data``'s windows: encoder per frame, head per window.

    The same numbers as the whole clip model (tests/test_video_models.py proves the identity), without
    materialising every window's frames as float32 (a 224 px window of 8 frames is 4.8 MB).
    """
    feats = keras_features(model.encoder, dataset, sorted(set(data.clips)), spec, progress=progress)
    x = data.index.gather(per_clip(feats, len(dataset.clips), model.feature_shape))
    if spec.window == 1:
        x = x[:, 0]
    return model.head.predict(x, batch_size=64, verbose=0)


# ---------------------------------------------------------------- export


def lean(converted: Any) -> Any:
    """The converted model with its overlong tensor names shortened (``edge_har.convert.tflite_names``).

    Without it an int8 image-seq model was larger than its float32 one (427,744 vs 366,928 bytes):
    the quantizer names each unrolled LSTM step's tensor after all 64 steps.
    """
    from dataclasses import replace

    from edge_har.convert.tflite_names import shorten_tensor_names

    content, info = shorten_tensor_names(converted.content)
    if not info["tensor_names_shortened"]:
        return converted
    log.info(
        "%s: %d overlong tensor names shortened, %d -> %d bytes",
        converted.name,
        info["tensor_names_shortened"],
        info["bytes_before"],
        info["bytes_after"],
    )
    return replace(converted, content=content)


def write_part(root: Path, part: str, variant: str, converted: Any) -> dict[str, Any]:
    """One part's ``.tflite`` and its description (the variant entry holds the description text)."""
    return write_tflite(root, PART_FILE.format(part=part, variant=variant), lean(converted), description=False)


def training_frames(dataset: VideoDataset, data: SplitData) -> int:
    """Decoded (not padded) frames of ``data``'s clips: what the encoder can be calibrated on."""
    return sum(len(dataset.clips[ci]) - dataset.clips[ci].padded_frames for ci in sorted(set(data.clips)))


def calibration_frames(dataset: VideoDataset, data: SplitData, spec: FrameSpec, size: int, seed: int) -> np.ndarray:
    """``size`` training frames, stratified by class, normalised (the encoder's calibration set)."""
    frame_y: list[int] = []
    frame_ref: list[tuple[int, int]] = []
    for ci in sorted(set(data.clips)):
        clip = dataset.clips[ci]
        label = dataset.labels.index(clip.label)
        frame_ref.extend((ci, fi) for fi in range(len(clip) - clip.padded_frames))
        frame_y.extend([label] * (len(clip) - clip.padded_frames))
    if len(frame_y) < size:
        from edge_har.convert.quantize import CalibrationError

        raise CalibrationError(
            f"the encoder's calibration set needs {size} frames but the training clips have only {len(frame_y)}; "
            "lower --calibration-size or use more training data"
        )
    picks = stratified_pick(np.asarray(frame_y), size, seed)
    frames = np.stack([dataset.clips[frame_ref[p][0]].frames[frame_ref[p][1]] for p in picks])
    return normalise_frames(frames, spec)


def quantize_parts(
    static: VideoModel,
    specs: Sequence[Any],
    staging: Path,
    dataset: VideoDataset,
    sets: dict[str, SplitData],
    spec: FrameSpec,
    options: VideoConvertOptions,
    frame_calibration: np.ndarray | None,
    head_picks: np.ndarray | None,
) -> dict[str, dict[str, Any]]:
    """Convert every variant's encoder, head (and clip model); write them; return the variant entries."""
    from edge_har.convert.quantize import convert_variants

    variants: dict[str, dict[str, Any]] = {}
    plain = [s for s in specs if not s.needs_calibration]
    calibrated = [s for s in specs if s.needs_calibration]
    encoders = {c.name: c for c in convert_variants(static.encoder, plain)}
    if calibrated:
        encoders.update({c.name: c for c in convert_variants(static.encoder, calibrated, frame_calibration)})
    for s in specs:
        variants[s.name] = {
            "quantization": s.quantization,
            "full_integer": s.full_integer,
            "description": s.description,
            "parts": {"encoder": write_part(staging, "encoder", s.name, encoders[s.name])},
        }
    heads = {c.name: c for c in convert_variants(static.head, plain)}
    for s in calibrated:
        # The head is calibrated on what it will be fed: this variant's own (quantized) encoder's features.
        encoder = TFLiteModel(staging / variants[s.name]["parts"]["encoder"]["file"], num_threads=1)
        assert head_picks is not None
        need = frames_of(sets["train"].index, head_picks)
        feats = tflite_features(encoder, dataset, sorted(need), spec, need, progress=options.progress)
        sub = sets["train"].index.subset(head_picks)
        calib = sub.gather(per_clip(feats, len(dataset.clips), static.feature_shape))
        heads[s.name] = convert_variants(static.head, [s], calib)[0]
        variants[s.name]["head_calibration"] = f"{len(calib)} training windows encoded by encoder_{s.name}.tflite"
    for s in specs:
        variants[s.name]["parts"]["head"] = write_part(staging, "head", s.name, heads[s.name])
    if options.clip_model:
        clip_calib = None
        if calibrated:
            assert head_picks is not None
            sub = sets["train"].index.subset(head_picks)
            clip_calib = normalise_frames(sub.gather([c.frames for c in dataset.clips]), spec)
        clips = {c.name: c for c in convert_variants(static.whole, plain)}
        if calibrated:
            clips.update({c.name: c for c in convert_variants(static.whole, calibrated, clip_calib)})
        for s in specs:
            variants[s.name]["parts"]["clip"] = write_part(staging, "clip", s.name, clips[s.name])
    for entry in variants.values():
        entry["size_bytes"] = sum(p["size_bytes"] for k, p in entry["parts"].items() if k != "clip")
    return variants


def quantize_single(
    static: VideoModel, specs: Sequence[Any], staging: Path, calibration: np.ndarray | None
) -> dict[str, dict[str, Any]]:
    """image-seq: one model per variant (nothing to stream), written by the sensor exporter."""
    from edge_har.convert.quantize import convert_variants

    plain = [s for s in specs if not s.needs_calibration]
    calibrated = [s for s in specs if s.needs_calibration]
    converted = convert_variants(static.whole, plain)
    if calibrated:
        converted += convert_variants(static.whole, calibrated, calibration)
    return {c.name: write_variant(staging, lean(c)) for c in converted}


# ---------------------------------------------------------------- evaluation


def evaluate_variant(
    bundle: Bundle,
    variant: str,
    dataset: VideoDataset,
    data: SplitData,
    spec: FrameSpec,
    backend: str = "auto",
    progress: bool = True,
    num_threads: int | None = 1,
    keypoints: dict[int, np.ndarray] | None = None,
) -> Any:
    """Accuracy of one variant on windows, run as the device runs it (encoder per frame, head per window).

    A pose bundle's keypoints are the same for every variant (the pose models are shared):
    ``keypoints`` passes those already computed.
    """
    from edge_har.convert.evaluate import evaluate_model

    models = VideoModels.load(bundle, variant, backend=backend, num_threads=num_threads)
    if models.whole is not None:
        x = normalise_frames(data.index.gather([c.frames for c in dataset.clips])[:, 0], spec)
        return evaluate_model(models.whole, x, data.y, bundle.labels, variant, progress=progress)
    if models.pose is not None:  # BlazePose as the encoder: keypoints per clip (cached), edge_har.convert.pose_pipeline
        from edge_har.convert.pose_pipeline import bundle_keypoints

        feats = (
            keypoints
            if keypoints is not None
            else bundle_keypoints(bundle, models, dataset, sorted(set(data.clips)), spec)
        )
    else:
        assert models.encoder is not None
        feats = tflite_features(models.encoder, dataset, sorted(set(data.clips)), spec, progress=progress)
    assert models.head is not None
    x = data.index.gather(per_clip(feats, len(dataset.clips), models.feature_shape))
    return evaluate_model(models.head, x, data.y, bundle.labels, variant, progress=progress)


def evaluate_video_bundle(
    bundle: Bundle,
    data: str | Path,
    *,
    dataset_options: dict[str, Any] | None = None,
    variants: Sequence[str] | None = None,
    split: str = "test",
    out_dir: str | Path | None = None,
    backend: str = "auto",
    num_threads: int | None = 1,
    progress: bool = True,
    keypoint_cache: Path | None = None,
) -> dict[str, Any]:
    """``edge-har evaluate-video``: the recorded test clips (``split="test"``) or every clip, per variant.

    A pose bundle is scored on the windows its device publishes (a person in at least one frame);
    the windows it would skip are counted per class in ``data.windows_no_person``, and where a
    person was found per clip and per class in ``data.person``.
    """
    import json

    from edge_har.convert.evaluate import EvaluationError, label_indices, relative_source, write_evaluation

    if bundle.kind != "video":
        raise EvaluationError(f"{bundle.root}: a {bundle.kind} bundle; use edge-har evaluate")
    if split not in ("test", "all"):
        raise EvaluationError(f"split must be test or all, got {split!r}")
    names = list(variants) if variants else list(bundle.variants)
    for name in names:
        bundle.variant(name)  # BundleError naming the known variants
    spec = FrameSpec.from_json(bundle.data["preprocessing"], where=f"{bundle.root}/bundle.json: preprocessing")
    dataset = load_video_dataset(data, spec, progress=progress, **(dataset_options or {}))
    remap = label_indices(dataset.labels, bundle.labels, str(dataset.root))
    if split == "test":
        wanted = (bundle.metrics.get("split") or {}).get("test_sources_relative")
        if not wanted:
            raise EvaluationError(
                f"{bundle.root}/bundle.json: metrics.split.test_sources_relative is missing; use --split all"
            )
        by_source = {relative_source(c.source, dataset.root): i for i, c in enumerate(dataset.clips)}
        missing = [w for w in wanted if w not in by_source]
        if missing:
            raise EvaluationError(
                f"{dataset.root}: {len(missing)} of the bundle's {len(wanted)} test clips are missing or unreadable "
                f"({', '.join(missing[:5])}); pass the data set the bundle was trained on, or use --split all"
            )
        clip_ids = [by_source[w] for w in wanted]
    else:
        clip_ids = list(range(len(dataset.clips)))
    index = window_index(dataset, clip_ids, spec.window, spec.stride)
    if not len(index):
        raise EvaluationError(f"{dataset.root}: no windows of {spec.window} frames in the {split} clips")
    index.y = remap[index.y]
    results: dict[str, Any] = {
        "bundle": str(bundle.root),
        "model_id": bundle.model_id,
        "data": {"split": split, "clips": len(clip_ids), "windows": len(index)},
        "variants": {},
    }
    keypoints = None
    if (bundle.data.get("video") or {}).get("mode") == "pose":
        index, keypoints = _published_windows(
            bundle,
            names[0],
            dataset,
            clip_ids,
            index,
            spec,
            results["data"],
            backend,
            num_threads,
            keypoint_cache,
            progress,
        )
    data_split = SplitData(index, clip_ids)
    for name in names:
        ev = evaluate_variant(bundle, name, dataset, data_split, spec, backend, progress, num_threads, keypoints)
        entry: dict[str, Any] = ev.summary()
        if out_dir is not None:
            entry["files"] = write_evaluation(ev, out_dir)
        results["variants"][name] = entry
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "summary.json").write_text(json.dumps(results, indent=2))
    return results


def _published_windows(
    bundle: Bundle,
    variant: str,
    dataset: VideoDataset,
    clip_ids: Sequence[int],
    index: WindowIndex,
    spec: FrameSpec,
    data_info: dict[str, Any],
    backend: str,
    num_threads: int | None,
    keypoint_cache: Path | None,
    progress: bool,
) -> tuple[WindowIndex, dict[int, np.ndarray]]:
    """A pose bundle's windows the device publishes, the keypoints, and (in ``data_info``) what was left out."""
    from edge_har.convert.evaluate import EvaluationError
    from edge_har.convert.pose_coverage import COUNTED, class_rows, clip_rows, published
    from edge_har.convert.pose_pipeline import bundle_keypoints

    models = VideoModels.load(bundle, variant, backend=backend, num_threads=num_threads)
    keypoints = bundle_keypoints(bundle, models, dataset, sorted(set(clip_ids)), spec, keypoint_cache, progress)
    windows = index.gather(per_clip(keypoints, len(dataset.clips), models.feature_shape))
    kept, counts = published(index, windows, bundle.labels)
    skipped = len(index) - len(kept)
    rows = clip_rows(keypoints, dataset.clips)
    data_info["windows_counted"] = COUNTED
    data_info["windows_no_person"] = counts
    data_info["windows_skipped_no_person"] = skipped
    data_info["person"] = {"per_class": class_rows(rows), "per_clip": rows}
    log.info("%d of %d windows have no person: the device skips them, so they are not scored", skipped, len(index))
    if not len(kept):
        raise EvaluationError(
            f"{dataset.root}: the pose models found a person in no window of the {len(clip_ids)} clips; "
            "the device would publish nothing, so there is nothing to score"
        )
    data_info["windows"] = len(kept)
    return kept, keypoints


def gate(
    evaluations: dict[str, Any], specs: Sequence[Any], options: VideoConvertOptions
) -> tuple[dict[str, float], bool]:
    """The shared int8 gate (``edge_har.convert.skeleton.int8_gate``) with this conversion's limits."""
    return int8_gate(evaluations, specs, options.max_int8_drop, options.allow_int8_drop)


# ---------------------------------------------------------------- the pipeline


def make_sets(dataset: VideoDataset, split: ClipSplit, spec: FrameSpec) -> dict[str, SplitData]:
    sets = {
        side: SplitData(
            window_index(dataset, getattr(split, side), spec.window, spec.stride), list(getattr(split, side))
        )
        for side in ("train", "val", "test")
    }
    labels = dataset.labels
    present = set(np.unique(sets["train"].y).tolist())
    missing = [labels[i] for i in range(len(labels)) if i not in present]
    if missing:
        raise ConvertError(
            f"the training split has no windows of class(es) {', '.join(missing)}; "
            "they need more clips, or a different split"
        )
    if len(sets["test"].index) == 0:
        raise ConvertError("the test split has no windows; the quantized variants cannot be checked against float")
    return sets


class VideoPath:
    """The video conversion's pieces for ``edge_har.convert.skeleton.run_skeleton``.

    Windows are indices into the clips' frames (never materialised as float for
    the whole split), variants are exported as encoder and head parts (or one
    model in image-seq mode), and evaluation streams them as the device does.
    """

    what = "video conversion"
    keras_model_note = KERAS_MODEL_FILE + " (the whole clip model, float32, dynamic batch)"

    def __init__(
        self, options: VideoConvertOptions, dataset: VideoDataset | None = None, split: ClipSplit | None = None
    ) -> None:
        self.options = options
        self.dataset = dataset
        self.split = split
        self.spec = options.frame_spec()
        self.frame_calibration: np.ndarray | None = None
        self.head_picks: np.ndarray | None = None

    def prepare(self, specs: Sequence[Any], timings: dict[str, float]) -> None:
        options, spec, config = self.options, self.spec, self.options.model
        with stage("load data", timings):
            if self.dataset is None:
                if options.data is None:
                    raise ConvertError("no data set given")
                self.dataset = load_video_dataset(
                    options.data, spec, progress=options.progress, **options.dataset_options
                )
            elif (self.dataset.spec.height, self.dataset.spec.width, self.dataset.spec.fps) != (
                spec.height,
                spec.width,
                spec.fps,
            ):
                d = self.dataset.spec
                raise ConvertError(
                    f"the data set was loaded at {d.width}x{d.height} px, "
                    f"{d.fps} fps; the model needs {spec.width}x{spec.height} px, {spec.fps} fps"
                )
            dataset = self.dataset
            self.labels = list(dataset.labels)
            log.info(
                "data set %s: %d clips, %d classes, %d frames at %g fps, %dx%d px",
                dataset.name,
                len(dataset.clips),
                len(self.labels),
                sum(len(c) for c in dataset.clips),
                spec.fps,
                spec.width,
                spec.height,
            )
        with stage("split", timings):
            if self.split is None:
                self.split = split_clips(dataset, **options.split_options)
            split = self.split
            sets = self.sets = make_sets(dataset, split, spec)
            log.info(
                "split by %s: %d/%d/%d clips, %d/%d/%d windows of %d frames (train/val/test)",
                split.by,
                len(split.train),
                len(split.val),
                len(split.test),
                len(sets["train"].index),
                len(sets["val"].index),
                len(sets["test"].index),
                spec.window,
            )
            self._sizes_from_data(len(sets["train"].index))
            if any(s.needs_calibration for s in specs):
                # Drawn before training (and before TensorFlow is imported), so a too-large
                # --calibration-size fails in seconds.
                size = options.calibration_size
                if size is None:
                    size = auto_calibration_size(training_frames(dataset, sets["train"]))
                self.frame_calibration = calibration_frames(dataset, sets["train"], spec, size, options.train.seed)
                if config.mode == "video":
                    self.head_picks = stratified_pick(
                        sets["train"].y, min(size, len(sets["train"].index)), options.train.seed
                    )

    def _sizes_from_data(self, n_train: int) -> None:
        """The batch size from the data when none was given, and the from-scratch step count checked."""
        from dataclasses import replace

        from edge_har.convert.train import steps_per_epoch, warn_few_scratch_steps

        options, config = self.options, self.options.model
        if options.train.batch_size is None:
            batch = auto_batch_size(n_train)
            options.train = replace(options.train, batch_size=batch)
            log.info(
                "batch size %d, chosen from %d training windows (%d steps per epoch)",
                batch,
                n_train,
                steps_per_epoch(n_train, batch),
            )
        batch = int(options.train.batch_size or 1)
        self.from_scratch = not config.pretrained and not config.freeze_backbone
        if self.from_scratch:
            planned = options.train.epochs * steps_per_epoch(n_train, batch)
            warn_few_scratch_steps(planned, n_train, batch, f"at most (--epochs {options.train.epochs})")

    def train(self, work: Path) -> Trained:
        from edge_har.convert.train import MIN_SCRATCH_STEPS, warn_few_scratch_steps

        assert self.dataset is not None
        self.model, result, info = train_video(self.options, self.dataset, self.sets, self.spec, work)
        steps = int(result.history.get("steps_run", 0))
        info["steps_run"] = steps
        if getattr(self, "from_scratch", False):
            n_train, batch = len(self.sets["train"].index), int(self.options.train.batch_size or 1)
            info["few_scratch_steps"] = warn_few_scratch_steps(
                steps, n_train, batch, "in all (early stopping included)"
            )
            info["min_scratch_steps"] = MIN_SCRATCH_STEPS
        return Trained(result, {"model": self.options.model.to_json(), **info})

    def keras_reference(self, staging: Path) -> np.ndarray:
        from edge_har.convert.video_models import float32_copy

        assert self.dataset is not None
        keras_float = float32_copy(self.model, batch_size=None)
        keras_float.whole.save(staging / KERAS_MODEL_FILE, include_optimizer=False, save_format="h5")
        return keras_probabilities(keras_float, self.dataset, self.sets["test"], self.spec, self.options.progress)

    def test_labels(self) -> np.ndarray:
        return self.sets["test"].y

    def quantize(self, staging: Path, specs: Sequence[Any]) -> dict[str, dict[str, Any]]:
        from edge_har.convert.video_models import float32_copy

        assert self.dataset is not None
        config = self.options.model
        self.static = float32_copy(self.model, batch_size=1, unrolled_lstm=config.lstm_export == "unrolled")
        if config.mode == "video":
            return quantize_parts(
                self.static,
                specs,
                staging,
                self.dataset,
                self.sets,
                self.spec,
                self.options,
                self.frame_calibration,
                self.head_picks,
            )
        return quantize_single(self.static, specs, staging, self.frame_calibration)

    def document(self, variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
        assert self.dataset is not None
        spec, config, video = self.spec, self.options.model, self.options.model.mode == "video"
        sha = variants["float32"].get("sha256") or variants["float32"]["parts"]["encoder"]["sha256"]
        in_shape = [1, spec.window, spec.height, spec.width, 3] if video else [1, spec.height, spec.width, 3]
        document = bundle_document(
            model_id=model_id(self.dataset.name, "video-cnn-lstm" if video else "imageseq-cnn-lstm", sha),
            labels=self.labels,
            input_shape=in_shape,
            preprocessing=spec.to_json(),
            variants=variants,
            default_variant=self.options.default_variant,
        )
        document["kind"] = "video"
        document["input"] = {
            "shape": in_shape,
            "dtype": "float32",
            "layout": "NTHWC" if video else "NHWC",
            "note": "frames after edge_har.core.frames (sampled at fps, resized, RGB, scaled); a split variant's encoder "
            "takes one frame [1, H, W, 3] and its head the last T feature vectors [1, T, D]",
        }
        document["video"] = {
            "mode": config.mode,
            "frames": spec.window,
            "stride": spec.stride,
            "fps": spec.fps,
            "feature_shape": list(self.static.feature_shape),
            "head_sequence_shape": list(self.static.sequence_shape),
            "backbone": config.backbone,
            "streaming": "encoder once per kept frame; head every stride frames over the last T features"
            if video
            else "one model per image: the CNN's feature map read as a sequence by the LSTM",
        }
        return document

    def evaluate(self, bundle: Bundle, variant: str) -> Any:
        assert self.dataset is not None
        return evaluate_variant(
            bundle,
            variant,
            self.dataset,
            self.sets["test"],
            self.spec,
            self.options.evaluate_backend,
            self.options.progress,
        )

    def check_evaluations(self, evaluations: Mapping[str, Any], keras_probs: np.ndarray) -> dict[str, Any]:
        """float32 streamed part by part must match the whole Keras clip model; the bundle records how closely."""
        split_vs_keras = float(np.abs(evaluations["float32"].probabilities - keras_probs).max())
        log.info("float32 TFLite (as streamed) vs Keras whole model: max |probability difference| %.2e", split_vs_keras)
        return {"float32_vs_keras_max_abs_diff": split_vs_keras}

    def self_test_windows(self) -> tuple[np.ndarray, np.ndarray] | None:
        return None  # a video variant runs frame by frame (encoder, then head): no one-window self-test yet

    def split_section(self) -> dict[str, Any]:
        from edge_har.convert.evaluate import relative_source

        dataset, split = self.dataset, self.split
        assert dataset is not None and split is not None
        info = dict(split.describe())
        info["test_sources_relative"] = [relative_source(dataset.clips[i].source, dataset.root) for i in split.test]
        info["windows"] = {side: len(d.index) for side, d in self.sets.items()}
        info["windows_per_class"] = {side: class_counts(d.y, self.labels) for side, d in self.sets.items()}
        return info

    def calibration_info(self) -> dict[str, Any]:
        return {
            "calibration_frames": None if self.frame_calibration is None else len(self.frame_calibration),
            "calibration_head_windows": None if self.head_picks is None else len(self.head_picks),
        }

    def dataset_info(self) -> dict[str, Any]:
        assert self.dataset is not None
        return self.dataset.describe()


def run_convert_video(
    options: VideoConvertOptions, dataset: VideoDataset | None = None, split: ClipSplit | None = None
) -> Path:
    """Run the whole video conversion and return the bundle directory.

    Raises AccuracyGateError (nothing written at ``options.out``) when a
    full-integer variant falls more than ``max_int8_drop`` points below float32.
    """
    if options.pose is not None:
        from edge_har.convert.pose_pipeline import run_convert_pose

        return run_convert_pose(options, options.pose, dataset, split)
    return run_skeleton(VideoPath(options, dataset, split), options)
