"""The device reads what training read: a raw file-name-labelled set (9 columns at 200 Hz) converted
with a column choice, a scale and resampling to 50 Hz, then replayed from the same raw files
through the real ``edge-har run`` with no data settings in the config, gives the windows (bit for
bit) and the predictions of ``edge-har evaluate`` on those files.

Also: ``validate-config`` refuses what ``run`` refuses (it reads the replay files with the same
reader), and a replay names any registered format and its options itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from edge_har.cli import main
from tests.plugins.raw_set import NAME_REGEX, RATE, convert_raw_set, write_raw_set

pytestmark = pytest.mark.slow  # a real conversion (about a minute on 2 cores) and two daemon runs


@pytest.fixture(scope="module")
def raw_bundle(tmp_path_factory) -> tuple[Path, Path]:
    """(raw data, bundle converted from it with --columns, --scale and 200 -> 50 Hz)."""
    base = tmp_path_factory.mktemp("skew")
    data = write_raw_set(base / "raw")
    return data, convert_raw_set(data, base / "bundle")


def replay_config(path: Path, bundle: Path, broker, data: Path, **source) -> Path:
    cfg = {
        "device_id": "pi-skew",
        "bundle": str(bundle),
        "source": {"type": "replay", "path": str(data), "realtime": False, "stop_at_end": True, **source},
        "mqtt": {"host": broker.host, "port": broker.port, "stats_interval_s": 0.5},
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def evaluate_windows(bundle_dir: Path, data: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """evaluate's own path: the data set as the bundle records it, its windows (split all), their predictions."""
    from edge_har.convert.evaluate import bundle_windows, load_bundle, predict_probabilities
    from edge_har.core.formats import load_recorded

    bundle = load_bundle(bundle_dir)
    dataset = load_recorded(data, bundle.data["provenance"]["dataset"]["reader"])
    x, _, _ = bundle_windows(bundle, dataset, split="all")
    model = bundle.load_model("float32")
    probs = predict_probabilities(model, x, progress=False)
    return x, probs, bundle.labels


def test_the_bundle_records_the_reader(raw_bundle):
    _, bundle_dir = raw_bundle
    dataset = json.loads((bundle_dir / "bundle.json").read_text())["provenance"]["dataset"]
    reader = dataset["reader"]
    assert reader["format"] == "names"
    assert reader["options"]["name_regex"] == NAME_REGEX and reader["options"]["sample_rate"] == 200.0
    assert reader["options"]["columns"] == ["3", "4", "5"] and reader["options"]["scale"] == [0.01]
    assert dataset["sample_rate_hz"] == 200.0


def test_replay_windows_are_evaluates_bit_for_bit(raw_bundle, tmp_path, mosquitto_broker):
    """The replay source + the runtime's windowing, as ``run`` builds them, against evaluate's windows."""
    from edge_har.device.config import load_config
    from edge_har.device.runtime_api import load_runtime
    from edge_har.device.sources import make_source

    data, bundle_dir = raw_bundle
    cfg = load_config(replay_config(tmp_path / "c.yaml", bundle_dir, mosquitto_broker, data)).config
    runtime = load_runtime(cfg)
    source = make_source(cfg, runtime.pre.n_channels, runtime.pre.sample_rate_hz, "t")
    source.start()
    assert source.rate_hz == RATE  # the data's own rate, from the bundle: no rate_hz in the config
    windowing = runtime.windowing(source.rate_hz, None, None)
    got = []
    while not source.finished:
        chunk = source.read(0.1)
        if chunk is not None:
            got += [w.data for w in windowing.push(chunk)]
    expected, _, _ = evaluate_windows(bundle_dir, data)
    assert len(got) == len(expected) > 0
    assert np.stack(got).astype(np.float32).tobytes() == expected.astype(np.float32).tobytes()


def test_run_predicts_what_evaluate_predicts(raw_bundle, tmp_path, mosquitto_broker, mqtt_listener):
    data, bundle_dir = raw_bundle
    cfg = replay_config(tmp_path / "run.yaml", bundle_dir, mosquitto_broker, data)
    check = subprocess.run(
        [sys.executable, "-m", "edge_har", "validate-config", str(cfg)], capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stdout + check.stderr
    listener = mqtt_listener(mosquitto_broker, ["edge-har/pi-skew/#"])
    run = subprocess.run(
        [sys.executable, "-m", "edge_har", "run", "--config", str(cfg)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    _, probs, labels = evaluate_windows(bundle_dir, data)
    listener.wait_count("edge-har/pi-skew/prediction", len(probs), timeout=20)
    preds = listener.payloads("edge-har/pi-skew/prediction")
    assert len(preds) == len(probs)
    assert [p["extra"]["raw_label"] for p in preds] == [labels[i] for i in probs.argmax(axis=1)]
    # and `edge-har evaluate` itself, on the same raw files with no data flags, counts the same
    out = tmp_path / "eval"
    code = main(
        ["evaluate", str(bundle_dir), "--data", str(data), "--split", "all", "--out", str(out), "--no-progress"]
    )
    assert code == 0
    report = json.loads((out / "float32" / "metrics.json").read_text())
    truth = [p["extra"]["truth"] for p in preds]
    confusion = np.zeros((len(labels), len(labels)), int)
    for t, p in zip(truth, preds):
        confusion[labels.index(t), labels.index(p["extra"]["raw_label"])] += 1
    assert report["n_windows"] == len(preds)
    assert confusion.tolist() == report["confusion_matrix"]


def test_validate_config_refuses_what_run_refuses(raw_bundle, tmp_path, mosquitto_broker):
    """Every column of the file instead of the bundle's three: both refuse, with the same words."""
    data, bundle_dir = raw_bundle
    every_column = {"columns": None, "channels": None, "scale": None}  # None drops the bundle's option
    cfg = replay_config(tmp_path / "bad.yaml", bundle_dir, mosquitto_broker, data, options=every_column)
    check = subprocess.run(
        [sys.executable, "-m", "edge_har", "validate-config", str(cfg)], capture_output=True, text=True, timeout=120
    )
    run = subprocess.run(
        [sys.executable, "-m", "edge_har", "run", "--config", str(cfg)], capture_output=True, text=True, timeout=120
    )
    assert check.returncode != 0 and run.returncode == 78
    for text in (check.stdout + check.stderr, run.stderr):
        assert "has samples of shape" in text and "the model takes 3 channels" in text and "format names" in text
