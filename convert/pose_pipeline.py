"""``edge-har convert-video --backbone pose``: BlazePose keypoints per frame, the CNN-LSTM head over them.

A CNN trained from scratch on a handful of clips learns nothing (issue 16: one class
for every window); a pretrained pose network does the seeing instead. MediaPipe's
BlazePose detector and landmark models (``scripts/get_pose_models.sh DIR``: extracted
from the mediapipe wheel, never installed) become every variant's frame encoder,
unchanged (parts ``pose_detector`` and ``pose_landmarks``, with their sha256 and
licence in the bundle); only the head, the project's CNN-LSTM over (T, 133) keypoint
features, is trained and quantized (float32 / dynamic range / int8, unrolled LSTM).

The keypoints of each clip are computed once with the device's own encoder
(``edge_har.core.pose_encoder.PoseEncoder``, LiteRT) and cached in
``~/.cache/edge-har/keypoints`` (or ``--keypoint-cache``), keyed by the clip file's
sha256, both models' sha256 and the frame geometry and rate: a second conversion of
the same clips trains the head in seconds, and evaluation reads the same features the
bundle's own models give (their sha256 is verified when the bundle loads).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edge_har.convert.export import KERAS_MODEL_FILE, bundle_document
from edge_har.convert.pose_coverage import (
    COUNTED,
    DEFAULT_MIN_PERSON_RATE,
    Coverage,
    check_test_classes,
    class_rows,
    clip_rows,
    published,
    train_classes_check,
)
from edge_har.convert.skeleton import ConvertError, Trained, model_id, stage
from edge_har.convert.video_datasets import Clip, VideoDataset, load_video_dataset, split_clips
from edge_har.convert.video_pipeline import (
    SplitData,
    VideoConvertOptions,
    VideoPath,
    auto_batch_size,
    auto_calibration_size,
    make_sets,
    per_clip,
    stratified_pick,
    write_part,
)
from edge_har.core import pose
from edge_har.core.bundle import Bundle
from edge_har.core.frames import FrameSpec, normalise_frames
from edge_har.core.interpreter import TFLiteModel, sha256_file
from edge_har.core.pose_encoder import DETECTOR_PART, ENCODER_VERSION, LANDMARKS_PART, PoseEncoder

log = logging.getLogger(__name__)

POSE_FILES = {DETECTOR_PART: "pose_detection.tflite", LANDMARKS_PART: "pose_landmark_full.tflite"}
LICENCE_FILE = "LICENSE.mediapipe"
MODELS_JSON = "pose_models.json"
GET_MODELS = "scripts/get_pose_models.sh DIR"
DEFAULT_FRAME = (240, 320)  # (height, width) the pose models see: 4:3, KTH and most webcams


class PoseModelsError(ConvertError):
    """--pose-models DIR lacks a file, or a file is not what pose_models.json records."""


@dataclass(frozen=True)
class PoseOptions:
    """The pose backbone's settings (``--pose-models``, ``--pose-frame``, ``--keypoint-cache``)."""

    models_dir: Path
    height: int = DEFAULT_FRAME[0]
    width: int = DEFAULT_FRAME[1]
    cache_dir: Path | None = None
    track: bool = True
    min_person_rate: float = DEFAULT_MIN_PERSON_RATE  # classes with fewer frames with a person are warned about
    allow_no_person: bool = False  # convert although a class's test windows are mostly without a person

    def cache(self) -> Path | None:
        if self.cache_dir is not None:
            return Path(self.cache_dir)
        env = os.environ.get("EDGE_HAR_KEYPOINT_CACHE")
        if env == "off":
            return None
        return Path(env) if env else Path.home() / ".cache" / "edge-har" / "keypoints"


