"""The one preprocessing path: the device's streaming code must give the training windows exactly."""

from __future__ import annotations

import numpy as np
import pytest

from edge_har.preprocessing import (
    Preprocessing,
    PreprocessingError,
    StreamPreprocessor,
    StreamResampler,
    StreamWindower,
    make_windows,
    normalise,
    recording_to_windows,
    resample,
)


def chunks(x: np.ndarray, rng: np.random.Generator, most: int):
    i = 0
    while i < len(x):
        k = int(rng.integers(1, most))
        yield x[i : i + k]
        i += k


@pytest.mark.parametrize("src, dst", [(32, 32), (50, 32), (32, 50), (100, 32), (25, 30)])
def test_stream_resampler_equals_batch(src, dst):
    rng = np.random.default_rng(src * dst)
    x = rng.normal(size=(700, 3)).astype(np.float32)
    r = StreamResampler(src, dst, 3)
    streamed = np.concatenate([r.push(c) for c in chunks(x, rng, 37)])
    batch = resample(x, src, dst)
    assert streamed.shape == batch.shape
    np.testing.assert_allclose(streamed, batch, atol=1e-5)
    assert len(batch) == int(np.floor((len(x) - 1) * dst / src)) + 1


def test_resample_interpolates_a_ramp_exactly():
    ramp = np.arange(10, dtype=np.float32)[:, None]
    np.testing.assert_allclose(resample(ramp, 10, 20)[:, 0], np.arange(19) / 2)


@pytest.mark.parametrize("window, stride", [(96, 16), (10, 10), (8, 3), (5, 9)])
def test_stream_windower_equals_make_windows(window, stride):
    rng = np.random.default_rng(window + stride)
    x = rng.normal(size=(400, 2)).astype(np.float32)
    w = StreamWindower(window, stride, 2)
    got = [(win, end) for c in chunks(x, rng, 50) for win, end in w.push(c)]
    expected = make_windows(x, window, stride)
    assert len(got) == len(expected)
    for (win, end), exp, k in zip(got, expected, range(len(expected))):
        np.testing.assert_array_equal(win, exp)
        assert end == window + k * stride


def test_stream_preprocessor_equals_training_path():
    pre = Preprocessing(32.0, 24, 8, ("x", "y", "z"), (3 / 63,), (-1.5,), mean=(0.1, -0.2, 0.3), std=(0.5, 0.6, 0.7))
    rng = np.random.default_rng(7)
    raw = rng.integers(0, 64, size=(500, 3)).astype(np.float32)
    for rate in (32.0, 50.0):
        sp = StreamPreprocessor(pre, source_rate_hz=rate)
        streamed = [w for c in chunks(raw, rng, 40) for w in sp.push(c)]
        batch = recording_to_windows(raw, pre, source_rate_hz=rate)
        assert len(streamed) == len(batch) > 0
        np.testing.assert_allclose(np.stack(streamed), batch, atol=1e-5)


def test_source_scaling_override_for_physical_units():
    pre = Preprocessing(32.0, 4, 4, ("x",), (3 / 63,), (-1.5,))
    sp = StreamPreprocessor(pre, scale=(1.0,), offset=(0.0,))
    (window,) = sp.push(np.full((4, 1), 0.25, np.float32))
    assert np.allclose(window, 0.25)


def test_json_round_trip_and_errors_name_the_key():
    pre = Preprocessing(32.0, 96, 16, ("x", "y", "z"), (3 / 63,), (-1.5,), mean=(0, 0, 1), std=(1, 1, 2), units="g")
    assert Preprocessing.from_json(pre.to_json()) == pre
    data = pre.to_json()
    del data["value_scaling"]["offset"]
    with pytest.raises(PreprocessingError, match=r"missing key 'value_scaling.offset'"):
        Preprocessing.from_json(data, where="bundle.json: preprocessing")
    with pytest.raises(PreprocessingError, match="std must be > 0"):
        Preprocessing(32.0, 96, 16, ("x",), std=(0.0,))
    with pytest.raises(PreprocessingError, match="scale has 2 values"):
        Preprocessing(32.0, 96, 16, ("x", "y", "z"), scale=(1.0, 2.0))


def test_normalise_is_per_channel():
    pre = Preprocessing(1.0, 2, 1, ("a", "b"), mean=(1.0, 10.0), std=(2.0, 5.0))
    out = normalise(np.array([[[3.0, 20.0], [1.0, 10.0]]], np.float32), pre)
    np.testing.assert_allclose(out, [[[1.0, 2.0], [0.0, 0.0]]])
