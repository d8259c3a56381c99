"""Hostile MQTT messages against a real ``edge-har serve`` app (uvicorn), a real mosquitto, SQLite and PostgreSQL.

One message must never stop the ingest: each one here can kill an unguarded ingest thread, break every
later read of ``/api/devices`` or block the database writes for good. Each is counted by reason and by
device, shown as a sample in ``GET /api/ingest``, and the valid predictions after it are stored.
"""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

import sqlalchemy as sa  # noqa: E402

from edge_har.web.store import open_store_url  # noqa: E402
from tests.ingest_helpers import (  # noqa: E402
    Devices,
    books_balance,
    get_json,
    prediction,
    serve_config,
    settled,
    stats,
    wait_stored,
    wait_until,
)

pytest_plugins = ["tests.plugins.db"]


@pytest.fixture
def devices(mosquitto_broker):
    d = Devices(mosquitto_broker)
    yield d
    d.close()


def _raw(payload: dict, field: str, literal: str) -> bytes:
    """``payload`` as JSON with ``field``'s value replaced by ``literal`` (numbers json.dumps cannot write)."""
    marker = "__LITERAL__"
    return json.dumps({**payload, field: marker}).replace(f'"{marker}"', literal).encode()


def test_hostile_predictions_are_counted_and_ingest_stores_what_follows(web_server, mosquitto_broker, devices, db_url):
    server = web_server(serve_config(mosquitto_broker, db_url))
    assert server.app.state.live.ingest.ready.wait(10)
    topic = "edge-har/pi-h/prediction"
    devices.send(topic, prediction("pi-h", 0))
    hostile = {
        "number": [
            _raw(prediction("pi-h", 90), "confidence", "1" + "0" * 400),  # a float field given a 400-digit integer
            _raw(prediction("pi-h", 91), "seq", str(2**64)),  # seq beyond a 64-bit integer
            _raw(prediction("pi-h", 92), "window_end_ts", "1e400"),
            _raw(prediction("pi-h", 93), "inference_ms", "NaN"),
        ],
        "too_deep": [
            b"[" * 50_000 + b"]" * 50_000,
            _raw(prediction("pi-h", 94), "extra", '{"a":' * 200 + "1" + "}" * 200),
        ],
        "too_large": [json.dumps({**prediction("pi-h", 95), "extra": {"pad": "x" * 400_000}}).encode()],
        "bad_field": [
            json.dumps({**prediction("pi-h", 96), "label": "L" * 500}).encode(),
            json.dumps({**prediction("pi-h", 97), "model_id": "m\x00m"}).encode(),
            json.dumps({**prediction("pi-h", 98), "window_end_ts": 1e300}).encode(),
            json.dumps({**prediction("pi-h", 99), "seq": -1}).encode(),
        ],
        "not_json": [b"not json", b"[1, 2]"],
        "not_utf8": [b"\xff\xfe"],
    }
    for payloads in hostile.values():
        for payload in payloads:
            devices.send(topic, payload)
    devices.send("edge-har/pi h/prediction", prediction("pi h", 0))  # an id the API refuses
    devices.send("edge-har/" + "p" * 200 + "/prediction", prediction("p" * 200, 0))
    for seq in (1, 2, 3):
        devices.send(topic, prediction("pi-h", seq))

    wait_stored(server.url, "pi-h", [0, 1, 2, 3])
    status = settled(server.url)
    assert status["stored"] == 4 and status["duplicates"] == 0
    expected = {reason: len(payloads) for reason, payloads in hostile.items()} | {"bad_device_id": 2}
    assert status["rejected"] == expected
    assert status["rejected_predictions"] == sum(expected.values())
    assert status["rejected_by_device"]["pi-h"] == sum(len(p) for p in hostile.values())
    assert status["rejected_by_device"]["(invalid id)"] == 2
    assert status["loop_errors"] == 0 and status["db"] == {
        "state": "ok",
        "outages": 0,
        "last_error": None,
        "set_aside": 0,
    }
    assert len(status["samples"]) == sum(expected.values()) and {s["reason"] for s in status["samples"]} == set(
        expected
    )
    assert any("confidence" in s["detail"] or "seq" in s["detail"] for s in status["samples"]), status["samples"]
    books_balance(status)
    code, body = get_json(f"{server.url}/api/devices")
    assert code == 200
    view = next(d for d in body["devices"] if d["device_id"] == "pi-h")
    assert view["rejected"] == status["rejected_by_device"]["pi-h"]
    assert {d["device_id"] for d in body["devices"]} == {"pi-h"}  # the refused ids never reached the store


