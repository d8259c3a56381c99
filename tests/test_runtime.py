"""Sensor runtime on the tiny real bundle: windows in, labels out, through the shared streaming path."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge_har.core.bundle import Bundle
from edge_har.core.interpreter import InterpreterError
from edge_har.core.preprocessing import recording_to_windows, resample, window_count
from edge_har.core.recordings import load_folder_recordings
from edge_har.device.runtime import Runtime, Windowing
from edge_har.device.sources.base import Chunk

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    """Fresh synthetic recordings of the tiny bundle's classes that the model never saw."""
    from edge_har.convert.synthetic import write_synthetic_imu_dataset
    from tests.plugins.bundle import TINY_CLASSES

    root = write_synthetic_imu_dataset(
        tmp_path_factory.mktemp("heldout") / "data",
        classes=TINY_CLASSES,
        recordings_per_class=2,
        subjects=2,
        seconds=(5.0, 7.0),
        seed=77,
    )
    return load_folder_recordings(root)


@pytest.fixture(scope="module")
def runtime(tiny_bundle):
    return Runtime.load(tiny_bundle, smoothing_window=1)


def chunks_of(samples: np.ndarray, sizes, label=None, t0: float = 1000.0, rate: float = 32.0):
    """Split samples into chunks of the given sizes (cycled); ts of each chunk = time of its last sample."""
    out, pos, i = [], 0, 0
    while pos < len(samples):
        n = sizes[i % len(sizes)]
        part = samples[pos : pos + n]
        pos += len(part)
        out.append(Chunk(part, time.perf_counter(), t0 + (pos - 1) / rate, label=label, segment_start=(i == 0)))
        i += 1
    return out


def test_windows_in_labels_out_on_heldout_recordings(runtime, heldout):
    correct = total = 0
    for rec in heldout:
        preds = runtime.run_samples(rec.samples, label=rec.label)
        assert len(preds) == window_count(len(rec.samples), runtime.pre.window, runtime.pre.stride)
        correct += sum(p.raw_label == rec.label for p in preds)
        total += len(preds)
        p = preds[0]
        assert p.truth == rec.label
        assert set(p.probabilities) == {"Sit", "Walk", "Wave"}
        assert all(0.0 <= v <= 1.0 for v in p.probabilities.values())
        assert abs(sum(p.probabilities.values()) - 1.0) < 0.05
        assert p.inference_ms > 0 and p.e2e_ms >= p.inference_ms
    assert total > 50
    assert correct / total >= 0.8, f"{correct}/{total} windows right"


def test_streaming_chunks_give_the_training_windows_and_end_times(runtime, heldout):
    rec = heldout[0]
    expected = recording_to_windows(rec.samples, runtime.pre)  # the batch path convert uses
    windowing = runtime.windowing()
    got = [w for c in chunks_of(rec.samples, [1, 7, 30, 3, 64]) for w in windowing.push(c)]
    assert len(got) == len(expected)
    np.testing.assert_allclose(np.stack([w.data for w in got]), expected, rtol=1e-5, atol=1e-5)
    # window k ends at sample window - 1 + k * stride, sampled at t0 + index / rate
    ends = np.array([w.end_ts for w in got])
    want = 1000.0 + (runtime.pre.window - 1 + np.arange(len(got)) * runtime.pre.stride) / 32.0
    np.testing.assert_allclose(ends, want, atol=1e-6)
    assert [w.segment_start for w in got] == [True] + [False] * (len(got) - 1)


def test_a_segment_start_restarts_windowing_and_smoothing(tiny_bundle, heldout):
    rt = Runtime.load(tiny_bundle, smoothing_window=4)
    windowing = rt.windowing()
    a, b = heldout[0].samples, heldout[-1].samples
    first = windowing.push(Chunk(a[:100], time.perf_counter(), 1.0, segment_start=True))
    assert len(first) == 3  # ends at 64, 80, 96
    for w in first:
        rt.predict(w)
    assert len(rt.smoother) == 3
    second = windowing.push(Chunk(b[:64], time.perf_counter(), 2.0, label=heldout[-1].label, segment_start=True))
    assert len(second) == 1 and second[0].segment_start  # only b's samples: no window spans the gap
    np.testing.assert_allclose(second[0].data, recording_to_windows(b[:64], rt.pre)[0], atol=1e-5)
    p = rt.predict(second[0])
    assert len(rt.smoother) == 1  # smoothing restarted too
    assert p.seq == 3


