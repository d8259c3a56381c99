"""convert-video on small data sets, as a new user's first real clips are: sizes picked from the data,
a warning when a from-scratch backbone gets too few steps, and argument errors before TensorFlow."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

cv2 = pytest.importorskip("cv2")

from edge_har.convert.video_pipeline import auto_batch_size, auto_calibration_size  # noqa: E402
from edge_har.convert.video_synthetic import write_synthetic_clip_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_clips(tmp_path_factory) -> Path:
    """Two classes, 4 clips each of ~2 s at 10 fps: ~110 training frames, fewer than the 300 calibration default."""
    return write_synthetic_clip_dataset(
        tmp_path_factory.mktemp("small") / "clips",
        classes=("bounce", "orbit"),
        clips_per_class=4,
        seconds=(2.0, 2.5),
        fps=10,
        size=(48, 36),
        seed=1,
    )


def test_batch_and_calibration_sizes_follow_the_documented_rule():
    # the largest power of two in 8..128 leaving >= 16 steps per epoch
    assert [auto_batch_size(n) for n in (10, 100, 255, 256, 300, 1000, 2047, 2048, 50_000)] == [
        8,
        8,
        8,
        16,
        16,
        32,
        64,
        128,
        128,
    ]
    assert auto_calibration_size(110) == 110 and auto_calibration_size(5000) == 300


CHECK = """
import sys
from edge_har.cli import main
codes = []
for argv in {argvs!r}:
    try:
        codes.append(main(argv))
    except SystemExit as exc:
        codes.append(exc.code)
print("CODES", codes, "TENSORFLOW", "tensorflow" in sys.modules, "TF_KERAS", "tf_keras" in sys.modules)
"""


def test_argument_errors_come_before_tensorflow_is_imported(small_clips, tmp_path):
    """They used to arrive after ~40 s of TensorFlow import; now TensorFlow is never imported for them."""
    base = ["--log-level", "ERROR", "convert-video", "--data", str(small_clips), "--backbone", "plain"]
    base += ["--no-progress", "--out", str(tmp_path / "never")]
    argvs = [
        base + ["--test-subjects", "01"],  # given with the default --split clip: it would be ignored
        base + ["--split", "subject", "--subject-regex", r"_s(\d+)$", "--test-subjects", "99"],  # unknown subject
        base + ["--calibration-size", "5000"],  # more frames than the training clips hold
    ]
    result = subprocess.run(
        [sys.executable, "-c", CHECK.format(argvs=argvs)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert "CODES [2, 2, 2] TENSORFLOW False TF_KERAS False" in result.stdout, result.stdout + result.stderr[-3000:]
    assert "--test-subjects applies to --split subject only" in result.stderr
    assert "test subject(s) 99 not in the data" in result.stderr
    assert "calibration set needs 5000 frames" in result.stderr
    assert not (tmp_path / "never").exists()


@pytest.mark.slow  # a real (tiny) conversion, ~60 s on 2 shared cores
def test_small_clip_set_converts_with_sizes_from_the_data_and_warns_of_few_scratch_steps(small_clips, tmp_path, caplog):
    """Defaults used to be batch 128 (one step per epoch here) and 300 calibration frames (refused: ~110)."""
    from edge_har.cli import main

    out = tmp_path / "bundle"
    argv = ["convert-video", "--data", str(small_clips), "--backbone", "plain", "--input-size", "32"]
    argv += ["--conv-filters", "4", "--frames", "4", "--lstm-units", "8", "--epochs", "20", "--variants"]
    argv += ["float32,int8", "--allow-int8-drop", "--no-progress", "--out", str(out)]
    with caplog.at_level(logging.WARNING):
        assert main(argv) == 0
    doc = json.loads((out / "bundle.json").read_text())
    n_train = doc["metrics"]["split"]["windows"]["train"]
    assert doc["training"]["config"]["batch_size"] == auto_batch_size(n_train) == 8
    frames = doc["training"]["calibration_frames"]
    assert 0 < frames < 300  # every training frame, since there are fewer than 300
    steps = doc["training"]["steps_run"]
    assert steps == doc["training"]["epochs_run"] * -(-n_train // 8) and steps < 300
    warned = [r.getMessage() for r in caplog.records if "from random weights" in r.getMessage()]
    assert len(warned) == 2  # the planned maximum before training, the steps run after it
    assert f"only {steps} optimiser steps in all" in warned[1] and "--weights imagenet|PATH" in warned[1]
    assert doc["training"]["few_scratch_steps"] is True
