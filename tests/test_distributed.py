"""The multi-replica training path, on two logical CPU devices.

Logical devices can only be configured before TensorFlow initialises its
runtime, so each test runs in a fresh Python process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a whole conversion in a subprocess (~30 s): CI's slow step runs it
def test_convert_with_mirrored_strategy_over_two_logical_cpus(tiny_dataset_dir, tmp_path):
    out = tmp_path / "bundle"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_har",
            "convert",
            "--data",
            str(tiny_dataset_dir),
            "--out",
            str(out),
            "--logical-cpus",
            "2",
            "--window",
            "64",
            "--stride",
            "16",
            "--conv-filters",
            "8",
            "--lstm-units",
            "8",
            "--epochs",
            "2",
            "--batch-size",
            "32",
            "--variants",
            "float32",
            "--default-variant",
            "float32",
            "--no-progress",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((out / "bundle.json").read_text())
    strategy = data["training"]["strategy"]
    assert strategy["name"] == "MirroredStrategy"
    assert strategy["replicas"] == 2 and len(strategy["devices"]) == 2
    assert all("CPU" in d for d in strategy["devices"])
    assert data["training"]["epochs_run"] == 2
    assert data["variants"]["float32"]["metrics"]["n_windows"] > 0


def test_logical_cpus_after_tensorflow_started_is_a_clear_error():
    code = (
        "from edge_har.convert.models import import_tf\n"
        "from edge_har.convert.train import TrainConfig, TrainingError, select_strategy\n"
        "tf, _ = import_tf()\n"
        "tf.constant(1.0) + 1.0  # initialises the runtime\n"
        "try:\n"
        "    select_strategy(TrainConfig(logical_cpus=2))\n"
        "except TrainingError as exc:\n"
        "    print('ERROR:', exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "ERROR: cannot split the CPU into 2 logical devices" in result.stdout, result.stderr[-2000:]
    assert "before any TensorFlow work" in result.stdout
