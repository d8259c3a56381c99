"""edge-har's pose encoder against MediaPipe's own pose graph: keypoint distance, offsets, person-found rate, frames/s.

    python -m edge_har.benchmarks.pose_golden \\
        --golden tests/data/pose_golden/kth_mediapipe_0.10.14.npz \\
        --data ../shared/data/video/kth-partial --out bench-results/pose-golden.json

The golden file holds MediaPipe 0.10.14's landmarks (legacy ``mp.solutions.pose.Pose``,
model_complexity 1, unsmoothed, one ``Pose`` per clip) on the kept frames of each clip,
recorded by scripts/record_mediapipe_golden.py in a virtual environment of its own
(mediapipe pins protobuf<5 and never enters the project's). Here the same clips go through
edge-har's own loader with a pose bundle's frame preparation
(``convert/pose_pipeline.pose_spec``: 10 fps, 320 x 240, RGB) and the encoder of the code
that is imported (``edge_har.core.pose_encoder``), one thread, tracking on, reset per clip as
the conversion does it. Every frame's mean uint8 value must match the golden fingerprint, so
both sides provably saw the same frames.

The golden file's second set, every second frame turned a quarter turn (people on their
side), goes through the encoder too. Figures, per clip and over all clips, for ``upright``
and ``turned`` (JSON on stdout and in ``--out``):

* **found**: frames with a person / frames, for edge-har and for MediaPipe, and frames
  where only one of them found one.
* **distance** over the frames where both found a person: every landmark's distance to
  MediaPipe's, median over all (frame, landmark) pairs, in pixels and in MediaPipe's torso
  lengths that frame (shoulder centre to hip centre); also over the landmarks MediaPipe
  calls visible (visibility >= 0.5), which excludes limbs guessed outside the picture.
* **offset**: per frame the mean signed difference (edge-har - MediaPipe) of x and y over
  the 33 landmarks, median over frames: a crop shifted against MediaPipe's shows here.
* **fps**: frames through the encoder per second of wall time and per second of the
  process's CPU time (one LiteRT thread, this machine; ``_cpu``: what a core of its own
  would give, where other work shares the machine), on the upright clips
  (``encoder_fps``; MediaPipe's own on one core is in the golden file's ``timing``) and on
  the turned ones; ``--timing-repeats N`` adds N timed passes over the upright clips.

``--no-second-look`` runs the encoder without its second, 1.4 x larger crop after a
detector crop with no person, ``--no-roi-filter`` without the one-euro filter on the two
points the next frame's crop comes from (where the encoder under test has those switches;
an older encoder without them is measured as it is).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from edge_har.core.errors import EdgeHarError

LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP = 11, 12, 23, 24
VISIBLE = 0.5  # MediaPipe's visibility threshold for the "visible landmarks" figures
FINGERPRINT_TOLERANCE = 0.05  # mean uint8 value; a different decoder or resize moves it by far more


class GoldenError(EdgeHarError, ValueError):
    """The golden file and the clips do not describe the same frames."""


@dataclass
class Golden:
    clips: list[str]
    clip: np.ndarray  # (N,) clip index per frame
    frame: np.ndarray  # (N,) kept-frame index within the clip
    fingerprint: np.ndarray  # (N,)
    landmarks: np.ndarray  # (N, 33, 3) float32: x, y px, visibility; NaN without a person
    meta: dict[str, Any]
    rotated_clip: np.ndarray  # (M,) the turned set: clip index per frame
    rotated_frame: np.ndarray  # (M,) kept-frame index of the upright frame it was turned from
    rotated_landmarks: np.ndarray  # (M, 33, 3) in pixels of the turned (portrait) frame
    rotated_turn: np.ndarray  # (C,) +1 clockwise, -1 anticlockwise

    def of(self, index: int) -> np.ndarray:
        """The golden rows of clip ``index``, in frame order."""
        rows = np.flatnonzero(self.clip == index)
        return rows[np.argsort(self.frame[rows])]

    def rotated_of(self, index: int) -> np.ndarray:
        rows = np.flatnonzero(self.rotated_clip == index)
        return rows[np.argsort(self.rotated_frame[rows])]

    def turned(self, clips: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The turned set's frames from the upright clips (``cv2.rotate`` is an exact transpose; so is rot90)."""
        out = []
        for index, x in enumerate(clips):
            picks = self.rotated_frame[self.rotated_of(index)]
            out.append(np.ascontiguousarray(np.rot90(x[picks], k=-int(self.rotated_turn[index]), axes=(1, 2))))
        return out