def pose_models(models_dir: Path) -> dict[str, Any]:
    """The model files of ``models_dir`` with their sha256, checked against pose_models.json when it is there."""
    root = Path(models_dir)
    if not root.is_dir():
        raise PoseModelsError(f"--pose-models {root}: no such folder; make it with {GET_MODELS}")
    wanted = {**POSE_FILES, "licence": LICENCE_FILE}
    missing = [name for name in wanted.values() if not (root / name).is_file()]
    if missing:
        raise PoseModelsError(f"--pose-models {root}: missing {', '.join(missing)}; make the folder with {GET_MODELS}")
    recorded: dict[str, Any] = {}
    if (root / MODELS_JSON).is_file():
        try:
            recorded = json.loads((root / MODELS_JSON).read_text())
        except ValueError as exc:
            raise PoseModelsError(f"{root / MODELS_JSON}: not JSON ({exc})") from exc
    by_file = {f.get("file"): f for f in (recorded.get("files") or {}).values() if isinstance(f, dict)}
    files: dict[str, Any] = {}
    for key, name in wanted.items():
        digest = sha256_file(root / name)
        expect = (by_file.get(name) or {}).get("sha256")
        if expect and expect != digest:
            raise PoseModelsError(
                f"{root / name}: sha256 {digest} but {MODELS_JSON} records {expect}; fetch again with {GET_MODELS}"
            )
        files[key] = {
            "file": name,
            "sha256": digest,
            "size_bytes": (root / name).stat().st_size,
            "member": (by_file.get(name) or {}).get("member"),
        }
    return {"root": root, "files": files, "source": recorded.get("source", "unknown (no pose_models.json)")}


def pose_spec(options: VideoConvertOptions, pose_options: PoseOptions) -> FrameSpec:
    """Frames as the pose encoder gets them: the whole picture resized to height x width, RGB in [0, 1]."""
    return FrameSpec(
        height=pose_options.height,
        width=pose_options.width,
        fps=options.fps,
        window=options.model.frames,
        stride=options.stride,
        scale=1.0 / 255.0,
        offset=0.0,
        interpolation=options.interpolation,
        fit=options.fit,
    )


# ---------------------------------------------------------------- keypoints, cached per clip


def _file_sha256(path: str) -> str:
    try:
        return sha256_file(Path(path))
    except OSError:
        return hashlib.sha256(path.encode()).hexdigest()


def cache_key(clip: Clip, spec: FrameSpec, model_shas: Sequence[str]) -> str:
    """What the keypoints of a clip depend on: its bytes, the two models, the frames kept and their geometry."""
    what = json.dumps(
        {
            "clip": _file_sha256(clip.source),
            "models": list(model_shas),
            "frames": len(clip),
            "padded": clip.padded_frames,
            "frame": [spec.height, spec.width, spec.fps, spec.interpolation, spec.fit],
            "features": [pose.FEATURE_DIM, pose.FEATURE_CLIP, ENCODER_VERSION],
        },
        sort_keys=True,
    )
    return hashlib.sha256(what.encode()).hexdigest()[:32]


def clip_keypoints(
    encoder: PoseEncoder, clip: Clip, spec: FrameSpec, cache: Path | None, model_shas: Sequence[str]
) -> tuple[np.ndarray, bool]:
    """(n_frames, FEATURE_DIM) features of one clip, and whether they came from the cache."""
    file = cache / f"{cache_key(clip, spec, model_shas)}.npz" if cache is not None else None
    if file is not None and file.is_file():
        try:
            with np.load(file) as data:
                feats = np.asarray(data["features"], np.float32)
            if feats.shape == (len(clip), pose.FEATURE_DIM):
                return feats, True
        except (OSError, ValueError, KeyError):
            log.warning("%s: unreadable keypoint cache entry, computing again", file)
    encoder.reset()  # a clip is a segment of its own, as on the device
    feats = np.stack([encoder.encode(normalise_frames(f, spec)) for f in clip.frames]).astype(np.float32)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, features=feats, source=clip.source)
        tmp.replace(file)
    return feats, False


