"""The MQTT input source bounds what one message can cost: its size and the samples taken from it.

Unbounded, one 10 MB JSON message of samples takes the daemon to 260-420 MB resident (its unit's
MemoryMax is 300M) and injects hundreds of windows of fabricated data. A message over
``max_payload_bytes`` is dropped before it is decoded (counted as ``too_large``) and at most
``max_samples_per_message`` samples are taken from one message (the rest counted as ``too_many``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from edge_har.device.config import MqttSourceConfig
from edge_har.device.sources.base import MalformedCounter, SampleChecker
from edge_har.device.sources.mqtt_input import DEFAULT_MAX_PAYLOAD_BYTES, parse_payload
from tests.test_sources import drain, mqtt_input, samples_of, send

REPO = Path(__file__).resolve().parents[1]


def samples_json(n: int) -> bytes:
    rng = np.random.default_rng(0)
    return json.dumps({"samples": np.round(rng.normal(size=(n, 3)), 4).tolist()}).encode()


def ten_mb_message() -> bytes:
    payload = samples_json(500_000)
    assert len(payload) > 10_000_000
    return payload


def checker() -> SampleChecker:
    return SampleChecker(3, MalformedCounter("test"))


def cfg(**options) -> MqttSourceConfig:
    return MqttSourceConfig(type="mqtt", topic="t", rate_hz=50, **options)


def test_a_message_over_the_payload_bound_is_dropped_unparsed_and_counted():
    c = checker()
    out = parse_payload(ten_mb_message(), cfg(), c)
    assert out.shape == (0, 3)
    assert c.malformed.counts() == {"too_large": 1}
    # at the bound it is parsed (then capped at max_samples_per_message)
    small = cfg(max_payload_bytes=4096)
    payload = samples_json(100)
    assert len(payload) <= 4096
    assert len(parse_payload(payload, small, c)) == 100
    assert len(parse_payload(payload + b" " * (4097 - len(payload)), small, c)) == 0
    assert c.malformed.counts() == {"too_large": 2}
    assert cfg().max_payload_bytes == DEFAULT_MAX_PAYLOAD_BYTES == 256 * 1024


def test_samples_past_the_per_message_bound_are_counted_as_too_many():
    c = checker()
    # default: 10 s of samples at rate_hz (50 Hz -> 500)
    assert cfg().samples_per_message() == 500
    out = parse_payload(samples_json(2000), cfg(), c)
    assert out.shape == (500, 3)
    assert c.malformed.counts() == {"too_many": 1500}
    csv_cfg = cfg(format="csv", max_samples_per_message=3)
    out = parse_payload(b"1,2,3\n\n4,5,6\n7,8,9\n10,11,12\n13,14,15\n", csv_cfg, c)
    assert out.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert c.malformed.counts() == {"too_many": 1502}


def test_real_broker_oversize_and_overlong_messages_are_counted_good_ones_kept(mosquitto_broker):
    source = mqtt_input(mosquitto_broker, topic="sensors/big/imu", max_samples_per_message=50)
    try:
        good = [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]
        send(mosquitto_broker, "sensors/big/imu", ten_mb_message(), samples_json(80), {"samples": good})
        chunks = drain(source, 52, timeout=10)
        got = samples_of(chunks)
        assert got.shape == (52, 3)
        np.testing.assert_allclose(got[-2:], good, rtol=1e-6)
        counts = source.malformed.counts()
        assert counts == {"too_large": 1, "too_many": 30}, counts
        assert source.status()["buffered_samples"] == 0
    finally:
        source.stop()


def _rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def daemon_rss_with_a_10mb_message(bundle: Path, broker, listener, tmp_path: Path) -> dict:
    """Start `edge-har run` on an MQTT input, feed a normal stream, then one 10 MB message.

    Returns RSS (MiB) before and the peak (VmHWM) after, and the samples_dropped of the last stats."""
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "device_id": "pi-rss",
                "bundle": str(bundle),
                "source": {"type": "mqtt", "topic": "sensors/rss/imu", "rate_hz": 32},
                "mqtt": {"host": broker.host, "port": broker.port, "stats_interval_s": 0.5},
            }
        )
    )
    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_har", "run", "--config", str(config)], cwd=REPO, stdout=log, stderr=log
    )
    try:
        listener.wait_for(
            lambda ms: any(m.topic == "edge-har/pi-rss/stats" for m in ms), timeout=60, what="the first stats"
        )
        time.sleep(0.5)  # the input's SUBACK
        for _ in range(5):  # a normal stream first, so the baseline includes windowing and inference
            send(broker, "sensors/rss/imu", samples_json(64))
            time.sleep(0.1)
        time.sleep(1.0)
        before = _rss_kb(proc.pid, "VmRSS")
        send(broker, "sensors/rss/imu", ten_mb_message())
        time.sleep(3.0)
        peak = _rss_kb(proc.pid, "VmHWM")
        after = _rss_kb(proc.pid, "VmRSS")
        n = len(listener.on("edge-har/pi-rss/stats"))
        listener.wait_count("edge-har/pi-rss/stats", n + 2, timeout=10)
        dropped = listener.payloads("edge-har/pi-rss/stats")[-1]["samples_dropped"]
        return {"before_mb": before / 1024, "peak_mb": peak / 1024, "after_mb": after / 1024, "dropped": dropped}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.mark.slow
def test_daemon_memory_stays_bounded_with_a_10mb_input_message(tiny_bundle, mosquitto_broker, mqtt_listener, tmp_path):
    listener = mqtt_listener(mosquitto_broker, ["edge-har/#"])
    figures = daemon_rss_with_a_10mb_message(tiny_bundle, mosquitto_broker, listener, tmp_path)
    print(f"\nRSS with one 10 MB input message: {json.dumps(figures)}")
    (Path(os.environ.get("EDGE_HAR_RSS_OUT", tmp_path)) / "rss_10mb.json").write_text(json.dumps(figures))
    assert figures["dropped"].get("too_large") == 1, figures
    # the payload itself (10 MB) passes through paho's buffer; nothing of it may be parsed or kept
    # (paho holds the 10 MB packet in its read buffer and once more as the payload: ~2x the message)
    assert figures["peak_mb"] - figures["before_mb"] < 60, figures
    assert figures["after_mb"] - figures["before_mb"] < 30, figures
