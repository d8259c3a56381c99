"""MACs per window counted from real .tflite graphs, and the floor they imply at a measured peak."""

from __future__ import annotations

import pytest

from edge_har.benchmarks.floor import count_macs, floor_section, format_floor, measure_peaks, op_macs
from edge_har.core.bundle import Bundle


def test_op_macs_from_shapes():
    assert op_macs("FULLY_CONNECTED", [(1, 64), (32, 64), (32,)], [(1, 32)]) == 64 * 32
    assert op_macs("FULLY_CONNECTED", [(1, 10, 64), (32, 64), None], [(1, 10, 32)]) == 10 * 64 * 32
    assert op_macs("CONV_2D", [(1, 1, 96, 3), (8, 1, 3, 3), (8,)], [(1, 1, 94, 8)]) == 94 * 8 * 3 * 3
    assert op_macs("DEPTHWISE_CONV_2D", [(1, 8, 8, 4), (1, 3, 3, 4), (4,)], [(1, 8, 8, 4)]) == 64 * 4 * 9
    assert op_macs("BATCH_MATMUL", [(2, 5, 7), (2, 7, 3)], [(2, 5, 3)]) == 2 * 5 * 7 * 3
    lstm_inputs = [(1, 10, 4)] + [(6, 4)] * 4 + [(6, 6)] * 4 + [None] * 3 + [(6,)] * 4 + [None, None, (1, 6), (1, 6)]
    assert op_macs("UNIDIRECTIONAL_SEQUENCE_LSTM", lstm_inputs, [(1, 10, 6)]) == 10 * 4 * 6 * (4 + 6)
    assert op_macs("ADD", [(1, 8), (1, 8)], [(1, 8)]) == 0


def test_a_converted_model_counts_what_its_layers_multiply(tmp_path):
    """Conv1D(6, k=3, valid) over 16 x 4, then Dense(5) over the 14 x 6 flattened: 1008 + 420 MACs."""
    from edge_har.convert.models import import_tf

    tf, keras = import_tf()
    inp = keras.Input(shape=(16, 4), batch_size=1)
    x = keras.layers.Conv1D(6, 3, padding="valid")(inp)
    out = keras.layers.Dense(5)(keras.layers.Flatten()(x))
    model = keras.Model(inp, out)
    path = tmp_path / "m.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    count = count_macs(path)
    assert count.total == 14 * 6 * 3 * 4 + 14 * 6 * 5
    assert count.by_op == {"CONV_2D": 1008, "FULLY_CONNECTED": 420}


def test_every_variant_of_a_bundle_does_the_same_arithmetic_and_the_floor_follows_the_peak(tiny_bundle):
    bundle = Bundle.load(tiny_bundle)
    counts = {name: count_macs(v.file).total for name, v in bundle.variants.items()}
    assert len(set(counts.values())) == 1 and counts["float32"] > 0
    peaks = {
        "status": "ok",
        "threads": 1,
        "probe": "test",
        "peaks": {"float32": {"gmacs": 10.0}, "int8": {"gmacs": 40.0}, "dynamic_range": {"gmacs": 20.0}},
    }
    section = floor_section(bundle, peaks=peaks)
    macs = counts["float32"]
    assert section["variants"]["float32"]["floor_ms"] == pytest.approx(macs / 10e9 * 1e3)
    assert section["variants"]["int8"]["floor_ms"] == pytest.approx(macs / 40e9 * 1e3)
    assert section["variants"]["dynamic_range"]["peak_gmacs"] == 20.0
    text = format_floor(section)
    assert "float32 10.0 G MAC/s" in text and f"{macs / 1e6:.3f}" in text
    no_peaks = floor_section(bundle)
    assert "floor_ms" not in no_peaks["variants"]["int8"] and no_peaks["peaks"]["status"] == "not measured"


@pytest.mark.slow
def test_the_measured_peaks_are_positive_and_ordered_by_arithmetic():
    result = measure_peaks(threads=1)
    peaks = result["peaks"]
    assert set(peaks) == {"float32", "dynamic_range", "int8"}
    assert all(p["gmacs"] > 0.1 and p["macs"] == 64 * 512 * 512 for p in peaks.values())
