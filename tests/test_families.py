"""Model families behind ``--family``: registry, configs, weight-for-weight copies, MACs, conversion."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from edge_har.cli import main
from edge_har.convert.families import FAMILIES
from edge_har.convert.macs import count_macs, model_macs
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

NAMES = ("cnn-lstm", "conv2d-lstm", "deepconvlstm", "tinyhar")
WINDOW, CHANNELS, CLASSES = 32, 3, 3


def tiny(family: str, **overrides) -> ModelConfig:
    """A few filters and units: builds and converts in seconds."""
    sizes = dict(conv_filters=(4, 4), kernel_size=3, pool_size=2, lstm_units=(4,), dropout=0.0, conv_dropout=0.0)
    return ModelConfig(family=family, **{**sizes, **overrides})


def sine_windows(n: int = 180, window: int = WINDOW, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three classes of noisy sines at different frequencies: separable in a few epochs."""
    rng = np.random.default_rng(seed)
    t = np.arange(window) / 32.0
    y = rng.integers(0, CLASSES, n)
    x = np.stack([np.sin(2 * np.pi * (1.0 + 1.5 * c) * t + rng.uniform(0, 6))[:, None] * [1.0, 0.5, -0.8] for c in y])
    return (x + 0.1 * rng.normal(size=x.shape)).astype(np.float32), y.astype(np.int64)


# ---------------------------------------------------------------- registry and config


def test_every_family_is_registered_with_a_description():
    assert tuple(FAMILIES) == NAMES
    for name, family in FAMILIES.items():
        assert family.name == name and family.description and callable(family.build)


def test_default_family_is_cnn_lstm_and_old_bundles_read_back_as_it():
    assert ModelConfig().family == "cnn-lstm"
    old = ModelConfig().to_json()
    del old["family"]  # a bundle.json written before families existed
    assert ModelConfig.from_json(old) == ModelConfig()
    config = ModelConfig(family="tinyhar", conv_filters=(8,))
    assert config.to_json()["family"] == "tinyhar" and ModelConfig.from_json(config.to_json()) == config


def test_unknown_family_is_refused_naming_the_known_ones():
    with pytest.raises(
        ValueError, match="unknown model family 'nope'; known: cnn-lstm, conv2d-lstm, deepconvlstm, tinyhar"
    ):
        ModelConfig(family="nope")
    with pytest.raises(ValueError, match="unknown model family"):
        ModelConfig.from_json({"family": "nope"})


def test_family_flag_parses_and_its_help_describes_every_family():
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    assert ModelConfig.from_args(parser.parse_args(["--family", "deepconvlstm"])).family == "deepconvlstm"
    assert ModelConfig.from_args(parser.parse_args([])).family == "cnn-lstm"
    text = " ".join(parser.format_help().split())
    for name in NAMES:
        assert f"'{name}'" in text
    assert "Ordonez & Roggen" in text and "TinyHAR" in text


