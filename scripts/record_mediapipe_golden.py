"""Record MediaPipe 0.10.14's pose landmarks on the KTH clips: the reference tests/test_pose_golden.py checks edge-har against.

edge-har re-implements MediaPipe's BlazePose graph around the same two ``.tflite`` models
(edge_har.core.pose, edge_har.core.pose_encoder) and never installs mediapipe: it pins
protobuf<5, which the project's own dependencies cannot share. This script runs in a
throwaway virtual environment of its own, outside the repository:

    python3 -m venv /tmp/mpvenv
    /tmp/mpvenv/bin/pip install mediapipe==0.10.14 opencv-python-headless "numpy<2"
    taskset -c 0 /tmp/mpvenv/bin/python scripts/record_mediapipe_golden.py \\
        --data /work/shared/data/video/kth-partial \\
        --out tests/data/pose_golden/kth_mediapipe_0.10.14.npz

(``taskset -c 0``: the recorded frames per second are MediaPipe's on one core; its CPU
seconds are recorded too, which other work on a shared machine does not inflate.)

Frames are prepared as edge-har's pose path prepares them for a pose bundle
(edge_har.core.frames through convert/video_datasets.decode_clip with
convert/pose_pipeline.pose_spec's defaults): each ``<data>/<class>/<clip>`` in sorted order,
frame ``i`` stamped ``i / file_fps`` and kept by the same 10 fps sampler, the whole frame
resized to 320 x 240 with INTER_AREA, BGR -> RGB. The code is repeated here (mediapipe's
numpy<2 cannot import the project), so every frame's mean uint8 value is stored as a
fingerprint: the test fails when the two sides did not see the same frames.

MediaPipe runs its legacy solution, one ``Pose`` per clip (tracking within a clip as on a
device), with ``smooth_landmarks=False``: the landmarks are the graph's per-frame output,
without the one-euro filter edge-har does not have (the filter of the two auxiliary ROI
points, which MediaPipe applies whatever the option, stays on: it is inside the graph).

A second set turns people on their side: every second kept frame of each clip rotated a
quarter turn with ``cv2.rotate`` (clockwise for the first, third, ... clip, anticlockwise for
the others; an exact pixel transpose, so both sides get the same 240 x 320 portrait frames),
a new ``Pose`` per clip and direction. Upright KTH people barely turn MediaPipe's crop; lying
ones need its rotation.

The file (numpy ``.npz``, a few hundred kB at most):
  clips (C,) str             the clips, ``<class>/<file>``
  clip (N,) int16            per frame: its clip's index
  frame (N,) int16           per frame: its index among the clip's kept frames
  fingerprint (N,) float32   mean of the (240, 320, 3) uint8 RGB frame
  landmarks (N, 33, 3) float16  x, y in frame pixels, visibility; NaN where MediaPipe found no person
  rotated_clip, rotated_frame, rotated_landmarks   the rotated set, as above (x, y in pixels
                             of the 240 x 320 rotated frame); rotated_turn (C,) int8: +1 clockwise, -1 anticlockwise
  meta str                   JSON: mediapipe version, frame size, fps, options, seconds per clip
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

HEIGHT, WIDTH, FPS = 240, 320, 10.0  # convert/pose_pipeline.py DEFAULT_FRAME, convert/video_pipeline.py DEFAULT_FPS
EXTENSIONS = (  # convert/video_datasets.py VIDEO_EXTENSIONS
    ".avi", ".mp4", ".m4v", ".mkv", ".mov", ".webm", ".mpg", ".mpeg",
    ".wmv", ".flv", ".3gp", ".ogv", ".mjpeg", ".mjpg",
)  # fmt: skip
OPTIONS = {
    "static_image_mode": False,
    "model_complexity": 1,
    "smooth_landmarks": False,
    "enable_segmentation": False,
    "min_detection_confidence": 0.5,
    "min_tracking_confidence": 0.5,
}


class Sampler:
    """edge_har.core.frames.FrameSampler: keep a frame when its timestamp reaches the next 1/fps slot."""

    def __init__(self, fps: float, tolerance: float = 1e-6) -> None:
        self.period, self.tolerance = 1.0 / fps, tolerance
        self.next: float | None = None

    def keep(self, t: float) -> bool:
        if self.next is None or t > self.next + 2 * self.period:
            self.next = t + self.period
            return True
        if t + self.tolerance >= self.next:
            self.next += self.period
            return True
        return False


def clip_frames(path: Path) -> list[np.ndarray]:
    """The clip's kept frames as (240, 320, 3) uint8 RGB, as edge-har's decode_clip makes them."""
    cap = cv2.VideoCapture(str(path))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not np.isfinite(fps) or fps <= 0 or fps > 1000:
            fps = 25.0
        sampler, kept, decoded = Sampler(FPS), [], 0
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            if sampler.keep(decoded / fps):
                if frame.shape[:2] != (HEIGHT, WIDTH):
                    frame = cv2.resize(frame, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
                kept.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            decoded += 1
    finally:
        cap.release()
    return kept


ROTATE_EVERY = 2  # the rotated set takes every second kept frame


def turn(frames: list[np.ndarray], clockwise: bool) -> list[np.ndarray]:
    code = cv2.ROTATE_90_CLOCKWISE if clockwise else cv2.ROTATE_90_COUNTERCLOCKWISE
    return [cv2.rotate(f, code) for f in frames[::ROTATE_EVERY]]


def run_pose(mp: Any, frames: list[np.ndarray]) -> tuple[list[np.ndarray], float, float]:
    """MediaPipe's landmarks per frame ((33, 3): x, y px, visibility; NaN without a person), wall and CPU seconds."""
    marks, elapsed, cpu = [], 0.0, 0.0
    with mp.solutions.pose.Pose(**OPTIONS) as estimator:
        for rgb in frames:
            height, width = rgb.shape[:2]
            started, cpu_started = time.perf_counter(), time.process_time()
            result = estimator.process(rgb)
            elapsed += time.perf_counter() - started
            cpu += time.process_time() - cpu_started
            lm: np.ndarray = np.full((33, 3), np.nan, np.float32)
            if result.pose_landmarks is not None:
                lm[:] = [(p.x * width, p.y * height, p.visibility) for p in result.pose_landmarks.landmark]
            marks.append(lm)
    return marks, elapsed, cpu


