"""edge_har.benchmarks.profile_ops on real tiny conversions: the profile names the model's ops and times them.

Two small tf_keras CNN-LSTMs are converted for real: one full-integer int8
with the fused LSTM (variable tensors: only the isolated method can profile
it) and one float32 with the LSTM unrolled (LiteRT's own profiler can).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from edge_har.benchmarks import profile_ops

WINDOW, CHANNELS = 32, 3


def _convert(model, tf, int8: bool) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [rng.standard_normal((1, WINDOW, CHANNELS)).astype(np.float32)] for _ in range(16)
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf_keras as keras

    out = tmp_path_factory.mktemp("profile_ops")
    paths = {}
    for name, unroll, int8 in (("fused_int8", False, True), ("unrolled_float32", True, False)):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((WINDOW, CHANNELS), batch_size=1)
        x = keras.layers.Conv1D(8, 3, padding="same", activation="relu")(inputs)
        x = keras.layers.MaxPooling1D(4)(x)
        x = keras.layers.LSTM(8, unroll=unroll)(x)
        outputs = keras.layers.Dense(3, activation="softmax")(x)
        path = out / f"{name}.tflite"
        path.write_bytes(_convert(keras.Model(inputs, outputs), tf, int8))
        paths[name] = path
    return paths


def _op_names(path: Path) -> list[str]:
    return [row["op"] for row in profile_ops.list_ops(path)]


def test_isolated_profile_names_every_op_of_the_fused_int8_model(tiny_models):
    path = tiny_models["fused_int8"]
    windows = np.random.default_rng(1).standard_normal((4, WINDOW, CHANNELS)).astype(np.float32)
    rows = profile_ops.profile_ops(path, windows, num_threads=1, runs=30, warmup=5)

    assert [r.op for r in rows] == _op_names(path)
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in [r.op for r in rows]
    assert {r.method for r in rows} == {"isolated"}
    assert all(r.time_us >= 0 and r.median_us is not None and r.median_us >= 0 for r in rows)
    lstm = next(r for r in rows if r.op == "UNIDIRECTIONAL_SEQUENCE_LSTM")
    assert lstm.median_us > 0 and lstm.executor == "builtin"  # XNNPACK has no LSTM kernel
    conv = next(r for r in rows if r.op == "CONV_2D")
    assert conv.executor == "xnnpack" and conv.dtypes.startswith("int8")
    assert sum(r.share for r in rows) == pytest.approx(1.0)


def test_isolated_profile_without_xnnpack_runs_every_op_on_builtin_kernels(tiny_models):
    rows = profile_ops.profile_ops(tiny_models["fused_int8"], None, runs=20, warmup=2, xnnpack=False, method="isolated")
    assert {r.executor for r in rows} == {"builtin"}
    assert sum(r.median_us for r in rows) > 0


def test_litert_profiler_times_the_unrolled_model_per_op(tiny_models):
    path = tiny_models["unrolled_float32"]
    rows = profile_ops.profile_ops(path, None, runs=50, warmup=5, method="litert")
    assert {r.method for r in rows} == {"litert"}
    names = [r.op for r in rows]
    assert any(n.startswith("Delegate/Fully Connected") for n in names)  # XNNPACK's own operators, one per LSTM step
    assert all(r.executor == "xnnpack" for r in rows if r.op.startswith("Delegate/"))
    assert all(r.time_us >= 0 for r in rows) and sum(r.time_us for r in rows) > 0

    builtin = profile_ops.profile_ops(path, None, runs=30, warmup=2, xnnpack=False, method="litert")
    assert [r.op for r in builtin] == _op_names(path)  # XNNPACK off: TFLite's own kernels, named as in the model
    assert {r.executor for r in builtin} == {"builtin"}
    assert sum(r.time_us for r in builtin) > 0


def test_isolated_profile_of_the_unrolled_model_covers_the_whole_model(tiny_models):
    path = tiny_models["unrolled_float32"]
    rows = profile_ops.profile_ops(path, None, runs=50, warmup=5)
    assert [r.op for r in rows] == _op_names(path)
    assert {"FULLY_CONNECTED", "LOGISTIC", "TANH", "MUL"} <= {r.op for r in rows}  # one set per unrolled step
    whole = profile_ops.time_model(path, None, runs=50, warmup=5)
    assert whole["p50_us"] > 0 and sum(r.median_us for r in rows) > 0


def test_litert_method_refuses_the_fused_lstm_with_a_clear_error(tiny_models):
    with pytest.raises(profile_ops.ProfileError, match="variable tensors"):
        profile_ops.profile_ops(tiny_models["fused_int8"], None, runs=5, method="litert")


def test_bad_inputs_name_the_problem(tiny_models, tmp_path):
    with pytest.raises(profile_ops.ProfileError, match="not found"):
        profile_ops.profile_ops(tmp_path / "missing.tflite")
    with pytest.raises(profile_ops.ProfileError, match="does not fit the model input"):
        profile_ops.profile_ops(tiny_models["fused_int8"], np.zeros((2, WINDOW + 1, CHANNELS), np.float32), runs=2)
    with pytest.raises(profile_ops.ProfileError, match="unknown method"):
        profile_ops.profile_ops(tiny_models["fused_int8"], method="guess")


def test_float_ops_tells_full_integer_from_float(tiny_models):
    assert profile_ops.float_ops(tiny_models["fused_int8"]) == {}
    assert profile_ops.float_ops(tiny_models["unrolled_float32"])  # every op of a float model computes in float


def test_cli_prints_the_table_and_writes_json(tiny_models, tmp_path, capsys):
    out = tmp_path / "profile.json"
    data = tmp_path / "windows.npy"
    np.save(data, np.zeros((2, WINDOW, CHANNELS), np.float32))
    assert (
        profile_ops.main(
            [str(tiny_models["fused_int8"]), "--input", str(data), "--runs", "10", "--warmup", "2", "--json", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in printed and "method isolated" in printed
    saved = json.loads(out.read_text())
    assert [r["op"] for r in saved["rows"]] == _op_names(tiny_models["fused_int8"])
    assert saved["whole_model"]["p50_us"] > 0
    assert profile_ops.main([str(tmp_path / "nope.tflite")]) == 2
