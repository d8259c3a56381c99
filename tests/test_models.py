"""The CNN-LSTM builder: architecture knobs, configs, and the copies conversion needs."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from edge_har.convert.models import (
    ModelConfig,
    add_model_arguments,
    build_cnn_lstm,
    build_from_config,
    float32_copy,
    import_tf,
    static_batch_copy,
)

tf, keras = import_tf()


def layer_types(model) -> list[str]:
    return [type(layer).__name__ for layer in model.layers]


def test_default_architecture_is_conv_blocks_then_lstm_then_softmax():
    model = build_from_config(ModelConfig(), (96, 3), 14)
    assert model.input_shape == (None, 96, 3)
    assert model.output_shape == (None, 14)
    kinds = layer_types(model)
    assert kinds.count("Conv1D") == 3 and kinds.count("MaxPooling1D") == 3
    assert kinds.count("LSTM") == 1
    assert kinds.index("LSTM") > max(i for i, k in enumerate(kinds) if k == "Conv1D")
    assert model.layers[-1].activation.__name__ == "softmax"
    lstm = next(layer for layer in model.layers if type(layer).__name__ == "LSTM")
    assert lstm.units == 128
    assert [model.get_layer(f"conv{i}").filters for i in (1, 2, 3)] == [64, 128, 128]
    # 96 samples pooled three times by 3 (96 -> 32 -> 10 -> 3): one step per second of a 3 s window.
    assert lstm.input_shape[1] == 3 == ModelConfig().sequence_length(96)
    assert ModelConfig().lstm_export == "unrolled"


@pytest.mark.parametrize(
    "config, steps",
    [
        (ModelConfig(conv_filters=(16, 16, 16), pool_size=2), 12),
        (ModelConfig(conv_filters=(16,), pool_size=4), 24),
        (ModelConfig(conv_filters=(16, 32), pool_size=1), 96),
        (ModelConfig(conv_filters=(), lstm_units=(8,)), 96),
    ],
)
def test_pooling_knobs_set_the_lstm_sequence_length(config, steps):
    model = build_from_config(config, (96, 3), 4)
    lstm = next(layer for layer in model.layers if type(layer).__name__ == "LSTM")
    assert lstm.input_shape[1] == steps == config.sequence_length(96)


def test_stacked_and_bidirectional_lstms():
    model = build_cnn_lstm(
        (64, 6), 5, conv_filters=(8,), pool_size=2, lstm_units=(16, 8), bidirectional=True, batch_norm=False
    )
    kinds = layer_types(model)
    assert kinds.count("Bidirectional") == 2 and "BatchNormalization" not in kinds
    assert model.get_layer("bilstm1").output_shape == (None, 32, 32)  # returns sequences, 2 x 16 units
    assert model.get_layer("bilstm2").output_shape == (None, 16)


@pytest.mark.parametrize("lstm_export", ["unrolled", "fused"])
def test_static_batch_copy_has_batch_one_and_the_same_outputs(lstm_export):
    config = ModelConfig(conv_filters=(8,), pool_size=2, lstm_units=(8,), lstm_export=lstm_export)
    model = build_from_config(config, (32, 3), 3)
    x = np.random.default_rng(0).normal(size=(4, 32, 3)).astype(np.float32)
    static = static_batch_copy(model, config)
    assert static.input_shape == (1, 32, 3)
    kinds = layer_types(static)
    assert ("UnrolledLSTM" in kinds) == (lstm_export == "unrolled") and ("LSTM" in kinds) == (lstm_export == "fused")
    expected = model.predict(x, verbose=0)
    got = np.concatenate([static.predict(x[i : i + 1], verbose=0) for i in range(len(x))])
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_unrolled_lstm_computes_what_the_trained_keras_lstm_computes(bidirectional):
    """Stacked (returning sequences, then the last state), one or both directions, random non-zero weights."""
    config = ModelConfig(
        conv_filters=(6,), pool_size=2, lstm_units=(7, 5), bidirectional=bidirectional, batch_norm=False
    )
    keras.utils.set_random_seed(3)
    model = build_from_config(config, (20, 3), 4)
    rng = np.random.default_rng(1)
    # Glorot/orthogonal init and zero biases hide gate-order or bias mistakes; make every weight matter.
    model.set_weights([rng.normal(0, 0.6, w.shape).astype(np.float32) for w in model.get_weights()])
    x = rng.normal(size=(5, 20, 3)).astype(np.float32)
    unrolled = float32_copy(model, config, batch_size=None, unrolled_lstm=True)
    assert "LSTM" not in layer_types(unrolled) and "Bidirectional" not in layer_types(unrolled)
    assert unrolled.get_layer("bilstm1" if bidirectional else "lstm1").output_shape == (
        None,
        10,
        14 if bidirectional else 7,
    )
    expected = model.predict(x, verbose=0)
    assert expected.std() > 0.05  # not a saturated, input-independent output
    np.testing.assert_allclose(unrolled.predict(x, verbose=0), expected, atol=1e-5)


def test_mixed_precision_model_keeps_a_float32_softmax_and_copies_back_to_float32():
    config = ModelConfig(conv_filters=(8,), lstm_units=(8,))
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = build_from_config(config, (32, 3), 3)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert mixed.get_layer("conv1").compute_dtype == "float16"
    assert mixed.get_layer("probabilities").compute_dtype == "float32"
    assert mixed.output.dtype == tf.float32
    copy = float32_copy(mixed, config, batch_size=None)
    assert all(layer.compute_dtype == "float32" for layer in copy.layers if hasattr(layer, "compute_dtype"))
    for a, b in zip(mixed.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_config_round_trips_through_json_and_cli_flags():
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    args = parser.parse_args(
        [
            "--conv-filters",
            "16,32,64",
            "--lstm-units",
            "32,16",
            "--pool-size",
            "3",
            "--bidirectional",
            "--no-batch-norm",
            "--dropout",
            "0.2",
            "--lstm-export",
            "fused",
        ]
    )
    config = ModelConfig.from_args(args)
    assert config.conv_filters == (16, 32, 64) and config.lstm_units == (32, 16) and config.lstm_export == "fused"
    assert config.pool_size == 3 and config.bidirectional and not config.batch_norm and config.dropout == 0.2
    assert ModelConfig.from_json(config.to_json()) == config
    assert ModelConfig.from_args(parser.parse_args([])) == ModelConfig()


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--conv-filters", "16,x"], "comma-separated integers"),
        (["--lstm-units", "0"], ">= 1"),
        (["--dropout", "1.5"], "[0, 1)"),
        (["--lstm-export", "loop"], "invalid choice"),
    ],
)
def test_bad_model_flags_are_rejected_naming_the_value(argv, fragment, capsys):
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(argv)
    err = capsys.readouterr().err
    assert argv[0] in err and fragment in err


def test_invalid_configs_raise():
    with pytest.raises(ValueError, match="lstm_units"):
        ModelConfig(lstm_units=())
    with pytest.raises(ValueError, match="lstm_export must be one of unrolled, fused"):
        ModelConfig(lstm_export="while")
    with pytest.raises(ValueError, match="unknown model config keys: colour"):
        ModelConfig.from_json({"colour": "red"})
    with pytest.raises(ValueError, match="at least 2 classes"):
        build_cnn_lstm((32, 3), 1)


def test_input_noise_acts_in_training_only():
    config = ModelConfig(conv_filters=(4,), lstm_units=(4,), input_noise=0.5)
    model = build_from_config(config, (16, 3), 2)
    assert "GaussianNoise" in layer_types(model)
    x = np.ones((2, 16, 3), np.float32)
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))
    assert not np.allclose(model.get_layer("input_noise")(x, training=True), x)
    assert ModelConfig.from_json(config.to_json()).input_noise == 0.5
    with pytest.raises(ValueError, match="input_noise"):
        ModelConfig(input_noise=-1.0)


def test_study_hooks_change_the_lstm_graph_not_the_weights():
    """keras_unroll / zero_state (the int8 study's LSTM forms) load the plain model's weights and compute the same."""
    config = ModelConfig(conv_filters=(8,), pool_size=4, lstm_units=(8,))
    plain = build_from_config(config, (32, 3), 3, batch_size=1)
    x = np.random.default_rng(0).normal(size=(1, 32, 3)).astype(np.float32)
    for hooks in ({"keras_unroll": True}, {"zero_state": True}, {"keras_unroll": True, "zero_state": True}):
        other = build_from_config(config, (32, 3), 3, batch_size=1, **hooks)
        other.set_weights(plain.get_weights())
        np.testing.assert_allclose(other(x, training=False).numpy(), plain(x, training=False).numpy(), atol=1e-5)
    assert "lstm1_zero_state" in [layer.name for layer in build_from_config(config, (32, 3), 3, zero_state=True).layers]
    with pytest.raises(ValueError, match="unrolled_lstm"):
        build_from_config(config, (32, 3), 3, unrolled_lstm=True, zero_state=True)
