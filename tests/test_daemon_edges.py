"""The daemon's edges: a stop signal during start-up, ``keepalive: 0``, a variant file that a
symlink points outside its bundle. Real processes, a real mosquitto, a real bundle copy."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from edge_har.device.daemon import EXIT_CONFIG, EXIT_RESTART

REPO = Path(__file__).resolve().parents[1]


def _config_text(bundle: Path, data: Path, broker, **mqtt) -> str:
    return yaml.safe_dump(
        {
            "device_id": "pi-edge",
            "bundle": str(bundle),
            "source": {"type": "replay", "path": str(data), "realtime": True, "loop": True},
            "mqtt": {"host": broker.host, "port": broker.port, "reconnect_min_s": 0.1, **mqtt},
        },
        sort_keys=False,
    )


def _open_for_writing_once_read(fifo: Path, proc: subprocess.Popen, timeout: float = 60.0) -> int:
    """Open ``fifo`` for writing as soon as the daemon has opened it for reading (it is then in
    ``load_config``, past its imports); fails if the daemon exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
        if proc.poll() is not None:
            raise AssertionError(f"the daemon exited {proc.returncode} before reading its config: {proc.stderr.read()}")
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("the daemon never opened its config")


@pytest.mark.parametrize(
    ("signum", "expected"),
    [(signal.SIGHUP, EXIT_RESTART), (signal.SIGTERM, 0), (signal.SIGINT, 0)],
    ids=["SIGHUP", "SIGTERM", "SIGINT"],
)
def test_a_stop_signal_while_starting_gives_the_same_exit_as_later(
    signum, expected, tiny_bundle, tiny_dataset_dir, mosquitto_broker, mqtt_listener, tmp_path
):
    """The config is a FIFO, so the daemon is held in start-up (imports done, config not yet read)
    exactly when the signal comes. SIGHUP exits 75 (restarted; a kill's 129 the unit would not
    restart), SIGTERM and SIGINT exit 0, with no traceback."""
    listener = mqtt_listener(mosquitto_broker, ["edge-har/pi-edge/#"])
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_har", "run", "--config", str(fifo)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        fd = _open_for_writing_once_read(fifo, proc)
        proc.send_signal(signum)
        time.sleep(0.2)  # the signal lands while the daemon waits for the config
        os.write(fd, _config_text(tiny_bundle, tiny_dataset_dir, mosquitto_broker).encode())
        os.close(fd)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == expected, f"exit {proc.returncode}: {err[-3000:]}"
    assert "stopped during start-up" in err and signal.Signals(signum).name in err, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    time.sleep(0.3)
    assert listener.on("edge-har/pi-edge/prediction") == []  # it stopped before it connected


def test_the_unit_restarts_a_daemon_killed_by_sighup_before_python_could_handle_it():
    forced = []
    for line in (REPO / "firmware_configs" / "edge-har.service").read_text().splitlines():
        if line.startswith("RestartForceExitStatus="):
            forced += line.partition("=")[2].split()
    assert str(EXIT_RESTART) in forced and "SIGHUP" in forced


def test_a_signal_noted_before_the_daemon_runs_stops_it_before_it_connects(
    tiny_bundle, tiny_dataset_dir, mosquitto_broker, mqtt_listener, tmp_path
):
    """In-process: what early_signals noted is acted on by Daemon.run before the model loads."""
    from edge_har.device import early_signals
    from edge_har.device.config import load_config
    from edge_har.device.daemon import Daemon

    listener = mqtt_listener(mosquitto_broker, ["edge-har/pi-edge/#"])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(_config_text(tiny_bundle, tiny_dataset_dir, mosquitto_broker))
    previous = {sig: signal.getsignal(sig) for sig in early_signals.STOP_SIGNALS}
    try:
        assert early_signals.install()
        os.kill(os.getpid(), signal.SIGHUP)
        daemon = Daemon(load_config(cfg))
        assert daemon.run() == EXIT_RESTART
        assert daemon.runtime is None and daemon.publisher is None  # no model loaded, nothing connected
        assert early_signals.take() == []
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    time.sleep(0.3)
    assert listener.on("edge-har/pi-edge/status") == []


def test_a_second_interrupt_during_start_up_exits_at_once():
    from edge_har.device import early_signals

    previous = {sig: signal.getsignal(sig) for sig in early_signals.STOP_SIGNALS}
    try:
        assert early_signals.install()
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGINT)  # noted: the daemon stops cleanly once it runs
        with pytest.raises(SystemExit) as stopped:
            os.kill(os.getpid(), signal.SIGTERM)  # a second stop before the daemon took over: exit now
            time.sleep(1)
        assert stopped.value.code == 0
        assert early_signals.take() == [signal.SIGHUP, signal.SIGINT]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------- keepalive


