"""Sources: replay (pacing, loop, formats), serial over a real pty pair (incl. the port
disappearing and coming back), MQTT input against a real mosquitto, MPU-6050 decoding.
Malformed samples are dropped and counted by reason, never fatal."""

from __future__ import annotations

import glob
import json
import os
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from edge_har.device.config import (
    I2cImuSourceConfig,
    MqttSourceConfig,
    ReplaySourceConfig,
    SerialSourceConfig,
)
from edge_har.device.sources.base import Chunk, MalformedCounter, SampleChecker, Source, SourceError
from edge_har.device.sources.replay import ReplaySource


def drain(
    source: Source, until_samples: Optional[int] = None, timeout: float = 10.0, chunks: Optional[list] = None
) -> list[Chunk]:
    """Read chunks until the source finishes, ``until_samples`` arrived, or ``timeout`` passes."""
    out = [] if chunks is None else chunks
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = source.read(0.05)
        if chunk is not None:
            out.append(chunk)
        if until_samples is not None and sum(len(c) for c in out) >= until_samples:
            return out
        if chunk is None and source.finished:
            return out
    if until_samples is not None:
        raise AssertionError(f"only {sum(len(c) for c in out)} of {until_samples} samples arrived in {timeout} s")
    return out


def samples_of(chunks: list[Chunk]) -> np.ndarray:
    return np.concatenate([c.samples for c in chunks]) if chunks else np.empty((0, 3), np.float32)


# ====================================================================== shared checks


def test_sample_checker_reasons():
    counter = MalformedCounter("test")
    checker = SampleChecker(3, counter, valid_range=(-10, 10))
    assert checker.parse_line("1, 2 ,3") == [1.0, 2.0, 3.0]
    assert checker.parse_line("1;2;3") == [1.0, 2.0, 3.0]
    assert checker.parse_line("1 2\t3\r") == [1.0, 2.0, 3.0]
    assert checker.parse_line("   ") is None  # blank: skipped, not counted
    assert checker.parse_line("1,2") is None
    assert checker.parse_line("1,2,3,4") is None
    assert checker.parse_line("x,2,3") is None
    assert checker.parse_line("nan,2,3") is None
    assert checker.parse_line("1,inf,3") is None
    assert checker.parse_line("1,2,11") is None
    assert checker.check_values([1, "2.5", 3]) == [1.0, 2.5, 3.0]
    assert checker.check_values([1, None, 3]) is None
    assert checker.check_values([True, 1, 2]) is None
    assert counter.counts() == {"columns": 2, "text": 3, "nan": 2, "range": 1}
    picked = SampleChecker(3, counter, columns=[1, 2, 3])
    assert picked.parse_line("1234,0.1,0.2,0.3") == pytest.approx([0.1, 0.2, 0.3])
    assert picked.parse_line("1234,0.1") is None
    arr = np.array([[0, 0, 0], [np.nan, 0, 0], [20, 0, 0], [1, 1, 1]], np.float32)
    np.testing.assert_array_equal(checker.check_array(arr), [[0, 0, 0], [1, 1, 1]])


# ====================================================================== replay


def write_folder(root: Path) -> Path:
    """Two classes, three recordings, one malformed line."""
    (root / "Sit").mkdir(parents=True)
    (root / "Walk").mkdir()
    (root / "Sit" / "a.txt").write_text("".join(f"{i} {i + 1} {i + 2}\n" for i in range(10)))
    (root / "Walk" / "b.txt").write_text("".join(f"{100 + i} 0 1\n" for i in range(4)) + "oops 1 2\n" + "104 0 1\n")
    (root / "Walk" / "c.txt").write_text("".join(f"{200 + i} 5 5\n" for i in range(6)))
    return root


def replay(path: Path, **options) -> ReplaySource:
    cfg = ReplaySourceConfig(type="replay", path=path, **options)
    source = ReplaySource(cfg, n_channels=3, default_rate_hz=32.0)
    source.start()
    return source


def test_replay_fast_delivers_every_sample_with_labels_segments_and_bad_lines_counted(tmp_path):
    source = replay(write_folder(tmp_path / "data"), realtime=False, chunk_samples=4)
    chunks = drain(source)
    assert source.finished
    data = samples_of(chunks)
    assert len(data) == 10 + 5 + 6
    np.testing.assert_array_equal(data[:3], [[0, 1, 2], [1, 2, 3], [2, 3, 4]])
    # chunks never span recordings; each recording starts a segment and carries its label
    starts = [(c.label, float(c.samples[0, 0])) for c in chunks if c.segment_start]
    assert starts == [("Sit", 0.0), ("Walk", 100.0), ("Walk", 200.0)]
    assert [len(c) for c in chunks] == [4, 4, 2, 4, 1, 4, 2]
    assert source.malformed.counts() == {"text": 1}  # by reason, as the live sources count
    assert source.rate_hz == 32.0  # no rate in the files or config: the model's
    assert source.read(0.01) is None  # finished stays finished


