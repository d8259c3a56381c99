"""Model internals read from the float Keras model: LSTM states, attention weights, features, PCA."""

from __future__ import annotations

import numpy as np
import pytest

from edge_har.convert.keras_probe import (
    ProbeError,
    attention_weights,
    load_keras,
    lstm_states,
    pca_2d,
    penultimate_features,
)


def _model(family: str, **sizes):
    from edge_har.convert.models import ModelConfig, build_from_config

    config = ModelConfig(family=family, conv_filters=(4,), lstm_units=(6,), kernel_size=3, **sizes)
    return build_from_config(config, (32, 3), 3)


def test_the_last_lstm_states_end_in_what_the_model_keeps():
    from edge_har.convert.models import import_tf

    keras = import_tf()[1]
    model = _model("cnn-lstm")
    windows = np.random.default_rng(0).normal(size=(4, 32, 3)).astype(np.float32)
    layer, states = lstm_states(model, windows)
    kept = keras.Model(model.inputs, model.get_layer(layer).output).predict(windows, verbose=0)
    assert states.shape[0] == 4 and states.shape[2] == 6
    np.testing.assert_allclose(states[:, -1], kept, rtol=1e-5, atol=1e-6)


def test_attention_weights_are_a_distribution_over_the_steps():
    model = _model("tinyhar")
    windows = np.random.default_rng(1).normal(size=(5, 32, 3)).astype(np.float32)
    weights = attention_weights(model, windows)
    assert weights is not None and weights.shape[0] == 5
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    assert attention_weights(_model("cnn-lstm"), windows) is None
    assert penultimate_features(model, windows).shape[0] == 5


def test_pca_is_centred_ordered_and_sign_stable():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 5)) * np.array([5.0, 2.0, 0.5, 0.1, 0.1])
    points, shares = pca_2d(x)
    again, _ = pca_2d(x[::-1].copy())
    assert shares[0] > shares[1] > 0 and shares.sum() <= 1
    np.testing.assert_allclose(points[::-1], again, rtol=1e-5, atol=1e-6)
    assert abs(points[:, 0].mean()) < 1e-6
    one, none = pca_2d(x[:1])
    assert one.shape == (1, 2) and not none.any()


def test_a_bundle_without_its_keras_model_is_named(tiny_bundle_copy):
    (tiny_bundle_copy / "keras_model.h5").unlink()
    with pytest.raises(ProbeError, match="keras_model.h5: missing"):
        load_keras(tiny_bundle_copy)
