"""Pose-bundle figures: keypoints found per frame, encoder and head latency, frames/s from a 320x240 file.

    python -m edge_har.benchmarks.pose BUNDLE --data ../shared/data/video/kth-partial --out bench-results/pose

What it measures (tables on stdout, all of it in ``<out>/pose-<bundle>.json``):

* **keypoints**: every clip of ``--data`` read with the bundle's own frame preprocessing
  and rate, through the device's ``PoseEncoder`` (tracking on, as the daemon runs it):
  frames with a person / frames, and how many frames needed the detector.
* **latency** per frame, per variant: the detector (224 px) and the landmark model
  (256 px) timed on real frames of the clips, the encoder's mean per frame as it ran
  (detector only when the track is lost), and the head over windows of T keypoint vectors.
  The pose models are the same file in every variant; only the head differs.
* **fps**: a 320x240 file (the first clip upscaled, written with OpenCV) through the
  daemon's two stages on two threads (``edge_har.benchmarks.video.sustained_fps``), and,
  with mosquitto installed, the real daemon (``edge-har run``) publishing to a private
  broker (``edge_har.benchmarks.video.daemon_fps``).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_har.benchmarks.report import latency_summary
from edge_har.benchmarks.timing import time_calls

log = logging.getLogger(__name__)


def keypoint_counts(bundle: Any, data: Path, variant: str, threads: int) -> tuple[list[dict[str, Any]], list[Any]]:
    """Per clip: frames, frames with a person, detector runs; and the clips' preprocessed frames for timing."""
    from edge_har.convert.video_datasets import load_video_dataset
    from edge_har.core.frames import normalise_frames
    from edge_har.core.pose import person_present
    from edge_har.core.video_models import VideoModels

    models = VideoModels.load(bundle, variant, num_threads=threads)
    assert models.pose is not None, f"{bundle.root}: not a pose bundle"
    dataset = load_video_dataset(data, models.spec, progress=False)
    rows, frames = [], []
    for clip in dataset.clips:
        enc = models.pose
        enc.reset()
        before = enc.counters.detector_runs
        x = normalise_frames(clip.frames, models.spec)
        feats = np.stack([enc.encode(f) for f in x])
        frames.append(x)
        found = int(person_present(feats).sum())
        rows.append(
            {
                "clip": Path(clip.source).name,
                "label": clip.label,
                "frames": len(x),
                "with_person": found,
                "share": round(found / len(x), 4),
                "detector_runs": enc.counters.detector_runs - before,
            }
        )
    return rows, frames


def latency(
    bundle: Any, variants: Sequence[str], frames: list[np.ndarray], threads: int, min_seconds: float
) -> list[dict[str, Any]]:
    """Per-call ms of the detector, the landmark model, the encoder as tracked, and each variant's head."""
    from edge_har.core.video_models import VideoModels

    sample = np.concatenate(frames)[:: max(1, sum(len(f) for f in frames) // 64)]
    rows: list[dict[str, Any]] = []
    for n, name in enumerate(variants):
        models = VideoModels.load(bundle, name, num_threads=threads)
        enc = models.pose
        assert enc is not None and models.head is not None
        if n == 0:  # the pose models are the same files in every variant
            rois = [enc.detect(f) for f in sample]
            pairs = [(f, r) for f, r in zip(sample, rois) if r is not None]
            for part, call, inputs in (
                ("detector", enc.detect, list(sample)),
                ("landmarks", lambda fr: enc.landmark(*fr), pairs),
            ):
                times = 1000 * time_calls(call, inputs, warmup=3, runs=None, min_seconds=min_seconds)
                rows.append({"variant": "all", "part": part, "threads": threads, **_rounded(latency_summary(times))})

            def tracked(clip: np.ndarray) -> None:
                enc.reset()
                for f in clip:
                    enc.encode(f)

            per_clip = [1000 * float(time_calls(tracked, [c], warmup=0, runs=1)[0]) / len(c) for c in frames]
            rows.append(
                {
                    "variant": "all",
                    "part": "encoder (tracked, per frame)",
                    "threads": threads,
                    "mean_ms": round(
                        float(np.sum([m * len(c) for m, c in zip(per_clip, frames)]) / sum(map(len, frames))), 3
                    ),
                }
            )
        feats = np.stack([enc.encode(f) for f in frames[0]])
        t = models.spec.window
        windows = np.stack([feats[i : i + t] for i in range(len(feats) - t + 1)])
        times = 1000 * time_calls(models.head.predict, list(windows), warmup=5, runs=None, min_seconds=min_seconds)
        rows.append(
            {
                "variant": name,
                "part": "head",
                "threads": threads,
                "size_kib": round(models.head.path.stat().st_size / 1024, 1),
                **_rounded(latency_summary(times)),
            }
        )
    return rows


def _rounded(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()}


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
    from edge_har.benchmarks.video import daemon_fps, sustained_fps
    from edge_har.core.bundle import Bundle

    bundle = Bundle.load(bundle_dir)
    names = list(variants or bundle.variants)
    out.mkdir(parents=True, exist_ok=True)
    counts, frames = keypoint_counts(bundle, data, names[0], threads)
    print(f"{'clip':<40} {'frames':>6} {'person':>6} {'share':>6} {'detector':>8}")
    for r in counts:
        print(f"{r['clip']:<40} {r['frames']:>6} {r['with_person']:>6} {r['share']:>6.3f} {r['detector_runs']:>8}")
    rows = latency(bundle, names, frames, threads, min_seconds)
    print(f"\n{'variant':<14} {'part':<30} {'p50 ms':>8} {'mean ms':>8}")
    for r in rows:
        print(f"{r['variant']:<14} {r['part']:<30} {r.get('p50_ms', float('nan')):>8.3f} {r['mean_ms']:>8.3f}")
    clips = sorted(p for p in Path(data).rglob("*") if p.suffix.lower() in (".avi", ".mp4", ".mkv", ".mov"))
    file, n_frames, _ = make_file(clips[0], out / "pose_320x240.avi", repeat=repeat)
    result: dict[str, Any] = {
        "bundle": str(bundle_dir),
        "model_id": bundle.model_id,
        "keypoints": counts,
        "latency": rows,
        "fps": [],
        "daemon": [],
    }
    for name in names:
        row = sustained_fps(Path(bundle_dir), name, file, threads)
        result["fps"].append(row)
        print(
            f"two stages {name:<14} {row['frames_per_s']:.1f} frames/s read ({row['encoded_frames_per_s']:.1f} encoded/s) from {file.name} {row['frame_size']}"
        )
    if daemon:
        from edge_har.mqtt.local_broker import LocalBroker

        with tempfile.TemporaryDirectory() as work, LocalBroker(work) as broker:
            for name in names:
                row = daemon_fps(Path(bundle_dir), name, file, n_frames, threads, broker.address, out / "daemon")
                result["daemon"].append(row)
                print(
                    f"daemon {name:<14} "
                    + (
                        f"{row['frames_per_s']:.1f} frames/s over {row['stream_s']} s (rss {row['rss_mb']} MiB)"
                        if "error" not in row
                        else f"failed: {row['error']}"
                    )
                )
    file_out = out / f"pose-{Path(bundle_dir).name}.json"
    file_out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {file_out}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge_har.benchmarks.pose",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bundle", type=Path, help="a pose bundle (edge-har convert-video --backbone pose)")
    parser.add_argument(
        "--data", type=Path, required=True, help="clip folders (<DIR>/<class>/<clip>) to count keypoints on"
    )
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