def load_golden(path: Path) -> Golden:
    with np.load(path, allow_pickle=False) as z:
        return Golden(
            clips=[str(c) for c in z["clips"]],
            clip=np.asarray(z["clip"], np.int64),
            frame=np.asarray(z["frame"], np.int64),
            fingerprint=np.asarray(z["fingerprint"], np.float64),
            landmarks=np.asarray(z["landmarks"], np.float32),
            meta=json.loads(str(z["meta"])),
            rotated_clip=np.asarray(z["rotated_clip"], np.int64),
            rotated_frame=np.asarray(z["rotated_frame"], np.int64),
            rotated_landmarks=np.asarray(z["rotated_landmarks"], np.float32),
            rotated_turn=np.asarray(z["rotated_turn"], np.int64),
        )


def pose_models_dir() -> Path:
    """$EDGE_HAR_POSE_MODELS or ~/.cache/edge-har/pose (where scripts/get_pose_models.sh puts them)."""
    return Path(os.environ.get("EDGE_HAR_POSE_MODELS") or Path.home() / ".cache" / "edge-har" / "pose")


def clip_frames(data: Path, golden: Golden, models_dir: Path) -> list[np.ndarray]:
    """The golden clips' frames as a pose bundle's encoder gets them (float32 RGB in [0, 1]), fingerprints checked."""
    from edge_har.convert.pose_pipeline import PoseOptions, pose_spec
    from edge_har.convert.video_datasets import load_clip_folders
    from edge_har.convert.video_pipeline import VideoConvertOptions
    from edge_har.core.frames import normalise_frames

    with tempfile.TemporaryDirectory() as tmp:
        spec = pose_spec(VideoConvertOptions(out=Path(tmp) / "unused"), PoseOptions(models_dir))
    frame = golden.meta["frame"]
    if (spec.height, spec.width, spec.fps) != (frame["height"], frame["width"], frame["fps"]):
        raise GoldenError(f"golden frames are {frame}; a pose bundle's are {spec.width}x{spec.height} at {spec.fps}")
    classes = sorted({c.split("/")[0] for c in golden.clips})
    dataset = load_clip_folders(data, spec, classes=classes, progress=False)
    by_name = {f"{Path(c.source).parent.name}/{Path(c.source).name}": c for c in dataset.clips}
    out = []
    for index, name in enumerate(golden.clips):
        if name not in by_name:
            raise GoldenError(f"{data}: no clip {name}")
        frames = by_name[name].frames
        expect = golden.fingerprint[golden.of(index)]
        got = frames.reshape(len(frames), -1).mean(axis=1)
        if len(got) != len(expect) or np.abs(got - expect).max() > FINGERPRINT_TOLERANCE:
            worst = "length" if len(got) != len(expect) else f"max |diff| {np.abs(got - expect).max():.3f}"
            raise GoldenError(
                f"{name}: the frames differ from the golden file's ({len(got)} vs {len(expect)}; {worst})"
            )
        out.append(normalise_frames(frames, spec))
    return out


def make_encoder(models_dir: Path, **switches: bool) -> Any:
    """The imported code's PoseEncoder on one thread; ``switches`` (second_look, roi_filter) where it has them.

    An encoder without a switch always has that step on (an older one) or never (a
    hypothetical newer one): turning off a switch it lacks is a ``GoldenError``.
    """
    from edge_har.core.interpreter import TFLiteModel
    from edge_har.core.pose_encoder import PoseEncoder

    models = (
        TFLiteModel(models_dir / "pose_detection.tflite", num_threads=1),
        TFLiteModel(models_dir / "pose_landmark_full.tflite", num_threads=1),
    )
    known = inspect.signature(PoseEncoder).parameters
    missing = [name for name, on in switches.items() if name not in known and not on]
    if missing:
        raise GoldenError(f"this encoder has no {', '.join(missing)} switch")
    kwargs: dict[str, Any] = {name: on for name, on in switches.items() if name in known}
    return PoseEncoder(models[0], models[1], **kwargs)


