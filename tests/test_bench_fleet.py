"""``edge-har bench fleet``: simulated devices (the daemon's Publisher) through a real mosquitto, every message counted."""

from __future__ import annotations

import json
import re

import pytest

from edge_har.benchmarks.fleet import FleetError, Tally, parse_broker, search_capacity, workers_for
from edge_har.cli import main
from edge_har.mqtt.local_broker import LocalBroker, find_mosquitto

needs_mosquitto = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")


@needs_mosquitto
def test_five_devices_deliver_every_prediction_once_and_in_order(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["bench", "fleet", "--devices", "5", "--rate", "10", "--duration", "3", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    section = json.loads((out / "results.json").read_text())["suites"]["fleet"]
    for key in ("date", "git", "machine", "settings", "definition", "broker", "runs", "noisy"):
        assert key in section, key
    assert section["broker"]["private"] and section["broker"]["address"] != "127.0.0.1:1883"
    (run,) = section["runs"]
    assert run["devices"] == run["connected"] == 5 and run["publisher_processes"] == workers_for(5)
    # 5 devices x 10/s x 3 s, each device's phase spread over the period: all 150 made and sent
    assert run["scheduled"] == run["sent"] == 150
    assert run["received"] == run["distinct"] == run["sent"]
    assert run["lost"] == run["duplicated"] == run["out_of_order"] == run["unparsable"] == run["unexpected"] == 0
    assert run["publisher"]["published"] == 150 and run["publisher"]["dropped_offline"] == 0
    lat = run["latency_ms"]
    assert lat["n"] == 150 and 0 < lat["p50_ms"] <= lat["p99_ms"] < 2000
    cpu = run["cpu_percent_of_one_core"]
    assert cpu["broker"] is not None and cpu["broker"] >= 0 and cpu["publishers"] > 0 and cpu["subscribers"] > 0
    assert run["sustained"] and run["verdict"] == "sustained"
    assert re.search(r"^\|\s+5 \|\s+10 \|\s+3 \|\s+150 \|\s+150 \|\s+0 \|", printed, re.M), printed
    if "fleet" in section.get("plots", {}):
        assert (out / "fleet.png").stat().st_size > 0


@needs_mosquitto
def test_an_existing_broker_is_used_and_its_cpu_left_unmeasured(tmp_path, capsys):
    broker = LocalBroker(tmp_path / "broker").start()
    try:
        out = tmp_path / "out"
        args = ["bench", "fleet", "--devices", "3", "--duration", "1", "--broker", broker.address]
        assert main(args + ["--out", str(out), "--no-progress", "--workers", "1"]) == 0
    finally:
        broker.stop()
    section = json.loads((out / "results.json").read_text())["suites"]["fleet"]
    assert section["broker"] == {"address": broker.address, "private": False}
    (run,) = section["runs"]
    assert run["sent"] == run["distinct"] == 30 and run["lost"] == 0
    assert run["cpu_percent_of_one_core"]["broker"] is None


def test_an_unreachable_broker_is_a_clear_error(tmp_path, capsys):
    from edge_har.mqtt.local_broker import free_port

    port = free_port()
    args = ["bench", "fleet", "--devices", "1", "--duration", "1", "--broker", f"127.0.0.1:{port}"]
    assert main(args + ["--out", str(tmp_path), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert f"--broker 127.0.0.1:{port}: cannot connect" in err and "Traceback" not in err


def test_tally_counts_duplicates_and_out_of_order_by_device_run_and_seq():
    tally = Tally()
    for device, run, seq in [("a", "r1", 0), ("a", "r1", 2), ("a", "r1", 1), ("a", "r1", 2), ("b", "r1", 0)]:
        tally.add(device, run, seq, made_ts=100.0, at=100.002)
    tally.add("a", "r2", 0, made_ts=100.0, at=100.001)  # a restart: same seq, new run id, not a duplicate
    tally.add_payload(b"not json", at=100.0)
    assert tally.received == 7
    assert tally.duplicated == 1 and tally.out_of_order == 1 and tally.unparsable == 1
    assert tally.distinct() == 5
    assert len(tally.latencies_ms) == 5 and all(abs(v - 2.0) < 1.01 for v in tally.latencies_ms)


def test_the_search_brackets_the_largest_sustained_count_within_its_budget():
    capacity = 370
    now = [0.0]

    def clock() -> float:
        return now[0]

    def trial(n: int) -> dict:
        now[0] += 20.0  # each trial costs 20 s of the budget
        return {"devices": n, "sustained": n <= capacity}

    found = search_capacity(trial, start=50, budget_s=1000, max_devices=10000, resolution=0.05, clock=clock)
    assert found["largest_sustained"] <= capacity < found["smallest_failing"]
    assert found["smallest_failing"] - found["largest_sustained"] <= max(1, int(0.05 * found["largest_sustained"]))
    assert [s["devices"] for s in found["steps"]][:4] == [50, 100, 200, 400]

    now[0] = 0.0
    short = search_capacity(trial, start=50, budget_s=50, max_devices=10000, clock=clock)
    assert len(short["steps"]) == 2 and short["stopped"] == "budget spent"  # a third trial would overrun 50 s
    assert short["largest_sustained"] == 100 and short["smallest_failing"] is None

    now[0] = 0.0
    tiny = search_capacity(
        lambda n: trial(n) | {"sustained": False}, start=4, budget_s=1000, max_devices=99, clock=clock
    )
    assert tiny["largest_sustained"] is None and tiny["smallest_failing"] == 1


def test_workers_and_broker_address():
    assert workers_for(5, None) >= 1 and workers_for(1, 4) == 1
    assert workers_for(1000, 1) == 4  # at most 250 devices per process (paho's select() bound)
    assert parse_broker("broker.lan:1883") == ("broker.lan", 1883)
    for bad in ("broker.lan", ":1883", "h:x", "h:70000"):
        with pytest.raises(FleetError):
            parse_broker(bad)


@needs_mosquitto
@pytest.mark.slow
def test_search_through_the_command_line_steps_up_through_a_real_broker(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["bench", "fleet", "--devices", "2", "--duration", "1", "--search", "--search-start", "2"]
    args += ["--search-trial-s", "1", "--search-budget-s", "6", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    search = json.loads((out / "results.json").read_text())["suites"]["fleet"]["search"]
    counts = [s["devices"] for s in search["steps"]]
    assert counts[:2] == [2, 4] and search["largest_sustained"] >= 4  # a few devices at 10/s: sustained
    for step in search["steps"]:
        assert step["lost"] == 0 and step["sent"] == step["distinct"] == step["devices"] * 10
    assert "largest device count sustained without loss" in capsys.readouterr().out
