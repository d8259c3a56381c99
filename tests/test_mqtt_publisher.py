"""The MQTT publisher against a real mosquitto: schema, outages, ordering, bound, status, Last Will.

Tests that need a subscriber to see what was published *while it could not be connected* (broker
down at start, broker killed) give it a persistent session (clean_session=False) on a broker with
persistence: the broker keeps its subscription across the restart and queues the messages for it,
so the test does not depend on which client reconnects first.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edge_har.mqtt.config import MqttConfig
from edge_har.mqtt.payloads import PREDICTION_FIELDS, prediction_payload, stats_payload, validate_prediction
from edge_har.mqtt.publisher import Publisher

LABELS = ["Walk", "Sit", "Climb_stairs"]
DEVICE = "pi-test"
PRED_TOPIC = f"edge-har/{DEVICE}/prediction"
STATUS_TOPIC = f"edge-har/{DEVICE}/status"
REPO = Path(__file__).resolve().parents[1]


def fast_cfg(broker, **overrides) -> MqttConfig:
    """Short keepalive and backoff so outage tests take seconds, not minutes."""
    values = dict(host=broker.host, port=broker.port, keepalive=5, reconnect_min_s=0.1, reconnect_max_s=0.5)
    values.update(overrides)
    return MqttConfig(**values)


def pred(seq: int, device: str = DEVICE) -> dict:
    probs = {"Walk": 0.7, "Sit": 0.2, "Climb_stairs": 0.1}
    return prediction_payload(
        device_id=device,
        model_id="test-model-1",
        seq=seq,
        window_end_ts=1_700_000_000.0 + seq * 0.5,
        label="Walk",
        confidence=0.7,
        probabilities=probs,
        inference_ms=0.8,
        e2e_ms=2.5,
        variant="int8",
    )


def seqs(listener) -> list[int]:
    return [p["seq"] for p in listener.payloads(PRED_TOPIC)]


@pytest.fixture
def publishers():
    made: list[Publisher] = []

    def make(cfg: MqttConfig, device: str = DEVICE, **kwargs) -> Publisher:
        publisher = Publisher(cfg, device, "test-model-1", LABELS, **kwargs)
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        publisher.stop(timeout=2.0)


def persistent_listener(broker, mqtt_listener, client_id: str):
    """A QoS 1 subscriber whose session (and queued messages) survive a broker restart.

    Before a SIGKILL, call ``settle(broker)`` so the broker's last autosave holds the subscription
    and no message half-way to this listener (which the restored session would send again)."""
    return mqtt_listener(broker, [f"edge-har/{DEVICE}/#"], client_id=client_id, clean=False, qos=1)


def settle(broker) -> None:
    time.sleep(0.05)  # let the listener's PUBACKs reach the broker
    broker.wait_autosaved(time.time())


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_predictions_arrive_with_the_documented_schema(mosquitto_broker, mqtt_listener, publishers, protocol):
    listener = mqtt_listener(mosquitto_broker, [f"edge-har/{DEVICE}/#"], protocol=protocol)
    publisher = publishers(fast_cfg(mosquitto_broker, protocol=protocol))
    publisher.start()
    assert publisher.wait_connected(10), publisher.counters()
    for seq in range(5):
        publisher.publish_prediction(pred(seq))

    received = listener.wait_count(PRED_TOPIC, 5)
    payloads = [m.json() for m in received]
    assert [p["seq"] for p in payloads] == [0, 1, 2, 3, 4]
    for message, payload in zip(received, payloads):
        assert message.qos == 1 and not message.retain
        assert validate_prediction(payload) == []
        assert set(payload) <= set(PREDICTION_FIELDS)
        assert payload["device_id"] == DEVICE and payload["model_id"] == "test-model-1"
        assert payload["label"] == "Walk" and payload["probabilities"]["Sit"] == pytest.approx(0.2)
    listener.wait_for(lambda ms: any(m.topic == STATUS_TOPIC and m.payload == b"online" for m in ms), what="online")
    counters = publisher.counters()
    assert counters["connected"] is True and counters["queued"] == 0 and counters["dropped_offline"] == 0
    deadline = time.monotonic() + 5
    while publisher.counters()["published"] < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert publisher.counters()["published"] == 5


def test_broker_down_at_start_then_up(mosquitto_factory, mqtt_listener, publishers, caplog):
    broker = mosquitto_factory()
    listener = persistent_listener(broker, mqtt_listener, "down-at-start")
    broker.stop()  # SIGTERM: mosquitto saves the listener's session

    caplog.set_level(logging.DEBUG, logger="edge_har.mqtt")
    publisher = publishers(fast_cfg(broker))
    publisher.start()  # must not raise although nothing listens on the port
    for seq in range(5):
        publisher.publish_prediction(pred(seq))
    deadline = time.monotonic() + 5
    while publisher.counters()["last_error"] is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.6)  # several reconnect attempts
    counters = publisher.counters()
    assert counters["connected"] is False and counters["queued"] == 5
    assert "cannot reach broker" in counters["last_error"] and "ConnectionRefusedError" in counters["last_error"]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "cannot reach" in r.getMessage()]
    assert len(warnings) == 1, "one warning per outage, repeats at DEBUG"

    broker.start()
    assert publisher.wait_connected(10)
    for seq in range(5, 8):
        publisher.publish_prediction(pred(seq))
    listener.wait_count(PRED_TOPIC, 8)
    time.sleep(0.2)  # nothing extra may follow
    assert seqs(listener) == list(range(8))
    assert publisher.counters()["queued"] == 0
    assert any("sending 5 queued prediction(s) first" in r.getMessage() for r in caplog.records)


def test_broker_killed_and_restarted_mid_stream(mosquitto_factory, mqtt_listener, publishers):
    broker = mosquitto_factory()
    listener = persistent_listener(broker, mqtt_listener, "killed-mid-stream")
    links: list[bool] = []
    publisher = publishers(fast_cfg(broker), on_link_change=links.append)
    publisher.start()
    assert publisher.wait_connected(10)

    for seq in range(10):
        publisher.publish_prediction(pred(seq))
    listener.wait_count(PRED_TOPIC, 10)
    deadline = time.monotonic() + 5
    while publisher.counters()["inflight"] and time.monotonic() < deadline:
        time.sleep(0.01)
    settle(broker)

    broker.kill()  # SIGKILL, while the stream goes on without a pause
    for seq in range(10, 30):
        publisher.publish_prediction(pred(seq))
        time.sleep(0.01)
    deadline = time.monotonic() + 5  # paho notices at once, unless the machine is very busy
    while publisher.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    counters = publisher.counters()
    assert counters["connected"] is False
    assert counters["queued"] + counters["inflight"] >= 15  # kept, not lost

    broker.start()  # same port
    listener.wait_count(PRED_TOPIC, 30, timeout=15)
    for seq in range(30, 35):
        publisher.publish_prediction(pred(seq))
    listener.wait_count(PRED_TOPIC, 35)
    time.sleep(0.3)
    assert seqs(listener) == list(range(35)), "in order, none lost, none duplicated"
    counters = publisher.counters()
    assert counters["reconnects"] == 1 and counters["dropped_offline"] == 0 and counters["queued"] == 0
    assert links[:3] == [True, False, True]


def test_unacknowledged_predictions_are_taken_back_and_resent_in_order(mosquitto_factory, mqtt_listener, publishers):
    """A hung broker (SIGSTOP) accepts bytes but acknowledges nothing; then it dies. The predictions
    paho had sent without a PUBACK must come back ahead of those queued after the link dropped."""
    broker = mosquitto_factory()
    listener = persistent_listener(broker, mqtt_listener, "hung-broker")
    publisher = publishers(fast_cfg(broker))
    publisher.start()
    assert publisher.wait_connected(10)
    for seq in range(5):
        publisher.publish_prediction(pred(seq))
    listener.wait_count(PRED_TOPIC, 5)
    settle(broker)

    broker.freeze()
    for seq in range(5, 10):
        publisher.publish_prediction(pred(seq))  # written to the socket, never acknowledged
    time.sleep(0.2)
    assert publisher.counters()["inflight"] == 5
    broker.kill()
    deadline = time.monotonic() + 5
    while publisher.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not publisher.connected
    for seq in range(10, 15):
        publisher.publish_prediction(pred(seq))  # into the offline queue
    assert publisher.counters()["queued"] == 5

    broker.start()
    listener.wait_count(PRED_TOPIC, 15)
    time.sleep(0.3)
    assert seqs(listener) == list(range(15))
    counters = publisher.counters()
    assert counters["requeued"] == 5 and counters["inflight"] == 0 and counters["queued"] == 0


def test_concurrent_publishers_through_a_dropped_link_lose_nothing_and_keep_order(
    mosquitto_broker, mqtt_listener, publishers
):
    """Two daemon-side threads publish flat out while paho's thread loses and regains the link.

    The broker drops the connection by session takeover (another client connects with the same
    client id, as a duplicated device config would). The broker itself stays up, so everything it
    acknowledged reaches the subscriber, and what did not reach the broker must come from the
    publisher: nothing lost; QoS 1 may repeat what was in flight, but first arrivals keep each
    thread's order. (A broker *crash* can also lose what it had acknowledged but not yet delivered;
    no publisher can prevent that, which is why the crash tests wait for delivery before the kill.)
    """
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    listener = mqtt_listener(mosquitto_broker, [PRED_TOPIC])
    links: list[bool] = []
    publisher = publishers(fast_cfg(mosquitto_broker), on_link_change=links.append)
    publisher.start()
    assert publisher.wait_connected(10)
    per_thread = 300

    def stream(offset: int) -> None:
        for i in range(per_thread):
            publisher.publish_prediction(pred(offset + i))
            if i % 50 == 0:
                time.sleep(0.02)

    threads = [threading.Thread(target=stream, args=(k * 10_000,)) for k in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    usurper = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=publisher.client_id)
    usurper.connect(mosquitto_broker.host, mosquitto_broker.port)  # the broker closes the publisher's link
    usurper.disconnect()
    for thread in threads:
        thread.join(30)
    expected = {k * 10_000 + i for k in range(2) for i in range(per_thread)}
    try:
        listener.wait_for(lambda ms: expected <= {m.json()["seq"] for m in ms}, timeout=20, what="every prediction")
    except AssertionError:
        missing = sorted(expected - set(seqs(listener)))
        raise AssertionError(f"missing {missing}; counters {publisher.counters()}") from None
    received = seqs(listener)
    first_seen = list(dict.fromkeys(received))
    for k in range(2):
        mine = [s for s in first_seen if s // 10_000 == k]
        assert mine == sorted(mine) and len(mine) == per_thread
    assert len(received) - len(first_seen) <= 40, "repeats only from the in-flight window"
    counters = publisher.counters()
    assert counters["dropped_offline"] == 0 and counters["queued"] == 0 and counters["reconnects"] >= 1
    assert links[:3] == [True, False, True]


def test_queue_bound_drops_oldest_and_counts(mosquitto_factory, mqtt_listener, publishers, caplog):
    broker = mosquitto_factory()
    listener = persistent_listener(broker, mqtt_listener, "bounded-queue")
    broker.stop()

    publisher = publishers(fast_cfg(broker, queue_size=5))
    publisher.start()
    with caplog.at_level(logging.WARNING, logger="edge_har.mqtt"):
        for seq in range(12):
            publisher.publish_prediction(pred(seq))
    counters = publisher.counters()
    assert counters["queued"] == 5 and counters["dropped_offline"] == 7
    assert sum("offline queue full" in r.getMessage() for r in caplog.records) == 1

    broker.start()
    listener.wait_count(PRED_TOPIC, 5)
    time.sleep(0.3)
    assert seqs(listener) == [7, 8, 9, 10, 11], "the oldest were dropped, the rest kept in order"
    assert publisher.counters()["dropped_offline"] == 7


def test_status_online_retained_then_stopped_after_stop(mosquitto_broker, mqtt_listener, publishers):
    publisher = publishers(fast_cfg(mosquitto_broker, qos={"prediction": 1, "status": 1, "stats": 0}))
    publisher.start()
    assert publisher.wait_connected(10)
    late = mqtt_listener(mosquitto_broker, [STATUS_TOPIC])  # subscribes after "online" was published
    first = late.wait_count(STATUS_TOPIC, 1)[0]
    assert first.payload == b"online" and first.retain

    watcher = mqtt_listener(mosquitto_broker, [f"edge-har/{DEVICE}/#"])
    for seq in range(50):
        publisher.publish_prediction(pred(seq))
    publisher.stop(timeout=5.0)  # flushes the 50 predictions before "stopped"
    messages = watcher.wait_for(
        lambda ms: any(m.topic == STATUS_TOPIC and m.payload == b"stopped" for m in ms), what="stopped"
    )
    topics = [m.topic for m in messages]
    assert topics.count(PRED_TOPIC) == 50
    assert max(i for i, t in enumerate(topics) if t == PRED_TOPIC) < topics.index(STATUS_TOPIC, 1)

    after = mqtt_listener(mosquitto_broker, [STATUS_TOPIC])
    retained = after.wait_count(STATUS_TOPIC, 1)[0]
    assert retained.payload == b"stopped" and retained.retain
    publisher.stop()  # idempotent
    publisher.publish_prediction(pred(99))  # after stop(): kept and counted, never sent after "stopped"
    time.sleep(0.2)
    assert publisher.counters()["queued"] == 1 and len(watcher.on(PRED_TOPIC)) == 50


def test_stats_published_with_counters(mosquitto_broker, mqtt_listener, publishers):
    listener = mqtt_listener(mosquitto_broker, [f"edge-har/{DEVICE}/stats"])
    publisher = publishers(fast_cfg(mosquitto_broker))
    assert (
        publisher.publish_stats(
            stats_payload(device_id=DEVICE, model_id="m", uptime_s=1, windows_total=0, windows_per_s=0)
        )
        is False
    )
    publisher.start()
    assert publisher.wait_connected(10)
    payload = stats_payload(
        device_id=DEVICE,
        model_id="m",
        uptime_s=12.5,
        windows_total=40,
        windows_per_s=3.2,
        inference_ms={"p50": 0.8, "p99": 2.0},
        e2e_ms={"p50": 3.0, "p99": 9.0},
        samples_dropped={"nan": 2},
        queue_depth=1,
        rss_mb=55.0,
    )
    assert publisher.publish_stats(payload) is True
    got = listener.wait_count(f"edge-har/{DEVICE}/stats", 1)[0].json()
    assert got["windows_per_s"] == 3.2 and got["samples_dropped"] == {"nan": 2}
    assert got["mqtt"]["connected"] is True and got["mqtt"]["dropped_offline"] == 0
    assert publisher.counters()["stats_skipped"] == 1


WILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from edge_har.mqtt.config import MqttConfig
    from edge_har.mqtt.publisher import Publisher
    cfg = MqttConfig(host=sys.argv[1], port=int(sys.argv[2]), keepalive=5)
    publisher = Publisher(cfg, "pi-will", "m", ["a"])
    publisher.start()
    assert publisher.wait_connected(10)
    print("connected", flush=True)
    time.sleep(60)
    """
)


