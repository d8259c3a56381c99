"""``edge-har convert-video`` and ``edge-har evaluate-video``: the camera path's workstation commands.

A separate subcommand rather than ``convert --kind video``: a video data set,
model and export share few flags with the sensor ones (frames per second and
frame size instead of window seconds and channels, a CNN backbone instead of
Conv1D blocks), and one ``--help`` mixing both would explain neither. The
training, quantization and bundle flags are the sensor command's own
(``edge_har.convert.train.add_train_arguments`` and the same names and defaults), so a
user who knows ``convert`` knows these.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from edge_har.core.errors import CommandError

log = logging.getLogger(__name__)

CONVERT_VIDEO_EPILOG = """\
examples:
  # MobileNetV2 (ImageNet weights, frozen) + LSTM over 8 frames at 10 fps, KTH-style folders
  edge-har convert-video --data /work/shared/data/video/kth-partial --subject-regex 'person(\\d+)' --out bundles/kth
  # a small Conv2D stack trained from scratch, 64 px frames, a prediction every 2 frames
  edge-har convert-video --data clips/ --backbone plain --input-size 64 --frames 8 --stride 2 --out bundles/clips
  # still images listed in train.csv (filename,label): the CNN's 7x7 map read as 49 steps by the LSTM
  edge-har convert-video --data har_images/ --mode image-seq --weights PATH/to/no_top.h5 --out bundles/images
  # BlazePose keypoints per frame (pretrained, offline) + the CNN-LSTM head over them
  scripts/get_pose_models.sh ~/pose && edge-har convert-video --data clips/ --backbone pose --pose-models ~/pose --out bundles/pose

