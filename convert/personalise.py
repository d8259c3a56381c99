"""Fine-tuning a trained CNN-LSTM on a user's own windows, and growing its classes.

A bundle's float Keras model already knows what an IMU signal looks like; a
user's few minutes of their own recordings are too little to train from
scratch but enough to adapt the layers near the output. :func:`fine_tune`
trains a copy of the model with some layers frozen (``train_layers``) at a
smaller learning rate than the original training, so the convolutional
features (and with them the original classes) are kept; :func:`add_classes`
appends outputs to the final Dense layer for classes the bundle lacks, keeping
the old classes' weights, so their logits are unchanged until training moves
them.

The model handed in is never modified: both functions return a new model.
Everything here is float Keras (``tf_keras``); the caller quantizes.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from edge_har.convert.models import import_tf
from edge_har.core.errors import EdgeHarError

log = logging.getLogger(__name__)

TRAIN_LAYERS: tuple[str, ...] = ("head", "lstm", "dense", "all")
TRAIN_LAYERS_HELP = (
    "head = every layer but the convolutional features (Conv1D, BatchNorm stay frozen); "
    "lstm = only the LSTM layers and the Dense layers; dense = only the final Dense (the classifier); "
    "all = every layer"
)

# Fine-tuning starts from a trained model: a third of convert's default rate (3e-3) moves the
# unfrozen layers without wiping out what they learnt on the original data.
DEFAULT_LEARNING_RATE = 1e-3
DEFAULT_EPOCHS = 20
DEFAULT_BATCH_SIZE = 32
DEFAULT_PATIENCE = 5


class PersonaliseError(EdgeHarError, ValueError):
    """Fine-tuning cannot start (unknown layer choice, shapes, labels out of range)."""


def _layer_kind(layer: Any, keras: Any) -> str:
    """``conv``, ``lstm``, ``dense`` or ``other`` for a layer, by its type (and the unrolled LSTM's name)."""
    layers = keras.layers
    if isinstance(layer, (layers.Conv1D, layers.BatchNormalization)):
        return "conv"
    if isinstance(layer, (layers.LSTM, layers.Bidirectional, layers.GRU, layers.RNN)):
        return "lstm"
    if type(layer).__name__ == "UnrolledLSTM":
        return "lstm"
    if isinstance(layer, layers.Dense):
        return "dense"
    return "other"


def final_dense(model: Any) -> Any:
    """The model's last Dense layer (the classifier, ``logits`` in the CNN-LSTM)."""
    _, keras = import_tf()
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    if not dense:
        raise PersonaliseError(f"model {model.name!r} has no Dense layer to fine-tune or grow")
    return dense[-1]


def set_trainable(model: Any, train_layers: str) -> list[str]:
    """Freeze ``model``'s layers as ``train_layers`` says (see TRAIN_LAYERS_HELP); return the trained layers' names.

    A frozen BatchNormalization runs in inference mode (tf_keras), so its moving
    statistics stay those of the original training data.
    """
    if train_layers not in TRAIN_LAYERS:
        raise PersonaliseError(f"train_layers must be one of {', '.join(TRAIN_LAYERS)}, got {train_layers!r}")
    _, keras = import_tf()
    last = final_dense(model)
    trained = []
    for layer in model.layers:
        kind = _layer_kind(layer, keras)
        if train_layers == "all":
            on = True
        elif train_layers == "head":
            on = kind != "conv"
        elif train_layers == "lstm":
            on = kind in ("lstm", "dense")
        else:  # dense
            on = layer is last
        layer.trainable = on
        if on and layer.weights:
            trained.append(layer.name)
    if not trained:
        raise PersonaliseError(f"train_layers={train_layers!r} leaves no layer with weights to train")
    return trained


def copy_model(model: Any) -> Any:
    """A new model of the same architecture and weights (the original stays untouched)."""
    _, keras = import_tf()
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def add_classes(model: Any, n_new: int, *, seed: int = 0) -> Any:
    """A copy of ``model`` whose final Dense has ``n_new`` more outputs, appended after the old ones.

    The old outputs' kernel columns and biases are copied, so for any input the
    first ``n_classes`` logits equal the old model's. The new columns start from
    small random weights (seeded) and a bias a little below the old ones' mean,
    so the new classes begin unlikely rather than at random strength.
    """
    if n_new < 0:
        raise PersonaliseError(f"n_new must be >= 0, got {n_new}")
    if n_new == 0:
        return copy_model(model)
    _, keras = import_tf()
    dense = final_dense(model)
    config = model.get_config()
    for entry in config["layers"]:
        if entry["config"].get("name") == dense.name:
            entry["config"]["units"] = int(dense.units) + int(n_new)
            break
    grown = keras.Model.from_config(config)
    new_dense = grown.get_layer(dense.name)
    for old_layer, new_layer in zip(model.layers, grown.layers):
        if old_layer is dense:
            continue
        new_layer.set_weights(old_layer.get_weights())
    old_weights = dense.get_weights()
    kernel = np.asarray(old_weights[0], np.float32)
    rng = np.random.default_rng(seed)
    scale = float(kernel.std()) or 0.05
    extra = rng.normal(0.0, scale, size=(kernel.shape[0], n_new)).astype(np.float32)
    weights = [np.concatenate([kernel, extra], axis=1)]
    if dense.use_bias:
        bias = np.asarray(old_weights[1], np.float32)
        extra_bias = np.full(n_new, float(bias.mean()) - 1.0, np.float32)
        weights.append(np.concatenate([bias, extra_bias]))
    new_dense.set_weights(weights)
    return grown


def _check(x: np.ndarray, y: np.ndarray, n_classes: int, what: str, input_shape: tuple[int, ...]) -> None:
    if x.ndim != len(input_shape) + 1 or tuple(x.shape[1:]) != input_shape:
        raise PersonaliseError(
            f"{what} windows have shape {x.shape}; the model takes (n, {', '.join(map(str, input_shape))})"
        )
    if len(x) != len(y):
        raise PersonaliseError(f"{what}: {len(x)} windows but {len(y)} labels")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise PersonaliseError(
            f"{what} labels must be class indices 0..{n_classes - 1}, got {int(y.min())}..{int(y.max())}"
        )


def fine_tune(
    model: Any,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    train_layers: str = "head",
    epochs: int = DEFAULT_EPOCHS,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    seed: int = 0,
    class_weight: Mapping[int, float] | str | None = None,
    patience: int | None = DEFAULT_PATIENCE,
    history: dict[str, Any] | None = None,
) -> Any:
    """Fine-tune a copy of ``model`` on normalised windows; return the copy (float Keras, float32).

    ``train_layers`` picks what trains (TRAIN_LAYERS_HELP); Adam at
    ``learning_rate``. With validation windows, early stopping watches the
    validation loss (``patience`` epochs) and the best epoch's weights are kept;
    without, every epoch runs and the last weights are returned.
    ``class_weight`` is a ``{class index: weight}`` map, ``"balanced"`` (inverse
    frequency over the classes present) or None. The run is deterministic for a
    seed on the CPU (op determinism, seeded shuffling and dropout); on a GPU the
    seeds give repeatability only where the kernels allow. ``history``, when
    given, is filled with the per-epoch losses and the trained layers' names.
    """
    tf, keras = import_tf()
    x_train = np.asarray(x_train, np.float32)
    y_train = np.asarray(y_train, np.int64)
    input_shape = tuple(int(d) for d in model.input_shape[1:])
    n_classes = int(model.output_shape[-1])
    _check(x_train, y_train, n_classes, "training", input_shape)
    if len(x_train) == 0:
        raise PersonaliseError("no training windows to fine-tune on")
    has_val = x_val is not None and y_val is not None and len(x_val) > 0
    if has_val:
        x_val = np.asarray(x_val, np.float32)
        y_val = np.asarray(y_val, np.int64)
        _check(x_val, y_val, n_classes, "validation", input_shape)
    if epochs < 1 or batch_size < 1 or learning_rate <= 0:
        raise PersonaliseError(
            f"epochs, batch_size and learning_rate must be positive (got {epochs}, {batch_size}, {learning_rate})"
        )

    if not tf.config.list_physical_devices("GPU"):
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
    tuned = copy_model(model)
    trained = set_trainable(tuned, train_layers)
    tuned.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    weights: dict[int, float] | None
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise PersonaliseError(f"class_weight must be a mapping, 'balanced' or None, got {class_weight!r}")
        from edge_har.convert.train import balanced_class_weights

        weights = balanced_class_weights(y_train, n_classes)
    else:
        weights = None if class_weight is None else {int(k): float(v) for k, v in class_weight.items()}
    callbacks = []
    stopper = None
    if has_val and patience is not None:
        stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
        callbacks.append(stopper)
    log.info(
        "fine-tuning %s (%s: %s) on %d windows%s, lr %g, at most %d epochs",
        model.name,
        train_layers,
        ", ".join(trained),
        len(x_train),
        f" ({len(x_val)} validation)" if has_val else "",  # type: ignore[arg-type]
        learning_rate,
        epochs,
    )
    fit = tuned.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val) if has_val else None,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        class_weight=weights,
        callbacks=callbacks,
        verbose=0,
    )
    if stopper is not None and stopper.best_weights is not None:
        tuned.set_weights(stopper.best_weights)
    for layer in tuned.layers:  # a returned model trains whole again if someone compiles it
        layer.trainable = True
    if history is not None:
        history.update({k: [float(v) for v in vals] for k, vals in fit.history.items()})
        history["trained_layers"] = trained
        history["epochs_run"] = len(fit.history.get("loss", []))
        history["best_epoch"] = (
            int(np.argmin(fit.history["val_loss"])) + 1
            if has_val and fit.history.get("val_loss")
            else history["epochs_run"]
        )
    return tuned
