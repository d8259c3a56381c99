"""Occlusion sensitivity: which time span of which channel a window's label rests on.

The window is cut into time segments; patches of one, two and four segments slide over each
channel in turn, are set to the baseline, and the window is run through the model again. A cell's
attribution is how much the target class's probability drops when the patches over it are hidden
(negative where hiding them makes the class more likely). It needs nothing but a ``predict`` function, so it runs through the TFLite interpreter
for any variant (float32, dynamic-range, int8) on the device side, in ``serve`` and in
``evaluate``, with no TensorFlow: the attribution describes the model that is deployed, not its
float training copy.

The baseline is 0 in the model's normalised units, i.e. every channel at its training mean. A
physical zero would be far outside what the model saw (an accelerometer at rest reads 1 g), so
hiding a cell with it would measure the model's reaction to an impossible signal rather than to
the loss of that cell's information.

The cost is ``channels * (3 * segments - 4) + 1`` calls of the model per window at the default
scales (265 for 16 segments of a 6-channel window; :func:`occlusion_calls`), and the result is
deterministic for a model, a window, a segment length and the scales.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

#: How many time segments a window is cut into when no segment length is given.
DEFAULT_SEGMENTS = 16
#: Patch lengths, in segments, that slide over each channel: 1/16, 1/8 and 1/4 of the window.
DEFAULT_SCALES = (1, 2, 4)

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Attribution:
    """Attributions of one window to one class, per (time segment, channel) cell."""

    cells: np.ndarray  # (segments, channels) float32: drop in the target's probability when hidden
    edges: np.ndarray  # (segments + 1,) int: sample index where each segment starts, then the window length
    target: int  # the class explained
    probability: float  # the target's probability on the unoccluded window
    calls: int  # model calls made
    seconds: float  # wall time of those calls

    def per_sample(self) -> np.ndarray:
        """(time, channels): each cell's value spread over its samples (for a band under the signal)."""
        lengths = np.diff(self.edges)
        return np.repeat(self.cells, lengths, axis=0).astype(np.float32)

    def per_channel(self) -> np.ndarray:
        """(channels,) the sum of each channel's cells."""
        return self.cells.sum(axis=0)

    def to_json(self, digits: int = 5) -> dict[str, Any]:
        return {
            "method": "occlusion",
            "target": self.target,
            "probability": round(float(self.probability), digits),
            "edges": [int(e) for e in self.edges],
            "cells": np.round(self.cells, digits).tolist(),
            "calls": self.calls,
            "ms": round(1000 * self.seconds, 3),
        }


def segment_edges(window: int, segment: int | None = None) -> np.ndarray:
    """Segment boundaries over ``window`` samples: ``segment`` samples each (the last may be shorter).

    Without ``segment`` the window is cut into :data:`DEFAULT_SEGMENTS` (or one per sample when
    it is shorter than that).
    """
    if window < 1:
        raise ValueError(f"window: {window} samples; a window needs at least one")
    if segment is None:
        segment = max(1, math.ceil(window / DEFAULT_SEGMENTS))
    if segment < 1:
        raise ValueError(f"segment: {segment} samples; it must be at least 1")
    segment = min(segment, window)
    return np.append(np.arange(0, window, segment), window).astype(np.int64)


def occlusion(
    predict: Predict,
    window: np.ndarray,
    target: int | None = None,
    segment: int | None = None,
    baseline: float = 0.0,
    scales: Sequence[int] = DEFAULT_SCALES,
) -> Attribution:
    """Occlusion attribution of a normalised ``(time, channels)`` window to ``target``.

    ``target`` defaults to the class the model gives the window. ``predict`` takes one window
    and returns its class probabilities (``TFLiteModel.predict``). Patches of each length in
    ``scales`` (in segments) slide over every channel one segment at a time; a cell's value is
    the mean drop of the patches that hide it, averaged over the lengths. Several lengths are
    needed because a model sees redundant evidence: a pulse four segments long still decides
    the class when any one of its segments is hidden, so only a patch as long as the pulse
    shows that it is the pulse that matters, while the shortest patch keeps the detail.
    """
    x = np.asarray(window, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"window: shape {x.shape}; occlusion takes one (time, channels) window")
    if not np.isfinite(x).all():
        raise ValueError("window: holds NaN or infinite values; occlusion needs finite samples")
    if not scales or any(int(s) < 1 for s in scales):
        raise ValueError(f"scales: {list(scales)}; give patch lengths of at least 1 segment")
    edges = segment_edges(x.shape[0], segment)
    n_segments = len(edges) - 1
    lengths = sorted({min(int(s), n_segments) for s in scales})
    started = time.perf_counter()
    reference = np.asarray(predict(x), dtype=np.float32).reshape(-1)
    chosen = int(reference.argmax()) if target is None else int(target)
    if not 0 <= chosen < reference.size:
        raise ValueError(f"target: class {chosen}; the model has {reference.size} classes")
    base = float(reference[chosen])
    cells = np.zeros((n_segments, x.shape[1]), dtype=np.float64)
    hidden = x.copy()
    calls = 1
    for length in lengths:
        total = np.zeros_like(cells)
        covered = np.zeros(n_segments)
        for first in range(n_segments - length + 1):
            start, stop = int(edges[first]), int(edges[first + length])
            covered[first : first + length] += 1
            for c in range(x.shape[1]):
                hidden[start:stop, c] = baseline
                drop = base - float(np.asarray(predict(hidden), dtype=np.float32).reshape(-1)[chosen])
                hidden[start:stop, c] = x[start:stop, c]
                total[first : first + length, c] += drop
                calls += 1
        cells += total / covered[:, None]
    seconds = time.perf_counter() - started
    return Attribution((cells / len(lengths)).astype(np.float32), edges, chosen, base, calls, seconds)


def occlusion_calls(n_segments: int, channels: int, scales: Sequence[int] = DEFAULT_SCALES) -> int:
    """Model calls :func:`occlusion` makes for a window of ``n_segments`` segments and ``channels`` channels."""
    lengths = {min(int(s), n_segments) for s in scales}
    return 1 + channels * sum(n_segments - length + 1 for length in lengths)


def positive_mass(cells: np.ndarray, rows: slice | Sequence[int], columns: slice | Sequence[int]) -> float:
    """Share of the positive attribution that lies in ``cells[rows, columns]`` (0 when there is none)."""
    positive = np.clip(np.asarray(cells, dtype=np.float64), 0.0, None)
    total = positive.sum()
    if total <= 0:
        return 0.0
    return float(positive[rows][:, columns].sum() / total)


def to_cells(per_sample: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(time, channels) per-sample values summed into the cells of ``edges`` (to compare methods)."""
    values = np.asarray(per_sample, dtype=np.float64)
    return np.add.reduceat(values, np.asarray(edges[:-1], dtype=np.int64), axis=0).astype(np.float32)


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two attribution maps of the same shape (1: same pattern, 0: unrelated)."""
    u = np.asarray(a, dtype=np.float64).reshape(-1)
    v = np.asarray(b, dtype=np.float64).reshape(-1)
    norm = float(np.linalg.norm(u) * np.linalg.norm(v))
    return float(u @ v / norm) if norm > 0 else 0.0
