"""Device config: loading, defaults, path resolution, and errors that name file, line, key and the nearest key."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge_har.device.config import (
    ConfigError,
    I2cImuSourceConfig,
    ReplaySourceConfig,
    SerialSourceConfig,
    check_files,
    load_config,
)
from edge_har.device.daemon_cli import validate_files

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_minimal_config_defaults_and_relative_paths(tmp_path):
    path = write(
        tmp_path,
        """
        bundle: bundles/tiny        # relative to this file's folder
        source:
          type: replay
          path: ../data
        """,
    )
    cfg = load_config(path).config
    assert cfg.bundle == tmp_path / "bundles" / "tiny"
    assert isinstance(cfg.source, ReplaySourceConfig)
    assert cfg.source.path == tmp_path / ".." / "data"
    assert cfg.source.realtime is True and cfg.source.loop is False and cfg.source.format is None  # the bundle's
    assert cfg.interpreter.backend == "auto" and cfg.interpreter.num_threads == 1 and cfg.interpreter.verify_sha256
    assert cfg.smoothing.method == "mean_prob" and cfg.smoothing.unknown_label == "unknown"
    assert cfg.mqtt.host == "127.0.0.1" and cfg.mqtt.port == 1883
    assert cfg.queues.windows == 64
    # no device_id: the host name, usable as a topic level
    assert cfg.device_id is None
    assert cfg.effective_device_id() == socket.gethostname().replace("/", "-")


def test_every_source_type_and_its_defaults(tmp_path):
    serial = load_config(
        write(tmp_path, "bundle: b\nsource: {type: serial, port: /dev/ttyACM0, rate_hz: 50}\n", "s.yaml")
    ).config
    assert isinstance(serial.source, SerialSourceConfig)
    assert serial.source.baudrate == 115200 and serial.source.reconnect.max_s == 30
    imu = load_config(write(tmp_path, "bundle: b\nsource: {type: i2c_imu, address: 0x69}\n", "i.yaml")).config
    assert isinstance(imu.source, I2cImuSourceConfig)
    assert imu.source.address == 0x69 and imu.source.channels == ["accel_x", "accel_y", "accel_z"]
    mq = load_config(
        write(
            tmp_path,
            "bundle: b\nsource: {type: mqtt, topic: s/+/imu, rate_hz: 25, broker: {host: other, port: 1884}}\n",
            "m.yaml",
        )
    ).config
    assert mq.input_broker().host == "other" and mq.mqtt.host == "127.0.0.1"


def test_unknown_key_names_file_line_key_path_and_nearest_key(tmp_path):
    path = write(
        tmp_path,
        """
        bundle: b
        source:
          type: serial
          port: /dev/ttyACM0
          baud_rate: 115200
          rate_hz: 50
        smoothing:
          methd: majority
        mqtt:
          hots: broker.local
        """,
    )
    lines = problems(path)
    assert f"{path}:5: source.baud_rate: unknown key; did you mean 'baudrate'?" in lines
    assert f"{path}:8: smoothing.methd: unknown key; did you mean 'method'?" in lines
    assert f"{path}:10: mqtt.hots: unknown key; did you mean 'host'?" in lines
    assert len(lines) == 3


def test_unknown_key_without_a_close_match_lists_the_valid_keys(tmp_path):
    lines = problems(write(tmp_path, "bundle: b\nsource: {type: replay, path: d}\nzzz: 1\n"))
    assert len(lines) == 1
    assert lines[0].startswith(f"{tmp_path / 'config.yaml'}:3: zzz: unknown key; valid keys here: device_id, bundle,")


def test_wrong_type_names_key_and_value(tmp_path):
    path = write(
        tmp_path,
        """
        bundle: b
        source:
          type: serial
          port: /dev/ttyACM0
          rate_hz: fast
        smoothing: {threshold: 1.5, window: 0}
        """,
    )
    lines = problems(path)
    assert any(
        line.startswith(f"{path}:5: source.rate_hz: Input should be a valid number") and "'fast'" in line
        for line in lines
    )
    assert any(line == f"{path}:6: smoothing.threshold: must be between 0 and 1 (got 1.5)" for line in lines), lines
    assert any(line.startswith(f"{path}:6: smoothing.window: ") for line in lines)


def test_unknown_source_type_suggests_the_nearest(tmp_path):
    path = write(tmp_path, "bundle: b\nsource:\n  type: seriall\n  port: x\n")
    assert problems(path) == [f"{path}:2: source.type: 'seriall' is not a source type; did you mean 'serial'?"]


def test_missing_required_keys(tmp_path):
    path = write(tmp_path, "source:\n  type: serial\n  port: /dev/ttyUSB0\n")
    lines = problems(path)
    assert f"{path}: bundle: required key is missing" in lines
    assert f"{path}:1: source.rate_hz: required key is missing" in lines
    lines = problems(write(tmp_path, "bundle: b\nsource: {port: x}\n", "notype.yaml"))
    assert lines == [
        f"{tmp_path / 'notype.yaml'}:2: source.type: required key is missing: one of replay, serial, mqtt, i2c_imu, camera"
    ]


def test_cross_field_rules_name_the_section(tmp_path):
    path = write(tmp_path, "bundle: b\nsource: {type: replay, path: d.csv, format: csv}\nmqtt: {password_env: PW}\n")
    lines = problems(path)
    assert any("source: " in line and "needs label_col" in line for line in lines)
    assert any(line.startswith(f"{path}:3: mqtt: ") and "needs a username" in line for line in lines)


def test_device_id_must_be_a_topic_level(tmp_path):
    lines = problems(write(tmp_path, "device_id: kitchen/pi\nbundle: b\nsource: {type: replay, path: d}\n"))
    assert len(lines) == 1 and "device_id" in lines[0] and "topic level" in lines[0]


def test_yaml_syntax_error_empty_file_and_wrong_top_level(tmp_path):
    bad = write(tmp_path, "bundle: [\nsource: x\n", "bad.yaml")
    assert problems(bad)[0].startswith(f"{bad}:3:1: YAML syntax error")
    empty = write(tmp_path, "# only a comment\n", "empty.yaml")
    assert problems(empty) == [f"{empty}: the config file is empty; it needs at least 'bundle' and 'source'"]
    listed = write(tmp_path, "- bundle: b\n", "list.yaml")
    assert "top level must be a mapping" in problems(listed)[0]
    missing = tmp_path / "nope.yaml"
    assert problems(missing) == [f"{missing}: config file does not exist"]


def test_missing_files_are_errors_naming_file_and_key(tmp_path):
    path = write(
        tmp_path,
        """
        bundle: no-such-bundle
        source:
          type: replay
          path: no-such-data
        mqtt:
          username: dev
          password_file: secrets/pw.txt
          tls:
            ca_file: certs/ca.crt
        """,
    )
    loaded = load_config(path)  # structure is fine
    errors, warnings = check_files(loaded)
    assert f"{path}:1: bundle: {tmp_path / 'no-such-bundle'} does not exist" in errors
    assert f"{path}:4: source.path: {tmp_path / 'no-such-data'} does not exist" in errors
    # the password file's path is never shown: it may be the password typed into the wrong key
    assert f"{path}:7: mqtt.password_file: the file named in mqtt.password_file does not exist" in errors
    assert f"{path}:9: mqtt.tls.ca_file: {tmp_path / 'certs' / 'ca.crt'} does not exist" in errors
    assert warnings == []


def test_absent_serial_port_is_only_a_warning(tmp_path):
    path = write(tmp_path, "bundle: b\nsource: {type: serial, port: /dev/ttyNOPE9, rate_hz: 32}\n")
    errors, warnings = check_files(load_config(path))
    assert warnings == [f"{path}:2: source.port: /dev/ttyNOPE9 does not exist now; the daemon will wait for it"]
    assert len(errors) == 1 and "bundle" in errors[0]


def test_validate_files_output_and_exit_status(tmp_path, capsys):
    good_dir = tmp_path / "good"
    good_dir.mkdir()
    (good_dir / "data").mkdir()
    good = write(good_dir, "bundle: /opt/edge-har/bundles/hmp\nsource: {type: replay, path: data}\n")
    bad = write(tmp_path, "bundle: b\nsource: {type: replay, path: d, lop: true}\n", "bad.yaml")
    assert validate_files([good], check_paths=False) == 0
    assert capsys.readouterr().out == f"{good}: OK (structure; files not checked)\n"
    assert validate_files([good, bad], check_paths=False) == 1
    captured = capsys.readouterr()
    assert f"{good}: OK" in captured.out
    assert f"{bad}:2: source.lop: unknown key; did you mean 'loop'?" in captured.err
    # with files: the bundle under /opt does not exist here
    assert validate_files([good]) == 1
    assert "bundle: /opt/edge-har/bundles/hmp does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------- against a real bundle


def test_checks_against_the_bundle(tiny_bundle, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    ok = write(tmp_path, f"bundle: {tiny_bundle}\nsource: {{type: replay, path: data}}\n", "ok.yaml")
    assert check_files(load_config(ok)) == ([], [])
    bad = write(
        tmp_path,
        f"""
        bundle: {tiny_bundle}
        variant: int16
        source:
          type: mqtt
          topic: s/imu
          rate_hz: 50
          fields: [ax, ay]
          scale: [1.0, 1.0]
        smoothing:
          unknown_label: idle
        """,
        "bad.yaml",
    )
    errors, _ = check_files(load_config(bad))
    joined = "\n".join(errors)
    assert f"{bad}:2: variant: " in joined and "no variant 'int16'" in joined
    assert f"{bad}:7: source.fields: lists 2 channels; the model takes 3" in errors
    assert f"{bad}:8: source.scale: has 2 values; the model has 3 channels (give 1 or 3)" in errors
    assert any(e.startswith(f"{bad}:10: smoothing.unknown_label: 'idle' must be 'unknown' or one of") for e in errors)


def test_missing_model_file_of_the_variant(tiny_bundle_copy, tmp_path):
    (tmp_path / "data").mkdir()
    variant_file = next(tiny_bundle_copy.glob("*int8*.tflite"))
    variant_file.unlink()
    path = write(tmp_path, f"bundle: {tiny_bundle_copy}\nvariant: int8\nsource: {{type: replay, path: data}}\n")
    errors, _ = check_files(load_config(path))
    assert errors == [f"{path}:2: variant: model file {variant_file} does not exist"]


def test_validate_config_command_exit_codes(tmp_path):
    good = write(tmp_path, "bundle: /opt/b\nsource: {type: i2c_imu}\n", "good.yaml")
    bad = write(tmp_path, "bundle: /opt/b\nsource: {type: i2c_imu, adress: 0x68}\n", "bad.yaml")
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "edge_har", "validate-config", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    result = run("--no-files", good)
    assert result.returncode == 0, result.stderr
    assert f"{good}: OK" in result.stdout
    result = run("--no-files", good, bad)
    assert result.returncode == 1
    assert f"{bad}:2: source.adress: unknown key; did you mean 'address'?" in result.stderr
    result = run(good)  # files checked: /opt/b is not here
    assert result.returncode == 1 and "bundle: /opt/b does not exist" in result.stderr