def test_stats_with_numbers_no_store_keeps_never_break_the_device_list(web_server, mosquitto_broker, devices, db_url):
    cfg = serve_config(mosquitto_broker, db_url)
    server = web_server(cfg)
    assert server.app.state.live.ingest.ready.wait(10)
    devices.send("edge-har/pi-s/stats", stats("pi-s"))
    devices.send("edge-har/pi-s/stats", _raw(stats("pi-s"), "uptime_s", "Infinity"))
    devices.send("edge-har/pi-s/stats", json.dumps({**stats("pi-s"), "extra": {"s": "\ud800"}}))
    devices.send("edge-har/pi-s/stats", json.dumps({**stats("pi-s"), "extra": "x" * 20_000}))
    devices.send("edge-har/pi-s/stats", _raw(stats("pi-s"), "windows_per_s", "1" + "0" * 400))  # the last one
    devices.send("edge-har/pi-s/prediction", prediction("pi-s", 0))
    wait_stored(server.url, "pi-s", [0])
    code, body = get_json(f"{server.url}/api/devices")
    assert code == 200 and body["devices"][0]["stats"]["windows_per_s"] == 2.5
    status = settled(server.url)
    assert status["stats"] == 1 and status["rejected"] == {"number": 2, "bad_field": 1, "too_large": 1}
    books_balance(status)
    code, body = get_json(f"{server.url}/api/devices")
    assert code == 200 and body["devices"][0]["stats"]["windows_per_s"] == 2.5
    server.stop()
    again = web_server(cfg)
    code, body = get_json(f"{again.url}/api/devices")
    assert code == 200 and body["devices"][0]["stats"]["windows_per_s"] == 2.5


def test_what_an_older_version_stored_never_breaks_a_read(web_server, db_url):
    """Rows written with SQL as an older version wrote them: stats as they came, strings past their column."""
    store = open_store_url(db_url)  # creates the tables
    now = time.time()
    huge = "1" + "0" * 400
    stats_text = f'{{"windows_per_s": {huge}, "uptime_s": 1e999, "ts": -1e999, "mqtt": {{"reconnects": {huge}}}}}'
    long_id = "d" * 128
    rows = [("pi-old", stats_text)]
    if store.backend == "sqlite":  # SQLite keeps what PostgreSQL refuses: NaN, ids and labels past the column
        long_id = "d" * 300
        rows.append(("pi-nan", '{"windows_per_s": NaN, "queue_depth": Infinity, "inference_ms": {"p50": -Infinity}}'))
    rows.append((long_id, "[1, 2, 3]"))
    as_json = "CAST(:s AS json)" if store.backend == "postgresql" else ":s"
    with store.engine.begin() as conn:
        for device_id, text in rows:
            conn.execute(
                sa.text(
                    "INSERT INTO devices (device_id, status, stats, stats_at, last_seen) "
                    f"VALUES (:d, 'online', {as_json}, :t, :t)"
                ),
                {"d": device_id, "s": text, "t": now},
            )
        conn.execute(
            sa.text(
                "INSERT INTO predictions (device_id, run_id, seq, ts, label, confidence, probabilities, model_id, "
                f"received_at) VALUES (:d, 'r', 9223372036854775807, :t, :l, 0.5, {as_json}, 'm', :t)"
            ),
            {"d": long_id, "t": now, "l": "L" * (128 if store.backend != "sqlite" else 1000), "s": f'{{"a": {huge}}}'},
        )
    store.close()
    from edge_har.web.config import ServeConfig

    server = web_server(ServeConfig(db_url=db_url))
    code, body = get_json(f"{server.url}/api/devices")
    assert code == 200, body
    code, books = get_json(f"{server.url}/api/ingest")  # no broker: no books (the typed body's figures are null)
    assert code == 200 and books["configured"] is False
    assert all(value is None for key, value in books.items() if key != "configured"), books
    shown = {d["device_id"]: d for d in body["devices"]}
    assert shown["pi-old"]["stats"]["windows_per_s"] is None and shown["pi-old"]["stats"]["uptime_s"] is None
    assert shown[long_id]["stats"] is None and shown[long_id]["activity"]["label"].startswith("L")
    if "pi-nan" in shown:
        assert shown["pi-nan"]["stats"]["windows_per_s"] is None