The bundle holds, per variant, encoder_<variant>.tflite (one frame -> a feature vector) and
head_<variant>.tflite (the last T feature vectors -> class probabilities): the device runs the encoder
once per frame and the head every --stride frames over a ring buffer, instead of the whole CNN over
every frame of every overlapping window. --clip-model adds clip_<variant>.tflite (the whole model) for
comparisons. Every variant is evaluated on the test split exactly as the device runs it, and the bundle
is refused (exit status 3, nothing written) when int8 accuracy is more than --max-int8-drop points
below float32.
"""


def _extensions(text: str) -> tuple[str, ...] | None:
    if text.strip().lower() == "any":
        return None
    return tuple(e if e.startswith(".") else f".{e}" for e in (p.strip().lower() for p in text.split(",")) if e)


def _names(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def add_video_data_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    from edge_har.convert.video_datasets import LAYOUTS, SHORT_POLICIES, VIDEO_EXTENSIONS

    group = parser.add_argument_group("data (clip folders or still images)")
    group.add_argument(
        "--data",
        type=Path,
        required=required,
        metavar="DIR",
        help="<DIR>/<class>/<clip>.avi|.mp4|..., <DIR>/train/ + <DIR>/train.csv (filename,label), or camera "
        "sessions from `edge-har record` (video.json; each labelled segment a clip)",
    )
    group.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="auto",
        help="auto: images when a CSV lists them, recorded when camera sessions (video.json) lie below, clip "
        "folders otherwise (default: %(default)s)",
    )
    group.add_argument(
        "--short-clips",
        choices=SHORT_POLICIES,
        default="pad",
        help="clips with fewer frames than one window: pad (repeat the last frame) or skip; both are "
        "counted (default: %(default)s)",
    )
    group.add_argument(
        "--subject-regex",
        default=None,
        metavar="REGEX",
        help="regex whose first group is the subject id in a clip's file name, e.g. 'person(\\d+)' for KTH",
    )
    group.add_argument(
        "--extensions",
        type=_extensions,
        default=VIDEO_EXTENSIONS,
        metavar="EXT,...|any",
        help="clip file extensions to read, or 'any' to try every file (default: common video formats)",
    )
    group.add_argument(
        "--classes",
        type=_names,
        default=None,
        metavar="NAME,...",
        help="only these class folders, in this order (default: all)",
    )
    group.add_argument(
        "--max-frames",
        type=int,
        default=None,
        metavar="N",
        help="keep at most N sampled frames per clip (long clips of one action add little)",
    )
    group.add_argument(
        "--csv",
        dest="csv_name",
        default=None,
        metavar="FILE",
        help="image layout: the CSV listing the images (default: train.csv, or the one CSV naming both columns)",
    )
    group.add_argument(
        "--images-dir", default="train", help="image layout: folder of the images (default: %(default)s)"
    )
    group.add_argument(
        "--filename-column", default="filename", help="image layout: column of file names (default: %(default)s)"
    )
    group.add_argument("--label-column", default="label", help="image layout: column of labels (default: %(default)s)")


def dataset_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "layout": args.layout,
        "short": args.short_clips,
        "subject_regex": args.subject_regex,
        "extensions": args.extensions,
        "classes": args.classes,
        "max_frames": args.max_frames,
        "csv_name": args.csv_name,
        "images_dir": args.images_dir,
        "filename_column": args.filename_column,
        "label_column": args.label_column,
    }


def _input_errors() -> tuple[type[BaseException], ...]:
    from edge_har.convert.evaluate import EvaluationError
    from edge_har.convert.export import ExportError
    from edge_har.convert.quantize import CalibrationError
    from edge_har.convert.video_datasets import VideoDatasetError
    from edge_har.convert.video_models import VideoModelError
    from edge_har.core.bundle import BundleError
    from edge_har.core.frames import FrameError
    from edge_har.core.interpreter import InterpreterError

    return (
        BundleError,
        FrameError,
        InterpreterError,
        EvaluationError,
        ExportError,
        CalibrationError,
        VideoDatasetError,
        VideoModelError,
    )


# ---------------------------------------------------------------- convert-video


def add_pose_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backbone pose`` and its flags (edge_har.convert.pose_pipeline): BlazePose keypoints per frame."""
    group = parser.add_argument_group(
        "pose backbone (--backbone pose)",
        "The device skips a window in which no frame has a person, so such windows are left out of\n"
        "training, of the int8 gate and of every score, and counted per class instead (bundle.json\n"
        "pose.coverage and the summary); clips and classes where a person is rarely found are warned about.",
    )
    group.add_argument(
        "--pose-models",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder made by scripts/get_pose_models.sh DIR (BlazePose detector + landmark_full .tflite, licence)",
    )
    group.add_argument(
        "--pose-frame",
        default="320x240",
        metavar="WxH",
        help="frame size the pose models see, whole picture resized (default: %(default)s)",
    )
    group.add_argument(
        "--keypoint-cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="keypoints per clip (default: $EDGE_HAR_KEYPOINT_CACHE or ~/.cache/edge-har/keypoints)",
    )
    group.add_argument("--no-pose-tracking", action="store_true", help="run the detector on every frame")
    group.add_argument(
        "--min-person-rate",
        type=float,
        default=None,
        metavar="R",
        help="warn about a class whose frames have a person less often than this share (default: 0.5)",
    )
    group.add_argument(
        "--allow-no-person",
        action="store_true",
        help="convert although a class's test windows are mostly without a person (the device skips such "
        "windows, so it would publish (almost) nothing for that class; refused without this flag)",
    )


