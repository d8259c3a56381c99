"""``GET /api/devices`` with 10,000 devices on SQLite and PostgreSQL: bounded pages, a constant number of queries.

The fleet is written straight into the store (its own write methods, one batch), then read through the
real app (FastAPI's TestClient, lifespan run). The cost of a request is judged by what it asks of the
database, counted with SQLAlchemy's ``before_cursor_execute`` event: a page is the same few statements
whether the store holds ten devices or ten thousand. No timing is asserted here; the figures are
``python -m edge_har.benchmarks.web_devices``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

pytest.importorskip("fastapi")

import sqlalchemy as sa  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edge_har.web.app import create_app  # noqa: E402
from edge_har.web.config import ServeConfig  # noqa: E402
from edge_har.web.store import Store, devices, open_store_url, predictions  # noqa: E402

pytest_plugins = ["tests.plugins.db"]

FLEET = 10_000
FUZZ_EXAMPLES = int(os.environ.get("EDGE_HAR_FUZZ_EXAMPLES", "40"))  # per backend and per property


def prediction(device: str, seq: int, ts: float, label: str = "Walk") -> dict:
    return {
        "device_id": device,
        "run_id": "r1",
        "seq": seq,
        "ts": ts,
        "label": label,
        "confidence": 0.8,
        "probabilities": {"Walk": 0.8, "Sit": 0.2},
        "model_id": "m",
        "variant": None,
        "inference_ms": 1.0,
        "received_at": ts,
    }


def fill(store: Store, n: int, now: float) -> list[str]:
    """``n`` devices: every one has a status, the even ones two predictions (the newest says Sit)."""
    ids = [f"pi-{i:05d}" for i in range(n)]
    with store.engine.begin() as conn:
        conn.execute(devices.insert(), [{"device_id": d, "status": "online", "last_seen": now} for d in ids])
    rows = []
    for i, d in enumerate(ids[::2]):
        rows += [prediction(d, 0, now - 60 - i % 7), prediction(d, 1, now - 30 - i % 7, "Sit")]
    store.add_predictions(rows)
    return ids


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    """Every SQL statement the store's engine sends while the block runs."""
    sent: list[str] = []

    def count(_conn, _cursor, statement, _params, _context, _many) -> None:
        sent.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", count)


@pytest.fixture
def fleet_client(db_url) -> Iterator[tuple[TestClient, list[str]]]:
    now = time.time()
    store = open_store_url(db_url)
    ids = fill(store, FLEET, now)
    store.close()
    with TestClient(create_app(ServeConfig(db_url=db_url))) as client:
        yield client, ids


def test_pages_walk_ten_thousand_devices_once_each_in_a_constant_number_of_statements(fleet_client):
    client, ids = fleet_client
    store = client.app.state.live.store
    with statements(store) as sent:
        first = client.get("/api/devices", params={"limit": 100})
    assert first.status_code == 200, first.text
    body = first.json()
    assert {"now", "broker", "devices", "total", "next"} <= body.keys()
    assert body["total"] == FLEET and len(body["devices"]) == 100 and body["next"] == ids[99]
    # the count, the page with each device's newest prediction, and the current stretches (one statement)
    assert len(sent) <= 4, sent  # the count, the page, the current stretches, each device's last events

    seen: list[str] = []
    after = None
    pages = 0
    while True:
        params = {"limit": 1000, **({"after": after} if after else {})}
        with statements(store) as sent:
            page = client.get("/api/devices", params=params).json()
        assert len(sent) <= 4, f"page {pages}: {len(sent)} statements"
        assert page["total"] == FLEET
        seen += [d["device_id"] for d in page["devices"]]
        pages += 1
        after = page["next"]
        if after is None:
            break
        assert len(page["devices"]) == 1000
    assert pages == 10 and seen == ids  # every device once, in id order

    views = {d["device_id"]: d for d in first.json()["devices"]}
    assert views["pi-00000"]["activity"]["label"] == "Sit" and views["pi-00001"]["activity"] is None
    assert views["pi-00000"]["liveness"] == "online"
    assert views["pi-00000"]["gaps"] == 0 and views["pi-00000"]["rejected"] == 0  # no broker: nothing counted

    # the Live page's request: a page with each device's hour and today, still a constant number of statements:
    # the page's four, the hour and its events, and today's (the rollups' versions and seconds, the rows of what
    # they lack, and three that store the buckets just computed); the next refresh stores nothing new
    with statements(store) as sent:
        detailed = client.get("/api/devices", params={"limit": 24, "hour_step_s": 10, "today": "true"}).json()
    assert len(sent) <= 12, sent
    with statements(store) as sent:
        again = client.get("/api/devices", params={"limit": 24, "hour_step_s": 10, "today": "true"}).json()
    assert len(sent) <= 9, sent
    assert [d["today"] for d in again["devices"]] == [d["today"] for d in detailed["devices"]]
    assert len(detailed["devices"]) == 24
    kitchen = detailed["devices"][0]
    assert [p["label"] for p in kitchen["hour"]] == ["Walk", "Sit"]
    assert detailed["devices"][1]["hour"] == [] and detailed["devices"][1]["today"]["seconds"] == {}

    # the whole list (the ingest's start-up) is one statement too
    with statements(store) as sent:
        records = store.devices()
    assert len(sent) == 1 and [r.device_id for r in records] == ids
    assert records[0].activity is not None and records[0].activity.seq == 1 and records[1].activity is None

    # a filter: ids containing "i-0999" in any case are pi-09990 .. pi-09999
    found = client.get("/api/devices", params={"q": "I-0999", "limit": 5}).json()
    assert found["total"] == 10 and [d["device_id"] for d in found["devices"]] == ids[9990:9995]


