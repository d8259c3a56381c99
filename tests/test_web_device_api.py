"""The per-device API of ``edge-har serve`` on real SQLite and PostgreSQL stores.

History ranges (``until``, ``limit``, ``truncated``, ``status_before``, ``outages``), range summaries
against the one-day summaries, the current stretch of a device, the CSV export read back with the ``csv``
module, ``/healthz`` with the database or the broker gone, ``/metrics`` parsed by prometheus_client's own
parser, and the response schemas in ``/openapi.json``. Rows are written through the store's own write
methods, as the ingest writes them; ``received_at`` is now so retention keeps them whatever ``ts`` says.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi")

import sqlalchemy as sa  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from edge_har.mqtt.config import MqttConfig  # noqa: E402
from edge_har.web import api_models, queries  # noqa: E402
from edge_har.web.app import create_app  # noqa: E402
from edge_har.web.background import free_port  # noqa: E402
from edge_har.web.config import ServeConfig  # noqa: E402
from edge_har.web.store import GAP_CAP_S, Store, open_store_url, predictions  # noqa: E402

pytest_plugins = ["tests.plugins.db"]

NOW = float(round(time.time()))
FUZZ_EXAMPLES = int(os.environ.get("EDGE_HAR_FUZZ_EXAMPLES", "40"))
DAY = 86400.0


def row(device: str, seq: int, ts: float, label: str = "Walk", run_id: str = "r1", received_at: float = NOW) -> dict:
    return {
        "device_id": device,
        "run_id": run_id,
        "seq": seq,
        "ts": ts,
        "label": label,
        "confidence": 0.75,
        "probabilities": {label: 0.75, "Other": 0.25},
        "model_id": "m-1",
        "variant": "int8",
        "inference_ms": 1.25,
        "received_at": received_at,
    }


def series(device: str, start: float, n: int, step: float = 1.0, label: str = "Walk", seq0: int = 0, **kw) -> list:
    return [row(device, seq0 + i, start + i * step, label, **kw) for i in range(n)]


@pytest.fixture
def store(db_url) -> Iterator[Store]:
    s = open_store_url(db_url)
    yield s
    s.close()


@pytest.fixture
def client_for(db_url) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(**fields: Any) -> TestClient:
        client = TestClient(create_app(ServeConfig(db_url=db_url, **fields)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


# ====================================================================== history


def test_history_honours_until_limit_and_reports_outages_and_the_status_before(store, client_for):
    t0 = NOW - 1000
    # 0..99 s, a 30 s hole, 130..229 s; stopped from 150 to 170 s; a status before the range
    store.add_predictions(series("pi-1", t0, 100) + series("pi-1", t0 + 130, 100, seq0=130))
    store.set_status("pi-1", "online", t0 - 50)
    store.set_status("pi-1", "stopped", t0 + 150)
    store.set_status("pi-1", "online", t0 + 170)
    client = client_for()

    body = client.get("/api/devices/pi-1/history", params={"since": t0 + 10, "until": t0 + 50}).json()
    assert body["until"] == t0 + 50 and body["limit"] == 20000 and body["truncated"] is False
    assert [p["ts"] for p in body["predictions"]] == [t0 + s for s in range(11, 51)]  # since < ts <= until
    assert body["status_before"] == {"status": "online", "received_at": t0 - 50}
    assert body["status"] == [] and body["outages"] == []
    api_models.HistoryResponse.model_validate(body)

    iso = dt.datetime.fromtimestamp(t0 + 200, dt.timezone.utc).isoformat()
    body = client.get("/api/devices/pi-1/history", params={"since": t0 - 1, "until": iso, "limit": 25}).json()
    assert body["truncated"] is True and len(body["predictions"]) == 25
    assert body["predictions"][-1]["ts"] == t0 + 200 and body["predictions"][0]["ts"] == t0 + 176  # newest kept
    assert [s["status"] for s in body["status"]] == ["stopped", "online"]
    assert body["outages"] == [
        {"start": t0 + 99, "end": t0 + 130, "reason": "no_data"},
        {"start": t0 + 150, "end": t0 + 170, "reason": "stopped"},
    ]

    # a range that starts while stopped: the outage is clipped to the range start
    body = client.get("/api/devices/pi-1/history", params={"since": t0 + 160, "until": t0 + 165}).json()
    assert body["status_before"]["status"] == "stopped"
    assert body["outages"] == [{"start": t0 + 160, "end": t0 + 165, "reason": "stopped"}]

    # a device still offline at the end: the outage runs to until
    store.set_status("pi-1", "offline", t0 + 300)
    body = client.get("/api/devices/pi-1/history", params={"since": t0 + 250, "until": t0 + 400}).json()
    # silent from the last prediction (t0 + 229) while online, then offline: the edge's no_data stops where
    # the status takes over
    assert body["outages"] == [
        {"start": t0 + 250, "end": t0 + 300, "reason": "no_data"},
        {"start": t0 + 300, "end": t0 + 400, "reason": "offline"},
    ]

    # gaps of exactly the cap are not outages; thinning does not hide a gap
    body = client.get("/api/devices/pi-1/history", params={"since": t0 - 1, "until": t0 + 229, "step_s": 60}).json()
    assert len(body["predictions"]) <= 5 and body["outages"][0]["reason"] == "no_data"


def test_the_silent_edges_of_a_range_are_outages_up_to_now(store):
    t0 = NOW - 1000
    store.add_predictions(series("pi-1", t0, 10) + series("pi-1", t0 + 100, 10, seq0=10))  # 0..9 s, 100..109 s

    def edges(since, until):
        return [
            (o["start"] - t0, o["end"] - t0, o["reason"])
            for o in queries.outages(store, "pi-1", t0 + since, t0 + until, None, [], 100, now=t0 + 500)
        ]

    assert edges(50, 105) == [(50, 100, "no_data")]  # the previous prediction (9 s) is more than the cap older
    assert edges(8, 105) == [(9, 100, "no_data")]  # the range starts inside a stretch: the gap between them
    assert edges(102, 400) == [(109, 400, "no_data")]  # silent since 109 s, to the range end
    assert edges(102, 2000) == [(109, 500, "no_data")]  # a range into the future stops at now
    assert edges(200, 300) == [(200, 300, "no_data")]  # nothing in the range
    assert edges(110, 113) == []  # within the cap of the last prediction: no outage
    assert edges(-50, 5) == [(-50, 0, "no_data")]  # before the device's first prediction


@pytest.mark.parametrize(
    ("query", "status", "name"),
    [
        ({"since": 100, "until": 100}, 400, "until"),
        ({"since": 200, "until": 100}, 400, "until"),
        ({"until": "soon"}, 400, "until"),
        ({"until": "-3"}, 400, "until"),
        ({"limit": 0}, 400, "limit"),
        ({"limit": 20001}, 400, "limit"),
        ({"limit": "all"}, 422, "limit"),
    ],
)
def test_history_range_mistakes_are_one_line_naming_the_parameter(tmp_path, query, status, name):
    url = f"sqlite:///{tmp_path / 'w.sqlite3'}"
    s = open_store_url(url)
    s.set_status("pi-1", "online", NOW)
    s.close()
    with TestClient(create_app(ServeConfig(db_url=url))) as client:
        for path in ("/api/devices/pi-1/history", "/api/devices/pi-1/export.csv"):
            if name == "limit" and "export" in path:
                continue
            reply = client.get(path, params=query)
            assert reply.status_code == status, reply.text
            detail = reply.json()["detail"]
            if status == 400:
                assert isinstance(detail, str) and detail.startswith(f"{name}: ") and "\n" not in detail
            assert name in json.dumps(detail)


# ====================================================================== summaries


def test_a_range_summary_equals_the_day_summaries_and_is_one_statement(store, client_for):
    offset = 60  # CET
    tz = dt.timezone(dt.timedelta(minutes=offset))
    first = dt.datetime.now(tz).date() - dt.timedelta(days=3)
    midnight = dt.datetime.combine(first, dt.time(), tz).timestamp()
    rows = []
    # a run across the first midnight, another label on day 2, a stretch on day 3 with a gap in it
    rows += series("pi-1", midnight + DAY - 20, 40, step=1.0, label="Walk")
    rows += series("pi-1", midnight + DAY + 3600, 30, step=2.0, label="Sit", seq0=100, run_id="r2")
    rows += series("pi-1", midnight + 2 * DAY + 50, 10, step=0.5, label="Walk", seq0=200, run_id="r3")
    rows += series("pi-1", midnight + 2 * DAY + 70, 10, step=0.5, label="Walk", seq0=300, run_id="r3")
    rows.append(row("pi-1", 999, midnight + 3 * DAY, "Sit", run_id="r4"))  # exactly midnight: the next day
    store.add_predictions(rows)
    client = client_for()
    since, until = first.isoformat(), (first + dt.timedelta(days=4)).isoformat()

    statements: list[str] = []
    engine = client.app.state.live.store.engine
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    body = client.get(
        "/api/devices/pi-1/summary", params={"since": since, "until": until, "utc_offset_min": offset}
    ).json()
    assert len([s for s in statements if "predictions" in s]) == 1
    assert body["since"] == midnight and body["until"] == midnight + 4 * DAY
    assert [d["day"] for d in body["days"]] == [(first + dt.timedelta(days=k)).isoformat() for k in range(4)]
    api_models.SummaryResponse.model_validate(body)

    total: dict[str, float] = {}
    for day in body["days"]:
        one = client.get("/api/devices/pi-1/summary", params={"day": day["day"], "utc_offset_min": offset}).json()
        assert one["day"] == day["day"] and one["start"] == day["start"] and one["end"] == day["end"]
        assert day["seconds"] == pytest.approx(one["seconds"]) and day["total_s"] == pytest.approx(one["total_s"])
        for label, s in one["seconds"].items():
            total[label] = total.get(label, 0.0) + s
    assert body["seconds"] == pytest.approx(total) and body["total_s"] == pytest.approx(sum(total.values()))
    assert body["days"][0]["seconds"]["Walk"] == pytest.approx(20.0)  # -20 s .. midnight
    assert body["days"][1]["seconds"] == pytest.approx({"Walk": 20.0, "Sit": 60.0})
    # two stretches of 10 windows 0.5 s apart; the last of each (before the 15.5 s gap, and the run's last)
    # lasts the 0.5 s gap before it
    assert body["days"][2]["seconds"]["Walk"] == pytest.approx(2 * 10 * 0.5)
    assert body["days"][3]["seconds"] == {"Sit": GAP_CAP_S}  # a lone window lasts the cap

    short = client.get(
        "/api/devices/pi-1/summary", params={"since": since, "until": until, "utc_offset_min": offset, "by": "total"}
    ).json()
    assert "days" not in short and short["seconds"] == pytest.approx(body["seconds"])


@pytest.mark.parametrize(
    ("query", "status", "name"),
    [
        ({"since": "2026-01-01", "until": "2027-01-03"}, 400, "until"),  # 367 days
        ({"since": "2026-01-02", "until": "2026-01-01"}, 400, "until"),
        ({"since": "yesterday"}, 400, "since"),
        ({"day": "2026-01-01", "since": "2026-01-01"}, 400, "day"),
        ({"by": "week"}, 422, "by"),
        # the last hours of 9999 at +16 h: the next local midnight is past what a date holds (was a 500)
        ({"since": "253402200000", "utc_offset_min": 960}, 400, "since"),
        ({"since": "86400", "until": "253402000000"}, 400, "until"),  # refused before listing 3.6 M days
    ],
)
def test_summary_range_mistakes_name_the_parameter(tmp_path, query, status, name):
    url = f"sqlite:///{tmp_path / 'w.sqlite3'}"
    s = open_store_url(url)
    s.set_status("pi-1", "online", NOW)
    s.close()
    with TestClient(create_app(ServeConfig(db_url=url))) as client:
        reply = client.get("/api/devices/pi-1/summary", params=query)
        assert reply.status_code == status, reply.text
        assert name in json.dumps(reply.json()["detail"])
        year = client.get("/api/devices/pi-1/summary", params={"since": "2026-01-01", "until": "2027-01-01"})
        assert year.status_code == 200 and len(year.json()["days"]) == 365


# ====================================================================== the current stretch


def current_of(client: TestClient, device: str) -> dict | None:
    one = client.get(f"/api/devices/{device}").json()
    listed = next(d for d in client.get("/api/devices").json()["devices"] if d["device_id"] == device)
    assert listed["current"] == one["current"]
    return one["current"]


def test_the_current_stretch_follows_label_run_and_gap_changes(store, client_for):
    t0 = NOW - 3000
    store.add_predictions(series("pi-1", t0, 20, label="Sit") + series("pi-1", t0 + 20, 30, label="Walk", seq0=20))
    store.set_status("pi-2", "online", NOW)  # a device without predictions
    client = client_for()
    assert current_of(client, "pi-1") == {"label": "Walk", "since": t0 + 20, "duration_s": 29.0}
    assert client.get("/api/devices/pi-2").json()["current"] is None

    store.add_predictions(series("pi-1", t0 + 50, 10, label="Walk", seq0=50))  # continues: longer
    assert current_of(client, "pi-1") == {"label": "Walk", "since": t0 + 20, "duration_s": 39.0}
    store.add_predictions(series("pi-1", t0 + 59 + GAP_CAP_S + 1, 5, label="Walk", seq0=60))  # after a gap
    assert current_of(client, "pi-1") == {"label": "Walk", "since": t0 + 65, "duration_s": 4.0}
    store.add_predictions(series("pi-1", t0 + 70, 3, label="Walk", seq0=0, run_id="r2"))  # a new run
    assert current_of(client, "pi-1") == {"label": "Walk", "since": t0 + 70, "duration_s": 2.0}
    store.add_predictions(series("pi-1", t0 + 73, 2, label="Sit", seq0=3, run_id="r2"))
    assert current_of(client, "pi-1")["label"] == "Sit"

    # a stretch longer than the first scan, found by a fresh server (no remembered stretch)
    store.add_predictions(series("pi-3", t0 - 900, 1000, step=2.0, label="Sit"))
    fresh = client_for()
    assert current_of(fresh, "pi-3") == {"label": "Sit", "since": t0 - 900, "duration_s": 1998.0}
    api_models.DeviceView.model_validate(fresh.get("/api/devices/pi-3").json())


def test_one_device_is_404_when_unknown_and_400_when_not_an_id(client_for):
    client = client_for()
    assert client.get("/api/devices/ghost").status_code == 404
    reply = client.get("/api/devices/a%20b")
    assert reply.status_code == 400 and reply.json()["detail"].startswith("device_id: ")


# ====================================================================== CSV export


def test_the_export_reads_back_with_the_csv_module_and_is_injection_safe(store, client_for, monkeypatch):
    monkeypatch.setattr(queries, "EXPORT_CHUNK", 7)  # several chunks, a partial last one
    t0 = NOW - 500
    rows = series("kitchen", t0, 20)
    rows += [row("kitchen", 20, t0 + 20, "=HYPERLINK(1)"), row("kitchen", 21, t0 + 21, "@x")]
    rows[3]["label"] = 'Walk, "fast"\nnow'
    store.add_predictions(rows)
    client = client_for()
    reply = client.get("/api/devices/kitchen/export.csv", params={"since": t0 - 1, "until": t0 + 21})
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/csv")
    start = dt.datetime.fromtimestamp(t0 - 1, dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    end = dt.datetime.fromtimestamp(t0 + 21, dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    assert reply.headers["content-disposition"] == f'attachment; filename="kitchen_{start}_{end}.csv"'
    records = list(csv.DictReader(io.StringIO(reply.text)))
    assert list(records[0]) == list(queries.EXPORT_COLUMNS)
    assert len(records) == 22 and [int(r["seq"]) for r in records] == list(range(22))
    assert float(records[0]["ts"]) == t0 and records[0]["time_utc"].endswith("Z")
    assert dt.datetime.fromisoformat(records[0]["time_utc"].replace("Z", "+00:00")).timestamp() == t0
    assert records[3]["label"] == 'Walk, "fast"\nnow'
    assert records[20]["label"] == "'=HYPERLINK(1)" and records[21]["label"] == "'@x"
    assert json.loads(records[0]["probabilities"]) == {"Walk": 0.75, "Other": 0.25}
    assert records[0]["model_id"] == "m-1" and float(records[0]["inference_ms"]) == 1.25

    empty = client.get("/api/devices/kitchen/export.csv", params={"since": t0 + 100, "until": t0 + 200})
    assert empty.text.strip() == ",".join(queries.EXPORT_COLUMNS)


# ====================================================================== labels


def test_labels_are_the_models_classes_in_order_then_the_stored_ones_sorted(tmp_path, tiny_bundle):
    from edge_har.web.predict import LoadedModel
    from tests.plugins.bundle import TINY_LABELS

    url = f"sqlite:///{tmp_path / 'w.sqlite3'}"
    s = open_store_url(url)
    extra = ["Zebra", "unknown", TINY_LABELS[-1], "Alpha"]
    s.add_predictions([row("pi-1", i, NOW - 10 + i, label) for i, label in enumerate(extra)])
    s.close()
    model = LoadedModel.load(tiny_bundle, "int8")
    with TestClient(create_app(ServeConfig(db_url=url), [model])) as client:
        labels = client.get("/api/labels").json()["labels"]
        assert labels == [*[x for x in TINY_LABELS if x != "unknown"], "Alpha", "Zebra"]
        statements: list[str] = []
        sa.event.listen(client.app.state.live.store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        assert client.get("/api/labels").json()["labels"] == labels and statements == []  # cached


# ====================================================================== health and metrics


def test_healthz_is_503_when_the_sqlite_file_is_gone(tmp_path):
    path = tmp_path / "w.sqlite3"
    with TestClient(create_app(ServeConfig(db_path=path, host="0.0.0.0", password="pw-for-tests"))) as client:
        ok = client.get("/healthz")  # no credentials: an orchestrator's probe
        assert ok.status_code == 200, ok.text
        assert ok.json()["status"] == "ok" and ok.json()["store"]["backend"] == "sqlite"
        api_models.HealthResponse.model_validate(ok.json())
        assert client.get("/metrics").status_code == 401  # the rest still needs the password
        assert client.get("/healthz/").status_code == 401
        path.rename(tmp_path / "moved.sqlite3")
        gone = client.get("/healthz")
        assert gone.status_code == 503
        body = gone.json()
        assert body["status"] == "unavailable" and body["store"]["ok"] is False and body["store"]["error"]
        (tmp_path / "moved.sqlite3").rename(path)
        assert client.get("/healthz").status_code == 200


def test_healthz_is_503_when_the_postgresql_database_is_dropped(postgres_url):
    base = sa.engine.make_url(postgres_url)
    name = f"edge_har_health_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        url = base.set(database=name).render_as_string(hide_password=False)
        with TestClient(create_app(ServeConfig(db_url=url))) as client:
            body = client.get("/healthz").json()
            assert body["status"] == "ok" and body["store"]["backend"] == "postgresql"
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            gone = client.get("/healthz")
            assert gone.status_code == 503 and gone.json()["store"]["ok"] is False
            assert name in gone.json()["store"]["error"]
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_healthz_is_503_while_a_configured_broker_is_away(tmp_path):
    mqtt = MqttConfig(host="127.0.0.1", port=free_port("127.0.0.1"), reconnect_min_s=0.1, reconnect_max_s=0.5)
    with TestClient(create_app(ServeConfig(db_path=tmp_path / "w.sqlite3", mqtt=mqtt))) as client:
        reply = client.get("/healthz")
        assert reply.status_code == 503
        assert reply.json()["broker"] == {"configured": True, "connected": False}
        assert reply.json()["store"]["ok"] is True


def metrics(client: TestClient) -> dict[str, Any]:
    reply = client.get("/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            key = sample.name if not sample.labels else (sample.name, tuple(sorted(sample.labels.items())))
            out[key] = sample.value
    return out


def test_metrics_parse_and_count_what_the_ingest_and_the_store_hold(mosquitto_broker, db_url):
    from tests.ingest_helpers import prediction, wait_until
    from tests.test_web_live import Devices

    store = open_store_url(db_url)
    store.add_predictions(series("pi-old", time.time() - 30, 30, received_at=time.time()))
    store.set_status("pi-old", "stopped", time.time())
    store.close()
    mqtt = MqttConfig(host=mosquitto_broker.host, port=mosquitto_broker.port, reconnect_min_s=0.1)
    app = create_app(ServeConfig(db_url=db_url, mqtt=mqtt))
    devices = Devices(mosquitto_broker)
    try:
        with TestClient(app) as client:
            assert app.state.live.ingest.ready.wait(10)
            for seq in (0, 1, 2, 5):  # seqs 3 and 4 never arrive: two gaps
                devices.send("edge-har/pi-a/prediction", prediction("pi-a", seq))
            devices.send("edge-har/pi-a/prediction", b"{not json")
            wait_until(lambda: app.state.live.ingest.counters.stored == 4, what="4 stored")
            wait_until(lambda: sum(app.state.live.ingest.status()["rejected"].values()) == 1, what="1 rejected")
            got = metrics(client)
            status = app.state.live.ingest.status()
            assert got["edge_har_ingest_stored_total"] == 4 == status["stored"]
            assert got["edge_har_ingest_received_total"] == status["received"] >= 5
            assert got["edge_har_ingest_gaps_total"] == 2 == status["gaps"]
            (reason,) = status["rejected"]
            assert got[("edge_har_ingest_rejected_total", (("reason", reason),))] == 1
            assert got["edge_har_broker_connected"] == 1 and got["edge_har_ingest_db_up"] == 1
            assert got[("edge_har_device_gaps", (("device_id", "pi-a"),))] == 2
            assert got[("edge_har_device_predictions_per_second", (("device_id", "pi-old"),))] == pytest.approx(0.5)
            stopped = ("edge_har_device_liveness", (("device_id", "pi-old"), ("liveness", "stopped")))
            online = ("edge_har_device_liveness", (("device_id", "pi-old"), ("liveness", "online")))
            assert got[stopped] == 1 and got[online] == 0
            assert got["edge_har_devices"] == 2
    finally:
        devices.close()

    # a second app in the same process has its own registry (no duplicate-timeseries error)
    with TestClient(create_app(ServeConfig(db_url=db_url))) as client:
        assert metrics(client)["edge_har_broker_configured"] == 0


# ====================================================================== the schema and the pages


def test_the_schema_types_every_json_route_and_the_stream_is_an_event_stream(store, client_for):
    store.add_predictions(series("pi-1", NOW - 100, 10))
    client = client_for()
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    refs = {
        "/api/devices/{device_id}": "DeviceView",
        "/api/devices/{device_id}/history": "HistoryResponse",
        "/api/devices/{device_id}/summary": "SummaryResponse",
        "/api/labels": "LabelsResponse",
        "/healthz": "HealthResponse",
        "/api/devices": "DevicesPage",
    }
    for path, model in refs.items():
        ok = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok.get("$ref", "").endswith(f"/{model}"), (path, ok)
    assert paths["/healthz"]["get"]["responses"]["503"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/HealthResponse"
    )
    stream = paths["/api/stream"]["get"]["responses"]["200"]["content"]
    assert set(stream) == {"text/event-stream"}
    assert set(paths["/api/devices/{device_id}/export.csv"]["get"]["responses"]["200"]["content"]) == {"text/csv"}
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
    outage = schema["components"]["schemas"]["Outage"]["properties"]["reason"]
    assert set(outage["enum"]) == {"no_data", "stopped", "offline"}
    # a real page matches the documented model
    api_models.DevicesPage.model_validate(client.get("/api/devices", params={"hour_step_s": 60, "today": True}).json())


def test_the_device_page_is_served(client_for):
    from edge_har.web.live import STATIC

    if not (STATIC / "device.html").is_file():
        pytest.skip("static/device.html is not written yet")
    reply = client_for().get("/device/pi-1")
    assert reply.status_code == 200 and "text/html" in reply.headers["content-type"]


# ====================================================================== properties


def expected_since(points: list[tuple[float, str, str]]) -> float:
    """The current stretch's start by brute force: walk back from the newest while label, run and gap hold."""
    ordered = sorted(points)
    ts, label, run_id = ordered[-1]
    since = ts
    for prev_ts, prev_label, prev_run in reversed(ordered[:-1]):
        if (prev_label, prev_run) != (label, run_id) or since - prev_ts > GAP_CAP_S:
            break
        since = prev_ts
    return since