def pose_options_from_args(args: argparse.Namespace) -> Any:
    """PoseOptions for --backbone pose (None otherwise); a bad --pose-frame or a missing DIR fails here, before TF."""
    if getattr(args, "backbone", None) != "pose":
        for flag in ("pose_models", "min_person_rate"):
            if getattr(args, flag, None) is not None:
                raise CommandError(f"--{flag.replace('_', '-')} is for --backbone pose")
        if getattr(args, "allow_no_person", False):
            raise CommandError("--allow-no-person is for --backbone pose")
        return None
    from edge_har.convert.pose_coverage import DEFAULT_MIN_PERSON_RATE
    from edge_har.convert.pose_pipeline import PoseModelsError, PoseOptions, pose_models

    if args.pose_models is None:
        raise CommandError("--backbone pose needs --pose-models DIR (make it with scripts/get_pose_models.sh DIR)")
    try:
        w, h = (int(v) for v in str(args.pose_frame).lower().split("x"))
    except ValueError:
        raise CommandError(f"--pose-frame {args.pose_frame!r}: expected WIDTHxHEIGHT, e.g. 320x240") from None
    if w < 32 or h < 32:
        raise CommandError(f"--pose-frame {args.pose_frame!r}: at least 32x32 pixels")
    try:
        pose_models(args.pose_models)
    except PoseModelsError as exc:
        raise CommandError(str(exc)) from exc
    rate = DEFAULT_MIN_PERSON_RATE if args.min_person_rate is None else float(args.min_person_rate)
    if not 0.0 <= rate <= 1.0:
        raise CommandError(f"--min-person-rate {args.min_person_rate}: a share between 0 and 1")
    return PoseOptions(
        args.pose_models,
        height=h,
        width=w,
        cache_dir=args.keypoint_cache,
        track=not args.no_pose_tracking,
        min_person_rate=rate,
        allow_no_person=bool(args.allow_no_person),
    )


def register_convert_video(subparsers: Any) -> argparse.ArgumentParser:
    from edge_har.convert.cli import _positive_float, _positive_int, _variant_list
    from edge_har.convert.quantize import DEFAULT_CALIBRATION_SIZE, DEFAULT_VARIANTS, VARIANTS
    from edge_har.convert.train import add_train_arguments
    from edge_har.convert.video_models import add_video_model_arguments
    from edge_har.convert.video_pipeline import DEFAULT_FPS, DEFAULT_MAX_INT8_DROP, DEFAULT_STRIDE

    parser = subparsers.add_parser(
        "convert-video",
        description=(
            "Load labelled clips (or still images), sample and resize their frames, split by clip or subject, train "
            "a per-frame CNN (MobileNetV2 or a small Conv2D stack) with an LSTM over the last T frames, quantize the "
            "frame encoder and the temporal head to TFLite float32 / dynamic-range / int8, evaluate every variant as "
            "the device streams it, and write a model bundle."
        ),
        epilog=CONVERT_VIDEO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_video_data_arguments(parser)
    group = parser.add_argument_group("split")
    group.add_argument(
        "--split",
        dest="split_by",
        choices=("clip", "subject"),
        default="clip",
        help="clip: stratified by class, a clip on one side only; subject: --test-subjects form the test "
        "split (default: %(default)s)",
    )
    group.add_argument(
        "--test-subjects", type=_names, default=None, metavar="ID,...", help="subject ids for the test split"
    )
    group.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="share of each class's clips for testing (default: %(default)s)",
    )
    group.add_argument("--val-fraction", type=float, default=0.15, help="share for validation (default: %(default)s)")
    group = parser.add_argument_group("frames")
    group.add_argument(
        "--fps",
        type=_positive_float,
        default=DEFAULT_FPS,
        help="frames per second the model sees; faster sources are sampled down (default: %(default)s)",
    )
    group.add_argument(
        "--stride",
        type=_positive_int,
        default=DEFAULT_STRIDE,
        metavar="FRAMES",
        help="frames between predictions on the device, and between training windows (default: %(default)s)",
    )
    group.add_argument(
        "--fit",
        choices=("stretch", "crop"),
        default="stretch",
        help="stretch the whole frame to the model's square, or crop its centre first (default: %(default)s)",
    )
    group.add_argument(
        "--interpolation",
        choices=("area", "linear", "nearest", "cubic"),
        default="area",
        help="OpenCV resize interpolation, the same on the device (default: %(default)s)",
    )
    add_video_model_arguments(parser)
    add_pose_arguments(parser)
    add_train_arguments(parser)
    _batch_size_from_data(parser)
    group = parser.add_argument_group("quantization and the bundle")
    group.add_argument(
        "--variants",
        type=_variant_list,
        default=DEFAULT_VARIANTS,
        metavar="NAME,...",
        help=f"variants to produce, from {', '.join(VARIANTS)} (default: {','.join(DEFAULT_VARIANTS)})",
    )
    group.add_argument(
        "--default-variant",
        default="int8",
        help="the variant a device runs unless told otherwise (default: %(default)s)",
    )
    group.add_argument(
        "--calibration-size",
        type=_positive_int,
        default=None,
        metavar="N",
        help="training frames (encoder) and windows (head), stratified by class, for int8 calibration "
        f"(default: {DEFAULT_CALIBRATION_SIZE}, or every training frame when there are fewer)",
    )
    group.add_argument(
        "--max-int8-drop",
        type=float,
        default=DEFAULT_MAX_INT8_DROP,
        metavar="POINTS",
        help="refuse the bundle when int8 test accuracy is more than this many points below float32 "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--allow-int8-drop", action="store_true", help="write the bundle even past --max-int8-drop (recorded)"
    )
    group.add_argument(
        "--allow-degenerate",
        action="store_true",
        help="write the bundle even when a variant predicts one class for nearly every test window (recorded)",
    )
    group.add_argument(
        "--clip-model",
        action="store_true",
        help="also export the whole clip model per variant (clip_<variant>.tflite), to compare against",
    )
    group.add_argument(
        "--out", type=Path, default=None, help="bundle directory (default: bundles/<data set name>-video)"
    )
    group.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    group.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    group.add_argument(
        "--seed", type=int, default=42, help="seed for the split, initialisation and calibration (default: %(default)s)"
    )
    parser.set_defaults(func=run_convert_video_command)
    return parser


