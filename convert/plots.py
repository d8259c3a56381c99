"""PNG plots people would rather look at than read: confusion matrices and training curves.

matplotlib is imported only when a plot is drawn, with the non-interactive Agg
backend (no display on a server or a Pi), and its absence is a clear error
naming the extra to install, not an ImportError deep in a stack.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edge_har.core.errors import EdgeHarError


class PlotError(EdgeHarError, RuntimeError):
    """matplotlib is missing or a plot cannot be written."""


def pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise PlotError(
            "plots need matplotlib, which is not installed: pip install matplotlib (or pip install 'edge-har[train]')"
        ) from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix_png(
    cm: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path, title: str = "Confusion matrix"
) -> Path:
    """Row-normalised colours (recall per true class) with the raw counts written in each cell."""
    plt = pyplot()
    counts = np.asarray(cm, dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rows = counts.sum(axis=1, keepdims=True)
        frac = np.where(rows > 0, counts / np.maximum(rows, 1), 0.0)
    n = len(labels)
    size = max(4.0, 0.55 * n + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    try:
        image = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
        ax.set_xticks(range(n), labels=list(labels), rotation=60, ha="right")
        ax.set_yticks(range(n), labels=list(labels))
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        font = 8 if n <= 10 else 6
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(
                        j,
                        i,
                        str(counts[i, j]),
                        ha="center",
                        va="center",
                        fontsize=font,
                        color="white" if frac[i, j] > 0.5 else "black",
                    )
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def training_curves_png(history: Mapping[str, Sequence[float]], path: str | Path, title: str = "Training") -> Path:
    """Loss and accuracy per epoch, training and validation, side by side."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    try:
        for ax, metric in zip(axes, ("loss", "accuracy")):
            for key, style in ((metric, "-"), (f"val_{metric}", "--")):
                values = history.get(key)
                if values:
                    ax.plot(
                        range(1, len(values) + 1),
                        values,
                        style,
                        marker="o",
                        markersize=3,
                        label="validation" if key.startswith("val_") else "training",
                    )
            ax.set_xlabel("epoch")
            ax.set_ylabel(metric)
            ax.grid(True, alpha=0.3)
            ax.legend()
        best = history.get("best_epoch")
        if isinstance(best, int):
            for ax in axes:
                ax.axvline(best, color="grey", linewidth=1, linestyle=":")
        fig.suptitle(title)
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def save_figure(fig: Any, path: str | Path) -> Path:
    """Lay out and write ``fig`` as a PNG at ``path`` (folders made): every plot edge-har draws is saved alike."""
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out
