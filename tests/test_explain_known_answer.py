"""Attributions on a model whose answer is known: each class lives in one channel in one part of the window.

The data: 3 channels of noise, windows of 64 samples; class ``early`` adds a pulse to channel 1
over samples 24-40, class ``late`` one to channel 2 over samples 44-60, class ``flat`` none. A
real conversion (float32 and int8) learns it; occlusion through the TFLite interpreter and
integrated gradients on the Keras model must both put the attribution on the pulse, agree with
each other, and give the same arrays twice. ``evaluate --explain`` then writes its plots.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_har.cli import main
from edge_har.core.attribution import agreement, occlusion, occlusion_calls, positive_mass, to_cells

WINDOW = 64
PULSES = {"early": (1, 24, 40), "late": (2, 44, 60)}  # class -> (channel, start, stop)


def span(start: int, stop: int) -> slice:
    """The 4-sample segments (16 per window) over samples ``start:stop``, with one segment of margin."""
    return slice(start // 4 - 1, stop // 4 + 1)


def write_known_answer_data(root: Path, per_class: int = 50, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for label in ("flat", *PULSES):
        folder = root / label
        folder.mkdir(parents=True)
        for n in range(per_class):
            x = rng.normal(0.0, 1.0, size=(WINDOW, 3))
            if label in PULSES:
                channel, start, stop = PULSES[label]
                x[start:stop, channel] += 3.0
            np.savetxt(folder / f"{label}_{n:03d}.csv", x, delimiter=",", fmt="%.5f")
    return root


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    base = tmp_path_factory.mktemp("known_answer")
    data = write_known_answer_data(base / "data")
    bundle = base / "bundle"
    rc = main(
        [
            "convert", "--data", str(data), "--sample-rate", "32", "--window", str(WINDOW), "--stride", str(WINDOW),
            "--conv-filters", "8", "--kernel-size", "5", "--lstm-units", "8", "--epochs", "30", "--patience", "8",
            "--learning-rate", "1e-2", "--dropout", "0", "--conv-dropout", "0", "--seed", "1", "--variants", "float32,int8", "--calibration-size", "60",
            "--allow-int8-drop", "--out", str(bundle), "--no-progress",
        ]
    )  # fmt: skip
    assert rc == 0
    return data, bundle


def _class_windows(bundle_dir: Path, data: Path, label: str, count: int = 4):
    from edge_har.convert.evaluate import bundle_windows, load_bundle
    from edge_har.core.formats.registry import load_dataset

    bundle = load_bundle(bundle_dir)
    dataset = load_dataset(data, sample_rate=32.0)
    x, y, _ = bundle_windows(bundle, dataset, "test")
    k = bundle.labels.index(label)
    return bundle, x[y == k][:count], k


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_occlusion_through_the_interpreter_finds_the_pulse(known, variant):
    data, bundle_dir = known
    for label, (channel, start, stop) in PULSES.items():
        bundle, windows, k = _class_windows(bundle_dir, data, label)
        assert len(windows), f"no test windows of {label}"
        model = bundle.load_model(variant, num_threads=1)
        masses = []
        for window in windows:
            result = occlusion(model.predict, window, target=k)
            assert model.predict(window).argmax() == k, f"{variant} does not recognise a {label} window"
            masses.append(positive_mass(result.cells, span(start, stop), [channel]))
            again = occlusion(model.predict, window, target=k)
            assert np.array_equal(result.cells, again.cells)  # deterministic for a bundle and a window
            assert result.calls == occlusion_calls(16, 3) == 1 + 3 * (16 + 15 + 13)
        where = f"{variant} {label}: shares of the attribution on channel {channel} {start}-{stop}"
        assert np.mean(masses) >= 0.7 and min(masses) >= 0.3, f"{where}: {np.round(masses, 2)}"


def test_integrated_gradients_find_the_pulse_and_agree_with_occlusion(known):
    from edge_har.convert.keras_probe import integrated_gradients, load_keras

    data, bundle_dir = known
    keras_model = load_keras(bundle_dir)
    for label, (channel, start, stop) in PULSES.items():
        bundle, windows, k = _class_windows(bundle_dir, data, label)
        model = bundle.load_model("float32", num_threads=1)
        masses, agreements = [], []
        for window in windows:
            ig = integrated_gradients(keras_model, window, target=k)
            assert abs(ig.delta) < 0.05 * max(ig.probability, 0.1), ig.delta  # completeness holds
            cells = to_cells(ig.values, np.arange(0, WINDOW + 1, 4))
            masses.append(positive_mass(cells, span(start, stop), [channel]))
            agreements.append(agreement(cells, occlusion(model.predict, window, target=k).cells))
            again = integrated_gradients(keras_model, window, target=k)
            np.testing.assert_allclose(again.values, ig.values, rtol=1e-5, atol=1e-7)
        assert np.mean(masses) >= 0.7 and min(masses) >= 0.3, f"integrated gradients {label}: {np.round(masses, 2)}"
        assert np.mean(agreements) >= 0.6, f"occlusion and integrated gradients {label}: {np.round(agreements, 2)}"


def test_evaluate_explain_writes_the_plots_and_arrays(known, tmp_path, capsys):
    data, bundle_dir = known
    out = tmp_path / "eval"
    assert main(["evaluate", str(bundle_dir), "--variant", "int8", "--explain", "--explain-windows", "5",
                 "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    folder = out / "int8" / "explain"
    doc = json.loads((folder / "explain.json").read_text())
    for name in ("class_attribution.png", "features_pca.png", "lstm_states.png"):
        assert (folder / name).stat().st_size > 5000, name
    assert doc["occlusion_calls_per_window"] == occlusion_calls(16, 3)
    assert set(doc["ms_per_window"]) == {"occlusion", "integrated_gradients"}
    for label, (channel, start, stop) in PULSES.items():
        entry = doc["classes"][label]
        assert entry["windows"] == 5
        cells = np.asarray(entry["occlusion"])
        assert positive_mass(cells, span(start, stop), [channel]) >= 0.6
        assert entry["agreement"] >= 0.5
    assert doc["internals"]["lstm_states"]["units"] == 8
    assert "explanations in" in capsys.readouterr().out
    # Occlusion alone needs no TensorFlow: the same report without the gradient half.
    assert main(["evaluate", str(bundle_dir), "--variant", "int8", "--explain", "--no-gradients",
                 "--explain-windows", "5", "--out", str(tmp_path / "occ"), "--no-progress"]) == 0  # fmt: skip
    plain = json.loads((tmp_path / "occ" / "int8" / "explain" / "explain.json").read_text())
    assert plain["classes"]["early"]["occlusion"] == doc["classes"]["early"]["occlusion"]
    assert "integrated_gradients" not in plain["classes"]["early"] and "internals" not in plain
