"""Pose-bundle figures: a person found per frame, encoder and head latency, frames/s from a 320x240 file.

    edge-har bench pose BUNDLE --data ../shared/data/video/kth-partial [--quick] [--no-daemon]
    python -m edge_har.benchmarks.pose BUNDLE --data CLIPS --out bench-results/pose   # the same, to pose-<bundle>.json

What it measures (Markdown tables on stdout; every figure in ``<out>/results.json`` under ``pose``):

* **person found**: every clip of ``--data`` (clip folders ``<DIR>/<class>/<clip>``, or one
  clip file) read with the bundle's own frame preprocessing and rate, through the device's
  ``PoseEncoder`` (tracking on, as the daemon runs it): frames with a person / frames, per clip
  and per class, and how many frames needed the detector.
* **latency** per call, per variant: the detector (224 px) and the landmark model (256 px)
  timed on real frames of the clips, the encoder per frame as it ran over the clips (detector
  only when the track is lost), and the head over windows of T keypoint vectors. The pose
  models are the same files in every variant; only the head differs.
* **fps**: a 320x240 file (the first clip upscaled, played ``--repeat`` times, written with
  OpenCV) through the daemon's two stages on two threads
  (``edge_har.benchmarks.video.sustained_fps``) and, unless ``--no-daemon``, the real daemon
  (``edge-har run``) publishing to a private mosquitto (or ``--broker``), with the windows it
  skipped for want of a person (``windows_no_person``) and its ``no_person_s`` at the end.

A figure that cannot be measured (no frame with a person for the landmark model, a clip shorter
than one window for the head, no mosquitto for the daemon) is ``null`` in the JSON with a
``note`` saying why, and ``-`` in the tables with the note under them.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from edge_har.benchmarks.report import latency_summary
from edge_har.core.errors import EdgeHarError
from edge_har.core.timing import time_calls

log = logging.getLogger(__name__)

SUITE = "pose"
CLIP_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov")


class PoseBenchError(EdgeHarError, ValueError):
    """The bundle or the clips cannot be benchmarked as given; the message names them."""


@dataclass
class PoseSettings:
    """What ``edge-har bench pose`` measures; ``quick_settings`` is the short run."""

    data: Optional[Path] = None  # clip folders or one clip file
    variants: Optional[list[str]] = None
    threads: int = 1
    min_seconds: float = 2.0
    repeat: int = 5  # times the first clip is played in the 320x240 file
    daemon: bool = True
    broker: Optional[str] = None  # HOST[:PORT]; None: a private mosquitto
    no_daemon_why: str = "--no-daemon"  # said in the table when ``daemon`` is off
    quick: bool = False

    @classmethod
    def quick_settings(cls, **kwargs: Any) -> PoseSettings:
        return cls(**{"min_seconds": 0.3, "repeat": 1, "quick": True, **kwargs})


def is_pose_bundle(bundle: Any) -> bool:
    return bool(bundle.kind == "video" and (bundle.data.get("video") or {}).get("mode") == "pose")


def clip_files(data: Path) -> list[Path]:
    """The clip files under ``data`` (or ``data`` itself), sorted."""
    if data.is_file():
        return [data]
    return sorted(p for p in data.rglob("*") if p.is_file() and p.suffix.lower() in CLIP_SUFFIXES)


def read_clips(data: Path, spec: Any) -> list[tuple[str, str, np.ndarray]]:
    """(clip name, class, RGB frames at the model's size and rate) per clip; a single file's class is its folder."""
    from edge_har.convert.video_datasets import decode_clip, load_video_dataset

    if data.is_file():
        frames, _fps, _decoded = decode_clip(data, spec)
        return [(data.name, data.parent.name, frames)]
    dataset = load_video_dataset(data, spec, progress=False)
    return [(Path(c.source).name, c.label, c.frames) for c in dataset.clips]


def keypoint_counts(models: Any, clips: list[tuple[str, str, np.ndarray]]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Per clip: frames, frames with a person, the rate, detector runs; and each clip's model-ready frames."""
    from edge_har.core.frames import normalise_frames
    from edge_har.core.pose import person_present

    enc = models.pose
    rows, frames = [], []
    for name, label, rgb in clips:
        enc.reset()
        before = enc.counters.detector_runs
        x = normalise_frames(rgb, models.spec)
        feats = np.stack([enc.encode(f) for f in x]) if len(x) else np.zeros((0, 1), np.float32)
        frames.append(x)
        found = int(person_present(feats).sum()) if len(x) else 0
        rows.append(
            {
                "clip": name,
                "label": label,
                "frames": len(x),
                "with_person": found,
                "share": round(found / len(x), 4) if len(x) else None,
                "detector_runs": enc.counters.detector_runs - before,
            }
        )
    return rows, frames


def class_rates(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-clip counts summed per class (first-seen order): clips, frames, with a person, the rate.

    The sums are convert-video's own (``edge_har.convert.pose_coverage.class_rows``); a class
    without frames has no rate (None) here."""
    from edge_har.convert.pose_coverage import class_rows

    sums = class_rows(rows)
    return [
        {
            "label": label,
            "clips": sums[label]["clips"],
            "frames": sums[label]["frames"],
            "with_person": sums[label]["with_person"],
            "share": sums[label]["person_rate"] if sums[label]["frames"] else None,
        }
        for label in dict.fromkeys(r["label"] for r in rows)
    ]


def _rounded(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()}


def _timed(values_ms: Sequence[float] | np.ndarray, note: str) -> dict[str, Any]:
    """``latency_summary`` rounded; with no value, every figure None and the reason in ``note``."""
    if len(values_ms) == 0:
        return {**{k: None for k in latency_summary([1.0])}, "n": 0, "note": note}
    return _rounded(latency_summary(values_ms))


def latency(
    bundle: Any, variants: Sequence[str], frames: list[np.ndarray], threads: int, min_seconds: float
) -> list[dict[str, Any]]:
    """Per-call ms of the detector, the landmark model, the encoder as tracked, and each variant's head."""
    from edge_har.core.video_models import VideoModels

    everything = [f for clip in frames for f in clip]
    sample = everything[:: max(1, len(everything) // 64)]
    rows: list[dict[str, Any]] = []
    for n, name in enumerate(variants):
        models = VideoModels.load(bundle, name, num_threads=threads)
        enc = models.pose
        assert enc is not None and models.head is not None
        if n == 0:  # the pose models are the same files in every variant
            rois = [enc.detect(f) for f in sample]
            pairs = [(f, r) for f, r in zip(sample, rois) if r is not None]
            for part, call, inputs, none in (
                ("detector", enc.detect, sample, "no frame to time"),
                (
                    "landmarks",
                    lambda fr: enc.landmark(*fr),
                    pairs,
                    "the detector found no person in the sampled frames: nothing for the landmark model",
                ),
            ):
                times: Sequence[float] | np.ndarray = (
                    1000 * time_calls(call, inputs, warmup=3, runs=None, min_seconds=min_seconds) if inputs else []
                )
                rows.append({"variant": "all", "part": part, "threads": threads, **_timed(times, none)})
            per_frame: list[float] = []  # each clip once, tracking as the daemon does: every frame's encode timed
            for clip in frames:
                enc.reset()
                for f in clip:
                    started = time.perf_counter()
                    enc.encode(f)
                    per_frame.append(1000 * (time.perf_counter() - started))
            rows.append(
                {
                    "variant": "all",
                    "part": "encoder (tracked, per frame)",
                    "threads": threads,
                    **_timed(per_frame, "no frame to encode"),
                }
            )
        t = models.spec.window
        longest = max(frames, key=len) if frames else np.zeros((0,), np.float32)
        row: dict[str, Any] = {
            "variant": name,
            "part": "head",
            "threads": threads,
            "size_kib": round(models.head.path.stat().st_size / 1024, 1),
        }
        if len(longest) >= t:
            feats = np.stack([enc.encode(f) for f in longest])
            windows = np.stack([feats[i : i + t] for i in range(len(feats) - t + 1)])
            head_ms = 1000 * time_calls(
                models.head.predict, list(windows), warmup=5, runs=None, min_seconds=min_seconds
            )
            row.update(_timed(head_ms, ""))
        else:
            row.update(_timed([], f"every clip is shorter than one window ({t} frames at the model's rate)"))
        rows.append(row)
    return rows


def make_file(source: Path, out: Path, size: tuple[int, int] = (320, 240), repeat: int = 1) -> tuple[Path, int, float]:
    """``source`` decoded, resized to ``size`` (width, height), played ``repeat`` times, as MJPG AVI; (path, frames, fps)."""
    import cv2

    from edge_har.convert.video_synthetic import write_clip

    cap = cv2.VideoCapture(str(source))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(img, size, interpolation=cv2.INTER_LINEAR))
    cap.release()
    if not frames:
        raise OSError(f"{source}: no frame could be decoded")
    frames = frames * repeat
    return write_clip(out, np.stack(frames), fps), len(frames), float(fps)


def _daemon_rows(
    bundle_dir: Path, names: Sequence[str], file: Path, n_frames: int, settings: PoseSettings, out: Path
) -> tuple[list[dict[str, Any]], Optional[str]]:
    """The real daemon per variant; ([], why) when it cannot run (no mosquitto)."""
    from edge_har.benchmarks.video import daemon_fps

    if settings.broker:
        return [
            daemon_fps(bundle_dir, n, file, n_frames, settings.threads, settings.broker, out / "daemon") for n in names
        ], None
    from edge_har.mqtt.local_broker import BrokerError, LocalBroker

    with tempfile.TemporaryDirectory() as work:
        try:
            broker = LocalBroker(work).start()
        except (BrokerError, OSError) as exc:  # no mosquitto, or it would not start: the other figures stand
            return [], f"the daemon was not run: {exc}"
        try:
            return [
                daemon_fps(bundle_dir, n, file, n_frames, settings.threads, broker.address, out / "daemon")
                for n in names
            ], None
        finally:
            broker.stop()


def run_pose(bundle_dir: Path, settings: PoseSettings, out: Path) -> dict[str, Any]:
    """Every measurement on one pose bundle; the suite's results section (``suite: pose``)."""
    from edge_har.benchmarks import report
    from edge_har.benchmarks.video import sustained_fps
    from edge_har.core.bundle import Bundle
    from edge_har.core.video_models import VideoModels

    started = time.perf_counter()
    bundle = Bundle.load(bundle_dir)
    if bundle.kind != "video":
        raise PoseBenchError(
            f"{bundle.root}: a {bundle.kind} bundle; bench pose needs one from convert-video --backbone pose"
        )
    if not is_pose_bundle(bundle):
        raise PoseBenchError(
            f"{bundle.root}: a video bundle without the pose encoder; measure it with edge-har bench video {bundle.root}"
        )
    if settings.data is None:
        raise PoseBenchError("--data: the clips to find people in (<DIR>/<class>/<clip> or one clip file) are needed")
    data = Path(settings.data)
    files = clip_files(data) if data.exists() else []
    if not files:
        raise PoseBenchError(f"--data {data}: no clip file ({', '.join(CLIP_SUFFIXES)}) there")
    names = list(settings.variants or bundle.variants)
    for name in names:
        bundle.variant(name)  # BundleError naming the known variants
    out.mkdir(parents=True, exist_ok=True)
    section = report.suite_header(SUITE, bundle)
    section["settings"] = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()}
    section["video"] = bundle.data.get("video")
    from edge_har.convert.video_datasets import ClipError, VideoDatasetError

    models = VideoModels.load(bundle, names[0], num_threads=settings.threads)
    try:
        clips = read_clips(data, models.spec)
    except (ClipError, VideoDatasetError) as exc:
        raise PoseBenchError(f"--data {data}: {exc}") from exc
    counts, frames = keypoint_counts(models, clips)
    section["keypoints"] = counts
    section["keypoints_by_class"] = class_rates(counts)
    section["latency"] = latency(bundle, names, frames, settings.threads, settings.min_seconds)
    file, n_frames, fps = make_file(files[0], out / "pose_320x240.avi", repeat=settings.repeat)
    section["fps_clip"] = {"file": str(file), "source": str(files[0]), "frames": n_frames, "fps": fps}
    section["fps"] = [sustained_fps(Path(bundle_dir), name, file, settings.threads) for name in names]
    section["daemon"], why = (
        _daemon_rows(Path(bundle_dir), names, file, n_frames, settings, out)
        if settings.daemon
        else ([], f"the daemon was not run ({settings.no_daemon_why})")
    )
    if why:
        section["daemon_note"] = why
    return report.finish_section(section, started)


# ---------------------------------------------------------------- tables


def _rate(share: Any) -> Any:
    return None if share is None else f"{100 * share:.1f}%"


def _num(value: Any, digits: int) -> Any:
    """A figure with ``digits`` decimals; None (not measured) stays None, which the table prints as '-'."""
    return None if value is None else f"{float(value):.{digits}f}"


def format_pose(section: dict[str, Any]) -> str:
    """The suite's Markdown tables; a missing figure is '-' with the reason under its table (never nan)."""
    from edge_har.benchmarks.report import format_table

    parts = [
        format_table(
            ["clip", "class", "frames", "with a person", "person found", "detector runs"],
            [
                [r["clip"], r["label"], r["frames"], r["with_person"], _rate(r["share"]), r["detector_runs"]]
                for r in section["keypoints"]
            ],
            title="Person found per clip (the bundle's size and rate, tracking on)",
        ),
        format_table(
            ["class", "clips", "frames", "with a person", "person found"],
            [
                [r["label"], r["clips"], r["frames"], r["with_person"], _rate(r["share"])]
                for r in section["keypoints_by_class"]
            ],
            title="Person found per class",
        ),
    ]
    notes = []
    rows = []
    for r in section["latency"]:
        mark = ""
        if r.get("note"):
            notes.append(r["note"])
            mark = f" [{len(notes)}]"
        rows.append([r["variant"], r["part"] + mark, r["threads"], r.get("p50_ms"), r.get("p90_ms"), r.get("mean_ms")])
    text = format_table(["variant", "part", "thr", "p50 ms", "p90 ms", "mean ms"], rows, title="Latency per call")
    parts.append(text + "".join(f"\n[{i}] {n}" for i, n in enumerate(notes, start=1)))
    fps_rows = [
        [
            "two stages",
            r["variant"],
            r["threads"],
            _num(r["frames_per_s"], 1),
            _num(r["encoded_frames_per_s"], 1),
            r["predictions"],
            r.get("windows_no_person"),
            _num(r.get("no_person_s"), 1),
            None,
        ]
        for r in section["fps"]
    ]
    daemon_notes = []
    for r in section.get("daemon") or []:
        if "error" in r:
            lines = str(r["error"]).strip().splitlines()
            daemon_notes.append(f"daemon {r['variant']} failed: {lines[-1] if lines else 'no message'}")
            fps_rows.append(["daemon", r["variant"], None, None, None, None, None, None, None])
            continue
        fps_rows.append(
            [
                "daemon",
                r["variant"],
                r["threads"],
                _num(r["frames_per_s"], 1),
                None,
                r["windows"],
                r.get("windows_no_person"),
                _num(r.get("no_person_s"), 1),
                _num(r.get("rss_mb"), 0),
            ]
        )
    clip = section.get("fps_clip") or {}
    text = format_table(
        ["run", "variant", "thr", "frames/s", "encoded/s", "predictions", "windows no person", "no_person_s", "RSS MB"],
        fps_rows,
        title=f"Frames per second: {Path(clip.get('file', '?')).name} ({clip.get('frames')} frames at "
        f"{clip.get('fps')} fps, from {Path(clip.get('source', '?')).name})",
    )
    text += "\n(encoded/s: the daemon reports no per-frame count; RSS: the two stages run in this process)"
    if section.get("daemon_note"):
        text += f"\n{section['daemon_note']}"
    for n in daemon_notes:
        text += f"\n{n}"
    parts.append(text)
    return "\n\n".join(parts)


# ---------------------------------------------------------------- edge-har bench pose


def flags(p: argparse.ArgumentParser) -> None:
    """``edge-har bench pose``'s own flags (BUNDLE, --out, --json, --compare, --quick come from the suite row)."""
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        metavar="CLIPS",
        help="clip folders (<DIR>/<class>/<clip>) or one clip file: the person-found rates and the timed frames; "
        "its first clip is the fps run's file",
    )
    p.add_argument("--variants", default=None, metavar="A,B", help="comma-separated variants (default: all)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="interpreter threads (default: 1)")
    p.add_argument(
        "--min-seconds", type=float, default=None, metavar="S", help="timing per measurement (default 2; --quick 0.3)"
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        metavar="N",
        help="times the first clip is played in the 320x240 fps file (default 5; --quick 1)",
    )
    p.add_argument("--no-daemon", action="store_true", help="skip the real daemon run (it needs mosquitto)")
    p.add_argument(
        "--broker",
        default=None,
        metavar="HOST[:PORT]",
        help="the daemon publishes here (default: a private mosquitto on a free port)",
    )


def settings_from_args(args: argparse.Namespace) -> PoseSettings:
    from edge_har.core.errors import CommandError

    base = PoseSettings.quick_settings() if args.quick else PoseSettings()
    base.data = args.data
    base.variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    base.threads = args.threads
    if args.min_seconds is not None:
        base.min_seconds = args.min_seconds
    if args.repeat is not None:
        base.repeat = args.repeat
    base.daemon = not args.no_daemon
    base.broker = args.broker
    if base.threads < 1 or base.repeat < 1 or not base.min_seconds > 0:
        raise CommandError("--threads and --repeat must be >= 1, --min-seconds > 0")
    return base


def run_settings(args: argparse.Namespace, settings: PoseSettings) -> int:
    """Run the suite and write/print it the way every suite does (``cli._finish``)."""
    from edge_har.benchmarks.cli import _finish, _load_bundle
    from edge_har.core.bundle import BundleError
    from edge_har.core.errors import CommandError

    _load_bundle(args.bundle, settings.variants or [])
    try:
        section = run_pose(args.bundle, settings, args.out)
    except (PoseBenchError, BundleError) as exc:
        raise CommandError(str(exc)) from exc
    _finish(args, section, SUITE, format_pose(section))
    return 0


def run_command(args: argparse.Namespace) -> int:
    return run_settings(args, settings_from_args(args))


def suite() -> Any:
    """This suite's row of ``edge_har.benchmarks.cli.SUITES``."""
    from edge_har.benchmarks.cli import Suite

    return Suite(
        SUITE,
        help="a pose bundle: a person found per clip and class, detector/landmark/encoder/head latency, frames/s "
        "through the daemon's stages and the real daemon",
        description=(
            "Measure a pose bundle (edge-har convert-video --backbone pose) as the device runs it:\n\n"
            "  person found  every clip of --data through the bundle's preprocessing and rate and the device's\n"
            "                PoseEncoder, tracking on: frames with a person / frames, per clip and per class,\n"
            "                and the frames that needed the detector\n"
            "  latency       per call: the BlazePose detector and landmark model on real frames of the clips,\n"
            "                the encoder per frame as it tracked through them, each variant's head over T\n"
            "                keypoint vectors\n"
            "  frames/s      the first clip upscaled to 320x240 through the daemon's two stages and (unless\n"
            "                --no-daemon) the real daemon (edge-har run) publishing to a private mosquitto, with\n"
            "                the windows skipped for want of a person (windows_no_person) and no_person_s\n\n"
            "A figure that cannot be measured is '-' in the tables with the reason, null in the JSON.\n"
            "edge-har bench video BUNDLE runs this suite for a pose bundle. See benchmarks/pose.py.\n\n"
            "examples:\n"
            "  edge-har bench pose bundles/kth-pose --data ../shared/data/video/kth-partial --quick --no-daemon\n"
            "  edge-har bench pose bundles/kth-pose --data ../shared/data/video/kth-partial --out bench-results/pose"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        flags=flags,
        run=run_command,
        shared="bundle",
    )


# ---------------------------------------------------------------- python -m edge_har.benchmarks.pose


def run(
    bundle_dir: Path,
    data: Path,
    out: Path,
    variants: Sequence[str] | None,
    threads: int,
    min_seconds: float,
    daemon: bool,
    repeat: int = 5,
) -> dict[str, Any]:
    """``python -m edge_har.benchmarks.pose``: the same as ``edge-har bench pose``, to ``<out>/pose-<bundle>.json``."""
    settings = PoseSettings(data, list(variants) if variants else None, threads, min_seconds, repeat, daemon)
    result = run_pose(bundle_dir, settings, out)
    print(format_pose(result))
    from edge_har.benchmarks.report import _json_ready

    file_out = out / f"pose-{Path(bundle_dir).name}.json"
    file_out.write_text(json.dumps(_json_ready(result), indent=2, allow_nan=False) + "\n")
    print(f"\nwritten {file_out}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge_har.benchmarks.pose",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bundle", type=Path, help="a pose bundle (edge-har convert-video --backbone pose)")
    parser.add_argument("--data", type=Path, required=True, help="clip folders (<DIR>/<class>/<clip>) or one clip")
    parser.add_argument(
        "--out", type=Path, default=Path("bench-results/pose"), help="report folder (default: %(default)s)"
    )
    parser.add_argument("--variants", default=None, help="comma-separated variants (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads (default: %(default)s)")
    parser.add_argument(
        "--min-seconds", type=float, default=2.0, help="timing budget per measurement (default: %(default)s)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="times the first clip is played in the 320x240 file (default: %(default)s)",
    )
    parser.add_argument("--no-daemon", action="store_true", help="skip the real daemon run (needs mosquitto)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        run(
            args.bundle,
            args.data,
            args.out,
            args.variants.split(",") if args.variants else None,
            args.threads,
            args.min_seconds,
            not args.no_daemon,
            args.repeat,
        )
    except PoseBenchError as exc:
        parser.exit(2, f"error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
