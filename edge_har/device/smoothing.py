"""Smoothing of the prediction stream: one noisy window should not flip the published activity.

Two methods over the last N windows' class probabilities:

* ``mean_prob``: the average probability vector; the label is its argmax, the confidence its
  maximum. Smooth and calibrated-ish; a strong minority window still pulls the average.
* ``majority``: each window votes for its argmax; the label is the most voted (ties go to the
  label with the higher mean probability), the confidence is that label's mean probability
  over the N windows. Robust to single outliers; reacts after N/2 windows.

Both publish the mean probabilities, so ``probabilities`` means the same thing either way.
Under ``threshold`` the label becomes ``unknown_label`` (the probabilities stay, so a
subscriber can still see what the model leaned towards). ``reset()`` starts afresh after a
gap in the stream, so a prediction never blends two segments.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Deque, Sequence

import numpy as np


@dataclass(frozen=True)
class Smoothed:
    label: str
    confidence: float
    probabilities: np.ndarray  # (n_classes,) mean over the smoothed windows
    raw_label: str  # this window's own argmax, before smoothing
    raw_confidence: float


class Smoother:
    def __init__(
        self,
        labels: Sequence[str],
        method: str = "mean_prob",
        window: int = 5,
        threshold: float = 0.0,
        unknown_label: str = "unknown",
    ) -> None:
        if method not in ("mean_prob", "majority"):
            raise ValueError(f"smoothing method must be 'mean_prob' or 'majority', got {method!r}")
        if window < 1:
            raise ValueError(f"smoothing window must be >= 1, got {window}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"smoothing threshold must be in [0, 1], got {threshold}")
        self.labels = [str(label) for label in labels]
        self.method = method
        self.window = window
        self.threshold = threshold
        self.unknown_label = unknown_label
        self._history: Deque[np.ndarray] = deque(maxlen=window)

    def reset(self) -> None:
        self._history.clear()

    def __len__(self) -> int:
        return len(self._history)

    def update(self, probabilities: np.ndarray) -> Smoothed:
        probs = np.asarray(probabilities, dtype=np.float64).reshape(-1)
        if probs.shape[0] != len(self.labels):
            raise ValueError(f"expected {len(self.labels)} class probabilities, got {probs.shape[0]}")
        raw = int(np.argmax(probs))
        self._history.append(probs)
        stack = np.stack(self._history)
        mean = stack.mean(axis=0)
        if self.method == "mean_prob":
            best = int(np.argmax(mean))
        else:
            votes = np.bincount(stack.argmax(axis=1), minlength=len(self.labels))
            tied = np.flatnonzero(votes == votes.max())
            best = int(tied[np.argmax(mean[tied])])
        confidence = float(mean[best])
        label = self.labels[best] if confidence >= self.threshold else self.unknown_label
        return Smoothed(label, confidence, mean.astype(np.float32), self.labels[raw], float(probs[raw]))
