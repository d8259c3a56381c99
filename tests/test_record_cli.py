"""``edge-har record`` as a process: a serial microcontroller on a real pty, labels over a real
mosquitto, the session read back with the layout's reader; the budget and a really full disk stop
it with one line and exit status 3, leaving every file readable."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from edge_har.core.recording_layout import read_labels, read_meta, read_parts, session_dirs
from tests.record_helpers import FakeMicrocontroller, Feeder, record_process, write_bundle_json, write_config


@pytest.fixture
def mcu(tmp_path):
    pytest.importorskip("serial", reason="pyserial is not installed (pip install 'edge-har[device]')")
    device = FakeMicrocontroller(tmp_path)
    yield device
    device.unplug()


def _finish(proc: subprocess.Popen[str], timeout: float = 20) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"record did not exit; stderr:\n{err[-3000:]}") from None
    return proc.returncode, out, err


def _wait_for_line(path_check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path_check():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def _near(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol


def test_record_writes_the_serial_samples_and_the_mqtt_labels(tmp_path, mcu, mosquitto_broker, mqtt_listener):
    cfg = write_config(tmp_path, mcu.port, broker=mosquitto_broker, home_assistant=True)
    out = tmp_path / "rec"
    base = "edge-har/pi-rec"
    listener = mqtt_listener(mosquitto_broker, [f"{base}/#", "homeassistant/#"])
    proc = record_process(
        ["--config", str(cfg), "--out", str(out), "--channels", "3", "--rate", "50"]
        + ["--channel-names", "ax,ay,az", "--classes", "sit,walk", "--duration", "60"]
    )
    feeder = Feeder(mcu)
    try:
        listener.wait_for(
            lambda ms: any(m.topic == f"{base}/record/state" and m.json()["recording"] for m in ms),
            timeout=20,
            what="record/state recording",
        )
        feeder.start()
        time.sleep(0.8)

        def send(topic: str, payload: str) -> float:
            ts = time.time()
            listener.client.publish(f"{base}/{topic}", payload, qos=1).wait_for_publish(5)
            return ts

        t_walk = send("label/set", "walk")
        time.sleep(1.0)
        t_sit = send("label/set", '{"label": "Sit"}')  # a unique case-insensitive match
        time.sleep(0.4)
        send("label/set", "jump")  # not a class: refused, nothing changes
        listener.wait_count(f"{base}/label/error", 1)
        time.sleep(0.6)
        t_none = send("label/set", "none")
        time.sleep(0.4)
        feeder.stop()
        time.sleep(0.4)  # the last lines are read
        proc.send_signal(signal.SIGTERM)
        rc, _, err = _finish(proc)
    finally:
        feeder.stop()
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, err[-3000:]

    sessions = session_dirs(out)
    assert len(sessions) == 1 and sessions[0].parent.name == "pi-rec"
    meta = read_meta(sessions[0])
    assert meta.channels == ["ax", "ay", "az"] and meta.sample_rate_hz == 50.0 and meta.source == "serial"
    t, x = read_parts(sessions[0])
    sent = feeder.values()
    np.testing.assert_array_equal(x, sent)  # every line sent, once, with the same values
    assert np.all(np.diff(t) > 0)
    sent_at = np.array([ts for ts, _ in feeder.sent])
    assert np.max(np.abs(t - sent_at)) < 0.5

    segments = read_labels(sessions[0])
    assert [s.label for s in segments] == ["walk", "sit"]
    assert _near(segments[0].start, t_walk, 0.3) and _near(segments[0].end, t_sit, 0.3)
    assert _near(segments[1].start, t_sit, 0.3) and _near(segments[1].end, t_none, 0.3)

    error = listener.payloads(f"{base}/label/error")
    assert error[0]["label"] == "jump" and "not one of the classes" in error[0]["error"]
    assert err.count("refused a label") == 1 and "'jump'" in err

    listener.wait_last(f"{base}/label/state", b"none")
    final = listener.payloads(f"{base}/record/state")[-1]
    assert final["recording"] is False and final["samples"] == len(sent) and final["error"] is None
    assert final["classes"] == ["sit", "walk"] and final["channels"] == ["ax", "ay", "az"]
    signals = listener.payloads(f"{base}/record/signal")
    assert signals and all(s["channels"] == ["ax", "ay", "az"] for s in signals)
    shown = sum(len(s["t"]) for s in signals)
    seconds = t[-1] - t[0]
    assert 0 < shown <= 25 * seconds + 25  # decimated to at most 25 samples/s
    assert all(len(v) == 3 for s in signals for v in s["values"])

    select = listener.on("homeassistant/select/pi-rec/activity_label/config")
    switch = listener.on("homeassistant/switch/pi-rec/recording/config")
    assert select and switch
    assert select[-1].json()["options"] == ["sit", "walk", "none"]
    assert select[-1].json()["command_topic"] == f"{base}/label/set"
    assert switch[-1].json()["command_topic"] == f"{base}/record/set"


def test_record_stops_at_the_budget_with_one_line_and_exit_3(tmp_path, mcu):
    cfg = write_config(tmp_path, mcu.port)
    out = tmp_path / "rec"
    proc = record_process(
        ["--config", str(cfg), "--out", str(out), "--channels", "3", "--rate", "200", "--classes", "sit,walk"]
        + ["--no-mqtt", "--budget-mb", "0.004", "--duration", "60"]
    )
    feeder = Feeder(mcu, rate_hz=200)
    try:
        _wait_for_line(lambda: any(out.glob("*/*/recording.json")))
        feeder.start()
        rc, _, err = _finish(proc, timeout=30)
    finally:
        feeder.stop()
    lines = [line for line in err.strip().splitlines() if "error" in line.lower()]
    assert rc == 3, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("edge-har record: error: ")
    named = Path(lines[0].split("error: ", 1)[1].split(":", 1)[0])
    assert named.exists() and out in named.parents and "budget" in lines[0]
    (session,) = session_dirs(out)
    t, x = read_parts(session)
    assert 0 < len(x) < len(feeder.sent)
    np.testing.assert_array_equal(x, feeder.values()[: len(x)])  # the first samples, all readable
    assert sum(p.stat().st_size for p in session.glob("part-*.csv")) <= 0.004 * 1024 * 1024


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 96 KiB tmpfs: a really full disk (needs root or CAP_SYS_ADMIN; skipped otherwise)."""
    mount = tmp_path / f"full-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_record_on_a_full_disk_stops_with_one_line_and_keeps_the_session_readable(tmp_path, mcu, small_tmpfs):
    cfg = write_config(tmp_path, mcu.port)
    proc = record_process(
        ["--config", str(cfg), "--out", str(small_tmpfs), "--channels", "3", "--rate", "2000"]
        + ["--classes", "sit,walk", "--no-mqtt", "--budget-mb", "0", "--duration", "60"]
    )
    feeder = Feeder(mcu, rate_hz=2000)
    try:
        _wait_for_line(lambda: any(small_tmpfs.glob("*/*/recording.json")))
        feeder.start()
        rc, _, err = _finish(proc, timeout=60)
    finally:
        feeder.stop()
    lines = [line for line in err.strip().splitlines() if "error" in line.lower()]
    assert rc == 3, err[-2000:]
    assert len(lines) == 1 and "disk full" in lines[0] and str(small_tmpfs) in lines[0]
    (session,) = session_dirs(small_tmpfs)
    t, x = read_parts(session)
    assert len(x) > 100
    np.testing.assert_array_equal(x, feeder.values()[: len(x)])
    assert read_meta(session).channels == ["ch1", "ch2", "ch3"]


