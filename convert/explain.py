"""``evaluate --explain``: what in the signal made the model's labels, per class and for its worst mistakes.

For one variant, over the evaluated windows:

* **per class**, the mean occlusion attribution (through the TFLite interpreter, the deployed
  model) of up to ``windows_per_class`` of its correctly labelled windows, picked evenly over the
  split so the same bundle and data always give the same picture;
* the **worst mistakes**, the most confident wrong windows, each drawn as its signal over the
  attribution band of the label it was wrongly given;
* with TensorFlow and the bundle's float Keras model (the workstation): **integrated gradients**
  beside occlusion for the same windows and class means, and the cosine agreement of the two
  methods; the **penultimate features** in 2-D (PCA) coloured by class; the last LSTM's **hidden
  state** over a window for one example per class; a model that pools with attention, its
  **attention weights** over time per class.

Everything lands in ``<out>/<variant>/explain/`` as PNGs and ``explain.json`` (the arrays and the
time each method takes per window). Without TensorFlow the occlusion half is written and a line
says what the rest needs.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edge_har.core.attribution import Attribution, agreement, occlusion, occlusion_calls, segment_edges, to_cells
from edge_har.core.bundle import Bundle
from edge_har.core.interpreter import TFLiteModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExplainOptions:
    windows_per_class: int = 30  # correct windows averaged per class
    mistakes: int = 4  # most confident wrong windows drawn
    segment: int | None = None  # occlusion segment in samples (default: the window in 16)
    gradients: bool = True  # integrated gradients and model internals when TensorFlow is here
    steps: int = 64  # integrated gradients' path points
    examples: int = 6  # windows whose hidden state is drawn (one per class, first classes first)


def evenly(indices: np.ndarray, count: int) -> np.ndarray:
    """At most ``count`` of ``indices``, spread evenly over them (deterministic, unlike a random draw)."""
    if len(indices) <= count:
        return indices
    return indices[np.linspace(0, len(indices) - 1, count).round().astype(np.int64)]


def load_keras_for(bundle: Bundle, options: ExplainOptions) -> Any | None:
    """The bundle's float Keras model for the gradient half, or None with a log line saying why not."""
    if not options.gradients:
        return None
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        log.warning(
            "explain: occlusion only; integrated gradients and model internals need TensorFlow "
            "(pip install 'edge-har[train]')"
        )
        return None
    from edge_har.convert.keras_probe import ProbeError, load_keras

    try:
        return load_keras(bundle.root)
    except ProbeError as exc:
        log.warning("explain: occlusion only; %s", exc)
        return None


def explain_variant(
    bundle: Bundle,
    model: TFLiteModel,
    variant: str,
    x: np.ndarray,
    y: np.ndarray,
    probabilities: np.ndarray,
    physical: np.ndarray,
    out_dir: str | Path,
    options: ExplainOptions = ExplainOptions(),
    keras_model: Any | None = None,
) -> dict[str, Any]:
    """Write ``out_dir``'s explanation plots and ``explain.json`` for one variant; return the JSON document."""
    from edge_har.convert import explain_plots as plots

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    pre = bundle.preprocessing
    labels, channels, rate = list(bundle.labels), list(pre.channels), float(pre.sample_rate_hz)
    edges = segment_edges(pre.window, options.segment)
    predicted = probabilities.argmax(axis=1)
    timings: dict[str, list[float]] = {"occlusion": [], "integrated_gradients": []}
    gradient = _gradient_fn(keras_model, x, options.steps, timings)
    document: dict[str, Any] = {
        "variant": variant,
        "edges": edges.tolist(),
        "channels": channels,
        "baseline": "0 in normalised units (each channel at its training mean)",
        "classes": {},
        "mistakes": [],
        "files": {},
    }

    def occlude(i: int, target: int) -> Attribution:
        result = occlusion(model.predict, x[i], target=target, segment=options.segment)
        timings["occlusion"].append(result.seconds)
        return result

    class_rows = []
    for k, label in enumerate(labels):
        picked = evenly(np.flatnonzero((y == k) & (predicted == k)), options.windows_per_class)
        entry: dict[str, Any] = {"windows": int(len(picked))}
        if len(picked):
            occluded = np.mean([occlude(int(i), k).cells for i in picked], axis=0)
            entry["occlusion"] = np.round(occluded, 5).tolist()
            class_rows.append((label, occluded, len(picked)))
            if gradient is not None:
                integrated = np.mean([to_cells(gradient(int(i), k), edges) for i in picked], axis=0)
                entry["integrated_gradients"] = np.round(integrated, 5).tolist()
                entry["agreement"] = round(agreement(occluded, integrated), 4)
        document["classes"][label] = entry
    if class_rows:
        document["files"]["class_attribution"] = str(
            plots.class_means_png(
                class_rows,
                edges,
                channels,
                rate,
                folder / "class_attribution.png",
                f"{variant}: mean occlusion attribution of correctly labelled windows",
            )
        )

    wrong = np.flatnonzero(predicted != y)
    worst = wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")][: options.mistakes]
    for rank, i in enumerate(worst, 1):
        guess, truth = int(predicted[i]), int(y[i])
        occluded_window = occlude(int(i), guess)
        cells = occluded_window.cells
        bands = [("occlusion", occluded_window.per_sample())]
        mistake: dict[str, Any] = {
            "window": int(i),
            "true": labels[truth],
            "predicted": labels[guess],
            "confidence": round(float(probabilities[i, guess]), 4),
            "occlusion": np.round(cells, 5).tolist(),
        }
        if gradient is not None:
            values = gradient(int(i), guess)
            bands.append(("integrated gradients", values))
            integrated_cells = to_cells(values, edges)
            mistake["integrated_gradients"] = np.round(integrated_cells, 5).tolist()
            mistake["agreement"] = round(agreement(cells, integrated_cells), 4)
        png = plots.window_png(
            physical[i],
            bands,
            channels,
            rate,
            folder / f"mistake_{rank:02d}.png",
            f"window {i}: {labels[truth]} taken for {labels[guess]} ({100 * probabilities[i, guess]:.0f}%); "
            "red = supports the wrong label",
        )
        mistake["file"] = str(png)
        document["mistakes"].append(mistake)

    document["ms_per_window"] = {
        name: round(1000 * float(np.mean(values)), 3) for name, values in timings.items() if values
    }
    document["occlusion_calls_per_window"] = occlusion_calls(len(edges) - 1, len(channels))
    if keras_model is not None:
        document.update(_internals(keras_model, x, y, labels, float(pre.window_seconds), options, folder, variant))
    (folder / "explain.json").write_text(json.dumps(document, indent=2))
    return document