@pytest.mark.parametrize(
    ("query", "status", "name"),
    [
        ("limit=0", 400, "limit"),
        ("limit=1001", 400, "limit"),
        ("limit=-5", 400, "limit"),
        ("limit=" + "9" * 40, 400, "limit"),
        ("after=a%20b", 400, "after"),
        ("after=" + "x" * 129, 400, "after"),
        ("after=", 400, "after"),
        ("after=a%2Fb", 400, "after"),
        ("q=" + "x" * 129, 400, "q"),
        ("q=a%00b", 400, "q"),
        ("hour_step_s=0.5", 400, "hour_step_s"),
        ("hour_step_s=nan", 400, "hour_step_s"),
        ("hour_step_s=inf", 400, "hour_step_s"),
        ("hour_step_s=1e400", 400, "hour_step_s"),
        ("hour_step_s=1&limit=24", 400, "hour_step_s"),  # 24 devices x 3600 points is over the bound
        ("today=true&limit=101", 400, "limit"),
        ("today=true&utc_offset_min=5000", 400, "utc_offset_min"),
        ("limit=many", 422, "limit"),  # not a number at all: FastAPI's own answer, which names the field
        ("today=maybe", 422, "today"),
    ],
)
def test_bad_page_parameters_are_a_4xx_naming_the_parameter(tmp_path, query, status, name):
    url = f"sqlite:///{tmp_path / 'w.sqlite3'}"
    with TestClient(create_app(ServeConfig(db_url=url)), raise_server_exceptions=False) as client:
        response = client.get(f"/api/devices?{query}")
        assert response.status_code == status, response.text
        detail = response.json()["detail"]
        if status == 400:  # a range: one line that says which parameter and what it allows
            assert isinstance(detail, str) and "\n" not in detail and detail.startswith(f"{name}: "), detail
        assert name in json.dumps(detail)
        assert client.get("/api/devices").status_code == 200


def schema_key(param: dict, key: str):
    """``key`` of a parameter's schema, at its top or in one branch of an ``anyOf`` (an optional value)."""
    schema = param["schema"]
    for part in [schema, *schema.get("anyOf", [])]:
        if key in part:
            return part[key]
    raise AssertionError(f"{param['name']}: no {key} in {schema}")


def test_the_bounds_are_in_the_openapi_schema(tmp_path):
    with TestClient(create_app(ServeConfig(db_path=tmp_path / "w.sqlite3"))) as client:
        schema = client.get("/openapi.json").json()
    params = {p["name"]: p for p in schema["paths"]["/api/devices"]["get"]["parameters"]}
    assert schema_key(params["limit"], "minimum") == 1 and schema_key(params["limit"], "maximum") == 1000
    assert schema_key(params["after"], "maxLength") == 128 and schema_key(params["q"], "maxLength") == 128
    assert schema_key(params["hour_step_s"], "minimum") == 1 and schema_key(params["hour_step_s"], "maximum") == 3600
    assert schema_key(params["utc_offset_min"], "minimum") == -960
    assert schema_key(params["utc_offset_min"], "maximum") == 960


# ====================================================================== properties


ID_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="/+#")


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ids=st.sets(st.text(ID_CHARS, min_size=1, max_size=12), max_size=25),
    q=st.one_of(st.none(), st.text(ID_CHARS, max_size=3)),
    limit=st.integers(1, 7),
)
def test_any_fleet_and_filter_pages_to_exactly_the_matching_devices(db_url, ids, q, limit):
    """Walking the pages gives every matching id once, in the database's order, and ``total`` says how many."""
    store = open_store_url(db_url)
    try:
        with store.engine.begin() as conn:
            conn.execute(sa.delete(predictions))
            conn.execute(sa.delete(devices))
            if ids:
                conn.execute(devices.insert(), [{"device_id": d, "last_seen": 1.0} for d in ids])
        expected = {d for d in ids if q is None or q.lower() in d.lower()}
        seen: list[str] = []
        after = None
        for _ in range(len(ids) + 2):
            page = store.device_page(limit=limit, after=after, contains=q)
            assert page.total == len(expected)
            assert len(page.records) <= limit
            seen += [r.device_id for r in page.records]
            after = page.next_after
            if after is None:
                break
        assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))
        assert seen == [r.device_id for r in store.devices() if r.device_id in expected]  # one order for both
    finally:
        store.close()


