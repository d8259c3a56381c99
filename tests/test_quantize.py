"""Post-training quantization: calibration sampling, the variant table, real TFLite conversions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edge_har.convert.models import ModelConfig, build_from_config, import_tf, static_batch_copy
from edge_har.convert.quantize import (
    DEFAULT_VARIANTS,
    VARIANTS,
    CalibrationError,
    ConversionError,
    VariantSpec,
    calibration_windows,
    convert_variants,
    inspect_tflite,
    register_variant,
    resolve_variants,
)
from edge_har.core.interpreter import TFLiteModel

tf, keras = import_tf()

# int8 probabilities are quantized in steps of 1/256 and every layer adds rounding;
# on the same windows they must stay this close to float32's.
INT8_PROB_TOLERANCE = 0.08


# ---------------------------------------------------------------- calibration


def labelled(counts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    y = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    x = np.arange(len(y), dtype=np.float32)[:, None, None] * np.ones((1, 4, 2), np.float32)
    return x, y


def test_calibration_is_stratified_exact_and_drawn_from_the_given_windows():
    x, y = labelled([600, 300, 100])
    cal = calibration_windows(x, y, 100, seed=1)
    assert cal.shape == (100, 4, 2) and cal.dtype == np.float32
    rows = cal[:, 0, 0].astype(int)
    assert len(set(rows)) == 100  # no window twice
    per_class = np.bincount(y[rows], minlength=3)
    assert per_class.tolist() == [60, 30, 10]
    np.testing.assert_array_equal(cal, calibration_windows(x, y, 100, seed=1))
    assert not np.array_equal(cal, calibration_windows(x, y, 100, seed=2))


def test_calibration_keeps_every_class_even_a_rare_one():
    x, y = labelled([995, 5])
    rows = calibration_windows(x, y, 20)[:, 0, 0].astype(int)
    assert np.bincount(y[rows], minlength=2).tolist() == [19, 1]


def test_calibration_refuses_more_windows_than_the_training_split_has():
    x, y = labelled([10, 10])
    with pytest.raises(CalibrationError, match="needs 300 windows but the training split has only 20"):
        calibration_windows(x, y, 300)
    assert len(calibration_windows(x, y, 20)) == 20


# ---------------------------------------------------------------- variant table


def test_variant_table_names_say_what_is_quantized():
    assert DEFAULT_VARIANTS == ("float32", "dynamic_range", "int8")
    assert VARIANTS["float32"].quantization == "none"
    assert VARIANTS["dynamic_range"].quantization == "dynamic_range_int8_weights"
    assert not VARIANTS["dynamic_range"].full_integer and not VARIANTS["dynamic_range"].needs_calibration
    assert VARIANTS["int8"].quantization == "full_integer_int8"
    assert VARIANTS["int8"].full_integer and VARIANTS["int8"].needs_calibration
    with pytest.raises(ValueError, match="float32 variant is required"):
        resolve_variants(["int8"])
    with pytest.raises(ValueError, match="unknown variant"):
        resolve_variants(["float32", "int4"])
    with pytest.raises(ValueError, match="already registered"):
        register_variant(VARIANTS["int8"])


# ---------------------------------------------------------------- real conversions


@pytest.fixture(scope="module")
def trained_small_model():
    """A small CNN-LSTM fit for a few epochs on separable sine windows (so outputs are not uniform)."""
    rng = np.random.default_rng(0)
    t = np.arange(48) / 32.0
    y = rng.integers(0, 3, 240)
    x = np.stack([np.sin(2 * np.pi * (0.7 + c) * t + rng.uniform(0, 6))[:, None] * [1.0, 0.5, -0.8] for c in y])
    x = (x + 0.2 * rng.normal(size=x.shape)).astype(np.float32)
    keras.utils.set_random_seed(0)
    # LSTM(40): its 32x40 and 40x40 gate matrices pass the converter's 1024-element
    # threshold for dynamic-range weight quantization; smaller tensors stay float.
    # pool_size 4: a 12-step LSTM. An unrolled int8 LSTM keeps its cell state in int8 (the fused
    # kernel uses int16), so its error grows with the steps; the default model walks 3.
    config = ModelConfig(conv_filters=(32,), pool_size=4, lstm_units=(40,), dropout=0.0, conv_dropout=0.0)
    model = build_from_config(config, (48, 3), 3)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    fit = model.fit(x, y, epochs=6, batch_size=32, verbose=0)
    assert fit.history["accuracy"][-1] > 0.8, fit.history
    return static_batch_copy(model, config), x, y, model, config


@pytest.fixture(scope="module")
def converted(trained_small_model):
    static, x, y, _, _ = trained_small_model
    cal = calibration_windows(x, y, 60)
    return {c.name: c for c in convert_variants(static, [VARIANTS[n] for n in DEFAULT_VARIANTS], cal)}


def load(converted_variant, tmp_path) -> TFLiteModel:
    path = tmp_path / f"{converted_variant.name}.tflite"
    path.write_bytes(converted_variant.content)
    return TFLiteModel(path)


def test_every_variant_has_the_lstm_unrolled_into_ops_xnnpack_runs(converted, trained_small_model):
    """Default lstm_export: one input projection, one recurrent FULLY_CONNECTED per step after the first, the dense."""
    _, _, _, _, config = trained_small_model
    steps = config.sequence_length(48)
    assert config.lstm_export == "unrolled" and steps == 12
    for variant in converted.values():
        ops = variant.extra["ops"]
        assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in ops and "WHILE" not in ops, (variant.name, ops)
        assert ops["FULLY_CONNECTED"] == 1 + (steps - 1) + 1, (variant.name, ops)
        assert ops["TANH"] == 2 * steps and ops["UNPACK"] == 1, (variant.name, ops)


def test_the_fused_lstm_export_keeps_one_lstm_op_and_converts_to_full_integer(trained_small_model, tmp_path):
    static, x, y, model, config = trained_small_model
    fused = static_batch_copy(model, dataclasses.replace(config, lstm_export="fused"))
    out = {
        c.name: c
        for c in convert_variants(fused, [VARIANTS["float32"], VARIANTS["int8"]], calibration_windows(x, y, 60))
    }
    for variant in out.values():
        assert variant.extra["ops"].get("UNIDIRECTIONAL_SEQUENCE_LSTM") == 1 and "WHILE" not in variant.extra["ops"]
    assert out["int8"].extra["float_ops"] == {}
    # Same weights as the unrolled form: the same float predictions.
    np.testing.assert_allclose(
        load(out["float32"], tmp_path).predict_batch(x[:20]), static.predict(x[:20], batch_size=1, verbose=0), atol=1e-4
    )


def test_int8_is_full_integer_with_int8_io(converted, tmp_path):
    int8 = converted["int8"]
    assert int8.extra["float_ops"] == {}
    model = load(int8, tmp_path)
    assert model.input.dtype == np.int8 and model.output.dtype == np.int8
    assert model.input.scale > 0 and model.output.scale > 0
    settings = int8.settings
    assert settings["supported_ops"] == ["TFLITE_BUILTINS_INT8"]
    assert settings["inference_input_type"] == "int8" and settings["inference_output_type"] == "int8"
    assert settings["representative_dataset"]["windows"] == 60
    assert settings["per_tensor_dense_weights"] is True


def test_dynamic_range_quantizes_weights_but_keeps_float_io(converted, tmp_path):
    model = load(converted["dynamic_range"], tmp_path)
    assert model.input.dtype == np.float32 and model.output.dtype == np.float32
    int8_tensors = [t for t in model.interpreter.get_tensor_details() if t["dtype"] == np.int8]
    assert int8_tensors, "dynamic-range model holds no int8 weight tensor"
    assert len(converted["dynamic_range"].content) < len(converted["float32"].content)
    assert converted["dynamic_range"].settings["optimizations"] == ["DEFAULT"]
    assert converted["float32"].settings["optimizations"] == []


def test_quantized_outputs_stay_close_to_float(converted, trained_small_model, tmp_path):
    static, x, _, _, _ = trained_small_model
    windows = x[:60]
    keras_probs = static.predict(windows, batch_size=1, verbose=0)
    probs = {name: load(v, tmp_path).predict_batch(windows) for name, v in converted.items()}
    np.testing.assert_allclose(probs["float32"], keras_probs, atol=1e-4)
    np.testing.assert_allclose(probs["dynamic_range"], probs["float32"], atol=INT8_PROB_TOLERANCE)
    np.testing.assert_allclose(probs["int8"], probs["float32"], atol=INT8_PROB_TOLERANCE)
    agree = (probs["int8"].argmax(1) == probs["float32"].argmax(1)).mean()
    assert agree >= 0.95


def test_a_dynamic_batch_model_is_refused(trained_small_model):
    config = ModelConfig(conv_filters=(4,), lstm_units=(4,))
    dynamic = build_from_config(config, (16, 3), 2)
    with pytest.raises(ConversionError, match="dynamic dimension"):
        convert_variants(dynamic, [VARIANTS["float32"]])


def test_a_variant_that_claims_full_integer_but_is_not_is_refused(trained_small_model):
    static, x, y, _, _ = trained_small_model
    fake = VariantSpec(
        "fake_int8",
        "full_integer_int8",
        "dynamic range pretending",
        VARIANTS["dynamic_range"].configure,
        full_integer=True,
    )
    with pytest.raises(ConversionError, match="declared full-integer but these ops still compute in float"):
        convert_variants(static, [fake])


def test_inspect_lists_ops_of_the_graph(converted):
    info = inspect_tflite(converted["float32"].content)
    assert "DELEGATE" not in info["ops"]
    assert info["float_ops"]  # a float model computes in float
