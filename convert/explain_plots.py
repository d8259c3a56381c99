"""Pictures of why windows got their labels: the signal over a heat band, class means, features, states.

Every attribution uses one diverging scale centred on 0 (red: the cell supports the class, blue:
it argues against it), symmetric around the largest magnitude shown, so a pale band means "this
part did not matter" on every plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

CMAP = "RdBu_r"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (its folder made) and free it: the plots run hundreds of times in a sweep."""
    plt = _pyplot()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def _limit(*maps: np.ndarray) -> float:
    peak = max((float(np.abs(m).max()) for m in maps if np.size(m)), default=0.0)
    return peak if peak > 0 else 1.0


def _band_axes(
    fig: Any, grid: Any, signal: np.ndarray, band: np.ndarray, channels: Sequence[str], rate_hz: float, limit: float
) -> Any:
    """One column of ``len(channels)`` rows: each channel's line over its attribution band."""
    t = np.arange(len(signal)) / rate_hz
    image = None
    for c, name in enumerate(channels):
        ax = fig.add_subplot(grid[c])
        low, high = float(signal[:, c].min()), float(signal[:, c].max())
        pad = 0.1 * (high - low) or 0.5
        image = ax.imshow(
            band[None, :, c],
            aspect="auto",
            cmap=CMAP,
            vmin=-limit,
            vmax=limit,
            extent=(t[0], t[-1] + 1 / rate_hz, low - pad, high + pad),
            interpolation="nearest",
        )
        ax.plot(t + 0.5 / rate_hz, signal[:, c], color="black", linewidth=0.9)
        ax.set_ylim(low - pad, high + pad)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(labelsize=7)
        if c < len(channels) - 1:
            ax.set_xticklabels([])
    return image


def window_png(
    signal: np.ndarray,
    bands: Sequence[tuple[str, np.ndarray]],
    channels: Sequence[str],
    rate_hz: float,
    path: str | Path,
    title: str,
) -> Path:
    """The window's channels, each over its heat band, one column per method (``(name, (time, channels))``)."""
    plt = _pyplot()
    from matplotlib.gridspec import GridSpec

    n = len(channels)
    fig = plt.figure(figsize=(4.6 * len(bands) + 0.8, 0.75 * n + 1.2))
    outer = GridSpec(1, len(bands), figure=fig, wspace=0.4)
    for i, (method, band) in enumerate(bands):
        inner = outer[i].subgridspec(n, 1, hspace=0.08)
        limit = _limit(band)
        image = _band_axes(fig, inner, signal, band, channels, rate_hz, limit)
        fig.axes[-1].set_xlabel(f"{method} (s)", fontsize=8)
        fig.colorbar(image, ax=fig.axes[-n:], fraction=0.03, pad=0.01).ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def class_means_png(
    means: Sequence[tuple[str, np.ndarray, int]],
    edges: np.ndarray,
    channels: Sequence[str],
    rate_hz: float,
    path: str | Path,
    title: str,
) -> Path:
    """Per class ``(label, (segments, channels) mean cells, windows averaged)``: a channel x time map each."""
    plt = _pyplot()
    rows = len(means)
    fig, axes = plt.subplots(
        rows,
        1,
        figsize=(7, 0.3 * len(channels) * rows + 0.4 * rows + 0.8),
        squeeze=False,
        sharex=True,
        layout="constrained",
    )
    limit = _limit(*(m for _, m, _ in means))
    seconds = np.asarray(edges, dtype=np.float64) / rate_hz
    image = None
    for ax, (label, cells, count) in zip(axes[:, 0], means):
        image = ax.pcolormesh(seconds, np.arange(len(channels) + 1), cells.T, cmap=CMAP, vmin=-limit, vmax=limit)
        ax.set_yticks(np.arange(len(channels)) + 0.5)
        ax.set_yticklabels(channels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{label} ({count} correct windows)", fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("time in the window (s)", fontsize=8)
    fig.colorbar(image, ax=axes[:, 0].tolist(), fraction=0.04, pad=0.01, label="drop in probability when hidden")
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def features_png(
    points: np.ndarray, y: np.ndarray, labels: Sequence[str], shares: np.ndarray, path: str | Path, title: str
) -> Path:
    """The penultimate features' first two principal components, a colour per true class."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    colours = plt.get_cmap("tab20" if len(labels) > 10 else "tab10")
    for k, label in enumerate(labels):
        mask = y == k
        if mask.any():
            ax.scatter(points[mask, 0], points[mask, 1], s=6, alpha=0.6, color=colours(k % colours.N), label=label)
    ax.set_xlabel(f"PC 1 ({100 * shares[0]:.0f}% of the variance)")
    ax.set_ylabel(f"PC 2 ({100 * shares[1]:.0f}%)")
    ax.legend(fontsize=7, markerscale=2, loc="best")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def states_png(
    examples: Sequence[tuple[str, np.ndarray]], window_s: float, layer: str, path: str | Path, title: str
) -> Path:
    """Each example's LSTM hidden state, units x steps (``(caption, (steps, units))``)."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(examples), 1, figsize=(7, 1.7 * len(examples) + 0.6), squeeze=False, sharex=True)
    image = None
    for ax, (caption, states) in zip(axes[:, 0], examples):
        steps = states.shape[0]
        image = ax.imshow(
            states.T,
            aspect="auto",
            cmap="PuOr_r",
            vmin=-1,
            vmax=1,
            extent=(0, window_s, states.shape[1], 0),
            interpolation="nearest",
        )
        ax.set_ylabel("unit", fontsize=7)
        ax.set_title(f"{caption} ({steps} steps)", fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("time in the window (s)", fontsize=8)
    fig.colorbar(image, ax=axes[:, 0].tolist(), fraction=0.03, pad=0.01, label=f"{layer} hidden state")
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def attention_png(curves: Sequence[tuple[str, np.ndarray]], window_s: float, path: str | Path, title: str) -> Path:
    """Mean attention weight over the steps, one line per class (``(label, (steps,))``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for label, weights in curves:
        steps = len(weights)
        centres = (np.arange(steps) + 0.5) * window_s / steps
        ax.plot(centres, weights, marker=".", label=label)
    if curves:
        ax.axhline(1 / len(curves[0][1]), color="grey", linestyle=":", linewidth=0.8, label="uniform")
    ax.set_xlabel("time in the window (s)")
    ax.set_ylabel("attention weight")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)