@dataclass
class Speed:
    """Frames through the encoder per second of wall time and per second of this process's CPU time."""

    frames: int
    wall_s: float
    cpu_s: float

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def cpu_fps(self) -> float:
        return self.frames / self.cpu_s if self.cpu_s > 0 else float("nan")


def run_encoder(encoder: Any, clips: Sequence[np.ndarray]) -> tuple[list[np.ndarray], Speed]:
    """Per clip (n, 33, 2) keypoints in frame pixels (NaN without a person), and how fast they came."""
    out, speed = [], Speed(0, 0.0, 0.0)
    for x in clips:
        encoder.reset()
        kp = np.full((len(x), 33, 2), np.nan, np.float32)
        started, cpu = time.perf_counter(), time.process_time()
        for i, f in enumerate(x):
            result = encoder.process(f)
            if result.keypoints is not None:
                kp[i] = result.keypoints[:, :2]
        speed.wall_s += time.perf_counter() - started
        speed.cpu_s += time.process_time() - cpu
        speed.frames += len(x)
        out.append(kp)
    return out, speed


def _torso(lm: np.ndarray) -> np.ndarray:
    """(n, 33, >=2) -> (n,) shoulder centre to hip centre."""
    shoulders = (lm[:, LEFT_SHOULDER, :2] + lm[:, RIGHT_SHOULDER, :2]) / 2
    hips = (lm[:, LEFT_HIP, :2] + lm[:, RIGHT_HIP, :2]) / 2
    return np.asarray(np.hypot(*(shoulders - hips).T))


def _median(values: np.ndarray) -> Optional[float]:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return round(float(np.median(values)), 4) if len(values) else None


def compare(ours: np.ndarray, theirs: np.ndarray) -> dict[str, Any]:
    """(n, 33, 2) edge-har keypoints vs (n, 33, 3) MediaPipe landmarks of the same frames -> the figures."""
    found_ours = np.isfinite(ours[:, 0, 0])
    found_theirs = np.isfinite(theirs[:, 0, 0])
    both = found_ours & found_theirs
    n = len(ours)
    row: dict[str, Any] = {
        "frames": n,
        "found": {
            "edge_har": int(found_ours.sum()),
            "mediapipe": int(found_theirs.sum()),
            "edge_har_rate": round(float(found_ours.mean()), 4) if n else None,
            "mediapipe_rate": round(float(found_theirs.mean()), 4) if n else None,
            "both": int(both.sum()),
            "edge_har_only": int((found_ours & ~found_theirs).sum()),
            "mediapipe_only": int((found_theirs & ~found_ours).sum()),
        },
    }
    a, b = ours[both].astype(np.float64), theirs[both].astype(np.float64)
    diff = a - b[..., :2]  # (m, 33, 2)
    dist = np.hypot(diff[..., 0], diff[..., 1])  # (m, 33)
    torso = _torso(b)[:, None]
    rel = dist / np.where(torso > 1e-3, torso, np.nan)
    visible = b[..., 2] >= VISIBLE
    row["distance"] = {
        "px": _median(dist),
        "torso": _median(rel),
        "px_visible": _median(dist[visible]),
        "torso_visible": _median(rel[visible]),
        "px_p90": round(float(np.percentile(dist, 90)), 4) if dist.size else None,
        "torso_length_px": _median(torso),
    }
    row["offset"] = {
        "x_px": _median(diff[..., 0].mean(axis=1)),
        "y_px": _median(diff[..., 1].mean(axis=1)),
        "x_torso": _median(diff[..., 0].mean(axis=1) / torso[:, 0]),
        "y_torso": _median(diff[..., 1].mean(axis=1) / torso[:, 0]),
    }
    return row


def compare_clips(names: Sequence[str], ours: Sequence[np.ndarray], theirs: Sequence[np.ndarray]) -> dict[str, Any]:
    """Per clip and over all clips."""
    per_clip = {name: compare(k, t) for name, k, t in zip(names, ours, theirs)}
    return {"clips": per_clip, "overall": compare(np.concatenate(ours), np.concatenate(theirs))}


