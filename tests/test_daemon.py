"""The daemon end to end against a real mosquitto: replay through the tiny bundle, broker down at
start, SIGTERM of a real process, malformed samples counted in stats, a serial source over a pty."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from edge_har.core.preprocessing import window_count
from edge_har.core.recordings import load_folder_recordings
from edge_har.device.config import load_config
from edge_har.device.daemon import EXIT_CONFIG, Daemon, run_daemon
from edge_har.mqtt.payloads import validate_prediction

REPO = Path(__file__).resolve().parents[1]
LABELS = {"Sit", "Walk", "Wave"}


@pytest.fixture(scope="module")
def heldout_dir(tmp_path_factory) -> Path:
    """Synthetic recordings the tiny model never saw; a few malformed lines in one file."""
    from edge_har.convert.synthetic import write_synthetic_imu_dataset
    from tests.plugins.bundle import TINY_CLASSES

    root = write_synthetic_imu_dataset(
        tmp_path_factory.mktemp("daemon") / "data",
        classes=TINY_CLASSES,
        recordings_per_class=1,
        subjects=1,
        seconds=6.0,
        seed=5,
    )
    victim = sorted((root / "Walk").iterdir())[0]
    lines = victim.read_text().splitlines()
    lines[20:20] = ["12 34", "12 x 40", "nan 1 2"]  # wrong column count, text, NaN
    victim.write_text("\n".join(lines) + "\n")
    return root


def write_config(path: Path, bundle: Path, broker: Any, source: dict, **top: Any) -> Path:
    mqtt = {
        "host": broker.host,
        "port": broker.port,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
        "stats_interval_s": 0.5,
    }
    mqtt.update(top.pop("mqtt", {}))
    data = {"device_id": "pi-test", "bundle": str(bundle), "source": source, "mqtt": mqtt, "smoothing": {"window": 3}}
    data.update(top)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class DaemonThread:
    """A Daemon run in a thread (signals are the main thread's; tests stop it with request_stop)."""

    def __init__(self, config: Path, **options: Any) -> None:
        self.daemon = Daemon(load_config(config), install_signal_handlers=False, **options)
        self.code: Any = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.daemon.run()

    def stop(self, timeout: float = 15.0) -> int:
        self.daemon.request_stop("test")
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the daemon did not stop"
        return self.code


def predictions(listener, topic="edge-har/pi-test/prediction") -> list[dict]:
    return listener.payloads(topic)


def check_predictions(preds: list[dict], min_accuracy: float = 0.8) -> None:
    for p in preds:
        assert validate_prediction(p) == [], p
        assert p["device_id"] == "pi-test" and p["variant"] == "int8"
        assert p["label"] in LABELS | {"unknown"}
        assert set(p["probabilities"]) == LABELS
        assert p["extra"]["truth"] in LABELS
    assert [p["seq"] for p in preds] == list(range(len(preds)))  # in order, none lost, none twice
    right = sum(p["extra"]["raw_label"] == p["extra"]["truth"] for p in preds)
    assert right / len(preds) >= min_accuracy, f"{right}/{len(preds)}"


def test_replay_through_the_bundle_to_a_subscriber(tiny_bundle, heldout_dir, mosquitto_broker, mqtt_listener, tmp_path):
    listener = mqtt_listener(mosquitto_broker, ["edge-har/#"])
    cfg = write_config(
        tmp_path / "replay.yaml",
        tiny_bundle,
        mosquitto_broker,
        {"type": "replay", "path": str(heldout_dir), "realtime": False, "stop_at_end": True},
    )
    summary = tmp_path / "summary.json"
    code = Daemon(load_config(cfg), summary_json=summary).run()  # main thread: real signal handlers installed
    assert code == 0
    recordings = load_folder_recordings(heldout_dir, skip_bad=True)
    expected = sum(window_count(len(r), 64, 16) for r in recordings)
    listener.wait_count("edge-har/pi-test/prediction", expected, timeout=10)
    listener.wait_last("edge-har/pi-test/status", b"stopped")  # the last thing sent; the broker may still hold it
    preds = predictions(listener)
    assert len(preds) == expected
    check_predictions(preds)
    ts = [p["window_end_ts"] for p in preds]
    assert ts == sorted(ts) and abs(ts[-1] - time.time()) < 60
    # status: online at start, the retained stopped last (a clean stop)
    status = [m for m in listener.on("edge-har/pi-test/status")]
    assert status[0].payload == b"online" and status[-1].payload == b"stopped"
    # the final stats message counts the malformed lines, and what was inferred
    stats = listener.payloads("edge-har/pi-test/stats")[-1]
    assert stats["windows_total"] == expected
    assert stats["samples_dropped"] == {"columns": 1, "text": 1, "nan": 1}  # by reason, as live sources count
    assert stats["samples_total"] == sum(len(r) for r in recordings) + 3
    assert stats["extra"]["windows_dropped"] == 0 and stats["queue_depth"] == 0
    assert stats["extra"]["replay_accuracy"]["windows"] == expected
    m = stats["mqtt"]  # taken just before the publisher's final flush: some may still await their PUBACK
    assert stats["rss_mb"] > 10 and m["published"] + m["inflight"] + m["queued"] == expected
    for key in ("p50", "p99"):
        assert stats["inference_ms"][key] > 0 and stats["e2e_ms"][key] > 0
    run = json.loads(summary.read_text())
    assert run["windows_total"] == expected and run["stop_reason"].startswith("end of the replay")
    assert run["first_prediction_s"] < run["uptime_s"]


def test_broker_down_at_start_then_up(tiny_bundle, heldout_dir, mosquitto_broker, mqtt_listener, tmp_path):
    # A listener with a persistent session, so what the daemon publishes the moment the broker is
    # back is kept for it even if it reconnects a little later than the daemon.
    listener = mqtt_listener(mosquitto_broker, ["edge-har/#"], client_id="test-persistent-listener", clean=False)
    mosquitto_broker.stop()  # SIGTERM: mosquitto saves the session (and its subscription) on the way out
    rec = sorted((heldout_dir / "Sit").iterdir())[0]
    cfg = write_config(
        tmp_path / "down.yaml",
        tiny_bundle,
        mosquitto_broker,
        {"type": "replay", "path": str(rec), "format": "file", "label": "Sit", "realtime": True, "speed": 8.0},
    )
    run = DaemonThread(cfg)
    try:
        n = window_count(len(np.loadtxt(rec)), 64, 16)
        deadline = time.monotonic() + 15
        while not run.daemon.source or not run.daemon.source.finished:  # replay done while the broker is away
            assert time.monotonic() < deadline and run.thread.is_alive()
            time.sleep(0.05)
        time.sleep(0.3)
        counters = run.daemon.publisher.counters()
        assert not counters["connected"] and counters["queued"] == n and run.daemon.stats.windows_total == n
        mosquitto_broker.start()
        listener.wait_count("edge-har/pi-test/prediction", n, timeout=15)
        preds = predictions(listener)
        check_predictions(preds, min_accuracy=0.7)
        assert len(preds) == n
        # the replay ended without stop_at_end: the daemon stays up, online, publishing stats
        before = len(listener.on("edge-har/pi-test/stats"))
        listener.wait_count("edge-har/pi-test/stats", before + 2, timeout=5)
        last = listener.payloads("edge-har/pi-test/stats")[-1]
        assert last["extra"]["source"]["finished"] and last["mqtt"]["connected"]
        assert listener.on("edge-har/pi-test/status")[-1].payload == b"online"
        # the broker crashes and comes back: the daemon rides it out and says online again
        onlines = sum(m.payload == b"online" for m in listener.on("edge-har/pi-test/status"))
        mosquitto_broker.kill()
        time.sleep(1.0)
        assert run.thread.is_alive() and not run.daemon.publisher.counters()["connected"]
        mosquitto_broker.start()
        listener.wait_for(
            lambda ms: sum(m.topic.endswith("/status") and m.payload == b"online" for m in ms) > onlines,
            timeout=10,
            what="online again after the broker restart",
        )
    finally:
        code = run.stop()
    assert code == 0
    listener.wait_for(
        lambda ms: ms[-1].topic.endswith("/status") and ms[-1].payload == b"stopped", timeout=5, what="stopped"
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_process_cleanly_leaving_retained_stopped(
    signum, tiny_bundle, heldout_dir, mosquitto_broker, mqtt_listener, tmp_path
):
    listener = mqtt_listener(mosquitto_broker, ["edge-har/pi-test/prediction"])
    cfg = write_config(
        tmp_path / "forever.yaml",
        tiny_bundle,
        mosquitto_broker,
        {"type": "replay", "path": str(heldout_dir), "realtime": True, "speed": 4.0, "loop": True},
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_har", "run", "--config", str(cfg)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        listener.wait_count("edge-har/pi-test/prediction", 3, timeout=30)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    assert f"{signal.Signals(signum).name} received" in err and "retained stopped sent" in err
    assert "Traceback" not in err
    late = mqtt_listener(mosquitto_broker, ["edge-har/pi-test/status"])
    msgs = late.wait_count("edge-har/pi-test/status", 1, timeout=5)
    assert msgs[0].retain and msgs[0].payload == b"stopped"


def test_serial_source_in_the_daemon_counts_malformed_samples_in_stats(
    tiny_bundle, heldout_dir, mosquitto_broker, mqtt_listener, tmp_path
):
    pytest.importorskip("serial")
    from tests.test_sources import FakeMicrocontroller

    mcu = FakeMicrocontroller(tmp_path)
    listener = mqtt_listener(mosquitto_broker, ["edge-har/#"])
    cfg = write_config(
        tmp_path / "serial.yaml",
        tiny_bundle,
        mosquitto_broker,
        {"type": "serial", "port": str(mcu.port), "rate_hz": 32, "valid_range": [0, 63], "timeout": 0},
    )
    run = DaemonThread(cfg, max_windows=5)
    try:
        deadline = time.monotonic() + 15
        while not (run.daemon.source and run.daemon.source.status()["connected"]):
            assert time.monotonic() < deadline and run.thread.is_alive(), "the daemon never opened the port"
            time.sleep(0.02)
        samples = np.loadtxt(sorted((heldout_dir / "Wave").iterdir())[0])
        lines = [" ".join(str(int(v)) for v in row) for row in samples[:160]]
        lines[10:10] = ["1,2", "1,2,3,4", "a,b,c", "nan,1,1", "1,2,64", "-1,5,5"]
        mcu.send("\n" + "\n".join(lines) + "\n")
        run.thread.join(20)
        assert not run.thread.is_alive() and run.code == 0
    finally:
        if run.thread.is_alive():
            run.stop()
        mcu.unplug()
    preds = listener.wait_count("edge-har/pi-test/prediction", 5, timeout=5)
    assert len(preds) == 5
    assert all(validate_prediction(m.json()) == [] for m in preds)
    assert sum(m.json()["extra"]["raw_label"] == "Wave" for m in preds) >= 4
    stats = listener.payloads("edge-har/pi-test/stats")[-1]
    assert stats["samples_dropped"] == {"columns": 2, "text": 1, "nan": 1, "range": 2}
    assert stats["windows_total"] == 5
    assert stats["extra"]["source"]["port"] == str(mcu.port)


def test_a_config_problem_exits_78_naming_file_and_key(tmp_path, caplog):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("device_id: pi-test\nbundle: missing-bundle\nsource: {type: replay, path: .}\n")
    with caplog.at_level(logging.ERROR, logger="edge_har.daemon"):
        assert run_daemon(cfg) == EXIT_CONFIG
    assert f"config: {cfg}:2: bundle: {tmp_path / 'missing-bundle'} does not exist" in caplog.text
    typo = tmp_path / "typo.yaml"
    typo.write_text("bundle: b\nsource: {type: replay, path: ., lop: true}\n")
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="edge_har.daemon"):
        assert run_daemon(typo) == EXIT_CONFIG
    assert f"{typo}:2: source.lop: unknown key; did you mean 'loop'?" in caplog.text


def test_each_run_has_its_own_run_id_in_predictions_stats_and_summary(
    tiny_bundle, heldout_dir, mosquitto_broker, mqtt_listener, tmp_path
):
    """Two runs of one device both start at seq 0; only the run id tells them apart."""
    listener = mqtt_listener(mosquitto_broker, ["edge-har/pi-test/#"])
    rec = sorted((heldout_dir / "Sit").iterdir())[0]
    cfg = write_config(
        tmp_path / "runs.yaml",
        tiny_bundle,
        mosquitto_broker,
        {"type": "replay", "path": str(rec), "format": "file", "label": "Sit", "realtime": False},
    )
    run_ids = []
    for i in range(2):
        summary = tmp_path / f"summary-{i}.json"
        assert Daemon(load_config(cfg), max_windows=3, summary_json=summary, install_signal_handlers=False).run() == 0
        run_ids.append(json.loads(summary.read_text())["run_id"])
    listener.wait_last("edge-har/pi-test/status", b"stopped", count=2)  # each run's last message
    preds = predictions(listener)
    assert run_ids[0] != run_ids[1] and all(len(r) == 12 for r in run_ids)
    assert [(p["run_id"], p["seq"]) for p in preds] == [(r, s) for r in run_ids for s in range(3)]
    stats = listener.payloads("edge-har/pi-test/stats")
    assert stats and {s["run_id"] for s in stats} <= set(run_ids) and stats[-1]["run_id"] == run_ids[1]


def _start_daemon(cfg: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edge_har", "run", "--config", str(cfg)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _signal_and_wait(proc: subprocess.Popen, signum: int) -> str:
    try:
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return err


def test_sighup_stops_cleanly_and_exits_for_a_restart(
    tiny_bundle, heldout_dir, mosquitto_broker, mqtt_listener, tmp_path
):
    """SIGHUP is a clean stop, not a kill (exit 129, no status): 'stopped', exit 75, and
    the restarted process (as systemd's RestartForceExitStatus=75 would start it) comes back online
    as a new run."""
    from edge_har.device.daemon import EXIT_RESTART

    topic = "edge-har/pi-test/prediction"
    listener = mqtt_listener(mosquitto_broker, ["edge-har/pi-test/#"])
    cfg = write_config(
        tmp_path / "hup.yaml",
        tiny_bundle,
        mosquitto_broker,
        {"type": "replay", "path": str(heldout_dir), "realtime": True, "speed": 4.0, "loop": True},
    )
    proc = _start_daemon(cfg)
    listener.wait_count(topic, 3, timeout=30)
    err = _signal_and_wait(proc, signal.SIGHUP)
    assert proc.returncode == EXIT_RESTART == 75, err[-3000:]
    assert "SIGHUP received" in err and "retained stopped sent" in err and "Traceback" not in err
    listener.wait_last("edge-har/pi-test/status", b"stopped")
    statuses = [m.payload for m in listener.on("edge-har/pi-test/status")]
    assert statuses[0] == b"online" and statuses[-1] == b"stopped" and b"offline" not in statuses
    first_run = {p["run_id"] for p in predictions(listener)}
    assert len(first_run) == 1
    seen = len(predictions(listener))

    proc = _start_daemon(cfg)  # what systemd does next
    listener.wait_count(topic, seen + 3, timeout=30)
    err = _signal_and_wait(proc, signal.SIGTERM)
    assert proc.returncode == 0, err[-3000:]
    listener.wait_last("edge-har/pi-test/status", b"stopped", count=2)
    second = predictions(listener)[seen:]
    assert {p["run_id"] for p in second}.isdisjoint(first_run) and second[0]["seq"] == 0
    statuses = [m.payload for m in listener.on("edge-har/pi-test/status")]
    assert statuses.count(b"stopped") == 2 and statuses[-1] == b"stopped"


def test_the_unit_restarts_the_daemon_after_sighup_without_counting_a_failure():
    from edge_har.device.daemon import EXIT_CONFIG, EXIT_RESTART

    settings: dict[str, list[str]] = {}
    for line in (REPO / "firmware_configs" / "edge-har.service").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            settings.setdefault(key.strip(), []).append(value.strip())
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert str(EXIT_RESTART) in " ".join(settings["RestartForceExitStatus"]).split()
    assert str(EXIT_RESTART) in " ".join(settings["SuccessExitStatus"]).split()
    assert str(EXIT_RESTART) not in " ".join(settings["RestartPreventExitStatus"]).split()
    assert str(EXIT_CONFIG) in " ".join(settings["RestartPreventExitStatus"]).split()


def test_replay_truth_goes_through_the_bundles_label_map(
    tiny_bundle, heldout_dir, mosquitto_broker, mqtt_listener, tmp_path
):
    """A bundle trained with --label-map reports merged names; a replay of the original class folders
    must be scored against those names, not the folders' (which would score 0 for every renamed class)."""
    import shutil

    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    doc = json.loads((bundle / "bundle.json").read_text())
    doc["label_map"] = {"Walking": "Walk", "Sit": "Sit", "Wave": "Wave", "Jumping": None}
    (bundle / "bundle.json").write_text(json.dumps(doc))
    data = shutil.copytree(heldout_dir, tmp_path / "data")
    (data / "Walk").rename(data / "Walking")  # the data set's own name for the class
    listener = mqtt_listener(mosquitto_broker, ["edge-har/#"])
    cfg = write_config(
        tmp_path / "replay.yaml",
        bundle,
        mosquitto_broker,
        {"type": "replay", "path": str(data), "realtime": False, "stop_at_end": True},
    )
    assert Daemon(load_config(cfg), install_signal_handlers=False).run() == 0
    listener.wait_last("edge-har/pi-test/status", b"stopped")
    truths = {p["extra"]["truth"] for p in predictions(listener)}
    assert truths == LABELS, truths  # "Walking" arrives as the model's "Walk"
    check_predictions(predictions(listener))
    accuracy = listener.payloads("edge-har/pi-test/stats")[-1]["extra"]["replay_accuracy"]
    assert accuracy["raw"] >= 0.8, accuracy
