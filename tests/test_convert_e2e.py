"""A tiny end-to-end conversion on generated data: variants, validation, int8 vs float, the gate.

The bundle itself comes from the session fixture ``tiny_bundle``
(tests/plugins/bundle.py), built by ``edge_har.convert.pipeline.run_convert``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_har.cli import main
from edge_har.core.bundle import Bundle

# On the same windows, int8 softmax outputs (steps of 1/256, rounding in every
# layer) stay within this distance of float32's, and pick the same class almost always.
INT8_PROB_TOLERANCE = 0.1
INT8_ARGMAX_AGREEMENT = 0.9


@pytest.fixture(scope="module")
def test_windows(tiny_bundle, tiny_dataset_dir):
    from edge_har.convert.datasets import load_dataset
    from edge_har.convert.evaluate import bundle_windows

    bundle = Bundle.load(tiny_bundle)
    x, y, _ = bundle_windows(bundle, load_dataset(tiny_dataset_dir), "test")
    return bundle, x, y


def test_all_three_variants_are_produced_and_the_bundle_validates(tiny_bundle):
    bundle = Bundle.load(tiny_bundle)
    assert bundle.verify() == []
    assert list(bundle.variants) == ["float32", "dynamic_range", "int8"]
    assert {v.quantization for v in bundle.variants.values()} == {
        "none",
        "dynamic_range_int8_weights",
        "full_integer_int8",
    }
    for name in bundle.variants:
        model = bundle.load_model(name)
        assert model.input.shape == (1, 64, 3)
        ops = bundle.variants[name].meta["ops"]
        # The default lstm_export: the LSTM unrolled over 64 // 3 = 21 steps (one input projection,
        # 20 recurrent FULLY_CONNECTED, the dense layer), no fused LSTM op and no WHILE loop.
        assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in ops and "WHILE" not in ops
        assert ops["FULLY_CONNECTED"] == 1 + 20 + 1
        assert (tiny_bundle / "evaluation" / name / "metrics.json").is_file()
        assert (tiny_bundle / "evaluation" / name / "confusion_matrix.png").is_file()
    assert bundle.variants["int8"].meta["float_ops"] == {}
    assert (tiny_bundle / "training" / "training_curves.png").is_file()
    # The synthetic classes are easy: a model that learned nothing would score ~0.33.
    assert bundle.variants["float32"].metrics["accuracy"] >= 0.8


def test_recorded_metrics_are_what_the_interpreter_gives(test_windows):
    bundle, x, y = test_windows
    for name, variant in bundle.variants.items():
        probs = bundle.load_model(name).predict_batch(x)
        assert (probs.argmax(1) == y).mean() == pytest.approx(variant.metrics["accuracy"])


def test_int8_outputs_stay_close_to_float_on_the_same_windows(test_windows):
    bundle, x, _ = test_windows
    p_float = bundle.load_model("float32").predict_batch(x)
    p_int8 = bundle.load_model("int8").predict_batch(x)
    assert np.abs(p_int8 - p_float).max() <= INT8_PROB_TOLERANCE
    assert (p_int8.argmax(1) == p_float.argmax(1)).mean() >= INT8_ARGMAX_AGREEMENT


def test_the_keras_model_in_the_bundle_is_the_converted_one(test_windows, tiny_bundle):
    from edge_har.convert.models import import_tf

    _, keras = import_tf()
    bundle, x, _ = test_windows
    keras_model = keras.models.load_model(tiny_bundle / "keras_model.h5", compile=False)
    np.testing.assert_allclose(
        keras_model.predict(x, verbose=0), bundle.load_model("float32").predict_batch(x), atol=1e-3
    )


def test_normalisation_comes_from_the_training_windows(test_windows, tiny_dataset_dir):
    """The stored statistics are not those of all windows (or of the test windows)."""
    from edge_har.convert.datasets import load_dataset, make_window_set
    from edge_har.core.preprocessing import fit_normalisation

    bundle, _, _ = test_windows
    pre = bundle.preprocessing
    everything = make_window_set(load_dataset(tiny_dataset_dir), pre)
    mean_all, _ = fit_normalisation(everything.x)
    assert not np.allclose(pre.mean, mean_all, atol=1e-6)
    assert np.allclose(pre.mean, mean_all, atol=0.3)  # same data, so close


def test_accuracy_gate_refuses_and_writes_nothing(tiny_dataset_dir, tmp_path, capsys):
    out = tmp_path / "bundle"
    code = main(
        [
            "convert",
            "--data",
            str(tiny_dataset_dir),
            "--out",
            str(out),
            "--window",
            "64",
            "--stride",
            "16",
            "--conv-filters",
            "4",
            "--lstm-units",
            "4",
            "--epochs",
            "1",
            "--calibration-size",
            "30",
            "--variants",
            "float32,int8",
            "--max-int8-drop",
            "-100",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 3
    assert "refusing to write the bundle" in err and "float32's" in err and "int8 test accuracy" in err
    assert "--allow-int8-drop" in err
    # no bundle, no staging directory; the trained model kept beside --out for convert --from-keras
    assert [p.name for p in tmp_path.iterdir()] == ["bundle.refused"]
    assert not (tmp_path / "bundle.refused" / "bundle.json").exists()
    # The advice is a command that works: the kept model, re-gated as advised, becomes a bundle.
    advised = err.split("without retraining: ", 1)[1].split()
    assert advised[:4] == ["edge-har", "convert", "--from-keras", str(tmp_path / "bundle.refused")]
    assert "--default-variant" in advised and "dynamic_range" in advised[advised.index("--default-variant") + 1]
    assert main([*advised[1:], "--no-progress"]) == 0
    written = json.loads((out / "bundle.json").read_text())
    assert written["default_variant"] == "dynamic_range" and set(written["variants"]) == {"float32", "dynamic_range"}


class _Scored:
    def __init__(self, accuracy: float) -> None:
        self.report = {"accuracy": accuracy}


class _Spec:
    def __init__(self, name: str, full_integer: bool) -> None:
        self.name, self.full_integer = name, full_integer


def test_the_gate_advises_the_variant_this_run_measured_within_the_limit():
    from edge_har.convert.skeleton import AccuracyGateError, int8_gate

    evaluations = {"float32": _Scored(0.95), "dynamic_range": _Scored(0.948), "int8": _Scored(0.92)}
    specs = [_Spec("float32", False), _Spec("dynamic_range", False), _Spec("int8", True)]
    with pytest.raises(AccuracyGateError) as refused:
        int8_gate(evaluations, specs, 1.0, False)
    message = str(refused.value)
    assert "int8 test accuracy 92.00% is 3.00 points below float32's 95.00%" in message
    assert "dynamic_range scores 94.80% (0.20 points below float32" in message
    assert refused.value.advice_flags == ("--variants", "float32,dynamic_range", "--default-variant", "dynamic_range")
    assert "calibration-size" not in message  # measured not to help; not offered
    drops, over = int8_gate(evaluations, specs, 1.0, True)  # accepted when asked
    assert over and drops["int8"] == pytest.approx(3.0)


def test_too_large_calibration_set_fails_before_training(tiny_dataset_dir, tmp_path, capsys):
    code = main(
        [
            "convert",
            "--data",
            str(tiny_dataset_dir),
            "--out",
            str(tmp_path / "b"),
            "--window",
            "64",
            "--calibration-size",
            "100000",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "calibration set needs 100000 windows" in err
    assert list(tmp_path.iterdir()) == []


def test_provenance_names_the_data_and_its_file_list(tiny_bundle, tiny_dataset_dir):
    data = json.loads((tiny_bundle / "bundle.json").read_text())
    dataset = data["provenance"]["dataset"]
    from edge_har.convert.datasets import load_dataset

    assert dataset["file_list_sha256"] == load_dataset(tiny_dataset_dir).file_list_sha256
    assert data["metrics"]["split"]["windows"]["train"] > data["metrics"]["split"]["windows"]["test"] > 0