def test_replay_counts_bad_lines_by_reason_and_one_bad_byte_costs_one_line(tmp_path):
    """Bad lines are counted by the live sources' reasons, and one byte that is not UTF-8 costs its
    line ('encoding'), not the whole file."""
    root = tmp_path / "data"
    (root / "Walk").mkdir(parents=True)
    good = b"".join(f"{i} 0 1\n".encode() for i in range(8))
    (root / "Walk" / "a.txt").write_bytes(
        good + b"1 2\n" + b"1 x 2\n" + b"nan 1 2\n" + b"3 \xff 4\n" + b"inf 0 0\n" + good
    )
    source = replay(root, realtime=False)
    data = samples_of(drain(source))
    assert len(data) == 16
    assert source.malformed.counts() == {"columns": 1, "text": 1, "nan": 2, "encoding": 1}
    # a single-file replay and a long CSV count the same way
    one = tmp_path / "one.txt"
    one.write_bytes(good + b"\xc3\x28 1 2\n")
    source = ReplaySource(ReplaySourceConfig(type="replay", path=one, format="file", realtime=False), 3, 32.0)
    source.start()
    assert len(samples_of(drain(source))) == 8 and source.malformed.counts() == {"encoding": 1}
    csv = tmp_path / "long.csv"
    csv.write_bytes(
        b"label,x,y,z\n" + b"".join(f"Walk,{i},0,1\n".encode() for i in range(8)) + b"Walk,\xff,0,1\nWalk,1,2\n"
    )
    cfg = ReplaySourceConfig(type="replay", path=csv, format="csv", label_col="label", realtime=False)
    source = ReplaySource(cfg, 3, 32.0)
    source.start()
    assert len(samples_of(drain(source))) == 8 and source.malformed.counts() == {"encoding": 1, "columns": 1}


def test_training_readers_stay_strict_about_encoding(tmp_path):
    from edge_har.core.recordings import RecordingError, read_samples_result

    path = tmp_path / "a.txt"
    path.write_bytes(b"1 2 3\n4 \xff 6\n")
    with pytest.raises(RecordingError, match="not a UTF-8 text file"):
        read_samples_result(path)


def test_replay_realtime_paces_at_rate_and_speed(tmp_path):
    data = tmp_path / "one.csv"
    data.write_text("".join(f"{i},0,0\n" for i in range(31)))

    def timed(**options) -> float:
        source = replay(data, format="file", label="Walk", rate_hz=100.0, **options)
        started = time.monotonic()
        chunks = drain(source)
        assert len(samples_of(chunks)) == 31 and chunks[0].label == "Walk"
        return time.monotonic() - started

    real = timed(realtime=True)
    double = timed(realtime=True, speed=2.0)
    fast = timed(realtime=False)
    # 31 samples at 100 Hz: the last is due 0.30 s after the first
    assert 0.27 <= real <= 0.6, real
    assert 0.13 <= double <= 0.35, double
    assert fast < 0.1, fast


def test_replay_loop_restarts_as_a_new_segment(tmp_path):
    data = tmp_path / "one.txt"
    data.write_text("1 1 1\n2 2 2\n3 3 3\n")
    source = replay(data, format="file", realtime=False, loop=True, chunk_samples=2)
    chunks = [source.read(0.05) for _ in range(6)]
    assert not source.finished
    assert [c.samples[:, 0].tolist() for c in chunks] == [[1, 2], [3], [1, 2], [3], [1, 2], [3]]
    assert [c.segment_start for c in chunks] == [True, False, True, False, True, False]
    assert source.status()["passes"] == 2


def test_replay_csv_format_and_valid_range(tmp_path):
    data = tmp_path / "long.csv"
    rows = ["t,activity,x,y,z"]
    rows += [f"{i / 50:.2f},Sit,0,0,{i}" for i in range(5)]
    rows += [f"{(5 + i) / 50:.2f},Walk,1,1,{60 * i}" for i in range(4)]  # 120 and 180 are out of range
    data.write_text("\n".join(rows) + "\n")
    source = replay(
        data, format="csv", label_col="activity", timestamp_col="t", realtime=False, valid_range=(-100, 100)
    )
    assert source.rate_hz == pytest.approx(50.0)  # from the timestamp column
    chunks = drain(source)
    assert [(c.label, len(c)) for c in chunks] == [("Sit", 5), ("Walk", 2)]
    assert source.malformed.counts() == {"range": 2}