def _gradient_fn(
    keras_model: Any | None, x: np.ndarray, steps: int, timings: dict[str, list[float]]
) -> Callable[[int, int], np.ndarray] | None:
    """``(window index, class) -> (time, channels)`` integrated gradients, or None without a Keras model."""
    if keras_model is None:
        return None
    from edge_har.convert.keras_probe import integrated_gradients

    def run(i: int, target: int) -> np.ndarray:
        result = integrated_gradients(keras_model, x[i], target=target, steps=steps)
        timings["integrated_gradients"].append(result.seconds)
        return result.values

    return run


def _internals(
    keras_model: Any,
    x: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    window_s: float,
    options: ExplainOptions,
    folder: Path,
    variant: str,
) -> dict[str, Any]:
    """Features in 2-D, hidden states and attention from the float Keras model."""
    from edge_har.convert import explain_plots as plots
    from edge_har.convert.keras_probe import attention_weights, lstm_states, pca_2d, penultimate_features

    out: dict[str, Any] = {}
    files: dict[str, str] = {}
    started = time.perf_counter()
    shown = evenly(np.arange(len(x)), 3000)
    points, shares = pca_2d(penultimate_features(keras_model, x[shown]))
    files["features"] = str(
        plots.features_png(
            points,
            y[shown],
            labels,
            shares,
            folder / "features_pca.png",
            f"{variant}: penultimate features (float Keras)",
        )
    )
    out["features"] = {"windows": int(len(shown)), "variance_shares": np.round(shares, 4).tolist()}
    examples = [int(np.flatnonzero(y == k)[0]) for k in range(len(labels)) if (y == k).any()][: options.examples]
    states = lstm_states(keras_model, x[examples]) if examples else None
    if states is not None:
        layer, values = states
        files["lstm_states"] = str(
            plots.states_png(
                [(f"{labels[int(y[i])]} (window {i})", values[n]) for n, i in enumerate(examples)],
                window_s,
                layer,
                folder / "lstm_states.png",
                f"{variant}: the last LSTM's hidden state over one window per class (float Keras)",
            )
        )
        out["lstm_states"] = {
            "layer": layer,
            "windows": examples,
            "steps": int(values.shape[1]),
            "units": int(values.shape[2]),
        }
    weights = attention_weights(keras_model, x[shown])
    if weights is not None:
        curves = [
            (label, weights[y[shown] == k].mean(axis=0)) for k, label in enumerate(labels) if (y[shown] == k).any()
        ]
        files["attention"] = str(
            plots.attention_png(
                curves, window_s, folder / "attention.png", f"{variant}: mean attention over time per class"
            )
        )
        out["attention"] = {label: np.round(curve, 4).tolist() for label, curve in curves}
    out["internals_seconds"] = round(time.perf_counter() - started, 2)
    return {"internals": out, "internal_files": files}
