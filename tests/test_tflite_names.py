"""Why an int8 model with an unrolled LSTM over many steps can be larger than float32, and the fix.

A real conversion: a 64-step LSTM (the length of an 8x8 image-seq feature map), unrolled as the
project exports it, converted to float32 and int8 by the project's converter.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tf_keras")

from edge_har.convert.models import ModelConfig, build_from_config, static_batch_copy  # noqa: E402
from edge_har.convert.quantize import VARIANTS, calibration_windows, convert_variants  # noqa: E402
from edge_har.convert.tflite_names import MAX_NAME_CHARS, shorten_tensor_names  # noqa: E402
from edge_har.core.interpreter import TFLiteModel  # noqa: E402

STEPS = 64


def _names(content: bytes) -> list[str]:
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    return [(t.name or b"").decode() for t in model.subgraphs[0].tensors]


@pytest.mark.slow  # two conversions of a 64-step unrolled LSTM, ~20 s
def test_int8_with_an_unrolled_lstm_is_smaller_than_float32_once_tensor_names_are_shortened(tmp_path):
    rng = np.random.default_rng(0)
    # 64 features and 64 units: the head of the image-seq bundle where this was seen (plain backbone, 64 px)
    config = ModelConfig(conv_filters=(), pool_size=1, lstm_units=(64,), dropout=0.0, conv_dropout=0.0)
    model = build_from_config(config, (STEPS, 64), 3)
    x = rng.normal(size=(120, STEPS, 64)).astype(np.float32)
    y = rng.integers(0, 3, 120)
    static = static_batch_copy(model, config)
    converted = {
        c.name: c
        for c in convert_variants(static, [VARIANTS["float32"], VARIANTS["int8"]], calibration_windows(x, y, 40))
    }
    f32, int8 = converted["float32"].content, converted["int8"].content
    # the issue, measured: int8 holds a quarter of the weight bytes, yet the file is larger...
    assert len(int8) > len(f32), (len(int8), len(f32))
    # ... because the quantizer names each of the LSTM's 64 per-step tensors after all 64 steps
    names = _names(int8)
    long = [n for n in names if len(n) > MAX_NAME_CHARS]
    assert len(long) >= STEPS and all(n.count(";") >= STEPS - 1 for n in long[:STEPS])
    assert sum(map(len, names)) > 2 * sum(map(len, _names(f32)))

    lean, info = shorten_tensor_names(int8)
    print(f"float32 {len(f32)} bytes, int8 {len(int8)} bytes, int8 with short names {len(lean)} bytes")
    assert info["tensor_names_shortened"] == len(long) and len(lean) < len(f32) < len(int8)
    assert max(map(len, _names(lean))) <= MAX_NAME_CHARS + len(";+9999 more")
    assert shorten_tensor_names(f32)[0] is f32 or len(shorten_tensor_names(f32)[0]) <= len(f32)
    # the same model: identical outputs, same input/output tensor specs
    (tmp_path / "raw.tflite").write_bytes(int8)
    (tmp_path / "lean.tflite").write_bytes(lean)
    raw, short = TFLiteModel(tmp_path / "raw.tflite"), TFLiteModel(tmp_path / "lean.tflite")
    assert raw.input.to_json() == short.input.to_json() and raw.output.to_json() == short.output.to_json()
    for window in x[:10]:
        assert np.array_equal(raw.predict(window[None]), short.predict(window[None]))