def _batch_size_from_data(parser: argparse.ArgumentParser) -> None:
    """--batch-size defaults to a size picked from the data (a fixed 128 gave 1-2 steps per epoch on small sets)."""
    from edge_har.convert.video_pipeline import AUTO_BATCH_STEPS, MAX_AUTO_BATCH, MIN_AUTO_BATCH

    parser.set_defaults(batch_size=None)
    for action in parser._actions:  # noqa: SLF001 - the shared training flag, with this command's default
        if "--batch-size" in action.option_strings:
            action.help = (
                f"global batch size (default: from the data: the largest power of two in {MIN_AUTO_BATCH}.."
                f"{MAX_AUTO_BATCH} leaving >= {AUTO_BATCH_STEPS} steps per epoch)"
            )


def run_convert_video_command(args: argparse.Namespace) -> int:
    from edge_har.convert.cli import EXIT_GATE_REFUSED, summary_table
    from edge_har.convert.pipeline import AccuracyGateError, ConvertError, _slug
    from edge_har.convert.train import TrainingError, train_config_from_args
    from edge_har.convert.video_models import VideoModelConfig, VideoModelError
    from edge_har.convert.video_pipeline import VideoConvertOptions, run_convert_video

    try:
        pose = pose_options_from_args(args)  # --backbone pose: the head's config, backbone-free
        model = VideoModelConfig.from_args(
            args if pose is None else argparse.Namespace(**{**vars(args), "backbone": "plain", "weights": "none"})
        )
    except VideoModelError as exc:
        raise CommandError(str(exc)) from exc
    try:
        options = VideoConvertOptions(
            out=args.out or Path("bundles") / f"{_slug(args.data.resolve().name)}-video",
            data=args.data,
            dataset_options=dataset_options_from_args(args),
            split_options={
                "by": args.split_by,
                "test_subjects": args.test_subjects,
                "test_fraction": args.test_fraction,
                "val_fraction": args.val_fraction,
                "seed": args.seed,
            },
            fps=args.fps,
            stride=args.stride,
            fit=args.fit,
            interpolation=args.interpolation,
            model=model,
            train=train_config_from_args(args),
            variants=args.variants,
            default_variant=args.default_variant,
            calibration_size=args.calibration_size,
            max_int8_drop=args.max_int8_drop,
            allow_int8_drop=args.allow_int8_drop,
            allow_degenerate=args.allow_degenerate,
            clip_model=args.clip_model,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            pose=pose,
        )
        out = run_convert_video(options)
    except AccuracyGateError as exc:
        raise CommandError(str(exc), code=EXIT_GATE_REFUSED) from exc
    except _input_errors() + (ConvertError, TrainingError) as exc:
        raise CommandError(str(exc)) from exc
    print(summary_table(out))
    return 0