def test_last_will_offline_when_the_process_dies(mosquitto_broker, mqtt_listener):
    topic = "edge-har/pi-will/status"
    listener = mqtt_listener(mosquitto_broker, [topic])
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-c", WILL_SCRIPT, mosquitto_broker.host, str(mosquitto_broker.port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == b"connected", proc.stderr.read() if proc.poll() is not None else line
        listener.wait_for(lambda ms: any(m.payload == b"online" for m in ms), what="online")
        proc.send_signal(signal.SIGKILL)  # no clean stop: only the broker can say "offline"
        proc.wait(5)
        listener.wait_for(lambda ms: any(m.payload == b"offline" for m in ms), timeout=10, what="Last Will")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
    after = mqtt_listener(mosquitto_broker, [topic])
    retained = after.wait_count(topic, 1)[0]
    assert retained.payload == b"offline" and retained.retain, "the Last Will is retained"


def test_predictions_before_start_are_kept(mosquitto_broker, mqtt_listener, publishers):
    listener = mqtt_listener(mosquitto_broker, [PRED_TOPIC])
    publisher = publishers(fast_cfg(mosquitto_broker))
    publisher.publish_prediction(pred(0))
    publisher.publish_prediction(pred(1))
    publisher.start()
    listener.wait_count(PRED_TOPIC, 2)
    assert seqs(listener) == [0, 1]


