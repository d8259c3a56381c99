"""Captured windows: the store on real files, the daemon with a real bundle, replay and mosquitto,
corrections over MQTT, the folder's bounds, write errors, and the correction payload parser."""

from __future__ import annotations

import json
import logging
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_har.core.formats import DatasetError, load_dataset
from edge_har.core.recording_layout import read_labels, read_meta, read_parts, session_dirs
from edge_har.device.capture import (
    WRITE_QUEUE,
    CaptureConfig,
    CaptureStore,
    CorrectionError,
    RawRing,
    StreamInfo,
    parse_correction,
)
from edge_har.device.config import ConfigError, check_files, load_config
from edge_har.device.daemon import Daemon
from edge_har.device.daemon_cli import validate_files
from edge_har.device.runtime_api import Prediction, Window
from edge_har.device.sources.base import Chunk

LABELS = ("Sit", "Walk", "Wave")
RATE = 32.0
DEVICE = "pi-cap"


# ====================================================================== the store on its own (real files)


def make_store(tmp_path: Path, **cfg: Any) -> CaptureStore:
    info = StreamInfo(
        device_id=DEVICE,
        model_id="tiny-model",
        labels=LABELS,
        channels=("x", "y", "z"),
        source_rate_hz=RATE,
        model_rate_hz=RATE,
        window=64,
        stride=16,
        units="g",
        scale=(3 / 63,),
        offset=(-1.5,),
        source_type="replay",
        queued_windows=4,
    )
    settings_: dict[str, Any] = {"dir": tmp_path / "captures", "min_interval_s": 0, **cfg}
    store = CaptureStore(CaptureConfig(**settings_), info)
    store.start()
    return store


class Stream:
    """Drives a store as the daemon does: chunks of 16 raw samples, a prediction per window."""

    def __init__(self, store: CaptureStore, t0: float = 1_700_000_000.0) -> None:
        self.store = store
        self.t0 = t0
        self.n = 0
        self.seq = 0
        self.rng = np.random.default_rng(0)
        self.raw: list[np.ndarray] = []

    def step(self, label: str = "Walk", confidence: float = 0.9, second: float = 0.05) -> Optional[Prediction]:
        samples = self.rng.integers(0, 64, size=(16, 3)).astype(np.float32)
        self.raw.append(samples)
        self.n += 16
        ts = self.t0 + (self.n - 1) / RATE
        self.store.feed(Chunk(samples, time.perf_counter(), ts))
        if self.n < 64:
            return None
        probs = {lab: (confidence if lab == label else second) for lab in LABELS}
        p = Prediction(self.seq, ts, label, confidence, probs, label, confidence, 1.0, 1.0)
        self.seq += 1
        self.store.offer(p, Window(np.zeros((64, 3), np.float32), ts, time.perf_counter()))
        return p

    def all_raw(self) -> np.ndarray:
        return np.concatenate(self.raw)


