"""The Live half of ``edge-har serve`` against a real mosquitto and real databases (SQLite and PostgreSQL).

Devices are paho clients publishing the daemon's own payloads (:mod:`edge_har.mqtt.payloads`); the app is
:func:`edge_har.web.app.create_app` behind FastAPI's TestClient (its lifespan starts the MQTT ingest), or
a real uvicorn (``web_server``) where the push stream must be read as a browser reads it.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any, Callable

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

import paho.mqtt.client as paho  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from edge_har.mqtt.config import MqttConfig  # noqa: E402
from edge_har.mqtt.payloads import prediction_payload  # noqa: E402
from edge_har.web.app import create_app  # noqa: E402
from edge_har.web.config import ServeConfig  # noqa: E402
from edge_har.web.ingest import Hub  # noqa: E402
from edge_har.web.store import open_store_url  # noqa: E402
from tests.ingest_helpers import stats, wait_until  # noqa: E402

pytest_plugins = ["tests.plugins.db"]

LABELS = ["Sit", "Walk", "Wave"]
BASE = round(time.time()) - 60.0  # windows end at BASE + seq * 0.5: a minute ago, exact in binary


def prediction(
    device: str, seq: int, label: str = "Walk", run_id: str = "run000000001", ts: float | None = None
) -> dict:
    probs = {name: (0.8 if name == label else 0.1) for name in LABELS}
    return prediction_payload(
        device_id=device,
        model_id="tiny-model",
        variant="int8",
        run_id=run_id,
        seq=seq,
        window_end_ts=(BASE + seq * 0.5) if ts is None else ts,
        label=label,
        confidence=0.8,
        probabilities=probs,
        inference_ms=0.7,
        e2e_ms=2.0,
    )


class Devices:
    """One paho client publishing for any number of simulated devices (QoS 1, waits for each PUBACK)."""

    def __init__(self, broker: Any) -> None:
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="test-devices")
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def send(self, topic: str, payload: Any, retain: bool = False) -> None:
        data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        self.client.publish(topic, data, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def devices(mosquitto_broker):
    d = Devices(mosquitto_broker)
    yield d
    d.close()


def serve_config(broker: Any, db_url: str, **extra: Any) -> ServeConfig:
    mqtt = MqttConfig(host=broker.host, port=broker.port, reconnect_min_s=0.1, reconnect_max_s=1.0)
    return ServeConfig(mqtt=mqtt, db_url=db_url, **extra)


@pytest.fixture
def live_client(mosquitto_broker, db_url):
    """A started app (ingest subscribed) on the broker and the parametrized database."""
    app = create_app(serve_config(mosquitto_broker, db_url))
    with TestClient(app) as client:
        assert app.state.live.ingest.ready.wait(10), "the ingest never subscribed"
        client.live = app.state.live
        yield client


def device_view(client: TestClient, device_id: str) -> dict | None:
    body = client.get("/api/devices").json()
    return next((d for d in body["devices"] if d["device_id"] == device_id), None)


# ====================================================================== no broker


def test_without_a_broker_the_api_serves_what_the_store_holds(db_url, tmp_path):
    now = time.time()
    store = open_store_url(db_url)
    rows = [
        {
            "device_id": "pi-old",
            "run_id": "r1",
            "seq": i,
            "ts": now - 120 + i,
            "label": "Sit",
            "confidence": 0.9,
            "probabilities": {"Sit": 0.9, "Walk": 0.1},
            "model_id": "m",
            "variant": None,
            "inference_ms": 1.0,
            "received_at": now - 120 + i,
        }
        for i in range(10)
    ]
    store.add_predictions(rows)
    store.set_status("pi-old", "stopped", now - 100)
    store.close()
    with TestClient(create_app(ServeConfig(db_url=db_url))) as client:
        body = client.get("/api/devices").json()
        assert body["broker"]["configured"] is False
        (device,) = body["devices"]
        assert device["liveness"] == "stopped" and device["activity"]["label"] == "Sit"
        history = client.get("/api/devices/pi-old/history", params={"since": now - 115}).json()
        assert [p["seq"] for p in history["predictions"]] == [6, 7, 8, 9]
        summary = client.get(
            "/api/devices/pi-old/summary", params={"day": time.strftime("%Y-%m-%d", time.gmtime(now - 120))}
        )
        if time.gmtime(now - 120).tm_yday == time.gmtime(now - 110).tm_yday:  # not across midnight UTC
            assert summary.json()["seconds"]["Sit"] == pytest.approx(10.0)
        page = client.get("/live")
        assert page.status_code == 200 and "/static/live.js" in page.text and 'href="/live"' in page.text
        assert client.get("/static/live.js").status_code == 200


@pytest.mark.parametrize(
    ("path", "status", "names"),
    [
        ("/api/devices/ghost/history", 404, "device_id"),
        ("/api/devices/ghost/summary", 404, "device_id"),
        ("/api/devices/a%20b/history", 400, "device_id"),
        ("/api/devices/a%2Bb/summary", 400, "device_id"),
        ("/api/devices/pi-1/history?since=yesterday", 400, "since"),
        ("/api/devices/pi-1/history?since=-5", 400, "since"),
        ("/api/devices/pi-1/history?since=nan", 400, "since"),
        ("/api/devices/pi-1/history?step_s=0", 400, "step_s"),
        ("/api/devices/pi-1/history?step_s=inf", 400, "step_s"),
        ("/api/devices/pi-1/history?step_s=often", 422, "step_s"),
        ("/api/devices/pi-1/summary?day=2026-02-30", 400, "day"),
        ("/api/devices/pi-1/summary?day=02.12.2026", 400, "day"),
        ("/api/devices/pi-1/summary?utc_offset_min=5000", 400, "utc_offset_min"),
        ("/api/devices/pi-1/summary?utc_offset_min=east", 422, "utc_offset_min"),
    ],
)
def test_bad_parameters_are_a_4xx_naming_the_parameter(tmp_path, path, status, names):
    url = f"sqlite:///{tmp_path / 'w.sqlite3'}"
    store = open_store_url(url)
    store.set_status("pi-1", "online", time.time())
    store.close()
    with TestClient(create_app(ServeConfig(db_url=url))) as client:
        response = client.get(path)
        assert response.status_code == status, response.text
        assert names in json.dumps(response.json()["detail"])
        assert client.get("/api/devices/pi-1/history").status_code == 200  # and it keeps serving


# ====================================================================== ingest from a real broker


def test_predictions_status_and_stats_from_the_broker_reach_the_api(live_client, devices):
    devices.send("edge-har/pi-a/status", "online", retain=True)
    devices.send("edge-har/pi-a/stats", stats("pi-a"))
    sent = [prediction("pi-a", seq, "Walk" if seq < 8 else "Wave") for seq in range(12)]
    for seq in range(12):
        devices.send("edge-har/pi-a/prediction", sent[seq])
        devices.send("edge-har/pi-b/prediction", prediction("pi-b", seq, "Sit"))
    for seq in (3, 4, 11):  # QoS 1 re-deliveries after a reconnect: the same message again
        devices.send("edge-har/pi-a/prediction", sent[seq])
    counters = live_client.live.ingest.counters
    wait_until(lambda: counters.predictions >= 27, what="27 predictions written")
    assert counters.stored == 24 and counters.malformed == 0

    a = device_view(live_client, "pi-a")
    assert a["liveness"] == "online" and a["status"] == "online"
    assert a["activity"]["label"] == "Wave" and a["activity"]["confidence"] == pytest.approx(0.8)
    assert a["stats"] == {
        "windows_per_s": 2.5,
        "inference_p50_ms": 0.75,
        "queue_depth": 3,
        "reconnects": 2,
        "uptime_s": 12.0,
        "ts": pytest.approx(time.time(), abs=30),
    }
    b = device_view(live_client, "pi-b")
    assert b["liveness"] == "unknown" and b["activity"]["label"] == "Sit"  # no status seen for pi-b
    history = live_client.get("/api/devices/pi-a/history").json()
    assert [p["seq"] for p in history["predictions"]] == list(range(12))
    assert [s["status"] for s in history["status"]] == ["online"]
    summary = live_client.get("/api/devices/pi-a/summary", params={"utc_offset_min": 0}).json()
    # the summary is of today (UTC): the 6 s of windows neither across midnight nor on the day before
    if time.gmtime(BASE).tm_yday == time.gmtime(BASE + 6).tm_yday == time.gmtime().tm_yday:
        assert summary["seconds"] == pytest.approx({"Walk": 4.0, "Wave": 2.0})


def test_malformed_payloads_are_counted_logged_once_and_never_stop_ingest(live_client, devices, caplog):
    caplog.set_level(logging.WARNING, logger="edge_har.web.ingest")
    bad = [
        ("edge-har/pi-x/prediction", b"not json"),
        ("edge-har/pi-x/prediction", b"[1, 2]"),
        ("edge-har/pi-x/prediction", b"\xff\xfe"),
        ("edge-har/pi-x/prediction", json.dumps({**prediction("pi-x", 0), "confidence": 7})),
        ("edge-har/pi-x/prediction", json.dumps(prediction("someone-else", 0))),  # not the topic's device
        ("edge-har/pi-x/stats", b"{"),
        ("edge-har/pi-x/status", b'{"json": "is not a status"}'),
    ]
    for topic, payload in bad * 3:
        devices.send(topic, payload)
    devices.send("edge-har/pi-x/prediction", prediction("pi-x", 1))
    counters = live_client.live.ingest.counters
    wait_until(lambda: counters.stored == 1, what="the good prediction after the bad ones")
    assert counters.malformed == len(bad) * 3
    lines = [r.getMessage() for r in caplog.records if r.name == "edge_har.web.ingest"]
    assert len(lines) == 1 and "malformed payload" in lines[0], lines  # one line per minute, not one per payload
    assert counters.last_problem and "pi-x/status" in counters.last_problem
    assert device_view(live_client, "pi-x")["activity"]["label"] == "Walk"


WILLING_DEVICE = textwrap.dedent("""\
    import sys, time
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    host, port = sys.argv[1], int(sys.argv[2])
    c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="willing-pi")
    c.will_set("edge-har/willing-pi/status", "offline", qos=1, retain=True)
    c.connect(host, port, keepalive=30)
    c.loop_start()
    c.publish("edge-har/willing-pi/status", "online", qos=1, retain=True).wait_for_publish(5)
    print("online", flush=True)
    time.sleep(120)
