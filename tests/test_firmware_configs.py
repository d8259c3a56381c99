"""firmware_configs/: every device config validates (structure on any machine; against a real bundle
with its files made present), the gateway config really runs, and the systemd unit is hardened."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from edge_har.device.config import check_files, load_config
from edge_har.device.daemon import EXIT_CONFIG
from edge_har.device.daemon_cli import validate_files

REPO = Path(__file__).resolve().parents[1]
FIRMWARE = REPO / "firmware_configs"
CONFIGS = sorted(FIRMWARE.glob("*.yaml"))
TARGETS = {
    "pi4-imu-i2c.yaml": "i2c_imu",
    "pi5-imu-i2c.yaml": "i2c_imu",
    "pi-zero2w-serial-imu.yaml": "serial",
    "gateway-mqtt-sensors.yaml": "mqtt",
    "pi4-coral-usb.yaml": "i2c_imu",
    "pi4-camera.yaml": "camera",  # camera configs: checked against a real video bundle in tests/test_video_e2e.py
    "pi5-camera.yaml": "camera",
    "usb-webcam.yaml": "camera",
}


def test_one_config_per_target():
    assert {c.name for c in CONFIGS} == set(TARGETS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_is_valid_and_commented(path):
    loaded = load_config(path)
    cfg = loaded.config
    assert cfg.source.type == TARGETS[path.name]
    assert str(cfg.bundle).startswith("/opt/edge-har/bundles/")
    assert cfg.device_id and cfg.mqtt.host
    text = path.read_text()
    assert text.startswith("# edge-har device config")
    comments = [line for line in text.splitlines() if "#" in line]
    assert len(comments) >= 10, "configs are commented for the person who edits them"
    assert "validate-config" in text


def test_validate_config_no_files_accepts_every_config(capsys):
    assert validate_files(CONFIGS, check_paths=False) == 0
    out = capsys.readouterr().out
    assert out.count(": OK") == len(CONFIGS)
    result = subprocess.run(
        [sys.executable, "-m", "edge_har", "validate-config", "--no-files", *map(str, CONFIGS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def localised(path: Path, tmp_path: Path, bundle: Path) -> Path:
    """The config with its bundle pointing at ``bundle`` and its secret/TLS files present in tmp_path.

    A config that trusts keys gets a key pair made here and a copy of the bundle signed with it.
    """
    data = yaml.safe_load(path.read_text())
    data["bundle"] = str(bundle)
    if (data.get("trust") or {}).get("keys"):
        import shutil

        from edge_har.core.signing import generate_key, sign_bundle

        private, public = generate_key(tmp_path / "keys", "release")
        signed = tmp_path / "signed-bundle"
        shutil.copytree(bundle, signed)
        sign_bundle(signed, private)
        data["bundle"] = str(signed)
        data["trust"]["keys"] = [str(public)]

    def make_files(section: dict, prefix: str) -> None:
        if section.get("password_file"):
            f = tmp_path / f"{prefix}password"
            f.write_text("pw\n")
            f.chmod(0o600)  # as the install steps make it; readable by others is a warning
            section["password_file"] = str(f)
        for key in ("ca_file", "cert_file", "key_file"):
            if (section.get("tls") or {}).get(key):
                f = tmp_path / f"{prefix}{key}.pem"
                f.write_text("-----BEGIN CERTIFICATE-----\n")
                section["tls"][key] = str(f)

    make_files(data["mqtt"], "mqtt-")
    if isinstance(data["source"].get("broker"), dict):
        make_files(data["source"]["broker"], "input-")
    out = tmp_path / path.name
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_fits_a_real_bundle(path, tiny_bundle, tmp_path):
    """Channels, scale, variant and unknown_label checked against a real 3-channel bundle."""
    if TARGETS[path.name] == "camera":
        pytest.skip("a camera config needs a video bundle: tests/test_video_e2e.py checks it against one")
    loaded = load_config(localised(path, tmp_path, tiny_bundle))
    errors, warnings = check_files(loaded)
    assert errors == []
    for line in warnings:  # only devices that come and go may be absent; a LAN password without TLS is warned of
        assert "source.port" in line or "source.bus" in line or "over plain TCP (no tls section)" in line, line
    # and the bundle path must matter: without it, it is an error naming the key
    moved = tmp_path / "elsewhere.yaml"
    data = yaml.safe_load((tmp_path / path.name).read_text())
    data["bundle"] = str(tmp_path / "no-bundle")
    moved.write_text(yaml.safe_dump(data))
    errors, _ = check_files(load_config(moved))
    assert any(": bundle: " in e and "does not exist" in e for e in errors)


def test_coral_config_uses_the_edge_tpu_delegate_on_int8():
    cfg = load_config(FIRMWARE / "pi4-coral-usb.yaml").config
    assert cfg.interpreter.delegate == "libedgetpu.so.1"
    assert cfg.variant == "int8"
    assert cfg.interpreter.backend == "tflite_runtime"


def test_pi5_config_resamples(tiny_bundle, tmp_path):
    cfg = load_config(FIRMWARE / "pi5-imu-i2c.yaml").config
    assert (
        cfg.source.rate_hz != json.loads((tiny_bundle / "bundle.json").read_text())["preprocessing"]["sample_rate_hz"]
    )


def test_gateway_config_runs_end_to_end(tiny_bundle, mosquitto_broker, mqtt_listener, tmp_path):
    """The gateway config, pointed at a test broker and the tiny bundle: a sensor node publishes
    50 Hz samples in g, the daemon (a real process) publishes predictions of the right activity."""
    from edge_har.convert.synthetic import PATTERNS, synthesize_recording
    from edge_har.core.preprocessing import Preprocessing, resample

    data = yaml.safe_load((FIRMWARE / "gateway-mqtt-sensors.yaml").read_text())
    data["bundle"] = str(tiny_bundle)
    data["mqtt"].update(host=mosquitto_broker.host, port=mosquitto_broker.port, stats_interval_s=1, reconnect_min_s=0.1)
    for key in ("username", "password_env"):
        data["mqtt"].pop(key, None)
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    topic = data["source"]["topic"]
    device = data["device_id"]
    listener = mqtt_listener(mosquitto_broker, [f"edge-har/{device}/#", "homeassistant/#"])

    pre = Preprocessing.from_json(json.loads((tiny_bundle / "bundle.json").read_text())["preprocessing"])
    codes = synthesize_recording(PATTERNS["walk"], 32 * 8, 32.0, np.random.default_rng(11))
    in_g = resample(codes * pre.scale[0] + pre.offset[0], 32.0, data["source"]["rate_hz"])

    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_har", "run", "--config", str(cfg), "--max-windows", "6"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        listener.wait_for(
            lambda ms: any(m.topic == f"edge-har/{device}/status" and m.payload == b"online" for m in ms),
            timeout=30,
            what="online",
        )
        time.sleep(0.3)  # the input connection subscribes right after the publisher's
        import paho.mqtt.publish as publish

        msgs = [
            {"topic": topic, "payload": json.dumps({"samples": in_g[i : i + 25].round(4).tolist()}), "qos": 1}
            for i in range(0, len(in_g), 25)
        ]
        msgs.insert(3, {"topic": topic, "payload": '{"samples": [[1, 2]]}', "qos": 1})  # a malformed one
        publish.multiple(msgs, hostname=mosquitto_broker.host, port=mosquitto_broker.port)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    listener.wait_last(f"edge-har/{device}/status", b"stopped")  # sent last: everything before it has arrived
    preds = listener.payloads(f"edge-har/{device}/prediction")
    assert len(preds) == 6
    assert sum(p["extra"]["raw_label"] == "Walk" for p in preds) >= 5, [p["extra"]["raw_label"] for p in preds]
    assert listener.payloads(f"edge-har/{device}/stats")[-1]["samples_dropped"] == {"columns": 1}
    assert listener.on(f"edge-har/{device}/status")[-1].payload == b"stopped"
    # home_assistant.enabled: a retained discovery config for the activity sensor
    late = mqtt_listener(mosquitto_broker, ["homeassistant/sensor/#"])
    found = late.wait_count(f"homeassistant/sensor/{device}/activity/config", 1, timeout=5)
    assert found[0].retain and found[0].json()["state_topic"] == f"edge-har/{device}/prediction"


def test_a_missing_bundle_exits_78_so_systemd_does_not_restart(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "edge_har", "run", "--config", str(FIRMWARE / "pi4-imu-i2c.yaml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == EXIT_CONFIG
    assert "bundle: /opt/edge-har/bundles/hmp does not exist" in result.stderr


# ---------------------------------------------------------------- the systemd unit


def unit_entries(path: Path) -> dict[str, list[str]]:
    entries: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.setdefault(f"{section}.{key}", []).append(value)
    return entries


def test_systemd_unit_is_hardened_and_stops_cleanly():
    unit = unit_entries(FIRMWARE / "edge-har.service")
    one = {k: v[-1] for k, v in unit.items()}
    assert one["Service.ExecStart"].endswith("edge-har run --config /etc/edge-har/config.yaml")
    assert Path(one["Service.ExecStart"].split()[0]).is_absolute()
    assert one["Service.User"] == "edge-har" and one["Service.Group"] == "edge-har"
    assert set(one["Service.SupplementaryGroups"].split()) <= {"i2c", "dialout", "video"}
    assert one["Service.Restart"] == "on-failure"
    assert one["Service.RestartPreventExitStatus"] == str(EXIT_CONFIG)
    assert one["Service.KillSignal"] == "SIGTERM" and int(one["Service.TimeoutStopSec"]) >= 10
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "DevicePolicy": "closed",
        "CapabilityBoundingSet": "",
        "RestrictSUIDSGID": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "StateDirectory": "edge-har",
    }.items():
        assert one[f"Service.{key}"] == value, key
    assert one["Install.WantedBy"] == "multi-user.target"
    assert "network-online.target" in one["Unit.After"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_unit_passes_systemd_analyze(tmp_path):
    # verify checks that ExecStart exists: point it at this Python for the check
    text = (FIRMWARE / "edge-har.service").read_text().replace("/opt/edge-har/venv/bin/edge-har", sys.executable)
    unit = tmp_path / "edge-har.service"
    unit.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True, text=True, timeout=60
    )
    if security.returncode == 0 and "Overall exposure level" in security.stdout:
        level = float(security.stdout.rsplit("Overall exposure level for edge-har.service:", 1)[1].split()[0])
        assert level <= 2.5, security.stdout[-2000:]


def test_readme_covers_every_config_and_the_unit():
    text = (FIRMWARE / "README.md").read_text()
    for path in CONFIGS:
        assert path.name in text
    for needle in ("edge-har.service", "validate-config", "useradd", "systemctl enable", "journalctl"):
        assert needle in text