# ---------------------------------------------------------------- evaluate-video


def register_evaluate_video(subparsers: Any) -> argparse.ArgumentParser:
    from edge_har.convert.cli import _positive_int

    parser = subparsers.add_parser(
        "evaluate-video",
        description=(
            "Run a video bundle's variants as the device streams them (encoder per frame, head per window) over a "
            "data set's clips, prepared with the bundle's own frame preprocessing, and report the scores."
        ),
        epilog="example:\n  edge-har evaluate-video bundles/kth --data /work/shared/data/video/kth-partial --split all\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bundle", type=Path, metavar="BUNDLE", help="video bundle directory (or its bundle.json)")
    add_video_data_arguments(parser)
    group = parser.add_argument_group("evaluation")
    group.add_argument("--variant", default="all", help="variant name, or 'all' (default: %(default)s)")
    group.add_argument(
        "--split",
        choices=("test", "all"),
        default="test",
        help="the bundle's recorded test clips, or every clip given (default: %(default)s)",
    )
    group.add_argument(
        "--out", type=Path, default=None, help="report directory (default: runs/evaluate/<bundle>-<split>)"
    )
    group.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "ai_edge_litert", "tflite_runtime", "tf_lite"),
        help="TFLite runtime (default: %(default)s)",
    )
    group.add_argument("--threads", type=_positive_int, default=1, help="interpreter threads (default: %(default)s)")
    group.add_argument(
        "--keypoint-cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="pose bundles: keypoints per clip, read when there and written when not (default: "
        "$EDGE_HAR_KEYPOINT_CACHE or ~/.cache/edge-har/keypoints, the folder convert-video fills; "
        "EDGE_HAR_KEYPOINT_CACHE=off computes them every time)",
    )
    group.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_evaluate_video_command)
    return parser


def run_evaluate_video_command(args: argparse.Namespace) -> int:
    from edge_har.convert.evaluate import load_bundle
    from edge_har.convert.video_pipeline import evaluate_video_bundle
    from edge_har.core.metrics import format_report

    try:
        bundle = load_bundle(args.bundle)
        out = args.out or Path("runs") / "evaluate" / f"{bundle.root.resolve().name}-{args.split}"
        results = evaluate_video_bundle(
            bundle,
            args.data,
            dataset_options=dataset_options_from_args(args),
            variants=None if args.variant == "all" else [args.variant],
            split=args.split,
            out_dir=out,
            backend=args.backend,
            num_threads=args.threads,
            progress=not args.no_progress,
            keypoint_cache=args.keypoint_cache,
        )
    except _input_errors() as exc:
        raise CommandError(str(exc)) from exc
    for name, entry in results["variants"].items():
        report = json.loads(Path(entry["files"]["metrics"]).read_text())
        print(format_report(report, title=f"\n== {name} ({args.split}: {results['data']['windows']} windows)"))
    skipped = results["data"].get("windows_no_person")
    if skipped is not None:
        from edge_har.convert.pose_coverage import person_lines

        print("\n" + "\n".join(person_lines(results["data"]["person"]["per_class"], skipped)))
    print(f"\nreports written to {out}")
    return 0
