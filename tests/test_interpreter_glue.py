"""TFLiteModel.predict's per-window glue: the same output as the plain set/invoke/get path, no state
reset for a stateless model, and the reset kept (and needed) for a fused LSTM."""

from __future__ import annotations

import numpy as np
import pytest

from edge_har.core.bundle import Bundle
from edge_har.core.interpreter import InterpreterError, TensorSpec, TFLiteModel, dequantize, has_state, quantize


def _plain_predict(model: TFLiteModel, x: np.ndarray) -> np.ndarray:
    """The textbook path: quantize into a new array, set_tensor, invoke, get_tensor, dequantize."""
    interp = model.interpreter
    interp.reset_all_variables()
    interp.set_tensor(interp.get_input_details()[0]["index"], quantize(x[None], model.input))
    interp.invoke()
    return dequantize(interp.get_tensor(interp.get_output_details()[0]["index"]), model.output)[0]


def test_the_unrolled_bundle_is_stateless_and_predict_matches_the_plain_path(tiny_bundle):
    bundle = Bundle.load(tiny_bundle)
    xs = np.random.default_rng(3).standard_normal((20, *bundle.input_shape[1:])).astype(np.float32) * 2
    for name in bundle.variants:
        model = bundle.load_model(name)
        assert model.stateful is False, name
        fast = [model.predict(x) for x in xs]
        plain = [_plain_predict(model, x) for x in xs]
        np.testing.assert_array_equal(np.stack(fast), np.stack(plain))
        assert fast[0].dtype == np.float32 and not np.shares_memory(fast[0], fast[1])
        np.testing.assert_array_equal(model.predict(xs[0][None]), fast[0])  # with the batch axis
        np.testing.assert_array_equal(model.predict(xs[0].astype(np.float64).tolist()), fast[0])  # any array-like
        with pytest.raises(InterpreterError, match="does not match the model's"):
            model.predict(xs[0][:10])


def test_quantize_into_a_buffer_equals_quantize_into_a_new_array():
    spec = TensorSpec("x", (1, 4, 3), np.dtype(np.int8), 0.05, -3)
    x = np.random.default_rng(0).normal(0, 3, size=(4, 3)).astype(np.float32)
    out = np.zeros((1, 4, 3), np.int8)
    scratch = np.empty((1, 4, 3), np.float32)
    assert quantize(x, spec, out=out, scratch=scratch) is out
    np.testing.assert_array_equal(out[0], quantize(x, spec))


@pytest.mark.slow
def test_a_fused_lstm_keeps_state_and_the_reset_makes_windows_independent(tmp_path):
    from edge_har.convert.models import import_tf

    tf, keras = import_tf()
    # two steps and a linear head: the state carried from an earlier window shows in the output
    inp = keras.Input(shape=(2, 3), batch_size=1)
    out = keras.layers.Dense(4)(keras.layers.LSTM(6)(inp))
    model = keras.Model(inp, out)
    model.set_weights([3 * w for w in model.get_weights()])
    path = tmp_path / "fused.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    m = TFLiteModel(path)
    assert m.stateful is True and has_state(m.interpreter)
    xs = np.random.default_rng(1).standard_normal((3, 2, 3)).astype(np.float32)
    alone = m.predict(xs[1])
    m.predict(xs[0])
    np.testing.assert_allclose(m.predict(xs[1]), alone, rtol=0, atol=1e-6)  # no memory of xs[0]
    # and the state is real: without the reset, window 1 after window 0 differs
    m.stateful = False
    m.predict(xs[0])
    assert np.abs(m.predict(xs[1]) - alone).max() > 1e-2
