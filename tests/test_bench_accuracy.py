"""``edge-har bench accuracy`` on the tiny bundle, and the definitions behind its streaming and baseline figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_har.benchmarks.baseline import feature_names, window_features
from edge_har.benchmarks.streaming import Published, score
from edge_har.cli import main


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_quick_run_scores_variants_baseline_and_stream(tiny_bundle, tiny_dataset_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(
            [
                "bench",
                "accuracy",
                str(tiny_bundle),
                "--data",
                str(tiny_dataset_dir),
                "--quick",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    section = _results(out)["suites"]["accuracy"]
    for key in ("date", "git", "machine", "runtimes", "bundle", "data", "rows", "baseline_margin", "streaming"):
        assert key in section, key
    bundle_doc = json.loads((tiny_bundle / "bundle.json").read_text())
    assert section["data"]["test_recordings"] == len(bundle_doc["metrics"]["split"]["test_sources_relative"])
    assert section["data"]["windows"] == bundle_doc["metrics"]["split"]["windows"]["test"]

    rows = {r["name"]: r for r in section["rows"]}
    assert set(rows) == {"float32", "dynamic_range", "int8", "random_forest"}
    labels = section["bundle"]["labels"]
    for name, r in rows.items():
        assert r["status"] == "ok", r
        assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["macro_f1"] <= 1.0
        assert set(r["per_class_f1"]) == set(labels)
        cm = np.asarray(r["confusion_matrix"])
        assert cm.sum() == section["data"]["windows"]
        assert np.trace(cm) / cm.sum() == pytest.approx(r["accuracy"])
        png = Path(r["files"]["confusion_png"])
        assert png.is_file() and png.stat().st_size > 1000
    for name in ("float32", "dynamic_range", "int8"):
        # the same windows and interpreter as convert's evaluation: the bundle's own figures come back
        assert rows[name]["accuracy"] == pytest.approx(bundle_doc["variants"][name]["metrics"]["accuracy"])
        assert rows[name]["drop_points"] == pytest.approx(100 * (rows["float32"]["accuracy"] - rows[name]["accuracy"]))
        assert rows[name]["size_bytes"] == (tiny_bundle / bundle_doc["variants"][name]["file"]).stat().st_size
    rf = rows["random_forest"]
    assert rf["trees"] == 50 and rf["train_windows"] > section["data"]["windows"]
    assert rf["train_recordings"].startswith("the bundle's training recordings")
    margin = section["baseline_margin"]["variants"]["int8"]
    assert margin["accuracy_points"] == pytest.approx(100 * (rows["int8"]["accuracy"] - rf["accuracy"]))

    streaming = section["streaming"]
    assert streaming["status"] == "ok" and streaming["variant"] == bundle_doc["default_variant"]
    modes = {m["name"]: m for m in streaming["modes"]}
    assert set(modes) == {"raw", "smoothed"}
    raw, smoothed = modes["raw"], modes["smoothed"]
    assert raw["smoothing_window"] == 1 and smoothed["smoothing_window"] == 5
    for m in modes.values():
        assert m["status"] == "ok", m
        assert m["windows"] == section["data"]["windows"]
        for key in ("window_accuracy", "time_accuracy", "unknown_rate", "macro_f1"):
            assert 0.0 <= m[key] <= 1.0, key
    # recordings are replayed back to back in bundle.json's order: a switch wherever the class changes
    classes = [source.split("/")[0] for source in bundle_doc["metrics"]["split"]["test_sources_relative"]]
    switches = sum(a != b for a, b in zip(classes, classes[1:]))
    pre = bundle_doc["preprocessing"]
    first_window_end = (pre["window"] - 1) / pre["sample_rate_hz"]
    for m in modes.values():
        assert m["switches"] == switches
        if switches > m["switches_never_correct"]:
            # no label can change before the new recording has filled one whole window
            assert m["switch_delay_p50_s"] >= first_window_end - 1e-9
    # the daemon's streaming path makes exactly the offline windows: unsmoothed, it scores what evaluate scores
    assert raw["window_accuracy"] == pytest.approx(rows[streaming["variant"]]["accuracy"])
    assert raw["unknown_rate"] == 0.0

    assert (out / "accuracy.png").stat().st_size > 1000
    assert "Per-class F1" in printed and "random-forest baseline" in printed and "Streaming accuracy" in printed


def test_broken_variant_is_reported_in_its_row(tiny_bundle_copy, tiny_dataset_dir, tmp_path):
    """A corrupted file (its sha256 no longer matches bundle.json) fails its row; the rest is scored; the
    latency section already in the results file is kept."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"schema": "edge-har-bench/1", "suites": {"latency": {"rows": []}}}))
    with open(tiny_bundle_copy / "model_int8.tflite", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00" * 64)
    assert (
        main(
            [
                "bench",
                "accuracy",
                str(tiny_bundle_copy),
                "--data",
                str(tiny_dataset_dir),
                "--quick",
                "--out",
                str(out),
                "--no-progress",
                "--no-baseline",
                "--stream-variant",
                "float32",
            ]
        )
        == 0
    )
    data = _results(out)
    assert set(data["suites"]) == {"latency", "accuracy"}
    rows = {r["name"]: r for r in data["suites"]["accuracy"]["rows"]}
    assert rows["int8"]["status"] == "error" and "sha256" in rows["int8"]["error"]
    assert rows["float32"]["status"] == rows["dynamic_range"]["status"] == "ok"
    assert "random_forest" not in rows
    assert data["suites"]["accuracy"]["streaming"]["variant"] == "float32"


def test_data_without_the_test_recordings_is_a_clear_error(tiny_bundle, tmp_path, capsys):
    from edge_har.convert.synthetic import write_synthetic_imu_dataset

    other = write_synthetic_imu_dataset(
        tmp_path / "other",
        classes=("walk", "sit", "wave"),
        recordings_per_class=2,
        subjects=1,
        seconds=(4.0, 5.0),
        seed=9,
    )
    assert (
        main(["bench", "accuracy", str(tiny_bundle), "--data", str(other), "--quick", "--out", str(tmp_path / "o")])
        == 2
    )
    err = capsys.readouterr().err
    assert "test recordings are not in this data" in err


# ---------------------------------------------------------------- definitions


def test_time_weighted_accuracy_charges_the_lag_after_a_change():
    """Two 10 s recordings; predictions every 2 s from t=2. The first recording's last label stays on display
    for the first 3 s of the second until its first prediction (t=13) is right."""
    timeline = [(0.0, 10.0, "Sit"), (10.0, 20.0, "Walk")]
    published = [Published(t, "Sit", "Sit", 0) for t in (2.0, 4.0, 6.0, 8.0)]
    published += [
        Published(13.0, "Walk", "Walk", 1),
        Published(15.0, "unknown", "Walk", 1),
        Published(17.0, "Walk", "Walk", 1),
        Published(19.0, "Sit", "Walk", 1),
    ]
    s = score(published, timeline, ["Sit", "Walk"], "unknown")
    assert s["windows"] == 8
    assert s["window_accuracy"] == pytest.approx(6 / 8)
    assert s["window_accuracy_known"] == pytest.approx(6 / 7)
    assert s["unknown_rate"] == pytest.approx(1 / 8)
    # scored from t=2 to 20 (18 s): right = Sit 2..10 (8) + Walk 13..15 (2) + 17..19 (2) = 12
    assert s["seconds_scored"] == pytest.approx(18.0)
    assert s["time_accuracy"] == pytest.approx(12 / 18)
    assert s["time_unknown_rate"] == pytest.approx(2 / 18)
    assert s["switches"] == 1 and s["switch_delay_p50_s"] == pytest.approx(3.0)
    assert s["switches_never_correct"] == 0
    # per-class F1 over the real classes: Sit P=4/5 R=1; Walk P=1 R=2/4
    assert s["per_class_f1"]["Sit"] == pytest.approx(2 * 0.8 / 1.8)
    assert s["per_class_f1"]["Walk"] == pytest.approx(2 * 0.5 / 1.5)


def test_window_features_are_the_documented_statistics():
    w = np.array([[[0.0, 1.0], [2.0, 1.0], [1.0, 4.0]]])  # one window, 3 samples, 2 channels
    f = window_features(w)
    assert f.shape == (1, 10)
    names = feature_names(["x", "y"])
    got = dict(zip(names, f[0]))
    assert got["x_mean"] == pytest.approx(1.0) and got["y_mean"] == pytest.approx(2.0)
    assert got["x_std"] == pytest.approx(np.std([0, 2, 1])) and got["y_max"] == 4.0 and got["x_min"] == 0.0
    assert got["x_mean_abs_diff"] == pytest.approx(1.5) and got["y_mean_abs_diff"] == pytest.approx(1.5)