""")


def test_a_device_whose_last_will_fires_goes_offline(live_client, mosquitto_broker):
    proc = subprocess.Popen(
        [sys.executable, "-c", WILLING_DEVICE, mosquitto_broker.host, str(mosquitto_broker.port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "online"
        wait_until(lambda: (device_view(live_client, "willing-pi") or {}).get("liveness") == "online", what="online")
        proc.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker publishes the Last Will
        proc.wait(10)
        wait_until(lambda: device_view(live_client, "willing-pi")["liveness"] == "offline", what="the Last Will")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    history = live_client.get("/api/devices/willing-pi/history").json()
    assert [s["status"] for s in history["status"]] == ["online", "offline"]


def test_an_online_device_without_stats_for_three_intervals_is_stale(live_client, devices):
    devices.send("edge-har/pi-s/status", "online", retain=True)
    devices.send("edge-har/pi-s/stats", stats("pi-s", interval=0.3))
    wait_until(lambda: (device_view(live_client, "pi-s") or {}).get("liveness") == "online", what="online")
    started = time.monotonic()
    wait_until(lambda: device_view(live_client, "pi-s")["liveness"] == "stale", timeout=5, what="stale")
    assert time.monotonic() - started >= 0.5  # not before three 0.3 s intervals passed since the stats
    devices.send("edge-har/pi-s/stats", stats("pi-s", interval=0.3))  # fresh stats: online again
    wait_until(lambda: device_view(live_client, "pi-s")["liveness"] == "online", timeout=2, what="online again")


def test_a_restarted_server_shows_everything_stored_before(mosquitto_broker, devices, db_url):
    cfg = serve_config(mosquitto_broker, db_url)
    app = create_app(cfg)
    with TestClient(app) as client:
        assert app.state.live.ingest.ready.wait(10)
        devices.send("edge-har/pi-r/status", "online", retain=True)
        for seq in range(5):
            devices.send("edge-har/pi-r/prediction", prediction("pi-r", seq))
        wait_until(lambda: app.state.live.ingest.counters.stored == 5, what="5 stored")
    devices.send("edge-har/pi-r/status", "stopped", retain=True)  # while the server is down
    with TestClient(create_app(cfg)) as client:
        wait_until(lambda: device_view(client, "pi-r")["status"] == "stopped", what="the retained status")
        history = client.get("/api/devices/pi-r/history").json()
        assert [p["seq"] for p in history["predictions"]] == [0, 1, 2, 3, 4]
        assert [s["status"] for s in history["status"]] == ["online", "stopped"]


# ====================================================================== the push stream


def read_events(response: http.client.HTTPResponse, until: Callable[[list[dict]], bool], timeout: float = 10) -> list:
    """Parse server-sent events from a raw HTTP response until ``until(events)`` holds."""
    events: list[dict] = []
    current: dict = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = response.fp.readline().decode().rstrip("\r\n")
        if line == "":
            if current:
                events.append(current)
                current = {}
                if until(events):
                    return events
            continue
        field, _, value = line.partition(":")
        current[field] = value.lstrip(" ") if field != "data" else json.loads(value)
    raise AssertionError(f"stream did not deliver in {timeout} s; got {events}")


def test_the_stream_pushes_what_arrives_with_a_retry_delay(web_server, mosquitto_broker, devices, tmp_path):
    server = web_server(serve_config(mosquitto_broker, f"sqlite:///{tmp_path / 's.sqlite3'}"))
    live = server.app.state.live
    assert live.ingest.ready.wait(10)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/api/stream")
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("content-type").startswith("text/event-stream")
        (hello,) = read_events(response, lambda ev: True)
        assert hello["retry"] == "2000" and hello["event"] == "hello" and hello["data"]["broker"]["connected"]
        devices.send("edge-har/pi-e/status", "online", retain=True)
        devices.send("edge-har/pi-e/prediction", prediction("pi-e", 0, "Wave"))
        events = read_events(response, lambda ev: any(e["event"] == "predictions" for e in ev))
        status = next(e["data"] for e in events if e["event"] == "status")
        assert status["device_id"] == "pi-e" and status["liveness"] == "online"
        items = next(e["data"]["items"] for e in events if e["event"] == "predictions")
        assert [(i["device_id"], i["seq"], i["label"]) for i in items] == [("pi-e", 0, "Wave")]
    finally:
        conn.close()
    wait_until(lambda: live.hub.clients == 0, what="the closed stream to unsubscribe")


def test_a_slow_browser_gets_a_resync_instead_of_holding_anyone_up():
    hub = Hub(max_queue=5)
    got: dict[str, Any] = {}

    async def browser() -> None:
        slow = hub.subscribe()
        fast = hub.subscribe()

        def publish() -> None:  # from another thread, as the ingest does, paced so "fast" keeps up
            for n in range(20):
                hub.publish({"type": "x", "n": n})
                time.sleep(0.01)

        publisher = threading.Thread(target=publish)
        started = time.monotonic()
        publisher.start()
        received = []
        while len(received) < 20:  # the fast one reads as events come
            received.append(await asyncio.wait_for(fast.get(), 5))
        publisher.join()
        got["publish_s"] = time.monotonic() - started
        got["fast"] = [e["n"] for e in received if e and e["type"] == "x"]
        await asyncio.sleep(0.05)
        got["slow"] = [slow.get_nowait() for _ in range(slow.qsize())]
        hub.close()
        got["end"] = await asyncio.wait_for(fast.get(), 5)

    asyncio.run(browser())
    assert got["fast"] == list(range(20))
    assert got["slow"][0] == {"type": "resync"} and len(got["slow"]) <= 5  # its backlog replaced, bounded
    assert hub.resyncs >= 1 and got["end"] is None and got["publish_s"] < 2


def test_ingest_survives_a_broker_restart_and_says_when_it_is_away(live_client, mosquitto_broker, caplog):
    caplog.set_level(logging.INFO, logger="edge_har.web.ingest")
    ingest = live_client.live.ingest
    first = Devices(mosquitto_broker)
    first.send("edge-har/pi-k/prediction", prediction("pi-k", 0))
    wait_until(lambda: ingest.counters.stored == 1, what="the first prediction")
    first.client.loop_stop()
    mosquitto_broker.kill()
    wait_until(lambda: not live_client.get("/api/devices").json()["broker"]["connected"], what="broker shown away")
    assert any("lost the broker" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    mosquitto_broker.start()
    assert wait_until(lambda: ingest.ready.is_set(), timeout=15, what="re-subscribed after the restart")
    again = Devices(mosquitto_broker)
    try:
        again.send("edge-har/pi-k/prediction", prediction("pi-k", 1))
        wait_until(lambda: ingest.counters.stored == 2, what="a prediction after the restart")
    finally:
        again.close()
    assert live_client.get("/api/devices").json()["broker"]["connected"] is True


def test_a_clean_stop_is_not_reported_as_a_lost_broker(mosquitto_broker, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="edge_har.web.ingest")
    app = create_app(serve_config(mosquitto_broker, f"sqlite:///{tmp_path / 'c.sqlite3'}"))
    with TestClient(app):
        assert app.state.live.ingest.ready.wait(10)
    messages = [r.getMessage() for r in caplog.records if r.name == "edge_har.web.ingest"]
    assert "ingest: disconnected from the broker" in messages
    assert not any(r.levelno >= logging.WARNING for r in caplog.records if r.name == "edge_har.web.ingest"), messages


def test_the_running_server_deletes_rows_past_retention(mosquitto_broker, tmp_path):
    url = f"sqlite:///{tmp_path / 'r.sqlite3'}"
    store = open_store_url(url)
    old = time.time() - 3 * 86400
    store.add_predictions(
        [
            {
                "device_id": "pi-gone",
                "run_id": "r1",
                "seq": 0,
                "ts": old,
                "label": "Sit",
                "confidence": 0.9,
                "probabilities": {"Sit": 0.9, "Walk": 0.1},
                "model_id": "m",
                "variant": None,
                "inference_ms": 1.0,
                "received_at": old,
            }
        ]
    )
    store.close()
    app = create_app(serve_config(mosquitto_broker, url, retention_days=1.0))
    with TestClient(app) as client:
        wait_until(lambda: app.state.live.store.counts()["predictions"] == 0, what="the old row deleted")
        assert client.get("/api/devices").json()["devices"] == []
