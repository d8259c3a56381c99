"""Input quantization and output dequantization of the interpreter wrapper.

``quantize`` runs once per window on the device and is written for speed (in place,
no ``np.clip``); these tests pin it to TFLite's definition, round(x / scale) +
zero_point with ties to even, clipped to the integer type.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_har.core.interpreter import TensorSpec, dequantize, quantize


def spec(dtype, scale: float, zero_point: int) -> TensorSpec:
    return TensorSpec("x", (1, 4, 3), np.dtype(dtype), scale, zero_point)


def reference(x: np.ndarray, s: TensorSpec) -> np.ndarray:
    info = np.iinfo(s.dtype)
    q = np.round(x.astype(np.float64) / s.scale) + s.zero_point  # float64: no rounding of the division
    return np.clip(q, info.min, info.max).astype(s.dtype)


@pytest.mark.parametrize("dtype, scale, zero_point", [(np.int8, 0.05, -3), (np.uint8, 0.1, 128), (np.int16, 0.001, 0)])
def test_quantize_rounds_half_to_even_and_clips_to_the_type(dtype, scale, zero_point):
    s = spec(dtype, scale, zero_point)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 40 * scale, size=(1, 4, 3)).astype(np.float32)
    before = x.copy()
    np.testing.assert_array_equal(quantize(x, s), reference(x, s))
    np.testing.assert_array_equal(x, before)  # the caller's window is not modified in place
    # Exact ties (x / scale = k + 0.5 in binary floating point) go to the even integer.
    tie = spec(dtype, 0.5, 0)
    ties = np.array([0.25, 0.75, -0.25, -0.75, 1.25], np.float32)  # / 0.5 -> 0.5, 1.5, -0.5, -1.5, 2.5
    expected = [0, 2, 0, -2, 2] if np.iinfo(dtype).min < 0 else [0, 2, 0, 0, 2]
    assert quantize(ties, tie).tolist() == expected
    info = np.iinfo(dtype)
    big = np.array([1e9, -1e9], np.float32)
    assert quantize(big, s).tolist() == [info.max, info.min]
    assert quantize(x, s).dtype == np.dtype(dtype)


def test_dequantize_inverts_quantize_within_half_a_step():
    s = spec(np.int8, 0.02, 5)
    x = np.linspace(-2.0, 2.0, 12, dtype=np.float32).reshape(1, 4, 3)
    back = dequantize(quantize(x, s), s)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, x, atol=s.scale / 2 + 1e-7)


def test_float_tensors_pass_through_as_float32():
    s = TensorSpec("x", (1, 2), np.dtype(np.float32), 0.0, 0)
    x = np.array([[1.5, -2.0]])
    assert quantize(x, s).dtype == np.float32 and dequantize(x, s).dtype == np.float32
    np.testing.assert_array_equal(dequantize(quantize(x, s), s), x.astype(np.float32))