def test_replay_of_a_missing_or_empty_path_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        replay(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no class folders"):
        replay(tmp_path / "empty")


# ====================================================================== serial over a pty pair


class FakeMicrocontroller:
    """The master side of a pty standing in for a microcontroller on USB serial.

    ``port`` is a stable symlink (like /dev/serial/by-id/...) to the current slave device, so
    the port can disappear (master closed, link removed) and come back under a new /dev/pts/N.
    """

    def __init__(self, tmp_path: Path) -> None:
        self.port = tmp_path / "ttyIMU"
        self.master: Optional[int] = None
        self.plug()

    def plug(self) -> None:
        master, slave = os.openpty()
        name = os.ttyname(slave)
        os.close(slave)  # the source opens it by name, as it would a real device
        if self.port.is_symlink():
            self.port.unlink()
        self.port.symlink_to(name)
        self.master = master

    def unplug(self) -> None:
        if self.master is not None:
            os.close(self.master)
            self.master = None
        if self.port.is_symlink():
            self.port.unlink()

    def send(self, text: str) -> None:
        assert self.master is not None
        os.write(self.master, text.encode())


@pytest.fixture
def mcu(tmp_path):
    pytest.importorskip("serial", reason="pyserial is not installed (pip install 'edge-har[device]')")
    device = FakeMicrocontroller(tmp_path)
    yield device
    device.unplug()


def serial_source(port: Path, **options):
    from edge_har.device.sources.serial_source import SerialSource

    options.setdefault("reconnect", {"min_s": 0.05, "max_s": 0.2})
    cfg = SerialSourceConfig(type="serial", port=str(port), rate_hz=50.0, **options)
    source = SerialSource(cfg, n_channels=3)
    source.start()
    return source


def test_serial_reads_lines_and_counts_malformed_ones(mcu):
    source = serial_source(mcu.port, valid_range=(-16, 16), timeout=0)
    try:
        assert source.status()["connected"]
        # opening lands mid-line: the tail before the first newline is not a malformed sample
        mcu.send("98,0.12\n")
        mcu.send("0.0,-1.0,0.1\n1,2\nax,ay,az\nnan,0,0\n0,0,99\n\xff\xfe,1,1\n")
        mcu.send("0.5,0.5,0.5\r\n0.25,0.25,")  # CRLF, and a line that arrives in two reads
        chunks = drain(source, until_samples=2, timeout=5)
        mcu.send("0.25\n")
        drain(source, until_samples=3, timeout=5, chunks=chunks)
        np.testing.assert_allclose(samples_of(chunks), [[0.0, -1.0, 0.1], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]])
        assert chunks[0].segment_start and not any(c.segment_start for c in chunks[1:])
        assert source.malformed.counts() == {"columns": 1, "text": 2, "nan": 1, "range": 1}
        assert source.rate_hz == 50.0
    finally:
        source.stop()


def test_serial_port_disappearing_and_coming_back(mcu):
    source = serial_source(mcu.port, timeout=0)
    try:
        mcu.send("\n1,1,1\n")
        assert samples_of(drain(source, until_samples=1, timeout=5)).tolist() == [[1, 1, 1]]
        mcu.unplug()  # the cable is pulled
        deadline = time.monotonic() + 5
        while source.status()["connected"] and time.monotonic() < deadline:
            assert source.read(0.05) is None
        status = source.status()
        assert not status["connected"] and "lost" in status["last_error"]
        for _ in range(5):  # absent: reads return None within their timeout, nothing raises
            started = time.monotonic()
            assert source.read(0.05) is None
            assert time.monotonic() - started < 0.5
        mcu.plug()  # back, under a new /dev/pts/N behind the same name
        chunks: list[Chunk] = []
        deadline = time.monotonic() + 5
        while not source.status()["connected"] and time.monotonic() < deadline:
            source.read(0.05)
        assert source.status()["connected"], source.status()
        mcu.send("partial\n2,2,2\n3,3,3\n")
        drain(source, until_samples=2, timeout=5, chunks=chunks)
        assert samples_of(chunks).tolist() == [[2, 2, 2], [3, 3, 3]]
        assert chunks[0].segment_start  # the gap starts a new segment: no window spans it
        assert source.status()["reconnects"] == 1
        assert source.malformed.total == 0
    finally:
        source.stop()


def test_serial_silent_port_is_reopened_after_timeout(mcu):
    source = serial_source(mcu.port, timeout=0.3)
    try:
        deadline = time.monotonic() + 5
        while source.status()["reconnects"] < 1 and time.monotonic() < deadline:
            source.read(0.05)
        assert source.status()["reconnects"] >= 1
        assert "no data for 0.3 s" in source.status()["last_error"]
    finally:
        source.stop()