def test_stop_without_broker_returns_promptly(mosquitto_factory, publishers, caplog):
    broker = mosquitto_factory(start=False)
    publisher = publishers(fast_cfg(broker))
    publisher.start()
    publisher.publish_prediction(pred(0))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="edge_har.mqtt"):
        publisher.stop(timeout=2.0)
    assert time.monotonic() - started < 4.0
    assert any("1 prediction(s) not delivered" in r.getMessage() for r in caplog.records)


def test_nan_in_a_payload_is_refused_before_it_is_queued(mosquitto_broker, publishers):
    publisher = publishers(fast_cfg(mosquitto_broker))
    bad = dict(pred(0), confidence=float("nan"))
    with pytest.raises(ValueError):
        publisher.publish_prediction(bad)
    assert publisher.counters()["queued"] == 0


def test_documented_examples_follow_the_schema():
    from edge_har.mqtt.payloads import STATS_FIELDS, examples

    docs = examples()
    assert validate_prediction(docs["prediction"]) == []
    assert set(docs["stats"]) <= set(STATS_FIELDS) and docs["status"] == "online"
    problems = validate_prediction({**docs["prediction"], "seq": -1, "confidence": 2.0, "label": "Fly", "colour": 1})
    assert any(p.startswith("seq:") for p in problems) and any(p.startswith("confidence:") for p in problems)
    assert any(p.startswith("label:") for p in problems) and any(
        p.startswith("colour: unknown field") for p in problems
    )
    assert validate_prediction({**docs["prediction"], "label": "unknown"}) == []


