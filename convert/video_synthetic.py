"""Small synthetic video data sets: coloured shapes moving in class-specific ways.

Tests, benchmarks and the camera demo need labelled clips, and the public
video data sets (KTH, UCF101) may not be redistributed with the project. This
writes real video files with ``cv2.VideoWriter`` (Motion-JPEG in AVI by
default, which every OpenCV build can both write and read), in the layouts the
loaders of ``edge_har.convert.video_datasets`` read:

* clip folders: ``<root>/<class>/<class>_<i>_s<subject>.avi``
* still images: ``<root>/train/<i>.png`` + ``<root>/train.csv`` (``filename,label``)

Each class has a shape, a colour and a motion (sideways sweep, bouncing,
circling, pulsing). Per clip the speed, phase, size, position, background
brightness and noise are jittered, so a model must learn the pattern rather
than a file, yet a tiny CNN-LSTM separates the classes within a few epochs.
"""

from __future__ import annotations

import csv
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class ShapeMotion:
    shape: str  # circle | square | triangle
    color_bgr: tuple[int, int, int]
    motion: str  # sweep | bounce | orbit | pulse
    period_s: float  # seconds per motion cycle


PATTERNS: dict[str, ShapeMotion] = {
    "sweep": ShapeMotion("circle", (40, 40, 220), "sweep", 1.6),
    "bounce": ShapeMotion("square", (40, 200, 40), "bounce", 1.0),
    "orbit": ShapeMotion("triangle", (220, 80, 30), "orbit", 2.0),
    "pulse": ShapeMotion("circle", (30, 200, 230), "pulse", 1.2),
}


def pattern_for(name: str) -> ShapeMotion:
    """The pattern of a known class, or a stable made-up one for any other name."""
    if name in PATTERNS:
        return PATTERNS[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return ShapeMotion(
        str(rng.choice(["circle", "square", "triangle"])),
        tuple(int(v) for v in rng.integers(30, 230, 3)),  # type: ignore[arg-type]
        str(rng.choice(["sweep", "bounce", "orbit", "pulse"])),
        float(rng.uniform(0.8, 2.0)),
    )


def _draw(
    canvas: np.ndarray, shape: str, center: tuple[float, float], radius: float, color: tuple[int, int, int]
) -> None:
    import cv2

    cx, cy, r = int(round(center[0])), int(round(center[1])), max(2, int(round(radius)))
    if shape == "circle":
        cv2.circle(canvas, (cx, cy), r, color, -1, lineType=cv2.LINE_AA)
    elif shape == "square":
        cv2.rectangle(canvas, (cx - r, cy - r), (cx + r, cy + r), color, -1)
    else:
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(canvas, [pts], color, lineType=cv2.LINE_AA)


def render_clip(
    pattern: ShapeMotion, n_frames: int, size: tuple[int, int], fps: float, rng: np.random.Generator
) -> np.ndarray:
    """(n_frames, height, width, 3) uint8 BGR frames of one jittered clip."""
    width, height = size
    scale = min(width, height)
    period = pattern.period_s * rng.uniform(0.8, 1.25)
    phase = rng.uniform(0, 2 * np.pi)
    radius = scale * rng.uniform(0.10, 0.16)
    cx0 = width * rng.uniform(0.4, 0.6)
    cy0 = height * rng.uniform(0.4, 0.6)
    background = rng.integers(20, 90)
    color = np.clip(np.asarray(pattern.color_bgr) + rng.integers(-25, 26, 3), 0, 255)
    color_t = (int(color[0]), int(color[1]), int(color[2]))
    frames = np.empty((n_frames, height, width, 3), np.uint8)
    for i in range(n_frames):
        angle = 2 * np.pi * (i / fps) / period + phase
        cx, cy, r = cx0, cy0, radius
        if pattern.motion == "sweep":
            cx = cx0 + 0.3 * width * np.sin(angle)
        elif pattern.motion == "bounce":
            cy = cy0 + 0.3 * height * (2 * abs(np.sin(angle / 2)) - 1)
        elif pattern.motion == "orbit":
            cx = cx0 + 0.25 * scale * np.cos(angle)
            cy = cy0 + 0.25 * scale * np.sin(angle)
        else:  # pulse
            r = radius * (1.0 + 0.6 * np.sin(angle))
        canvas = np.full((height, width, 3), background, np.uint8)
        _draw(canvas, pattern.shape, (cx, cy), r, color_t)
        noise = rng.normal(0, 6, canvas.shape)
        frames[i] = np.clip(canvas + noise, 0, 255).astype(np.uint8)
    return frames


def write_clip(path: str | Path, frames: np.ndarray, fps: float, fourcc: str = "MJPG") -> Path:
    """Write BGR frames with OpenCV; raises OSError when the writer cannot open ``path``."""
    import cv2

    out = Path(path)
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*fourcc), float(fps), (int(width), int(height)))
    if not writer.isOpened():
        raise OSError(f"{out}: OpenCV cannot write {fourcc} video here")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    return out


def write_synthetic_clip_dataset(
    root: str | Path,
    *,
    classes: Sequence[str] = ("sweep", "bounce", "orbit"),
    clips_per_class: int = 6,
    subjects: int = 3,
    seconds: float | tuple[float, float] = (2.0, 3.0),
    fps: float = 10.0,
    size: tuple[int, int] = (64, 48),
    fourcc: str = "MJPG",
    extension: str = ".avi",
    seed: int = 0,
) -> Path:
    """Write ``<root>/<class>/<class>_<i>_s<subject><extension>`` clips and return ``root``.

    ``size`` is (width, height). Clips of a class are spread round-robin over
    ``subjects`` ids, so subject-wise splits work too. The same arguments give
    the same frames (the encoded files may differ between OpenCV builds).
    """
    if clips_per_class < 1 or subjects < 1:
        raise ValueError("clips_per_class and subjects must be >= 1")
    out = Path(root)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lo, hi = (seconds, seconds) if isinstance(seconds, (int, float)) else seconds
    for name in classes:
        folder = out / name
        folder.mkdir(exist_ok=True)
        for i in range(clips_per_class):
            n = max(1, int(round(rng.uniform(lo, hi) * fps)))
            frames = render_clip(pattern_for(name), n, size, fps, rng)
            write_clip(folder / f"{name}_{i:03d}_s{i % subjects + 1}{extension}", frames, fps, fourcc)
    return out


def write_synthetic_image_dataset(
    root: str | Path,
    *,
    classes: Sequence[str] = ("sweep", "bounce", "orbit"),
    images_per_class: int = 10,
    size: tuple[int, int] = (48, 48),
    seed: int = 0,
) -> Path:
    """The still-image layout: ``<root>/train/img_<i>.png`` and ``<root>/train.csv`` (filename,label)."""
    import cv2

    out = Path(root)
    images = out / "train"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    counter = 0
    for name in classes:
        pattern = pattern_for(name)
        for _ in range(images_per_class):
            frame = render_clip(pattern, 1, size, 10.0, rng)[0]
            file = f"img_{counter:04d}.png"
            if not cv2.imwrite(str(images / file), frame):
                raise OSError(f"{images / file}: OpenCV cannot write PNG here")
            rows.append((file, name))
            counter += 1
    order = rng.permutation(len(rows))
    with open(out / "train.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["filename", "label"])
        for i in order:
            writer.writerow(rows[i])
    return out
