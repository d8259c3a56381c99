"""What the float Keras model computes inside: gradients, penultimate features, LSTM states, attention.

These read a bundle's float Keras copy (``keras_model.h5``, rebuilt from ``training.model`` in
``bundle.json``), so they need TensorFlow and run on the workstation. The device-side counterpart,
occlusion through the TFLite interpreter (:mod:`edge_har.core.attribution`), explains the
deployed variant; the two are compared on the same windows in ``evaluate``.

Integrated gradients (Sundararajan, Taly & Yan 2017) integrate the gradient of the class's
probability along the straight path from the baseline (0 in normalised units, every channel at
its training mean: the same baseline occlusion hides cells with) to the window. Their sum equals
the change in probability from baseline to window (completeness); ``delta`` reports how far the
Riemann sum with ``steps`` points falls from it, so a user can see when more steps are needed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edge_har.core.errors import EdgeHarError

#: Points on the path from baseline to window (trapezoid rule); 64 keeps ``delta`` under 1 %
#: of the probability on the test bundles.
DEFAULT_STEPS = 64


class ProbeError(EdgeHarError, ValueError):
    """The bundle holds no float Keras model to look into, or it does not rebuild."""


@dataclass(frozen=True)
class GradientAttribution:
    """Integrated gradients of one window to one class, per sample and channel."""

    values: np.ndarray  # (time, channels) float32
    target: int
    probability: float
    delta: float  # sum(values) - (p(window) - p(baseline)): the integration error
    steps: int
    seconds: float


def load_keras(bundle_dir: str | Path) -> Any:
    """The bundle's float Keras model, rebuilt from ``bundle.json``'s model config and its weights file."""
    from edge_har.convert.export import KERAS_MODEL_FILE
    from edge_har.convert.models import ModelConfig, build_from_config

    folder = Path(bundle_dir)
    doc_file = folder / "bundle.json"
    try:
        document = json.loads(doc_file.read_text())
    except (OSError, ValueError) as exc:
        raise ProbeError(f"{doc_file}: cannot be read as JSON: {exc}") from exc
    if document.get("kind", "sensor") != "sensor":
        raise ProbeError(
            f"{doc_file}: gradients and model internals are for sensor models (this is {document['kind']})"
        )
    weights = folder / str((document.get("files") or {}).get("keras_model") or KERAS_MODEL_FILE)
    if not weights.is_file():
        raise ProbeError(f"{weights}: missing; integrated gradients and model internals need the float Keras model")
    training = document.get("training") or {}
    pre = document.get("preprocessing") or {}
    try:
        config = ModelConfig.from_json(training.get("model") or {})
        shape = (int(pre["window"]), len(pre["channels"]))
        model = build_from_config(config, shape, len(document["labels"]))
        model.load_weights(str(weights))
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise ProbeError(
            f"{doc_file}: the Keras model does not rebuild from training.model and {weights.name}: {exc}"
        ) from exc
    return model


def integrated_gradients(
    model: Any, window: np.ndarray, target: int | None = None, steps: int = DEFAULT_STEPS
) -> GradientAttribution:
    """Integrated gradients of a normalised ``(time, channels)`` window to ``target`` (default: the predicted class)."""
    import tensorflow as tf

    if steps < 1:
        raise ValueError(f"steps: {steps}; integrated gradients need at least 1")
    x = np.asarray(window, dtype=np.float32)
    started = time.perf_counter()
    alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)[:, None, None]
    path = tf.constant(alphas * x[None])  # baseline 0: the training mean
    with tf.GradientTape() as tape:
        tape.watch(path)
        probabilities = model(path, training=False)
        chosen = int(np.argmax(probabilities[-1])) if target is None else int(target)
        picked = probabilities[:, chosen]
    gradients = tape.gradient(picked, path).numpy()
    average = ((gradients[:-1] + gradients[1:]) / 2).mean(axis=0)
    values = (x * average).astype(np.float32)
    p = picked.numpy()
    delta = float(values.sum() - (p[-1] - p[0]))
    return GradientAttribution(values, chosen, float(p[-1]), delta, steps, time.perf_counter() - started)


def _layer(model: Any, name: str) -> Any | None:
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def penultimate_features(model: Any, windows: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """(n, features): what the classifier's dense layer (``logits``) reads for each window."""
    keras = _keras()
    logits = _layer(model, "logits")
    if logits is None:
        raise ProbeError("the model has no 'logits' layer; its penultimate features are unknown")
    probe = keras.Model(model.inputs, logits.input)
    return np.asarray(probe.predict(windows, batch_size=batch_size, verbose=0), dtype=np.float32)


def attention_weights(model: Any, windows: np.ndarray) -> np.ndarray | None:
    """(n, steps): the temporal attention of a model that pools with it (``attention_weights``), else None."""
    keras = _keras()
    layer = _layer(model, "attention_weights")
    if layer is None:
        return None
    probe = keras.Model(model.inputs, layer.output)
    out = np.asarray(probe.predict(windows, verbose=0), dtype=np.float32)
    return out.reshape(len(windows), -1)


def lstm_states(model: Any, windows: np.ndarray) -> tuple[str, np.ndarray] | None:
    """(layer name, (n, steps, units)): the last LSTM's hidden state at every step, else None.

    A last LSTM that returns only its final state is run again as a copy that returns its whole
    sequence, with the same weights, on the same input: the states are the ones the model
    computes, of which it keeps the last.
    """
    keras = _keras()
    last = None
    for layer in model.layers:
        inner = getattr(layer, "forward_layer", layer)
        if isinstance(inner, keras.layers.LSTM):
            last = layer
    if last is None:
        return None
    inner = getattr(last, "forward_layer", last)
    feed = keras.Model(model.inputs, last.input)
    sequence = feed.predict(windows, verbose=0)
    if inner.return_sequences:
        copy = inner
    else:
        config = dict(inner.get_config(), return_sequences=True, name=f"{inner.name}_states")
        config.pop("go_backwards", None)
        copy = keras.layers.LSTM.from_config(config)
        copy.build(sequence.shape)
        copy.set_weights(inner.get_weights())
    return str(last.name), np.asarray(copy(sequence, training=False), dtype=np.float32)


def pca_2d(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((n, 2) projection, (2,) share of the variance each axis explains) of centred ``features``."""
    x = np.asarray(features, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    if len(x) < 2:
        return np.zeros((len(x), 2), np.float32), np.zeros(2, np.float32)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    components = vt[:2]
    if len(components) < 2:
        components = np.vstack([components, np.zeros_like(components[:1])])
    # A sign fixed by the data, so the same bundle and windows always give the same picture.
    signs = np.sign(components[np.arange(2), np.abs(components).argmax(axis=1)])
    components = components * np.where(signs == 0, 1, signs)[:, None]
    variance = s**2
    shares = variance[:2] / variance.sum() if variance.sum() > 0 else np.zeros(2)
    return (x @ components.T).astype(np.float32), np.pad(shares, (0, 2 - len(shares))).astype(np.float32)


def _keras() -> Any:
    from edge_har.convert.models import import_tf

    return import_tf()[1]


def describe(result: GradientAttribution) -> Mapping[str, Any]:
    return {
        "method": "integrated_gradients",
        "target": result.target,
        "probability": round(result.probability, 5),
        "steps": result.steps,
        "delta": round(result.delta, 6),
        "ms": round(1000 * result.seconds, 3),
    }