def test_every_payload_carries_the_publishers_run_id(mosquitto_broker, mqtt_listener, publishers):
    """seq restarts at 0 with each run: the run id is what tells two runs of a device apart."""
    listener = mqtt_listener(mosquitto_broker, [f"edge-har/{DEVICE}/#"])
    first = publishers(fast_cfg(mosquitto_broker))
    second = publishers(fast_cfg(mosquitto_broker, client_id="second-run"), run_id="given-run-1")
    assert re.fullmatch(r"[0-9a-f]{12}", first.run_id) and second.run_id == "given-run-1"
    assert first.run_id != publishers(fast_cfg(mosquitto_broker)).run_id
    first.start()
    assert first.wait_connected(10)
    first.publish_prediction(pred(0))  # built without run_id: the publisher adds its own
    first.publish_stats(stats_payload(device_id=DEVICE, model_id="m", uptime_s=1, windows_total=1, windows_per_s=1))
    first.stop(timeout=5)
    second.start()
    assert second.wait_connected(10)
    second.publish_prediction({**pred(0), "run_id": "kept-as-given"})  # one already in the payload is kept
    second.publish_prediction(pred(1))
    got = [p for p in listener.wait_count(PRED_TOPIC, 3)]
    payloads = [m.json() for m in got]
    assert [(p["run_id"], p["seq"]) for p in payloads] == [(first.run_id, 0), ("kept-as-given", 0), ("given-run-1", 1)]
    assert all(validate_prediction(p) == [] for p in payloads)
    assert list(payloads[0])[:6] == ["schema_version", "device_id", "model_id", "variant", "run_id", "seq"]
    stats = listener.wait_count(f"edge-har/{DEVICE}/stats", 1)[0].json()
    assert stats["run_id"] == first.run_id and list(stats).index("run_id") < list(stats).index("ts")