@pytest.mark.parametrize("value", [0, -1, 3601, 70000])
def test_keepalive_outside_its_range_is_refused_at_load_naming_the_key(value, tmp_path):
    cfg = tmp_path / "k.yaml"
    cfg.write_text(f"bundle: b\nsource: {{type: replay, path: d}}\nmqtt:\n  keepalive: {value}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "edge_har", "validate-config", "--no-files", str(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"{cfg}:4: mqtt.keepalive: must be between 1 and 3600 (got {value})", proc.stderr


def test_keepalive_of_an_mqtt_source_broker_is_refused_too(tmp_path):
    from edge_har.device.config import ConfigError, load_config

    cfg = tmp_path / "k.yaml"
    cfg.write_text(
        "bundle: b\nsource:\n  type: mqtt\n  topic: t\n  rate_hz: 50\n  broker:\n    host: h\n    keepalive: 0\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(cfg)
    assert caught.value.problems == [f"{cfg}:8: source.broker.keepalive: must be between 1 and 3600 (got 0)"]


def test_the_run_command_refuses_keepalive_0_with_exit_78(tmp_path):
    cfg = tmp_path / "k.yaml"
    cfg.write_text("bundle: b\nsource: {type: replay, path: d}\nmqtt: {keepalive: 0}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "edge_har", "run", "--config", str(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == EXIT_CONFIG, proc.stderr
    assert "mqtt.keepalive: must be between 1 and 3600 (got 0)" in proc.stderr


# ---------------------------------------------------------------- variant files inside the bundle


def _variant_file(bundle: Path, variant: str = "int8") -> Path:
    import json

    meta = json.loads((bundle / "bundle.json").read_text())["variants"][variant]
    return bundle / meta["file"]


def _validate(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge_har", "validate-config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("how", ["absolute", "relative", "dangling", "loop"])
def test_a_variant_file_symlinked_outside_the_bundle_is_refused_naming_it(
    how, tiny_bundle_copy, tiny_dataset_dir, mosquitto_broker, tmp_path
):
    """The same file, moved out of the bundle and linked back: sha256 and size still match, so
    only the path check can refuse it; validate-config says so in one line and run exits 78."""
    model = _variant_file(tiny_bundle_copy)
    outside = tmp_path / "elsewhere" / model.name
    outside.parent.mkdir()
    model.rename(outside)
    if how == "absolute":
        model.symlink_to(outside)
    elif how == "relative":
        model.symlink_to(Path("..") / "elsewhere" / model.name)
    elif how == "dangling":
        model.symlink_to(tmp_path / "nowhere.tflite")
    else:
        model.symlink_to(model)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(_config_text(tiny_bundle_copy, tiny_dataset_dir, mosquitto_broker) + "variant: int8\n")

    checked = _validate(cfg)
    assert checked.returncode == 1
    problems = [line for line in checked.stderr.splitlines() if not line.startswith("warning:")]
    assert len(problems) == 1, checked.stderr
    assert f"{model.name}" in problems[0] and "variants.int8.file" in problems[0], problems[0]
    if how == "loop":
        assert "symlink loop" in problems[0], problems[0]
    else:
        assert "outside the bundle folder" in problems[0], problems[0]

    run = subprocess.run(
        [sys.executable, "-m", "edge_har", "run", "--config", str(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == EXIT_CONFIG, run.stderr[-3000:]
    assert "outside the bundle folder" in run.stderr or "symlink loop" in run.stderr, run.stderr[-3000:]


def test_a_symlink_that_stays_inside_the_bundle_and_a_linked_bundle_folder_are_fine(
    tiny_bundle_copy, tiny_dataset_dir, mosquitto_broker, tmp_path
):
    model = _variant_file(tiny_bundle_copy)
    stored = tiny_bundle_copy / "store" / model.name
    stored.parent.mkdir()
    model.rename(stored)
    model.symlink_to(Path("store") / model.name)
    linked = tmp_path / "current"  # a bundle folder reached through a link, as a deployment switches versions
    linked.symlink_to(tiny_bundle_copy)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(_config_text(linked, tiny_dataset_dir, mosquitto_broker) + "variant: int8\n")
    checked = _validate(cfg)
    assert checked.returncode == 0, checked.stderr