def clips_of(root: Path) -> list[Path]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [
        f
        for folder in folders
        for f in sorted(folder.iterdir())
        if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in EXTENSIONS
    ]


def main() -> int:
    import mediapipe as mp

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="<data>/<class>/<clip> folder")
    parser.add_argument("--out", type=Path, required=True, help="the .npz to write")
    args = parser.parse_args()

    names, clip_ix, frame_ix, prints, marks, seconds = [], [], [], [], [], {}
    rot_clip, rot_frame, rot_marks, turns = [], [], [], []
    for ci, path in enumerate(clips_of(args.data)):
        name = f"{path.parent.name}/{path.name}"
        names.append(name)
        frames = clip_frames(path)
        lms, elapsed, cpu = run_pose(mp, frames)
        clip_ix += [ci] * len(frames)
        frame_ix += list(range(len(frames)))
        prints += [float(f.mean()) for f in frames]
        marks += lms
        seconds[name] = {"frames": len(frames), "seconds": round(elapsed, 3), "cpu_seconds": round(cpu, 3)}
        found = sum(1 for m in lms if np.isfinite(m[0, 0]))
        rates = f"{len(frames) / elapsed:.1f} frames/s, {len(frames) / cpu:.1f} per CPU second"
        print(f"{name}: {len(frames)} frames, person in {found}, {rates}")
        clockwise = ci % 2 == 0
        turns.append(1 if clockwise else -1)
        rotated = turn(frames, clockwise)
        lms, _, _ = run_pose(mp, rotated)
        rot_clip += [ci] * len(rotated)
        rot_frame += list(range(0, len(frames), ROTATE_EVERY))
        rot_marks += lms
        found = sum(1 for m in lms if np.isfinite(m[0, 0]))
        print(
            f"{name} turned {'clockwise' if clockwise else 'anticlockwise'}: {len(rotated)} frames, person in {found}"
        )
    meta = {
        "mediapipe": mp.__version__,
        "opencv": cv2.__version__,
        "solution": "mp.solutions.pose.Pose, one per clip",
        "options": OPTIONS,
        "frame": {"height": HEIGHT, "width": WIDTH, "fps": FPS, "interpolation": "area", "fit": "stretch"},
        "timing": seconds,
        "rotated": {"every": ROTATE_EVERY, "turn": "cv2.rotate, clockwise when rotated_turn is +1"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        clips=np.asarray(names),
        clip=np.asarray(clip_ix, np.int16),
        frame=np.asarray(frame_ix, np.int16),
        fingerprint=np.asarray(prints, np.float32),
        landmarks=np.asarray(marks, np.float16),
        rotated_clip=np.asarray(rot_clip, np.int16),
        rotated_frame=np.asarray(rot_frame, np.int16),
        rotated_landmarks=np.asarray(rot_marks, np.float16),
        rotated_turn=np.asarray(turns, np.int8),
        meta=np.asarray(json.dumps(meta, sort_keys=True)),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {len(clip_ix)} frames)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