def test_record_takes_channels_scaling_and_classes_from_the_bundle(tmp_path, mcu):
    bundle = write_bundle_json(tmp_path / "bundle", ["Sit", "Walk", "Wave"], ["x", "y", "z"], rate_hz=32.0)
    cfg = write_config(tmp_path, mcu.port, bundle=bundle, rate_hz=32.0)
    out = tmp_path / "rec"
    proc = record_process(
        ["--config", str(cfg), "--out", str(out), "--no-mqtt", "--label-keys", "--classes", "+Jump"]
        + ["--duration", "60"],
        stdin=subprocess.PIPE,
    )
    feeder = Feeder(mcu, rate_hz=32)
    try:
        _wait_for_line(lambda: any(out.glob("*/*/recording.json")))
        feeder.start()
        time.sleep(0.5)
        assert proc.stdin is not None
        proc.stdin.write("4\n")  # the fourth class of the menu: Jump, added by --classes
        proc.stdin.flush()
        time.sleep(0.5)
        proc.stdin.write("Wave\n")
        proc.stdin.flush()
        time.sleep(0.5)
        proc.stdin.write("-\n")
        proc.stdin.flush()
        time.sleep(0.3)
        feeder.stop()
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        rc, _, err = _finish(proc)
    finally:
        feeder.stop()
    assert rc == 0, err[-2000:]
    assert "1 Sit  2 Walk  3 Wave  4 Jump" in err
    (session,) = session_dirs(out)
    meta = read_meta(session)
    assert meta.channels == ["x", "y", "z"] and meta.sample_rate_hz == 32.0
    assert meta.model_id == "tiny-test-model" and meta.units == "g"
    assert meta.scale == pytest.approx([3 / 63] * 3) and meta.offset == [-1.5] * 3
    assert [s.label for s in read_labels(session)] == ["Jump", "Wave"]
    np.testing.assert_array_equal(read_parts(session)[1], feeder.values())


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "does not exist yet; say what the source sends with --channels N --rate HZ"),
        (["--channels", "3", "--rate", "50"], "no classes to label with"),
        (["--channels", "3", "--rate", "50", "--classes", "sit,none"], "'none' cannot be a class"),
        (["--channels", "2", "--channel-names", "a,b,c", "--rate", "50", "--classes", "a"], "--channel-names lists 3"),
        (["--channels", "3", "--rate", "50", "--classes", "a", "--no-mqtt", "--start-stopped"], "--start-stopped"),
    ],
)
def test_record_refuses_what_cannot_work_in_one_line(tmp_path, capsys, message, extra):
    from edge_har.cli import main

    cfg = write_config(tmp_path, tmp_path / "ttyNONE")
    rc = main(["record", "--config", str(cfg), "--out", str(tmp_path / "rec"), *extra])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.strip().count("\n") == 0 and message in err, err
    assert not (tmp_path / "rec").exists()  # nothing started


