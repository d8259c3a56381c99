"""A value given to a credential key is never printed; risky credential set-ups are warned about.

A password typed into the wrong key must not end up in the journal: ``password_env: "S3cret"``
must not log "environment variable S3cret is not set", nor ``password_file: "S3cret"`` the path. Each test puts a unique secret string into a credential key, runs the real code path
(load_config, validate-config, check_files, the daemon's start against a real broker) and
asserts the string appears nowhere in what was logged, printed or raised.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from edge_har.device.config import ConfigError, check_files, load_config
from edge_har.device.daemon_cli import validate_files
from edge_har.mqtt.config import MqttConfig, MqttConfigError, is_loopback_host, security_warnings


def secret() -> str:
    return "S3cret" + uuid.uuid4().hex[:12]


def write(tmp_path: Path, mqtt_lines: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text("bundle: b\nsource: {type: replay, path: d}\nmqtt:\n  username: dev\n  " + mqtt_lines)
    return path


def everything_said(path: Path, caplog: pytest.LogCaptureFixture) -> str:
    """What load_config, check_files and validate-config (in process) say about a config."""
    said = []
    with caplog.at_level(logging.DEBUG):
        try:
            loaded = load_config(path)
        except ConfigError as exc:
            said += [str(exc), repr(exc)]
        else:
            said.append(repr(loaded.config))
            errors, warnings = check_files(loaded)
            said += errors + warnings
            try:
                loaded.config.mqtt.resolve_password()
            except MqttConfigError as exc:
                said += [str(exc), repr(exc)]
        out, err = io.StringIO(), io.StringIO()
        validate_files([path], out=out, err=err)
        said += [out.getvalue(), err.getvalue()]
    said.append(caplog.text)
    return "\n".join(said)


@pytest.mark.parametrize(
    "template",
    [
        'password_env: "{s}"\n',  # a valid variable name, not set
        'password_env: "{s} with spaces!"\n',  # not a variable name: refused by validation
        "password_env: [{s}]\n",  # wrong type
        "password_env: {{x: {s}}}\n",
        'password_file: "{s}"\n',  # a relative path that does not exist
        'password_file: "~{s}/pw"\n',  # a home directory that does not exist
        "password_file: [{s}]\n",
        'password_env: "{s}"\n  password_file: "{s}"\n',  # both set: a cross-field error
    ],
)
def test_a_value_in_a_credential_key_is_never_echoed(tmp_path, caplog, template):
    s = secret()
    path = write(tmp_path, template.format(s=s))
    said = everything_said(path, caplog)
    assert "mqtt.password_" in said or "mqtt: set either" in said  # the key is named...
    assert s not in said  # ...its value is not


def test_a_number_in_password_env_is_not_echoed(tmp_path, caplog):
    path = write(tmp_path, "password_env: 918273645\n")
    said = everything_said(path, caplog)
    assert "mqtt.password_env" in said and "918273645" not in said


def test_unset_variable_and_missing_file_name_the_key(tmp_path, monkeypatch):
    s = secret()
    monkeypatch.delenv(s, raising=False)
    with pytest.raises(MqttConfigError) as info:
        MqttConfig(username="u", password_env=s).resolve_password()
    assert str(info.value).startswith(
        "mqtt.password_env: the environment variable named in mqtt.password_env is not set"
    )
    with pytest.raises(MqttConfigError) as info:
        MqttConfig(username="u", password_file=tmp_path / s).resolve_password()
    assert str(info.value) == "mqtt.password_file: the file named in mqtt.password_file does not exist"
    assert s not in repr(MqttConfig(username="u", password_env=s))


def test_daemon_start_with_an_unset_variable_never_logs_it(tmp_path, tiny_bundle, tiny_dataset_dir, mosquitto_broker):
    """The real `edge-har run` against a real broker: exit 78, the key named, the value absent."""
    s = secret()
    path = tmp_path / "config.yaml"
    path.write_text(
        f"bundle: {tiny_bundle}\n"
        f"source: {{type: replay, path: {tiny_dataset_dir}, realtime: false, stop_at_end: true}}\n"
        f"mqtt: {{host: {mosquitto_broker.host}, port: {mosquitto_broker.port}, username: dev, password_env: {s}}}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != s}
    proc = subprocess.run(
        [sys.executable, "-m", "edge_har", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 78, proc.stderr[-2000:]
    assert "the environment variable named in mqtt.password_env is not set" in proc.stderr
    assert s not in proc.stdout + proc.stderr


def test_password_file_readable_by_others_is_warned_about(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n")
    pw.chmod(0o644)
    path = write(tmp_path, f"password_file: {pw}\n")
    _errors, warnings = check_files(load_config(path))
    assert any(
        w.startswith(f"{path}:5: mqtt.password_file: ") and "readable by group or others (mode 0644)" in w
        for w in warnings
    ), warnings
    assert all(str(pw) not in w and "hunter2" not in w for w in warnings)
    pw.chmod(0o600)
    _errors, warnings = check_files(load_config(path))
    assert not any("readable by group" in w for w in warnings)


def test_password_over_plain_tcp_to_another_host_is_warned_about(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_HAR_PW_TEST", "x")
    remote = write(tmp_path, "password_env: EDGE_HAR_PW_TEST\n  host: broker.example.net\n")
    _errors, warnings = check_files(load_config(remote))
    assert any(
        w.startswith(f"{remote}:6: mqtt.host: ") and "plain TCP" in w and "broker.example.net" in w for w in warnings
    ), warnings
    for host in ("127.0.0.1", "localhost", "::1", "127.3.4.5"):
        assert security_warnings(MqttConfig(host=host, username="u", password_env="P")) == []
    assert security_warnings(MqttConfig(host="10.0.0.2", username="u", password_env="P", tls={})) == []
    assert security_warnings(MqttConfig(host="10.0.0.2", username="u")) == []  # no password: nothing to leak
    assert not is_loopback_host("127.example.com") and is_loopback_host("LOCALHOST.")


def test_mqtt_input_broker_gets_the_same_warnings(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "bundle: b\nsource:\n  type: mqtt\n  topic: t\n  rate_hz: 50\n"
        "  broker: {host: 192.0.2.7, username: dev, password_env: PW}\n"
    )
    _errors, warnings = check_files(load_config(path))
    assert any(w.startswith(f"{path}:6: source.broker.host: ") and "plain TCP" in w for w in warnings), warnings