def wait_stored(store: CaptureStore, n: int, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = store.counters()
        if sum(c[r] for r in ("unsure", "near_tie", "corrected")) + c["refused"] + c["failed"] >= n:
            return c
        time.sleep(0.01)
    raise AssertionError(f"fewer than {n} captures handled: {store.counters()}")


def captures(root: Path) -> list[Path]:
    return [p for p in session_dirs(root) if p.name.startswith("capture-")]


def test_unsure_and_near_tie_windows_are_written_raw_with_their_prediction(tmp_path):
    store = make_store(tmp_path, unsure_below=0.6, near_tie=0.1)
    stream = Stream(store)
    for _ in range(3):
        stream.step()  # the first window (samples 0..63), sure
    stream.step(confidence=0.5)  # unsure
    stream.step(confidence=0.5, second=0.45)  # unsure first (confidence under 0.6)
    stream.step(confidence=0.7, second=0.65)  # near tie
    stream.step()
    store.close()
    c = store.counters()
    assert (c["unsure"], c["near_tie"], c["corrected"]) == (2, 1, 0)
    found = captures(tmp_path / "captures")
    assert len(found) == 3 and all(p.parent.name == DEVICE for p in found)
    raw = stream.all_raw()
    reasons = []
    for session in found:
        meta = read_meta(session)
        reasons.append(meta.capture["reason"])
        t, x = read_parts(session)
        assert x.shape == (64, 3) and np.allclose(np.diff(t), 1 / RATE, atol=2e-6)
        start = int(round((t[0] - stream.t0) * RATE))
        np.testing.assert_array_equal(x, raw[start : start + 64])  # the raw codes, as the source read them
        assert meta.scale == pytest.approx([3 / 63] * 3) and meta.offset == [-1.5] * 3 and meta.units == "g"
        assert meta.sample_rate_hz == RATE and meta.channels == ["x", "y", "z"] and meta.model_id == "tiny-model"
        cap = meta.capture
        assert cap["predicted"] == "Walk" and cap["corrected"] is None and cap["model_id"] == "tiny-model"
        assert cap["window_end_ts"] == pytest.approx(t[-1], abs=1e-6) and set(cap["probabilities"]) == set(LABELS)
        assert read_labels(session) == []  # none until a person confirms it
    assert sorted(reasons) == ["near_tie", "unsure", "unsure"]


def test_the_raw_ring_finds_samples_by_time_across_one_sample_chunks_and_jitter():
    ring = RawRing(keep=100, rate_hz=10.0)
    for i in range(300):  # one sample a chunk, every other one stamped 130 ms early (a live source's jitter)
        ring.push(1000.0 + i / 10 - (0.13 if i % 2 else 0.0), np.array([[float(i)]], np.float32))
    t, x = ring.between(1000.0 + 20.0 - 1e-6, 1000.0 + 29.9 + 0.05)
    assert x[:, 0].tolist() == [float(v) for v in range(200, 300)]
    assert np.all(np.diff(t) > 0) and len(ring) >= 100
    ring.push(900.0, np.array([[-1.0]], np.float32))  # the clock went back a long way: only the new sample
    assert len(ring) == 1 and ring.between(899.0, 901.0)[1].tolist() == [[-1.0]]


def test_a_full_write_queue_drops_captures_without_blocking(tmp_path):
    info = make_store(tmp_path / "other").info
    store = CaptureStore(CaptureConfig(dir=tmp_path / "c", unsure_below=1.01, min_interval_s=0), info)
    stream = Stream(store)  # the writer thread is not started: nothing leaves the queue
    started = time.perf_counter()
    for _ in range(3 + WRITE_QUEUE + 10):
        stream.step()
    assert time.perf_counter() - started < 5.0
    assert store.counters()["dropped"] == 10


def test_min_interval_limits_automatic_captures_by_the_stream_clock(tmp_path):
    store = make_store(tmp_path, unsure_below=1.01, min_interval_s=2.0)
    stream = Stream(store)
    for _ in range(3 + 21):  # 21 windows, 0.5 s apart: 10 s of windows
        stream.step(confidence=0.99)
    store.close()
    assert store.counters()["unsure"] == 6  # at 0, 2, 4, 6, 8 and 10 s
    ends = sorted(read_meta(p).capture["window_end_ts"] for p in captures(tmp_path / "captures"))
    assert all(b - a >= 2.0 - 1e-6 for a, b in zip(ends, ends[1:]))


def test_a_correction_captures_the_windows_predicted_otherwise_and_relabels_an_unsure_one(tmp_path):
    store = make_store(tmp_path, unsure_below=0.6, near_tie=None, correct_window_s=3.0)
    stream = Stream(store)
    preds = [stream.step(label="Sit") for _ in range(3 + 10)]
    unsure = stream.step(label="Walk", confidence=0.4)  # captured as unsure, then corrected
    preds += [unsure] + [stream.step(label="Wave") for _ in range(4)]
    wait_stored(store, 1)
    assert len(captures(tmp_path / "captures")) == 1
    last = stream.t0 + (stream.n - 1) / RATE
    queued = store.correct("Sit", last)
    expected = [p for p in preds if p is not None and last - 3.0 <= p.window_end_ts <= last and p.label != "Sit"]
    assert queued == len(expected) == 5
    assert store.correct("Sit", last) == 0  # the same correction again: nothing new
    store.close()
    found = captures(tmp_path / "captures")
    assert len(found) == 5  # the unsure capture was rewritten as corrected, not kept twice
    for session in found:
        meta = read_meta(session)
        assert meta.capture["reason"] == "corrected" and meta.capture["corrected"] == "Sit"
        assert meta.capture["predicted"] in ("Walk", "Wave")
        t, _x = read_parts(session)
        (segment,) = read_labels(session)
        assert segment.label == "Sit" and segment.start == pytest.approx(t[0], abs=1e-6)
        assert segment.end == pytest.approx(t[-1] + 1 / RATE, abs=1e-6)
    c = store.counters()
    assert c["corrected"] == 5 and c["unsure"] == 1 and c["stored"] == 5


def test_a_label_the_bundle_lacks_is_refused_and_logged_once_per_name(tmp_path, caplog):
    store = make_store(tmp_path)
    stream = Stream(store)
    for _ in range(6):
        stream.step(label="Sit")
    with caplog.at_level(logging.WARNING, logger="edge_har.capture"):
        for _ in range(3):
            assert store.on_correction(b"Run") == 0
        assert store.on_correction(json.dumps({"label": "Jump"}).encode()) == 0
        with pytest.raises(CorrectionError, match="'Run' is not a class of model tiny-model"):
            store.correct("Run")
    store.close()
    lines = [r.getMessage() for r in caplog.records]
    assert sum("'Run' is not a class" in line for line in lines) == 1, lines
    assert sum("'Jump' is not a class" in line for line in lines) == 1, lines
    assert "(Sit, Walk, Wave)" in lines[0]
    assert store.counters()["labels_refused"] == 5 and captures(tmp_path / "captures") == []


def test_bounds_delete_the_oldest_unlabelled_first_then_refuse(tmp_path):
    store = make_store(tmp_path, unsure_below=0.6, near_tie=None, max_windows=4, correct_window_s=1.0)
    stream = Stream(store)
    for _ in range(3):
        stream.step(label="Sit")
    for _ in range(2):
        stream.step(label="Walk")  # two windows predicted Walk (sure)
    last = stream.t0 + (stream.n - 1) / RATE
    assert store.correct("Sit", last) == 2  # two labelled captures
    wait_stored(store, 2)
    unsure = [stream.step(label="Sit", confidence=0.3) for _ in range(4)]  # four unsure ones: 6 > 4
    wait_stored(store, 6)
    names = {p.name for p in captures(tmp_path / "captures")}
    kept = {read_meta(tmp_path / "captures" / DEVICE / n).capture["window_end_ts"] for n in names}
    labelled = [n for n in names if read_labels(tmp_path / "captures" / DEVICE / n)]
    assert len(names) == 4 and len(labelled) == 2  # the labelled ones stay
    assert kept >= {p.window_end_ts for p in unsure[2:]}  # the newest unsure ones stay
    assert store.counters()["deleted"] == 2
    # "that was Wave" over the last three unsure windows: the two kept ones are rewritten labelled; the one
    # deleted before would be a fifth capture, refused with only labelled captures left; so is the next one
    assert store.correct("Wave", unsure[-1].window_end_ts) == 3
    wait_stored(store, 9)
    stream.step(label="Sit", confidence=0.3)
    wait_stored(store, 10)
    store.close()
    c = store.counters()
    assert c["refused"] == 2 and c["stored"] == 4 and c["corrected"] == 4
    assert all(read_labels(p) for p in captures(tmp_path / "captures"))


def test_existing_captures_count_against_the_bounds_after_a_restart(tmp_path):
    store = make_store(tmp_path, unsure_below=1.01, max_windows=3)
    stream = Stream(store)
    for _ in range(3 + 3):  # three windows
        stream.step()
    store.close()
    again = make_store(tmp_path, unsure_below=1.01, max_windows=3)
    assert again.counters()["stored"] == 3
    later = Stream(again, t0=stream.t0 + 100)
    for _ in range(3 + 1):  # one window
        later.step()
    again.close()
    assert again.counters()["deleted"] == 1 and len(captures(tmp_path / "captures")) == 3
    assert min(read_meta(p).started for p in captures(tmp_path / "captures")) > stream.t0  # the oldest went


def test_write_errors_are_counted_and_logged_once_a_minute(tmp_path, caplog):
    blocker = tmp_path / "captures"
    blocker.write_text("a file where the folder should be\n")
    store = make_store(tmp_path, unsure_below=1.01)
    stream = Stream(store)
    with caplog.at_level(logging.WARNING, logger="edge_har.capture"):
        for _ in range(3 + 5):
            stream.step()
        store.close()
    assert store.counters()["failed"] == 5 and store.counters()["unsure"] == 0
    assert sum("cannot write" in r.getMessage() for r in caplog.records) == 1


def test_a_full_disk_is_survived(tmp_path, caplog):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a small tmpfs needs root: {done.stderr.decode().strip()}")
    try:
        store = CaptureStore(
            CaptureConfig(dir=mount, unsure_below=1.01, min_interval_s=0, max_mb=1000),
            make_store(tmp_path).info,
        )
        store.start()
        stream = Stream(store)
        with caplog.at_level(logging.WARNING, logger="edge_har.capture"):
            for _ in range(3 + 60):
                stream.step()
            store.close()
        c = store.counters()
        assert c["unsure"] > 0 and c["failed"] > 0 and c["unsure"] + c["failed"] + c["dropped"] == 60
        assert sum("the disk is full" in r.getMessage() for r in caplog.records) == 1
        for session in captures(mount):  # what was written reads back whole
            assert read_parts(session)[1].shape == (64, 3)
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_retained_correction_is_ignored(tmp_path, mosquitto_broker, mqtt_listener):
    from edge_har.device.capture import CorrectionListener
    from edge_har.mqtt.config import MqttConfig

    store = make_store(tmp_path)
    stream = Stream(store)
    for _ in range(6):
        stream.step(label="Sit")
    publisher = mqtt_listener(mosquitto_broker, ["unused/#"])
    topic = f"edge-har/{DEVICE}/label/correct"
    publisher.client.publish(topic, "Walk", qos=1, retain=True).wait_for_publish(5)
    cfg = MqttConfig(host=mosquitto_broker.host, port=mosquitto_broker.port)
    listener = CorrectionListener(cfg, DEVICE, "capture-test", store)
    listener.start()
    try:
        time.sleep(1.0)
        assert store.counters()["corrected"] == 0 and store._jobs.qsize() == 0
        publisher.client.publish(topic, json.dumps({"label": "Walk", "ts": stream.t0 + 3}), qos=1).wait_for_publish(5)
        wait_stored(store, 3)
    finally:
        listener.stop()
        store.close()
    assert store.counters()["corrected"] == 3  # the windows ending within 10 s before ts


# ====================================================================== the daemon: real bundle, replay, mosquitto


@pytest.fixture(scope="module")
def heldout_dir(tmp_path_factory) -> Path:
    from edge_har.convert.synthetic import write_synthetic_imu_dataset
    from tests.plugins.bundle import TINY_CLASSES

    return write_synthetic_imu_dataset(
        tmp_path_factory.mktemp("capture") / "data",
        classes=TINY_CLASSES,
        recordings_per_class=1,
        subjects=1,
        seconds=6.0,
        seed=7,
    )


def write_config(path: Path, bundle: Path, broker: Any, source: dict, capture: dict, **top: Any) -> Path:
    data = {
        "device_id": DEVICE,
        "bundle": str(bundle),
        "source": source,
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
            "stats_interval_s": 0.5,
        },
        "smoothing": {"window": 1},
        "capture": capture,
        **top,
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def source_files(root: Path) -> list[np.ndarray]:
    return [np.loadtxt(f, ndmin=2) for f in sorted(root.rglob("*.txt"))]


def appears_in(block: np.ndarray, recordings: list[np.ndarray]) -> bool:
    for rec in recordings:
        for i in np.flatnonzero((rec == block[0]).all(axis=1)):
            if i + len(block) <= len(rec) and np.array_equal(rec[i : i + len(block)], block):
                return True
    return False


def test_the_daemon_captures_unsure_windows_raw_and_they_read_back(
    tiny_bundle, heldout_dir, mosquitto_broker, mqtt_listener, tmp_path
):
    listener = mqtt_listener(mosquitto_broker, [f"edge-har/{DEVICE}/#"])
    out = tmp_path / "captures"
    cfg = write_config(
        tmp_path / "run.yaml",
        tiny_bundle,
        mosquitto_broker,
        {"type": "replay", "path": str(heldout_dir), "realtime": False, "stop_at_end": True},
        {"dir": "captures", "unsure_below": 1.01, "min_interval_s": 2.0},  # relative to the config's folder
    )
    summary = tmp_path / "summary.json"
    assert Daemon(load_config(cfg), summary_json=summary, install_signal_handlers=False).run() == 0
    preds = listener.payloads(f"edge-har/{DEVICE}/prediction")
    found = captures(out)
    # 3 recordings of 6 s, windows every 0.5 s from 2 s on: 27 windows over 18 s of stream
    assert 7 <= len(found) <= 10, (len(found), len(preds))
    recordings = source_files(heldout_dir)
    ends = []
    for session in found:
        meta = read_meta(session)
        t, x = read_parts(session)
        assert meta.device_id == DEVICE and meta.source == "replay" and meta.capture["reason"] == "unsure"
        assert x.shape == (64, 3) and np.array_equal(x, np.round(x)) and x.min() >= 0 and x.max() <= 63
        assert appears_in(x, recordings)  # raw codes, a stretch of one recording as the source read it
        assert meta.scale == pytest.approx([3 / 63] * 3) and meta.offset == pytest.approx([-1.5] * 3)
        assert meta.capture["window_end_ts"] in {p["window_end_ts"] for p in preds}
        ends.append(meta.capture["window_end_ts"])
    ends.sort()
    assert all(b - a >= 2.0 - 1e-6 for a, b in zip(ends, ends[1:]))
    stats = [s for s in listener.payloads(f"edge-har/{DEVICE}/stats") if "captures" in s.get("extra", {})]
    assert stats and stats[-1]["extra"]["captures"]["unsure"] == len(found)
    assert json.loads(summary.read_text())["captures"]["unsure"] == len(found)
    with pytest.raises(DatasetError):  # unsure captures carry no labels until a person confirms them
        load_dataset(out)


def _read_as_recorded(root: Path, expect_labels: set[str]) -> None:
    """The captures through format ``recorded`` (detected), as ``convert --data`` reads them."""
    data = load_dataset(root)
    assert data.reader is not None and data.reader.format == "recorded"
    assert set(data.labels) == expect_labels and data.sample_rate_hz == RATE
    assert data.scale == pytest.approx((3 / 63,) * 3) or data.scale == pytest.approx((3 / 63,))
    assert len(data.recordings) >= 1 and all(r.label in expect_labels for r in data.recordings)


def test_that_was_x_over_mqtt_labels_the_captures_and_an_unknown_label_is_refused(
    tiny_bundle, heldout_dir, mosquitto_broker, mqtt_listener, tmp_path, caplog
):
    listener = mqtt_listener(mosquitto_broker, [f"edge-har/{DEVICE}/#"])
    out = tmp_path / "captures"
    cfg = write_config(
        tmp_path / "run.yaml",
        tiny_bundle,
        mosquitto_broker,
        {"type": "replay", "path": str(heldout_dir), "realtime": False},  # stays up at the end
        {"dir": str(out), "unsure_below": 0.0, "near_tie": None, "correct_window_s": 4.0},
    )
    from tests.test_daemon import DaemonThread

    caplog.set_level(logging.INFO, logger="edge_har.capture")
    daemon = DaemonThread(cfg)
    try:
        topic = f"edge-har/{DEVICE}/prediction"
        listener.wait_count(topic, 27, timeout=60)
        preds = listener.payloads(topic)
        last = max(p["window_end_ts"] for p in preds)
        recent = [p for p in preds if last - 4.0 <= p["window_end_ts"] <= last]
        label = next(lab for lab in LABELS if any(p["label"] != lab for p in recent))
        expected = [p for p in recent if p["label"] != label]
        correct = f"edge-har/{DEVICE}/label/correct"
        listener.client.publish(correct, "Running", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 20
        while len(captures(out)) < len(expected) and time.monotonic() < deadline:
            # the daemon's correction client may still be subscribing: the same correction again adds nothing
            listener.client.publish(correct, json.dumps({"label": label, "ts": last}), qos=1).wait_for_publish(5)
            time.sleep(0.3)
        time.sleep(0.5)
    finally:
        assert daemon.stop() == 0
    found = captures(out)
    assert len(found) == len(expected) > 0
    assert {read_meta(p).capture["window_end_ts"] for p in found} == {p["window_end_ts"] for p in expected}
    for session in found:
        meta = read_meta(session)
        assert meta.capture["reason"] == "corrected" and meta.capture["corrected"] == label
        assert meta.capture["predicted"] != label
        assert [s.label for s in read_labels(session)] == [label]
    refused = [r.getMessage() for r in caplog.records if "'Running' is not a class" in r.getMessage()]
    assert len(refused) == 1 and "Sit, Walk, Wave" in refused[0]
    assert daemon.daemon.capture.counters()["labels_refused"] == 1
    _read_as_recorded(out, expect_labels={label})


def test_the_daemon_bounds_captures_to_max_windows(tiny_bundle, heldout_dir, mosquitto_broker, tmp_path):
    out = tmp_path / "captures"
    cfg = write_config(
        tmp_path / "run.yaml",
        tiny_bundle,
        mosquitto_broker,
        {"type": "replay", "path": str(heldout_dir), "realtime": False, "stop_at_end": True},
        {"dir": str(out), "unsure_below": 1.01, "min_interval_s": 0, "max_windows": 5},
    )
    daemon = Daemon(load_config(cfg), install_signal_handlers=False)
    assert daemon.run() == 0
    c = daemon.capture.counters()
    found = captures(out)
    assert len(found) == 5 and c["stored"] == 5
    assert c["unsure"] + c["dropped"] == 27 and c["deleted"] == c["unsure"] - 5
    kept = sorted(read_meta(p).capture["window_end_ts"] for p in found)
    assert kept == sorted(kept)[-5:] and len(set(kept)) == 5  # the newest


# ====================================================================== config


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_a_capture_section_loads_with_defaults_and_a_relative_dir(tmp_path):
    cfg = load_config(write(tmp_path, "bundle: b\nsource: {type: replay, path: d}\ncapture: {dir: caps}\n")).config
    assert cfg.capture is not None and cfg.capture.dir == tmp_path / "caps"
    c = cfg.capture
    assert (c.unsure_below, c.near_tie, c.correct_window_s, c.max_windows, c.max_mb, c.min_interval_s) == (
        0.6,
        0.1,
        10.0,
        2000,
        200.0,
        5.0,
    )
    assert load_config(write(tmp_path, "bundle: b\nsource: {type: replay, path: d}\n", "n.yaml")).config.capture is None
    empty = load_config(write(tmp_path, "bundle: b\nsource: {type: replay, path: d}\ncapture: {}\n", "e.yaml"))
    assert empty.config.capture is not None and empty.config.capture.dir is None


def test_default_dir_follows_systemds_state_directory(monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/edge-har")
    assert CaptureConfig().directory() == Path("/var/lib/edge-har/captures")
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_DATA_HOME", "/data")
    assert CaptureConfig().directory() == Path("/data/edge-har/captures")


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("capture:\n  unsure_bellow: 0.5\n", "4: capture.unsure_bellow: unknown key; did you mean 'unsure_below'?"),
        ("capture:\n  unsure_below: 2\n", "4: capture.unsure_below: must be between 0 and 1.01 (got 2)"),
        ("capture:\n  max_windows: 0\n", "4: capture.max_windows: must be between 1 and 10000000 (got 0)"),
        ("capture:\n  max_mb: 0\n", "4: capture.max_mb: must be > 0 and <= 10000000 (got 0)"),
        ("capture:\n  correct_window_s: -1\n", "4: capture.correct_window_s: must be > 0 and <= 600 (got -1)"),
        ("capture:\n  near_tie: x\n", "4: capture.near_tie:"),
        ("capture: 5\n", "3: capture:"),
    ],
)
def test_bad_capture_sections_name_file_line_and_key(tmp_path, section, expected):
    path = write(tmp_path, "bundle: b\nsource: {type: replay, path: d}\n" + section)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert any(line.startswith(f"{path}:{expected}") for line in info.value.problems), info.value.problems


def test_capture_is_refused_for_a_camera_source_and_checked_against_the_bundle(
    tiny_bundle, heldout_dir, tmp_path, capsys
):
    camera = write(tmp_path, f"bundle: {tiny_bundle}\nsource: {{type: camera}}\ncapture: {{dir: c}}\n", "cam.yaml")
    errors, _warnings = check_files(load_config(camera))
    assert (
        f"{camera}:3: capture: capture is for sensor bundles only; source type camera streams video frames "
        "(remove the capture section)" in errors
    )
    (tmp_path / "file").write_text("x")
    clash = write(
        tmp_path,
        f"bundle: {tiny_bundle}\nsource: {{type: replay, path: {tmp_path}}}\ncapture:\n  dir: file\n",
        "clash.yaml",
    )
    assert f"{clash}:4: capture.dir: {tmp_path / 'file'} is not a folder" in check_files(load_config(clash))[0]
    good = write(
        tmp_path,
        f"bundle: {tiny_bundle}\nsource: {{type: replay, path: {heldout_dir}}}\ncapture: {{dir: c, unsure_below: 0.5}}\n",
        "good.yaml",
    )
    assert validate_files([good]) == 0
    assert validate_files([camera]) == 1
    err = capsys.readouterr().err
    assert "capture is for sensor bundles only" in err


# ====================================================================== the correction payload parser


def test_correction_payloads():
    assert parse_correction(b"Walk") == ("Walk", None)
    assert parse_correction(b"  Walk\n") == ("Walk", None)
    assert parse_correction(b'"Walk"') == ("Walk", None)
    assert parse_correction(b'{"label": "Walk", "ts": 1700000000.5}') == ("Walk", 1700000000.5)
    assert parse_correction(b'{"label": "Walk", "ts": null}') == ("Walk", None)
    assert parse_correction(b'{"label": "Walk", "ts": 1700000000}') == ("Walk", 1700000000.0)
    for bad, words in [
        (b"", "empty"),
        (b'{"label": 3}', '"label" must be a class name'),
        (b'{"ts": 1}', '"label" must be a class name'),
        (b'{"label": "Walk", "ts": "now"}', '"ts" must be a Unix time'),
        (b'{"label": "Walk", "ts": true}', '"ts" must be a Unix time'),
        (b'{"label": "Walk", "ts": -5}', '"ts" must be a Unix time'),
        (b'{"label": "Walk", "ts": 1e400}', "payload refused"),
        (b"\xff\xfe", "not UTF-8"),
        (b"x" * 5000, "payload refused"),
        (b"a" * 65, "at most 64"),
        (b"Wa\x00lk", "control character"),
        (b"{", "payload refused"),
        (b"[" * 100, "at most 64"),  # not a JSON object or string: a (bad) name, not a crash
        (b"5", None),
    ]:
        if words is None:
            assert parse_correction(bad) == (bad.decode(), None)  # a name; the bundle's classes decide
            continue
        with pytest.raises(CorrectionError, match=words):
            parse_correction(bad)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=300),
        st.text(max_size=100).map(str.encode),
        st.builds(
            lambda label, ts: json.dumps({"label": label, "ts": ts}).encode(),
            st.one_of(st.text(max_size=80), st.integers(), st.none()),
            st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=5)),
        ),
    )
)
def test_the_correction_parser_refuses_cleanly_whatever_the_bytes(payload):
    try:
        label, ts = parse_correction(payload)
    except CorrectionError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert 1 <= len(label) <= 64 and label == label.strip()
    assert not any(ord(c) < 32 or ord(c) == 127 for c in label)
    assert ts is None or (np.isfinite(ts) and 0 < ts < 1e11)


