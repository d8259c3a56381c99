"""Classification metrics in plain numpy.

They live on the device side (no scikit-learn, no TensorFlow) so that the same
numbers come out of ``edge-har convert``, ``edge-har evaluate`` and the
benchmark suites, on a workstation or on a Pi. scikit-learn's conventions are
followed (``f1_score(average="macro")`` with its default labels): a class's
precision is 0 when nothing was predicted as it, and macro averages run over the
classes that occur in the true or the predicted labels, so a test split that
lacks a class is not scored as if the model had failed on it.
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import numpy as np

ClassIndices = Union[Sequence[int], np.ndarray]  # one class index per window: a list or an integer array


def confusion_matrix(y_true: ClassIndices, y_pred: ClassIndices, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
            raise ValueError(f"{name} holds class indices outside 0..{n_classes - 1}")
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def accuracy(y_true: ClassIndices, y_pred: ClassIndices) -> float:
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    return float((t == p).mean()) if t.size else float("nan")


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """precision, recall, f1 and support per class from a confusion matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def _scored(cm: np.ndarray) -> np.ndarray:
    """Mask of the classes macro averages run over: seen as truth or as prediction."""
    return (cm.sum(axis=1) + cm.sum(axis=0)) > 0


def macro_f1(y_true: ClassIndices, y_pred: ClassIndices, n_classes: int) -> float:
    cm = confusion_matrix(y_true, y_pred, n_classes)
    mask = _scored(cm)
    return float(per_class_scores(cm)["f1"][mask].mean()) if mask.any() else float("nan")


def classification_report(y_true: ClassIndices, y_pred: ClassIndices, labels: Sequence[str]) -> dict[str, Any]:
    """Everything ``evaluate`` reports, as a JSON-ready dict.

    ``classes_absent`` lists the classes with no true windows (their recall is
    undefined and reported as 0); they only enter the macro averages if the
    model predicted them.
    """
    n = len(labels)
    cm = confusion_matrix(y_true, y_pred, n)
    scores = per_class_scores(cm)
    present = scores["support"] > 0
    scored = _scored(cm)
    return {
        "n_windows": int(cm.sum()),
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": float(scores["f1"][scored].mean()) if scored.any() else float("nan"),
        "macro_precision": float(scores["precision"][scored].mean()) if scored.any() else float("nan"),
        "macro_recall": float(scores["recall"][scored].mean()) if scored.any() else float("nan"),
        "classes_absent": [labels[int(i)] for i in np.flatnonzero(~present)],
        "per_class": {
            label: {
                "precision": float(scores["precision"][i]),
                "recall": float(scores["recall"][i]),
                "f1": float(scores["f1"][i]),
                "support": int(scores["support"][i]),
            }
            for i, label in enumerate(labels)
        },
        "labels": list(labels),
        "confusion_matrix": cm.tolist(),
    }


def format_report(report: dict[str, Any], title: str = "") -> str:
    """A fixed-width table of the per-class scores, for logs and the terminal."""
    labels = report["labels"]
    width = max([len(label) for label in labels] + [9])
    lines = [title] if title else []
    lines.append(f"{'class':<{width}}  precision  recall     f1  support")
    for label in labels:
        s = report["per_class"][label]
        lines.append(f"{label:<{width}}  {s['precision']:9.3f}  {s['recall']:6.3f}  {s['f1']:5.3f}  {s['support']:7d}")
    lines.append(
        f"{'accuracy':<{width}}  {report['accuracy']:.4f}   macro-F1 {report['macro_f1']:.4f}   windows {report['n_windows']}"
    )
    return "\n".join(lines)
