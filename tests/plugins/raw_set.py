"""A raw file-name-labelled data set as a new user meets one, and its conversion.

``write_raw_set(root)`` writes ``s1..s3/<class>_<trial>.csv``: nine comma-separated integer
columns at 200 Hz with no header, of which columns 3..5 carry a class-dependent accelerometer
signal in counts of 0.01 g. ``convert_raw_set(data, out)`` converts it the way the README tells a
user to read such a set: labels from file names, three of the nine columns, a scale, and
resampling from the files' 200 Hz to the model's 50 Hz. Tests of "the device reads what training
read" (the replay source, serve's upload) share them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NAME_REGEX = r"(?P<subject>s\d+)/(?P<label>[a-z]+)_(?P<trial>\d+)\.csv$"
CLASSES = ("fall", "sit", "walk")
RATE = 200.0  # the files' rate
MODEL_RATE = 50.0
WINDOW, STRIDE = 64, 32  # at the model's rate
COLUMNS = (3, 4, 5)  # the accelerometer among the nine columns
SCALE = 0.01  # counts of 0.01 g


def write_raw_set(root: Path, seed: int = 4, seconds: float = 6.0) -> Path:
    """s1..s3/<class>_<trial>.csv (two trials each) plus a README the name regex leaves out."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    for s in range(1, 4):
        for k, label in enumerate(CLASSES):
            for trial in (1, 2):
                freq, amp = (0.5, 40.0) if label == "sit" else ((2.0, 150.0) if label == "walk" else (5.0, 300.0))
                data = rng.normal(0, 20, size=(len(t), 9))
                data[:, 3:6] = amp * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6))[:, None] + 100.0 * k
                data[:, 5] += 100.0  # gravity, in counts
                path = root / f"s{s}" / f"{label}_{trial}.csv"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.savetxt(path, np.round(data), fmt="%d", delimiter=",")
    (root / "README.txt").write_text("not a recording\n")
    return root


def convert_args(data: Path, out: Path, epochs: int = 12) -> list[str]:
    """``edge-har convert`` arguments: file-name labels, columns 3..5 named ax,ay,az, scale 0.01 to g,
    200 -> 50 Hz; a tiny float32 model (what matters is that both sides predict alike)."""
    return [
        "convert",
        "--data", str(data),
        "--name-regex", NAME_REGEX,
        "--sample-rate", f"{RATE:g}",
        "--columns", ",".join(map(str, COLUMNS)),
        "--channels", "ax,ay,az",
        "--scale", f"{SCALE:g}",
        "--units", "g",
        "--target-rate", f"{MODEL_RATE:g}",
        "--window", str(WINDOW),
        "--stride", str(STRIDE),
        "--conv-filters", "8",
        "--lstm-units", "8",
        "--epochs", str(epochs),
        "--batch-size", "16",
        "--allow-degenerate",
        "--variants", "float32",
        "--default-variant", "float32",
        "--seed", "3",
        "--out", str(out),
    ]  # fmt: skip


def convert_raw_set(data: Path, out: Path, epochs: int = 12) -> Path:
    """The bundle ``edge-har convert`` (in process) makes of ``data``, in ``out``."""
    from edge_har.cli import main

    assert main(convert_args(data, out, epochs)) == 0
    return out