def test_run_id_is_optional_for_old_devices_but_checked_when_present():
    old = pred(3)  # what a device from before the run id sends
    assert "run_id" not in old and validate_prediction(old) == []
    assert validate_prediction({**old, "run_id": "a1b2c3d4e5f6"}) == []
    for bad in ("", "has space", "x" * 65, 12, None):
        problems = validate_prediction({**old, "run_id": bad})
        assert len(problems) == 1 and problems[0].startswith("run_id:"), (bad, problems)
    built = prediction_payload(**{k: v for k, v in old.items() if k not in ("schema_version", "extra")}, run_id="r1")
    assert built["run_id"] == "r1"
    with pytest.raises(ValueError, match="run_id"):
        prediction_payload(**{k: v for k, v in old.items() if k not in ("schema_version", "extra")}, run_id="a/b")


def test_last_error_is_cleared_when_the_link_is_back(mosquitto_factory, publishers):
    """A stats message saying connected with the outage's error next to it reads as a live problem."""
    broker = mosquitto_factory(persistence=False)
    publisher = publishers(fast_cfg(broker))
    publisher.start()
    assert publisher.wait_connected(10)
    assert publisher.counters()["last_error"] is None and publisher.counters()["last_error_ts"] is None
    broker.kill()
    deadline = time.monotonic() + 10
    while publisher.counters()["last_error"] is None and time.monotonic() < deadline:
        time.sleep(0.02)
    before = time.time()
    down = publisher.counters()
    assert down["connected"] is False and down["last_error"], down
    assert down["last_error_ts"] is not None and before - 10 < down["last_error_ts"] <= before
    broker.start()
    assert publisher.wait_connected(10)
    up = publisher.counters()
    assert up["connected"] is True and up["reconnects"] == 1
    assert up["last_error"] is None and up["last_error_ts"] is None, up
    # what went wrong is still there, marked as resolved
    assert up["last_resolved_error"] == down["last_error"] or up["last_resolved_error"].startswith("cannot reach")


