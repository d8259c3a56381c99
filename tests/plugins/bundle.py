"""Session fixtures: a tiny *real* model bundle, built by the real ``edge-har convert`` pipeline.

Use them in any test that needs a bundle (device daemon, benchmarks, evaluate):

``tiny_dataset_dir`` -> Path
    A synthetic wrist-accelerometer data set in the HMP folder layout
    (``edge_har.convert.synthetic``): classes Sit, Walk, Wave; 6 recordings each, 8-12 s
    at 32 Hz, 3 subjects (``f1``, ``m1``, ``f2``); "x y z" integer codes 0..63
    (value = code * 3/63 - 1.5 g), so the HMP preset of the loader reads it.
``tiny_bundle`` -> Path
    The bundle converted from it: windows of 64 samples (2 s) with stride 16,
    Conv1D(8) + LSTM(8), a few epochs; variants ``float32``, ``dynamic_range``
    and ``int8`` (the default), every one evaluated on the test split through
    ``edge_har.core.interpreter``. Input shape [1, 64, 3]; labels
    ["Sit", "Walk", "Wave"].
``tiny_bundle_copy`` -> Path (function scope)
    A private copy of ``tiny_bundle`` in the test's tmp dir, for tests that
    modify or corrupt files.

``EDGE_HAR_TEST_BUNDLE`` / ``EDGE_HAR_TEST_DATA``
    When set, the two session fixtures return these paths instead of building
    them. CI uses this to run the runtime tests in environments without
    TensorFlow (``.[device]``, ``.[tflite]`` on numpy 1), on a bundle converted
    beforehand in the workstation environment (scripts/ci_device_checks.sh).

Both session fixtures are shared by the whole run: treat them as read-only.
Building costs about 20-40 s once per session on 2 cores (TensorFlow import,
training, three conversions). The int8 accuracy gate is relaxed
(``allow_int8_drop``) so that a fixture never fails on a borderline tiny
model; tests that care about the gate check it themselves.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

TINY_CLASSES = ("walk", "sit", "wave")
TINY_LABELS = ["Sit", "Walk", "Wave"]
TINY_WINDOW = 64
TINY_STRIDE = 16


def tiny_convert_options(out: Path, **overrides):
    """The ConvertOptions of ``tiny_bundle``; tests that convert again start from these."""
    from edge_har.convert.models import ModelConfig
    from edge_har.convert.pipeline import ConvertOptions
    from edge_har.convert.train import TrainConfig

    options = dict(
        out=out,
        window=TINY_WINDOW,
        stride=TINY_STRIDE,
        model=ModelConfig(conv_filters=(8,), kernel_size=3, lstm_units=(8,), conv_dropout=0.0, dropout=0.1),
        train=TrainConfig(epochs=8, batch_size=32, patience=3, learning_rate=5e-3, seed=3, verbose=0),
        calibration_size=60,
        allow_int8_drop=True,
        progress=False,
        command="pytest tiny_bundle fixture",
    )
    options.update(overrides)
    return ConvertOptions(**options)


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory) -> Path:
    if os.environ.get("EDGE_HAR_TEST_DATA"):
        return Path(os.environ["EDGE_HAR_TEST_DATA"])
    from edge_har.convert.synthetic import write_synthetic_imu_dataset

    root = tmp_path_factory.mktemp("tiny_imu") / "data"
    return write_synthetic_imu_dataset(
        root, classes=TINY_CLASSES, recordings_per_class=6, subjects=3, seconds=(8.0, 12.0), seed=1
    )


@pytest.fixture(scope="session")
def tiny_bundle(tiny_dataset_dir, tmp_path_factory) -> Path:
    if os.environ.get("EDGE_HAR_TEST_BUNDLE"):
        return Path(os.environ["EDGE_HAR_TEST_BUNDLE"])
    from edge_har.convert.pipeline import run_convert

    out = tmp_path_factory.mktemp("tiny_bundle") / "bundle"
    options = tiny_convert_options(out, data=tiny_dataset_dir)
    return run_convert(options)


@pytest.fixture
def tiny_bundle_copy(tiny_bundle, tmp_path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    return copy
