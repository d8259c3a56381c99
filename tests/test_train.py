"""Training on the CPU: class weights, best-epoch restore, history files, input checks.

The multi-replica path (MirroredStrategy over logical CPUs) needs a fresh
process and lives in test_distributed.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_har.convert.models import ModelConfig, import_tf
from edge_har.convert.train import TrainConfig, TrainingError, balanced_class_weights, train_model

tf, keras = import_tf()


def sine_windows(n: int, seed: int, window: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    t = np.arange(window) / 32.0
    x = np.stack([np.sin(2 * np.pi * (1 + 1.5 * c) * t + rng.uniform(0, 6))[:, None] * [1.0, -0.5, 0.3] for c in y])
    return (x + 0.3 * rng.normal(size=x.shape)).astype(np.float32), y


def test_balanced_class_weights_follow_inverse_frequency():
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    w = balanced_class_weights(y, 4)
    assert w[0] == pytest.approx(100 / (3 * 60))
    assert w[2] == pytest.approx(100 / (3 * 10))
    assert w[3] == 1.0  # absent class: neutral, never a division by zero
    # Weighted, every present class contributes the same total weight.
    totals = [w[c] * (y == c).sum() for c in range(3)]
    assert max(totals) == pytest.approx(min(totals))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    x, y = sine_windows(240, seed=1)
    xv, yv = sine_windows(60, seed=2)
    work = tmp_path_factory.mktemp("train")
    config = TrainConfig(epochs=6, batch_size=32, patience=3, learning_rate=3e-3, seed=7, verbose=0)
    result = train_model(x, y, xv, yv, 3, ModelConfig(conv_filters=(8,), lstm_units=(8,)), config, work)
    return result, (xv, yv), work


def test_training_learns_and_writes_history_and_curves(trained):
    result, _, work = trained
    history = json.loads((work / "history.json").read_text())
    assert history["epochs_run"] == result.epochs_run == len(history["loss"])
    assert history["loss"][-1] < history["loss"][0]
    assert set(history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "best_epoch", "seconds"}
    assert result.curves_file is not None and result.curves_file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (work / "best.weights.h5").is_file()  # ModelCheckpoint of the best epoch
    assert result.strategy.name == "OneDeviceStrategy" and result.strategy.replicas == 1
    assert not result.strategy.mixed_precision  # no GPU here


def test_the_returned_model_carries_the_best_epochs_weights(trained):
    result, (xv, yv), _ = trained
    best = result.best_epoch
    assert result.history["val_loss"][best - 1] == min(result.history["val_loss"])
    val_loss = result.model.evaluate(xv, yv, verbose=0)[0]
    assert val_loss == pytest.approx(min(result.history["val_loss"]), rel=1e-4)


def test_same_seed_same_model(tmp_path):
    x, y = sine_windows(96, seed=3)
    xv, yv = sine_windows(32, seed=4)
    config = TrainConfig(epochs=2, batch_size=32, patience=2, seed=11, verbose=0)
    model_config = ModelConfig(conv_filters=(4,), lstm_units=(4,))
    a = train_model(x, y, xv, yv, 3, model_config, config, tmp_path / "a")
    b = train_model(x, y, xv, yv, 3, model_config, config, tmp_path / "b")
    assert a.history["loss"] == b.history["loss"]
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights()):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.parametrize(
    "x_shape, y_len, labels_max, fragment",
    [
        ((10, 32), 10, 2, "shape (n, window, channels)"),
        ((10, 32, 3), 9, 2, "10 windows but 9 labels"),
        ((10, 32, 3), 10, 5, "class indices 0..2"),
    ],
)
def test_bad_training_arrays_are_refused_before_any_work(tmp_path, x_shape, y_len, labels_max, fragment):
    x = np.zeros(x_shape, np.float32)
    y = np.arange(y_len) % (labels_max + 1)
    with pytest.raises(TrainingError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        train_model(x, y, x[:0], y[:0], 3, ModelConfig(), TrainConfig(epochs=1, verbose=0), tmp_path)