def test_a_source_at_another_rate_is_resampled_to_the_model_rate(runtime, heldout):
    correct = total = 0
    for rec in heldout:
        fast = resample(rec.samples, 32.0, 64.0)  # the same motion sampled at 64 Hz
        windowing = runtime.windowing(source_rate_hz=64.0)
        windows = [w for c in chunks_of(fast, [5, 11], rate=64.0) for w in windowing.push(c)]
        back = resample(fast, 64.0, 32.0)
        assert len(windows) == window_count(len(back), runtime.pre.window, runtime.pre.stride)
        preds = [runtime.predict(w) for w in windows]
        correct += sum(p.raw_label == rec.label for p in preds)
        total += len(preds)
    assert correct / total >= 0.8


def test_physical_units_with_scale_override_match_raw_codes(runtime, heldout):
    rec = heldout[1]
    pre = runtime.pre
    in_g = rec.samples * np.float32(pre.scale[0]) + np.float32(pre.offset[0])  # what an IMU driver delivers
    raw = [w.data for w in runtime.windowing().push(Chunk(rec.samples, 0.0, 0.0, segment_start=True))]
    phys = [
        w.data for w in runtime.windowing(scale=[1.0], offset=[0.0]).push(Chunk(in_g, 0.0, 0.0, segment_start=True))
    ]
    np.testing.assert_allclose(np.stack(phys), np.stack(raw), atol=1e-4)


def test_variants_agree_and_threshold_gives_unknown(tiny_bundle, heldout):
    rec = heldout[2]
    labels = {}
    for variant in ("float32", "int8"):
        rt = Runtime.load(tiny_bundle, variant, smoothing_window=1)
        assert rt.variant == variant
        labels[variant] = [p.raw_label for p in rt.run_samples(rec.samples)]
    agree = np.mean([a == b for a, b in zip(labels["float32"], labels["int8"])])
    assert agree >= 0.8
    strict = Runtime.load(tiny_bundle, "float32", smoothing_window=1, threshold=1.0)
    preds = strict.run_samples(rec.samples)
    assert {p.label for p in preds} == {"unknown"}  # nothing reaches confidence 1.0
    assert all(p.raw_label in ("Sit", "Walk", "Wave") for p in preds)


def test_a_corrupt_model_file_is_refused(tiny_bundle_copy):
    bundle = Bundle.load(tiny_bundle_copy)
    file = bundle.variant("float32").file
    data = bytearray(file.read_bytes())
    data[-10] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(InterpreterError, match="sha256"):
        Runtime.load(tiny_bundle_copy, "float32")
    Runtime.load(tiny_bundle_copy, "int8")  # the other variants still load


def test_the_device_path_never_imports_tensorflow():
    code = (
        "import sys\n"
        "import edge_har.device.daemon, edge_har.device.daemon_cli, edge_har.device.runtime, edge_har.device.config, edge_har.device.stats\n"
        "import edge_har.device.sources.replay, edge_har.device.sources.serial_source, edge_har.device.sources.mqtt_input, edge_har.device.sources.i2c_imu\n"
        "import edge_har.mqtt.publisher\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras', 'convert'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_windowing_is_usable_without_a_model(runtime):
    w = Windowing(runtime.pre, source_rate_hz=32.0)
    assert w.push(Chunk(np.zeros((63, 3), np.float32), 0.0, 0.0, segment_start=True)) == []
    assert len(w.push(Chunk(np.zeros((1, 3), np.float32), 0.0, 0.0))) == 1
