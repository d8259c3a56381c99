"""Every interval, timeout, rate and size in a device config has a range, and the error shows it.

With ``> 0`` as the only bound, ``mqtt.stats_interval_s: 0.000001`` floods the broker with
thousands of stats messages at 100 % CPU and ``1e300`` kills the stats thread with an
OverflowError. A value outside its range stops ``load_config`` (and ``validate-config``) with
``FILE:LINE: key: must be between LOW and HIGH (got VALUE)``.
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from edge_har.device.config import ConfigError, DeviceConfig, load_config, source_types
from edge_har.device.daemon_cli import validate_files

REPLAY = "source: {type: replay, path: d}\n"
SERIAL = "source:\n  type: serial\n  port: /dev/ttyACM0\n  rate_hz: 50\n"

# (config text with the bad value on line 3 or later, key path, line, expected message)
CASES = [
    ("mqtt:\n  stats_interval_s: 0.000001\n", REPLAY, "mqtt.stats_interval_s", "must be between 0.1 and 86400"),
    ("mqtt:\n  stats_interval_s: 1.0e300\n", REPLAY, "mqtt.stats_interval_s", "must be between 0.1 and 86400"),
    ("mqtt:\n  stats_interval_s: .inf\n", REPLAY, "mqtt.stats_interval_s", "must be between 0.1 and 86400"),
    ("mqtt:\n  stats_interval_s: .nan\n", REPLAY, "mqtt.stats_interval_s", "must be between 0.1 and 86400"),
    ("mqtt:\n  reconnect_min_s: 0\n", REPLAY, "mqtt.reconnect_min_s", "must be between 0.01 and 3600"),
    ("mqtt:\n  reconnect_max_s: 1.0e300\n", REPLAY, "mqtt.reconnect_max_s", "must be between 0.01 and 3600"),
    ("mqtt:\n  queue_size: 100000000\n", REPLAY, "mqtt.queue_size", "must be between 0 and 200000"),
    ("mqtt:\n  keepalive: 70000\n", REPLAY, "mqtt.keepalive", "must be between 1 and 3600"),
    ("mqtt:\n  keepalive: 0\n", REPLAY, "mqtt.keepalive", "must be between 1 and 3600"),
    ("queues:\n  windows: 0\n", REPLAY, "queues.windows", "must be between 1 and 10000"),
    ("smoothing:\n  window: 100000\n", REPLAY, "smoothing.window", "must be between 1 and 1000"),
    ("video:\n  stride: 0\n", REPLAY, "video.stride", "must be between 1 and 1000"),
    ("video:\n  no_person_warn_s: 0.5\n", REPLAY, "video.no_person_warn_s", "must be between 1 and 86400"),
    ("video:\n  no_person_warn_s: .inf\n", REPLAY, "video.no_person_warn_s", "must be between 1 and 86400"),
    ("", SERIAL + "  timeout: 1.0e300\n", "source.timeout", "must be between 0 and 3600"),
    ("", SERIAL + "  baudrate: 0\n", "source.baudrate", "must be between 50 and 12000000"),
    ("", SERIAL + "  reconnect:\n    min_s: 0.000001\n", "source.reconnect.min_s", "must be between 0.01 and 3600"),
    ("", SERIAL.replace("50", "1.0e-9"), "source.rate_hz", "must be between 0.1 and 10000"),
    (
        "",
        "source:\n  type: mqtt\n  topic: t\n  rate_hz: 50\n  max_payload_bytes: 1000000000\n",
        "source.max_payload_bytes",
        "must be between 64 and 16777216",
    ),
    (
        "",
        "source:\n  type: mqtt\n  topic: t\n  rate_hz: 50\n  buffer_samples: 0\n",
        "source.buffer_samples",
        "must be between 1 and 1000000",
    ),
    ("", "source:\n  type: replay\n  path: d\n  speed: 0\n", "source.speed", "must be between 0.01 and 10000"),
    ("", "source:\n  type: camera\n  read_timeout_s: 0\n", "source.read_timeout_s", "must be between 0.1 and 3600"),
    ("", "source:\n  type: i2c_imu\n  rate_hz: 5000\n", "source.rate_hz", "must be between 0.1 and 1000"),
]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def line_of(text: str, key: str) -> int:
    last = key.split(".")[-1]
    return next(i for i, line in enumerate(text.splitlines(), start=1) if line.strip().startswith(last + ":"))


@pytest.mark.parametrize(("section", "source", "key", "message"), CASES, ids=[c[2] + ":" + c[0][-14:] for c in CASES])
def test_out_of_range_value_names_file_line_key_and_range(tmp_path, section, source, key, message):
    text = "bundle: b\n" + source + section
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(info.value.problems) == 1, info.value.problems
    line = info.value.problems[0]
    assert line.startswith(f"{path}:{line_of(text, key)}: {key}: {message} (got "), line


def test_validate_config_prints_the_range(tmp_path):
    path = write(tmp_path, "bundle: b\n" + REPLAY + "mqtt:\n  stats_interval_s: 0.000001\n")
    out, err = io.StringIO(), io.StringIO()
    assert validate_files([path], check_paths=False, out=out, err=err) == 1
    assert err.getvalue() == f"{path}:4: mqtt.stats_interval_s: must be between 0.1 and 86400 (got 1e-06)\n"
    assert out.getvalue() == ""


def test_validate_config_command_exits_nonzero_with_the_range(tmp_path):
    path = write(tmp_path, "bundle: b\n" + REPLAY + "mqtt:\n  reconnect_max_s: 1.0e+300\n")
    proc = subprocess.run(
        [sys.executable, "-m", "edge_har", "validate-config", "--no-files", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert f"{path}:4: mqtt.reconnect_max_s: must be between 0.01 and 3600 (got 1e+300)" in proc.stderr


def test_values_at_the_bounds_are_accepted(tmp_path):
    text = textwrap.dedent(
        """
        bundle: b
        source: {type: serial, port: /dev/ttyACM0, rate_hz: 0.1, timeout: 0, reconnect: {min_s: 0.01, max_s: 3600}}
        mqtt: {stats_interval_s: 0.1, reconnect_min_s: 0.01, reconnect_max_s: 3600, queue_size: 200000, keepalive: 1}
        queues: {windows: 10000}
        """
    )
    cfg = load_config(write(tmp_path, text)).config
    assert cfg.mqtt.stats_interval_s == 0.1 and cfg.mqtt.queue_size == 200_000 and cfg.queues.windows == 10_000


def _numeric(annotation: typing.Any) -> bool:
    return bool({int, float} & ({annotation} | set(typing.get_args(annotation))))


def _unbounded(model: type[BaseModel], prefix: str, seen: set[type[BaseModel]]) -> list[str]:
    from edge_har.device.config import _models_in

    if model in seen:
        return []
    seen.add(model)
    out = []
    for name, field in model.model_fields.items():
        if _numeric(field.annotation):
            kinds = {
                k for item in field.metadata for k in ("ge", "gt", "le", "lt") if getattr(item, k, None) is not None
            }
            if not (kinds & {"ge", "gt"} and kinds & {"le", "lt"}):
                out.append(prefix + name)
        for sub in _models_in(field.annotation):
            out += _unbounded(sub, f"{prefix}{name}.", seen)
    return out


def test_every_numeric_setting_has_a_lower_and_an_upper_bound():
    """A new interval or size added without a range fails here, before it reaches a device."""
    seen: set[type[BaseModel]] = set()
    missing = _unbounded(DeviceConfig, "", seen)
    for key, model in source_types().items():
        missing += _unbounded(model, f"source[{key}].", seen)
    # camera `device` is an index or a path (int | str); its index is checked to be >= 0 by a validator
    assert missing == ["source.device"]


def test_a_number_python_cannot_build_is_a_config_error(tmp_path):
    """An integer of 5000 digits made yaml.safe_load raise a bare ValueError out of load_config."""
    path = write(tmp_path, "bundle: b\n" + REPLAY + "mqtt:\n  stats_interval_s: " + "9" * 5000 + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].startswith(f"{path}: a value in the file cannot be read: ValueError")
    deep = write(tmp_path, "bundle: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError):
        load_config(deep)


def test_no_person_warn_s_defaults_to_a_minute_null_turns_it_off_and_a_word_names_the_key(tmp_path):
    assert load_config(write(tmp_path, "bundle: b\n" + REPLAY)).config.video.no_person_warn_s == 60.0
    cfg = load_config(write(tmp_path, "bundle: b\n" + REPLAY + "video:\n  no_person_warn_s: null\n")).config
    assert cfg.video.no_person_warn_s is None
    path = write(tmp_path, "bundle: b\n" + REPLAY + "video:\n  no_person_warn_s: soon\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [
        f"{path}:4: video.no_person_warn_s: Input should be a valid number, unable to parse string as a number "
        "(got 'soon')"
    ]