POISON_SQL = {
    # A check the database makes and ingest cannot: PostgreSQL refuses the value as out of range (a column
    # narrowed by hand), SQLite through a trigger. Rows that pass every ingest check, refused as data.
    "postgresql": ["ALTER TABLE predictions ALTER COLUMN inference_ms TYPE numeric(6, 2)"],
    "sqlite": [
        "CREATE TRIGGER poison BEFORE INSERT ON predictions WHEN NEW.inference_ms > 9999 "
        "BEGIN SELECT RAISE(ABORT, 'value out of range'); END"
    ],
}


def test_a_row_the_database_refuses_is_set_aside_and_the_rest_of_its_batch_stored(
    web_server, mosquitto_broker, devices, db_url
):
    server = web_server(serve_config(mosquitto_broker, db_url))
    live = server.app.state.live
    assert live.ingest.ready.wait(10)
    with live.store.engine.begin() as conn:
        for statement in POISON_SQL[live.store.backend]:
            conn.execute(sa.text(statement))
    sent = [prediction("pi-p", seq) for seq in range(10)]
    sent[4]["inference_ms"] = 123456.0  # fits a double, not numeric(6, 2)
    for payload in sent:
        devices.send("edge-har/pi-p/prediction", payload)
    wait_stored(server.url, "pi-p", [0, 1, 2, 3, 5, 6, 7, 8, 9])
    status = settled(server.url)
    assert status["rejected"] == {"db_rejected": 1} and status["rejected_predictions"] == 1
    assert status["db"]["set_aside"] == 1 and status["db"]["state"] == "ok" and status["db"]["outages"] == 0
    assert status["db_errors"] == 0  # not taken for an outage, not retried
    assert status["gaps"] == 0  # the refused row arrived: not a gap
    assert any(s["reason"] == "db_rejected" for s in status["samples"])
    books_balance(status)
    devices.send("edge-har/pi-p/prediction", prediction("pi-p", 10))
    wait_stored(server.url, "pi-p", [0, 1, 2, 3, 5, 6, 7, 8, 9, 10])


def test_a_locked_database_is_an_outage_retried_until_it_is_back(web_server, mosquitto_broker, devices, tmp_path):
    """SQLite locked by another writer (what a lost server is to PostgreSQL): held, shown, retried, nothing lost."""
    url = f"sqlite:///{tmp_path / 'locked.sqlite3'}"
    server = web_server(serve_config(mosquitto_broker, url))
    live = server.app.state.live
    assert live.ingest.ready.wait(10)
    blocker = sa.create_engine(url, connect_args={"timeout": 0.1})
    conn = blocker.connect()
    try:
        conn.exec_driver_sql("BEGIN EXCLUSIVE")
        for seq in range(5):
            devices.send("edge-har/pi-o/prediction", prediction("pi-o", seq))
        wait_until(
            lambda: get_json(f"{server.url}/api/ingest")[1]["db"]["state"] == "outage", timeout=20, what="outage"
        )
        status = get_json(f"{server.url}/api/ingest")[1]
        assert status["stored"] == 0 and status["queued"] == 5 and status["db"]["outages"] == 1
        assert "locked" in status["db"]["last_error"]
    finally:
        conn.exec_driver_sql("ROLLBACK")
        conn.close()
        blocker.dispose()
    wait_stored(server.url, "pi-o", [0, 1, 2, 3, 4], timeout=40)
    status = settled(server.url)
    assert status["db"]["state"] == "ok" and status["rejected"] == {} and status["db"]["set_aside"] == 0
    books_balance(status)


