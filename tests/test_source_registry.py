"""Sources as plugins: the registry drives the config's source union, make_source and the
daemon's per-source behaviour, and ReopeningSource holds the one reopen-with-backoff loop.

Nothing here needs hardware, OpenCV, pyserial, smbus2 or a broker.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
import pytest
from pydantic import Field

from edge_har.device.config import ConfigError, DeviceConfig, check_files, load_config, source_channel_problems
from edge_har.device.sources import Chunk, ReopeningSource, Source, make_source, plugins, register, unregister
from edge_har.device.sources.config_base import SensorSourceConfig, Where

# A minimal valid section per built-in type (beyond type:), to prove each validates from YAML.
MINIMAL = {
    "replay": "path: recordings",
    "serial": "port: /dev/ttyACM0\n  rate_hz: 50",
    "mqtt": "topic: sensors/+/imu\n  rate_hz: 50",
    "i2c_imu": "bus: 1",
    "camera": "device: 0",
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_every_registered_type_validates_from_yaml(tmp_path):
    assert set(MINIMAL) <= set(plugins()), "a built-in source is missing from the registry"
    for key, plugin in plugins().items():
        body = MINIMAL[key]
        path = write(tmp_path, f"bundle: bundle\nsource:\n  type: {key}\n  {body}\n")
        cfg = load_config(path).config
        assert type(cfg.source) is plugin.config and cfg.source.type == key
        assert isinstance(cfg.source.lossless(), bool) and isinstance(cfg.source.stops_at_end(), bool)


def test_unknown_type_lists_the_registered_ones(tmp_path):
    path = write(tmp_path, "bundle: b\nsource:\n  type: seriall\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [f"{path}:2: source.type: 'seriall' is not a source type; did you mean 'serial'?"]
    path = write(tmp_path, "bundle: b\nsource:\n  port: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [f"{path}:2: source.type: required key is missing: one of {', '.join(plugins())}"]


# ---------------------------------------------------------------------- a source added in a test


class CounterSourceConfig(SensorSourceConfig):
    """A made-up sensor: counts up on every channel (the whole plugin is this config and the class below)."""

    type: Literal["counter"] = Field(description="Source type.")
    rate_hz: float = Field(50.0, gt=0, description="Samples per second.")
    names: Optional[list[str]] = Field(None, min_length=1, description="One name per channel.")
    device: Path = Field(Path("/dev/counter0"), description="Where the counter would be.")

    def channel_count(self) -> Optional[tuple[str, int]]:
        return ("names", len(self.names)) if self.names is not None else None

    def check_files(self, where: Where) -> tuple[list[str], list[str]]:
        return ([], []) if self.device.exists() else ([], [f"{where('device')}: {self.device} is not there now"])


class CounterSource(Source):
    kind = "counter"

    def __init__(self, cfg: CounterSourceConfig, n_channels: int) -> None:
        super().__init__(n_channels)
        self.cfg = cfg
        self.i = 0

    @property
    def rate_hz(self) -> float:
        return self.cfg.rate_hz

    def start(self) -> None:
        pass

    def read(self, timeout: float) -> Optional[Chunk]:
        self.i += 1
        return self._chunk(np.full((1, self.n_channels), self.i, np.float32))

    def stop(self) -> None:
        pass


@pytest.fixture
def counter_registered():
    register(CounterSourceConfig, CounterSource)  # the one registration line
    try:
        yield
    finally:
        unregister("counter")


def test_a_new_source_is_accepted_by_load_config_and_built_by_make_source(tmp_path, counter_registered):
    path = write(
        tmp_path,
        """
        bundle: bundle
        source:
          type: counter
          rate_hz: 20
          names: [a, b, c]
          device: missing-device
        """,
    )
    loaded = load_config(path)
    cfg = loaded.config
    assert isinstance(cfg.source, CounterSourceConfig) and cfg.source.rate_hz == 20
    assert source_channel_problems(cfg, 3) == []
    assert source_channel_problems(cfg, 6) == [("source.names", "lists 3 channels; the model takes 6")]
    _errors, warnings = check_files(loaded)
    assert f"{path}:6: source.device: missing-device is not there now" in warnings

    source = make_source(cfg, n_channels=3, model_rate_hz=50.0, client_id="dev")
    assert isinstance(source, CounterSource) and source.rate_hz == 20
    assert source.read(0.1).samples.tolist() == [[1.0, 1.0, 1.0]]

    # the shared YAML error format covers it too: unknown keys with suggestions and line numbers
    bad = write(tmp_path, "bundle: b\nsource:\n  type: counter\n  rate_hzz: 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert info.value.problems == [f"{bad}:4: source.rate_hzz: unknown key; did you mean 'rate_hz'?"]


def test_unregistering_removes_the_type_again(tmp_path):
    register(CounterSourceConfig, CounterSource)
    unregister("counter")
    path = write(tmp_path, "bundle: b\nsource:\n  type: counter\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "'counter' is not a source type" in info.value.problems[0]
    assert "counter" not in DeviceConfig.model_json_schema()["$defs"]


# ---------------------------------------------------------------------- ReopeningSource


class FlakyDevice:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FlakySource(ReopeningSource):
    """Its device fails to open ``failures`` times, then opens; reading it yields one sample."""

    kind = "flaky"

    def __init__(self, failures: int, min_s: float = 0.02, max_s: float = 0.05) -> None:
        super().__init__(1, "flaky", min_s, max_s)
        self.failures = failures
        self.attempts: list[float] = []
        self.opened: list[bool] = []
        self.fail_reads = False

    @property
    def rate_hz(self) -> float:
        return 10.0

    def _open_device(self) -> Any:
        self.attempts.append(time.monotonic())
        if self.failures > 0:
            self.failures -= 1
            raise OSError("no such device")
        return FlakyDevice()

    def _opened(self, first: bool) -> None:
        self.opened.append(first)

    def read(self, timeout: float) -> Optional[Chunk]:
        if not self._ensure_open(timeout):
            return None
        if self.fail_reads:
            self._lost("read failed")
            return None
        return self._segment_chunk(np.ones((1, 1), np.float32))


def read_until(source: Source, pred, timeout: float = 3.0) -> list[Chunk]:
    out: list[Chunk] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = source.read(0.02)
        if chunk is not None:
            out.append(chunk)
        if pred(out):
            return out
    raise AssertionError(f"condition not met in {timeout} s; status {source.status()}")


def test_reopening_source_backs_off_then_opens():
    source = FlakySource(failures=2, min_s=0.02, max_s=0.05)
    source.start()  # attempt 1 fails
    assert not source.status()["connected"] and source.status()["last_error"] == "cannot open: no such device"
    started = time.monotonic()
    chunks = read_until(source, lambda out: len(out) >= 1)
    assert len(source.attempts) == 3  # two failures, then the open that worked; no busy retrying
    gaps = np.diff(source.attempts)
    assert gaps[0] >= 0.02 - 1e-3 and gaps[1] >= 0.04 - 1e-3  # 0.02 s, then doubled (capped at 0.05)
    assert time.monotonic() - started < 1.0
    assert source.status()["connected"] and source.status()["reconnects"] == 0 and source.opened == [True]
    assert chunks[0].segment_start
    assert not source.read(0.02).segment_start

    # a failure while open: closed, reopened after min_s, counted, and the stream restarts as a new segment
    source.fail_reads = True
    device = source._device
    assert source.read(0.02) is None
    assert device.closed and not source.status()["connected"] and source.status()["last_error"] == "read failed"
    source.fail_reads = False
    chunks = read_until(source, lambda out: len(out) >= 1)
    assert source.status()["reconnects"] == 1 and source.opened == [True, False]
    assert chunks[0].segment_start
    source.stop()
    assert not source.status()["connected"]
    started = time.monotonic()
    assert source.read(0.02) is None and time.monotonic() - started < 0.5  # stopped: reads idle, never raise


def test_reopening_source_reads_return_within_their_timeout_while_absent():
    source = FlakySource(failures=10**6, min_s=0.05, max_s=0.2)
    source.start()
    for _ in range(10):
        started = time.monotonic()
        assert source.read(0.03) is None
        assert time.monotonic() - started < 0.2
    assert source._backoff.delay == pytest.approx(0.2)  # doubled up to max_s and held there
    source.stop()


def test_configs_validate_without_device_libraries():
    """Every source module is imported to build the union, so none may import its device library at import time."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    code = textwrap.dedent(
        """
        import glob, sys
        for name in ("cv2", "serial", "smbus2", "paho", "paho.mqtt", "tensorflow"):
            sys.modules[name] = None  # an import of any of them now raises ImportError
        from edge_har.device.config import load_config
        files = sorted(glob.glob("firmware_configs/*.yaml"))
        assert files
        for f in files:
            load_config(f)
        print(len(files))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_source_modules_do_not_import_the_device_config():
    """The config builds its source union from the sources, so a source must not depend on the config back."""
    import ast

    package = Path(__file__).resolve().parents[1] / "edge_har" / "device" / "sources"
    offenders = []
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            offenders += [f"{path.name}: {name}" for name in names if name.startswith("edge_har.device.config")]
    assert offenders == []


def test_make_source_gives_the_mqtt_input_the_default_broker_unless_it_names_one(tmp_path):
    from edge_har.device.sources.mqtt_input import MqttInputSource

    base = """
        bundle: bundle
        mqtt: {host: broker.example, port: 1884}
        source:
          type: mqtt
          topic: sensors/+/imu
          rate_hz: 50
        """
    source = make_source(load_config(write(tmp_path, base)).config, n_channels=3, model_rate_hz=50.0, client_id="d")
    assert isinstance(source, MqttInputSource)
    assert (source.broker.host, source.broker.port, source.client_id) == ("broker.example", 1884, "d-input")

    own = base.rstrip() + "\n          broker: {host: other.example, port: 1885}\n"
    source = make_source(load_config(write(tmp_path, own)).config, n_channels=3, model_rate_hz=50.0, client_id="d")
    assert isinstance(source, MqttInputSource)
    assert (source.broker.host, source.broker.port) == ("other.example", 1885)
