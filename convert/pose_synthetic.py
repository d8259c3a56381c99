"""A drawn person the BlazePose models recognise, for tests without real footage.

A flat cartoon (head with eyes and mouth, shirt, skin-coloured forearms, trousers,
shoes) on a plain background is enough for the pose detector and the landmark model
(measured: presence 0.99+, the nose on the drawn head, the wrists following the
arms). ``arm`` raises both forearms from hanging (0) to above the shoulders (1), so
two classes of clips, arms waving and arms still, differ only in what the
keypoints see. Nothing here is real data; tests and quick demos make it on the fly.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import numpy as np


def draw_person(arm: float = 0.0, width: int = 320, height: int = 240, shift: int = 0) -> np.ndarray:
    """One BGR uint8 frame of the cartoon person, ``shift`` pixels right of the centre."""
    import cv2

    img = np.full((height, width, 3), (170, 180, 160), np.uint8)
    k = height / 240.0
    cx = width // 2 + shift

    def p(x: float, y: float) -> tuple[int, int]:
        return int(round(cx + x * k)), int(round(y * k))

    skin, shirt, pants = (150, 180, 225), (60, 60, 200), (90, 50, 30)
    cv2.ellipse(img, p(0, 50), (int(14 * k), int(18 * k)), 0, 0, 360, skin, -1)
    for ex in (-5, 5):
        cv2.circle(img, p(ex, 46), max(1, int(2 * k)), (40, 40, 40), -1)
    cv2.line(img, p(-5, 58), p(5, 58), (60, 60, 120), max(1, int(2 * k)))
    cv2.rectangle(img, p(-4, 66), p(4, 74), skin, -1)
    cv2.fillPoly(img, [np.array([p(-22, 74), p(22, 74), p(18, 135), p(-18, 135)])], shirt)
    a = float(np.clip(arm, 0.0, 1.0))
    for s in (-1, 1):
        elbow, wrist = p(s * (30 + 10 * a), 108 - 25 * a), p(s * (28 + 5 * a), 135 - 50 * a)
        cv2.line(img, p(s * 22, 80), elbow, shirt, max(1, int(10 * k)))
        cv2.line(img, elbow, wrist, skin, max(1, int(8 * k)))
        cv2.circle(img, wrist, max(1, int(6 * k)), skin, -1)
        cv2.line(img, p(s * 10, 135), p(s * 14, 180), pants, max(1, int(13 * k)))
        cv2.line(img, p(s * 14, 180), p(s * 16, 225), pants, max(1, int(12 * k)))
        cv2.ellipse(img, p(s * 20, 228), (int(10 * k), int(5 * k)), 0, 0, 360, (30, 30, 30), -1)
    return img


def arm_track(kind: str, n: int, fps: float, phase: float = 0.0) -> np.ndarray:
    """Arm heights per frame: ``wave`` swings them at 1 Hz, ``still`` keeps them down with a little jitter."""
    t = np.arange(n) / fps
    if kind == "wave":
        return 0.5 + 0.5 * np.sin(2 * math.pi * t + phase)
    if kind == "still":
        return 0.05 + 0.03 * np.sin(0.7 * t + phase)
    raise ValueError(f"unknown motion {kind!r}: wave or still")


def write_pose_dataset(
    root: str | Path,
    clips: Mapping[str, int] | None = None,
    frames: int = 40,
    fps: float = 10.0,
    size: tuple[int, int] = (160, 120),
    empty_frames: int = 0,
) -> Path:
    """``root/<wave|still>/p<i>_<class>.avi``: ``clips[class]`` clips of ``frames`` frames each.

    Each clip's person stands at its own place (``shift``) with its own phase; the first
    ``empty_frames`` frames show the background only (no person), to exercise the mask.
    """
    from edge_har.convert.video_synthetic import write_clip

    base = Path(root)
    width, height = size
    for label, count in (clips or {"wave": 3, "still": 3}).items():
        (base / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            track = arm_track(label, frames, fps, phase=0.9 * i)
            shift = int((i - count / 2) * width * 0.08)
            imgs = [draw_person(a, width, height, shift) for a in track]
            for f in range(min(empty_frames, frames)):
                imgs[f] = np.full_like(imgs[f], (170, 180, 160))
            write_clip(base / label / f"p{i + 1:02d}_{label}.avi", np.stack(imgs), fps)
    return base