def test_the_ingest_and_the_api_agree_on_what_a_device_id_is():
    from edge_har.web import ingest_checks, live

    assert ingest_checks.DEVICE_ID.pattern == live._DEVICE_ID.pattern


def test_a_bug_on_one_message_or_in_the_loop_is_counted_and_ingest_goes_on(
    web_server, mosquitto_broker, devices, monkeypatch, tmp_path
):
    """Faults injected into ingest's own code (not the broker, not the database): it must outlive them."""
    from edge_har.web import ingest as ingest_module

    real_check, real_brief = ingest_module.check_prediction, ingest_module.stats_brief

    def buggy_check(device_id: str, payload: bytes) -> dict:
        if b'"seq": 1,' in payload:
            raise ZeroDivisionError("a bug in a check")
        return real_check(device_id, payload)

    def buggy_brief(stats):
        raise KeyError("a bug after the write")

    monkeypatch.setattr(ingest_module, "check_prediction", buggy_check)
    monkeypatch.setattr(ingest_module, "stats_brief", buggy_brief)
    server = web_server(serve_config(mosquitto_broker, f"sqlite:///{tmp_path / 'bug.sqlite3'}"))
    assert server.app.state.live.ingest.ready.wait(10)
    for seq in range(3):
        devices.send("edge-har/pi-b/prediction", prediction("pi-b", seq))
    devices.send("edge-har/pi-b/stats", stats("pi-b"))
    wait_stored(server.url, "pi-b", [0, 2])
    status = settled(server.url)
    assert status["rejected"] == {"internal_error": 1} and status["loop_errors"] == 1
    assert "ZeroDivisionError" in status["samples"][0]["detail"]
    monkeypatch.setattr(ingest_module, "stats_brief", real_brief)
    devices.send("edge-har/pi-b/prediction", prediction("pi-b", 3))
    wait_stored(server.url, "pi-b", [0, 2, 3])
    status = settled(server.url)
    assert status["stats"] == 1 and status["gaps"] == 0  # the message the bug hit arrived: not a gap
    books_balance(status)


def test_rejections_are_counted_by_device_for_at_most_a_hundred_devices(tmp_path):
    from types import SimpleNamespace

    from edge_har.mqtt.config import MqttConfig
    from edge_har.web.config import ServeConfig
    from edge_har.web.ingest import Hub, Ingest

    store = open_store_url(f"sqlite:///{tmp_path / 'many.sqlite3'}")
    ingest = Ingest(ServeConfig(mqtt=MqttConfig()), store, Hub(), flush_s=0.0)
    for i in range(150):
        ingest._on_message(None, None, SimpleNamespace(topic=f"edge-har/pi-{i:03d}/prediction", payload=b"{", qos=0))
    while ingest.status()["queued"]:
        ingest._step({"sweep": float("inf"), "prune": float("inf")})
    status = ingest.status()
    assert len(status["rejected_by_device"]) == 101 and status["rejected_by_device"]["(other)"] == 50
    assert sum(status["rejected_by_device"].values()) == 150 == status["rejected"]["not_json"]
    assert len(status["samples"]) == 20 and status["samples"][-1]["topic"] == "edge-har/pi-149/prediction"
    assert ingest.device_books("pi-000") == {"gaps": 0, "rejected": 1}
    assert ingest.device_books("pi-149") == {"gaps": 0, "rejected": 0}  # counted under (other)
    store.close()
