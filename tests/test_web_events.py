"""Device events (a fall) in ``edge-har serve``: checked, stored once, listed, pushed, pruned.

The payloads are the daemon's own (:func:`edge_har.mqtt.payloads.event_payload` over
:meth:`edge_har.core.events.Event.to_json`), published through a real mosquitto to a running app on
SQLite and PostgreSQL; the check is also fuzzed with any JSON (hypothesis), and every field it keeps
is refused, by name, when it is out of bounds.
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edge_har.core.events import Event  # noqa: E402
from edge_har.mqtt.bounded_json import RejectedMessage  # noqa: E402
from edge_har.mqtt.payloads import event_payload  # noqa: E402
from edge_har.web.app import create_app  # noqa: E402
from edge_har.web.config import ServeConfig  # noqa: E402
from edge_har.web.event_queries import event_list, last_events, recent_events  # noqa: E402
from edge_har.web.ingest_checks import MAX_TS, check_event, parse_topic  # noqa: E402
from edge_har.web.store import open_store_url  # noqa: E402
from tests.ingest_helpers import Devices, books_balance, prediction, serve_config, wait_until  # noqa: E402
from tests.test_web_live import read_events  # noqa: E402

pytest_plugins = ["tests.plugins.db"]


def fall(device: str, impact_ts: float, first_seq: int = 40, run_id: str = "run000000001", conf: float = 0.998) -> dict:
    event = Event("fall", impact_ts, impact_ts + 2.3, conf, first_seq, first_seq + 3)
    return event_payload(device_id=device, model_id="fall-int8", variant="int8", run_id=run_id, event=event.to_json())


def row(device: str, impact_ts: float, *, first_seq: int = 0, kind: str = "fall", received_at: float | None = None):
    """An event as the store takes it."""
    return check_event(device, json.dumps(fall(device, impact_ts, first_seq)).encode()) | {
        "event_type": kind,
        "received_at": impact_ts + 3.0 if received_at is None else received_at,
    }


# ====================================================================== the check


def test_the_daemons_event_payload_is_the_row_the_store_keeps():
    payload = fall("pi-hall", 1_765_000_000.25)
    got = check_event("pi-hall", json.dumps(payload).encode())
    assert got == {
        "device_id": "pi-hall",
        "run_id": "run000000001",
        "event_type": "fall",
        "impact_ts": 1_765_000_000.25,
        "detected_ts": 1_765_000_002.55,
        "confidence": 0.998,
        "first_seq": 40,
        "last_seq": 43,
        "windows": 4,
        "model_id": "fall-int8",
        "variant": "int8",
    }
    assert parse_topic("edge-har/pi-hall/event", "edge-har").kind == "event"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"event_type": ""}, "event_type"),
        ({"event_type": 7}, "event_type"),
        ({"event_type": "f" * 129}, "event_type"),
        ({"event_type": "fa\u0000ll"}, "event_type"),
        ({"model_id": None}, "model_id"),
        ({"variant": 3}, "variant"),
        ({"run_id": "no spaces"}, "run_id"),
        ({"impact_ts": -1}, "impact_ts"),
        ({"detected_ts": MAX_TS * 2}, "detected_ts"),
        ({"detected_ts": True}, "detected_ts"),
        ({"confidence": 1.5}, "confidence"),
        ({"first_seq": 2**63}, "first_seq"),
        ({"last_seq": 1.5}, "last_seq"),
        ({"first_seq": 50, "last_seq": 49}, "first_seq"),
        ({"windows": 0}, "windows"),
        ({"schema_version": 2}, "schema_version"),
        ({"device_id": "pi-other"}, "device_id"),
    ],
)
def test_an_event_out_of_bounds_is_refused_naming_the_field(change, field):
    payload = {**fall("pi-hall", 1_765_000_000.0), **change}
    with pytest.raises(RejectedMessage) as caught:
        check_event("pi-hall", json.dumps(payload).encode())
    assert field in caught.value.detail, caught.value.detail


json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FIELDS = [
    "event_type",
    "impact_ts",
    "detected_ts",
    "confidence",
    "first_seq",
    "last_seq",
    "windows",
    "model_id",
    "variant",
    "run_id",
    "schema_version",
    "device_id",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    changes=st.dictionaries(st.sampled_from(FIELDS + ["extra"]), json_value, max_size=3),
    drop=st.lists(st.sampled_from(FIELDS), max_size=2),
    raw=st.none() | st.binary(max_size=64),
)
def test_any_message_on_the_event_topic_is_a_storable_row_or_refused(changes, drop, raw):
    payload = {**fall("pi-hall", 1_765_000_000.0), **changes}
    for key in drop:
        payload.pop(key, None)
    data = raw if raw is not None else json.dumps(payload).encode()
    try:
        got = check_event("pi-hall", data)
    except RejectedMessage as exc:
        assert exc.reason and exc.detail and "\n" not in exc.detail
        return
    assert got["device_id"] == "pi-hall" and 0 < len(got["event_type"]) <= 128
    assert 0 <= got["impact_ts"] <= MAX_TS and 0 <= got["detected_ts"] <= MAX_TS and 0 <= got["confidence"] <= 1
    assert 0 <= got["first_seq"] <= got["last_seq"] < 2**63 and got["windows"] >= 1
    assert got["variant"] is None or isinstance(got["variant"], str)


# ====================================================================== the store and its reads


def test_events_are_stored_once_listed_newest_first_and_pruned(db_url):
    store = open_store_url(db_url, retention_days=1.0)
    now = time.time()
    try:
        assert store.add_event(row("pi-a", now - 600, first_seq=0)) is True
        assert store.add_event(row("pi-a", now - 600, first_seq=0)) is False  # a re-delivery
        assert store.add_event(row("pi-a", now - 300, first_seq=100, kind="stumble")) is True
        assert store.add_event(row("pi-a", now - 7200, first_seq=200)) is True  # more than an hour ago
        assert store.add_event(row("pi-b", now - 60, first_seq=0)) is True
        assert store.add_event(row("pi-c", now - 3 * 86400, first_seq=0, received_at=now - 3 * 86400)) is True
        assert store.counts()["events"] == 5 and store.has_device("pi-b")

        listed, more = event_list(store, since=now - 86400, until=now, limit=10)
        assert [(e["device_id"], e["event_type"]) for e in listed] == [
            ("pi-b", "fall"),
            ("pi-a", "stumble"),
            ("pi-a", "fall"),
            ("pi-a", "fall"),
        ]
        assert not more
        two, more = event_list(store, since=now - 86400, until=now, limit=2)
        assert [e["impact_ts"] for e in two] == [listed[0]["impact_ts"], listed[1]["impact_ts"]] and more
        only, _ = event_list(store, since=0, until=now, limit=10, device_id="pi-a", event_type="fall")
        assert [e["first_seq"] for e in only] == [0, 200]

        hour = recent_events(store, ["pi-a", "pi-b", "pi-z"], now - 3600, now)
        assert [e["event_type"] for e in hour["pi-a"]] == ["fall", "stumble"]  # oldest first, the last hour only
        assert len(hour["pi-b"]) == 1 and hour["pi-z"] == []
        capped = recent_events(store, ["pi-a"], now - 3600, now, per_device=1)
        assert [e["event_type"] for e in capped["pi-a"]] == ["stumble"]  # the newest kept

        last = last_events(store, ["pi-a", "pi-b", "pi-z"])
        assert last["pi-a"]["fall"]["first_seq"] == 0 and last["pi-a"]["stumble"]["first_seq"] == 100
        assert set(last["pi-b"]) == {"fall"} and last["pi-z"] == {}

        assert store.prune(now) >= 1
        assert store.counts()["events"] == 4
        assert event_list(store, since=0, until=now, limit=10, device_id="pi-c")[0] == []
    finally:
        store.close()


# ====================================================================== through a real broker


def test_an_event_from_the_broker_is_stored_once_listed_pushed_and_on_the_device(web_server, mosquitto_broker, db_url):
    server = web_server(serve_config(mosquitto_broker, db_url, client_id="events-test"))
    live = server.app.state.live
    assert live.ingest.ready.wait(10)
    devices = Devices(mosquitto_broker, "events-devices")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/api/stream")
        stream = conn.getresponse()
        read_events(stream, lambda ev: True)  # hello
        now = time.time()
        for seq in range(3):
            devices.send("edge-har/pi-hall/prediction", prediction("pi-hall", seq) | {"window_end_ts": now - 5 + seq})
        payload = fall("pi-hall", now - 20)
        devices.send("edge-har/pi-hall/event", payload)
        devices.send("edge-har/pi-hall/event", payload)  # a QoS 1 re-delivery: the same event
        devices.send("edge-har/pi-hall/event", {**payload, "confidence": "high"})  # refused, counted
        pushed = read_events(stream, lambda ev: any(e["event"] == "event" for e in ev))
        event = next(e["data"] for e in pushed if e["event"] == "event")
        assert event["device_id"] == "pi-hall" and event["event"]["event_type"] == "fall"
        assert event["event"]["impact_ts"] == pytest.approx(now - 20, abs=0.01)
        status = wait_until(
            lambda: (lambda s: s if s["received"] >= 6 and not s["queued"] else None)(live.ingest.status()),
            what="every message accounted for",
        )
        assert status["events"] == 1 and status["event_duplicates"] == 1, status
        assert status["rejected"] == {"bad_field": 1}, status["samples"]
        books_balance(status)

        with TestClient(server.app) as client:
            listed = client.get("/api/events").json()
            assert [(e["device_id"], e["event_type"], e["windows"]) for e in listed["events"]] == [
                ("pi-hall", "fall", 4)
            ]
            assert listed["truncated"] is False
            assert client.get("/api/events", params={"type": "stumble"}).json()["events"] == []
            assert client.get("/api/events", params={"device_id": "pi-x"}).json()["events"] == []
            view = client.get("/api/devices", params={"hour_step_s": 10, "limit": 10}).json()["devices"][0]
            assert view["last_events"]["fall"]["confidence"] == pytest.approx(0.998)
            assert [e["event_type"] for e in view["hour_events"]] == ["fall"]
            assert client.get("/api/devices/pi-hall").json()["last_events"]["fall"]["last_seq"] == 43
            for bad, name in (({"limit": 0}, "limit"), ({"device_id": "a/b"}, "device_id"), ({"type": "\n"}, "type")):
                answer = client.get("/api/events", params=bad)
                assert answer.status_code in (400, 422) and name in answer.text
            metrics = client.get("/metrics").text
            assert "edge_har_ingest_events_total 1.0" in metrics
    finally:
        conn.close()
        devices.close()


def test_serve_without_a_broker_lists_the_events_the_store_holds(tmp_path):
    url = f"sqlite:///{tmp_path / 'ev.sqlite3'}"
    store = open_store_url(url)
    now = time.time()
    store.add_event(row("pi-a", now - 120))
    store.close()
    with TestClient(create_app(ServeConfig(db_url=url))) as client:
        body: dict[str, Any] = client.get("/api/events", params={"since": now - 3600}).json()
        assert [e["device_id"] for e in body["events"]] == ["pi-a"]
        assert client.get("/api/events", params={"until": now - 600}).json()["events"] == []
