"""``edge-har evaluate`` and the numpy metrics behind it.

The CLI runs in a subprocess with TensorFlow blocked, which proves evaluation
needs only the device-side runtime.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_har.core import metrics

ROOT = Path(__file__).resolve().parents[1]
BLOCK_TF = "import sys; sys.modules['tensorflow'] = None; sys.modules['tf_keras'] = None\n"
RUN_CLI = "import sys\nfrom edge_har.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def run_cli(*args: str, block: str = BLOCK_TF, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", block + RUN_CLI, *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ---------------------------------------------------------------- metrics


def test_metrics_match_scikit_learn_on_random_labels():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(50):
        n_classes = int(rng.integers(2, 7))
        y_true = rng.integers(0, n_classes, int(rng.integers(1, 80)))
        y_pred = rng.integers(0, n_classes, len(y_true))
        labels = [f"c{i}" for i in range(n_classes)]
        report = metrics.classification_report(y_true, y_pred, labels)
        assert report["accuracy"] == pytest.approx(sk.accuracy_score(y_true, y_pred))
        assert report["macro_f1"] == pytest.approx(sk.f1_score(y_true, y_pred, average="macro", zero_division=0))
        p, r, f, s = sk.precision_recall_fscore_support(y_true, y_pred, labels=range(n_classes), zero_division=0)
        for i, label in enumerate(labels):
            assert report["per_class"][label]["precision"] == pytest.approx(p[i])
            assert report["per_class"][label]["recall"] == pytest.approx(r[i])
            assert report["per_class"][label]["f1"] == pytest.approx(f[i])
            assert report["per_class"][label]["support"] == s[i]
        np.testing.assert_array_equal(
            report["confusion_matrix"], sk.confusion_matrix(y_true, y_pred, labels=range(n_classes))
        )


def test_hand_checked_report():
    report = metrics.classification_report([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["a", "b", "c"])
    assert report["accuracy"] == pytest.approx(0.6)
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert report["per_class"]["b"] == {
        "precision": pytest.approx(2 / 3),
        "recall": 1.0,
        "f1": pytest.approx(0.8),
        "support": 2,
    }
    assert report["per_class"]["c"]["f1"] == 0.0
    assert report["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    table = metrics.format_report(report)
    assert "macro-F1" in table and "b" in table


def test_labels_outside_the_classes_are_an_error():
    with pytest.raises(ValueError, match="y_pred holds class indices outside 0..1"):
        metrics.confusion_matrix([0, 1], [0, 2], 2)


def test_plots_write_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    from edge_har.convert.plots import confusion_matrix_png, training_curves_png

    png = confusion_matrix_png([[3, 1], [0, 4]], ["sit", "walk"], tmp_path / "cm.png")
    curves = training_curves_png(
        {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.4, 0.8]}, tmp_path / "c.png"
    )
    for path in (png, curves):
        assert path.read_bytes()[:4] == b"\x89PNG"


def test_plots_without_matplotlib_say_what_to_install(tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from edge_har.convert.plots import confusion_matrix_png, PlotError\n"
        "try:\n    confusion_matrix_png([[1]], ['a'], 'x.png')\n"
        "except PlotError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "pip install matplotlib" in out.stdout


# ---------------------------------------------------------------- edge-har evaluate


def test_evaluate_recreates_the_test_split_without_tensorflow(tiny_bundle, tiny_dataset_dir, tmp_path):
    out = tmp_path / "report"
    result = run_cli("evaluate", tiny_bundle, "--data", tiny_dataset_dir, "--out", out, "--no-progress")
    assert result.returncode == 0, result.stderr
    bundle = json.loads((tiny_bundle / "bundle.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["windows"] == bundle["metrics"]["split"]["windows"]["test"]
    for name, recorded in bundle["variants"].items():
        report = json.loads((out / name / "metrics.json").read_text())
        # Same recordings, same preprocessing, same interpreter: the very numbers convert recorded.
        assert report["accuracy"] == recorded["metrics"]["accuracy"]
        assert report["macro_f1"] == recorded["metrics"]["macro_f1"]
        assert set(report["per_class"]) == set(bundle["labels"])
        assert sum(map(sum, report["confusion_matrix"])) == report["n_windows"]
        assert (out / name / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert "macro-F1" in result.stdout and "int8" in result.stdout


def test_evaluate_all_windows_of_one_variant(tiny_bundle, tiny_dataset_dir, tmp_path):
    out = tmp_path / "report"
    result = run_cli(
        "evaluate",
        tiny_bundle,
        "--data",
        tiny_dataset_dir,
        "--split",
        "all",
        "--variant",
        "int8",
        "--out",
        out,
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    bundle = json.loads((tiny_bundle / "bundle.json").read_text())
    assert list(summary["variants"]) == ["int8"]
    assert summary["data"]["windows"] == sum(bundle["metrics"]["split"]["windows"].values())
    assert not (out / "float32").exists()


def test_evaluate_names_test_recordings_missing_from_the_data(tiny_bundle, tiny_dataset_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset_dir, data)
    gone = json.loads((tiny_bundle / "bundle.json").read_text())["metrics"]["split"]["test_sources_relative"][0]
    (data / gone).unlink()
    result = run_cli("evaluate", tiny_bundle, "--data", data, "--out", tmp_path / "r", "--no-progress")
    assert result.returncode == 2
    assert gone in result.stderr and "--split all" in result.stderr
    assert "Traceback" not in result.stderr


def test_evaluate_refuses_classes_the_model_does_not_know(tiny_bundle, tiny_dataset_dir, tmp_path):
    from edge_har.convert.synthetic import write_synthetic_imu_dataset

    data = tmp_path / "data"
    shutil.copytree(tiny_dataset_dir, data)
    write_synthetic_imu_dataset(tmp_path / "extra", classes=("jump",), recordings_per_class=1, seconds=5.0)
    shutil.copytree(tmp_path / "extra" / "Jump", data / "Jump")
    result = run_cli(
        "evaluate", tiny_bundle, "--data", data, "--split", "all", "--out", tmp_path / "r", "--no-progress"
    )
    assert result.returncode == 2
    assert "classes the model does not know: Jump" in result.stderr


def test_evaluate_unknown_variant_lists_the_known_ones(tiny_bundle, tiny_dataset_dir, tmp_path):
    result = run_cli("evaluate", tiny_bundle, "--data", tiny_dataset_dir, "--variant", "int4", "--out", tmp_path / "r")
    assert result.returncode == 2
    assert "no variant 'int4'" in result.stderr and "float32" in result.stderr


def test_evaluate_a_folder_that_is_not_a_bundle(tiny_dataset_dir, tmp_path):
    result = run_cli("evaluate", tmp_path, "--data", tiny_dataset_dir)
    assert result.returncode == 2 and "not a model bundle" in result.stderr