def test_serial_absent_at_start_is_waited_for(tmp_path):
    pytest.importorskip("serial")
    port = tmp_path / "ttyLATER"
    source = serial_source(port, timeout=0)
    try:
        assert not source.status()["connected"] and "cannot open" in source.status()["last_error"]
        assert source.read(0.05) is None
        device = FakeMicrocontroller.__new__(FakeMicrocontroller)
        device.port, device.master = port, None
        device.plug()
        try:
            deadline = time.monotonic() + 5
            while not source.status()["connected"] and time.monotonic() < deadline:
                source.read(0.05)
            device.send("\n4,5,6\n")
            assert samples_of(drain(source, until_samples=1, timeout=5)).tolist() == [[4, 5, 6]]
        finally:
            device.unplug()
    finally:
        source.stop()


# ====================================================================== MQTT input against a real broker


def mqtt_input(broker, **options):
    from edge_har.device.sources.mqtt_input import MqttInputSource
    from edge_har.mqtt.config import MqttConfig

    options.setdefault("rate_hz", 50.0)
    cfg = MqttSourceConfig(type="mqtt", **options)
    broker_cfg = MqttConfig(host=broker.host, port=broker.port, reconnect_min_s=0.05, reconnect_max_s=0.5)
    source = MqttInputSource(cfg, broker_cfg, n_channels=3, client_id=f"test-input-{os.getpid()}-{id(cfg)}")
    source.start()
    deadline = time.monotonic() + 10
    while not source.status()["connected"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert source.status()["connected"], broker.log_text()[-2000:]
    time.sleep(0.1)  # the SUBACK follows the CONNACK
    return source


def send(broker, topic: str, *payloads) -> None:
    import paho.mqtt.publish as publish

    publish.multiple(
        [{"topic": topic, "payload": p if isinstance(p, (bytes, str)) else json.dumps(p), "qos": 1} for p in payloads],
        hostname=broker.host,
        port=broker.port,
    )


def test_mqtt_input_json_payloads_one_or_many_samples(mosquitto_broker):
    source = mqtt_input(mosquitto_broker, topic="sensors/+/imu", fields=["ax", "ay", "az"], valid_range=(-16, 16))
    try:
        send(
            mosquitto_broker,
            "sensors/n1/imu",
            {"samples": [[0, 0, 1], [0, 0, 2]]},
            {"ax": 1, "ay": 2, "az": 3},
            {"samples": [{"ax": 4, "ay": 5, "az": 6}, {"ax": 7, "ay": 8}]},  # second sample lacks az
            [[9, 9, 9], [1, "x", 1], [2, 2, 200]],  # bare list of samples; text; out of range
            [10, 10, 10],
            b"{not json",
            {"samples": "nope"},
        )
        chunks = drain(source, until_samples=6, timeout=10)
        assert samples_of(chunks).tolist() == [[0, 0, 1], [0, 0, 2], [1, 2, 3], [4, 5, 6], [9, 9, 9], [10, 10, 10]]
        assert [len(c) for c in chunks] == [2, 1, 1, 1, 1]  # one chunk per message
        assert chunks[0].segment_start and not any(c.segment_start for c in chunks[1:])
        time.sleep(0.2)  # the last two (bad) messages
        assert source.malformed.counts() == {"columns": 1, "text": 1, "range": 1, "payload": 2}
    finally:
        source.stop()


def test_mqtt_input_csv_and_resubscribe_after_broker_restart(mosquitto_broker):
    source = mqtt_input(mosquitto_broker, topic="sensors/n2/imu", format="csv")
    try:
        send(mosquitto_broker, "sensors/n2/imu", "1,2,3\n4,5,6\n", "7,8\n")
        chunks = drain(source, until_samples=2, timeout=10)
        assert samples_of(chunks).tolist() == [[1, 2, 3], [4, 5, 6]]
        mosquitto_broker.stop()
        deadline = time.monotonic() + 10
        while source.status()["connected"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not source.status()["connected"]
        assert source.read(0.05) is None  # no broker: nothing, no exception
        mosquitto_broker.start()
        deadline = time.monotonic() + 10
        while not source.status()["connected"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert source.status()["reconnects"] == 1
        time.sleep(0.2)
        send(mosquitto_broker, "sensors/n2/imu", "9,9,9\n")
        after = drain(source, until_samples=1, timeout=10)
        assert samples_of(after).tolist() == [[9, 9, 9]]
        assert after[0].segment_start  # a reconnect is a gap in the stream
        assert source.malformed.counts() == {"columns": 1}
    finally:
        source.stop()


def test_mqtt_input_buffer_overflow_drops_oldest_and_counts(mosquitto_broker):
    source = mqtt_input(mosquitto_broker, topic="sensors/n3/imu", buffer_samples=4)
    try:
        send(mosquitto_broker, "sensors/n3/imu", *[{"samples": [[i, i, i], [i, i, i]]} for i in range(5)])
        time.sleep(0.5)  # all arrive before anything is read
        chunks = drain(source, until_samples=4, timeout=5)
        assert samples_of(chunks)[:, 0].tolist() == [3, 3, 4, 4]
        assert chunks[0].segment_start  # the oldest were dropped: a hole before what is left
        assert source.malformed.counts() == {"overflow": 6}
    finally:
        source.stop()


# ====================================================================== I2C IMU (MPU-6050)


def test_mpu6050_decoding_of_real_register_bytes():
    from edge_har.device.sources.i2c_imu import decode_block, decode_sample

    # A sensor lying flat, +-2 g and +-250 deg/s: az = 0x4000 = +1 g, temperature 0xF170 = -3728
    # (25.57 C), gyro x = 0xFF7E = -130 (-0.99 deg/s), gyro z = 0x0083 = 131 (+1 deg/s).
    flat = bytes([0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0xF1, 0x70, 0xFF, 0x7E, 0x00, 0x00, 0x00, 0x83])
    values = decode_block(flat, accel_range=2, gyro_range=250)
    np.testing.assert_allclose(values, [0, 0, 1.0, 25.5653, -0.99237, 0, 1.0], atol=1e-4)
    # Upside down at +-4 g: az = 0xE000 = -8192 = -1 g; ax = 0x7FFF is full scale (+4 g)
    flipped = bytes([0x7F, 0xFF, 0x00, 0x10, 0xE0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00])
    assert decode_sample(flipped, ["accel_x", "accel_y", "accel_z"], 4, 500) == pytest.approx(
        [32767 / 8192, 16 / 8192, -1.0]
    )
    assert decode_sample(flipped, ["gyro_y", "accel_z"], 4, 500) == pytest.approx([-32768 / 65.5, -1.0])
    with pytest.raises(ValueError, match="14 bytes"):
        decode_block(flat[:12], 2, 250)


def test_mpu6050_setup_registers():
    from edge_har.device.sources.i2c_imu import setup_registers

    regs = dict(setup_registers(rate_hz=50, dlpf=3, accel_range=4, gyro_range=500))
    assert regs == {0x6B: 0x01, 0x1A: 0x03, 0x19: 19, 0x1B: 0x08, 0x1C: 0x08}  # 1 kHz / (1 + 19) = 50 Hz
    regs = dict(setup_registers(rate_hz=1000, dlpf=0, accel_range=16, gyro_range=2000))
    assert regs[0x19] == 7 and regs[0x1C] == 0x18 and regs[0x1B] == 0x18  # 8 kHz / 8
    assert dict(setup_registers(rate_hz=2, dlpf=6, accel_range=2, gyro_range=250))[0x19] == 255  # clamped
    with pytest.raises(ValueError):
        setup_registers(50, 3, accel_range=3, gyro_range=500)


@pytest.mark.hardware
@pytest.mark.skipif(not glob.glob("/dev/i2c-*"), reason="no I2C bus (/dev/i2c-*) on this machine")
def test_i2c_imu_reads_a_real_mpu6050_at_rate():
    pytest.importorskip("smbus2", reason="pip install 'edge-har[imu]'")
    from edge_har.device.sources.i2c_imu import I2cImuSource

    bus = int(sorted(glob.glob("/dev/i2c-*"))[-1].rsplit("-", 1)[1]) if not os.path.exists("/dev/i2c-1") else 1
    source = I2cImuSource(I2cImuSourceConfig(type="i2c_imu", bus=bus, rate_hz=50), n_channels=3)
    source.start()
    try:
        if not source.status()["connected"]:
            pytest.skip(f"no MPU-6050 answers at 0x68 on /dev/i2c-{bus}: {source.status()['last_error']}")
        started = time.monotonic()
        data = samples_of(drain(source, until_samples=50, timeout=5))
        elapsed = time.monotonic() - started
        assert 0.8 <= elapsed <= 1.5, elapsed  # 50 samples at 50 Hz
        magnitude = np.linalg.norm(data, axis=1)
        assert 0.8 < np.median(magnitude) < 1.2  # at rest, gravity only
        assert source.delivers_physical_units
    finally:
        source.stop()