STEPS = st.lists(
    st.tuples(
        st.sampled_from([0.5, 1.0, 4.0, GAP_CAP_S, GAP_CAP_S + 0.5, 30.0]),
        st.sampled_from(["Walk", "Sit"]),
        st.sampled_from(["r1", "r2"]),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS, cuts=st.lists(st.integers(0, 40), max_size=4))
def test_property_the_current_stretch_found_cold_or_step_by_step_is_the_brute_force_one(db_url, steps, cuts):
    store = open_store_url(db_url)
    try:
        with store.engine.begin() as conn:
            conn.execute(sa.delete(predictions))
        remembering = queries.CurrentStretches(store, scan_s=3.0)  # short: the longer scan runs too
        points: list[tuple[float, str, str]] = []
        ts = NOW - 10_000
        edges = [0, *sorted(cuts), len(steps)]  # several pages in turn, each after some new rows
        batches = [steps[a:b] for a, b in zip(edges, edges[1:])]
        seq = 0
        for batch in batches:
            new = []
            for gap, label, run_id in batch:
                ts += gap
                seq += 1
                points.append((ts, label, run_id))
                new.append(row("pi-p", seq, ts, label, run_id=run_id))
            if not new:
                continue
            store.add_predictions(new)
            newest = {"pi-p": (points[-1][1], points[-1][2], points[-1][0])}
            want = expected_since(points)
            assert remembering.for_devices(newest)["pi-p"].since == want
            assert queries.CurrentStretches(store, scan_s=3.0).for_devices(newest)["pi-p"].since == want
    finally:
        store.close()


@settings(
    max_examples=max(10, FUZZ_EXAMPLES // 2), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    gaps=st.lists(st.sampled_from([0.5, 1.0, 3.0, 7.0, 3600.0, 30_000.0]), min_size=1, max_size=30),
    offset=st.sampled_from([-600, -90, 0, 60, 330, 840]),
    labels=st.lists(st.sampled_from(["Walk", "Sit", "Wave"]), min_size=30, max_size=30),
)
def test_property_range_days_equal_the_stores_day_summaries_and_outages_the_brute_force_gaps(
    db_url, gaps, offset, labels
):
    store = open_store_url(db_url)
    try:
        with store.engine.begin() as conn:
            conn.execute(sa.delete(predictions))
        tz = dt.timezone(dt.timedelta(minutes=offset))
        first = dt.date(2026, 11, 20)
        midnight = dt.datetime.combine(first, dt.time(), tz).timestamp()
        ts = midnight + DAY - 2.0  # the first rows straddle the first midnight
        points = []
        for i, gap in enumerate(gaps):
            points.append(row("pi-p", i, ts, labels[i], run_id="r1" if i % 7 else "r2"))
            ts += gap
        store.add_predictions(points)
        until = midnight + 3 * DAY
        days = queries.range_summary(store, "pi-p", midnight, until, offset)
        assert [span.day for span, _ in days] == [first + dt.timedelta(days=k) for k in range(3)]
        for span, seconds in days:
            assert seconds == pytest.approx(store.summary("pi-p", span.start, span.end))

        stamps = sorted(p["ts"] for p in points if midnight < p["ts"] <= until)
        silences = [(a, b) for a, b in zip(stamps, stamps[1:]) if b - a > GAP_CAP_S]
        end = min(until, time.time())
        if stamps and stamps[0] - midnight > GAP_CAP_S:  # no row before the range: the start edge
            silences.append((midnight, stamps[0]))
        if stamps and end - stamps[-1] > GAP_CAP_S:  # the end edge
            silences.append((stamps[-1], end))
        if not stamps and end - midnight > GAP_CAP_S:  # a silent range
            silences.append((midnight, end))
        want = [{"start": a, "end": b, "reason": "no_data"} for a, b in sorted(silences)]
        assert queries.outages(store, "pi-p", midnight, until, None, [], 20000) == want
    finally:
        store.close()


QUERY_VALUES = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=70),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(0, 253402300800).map(repr),
    st.dates().map(str),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(["", "day", "total", "0", "-960", "960", "20000", "20001", "1e400"]),
)
QUERY_NAMES = st.sampled_from(["since", "until", "limit", "step_s", "by", "day", "utc_offset_min"])
ROUTES = ["", "/history", "/summary", "/export.csv"]


