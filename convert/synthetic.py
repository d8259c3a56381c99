"""A small synthetic wrist-accelerometer data set in the HMP folder layout.

Tests and the README demo need labelled IMU recordings, and the public data
sets may not be redistributed with the project. This writes files the HMP
loader preset reads unchanged::

    <root>/Walk/Accelerometer-2024-01-01-00-00-03-walk-f1.txt
             "x y z" per line, integer codes 0..63 for -1.5 g..+1.5 g, 32 Hz

Each class has its own motion: a gravity direction (how the wrist is held), an
oscillation frequency and amplitude per axis, and sensor noise. Per recording
the frequency, amplitude, phase and wrist angle are jittered, so a model has to
learn the pattern rather than memorise a file, yet a tiny CNN-LSTM separates
the classes within a few epochs.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

# HMP coding: code = (g + 1.5) * 63 / 3, clipped to 0..63.
CODES_PER_G = 63.0 / 3.0
ZERO_G_CODE = 31.5


@dataclass(frozen=True)
class MotionPattern:
    gravity: tuple[float, float, float]  # g, direction the wrist is held in
    freq_hz: float  # main oscillation
    amplitude: tuple[float, float, float]  # g, per axis, of the main oscillation
    harmonic: float  # relative amplitude of the second harmonic (gait has one)
    noise: float  # g, white sensor noise


PATTERNS: dict[str, MotionPattern] = {
    "walk": MotionPattern((0.1, -0.95, 0.3), 1.9, (0.35, 0.45, 0.2), 0.5, 0.08),
    "sit": MotionPattern((0.7, -0.1, 0.7), 0.3, (0.03, 0.03, 0.03), 0.0, 0.05),
    "wave": MotionPattern((-0.3, 0.2, 0.9), 1.0, (0.8, 0.25, 0.15), 0.1, 0.08),
    "run": MotionPattern((0.2, -0.9, 0.4), 2.8, (0.6, 0.8, 0.35), 0.6, 0.1),
    "drink": MotionPattern((0.9, 0.1, -0.4), 0.5, (0.15, 0.2, 0.4), 0.0, 0.06),
}


def pattern_for(name: str) -> MotionPattern:
    """The pattern of a known class, or a stable made-up one for any other name."""
    key = name.lower()
    if key in PATTERNS:
        return PATTERNS[key]
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    g = rng.normal(size=3)
    g /= np.linalg.norm(g)
    freq_hz = float(rng.uniform(0.4, 3.0))  # drawn in this order: the same name gives the same pattern
    amplitude = rng.uniform(0.05, 0.6, 3)
    return MotionPattern(
        (float(g[0]), float(g[1]), float(g[2])),
        freq_hz,
        (float(amplitude[0]), float(amplitude[1]), float(amplitude[2])),
        float(rng.uniform(0.0, 0.5)),
        0.07,
    )


def synthesize_recording(
    pattern: MotionPattern, n_samples: int, rate_hz: float, rng: np.random.Generator
) -> np.ndarray:
    """(n_samples, 3) integer codes 0..63 of one jittered recording of ``pattern``."""
    t = np.arange(n_samples) / rate_hz
    freq = pattern.freq_hz * rng.uniform(0.85, 1.15)
    amp = np.asarray(pattern.amplitude) * rng.uniform(0.75, 1.25, 3)
    phase = rng.uniform(0, 2 * np.pi, 3)
    gravity = np.asarray(pattern.gravity) + rng.normal(0, 0.12, 3)
    gravity /= max(float(np.linalg.norm(gravity)), 1e-6)
    wave = np.sin(2 * np.pi * freq * t[:, None] + phase)
    wave += pattern.harmonic * np.sin(4 * np.pi * freq * t[:, None] + 2 * phase)
    drift = np.cumsum(rng.normal(0, 0.004, (n_samples, 3)), axis=0)  # slow wrist rotation
    g = gravity + wave * amp + drift + rng.normal(0, pattern.noise, (n_samples, 3))
    codes = np.round(g * CODES_PER_G + ZERO_G_CODE)
    return np.clip(codes, 0, 63).astype(np.int64)


def subject_id(i: int) -> str:
    """HMP-style subject ids (f1, m1, f2, m2, ...), which the HMP format detection expects."""
    return f"{'fm'[i % 2]}{i // 2 + 1}"


def write_synthetic_imu_dataset(
    root: str | Path,
    *,
    classes: Sequence[str] = ("walk", "sit", "wave"),
    recordings_per_class: int = 6,
    subjects: int = 3,
    seconds: float | tuple[float, float] = (8.0, 14.0),
    rate_hz: float = 32,
    seed: int = 0,
) -> Path:
    """Write the data set under ``root`` and return ``root``.

    ``seconds`` is one length for every recording or a (min, max) range drawn
    per recording. Recordings of a class are spread round-robin over
    ``subjects`` HMP-style subject ids (f1, m1, f2, ...), so subject-wise
    splits work too.
    The same arguments always give byte-identical files.
    """
    if recordings_per_class < 1 or subjects < 1:
        raise ValueError("recordings_per_class and subjects must be >= 1")
    out = Path(root)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lo, hi = (seconds, seconds) if isinstance(seconds, (int, float)) else seconds
    counter = 0
    for name in classes:
        pattern = pattern_for(name)
        folder = out / name.capitalize()
        folder.mkdir(exist_ok=True)
        for i in range(recordings_per_class):
            n = int(round(rng.uniform(lo, hi) * rate_hz))
            codes = synthesize_recording(pattern, n, rate_hz, rng)
            counter += 1
            stamp = f"2024-01-01-{counter // 3600:02d}-{counter // 60 % 60:02d}-{counter % 60:02d}"
            subject = subject_id(i % subjects)
            path = folder / f"Accelerometer-{stamp}-{name.lower()}-{subject}.txt"
            path.write_text("\n".join(f"{x} {y} {z}" for x, y, z in codes) + "\n")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edge_har.convert.synthetic OUT``: write a demo data set (the public ones may not be redistributed)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m edge_har.convert.synthetic",
        description="Write a small synthetic wrist-accelerometer data set in the HMP folder layout, "
        "for trying edge-har convert without downloading a public data set.",
    )
    parser.add_argument("out", type=Path, help="folder to create (class folders go inside)")
    parser.add_argument("--classes", default="walk,sit,wave", help="comma-separated class names (default: %(default)s)")
    parser.add_argument("--recordings-per-class", type=int, default=12, help="(default: %(default)s)")
    parser.add_argument("--subjects", type=int, default=4, help="(default: %(default)s)")
    parser.add_argument(
        "--seconds",
        type=float,
        nargs=2,
        default=(10.0, 20.0),
        metavar=("MIN", "MAX"),
        help="recording length range in seconds (default: 10 20)",
    )
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    args = parser.parse_args(argv)
    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
    root = write_synthetic_imu_dataset(
        args.out,
        classes=classes,
        recordings_per_class=args.recordings_per_class,
        subjects=args.subjects,
        seconds=tuple(args.seconds),
        seed=args.seed,
    )
    print(f"wrote {len(classes) * args.recordings_per_class} recordings of {', '.join(classes)} to {root}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