def test_convert_with_an_unknown_family_is_a_one_line_error(tmp_path, capsys):
    code = main(["convert", "--family", "nope", "--data", str(tmp_path), "--out", str(tmp_path / "b")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert "nope" in err[0] and "known: cnn-lstm, conv2d-lstm, deepconvlstm, tinyhar" in err[0]
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------- models


def test_default_family_builds_exactly_build_cnn_lstm():
    config = ModelConfig()
    via_family = build_from_config(config, (96, 3), 14)
    direct = build_cnn_lstm((96, 3), 14)
    assert [layer.name for layer in via_family.layers] == [layer.name for layer in direct.layers]
    assert [type(layer) for layer in via_family.layers] == [type(layer) for layer in direct.layers]
    assert [w.shape for w in via_family.get_weights()] == [w.shape for w in direct.get_weights()]
    assert [w.name for w in via_family.weights] == [w.name for w in direct.weights]
    rebuilt = FAMILIES["cnn-lstm"].build(config, (96, 3), 14, None, False)
    assert rebuilt.get_config()["layers"] == direct.get_config()["layers"]


@pytest.mark.parametrize("family", NAMES)
def test_each_family_builds_and_its_static_unrolled_copy_computes_the_same(family):
    config = tiny(family)
    model = build_from_config(config, (WINDOW, CHANNELS), CLASSES)
    assert model.input_shape == (None, WINDOW, CHANNELS) and model.output_shape == (None, CLASSES)
    assert model.layers[-1].name == "probabilities" and model.get_layer("logits").units == CLASSES
    lstm = model.get_layer("lstm1")
    assert lstm.input_shape[1] == config.sequence_length(WINDOW)
    static = static_batch_copy(model, config)
    assert static.input_shape == (1, WINDOW, CHANNELS)
    assert "UnrolledLSTM" in [type(layer).__name__ for layer in static.layers]
    assert [w.shape for w in static.get_weights()] == [w.shape for w in model.get_weights()]
    x = np.random.default_rng(1).normal(size=(2, WINDOW, CHANNELS)).astype(np.float32)
    expected = model(x, training=False).numpy()
    got = np.concatenate([static(x[i : i + 1], training=False).numpy() for i in range(len(x))])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    dynamic = float32_copy(model, config, batch_size=None)
    np.testing.assert_allclose(dynamic(x, training=False).numpy(), expected, atol=1e-6)


def test_family_shapes_follow_their_papers():
    deep = build_from_config(ModelConfig(family="deepconvlstm"), (128, 6), 6)
    convs = [layer for layer in deep.layers if type(layer).__name__ == "Conv2D"]
    assert len(convs) == 4 and {c.filters for c in convs} == {64} and {c.kernel_size for c in convs} == {(5, 1)}
    assert [deep.get_layer(n).units for n in ("lstm1", "lstm2")] == [128, 128]
    assert deep.get_layer("lstm1").input_shape == (None, 112, 6 * 64)  # "valid": 4 x (5 - 1) samples fewer
    assert not any("Pooling" in type(layer).__name__ for layer in deep.layers)
    c2d = build_from_config(ModelConfig(family="conv2d-lstm"), (128, 6), 6)
    assert c2d.get_layer("conv1").kernel_size == (5, 1)
    assert c2d.get_layer("lstm1").input_shape == (None, 4, 6 * 128) and c2d.get_layer("lstm2").units == 128
    th = build_from_config(ModelConfig(family="tinyhar", conv_filters=(8, 8), lstm_units=(16,)), (96, 3), 4)
    names = [layer.name for layer in th.layers]
    assert names.index("channel_mix") < names.index("channel_fusion") < names.index("lstm1")
    assert th.get_layer("lstm1").return_sequences and th.get_layer("attention_weights").output_shape == (None, 10)
    with pytest.raises(ValueError, match="window longer than 16"):
        build_from_config(ModelConfig(family="deepconvlstm"), (16, 3), 2)
    with pytest.raises(ValueError, match="keras_unroll and zero_state apply to the cnn-lstm family only"):
        build_from_config(tiny("tinyhar"), (WINDOW, CHANNELS), CLASSES, zero_state=True)


# ---------------------------------------------------------------- MACs


def test_macs_of_a_hand_computable_model():
    layers = keras.layers
    inputs = keras.Input((20, 3))
    x = layers.Conv1D(8, 5, padding="valid")(inputs)  # 16 steps x 8 filters x 5 x 3
    x = layers.Flatten()(x)
    outputs = layers.Dense(4)(x)  # 128 inputs x 4 units
    model = keras.Model(inputs, outputs)
    assert model_macs(model) == 16 * 8 * 5 * 3 + 16 * 8 * 4

    inputs = keras.Input((10, 6))
    h = layers.LSTM(7, return_sequences=True)(inputs)  # 10 steps x 4 gates x 7 x (6 + 7)
    h = layers.Dense(2)(h)  # at each of 10 steps: 7 x 2
    x = layers.Reshape((10, 2, 1))(h)
    x = layers.Conv2D(3, (3, 1), padding="same")(x)  # 10 x 2 positions x 3 filters x 3
    model = keras.Model(inputs, x)
    count = count_macs(model)
    assert count.total == 10 * 4 * 7 * 13 + 10 * 7 * 2 + 10 * 2 * 3 * 3
    assert len(count.by_layer) == 3


def test_macs_of_the_default_model_and_of_its_unrolled_copy():
    config = ModelConfig()
    model = build_from_config(config, (96, 3), 14)
    # conv1 96 x 64 x 5 x 3; conv2 32 x 128 x 5 x 64; conv3 10 x 128 x 5 x 128; LSTM 3 steps; logits.
    expected = 96 * 64 * 15 + 32 * 128 * 320 + 10 * 128 * 640 + 3 * 512 * (128 + 128) + 128 * 14
    assert model_macs(model) == expected
    # The unrolled copy skips step 0's recurrent product (zero state), as its FULLY_CONNECTED ops do.
    assert model_macs(static_batch_copy(model, config)) == expected - 512 * 128


@pytest.mark.slow  # a conversion per family (~8 s each)
@pytest.mark.parametrize("family", NAMES)
def test_macs_agree_with_the_converted_graph(family, tmp_path):
    """The Keras count of the conversion copy equals benchmarks' count of the float32 .tflite ops."""
    from edge_har.benchmarks.floor import count_macs as tflite_macs
    from edge_har.convert.quantize import VARIANTS, convert_variant

    config = tiny(family, conv_filters=(4,), lstm_units=(4,))
    static = static_batch_copy(build_from_config(config, (16, CHANNELS), CLASSES), config)
    path = tmp_path / "float32.tflite"
    path.write_bytes(convert_variant(static, VARIANTS["float32"]).content)
    assert tflite_macs(path).total == model_macs(static) > 0


# ---------------------------------------------------------------- train, convert, run


@pytest.mark.slow
@pytest.mark.parametrize("family", NAMES)
def test_each_family_trains_converts_and_runs_on_the_device_interpreter(family, tmp_path):
    from edge_har.convert.quantize import DEFAULT_VARIANTS, VARIANTS, calibration_windows, convert_variants
    from edge_har.convert.train import TrainConfig, train_model
    from edge_har.core.interpreter import TFLiteModel

    x, y = sine_windows(240)
    config = tiny(family, conv_filters=(8, 8), lstm_units=(8,))
    train = TrainConfig(epochs=6, batch_size=32, patience=6, learning_rate=0.01, seed=0, class_weights=False)
    result = train_model(x[:180], y[:180], x[180:], y[180:], CLASSES, config, train, tmp_path / "work")
    keras_probs = float32_copy(result.model, config, batch_size=None).predict(x, verbose=0)
    assert (keras_probs.argmax(1) == y).mean() > 0.6, family  # it learned something

    static = static_batch_copy(result.model, config)
    specs = [VARIANTS[n] for n in DEFAULT_VARIANTS]
    converted = {c.name: c for c in convert_variants(static, specs, calibration_windows(x[:180], y[:180], 60))}
    assert converted["int8"].extra["float_ops"] == {}
    assert "WHILE" not in converted["int8"].extra["ops"]
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in converted["int8"].extra["ops"]
    probs = {}
    for name, variant in converted.items():
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(variant.content)
        probs[name] = TFLiteModel(path).predict_batch(x[:60])
    np.testing.assert_allclose(probs["float32"], keras_probs[:60], atol=1e-5)
    np.testing.assert_allclose(probs["dynamic_range"], probs["float32"], atol=0.08)
    np.testing.assert_allclose(probs["int8"], probs["float32"], atol=0.1)
    assert (probs["int8"].argmax(1) == probs["float32"].argmax(1)).mean() >= 0.9