@pytest.fixture
def any_query_client(db_url) -> Iterator[TestClient]:
    s = open_store_url(db_url)
    s.add_predictions(series("pi-1", NOW - 200, 50))
    s.set_status("pi-1", "stopped", NOW - 100)
    s.close()
    with TestClient(create_app(ServeConfig(db_url=db_url)), raise_server_exceptions=False) as client:
        yield client


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.dictionaries(QUERY_NAMES, QUERY_VALUES, max_size=4), route=st.sampled_from(ROUTES))
def test_property_any_query_of_a_device_route_is_200_or_a_one_line_4xx(any_query_client, query, route):
    reply = any_query_client.get(f"/api/devices/pi-1{route}", params=query)
    assert reply.status_code < 500, (route, query, reply.text[:300])
    if reply.status_code == 400:
        detail = reply.json()["detail"]
        assert "\n" not in detail and detail.split(":")[0] in query, (route, query, detail)


def test_a_late_delivery_that_fills_a_gap_lengthens_the_stretch_at_the_next_recheck(store):
    t0 = NOW - 500
    store.add_predictions(series("pi-1", t0, 10) + series("pi-1", t0 + 20, 10, seq0=20))
    newest = {"pi-1": ("Walk", "r1", t0 + 29)}
    remembering = queries.CurrentStretches(store, recheck_s=3600.0)
    rechecking = queries.CurrentStretches(store, recheck_s=0.0)
    assert remembering.for_devices(newest)["pi-1"].since == t0 + 20 == rechecking.for_devices(newest)["pi-1"].since
    store.add_predictions(series("pi-1", t0 + 10, 10, seq0=10))  # the device's offline queue, delivered late
    assert rechecking.for_devices(newest)["pi-1"].since == t0
    assert remembering.for_devices(newest)["pi-1"].since == t0 + 20  # until its recheck


def test_healthz_answers_503_within_its_timeout_while_the_database_hangs(postgres_url):
    """A server that accepts the connection and never answers (a hung PostgreSQL, a partition)."""
    from edge_har.web.health import HealthCheck

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    store = open_store_url(postgres_url)
    real = store.engine
    try:
        port = silent.getsockname()[1]
        store.engine = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/hung")
        check = HealthCheck(store, timeout_s=0.5)
        for _ in range(3):  # the one check in flight is waited on again, not joined by more threads
            started = time.monotonic()
            status, body = check.report({"configured": False, "connected": False})
            assert time.monotonic() - started < 2.0
            assert status == 503 and "did not answer SELECT 1 within 0.5 s" in body["store"]["error"]
        assert sum(t.name == "healthz" for t in threading.enumerate()) == 1
    finally:
        silent.close()  # the hung connect fails and its thread ends
        store.engine.dispose()
        store.engine = real
        store.close()
