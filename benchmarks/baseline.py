"""The classical baseline: a random forest on per-window statistics.

A user's honest alternative to any network: five statistics per channel of
each window (mean, standard deviation, minimum, maximum, mean absolute
difference between consecutive samples) fed to scikit-learn's random forest.
It trains in seconds, runs on a Pi without any TFLite runtime, and on
wrist-accelerometer data it is a strong baseline, so the CNN-LSTM is only worth
shipping by the margin it beats it by.

Features are computed on the *scaled* windows (physical units), not the
normalised ones: trees are indifferent to per-channel affine scaling, and the
baseline then needs no statistics fitted on the training set. Classes are
weighted as the CNN-LSTM's training weights them (``class_weight="balanced"``),
so the comparison is between models, not between treatments of imbalance.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edge_har.core.errors import EdgeHarError
from edge_har.core.timing import time_calls

FEATURES = ("mean", "std", "min", "max", "mean_abs_diff")


class BaselineError(EdgeHarError, RuntimeError):
    """scikit-learn is missing, or the training windows cannot train a forest."""


def window_features(windows: np.ndarray) -> np.ndarray:
    """(n, window, C) -> (n, 5 * C): FEATURES for channel 0, then channel 1, ..."""
    x = np.asarray(windows, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"windows must have shape (n, window, channels), got {x.shape}")
    if x.shape[1] < 2:
        raise ValueError("windows must be at least 2 samples long for the mean absolute difference")
    stats = [x.mean(axis=1), x.std(axis=1), x.min(axis=1), x.max(axis=1), np.abs(np.diff(x, axis=1)).mean(axis=1)]
    return np.stack(stats, axis=2).reshape(len(x), -1).astype(np.float32)


def feature_names(channels: Sequence[str]) -> list[str]:
    return [f"{c}_{f}" for c in channels for f in FEATURES]


@dataclass
class Baseline:
    model: Any
    fit_seconds: float
    n_train: int
    trees: int

    def predict(self, windows: np.ndarray) -> np.ndarray:
        return self.model.predict(window_features(windows))

    def size_bytes(self) -> int:
        """Size of the pickled forest: what a device would store instead of a .tflite file."""
        return len(pickle.dumps(self.model, protocol=pickle.HIGHEST_PROTOCOL))


def train_baseline(
    x_train: np.ndarray, y_train: np.ndarray, trees: int = 200, seed: int = 0, jobs: int = 1
) -> Baseline:
    """Fit the forest on scaled training windows; ``jobs=1`` so timings stay comparable on a shared machine."""
    try:
        from sklearn.ensemble import RandomForestClassifier
    except ImportError as exc:
        raise BaselineError(
            "the random-forest baseline needs scikit-learn: pip install 'edge-har[bench]' (piwheels has it for the Pi)"
        ) from exc
    if len(x_train) == 0:
        raise BaselineError("no training windows for the baseline")
    if len(np.unique(y_train)) < 2:
        raise BaselineError("the baseline's training windows hold a single class")
    model = RandomForestClassifier(
        n_estimators=trees,
        class_weight="balanced",
        random_state=seed,
        n_jobs=jobs,
        min_samples_leaf=1,
    )
    started = time.perf_counter()
    model.fit(window_features(x_train), np.asarray(y_train, dtype=np.int64))
    return Baseline(model, time.perf_counter() - started, int(len(x_train)), trees)


def predict_timed(baseline: Baseline, windows: np.ndarray) -> tuple[np.ndarray, float]:
    """Predictions, and the mean milliseconds per window when windows arrive one at a time (as on a device)."""
    pred = baseline.predict(windows)
    sample = windows[: min(len(windows), 50)]
    if not len(sample):
        return pred, 0.0
    times = time_calls(lambda w: baseline.predict(w[None]), sample, warmup=0, runs=len(sample))
    return pred, 1000 * float(times.mean())