@settings(max_examples=50, deadline=None)
@given(
    st.text(
        alphabet=st.characters(
            min_codepoint=33, max_codepoint=0x2FFF, blacklist_categories=("Zs", "Zl", "Zp", "Cc", "Cs")
        ),
        min_size=1,
        max_size=64,
    ),
    st.one_of(st.none(), st.floats(min_value=1.0, max_value=4e9)),
)
def test_a_valid_correction_reads_back(label, ts):
    assert parse_correction(json.dumps({"label": label, "ts": ts}).encode()) == (label, ts)
    if not label.startswith(("{", '"')):
        assert parse_correction(label.encode()) == (label, None)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=200), st.sampled_from([b"Sit", b'{"label": "Walk", "ts": 1}', b"Nope"])))
def test_any_correction_message_is_applied_or_counted_never_raised(tmp_path, payload):
    store = _fuzz_store(tmp_path)
    before = store.counters()
    queued = store.on_correction(payload)
    after = store.counters()
    refused = (after["labels_refused"] - before["labels_refused"]) + (
        after["payloads_refused"] - before["payloads_refused"]
    )
    assert queued >= 0 and refused in (0, 1) and not (refused and queued)
    if payload == b"Nope":
        assert refused == 1


_FUZZ_STORES: dict[Path, CaptureStore] = {}


def _fuzz_store(tmp_path: Path) -> CaptureStore:
    """One store for all examples of a test: windows predicted Walk, nothing written (no writer thread)."""
    if tmp_path not in _FUZZ_STORES:
        info = make_store(tmp_path / "info").info
        store = CaptureStore(CaptureConfig(dir=tmp_path / "fuzz", unsure_below=0.0, near_tie=None), info)
        stream = Stream(store)
        for _ in range(8):
            stream.step(label="Walk")
        _FUZZ_STORES[tmp_path] = store
    return _FUZZ_STORES[tmp_path]