def test_mqtt5_online_carries_an_expiry_and_is_refreshed_every_stats_interval(
    mosquitto_broker, mqtt_listener, publishers
):
    publisher = publishers(fast_cfg(mosquitto_broker, protocol="5", stats_interval_s=0.5))
    publisher.start()
    assert publisher.wait_connected(10)
    watcher = mqtt_listener(mosquitto_broker, [STATUS_TOPIC], protocol="5")
    onlines = watcher.wait_for(
        lambda ms: sum(m.payload == b"online" for m in ms) >= 4, timeout=10, what="online refreshed"
    )
    assert all(m.properties.MessageExpiryInterval <= 2 for m in onlines)  # ceil(3 x 0.5 s), minus time on the way
    # Longer than the expiry has passed since the first "online": the refreshes kept it retained.
    late = mqtt_listener(mosquitto_broker, [STATUS_TOPIC], protocol="5")
    first = late.wait_count(STATUS_TOPIC, 1)[0]
    assert first.retain and first.payload == b"online"
    publisher.stop(timeout=5)
    final = mqtt_listener(mosquitto_broker, [STATUS_TOPIC], protocol="5").wait_count(STATUS_TOPIC, 1)[0]
    assert final.payload == b"stopped" and final.retain
    assert not hasattr(final.properties, "MessageExpiryInterval"), "stopped does not expire"


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_persistent_broker_killed_during_the_stop_keeps_no_stale_online(
    protocol, mosquitto_factory, mqtt_listener, publishers
):
    """The broker saved "online", hangs while the device stops (so "stopped" never lands), dies and
    comes back from its persistence file: without an expiry it restores the dead device's "online"."""
    from edge_har.mqtt.liveness import LIVENESS_STALE, device_liveness, stale_after_s

    broker = mosquitto_factory()
    publisher = publishers(fast_cfg(broker, protocol=protocol, stats_interval_s=1.0))
    publisher.start()
    assert publisher.wait_connected(10)
    assert mqtt_listener(broker, [STATUS_TOPIC]).wait_count(STATUS_TOPIC, 1)[0].payload == b"online"
    broker.wait_autosaved(time.time())
    online_at = time.monotonic()  # the last "online" the broker took (refreshed each second) is older
    broker.freeze()
    publisher.stop(timeout=1.0)  # "stopped" goes into a socket nobody reads
    broker.kill()
    broker.start()
    watching_since = time.monotonic()
    if protocol == "5":
        time.sleep(max(0.0, online_at + stale_after_s(1.0) + 0.5 - time.monotonic()))
        late = mqtt_listener(broker, [STATUS_TOPIC], protocol="5")
        time.sleep(0.5)
        assert late.on(STATUS_TOPIC) == [], "the restored online expired"
    else:
        # MQTT 3.1.1 has no expiry: the broker does restore "online"; the stats rule is what catches it.
        late = mqtt_listener(broker, [STATUS_TOPIC, f"edge-har/{DEVICE}/stats"])
        status = late.wait_count(STATUS_TOPIC, 1)[0]
        assert status.payload == b"online" and status.retain
        time.sleep(0.5)
        assert late.on(f"edge-har/{DEVICE}/stats") == []
        judged = device_liveness(
            "online", now=watching_since + 3.1, last_stats_at=None, stats_interval_s=1.0, watching_since=watching_since
        )
        assert judged == LIVENESS_STALE