QUERY_VALUES = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=140),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["true", "false", "1", "0", "", "pi-00001"]),
)
QUERY_NAMES = st.sampled_from(["limit", "after", "q", "hour_step_s", "today", "utc_offset_min"])


def test_any_query_string_is_answered_200_or_a_4xx_never_a_500(db_url):
    store = open_store_url(db_url)
    fill(store, 30, time.time())
    store.close()
    with TestClient(create_app(ServeConfig(db_url=db_url)), raise_server_exceptions=False) as client:

        @settings(max_examples=FUZZ_EXAMPLES, deadline=None)
        @given(params=st.dictionaries(QUERY_NAMES, QUERY_VALUES))
        def check(params: dict[str, str]) -> None:
            response = client.get("/api/devices", params=params)
            assert response.status_code == 200 or 400 <= response.status_code < 500, (params, response.text)
            if response.status_code == 200:
                body = response.json()
                assert len(body["devices"]) <= body["limit"]
            else:
                assert any(name in json.dumps(response.json()["detail"]) for name in params), (params, response.text)

        check()


def test_stored_numbers_no_api_can_serve_do_not_break_the_list(db_url):
    """Values an older version could store (huge integers, 1e999, NaN, not JSON) read back as None, never a 500."""
    store = open_store_url(db_url)
    now = time.time()
    store.add_predictions([prediction("pi-odd", 0, now - 5)])
    huge = "1" + "0" * 400
    with store.engine.begin() as conn:
        stats = (
            f'{{"windows_per_s": {huge}, "queue_depth": 1e999, "uptime_s": {"9" * 5000}, "mqtt": {{"reconnects": 2}}}}'
        )
        if store.backend == "postgresql":
            conn.execute(sa.text("UPDATE devices SET stats = CAST(:s AS json)"), {"s": stats})
            conn.execute(
                sa.text("UPDATE predictions SET probabilities = CAST(:p AS json)"), {"p": f'{{"Walk": {huge}}}'}
            )
            conn.execute(sa.text("UPDATE devices SET status_at = 'Infinity'"))
        else:
            conn.execute(sa.text("UPDATE devices SET stats = :s"), {"s": stats})
            conn.execute(sa.text("UPDATE predictions SET probabilities = :p"), {"p": '{"Walk": NaN, "Sit": 0.5'})
            conn.execute(sa.text("UPDATE devices SET status_at = 9e999"))
    store.close()
    with TestClient(create_app(ServeConfig(db_url=db_url)), raise_server_exceptions=False) as client:
        response = client.get("/api/devices", params={"hour_step_s": 60, "today": "true"})
        assert response.status_code == 200, response.text
        (device,) = response.json()["devices"]
    assert device["stats"]["windows_per_s"] is None and device["stats"]["queue_depth"] is None
    assert device["stats"]["reconnects"] == 2 and device["status_at"] is None
    assert device["activity"]["label"] == "Walk" and device["activity"]["probabilities"] == {}


def scanned_in_full(store: Store, query: sa.Select) -> list[str]:
    """What the database's plan for ``query`` reads from end to end (SQLite: SCAN, PostgreSQL: Seq Scan)."""
    with store.engine.connect() as conn:
        if store.backend == "sqlite":
            compiled = query.compile(store.engine)
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", tuple(compiled.params.values())).all()
            return [row[-1].split()[1] for row in plan if row[-1].startswith("SCAN ")]  # a table or its alias
        sql = str(query.compile(store.engine, compile_kwargs={"literal_binds": True}))
        (plan,) = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}").one()
    found: list[str] = []

    def walk(node: dict) -> None:
        if node.get("Node Type") == "Seq Scan":
            found.append(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found


def test_a_page_never_reads_the_whole_predictions_table(db_url):
    """The newest prediction of each device on the page is an index probe, however large the page or the table.

    On PostgreSQL a correlated subquery in the join condition let the planner hash the whole predictions
    table for a 1,000-device page (0.7 s with 200,000 rows, growing with history); the page must not.
    """
    from edge_har.web.store import _devices_query

    store = open_store_url(db_url)
    try:
        fill(store, 5000, time.time())
        for limit in (24, 1001):
            query = _devices_query((devices.c.device_id > "pi-00100",), limit, store.backend)
            assert not {"predictions", "newest"} & set(scanned_in_full(store, query)), limit
    finally:
        store.close()