def test_record_help_documents_the_exit_status_and_the_label_keys(capsys):
    from edge_har.cli import main

    with pytest.raises(SystemExit) as done:
        main(["record", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for needed in ("--label-keys", "--push", "--budget-mb", "3 when the disk is full", "label/set", "record/set"):
        assert needed in text
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "record" in capsys.readouterr().out


def test_record_set_starts_and_stops_sessions_and_the_label_carries_over(
    tmp_path, mcu, mosquitto_broker, mqtt_listener
):
    cfg = write_config(tmp_path, mcu.port, broker=mosquitto_broker)
    out = tmp_path / "rec"
    base = "edge-har/pi-rec"
    listener = mqtt_listener(mosquitto_broker, [f"{base}/#"])
    proc = record_process(
        ["--config", str(cfg), "--out", str(out), "--channels", "3", "--rate", "50", "--classes", "sit,walk"]
        + ["--start-stopped", "--duration", "60"]
    )
    feeder = Feeder(mcu)

    def publish(topic: str, payload: str) -> None:
        listener.client.publish(f"{base}/{topic}", payload, qos=1).wait_for_publish(5)

    def states() -> list[dict]:
        return listener.payloads(f"{base}/record/state")

    try:
        listener.wait_for(lambda ms: any(m.topic == f"{base}/record/state" for m in ms), 20, "a first state")
        assert states()[-1]["recording"] is False and states()[-1]["session_id"] is None
        feeder.start()
        time.sleep(0.3)
        publish("label/set", "walk")  # before any session: kept for the next one
        listener.wait_last(f"{base}/label/state", b"walk")
        publish("record/set", "ON")
        listener.wait_for(lambda ms: states()[-1]["recording"], 10, "recording")
        time.sleep(0.6)
        publish("record/set", "off")
        listener.wait_for(lambda ms: not states()[-1]["recording"], 10, "stopped")
        first = states()[-1]
        time.sleep(1.1)  # the next session id is the next second
        publish("record/set", '{"action": "start"}')
        listener.wait_for(lambda ms: states()[-1]["recording"], 10, "recording again")
        time.sleep(0.6)
        feeder.stop()
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        rc, _, err = _finish(proc)
    finally:
        feeder.stop()
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, err[-2000:]
    sessions = session_dirs(out)
    assert len(sessions) == 2 and first["session_id"] == sessions[0].name and first["samples"] > 0
    for session in sessions:
        assert [s.label for s in read_labels(session)] == ["walk"]  # the label is kept across sessions
    counts = [len(read_parts(s)[1]) for s in sessions]
    assert counts[0] == first["samples"] and all(c > 10 for c in counts)
    t0, t1 = read_parts(sessions[0])[0], read_parts(sessions[1])[0]
    assert t1[0] - t0[-1] > 0.9  # nothing recorded between the sessions


def test_a_config_with_an_unknown_key_is_refused_naming_file_line_and_key(tmp_path, capsys):
    from edge_har.cli import main

    cfg = write_config(tmp_path, tmp_path / "ttyNONE")
    cfg.write_text(cfg.read_text() + "labels: [a]\n")
    rc = main(["record", "--config", str(cfg), "--out", str(tmp_path / "rec"), "--classes", "a"])
    err = capsys.readouterr().err
    assert rc == 1 and f"{cfg}:4: labels: unknown key" in err, err


def test_an_out_folder_that_cannot_be_made_is_one_line(tmp_path, capsys):
    from edge_har.cli import main

    cfg = write_config(tmp_path, tmp_path / "ttyNONE")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    args = ["record", "--config", str(cfg), "--out", str(blocker / "rec"), "--no-mqtt"]
    rc = main([*args, "--channels", "3", "--rate", "50", "--classes", "a", "--duration", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip().count("\n") == 0 and f"--out: cannot create {blocker / 'rec'}" in err, err


def test_a_killed_recorder_leaves_a_readable_session_and_its_last_will_says_offline(
    tmp_path, mcu, mosquitto_broker, mqtt_listener
):
    cfg = write_config(tmp_path, mcu.port, broker=mosquitto_broker)
    out = tmp_path / "rec"
    base = "edge-har/pi-rec"
    listener = mqtt_listener(mosquitto_broker, [f"{base}/record/state"])
    proc = record_process(
        ["--config", str(cfg), "--out", str(out), "--channels", "3", "--rate", "100", "--classes", "sit"]
        + ["--duration", "60"]
    )
    feeder = Feeder(mcu, rate_hz=100)
    try:
        listener.wait_for(lambda ms: any(m.json()["recording"] for m in ms), 20, "recording")
        feeder.start()
        time.sleep(1.0)
        proc.kill()  # no clean stop: what was written must stay readable
        proc.wait(10)
        feeder.stop()
    finally:
        feeder.stop()
        if proc.poll() is None:
            proc.kill()
    listener.wait_for(lambda ms: ms[-1].json()["error"] == "offline", 10, "the Last Will")
    will = listener.messages[-1].json()
    assert will["recording"] is False and will["classes"] == ["sit"] and will["channels"] == ["ch1", "ch2", "ch3"]
    (session,) = session_dirs(out)
    t, x = read_parts(session)
    assert len(x) > 20
    np.testing.assert_array_equal(x, feeder.values()[: len(x)])  # a prefix of what was sent, every row whole
