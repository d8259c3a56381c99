"""fine_tune freezes what train_layers says and trains the rest; add_classes keeps the old classes' logits."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from edge_har.convert.models import build_cnn_lstm, import_tf  # noqa: E402
from edge_har.convert.personalise import PersonaliseError, add_classes, fine_tune, set_trainable  # noqa: E402

WINDOW, CHANNELS, CLASSES = 24, 3, 3


def tiny_model():
    _, keras = import_tf()
    keras.utils.set_random_seed(1)
    return build_cnn_lstm(
        (WINDOW, CHANNELS), CLASSES, conv_filters=(4,), kernel_size=3, lstm_units=(4,), conv_dropout=0.0, dropout=0.0
    )


def tiny_data(n: int = 48, classes: int = CLASSES, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.normal(0, 1, size=(n, WINDOW, CHANNELS)).astype(np.float32) + y[:, None, None].astype(np.float32)
    return x, y


def layer_weights(model):
    return {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers if layer.weights}


def changed(before, after):
    return {name for name in before if any(not np.array_equal(a, b) for a, b in zip(before[name], after[name]))}


@pytest.mark.parametrize(
    "train_layers, expected",
    [
        ("head", {"lstm1", "logits"}),
        ("lstm", {"lstm1", "logits"}),
        ("dense", {"logits"}),
        ("all", {"conv1", "bn1", "lstm1", "logits"}),
    ],
)
def test_fine_tune_trains_only_the_chosen_layers(train_layers, expected):
    model = tiny_model()
    before = layer_weights(model)
    x, y = tiny_data()
    tuned = fine_tune(model, x, y, train_layers=train_layers, epochs=2, batch_size=16, seed=0)
    assert changed(before, layer_weights(tuned)) == expected
    assert changed(before, layer_weights(model)) == set()  # the model handed in is untouched


def test_fine_tune_is_deterministic_for_a_seed_and_keeps_the_best_epoch():
    model = tiny_model()
    x, y = tiny_data()
    xv, yv = tiny_data(12, seed=5)
    history: dict = {}
    a = fine_tune(
        model, x, y, epochs=3, batch_size=8, seed=7, x_val=xv, y_val=yv, class_weight="balanced", history=history
    )
    b = fine_tune(model, x, y, epochs=3, batch_size=8, seed=7, x_val=xv, y_val=yv, class_weight="balanced")
    assert changed(layer_weights(a), layer_weights(b)) == set()
    assert history["trained_layers"] == ["lstm1", "logits"]
    assert 1 <= history["best_epoch"] <= history["epochs_run"] <= 3


def test_add_classes_keeps_the_old_logits_and_trains_the_new_class():
    _, keras = import_tf()
    model = tiny_model()
    grown = add_classes(model, 2, seed=0)
    assert grown.output_shape[-1] == CLASSES + 2
    x, _ = tiny_data(10)
    old = keras.Model(model.input, model.get_layer("logits").output).predict(x, verbose=0)
    new = keras.Model(grown.input, grown.get_layer("logits").output).predict(x, verbose=0)
    np.testing.assert_allclose(new[:, :CLASSES], old, rtol=1e-5, atol=1e-6)
    # the grown model fine-tunes on a label only it has
    x4, y4 = tiny_data(40, classes=CLASSES + 1)
    tuned = fine_tune(grown, x4, y4, train_layers="dense", epochs=1, batch_size=8)
    assert tuned.output_shape[-1] == CLASSES + 2


def test_bad_choices_are_one_line_errors():
    model = tiny_model()
    x, y = tiny_data(8)
    with pytest.raises(PersonaliseError, match="train_layers must be one of head, lstm, dense, all"):
        set_trainable(model, "convs")
    with pytest.raises(PersonaliseError, match="labels must be class indices 0..2"):
        fine_tune(model, x, y + 5, epochs=1)
    with pytest.raises(PersonaliseError, match="shape"):
        fine_tune(model, x[:, :5], y, epochs=1)
