"""``edge-har bench e2e``: the real daemon, a real mosquitto started by the suite, a real subscriber."""

from __future__ import annotations

import json

import pytest

from edge_har.cli import main
from edge_har.mqtt.local_broker import LocalBroker, find_mosquitto

HAVE_MOSQUITTO = find_mosquitto() is not None

pytestmark = pytest.mark.skipif(not HAVE_MOSQUITTO, reason="mosquitto is not installed (apt-get install mosquitto)")


@pytest.mark.slow  # ~15 s: a real daemon, broker and subscriber for every step
def test_quick_run_measures_latency_throughput_cpu_and_memory(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["bench", "e2e", str(tiny_bundle), "--quick", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    section = json.loads((out / "results.json").read_text())["suites"]["e2e"]
    for key in ("date", "git", "machine", "runtimes", "bundle", "definition", "replay", "broker", "phases", "camera"):
        assert key in section, key
    assert section["camera"]["status"] == "not applicable" and "not a camera bundle" in section["camera"]["detail"]
    phases = {p["phase"]: p for p in section["phases"]}
    realtime, fast = phases["realtime"], phases["max_throughput"]
    assert realtime["status"] == "ok" and fast["status"] == "ok", section["phases"]

    # a sensor at 32 Hz with a stride of 16 samples: 2 windows/s, all of them delivered
    assert realtime["windows_per_s_expected"] == pytest.approx(2.0)
    assert realtime["windows_per_s"] == pytest.approx(2.0, rel=0.35)
    assert realtime["seq_gaps"] == 0
    lat = realtime["latency_ms"]
    assert lat["n"] == realtime["predictions"] >= 8
    assert 0 < lat["p50_ms"] <= lat["p99_ms"] < 2000
    daemon = realtime["daemon_e2e_ms"]
    inference = realtime["inference_ms"]
    # the parts fit inside the whole: inference < the daemon's own e2e < sample-in to prediction-received
    assert 0 < inference["p50_ms"] <= daemon["p50_ms"] <= lat["p50_ms"]
    assert realtime["startup_s"] > 63 / 32  # one whole window of samples arrives in real time first
    assert realtime["exit_status"] == 0  # SIGTERM: a clean stop

    # as fast as possible, the daemon does far more than a real-time sensor asks of it
    assert fast["windows_per_s"] > 10 * realtime["windows_per_s"]
    assert fast["cpu_percent_of_one_core"] > realtime["cpu_percent_of_one_core"]
    for p in (realtime, fast):
        assert 0 <= p["cpu_percent_of_one_core"] <= 100 * (section["machine"]["cores_logical"] + 1)
        assert 0 <= p["cpu_share_of_machine"] <= 1.5
        assert 20 < p["rss_mb_mean"] <= p["rss_mb_peak"] < 2000
        assert p["psutil_samples"] >= 3
    assert "realtime x1" in printed and "not a camera bundle" in printed


def test_local_broker_starts_on_a_free_port_and_stops(tmp_path):
    import socket

    broker = LocalBroker(tmp_path).start()
    try:
        with socket.create_connection((broker.host, broker.port), timeout=2):
            pass
        assert broker.port != 1883
    finally:
        broker.stop()
    with pytest.raises(OSError):
        socket.create_connection((broker.host, broker.port), timeout=1).close()