def bundle_keypoints(
    bundle: Bundle,
    models: Any,
    dataset: VideoDataset,
    clip_ids: Sequence[int],
    spec: FrameSpec,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> dict[int, np.ndarray]:
    """Keypoint features of the clips through a loaded pose bundle's encoder (``edge-har evaluate-video``).

    Cached like the conversion's (``cache_dir``, else $EDGE_HAR_KEYPOINT_CACHE or the default folder),
    keyed by the bundle's pose models (their sha256 checked when it loaded): a second evaluation of the
    same clips reads them instead of running the pose models again.
    """
    from tqdm import tqdm

    variant = bundle.variant(models.variant)
    shas = [variant.parts[p].sha256 for p in (DETECTOR_PART, LANDMARKS_PART)]
    cache = PoseOptions(Path("."), cache_dir=cache_dir).cache()
    out = {}
    for ci in tqdm(list(clip_ids), desc="keypoints", unit="clip", leave=False, disable=not progress):
        out[ci] = clip_keypoints(models.pose, dataset.clips[ci], spec, cache, shas)[0]
    return out


# ---------------------------------------------------------------- the conversion path


class PosePath(VideoPath):
    """``VideoPath`` with BlazePose as the frozen encoder: only the head trains and is quantized."""

    what = "pose conversion"
    keras_model_note = (
        KERAS_MODEL_FILE + " (the Keras head, float32, over keypoint features; the pose models are .tflite)"
    )

    def __init__(
        self,
        options: VideoConvertOptions,
        pose_options: PoseOptions,
        dataset: VideoDataset | None = None,
        split: Any = None,
    ) -> None:
        super().__init__(options, dataset, split)
        if options.model.mode != "video":
            raise ConvertError("--backbone pose needs --mode video (a sequence of frames per prediction)")
        self.pose_options = pose_options
        self.models_info = pose_models(pose_options.models_dir)
        self.spec = pose_spec(options, pose_options)
        self.features: dict[int, np.ndarray] = {}
        self.keypoint_stats: dict[str, Any] = {}

    def prepare(self, specs: Sequence[Any], timings: dict[str, float]) -> None:
        options, spec = self.options, self.spec
        with stage("load data", timings):
            if self.dataset is None:
                if options.data is None:
                    raise ConvertError("no data set given")
                self.dataset = load_video_dataset(
                    options.data, spec, progress=options.progress, **options.dataset_options
                )
            dataset = self.dataset
            self.labels = list(dataset.labels)
        with stage("split", timings):
            if self.split is None:
                self.split = split_clips(dataset, **options.split_options)
            self.sets = make_sets(dataset, self.split, spec)
        with stage("keypoints", timings):
            self.compute_keypoints()
            self.keep_published()
        log.info(
            "split by %s: %d/%d/%d clips, %d/%d/%d windows of %d frames with a person (train/val/test)",
            self.split.by,
            len(self.split.train),
            len(self.split.val),
            len(self.split.test),
            *(len(self.sets[s].index) for s in ("train", "val", "test")),
            spec.window,
        )
        n_train = len(self.sets["train"].index)
        if options.train.batch_size is None:  # sized from the data, as the other video paths do
            options.train = replace(options.train, batch_size=auto_batch_size(n_train))
            log.info("batch size %d, chosen from %d training windows", options.train.batch_size, n_train)
        if any(s.needs_calibration for s in specs):
            size = options.calibration_size or auto_calibration_size(n_train)
            self.head_picks = stratified_pick(self.sets["train"].y, min(size, n_train), options.train.seed)

    def encoder(self, root: Path | None = None) -> PoseEncoder:
        base = Path(root) if root is not None else self.models_info["root"]
        return PoseEncoder(
            TFLiteModel(base / POSE_FILES[DETECTOR_PART], num_threads=1),
            TFLiteModel(base / POSE_FILES[LANDMARKS_PART], num_threads=1),
            track=self.pose_options.track,
        )

    @property
    def model_shas(self) -> list[str]:
        files = self.models_info["files"]
        return [files[DETECTOR_PART]["sha256"], files[LANDMARKS_PART]["sha256"]]

    def compute_keypoints(self) -> None:
        """Features of every clip of the split, from the cache or the pose models; frames with a person counted."""
        from tqdm import tqdm

        assert self.dataset is not None
        encoder, cache = self.encoder(), self.pose_options.cache()
        ids = sorted(set(self.sets["train"].clips) | set(self.sets["val"].clips) | set(self.sets["test"].clips))
        hits = 0
        for ci in tqdm(ids, desc="keypoints", unit="clip", leave=False, disable=not self.options.progress):
            feats, cached = clip_keypoints(encoder, self.dataset.clips[ci], self.spec, cache, self.model_shas)
            self.features[ci] = feats
            hits += cached
        rows = clip_rows(self.features, self.dataset.clips)
        total = sum(r["frames"] for r in rows)
        found = sum(r["with_person"] for r in rows)
        self.keypoint_stats = {
            "frames": total,
            "frames_with_person": found,
            "frames_no_person": total - found,
            "clips_from_cache": hits,
        }
        self.clip_rows = rows
        log.info(
            "keypoints: a person in %d of %d frames (%d of %d clips from the cache %s)",
            found,
            total,
            hits,
            len(ids),
            cache,
        )
        if found == 0:
            raise ConvertError("the pose models found no person in any frame of the data set; nothing to learn from")

    def keep_published(self) -> None:
        """Keep only the windows the device publishes (a person in at least one frame), on every side.

        The windows left out are counted per class (``pose.coverage``); the clips and classes where
        a person is rarely found are warned about, and a class whose test windows are mostly without
        one refuses the conversion unless ``--allow-no-person``.
        """
        counts = {}
        for side, data in self.sets.items():
            kept, counts[side] = published(data.index, self.windows(data), self.labels)
            self.sets[side] = SplitData(kept, data.clips)
        self.coverage = Coverage(
            self.clip_rows,
            class_rows(self.clip_rows),
            counts,
            self.pose_options.min_person_rate,
            [],
        )
        self.coverage.warn()
        self.coverage.allowed_no_person = check_test_classes(self.coverage, self.pose_options.allow_no_person)
        train_classes_check(self.coverage, self.labels)
        if not len(self.sets["test"].index):
            raise ConvertError(
                "no test window has a person: the device would publish nothing, so there is nothing to score"
            )

    def windows(self, data: SplitData) -> np.ndarray:
        assert self.dataset is not None
        return data.index.gather(per_clip(self.features, len(self.dataset.clips), (pose.FEATURE_DIM,)))

    def train(self, work: Path) -> Trained:
        from edge_har.convert.train import train_model

        assert self.dataset is not None
        x = {side: self.windows(d) for side, d in self.sets.items()}
        self.x_test = x["test"]
        config = self.options.model
        result = train_model(
            x["train"],
            self.sets["train"].y,
            x["val"],
            self.sets["val"].y,
            len(self.labels),
            config.head_config(),
            self.options.train,
            work,
        )
        self.head = result.model
        self.x_train = x["train"]
        info = {
            "model": {**config.to_json(), "backbone": "pose", "input_size": None, "weights": "mediapipe blazepose"},
            "trained": "head only (BlazePose keypoints computed once per frame, cached per clip)",
        }
        return Trained(result, info)

    def keras_reference(self, staging: Path) -> np.ndarray:
        self.head.save(staging / KERAS_MODEL_FILE, include_optimizer=False, save_format="h5")
        return np.asarray(self.head.predict(self.x_test, batch_size=64, verbose=0))

    def static_head(self) -> Any:
        from edge_har.convert.models import import_tf
        from edge_har.convert.video_models import build_head

        _, keras = import_tf()
        config = self.options.model
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy("float32")
        try:
            head = build_head(
                config,
                (config.frames, pose.FEATURE_DIM),
                len(self.labels),
                batch_size=1,
                unrolled_lstm=config.lstm_export == "unrolled",
            )
        finally:
            keras.mixed_precision.set_global_policy(previous)
        head.set_weights(self.head.get_weights())
        return head

    def quantize(self, staging: Path, specs: Sequence[Any]) -> dict[str, dict[str, Any]]:
        from edge_har.convert.quantize import convert_variants

        root = self.models_info["root"]
        pose_parts: dict[str, dict[str, Any]] = {}
        for part, name in POSE_FILES.items():
            shutil.copyfile(root / name, staging / name)
            model = TFLiteModel(staging / name, num_threads=1)
            pose_parts[part] = {
                "file": name,
                "sha256": sha256_file(staging / name),
                "size_bytes": (staging / name).stat().st_size,
                "quantization": "as published by MediaPipe (float16 weights, float32 tensors); shared by every variant",
                "input": model.input.to_json(),
                "output": model.output.to_json(),
            }
        shutil.copyfile(root / LICENCE_FILE, staging / LICENCE_FILE)
        static = self.static_head()
        plain = [s for s in specs if not s.needs_calibration]
        calibrated = [s for s in specs if s.needs_calibration]
        heads = {c.name: c for c in convert_variants(static, plain)}
        if calibrated:
            assert self.head_picks is not None
            heads.update({c.name: c for c in convert_variants(static, calibrated, self.x_train[self.head_picks])})
        variants: dict[str, dict[str, Any]] = {}
        for s in specs:
            parts = {
                **{k: dict(v) for k, v in pose_parts.items()},
                "head": write_part(staging, "head", s.name, heads[s.name]),
            }
            variants[s.name] = {
                "quantization": s.quantization,
                "full_integer": s.full_integer,
                "description": s.description + " (head; the pose models are shared)",
                "parts": parts,
                "size_bytes": sum(p["size_bytes"] for p in parts.values()),
            }
            if s.needs_calibration:
                variants[s.name]["head_calibration"] = (
                    f"{0 if self.head_picks is None else len(self.head_picks)} training windows of keypoints"
                )
        self.static = static
        return variants

    def document(self, variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
        assert self.dataset is not None
        spec = self.spec
        sha = (
            variants["float32"]["parts"]["head"]["sha256"]
            if "float32" in variants
            else next(iter(variants.values()))["parts"]["head"]["sha256"]
        )
        in_shape = [1, spec.window, spec.height, spec.width, 3]
        document = bundle_document(
            model_id=model_id(self.dataset.name, "pose-cnn-lstm", sha),
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
            "layout": "NTHWC",
            "note": "frames after edge_har.core.frames (sampled at fps, resized, RGB, scaled to [0, 1]); the pose "
            "encoder turns each into keypoint features [133], the head reads the last T [1, T, 133]",
        }
        files = self.models_info["files"]
        document["video"] = {
            "mode": "pose",
            "frames": spec.window,
            "stride": spec.stride,
            "fps": spec.fps,
            "feature_shape": [pose.FEATURE_DIM],
            "head_sequence_shape": [spec.window, pose.FEATURE_DIM],
            "backbone": "pose",
            "streaming": "pose detector (when no person is tracked) + landmark model once per kept frame; head every "
            "stride frames over the last T keypoint vectors",
        }
        document["pose"] = {
            "encoder": "edge_har.core.pose_encoder.PoseEncoder (LiteRT; no mediapipe, no TensorFlow)",
            "models": {
                part: {**files[part], "bundle_file": POSE_FILES[part]} for part in (DETECTOR_PART, LANDMARKS_PART)
            },
            "source": self.models_info["source"],
            "licence": {"name": "Apache-2.0", "file": LICENCE_FILE, "sha256": files["licence"]["sha256"]},
            "features": f"{pose.NUM_LANDMARKS} landmarks x (x, y, z, visibility), x/y/z centred on the hip centre and "
            f"divided by the torso length, clipped to +-{pose.FEATURE_CLIP}; then a person flag (1 = found). A frame "
            "without a person is all zeros (the head sees the mask); a window with no person in any frame is "
            "skipped on the device and counted (windows_no_person)",
            "crop": "MediaPipe's rotated square: 1.25 x the detector's (or the last landmarks') body size, turned upright",
            "tracking": self.pose_options.track,
            "keypoints": self.keypoint_stats,
            "coverage": self.coverage.to_json(),
        }
        return document

    def evaluate(self, bundle: Bundle, variant: str) -> Any:
        """The bundle's head on the test windows; features from the bundle's pose models (cache keyed by their sha256)."""
        from edge_har.convert.evaluate import evaluate_model
        from edge_har.core.video_models import VideoModels

        assert self.dataset is not None
        models = VideoModels.load(bundle, variant, backend=self.options.evaluate_backend)
        assert models.head is not None
        shas = [bundle.variant(variant).parts[p].sha256 for p in (DETECTOR_PART, LANDMARKS_PART)]
        if shas != self.model_shas:
            raise ConvertError(f"{bundle.root}: the bundle's pose models are not the ones the keypoints came from")
        x = self.windows(self.sets["test"])
        return evaluate_model(
            models.head, x, self.sets["test"].y, bundle.labels, variant, progress=self.options.progress
        )

    def check_evaluations(self, evaluations: Mapping[str, Any], keras_probs: np.ndarray) -> dict[str, Any]:
        skipped = {"test_windows_no_person": self.coverage.windows.get("test", {})}
        if "float32" not in evaluations:
            return skipped
        diff = float(np.abs(evaluations["float32"].probabilities - keras_probs).max())
        log.info("float32 TFLite head vs Keras head: max |probability difference| %.2e", diff)
        return {"float32_vs_keras_max_abs_diff": diff, **skipped}

    def split_section(self) -> dict[str, Any]:
        """The split, with its window counts on the windows the device publishes and the skipped ones apart."""
        info = super().split_section()
        info["windows_counted"] = COUNTED
        info["windows_skipped_no_person"] = {side: self.coverage.skipped(side) for side in self.sets}
        return info

    def calibration_info(self) -> dict[str, Any]:
        return {
            "calibration_frames": None,
            "calibration_head_windows": None if self.head_picks is None else len(self.head_picks),
        }


def run_convert_pose(
    options: VideoConvertOptions, pose_options: PoseOptions, dataset: VideoDataset | None = None, split: Any = None
) -> Path:
    """The pose conversion end to end; returns the bundle directory (AccuracyGateError: nothing written)."""
    from edge_har.convert.skeleton import run_skeleton

    return run_skeleton(PosePath(options, pose_options, dataset, split), options)
