"""Bundle and model faults at start: `edge-har run` exits 78 naming the file and the reason, and
`edge-har validate-config` reports the same problem (both run edge_har.device.startup).

Each fault is made on a private copy of the real tiny bundle: a bundle.json whose labels do not
match the model's outputs (passed by both, it would fail 50 windows and exit 1, restarted by
systemd forever), a damaged bundle.json, a flipped byte (sha256), a corrupted, truncated or
swapped ``.tflite`` with ``verify_sha256: false``, a preprocessing that makes windows the model
does not take, a newer schema, a source whose channels do not fit.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from edge_har.core.bundle import BUNDLE_FILE, SCHEMA_VERSION
from edge_har.device.config import load_config
from edge_har.device.daemon import EXIT_CONFIG, run_daemon
from edge_har.device.daemon_cli import validate_files
from edge_har.device.startup import run_startup_checks

REPO = Path(__file__).resolve().parents[1]


def closed_port() -> int:
    """A loopback port nothing listens on: a daemon that got past its checks would only queue."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path, bundle: Path, data_dir: Path, **top: Any) -> Path:
    source = top.pop("source", {"type": "replay", "path": str(data_dir), "realtime": False, "stop_at_end": True})
    data = {
        "device_id": "pi-test",
        "bundle": str(bundle),
        "source": source,
        "mqtt": {"host": "127.0.0.1", "port": closed_port()},
    }
    data.update(top)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def edit_json(bundle: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = bundle / BUNDLE_FILE
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def flip_byte(path: Path, offset: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# Each fault: damage the bundle copy, return (config overrides, words the error line must hold).
def two_labels(b: Path) -> tuple[dict, list[str]]:
    edit_json(b, lambda d: d.update(labels=["Sit", "Walk"]))
    return {}, [f"{b / BUNDLE_FILE}: labels: 2 labels (Sit, Walk), but model_int8.tflite", "outputs [1, 3], 3 classes"]


def four_labels(b: Path) -> tuple[dict, list[str]]:
    edit_json(b, lambda d: d.update(labels=["Sit", "Walk", "Wave", "Run"]))
    return {"variant": "float32"}, [f"{b / BUNDLE_FILE}: labels: 4 labels", "model_float32.tflite (variants.float32)"]


def null_file(b: Path) -> tuple[dict, list[str]]:
    edit_json(b, lambda d: d["variants"]["int8"].update(file=None))
    return {}, [f"{b / BUNDLE_FILE}: variants.int8.file: must be a string (got None)"]


def big_size(b: Path) -> tuple[dict, list[str]]:
    edit_json(b, lambda d: d["variants"]["int8"].update(size_bytes="big"))
    return {}, [f"{b / BUNDLE_FILE}: variants.int8.size_bytes: must be an integer (got 'big')"]


def random_json(b: Path) -> tuple[dict, list[str]]:
    (b / BUNDLE_FILE).write_bytes(b"\xfe" + os.urandom(500))
    return {}, [f"{b / BUNDLE_FILE}: not UTF-8 text"]


def newer_schema(b: Path) -> tuple[dict, list[str]]:
    edit_json(b, lambda d: d.update(schema_version=SCHEMA_VERSION + 1))
    return {}, [f"{b / BUNDLE_FILE}: schema_version {SCHEMA_VERSION + 1} is newer than", "upgrade edge-har"]


def flipped_byte(b: Path) -> tuple[dict, list[str]]:
    flip_byte(b / "model_int8.tflite")
    return {}, [f"{b / 'model_int8.tflite'}: sha256 ", "does not match bundle.json", "corrupt or was replaced"]


def random_tflite(b: Path) -> tuple[dict, list[str]]:
    f = b / "model_int8.tflite"
    f.write_bytes(os.urandom(f.stat().st_size))
    return {"interpreter": {"verify_sha256": False}}, [f"{f}: cannot load with", "not a valid Flatbuffer"]


def truncated_tflite(b: Path) -> tuple[dict, list[str]]:
    f = b / "model_int8.tflite"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return {"interpreter": {"verify_sha256": False}}, [f"{f}: cannot load with"]


def swapped_variant(b: Path) -> tuple[dict, list[str]]:
    """The float32 model copied over the int8 one (another model's file) with sha256 checks off."""
    shutil.copyfile(b / "model_float32.tflite", b / "model_int8.tflite")
    return {"interpreter": {"verify_sha256": False}}, [
        f"{b / BUNDLE_FILE}: variants.int8.input: bundle.json records [1, 64, 3] int8, but model_int8.tflite has "
        "[1, 64, 3] float32; the file is not the model this bundle describes"
    ]


def shorter_window(b: Path) -> tuple[dict, list[str]]:
    """bundle.json's preprocessing makes 32-sample windows; the model takes 64."""

    def change(d: dict[str, Any]) -> None:
        d["preprocessing"]["window"] = 32
        d["input"]["shape"] = [1, 32, 3]

    edit_json(b, change)
    return {}, [
        f"{b / BUNDLE_FILE}: variants.int8: model_int8.tflite takes input [1, 64, 3], but the bundle's "
        "preprocessing makes [1, 32, 3]"
    ]


def two_channel_source(b: Path) -> tuple[dict, list[str]]:
    source = {"type": "mqtt", "topic": "s/imu", "rate_hz": 32, "fields": ["ax", "ay"]}
    return {"source": source}, ["source.fields: lists 2 channels; the model takes 3"]


FAULTS = [
    two_labels,
    four_labels,
    null_file,
    big_size,
    random_json,
    newer_schema,
    flipped_byte,
    random_tflite,
    truncated_tflite,
    swapped_variant,
    shorter_window,
    two_channel_source,
]


@pytest.fixture
def fault_config(request, tiny_bundle_copy, tiny_dataset_dir, tmp_path) -> tuple[Path, list[str]]:
    overrides, words = request.param(tiny_bundle_copy)
    return write_config(tmp_path / "config.yaml", tiny_bundle_copy, tiny_dataset_dir, **overrides), words


@pytest.mark.parametrize("fault_config", FAULTS, ids=[f.__name__ for f in FAULTS], indirect=True)
def test_validate_config_and_run_refuse_the_same_fault(fault_config, caplog):
    config, words = fault_config
    out, err = io.StringIO(), io.StringIO()
    assert validate_files([config], out=out, err=err) == 1
    printed = err.getvalue().strip().splitlines()
    assert out.getvalue() == "" and len(printed) == 1, printed
    line = printed[0]
    assert line.startswith(f"{config}:") and all(w in line for w in words), line
    assert "Traceback" not in line
    with caplog.at_level(logging.ERROR, logger="edge_har.daemon"):
        assert run_daemon(config) == EXIT_CONFIG
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [f"config: {line}"]


def test_the_untouched_bundle_passes_both(tiny_bundle, tiny_dataset_dir, tmp_path):
    config = write_config(tmp_path / "ok.yaml", tiny_bundle, tiny_dataset_dir)
    result = run_startup_checks(load_config(config))
    assert result.ok and result.errors == [] and result.runtime is not None
    assert result.runtime.labels == ["Sit", "Walk", "Wave"] and result.runtime.variant == "int8"
    out = io.StringIO()
    assert validate_files([config], out=out, err=io.StringIO()) == 0
    assert out.getvalue() == f"{config}: OK\n"


def cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge_har", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("fault", [two_labels, random_json, random_tflite], ids=lambda f: f.__name__)
def test_run_exits_78_and_validate_config_1_naming_the_file(fault, tiny_bundle_copy, tiny_dataset_dir, tmp_path):
    """Through the real command line, as systemd and a user run them: no traceback, one line."""
    overrides, words = fault(tiny_bundle_copy)
    config = write_config(tmp_path / "config.yaml", tiny_bundle_copy, tiny_dataset_dir, **overrides)
    run = cli("run", "--config", str(config))
    assert run.returncode == EXIT_CONFIG, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and all(w in errors[0] for w in words), errors
    check = cli("validate-config", str(config))
    assert check.returncode == 1 and "Traceback" not in check.stderr
    assert errors[0].split("ERROR edge_har.daemon: config: ", 1)[1] in check.stderr.splitlines()


@pytest.fixture(scope="module")
def foreign_model(tmp_path_factory) -> Path:
    """Another model's ``.tflite``: 32 samples x 3 channels in, 4 classes out (made with tf.lite)."""
    tf = pytest.importorskip("tensorflow")
    import numpy as np

    weights = tf.constant(np.random.default_rng(0).normal(size=(96, 4)).astype("float32"))

    @tf.function(input_signature=[tf.TensorSpec([1, 32, 3], tf.float32)])
    def classify(x):
        return tf.nn.softmax(tf.matmul(tf.reshape(x, [1, 96]), weights))

    converter = tf.lite.TFLiteConverter.from_concrete_functions([classify.get_concrete_function()], classify)
    path = tmp_path_factory.mktemp("foreign") / "other.tflite"
    path.write_bytes(converter.convert())
    return path


def test_a_foreign_model_in_the_bundle(foreign_model, tiny_bundle_copy, tiny_dataset_dir, tmp_path, caplog):
    """Another model copied over the variant's file: the sha256 says so; with the check off, its shapes do."""
    target = tiny_bundle_copy / "model_int8.tflite"
    shutil.copyfile(foreign_model, target)
    config = write_config(tmp_path / "on.yaml", tiny_bundle_copy, tiny_dataset_dir)
    errors = run_startup_checks(load_config(config)).errors
    assert len(errors) == 1 and f"{target}: sha256 " in errors[0] and "corrupt or was replaced" in errors[0]
    config = write_config(
        tmp_path / "off.yaml", tiny_bundle_copy, tiny_dataset_dir, interpreter={"verify_sha256": False}
    )
    errors = run_startup_checks(load_config(config)).errors
    assert len(errors) == 1, errors
    line = errors[0]
    for words in (
        "variants.int8.input: bundle.json records [1, 64, 3] int8, but model_int8.tflite has [1, 32, 3] float32",
        "variants.int8.output: bundle.json records [1, 3] int8, but model_int8.tflite has [1, 4] float32",
        "model_int8.tflite takes input [1, 32, 3], but the bundle's preprocessing makes [1, 64, 3]",
        "labels: 3 labels (Sit, Walk, Wave), but model_int8.tflite (variants.int8) outputs [1, 4], 4 classes",
    ):
        assert words in line, line
    with caplog.at_level(logging.ERROR, logger="edge_har.daemon"):
        assert run_daemon(config) == EXIT_CONFIG
