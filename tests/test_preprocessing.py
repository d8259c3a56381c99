"""The one preprocessing path: the device's streaming code must give the training windows exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_har.core.preprocessing import (
    Preprocessing,
    PreprocessingError,
    StreamPreprocessor,
    StreamResampler,
    StreamWindower,
    make_windows,
    normalise,
    recording_to_windows,
    resample,
    scale_values,
    window_count,
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


@pytest.mark.parametrize("src, dst", [(50, 32), (32, 50), (100, 30), (32, 20.5)])
@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_stream_resampler_equals_batch_at_fixed_chunk_sizes(src, dst, chunk):
    x = np.random.default_rng(chunk).normal(size=(777, 2)).astype(np.float32)
    r = StreamResampler(src, dst, 2)
    parts = [r.push(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    np.testing.assert_allclose(np.concatenate(parts), resample(x, src, dst), atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 5, 96, 500])
def test_stream_windower_at_fixed_chunk_sizes_and_reset(chunk):
    x = np.arange(300, dtype=np.float32)[:, None]
    w = StreamWindower(96, 16, 1)
    got = [win for i in range(0, len(x), chunk) for win, _ in w.push(x[i : i + chunk])]
    assert len(got) == window_count(300, 96, 16) == 13
    np.testing.assert_array_equal(np.stack(got), make_windows(x, 96, 16))
    w.reset()  # a gap in the source: nothing of before reaches a later window
    assert w.samples_seen == 0 and w.push(x[:95]) == []
    ((win, end),) = w.push(x[200:201])
    assert end == 96 and win[-1, 0] == 200 and win[0, 0] == 0


@pytest.mark.parametrize("src", [20.0, 25.6, 32.0, 50.0, 100.0])
@pytest.mark.parametrize("chunk", [1, 13, 256])
def test_stream_preprocessor_equals_training_windows_at_any_rate(src, chunk):
    """What the daemon computes from a sensor at ``src`` Hz equals what training computed from the recording."""
    pre = Preprocessing(32.0, 64, 16, ("x", "y", "z"), (3 / 63,), (-1.5,), mean=(0.0, -0.9, 0.2), std=(0.4, 0.5, 0.6))
    raw = np.random.default_rng(int(src)).integers(0, 64, size=(int(src * 12), 3)).astype(np.float32)
    sp = StreamPreprocessor(pre, source_rate_hz=src)
    streamed = [w for i in range(0, len(raw), chunk) for w in sp.push(raw[i : i + chunk])]
    batch = recording_to_windows(raw, pre, source_rate_hz=src)
    assert len(streamed) == len(batch) == window_count(len(resample(raw, src, 32.0)), 64, 16)
    np.testing.assert_allclose(np.stack(streamed), batch, atol=1e-4)


def test_scaling_is_per_channel_or_shared_and_checks_the_shape():
    pre = Preprocessing(10.0, 2, 1, ("a", "b"), scale=(2.0, 0.5), offset=(1.0,))
    np.testing.assert_allclose(scale_values(np.array([[1.0, 4.0]]), pre), [[3.0, 3.0]])
    with pytest.raises(PreprocessingError, match=r"shape \(n, 2\).*got \(4, 3\)"):
        scale_values(np.zeros((4, 3)), pre)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sample_rate_hz": 0}, "sample_rate_hz must be > 0"),
        ({"window": 0}, "window must be >= 1"),
        ({"stride": 0}, "stride must be >= 1"),
        ({"channels": ()}, "channels must name at least one channel"),
        ({"offset": (1.0, 2.0)}, "offset has 2 values; expected 1 or one per channel"),
    ],
)
def test_bad_parameters_are_named(kwargs, message):
    args = dict(sample_rate_hz=32.0, window=96, stride=16, channels=("x", "y", "z"))
    args.update(kwargs)
    with pytest.raises(PreprocessingError, match=message):
        Preprocessing(**args)


def test_json_round_trip_through_text():
    for pre in (
        Preprocessing(50.0, 128, 64, ("ax", "ay"), (9.81, 1.0), (0.0, -1.0), units="m/s^2"),
        Preprocessing(
            32.0, 96, 16, ("x", "y", "z"), (3 / 63,), (-1.5,), mean=(0.1, 0.2, 0.3), std=(1, 2, 3), units="g"
        ),
    ):
        data = json.loads(json.dumps(pre.to_json()))
        assert Preprocessing.from_json(data) == pre
        assert data["window_seconds"] == pytest.approx(pre.window / pre.sample_rate_hz)
        assert data["value_scaling"]["formula"] == "value = raw * scale + offset"
        assert (data["normalisation"] is None) == (pre.mean is None)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("sample_rate_hz"), "missing key 'sample_rate_hz'"),
        (lambda d: d.pop("channels"), "missing key 'channels'"),
        (lambda d: d["value_scaling"].pop("scale"), "missing key 'value_scaling.scale'"),
        (lambda d: d["normalisation"].pop("std"), "missing key 'normalisation.std'"),
        (lambda d: d.update(window="abc"), "'window' must be a whole number, got 'abc'"),
        (lambda d: d.update(window=96.5), "'window' must be a whole number, got 96.5"),
        (lambda d: d.update(channels="xyz"), "'channels' must be a list of channel names, got 'xyz'"),
        (lambda d: d["value_scaling"].update(scale=0.5), "'value_scaling.scale' must be a list of numbers, got 0.5"),
        (lambda d: d["normalisation"].update(mean=[0, "a", 0]), r"'normalisation.mean\[1\]' must be a number"),
        (lambda d: d.update(value_scaling=[1.0]), "'value_scaling' must be an object"),
        (lambda d: d.update(sample_rate_hz=None), "'sample_rate_hz' must be a number, got None"),
    ],
    ids=[
        "rate",
        "channels",
        "scale",
        "std",
        "window-text",
        "window-fraction",
        "channels-string",
        "scale-number",
        "mean-item",
        "scaling-list",
        "rate-null",
    ],
)
def test_from_json_errors_name_the_key(edit, message):
    data = Preprocessing(32.0, 96, 16, ("x", "y", "z"), (3 / 63,), (-1.5,), mean=(0, 0, 1), std=(1, 1, 2)).to_json()
    edit(data)
    with pytest.raises(PreprocessingError, match=f"^bundle.json: preprocessing: {message}"):
        Preprocessing.from_json(data, where="bundle.json: preprocessing")


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