def measure(golden: Golden, clips: Sequence[np.ndarray], encoder: Any) -> dict[str, Any]:
    """Run ``encoder`` over the upright and the turned clips and compare it with the golden landmarks."""
    upright, speed = run_encoder(encoder, clips)
    turned, turned_speed = run_encoder(encoder, golden.turned(clips))
    n = len(golden.clips)
    return {
        "upright": compare_clips(golden.clips, upright, [golden.landmarks[golden.of(i)] for i in range(n)]),
        "turned": compare_clips(
            golden.clips, turned, [golden.rotated_landmarks[golden.rotated_of(i)] for i in range(n)]
        ),
        "encoder_fps": round(speed.fps, 2),
        "encoder_fps_cpu": round(speed.cpu_fps, 2),
        "encoder_fps_turned": round(turned_speed.fps, 2),
        "encoder_fps_cpu_turned": round(turned_speed.cpu_fps, 2),
    }


def timing(encoder: Any, clips: Sequence[np.ndarray], repeats: int) -> dict[str, Any]:
    """The upright clips through the encoder ``repeats`` more times: frames/s of each pass, best and median.

    On a shared machine a pass's wall time is at the mercy of whatever else runs; its CPU
    time (one LiteRT thread: the encoder runs in this thread) is not, so both are given.
    """
    runs = [run_encoder(encoder, clips)[1] for _ in range(repeats)]
    wall, cpu = [r.fps for r in runs], [r.cpu_fps for r in runs]
    return {
        "repeats": repeats,
        "fps": [round(r, 2) for r in wall],
        "best_fps": round(max(wall), 2),
        "median_fps": round(float(np.median(wall)), 2),
        "cpu_fps": [round(r, 2) for r in cpu],
        "median_cpu_fps": round(float(np.median(cpu)), 2),
    }


def _golden_fps(golden: Golden, key: str) -> Optional[float]:
    """MediaPipe's frames per (wall or CPU) second as the golden file recorded them, where it did."""
    timing = golden.meta.get("timing", {}).values()
    seconds = sum(t.get(key, 0.0) for t in timing)
    return round(sum(t["frames"] for t in timing) / seconds, 2) if seconds > 0 else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--golden", type=Path, required=True, help="MediaPipe's landmarks (.npz)")
    parser.add_argument("--data", type=Path, required=True, help="the <class>/<clip> folder the golden file names")
    parser.add_argument(
        "--models",
        type=Path,
        default=None,
        help="pose models (default $EDGE_HAR_POSE_MODELS or ~/.cache/edge-har/pose)",
    )
    parser.add_argument("--no-second-look", action="store_true", help="no 1.4 x crop after an empty detector crop")
    parser.add_argument(
        "--no-roi-filter", action="store_true", help="no one-euro filter on the tracking crop's two points"
    )
    parser.add_argument(
        "--timing-repeats", type=int, default=0, help="time N more passes over the upright clips (best and median)"
    )
    parser.add_argument("--label", default=None, help="a name for this run in the JSON")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    args = parser.parse_args(argv)

    from edge_har.benchmarks.cpuinfo import format_cpu
    from edge_har.core import pose, pose_encoder

    models = args.models or pose_models_dir()
    golden = load_golden(args.golden)
    clips = clip_frames(args.data, golden, models)
    encoder = make_encoder(models, second_look=not args.no_second_look, roi_filter=not args.no_roi_filter)
    result = {
        "label": args.label,
        "encoder": {
            "module": pose_encoder.__file__,
            "pose_module": pose.__file__,
            "encoder_version": pose_encoder.ENCODER_VERSION,
            "second_look": not args.no_second_look,
            "roi_filter": not args.no_roi_filter,
            "threads": 1,
        },
        "golden": {
            "file": str(args.golden),
            **{k: golden.meta[k] for k in ("mediapipe", "options", "frame")},
            "mediapipe_fps_one_core": _golden_fps(golden, "seconds"),
            "mediapipe_cpu_fps": _golden_fps(golden, "cpu_seconds"),
        },
        "machine": {"machine": platform.machine(), "cpu": format_cpu()},
        **measure(golden, clips, encoder),
    }
    if args.timing_repeats > 0:
        result["timing"] = timing(encoder, clips, args.timing_repeats)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
