"""Every parameter of ``edge-har serve``'s HTTP API keeps work and reply size proportional to the request.

``POST /api/predict`` on the real tiny bundle and its real interpreter: a form field or a JSON key
cannot multiply the work (a tiny ``sample_rate_hz`` resamples a small recording into millions of
samples), absurd numbers, deep JSON and over-long fields are a one-line 4xx naming the field,
never a 500. The live routes' ``since``, ``step_s``, ``day``, ``utc_offset_min`` and ``device_id``
are the same on SQLite and PostgreSQL. Property tests (hypothesis) send arbitrary values for every
field; ``EDGE_HAR_FUZZ_EXAMPLES`` raises their example counts.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edge_har.web.app import create_app  # noqa: E402
from edge_har.web.config import ServeConfig  # noqa: E402
from edge_har.web.predict import MAX_UPSAMPLE, MAX_WINDOWS, LoadedModel  # noqa: E402
from edge_har.web.store import open_store_url  # noqa: E402
from tests.plugins.bundle import TINY_STRIDE, TINY_WINDOW  # noqa: E402

pytest_plugins = ["tests.plugins.db"]

FUZZ_EXAMPLES = int(os.environ.get("EDGE_HAR_FUZZ_EXAMPLES", "60"))  # per property below
MODEL_RATE = 32.0  # the tiny bundle's sample rate


@pytest.fixture(scope="module")
def loaded(tiny_bundle) -> LoadedModel:
    return LoadedModel.load(tiny_bundle, "int8")


@pytest.fixture(scope="module")
def client(loaded, tmp_path_factory) -> Any:
    """The app (TestClient, lifespan run) with the tiny bundle and an SQLite store holding device pi-1."""
    url = f"sqlite:///{tmp_path_factory.mktemp('bounds') / 'w.sqlite3'}"
    store = open_store_url(url)
    store.set_status("pi-1", "online", time.time())
    store.close()
    with TestClient(create_app(ServeConfig(db_url=url), [loaded]), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def recording(tiny_dataset_dir) -> bytes:
    """A 'Walk' recording of the tiny data set (x y z codes at 32 Hz, about 8-12 s, 3-5 kB)."""
    return sorted((tiny_dataset_dir / "Walk").glob("*.txt"))[0].read_bytes()


def post(client: TestClient, name: str, body: bytes, **data: str) -> Any:
    return client.post("/api/predict", files={"file": (name, body, "application/octet-stream")}, data=data)


def one_line_4xx(reply: Any, status: int | tuple[int, ...], *words: str) -> str:
    statuses = (status,) if isinstance(status, int) else status
    assert reply.status_code in statuses, (reply.status_code, reply.text[:300])
    detail = reply.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and len(detail) < 400, detail
    for word in words:
        assert word in detail, (word, detail)
    return detail


# ====================================================================== POST /api/predict


def test_a_tiny_sample_rate_cannot_multiply_the_work(client, recording):
    """A few kB at 0.01 Hz would be resampled 3200-fold: refused at once, before any work."""
    started = time.perf_counter()
    reply = post(client, "walk.txt", recording, sample_rate_hz="0.01")
    detail = one_line_4xx(reply, 422, "sample_rate_hz", f"{MAX_UPSAMPLE}")
    assert time.perf_counter() - started < 2.0, detail
    lowest = MODEL_RATE / MAX_UPSAMPLE
    assert post(client, "walk.txt", recording, sample_rate_hz=f"{lowest:g}").status_code == 200
    just_under = post(client, "walk.txt", recording, sample_rate_hz=f"{lowest * 0.999:g}")
    one_line_4xx(just_under, 422, "sample_rate_hz")
    as_json = json.dumps({"samples": [[1, 2, 3]] * 200, "sample_rate_hz": 0.01}).encode()
    one_line_4xx(post(client, "walk.json", as_json), 422, "sample_rate_hz")


def test_windows_per_request_are_bounded_and_refused_before_the_work(client):
    """More windows than one request predicts is a 413 from the sample count alone, in well under a second."""
    rows = (MAX_WINDOWS + 10) * TINY_STRIDE + TINY_WINDOW
    body = b"1 2 3\n" * rows
    started = time.perf_counter()
    detail = one_line_4xx(post(client, "long.txt", body), 413, "long.txt", f"{MAX_WINDOWS}", "windows")
    assert time.perf_counter() - started < 5.0, detail
    upsampled = b"1 2 3\n" * (rows // 2)  # half the samples at a quarter of the rate: twice the windows
    one_line_4xx(post(client, "up.txt", upsampled, sample_rate_hz="8"), 413, "windows")


@pytest.mark.parametrize(
    "rate",
    ["1e308", "1e400", "inf", "-inf", "nan", "-3", "0", "1e6", "0x20", "thirty", "9" * 400, "1" * 5000],
)
def test_an_absurd_form_sample_rate_is_a_one_line_4xx(client, recording, rate):
    reply = post(client, "walk.txt", recording, sample_rate_hz=rate)
    detail = one_line_4xx(reply, 400 if len(rate) > 4096 else 422, "sample_rate_hz")
    assert len(detail) < 200  # the value is quoted cut short, not echoed whole


@pytest.mark.parametrize(
    "rate",
    ["1e400", "-1e400", "NaN", "Infinity", "9" * 400, "-5", "0", "true", '"32"', "[32]", "1e6"],
)
def test_an_absurd_json_sample_rate_is_a_one_line_422(client, rate):
    body = f'{{"samples": {json.dumps([[1, 2, 3]] * 100)}, "sample_rate_hz": {rate}}}'.encode()
    one_line_4xx(post(client, "s.json", body), 422, "s.json", "sample_rate_hz")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"[[1, 2, " + b"9" * 400 + b"]]", ["float32"]),
        (b"[[1, 2, 3e39]]", ["float32"]),
        (b"[" * 100_000, ["nested"]),
        (b'{"samples": ' + b"[" * 5000 + b"]" * 5000 + b"}", ["nested"]),
        (b"[[[1, 2, 3]]]", ["array of numbers"]),
        (b'[["1", "2", "3"]]', ["array of numbers"]),
        (b"[[true, false, true]]", ["array of numbers"]),
        (b"[[null, 1, 2]]", ["array of numbers"]),
        (b"[[]]", ["0 columns"]),
        (b'{"samples": {"a": 1}}', ["non-empty JSON array"]),
        (b'"text"', ["non-empty JSON array"]),
    ],
)
def test_malformed_json_samples_are_a_one_line_4xx(client, body, words):
    one_line_4xx(post(client, "s.json", body), (413, 422), "s.json", *words)


def test_recording_values_beyond_float32_are_refused(client):
    """3e39 parses, but as float32 (what the interpreter takes) it is infinity: refused, not junk probabilities."""
    one_line_4xx(post(client, "big.txt", b"1 2 3e39\n" * 200), 422, "big.txt", "float32")


def test_over_long_fields_are_refused_and_never_echoed_whole(client, recording):
    one_line_4xx(post(client, "walk.txt", recording, model_id="m" * 100_000), 400, "model_id")
    one_line_4xx(post(client, "walk.txt", recording, model_id="m" * 300), 400, "model_id")
    one_line_4xx(post(client, "w" * 300 + ".txt", recording), 400, "file name")


def test_form_mistakes_are_one_line_4xx(client, recording):
    one_line_4xx(
        client.post("/api/predict", content=b"--x\r\n", headers={"content-type": "multipart/form-data"}), (400, 415)
    )
    two = client.post(
        "/api/predict",
        files=[("file", ("a.txt", recording, "text/plain")), ("file", ("b.txt", recording, "text/plain"))],
    )
    one_line_4xx(two, 400)
    many = {f"f{i}": "x" for i in range(20)}
    one_line_4xx(post(client, "walk.txt", recording, **many), 400)


def test_the_bounds_are_stated_in_the_schema(client):
    schema = client.get("/openapi.json").json()
    form = schema["paths"]["/api/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    rate = form["properties"]["sample_rate_hz"]
    assert rate["exclusiveMinimum"] == 0 and rate["maximum"] > 0
    assert f"{MAX_UPSAMPLE}" in rate["description"]
    assert form["properties"]["model_id"]["maxLength"] > 0
    predict = schema["paths"]["/api/predict"]["post"]
    assert f"{MAX_WINDOWS}" in predict["description"]
    info = client.get("/api/info").json()
    assert info["max_windows"] == MAX_WINDOWS and info["max_upsample"] == MAX_UPSAMPLE


# ---------------------------------------------------------------------- property: any field, any value

field_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["nan", "inf", "-0", "1e309", "1e-309", "0.0001", "32", "1e5", "100000.5", "+8", " 16 "]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**60), max_value=10**60).map(str),
)
json_number = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from([0, -1, 1e308, 3.4e38, 3.5e38, 5e-324, True, None, "1", [1]]),
)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model_id=st.one_of(st.none(), field_text), rate=st.one_of(st.none(), field_text))
def test_property_any_form_fields_give_a_bounded_answer(client, recording, model_id, rate):
    data = {k: v for k, v in (("model_id", model_id), ("sample_rate_hz", rate)) if v is not None}
    started = time.perf_counter()
    reply = post(client, "walk.txt", recording, **data)
    assert time.perf_counter() - started < 5.0
    assert reply.status_code < 500, reply.text[:300]
    assert len(reply.content) < 200_000  # a 4 kB recording: a few dozen windows at most
    if reply.status_code != 200:
        one_line_4xx(reply, reply.status_code)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(st.lists(json_number, min_size=0, max_size=4), min_size=0, max_size=80),
    rate=st.one_of(st.none(), json_number),
    wrap=st.booleans(),
)
def test_property_any_json_samples_give_a_bounded_answer(client, rows, rate, wrap):
    doc: Any = {"samples": rows, "sample_rate_hz": rate} if wrap else rows
    body = json.dumps(doc).encode()
    reply = post(client, "s.json", body)
    assert reply.status_code < 500, reply.text[:300]
    assert len(reply.content) < 20 * len(body) + 20_000
    if reply.status_code != 200:
        one_line_4xx(reply, reply.status_code, "s.json")


# ====================================================================== the live routes' parameters


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("day=9999-12-31", "day"),
        ("day=9999-12-31&utc_offset_min=-960", "day"),
        ("day=0001-01-01", "day"),
        ("day=0001-01-01&utc_offset_min=60", "day"),
        ("day=1969-12-31", "day"),
        ("day=" + "2" * 5000, "day"),
        ("utc_offset_min=" + "9" * 30, "utc_offset_min"),
        ("utc_offset_min=1e3", "utc_offset_min"),
    ],
)
def test_summary_day_out_of_range_is_a_4xx_never_500(client, query, name):
    reply = client.get(f"/api/devices/pi-1/summary?{query}")
    assert 400 <= reply.status_code < 500, reply.text[:300]
    assert name in json.dumps(reply.json()["detail"])


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("since=1e300", "since"),
        ("since=9999-12-31T23:59:59-12:00", "since"),
        ("since=0001-01-01T00:00:00%2B01:00", "since"),
        ("since=1969-12-31T23:00:00Z", "since"),
        ("since=" + "9" * 5000, "since"),
        ("since=2026-12-02T14:00:00%2B99:00", "since"),
        ("step_s=1e400", "step_s"),
        ("step_s=-1", "step_s"),
        ("step_s=" + "1" * 400, "step_s"),
    ],
)
def test_history_parameters_out_of_range_are_a_4xx(client, query, name):
    reply = client.get(f"/api/devices/pi-1/history?{query}")
    assert 400 <= reply.status_code < 500, reply.text[:300]
    assert name in json.dumps(reply.json()["detail"])


def test_a_device_id_path_is_bounded(client):
    reply = client.get("/api/devices/" + "a" * 129 + "/history")
    assert 400 <= reply.status_code < 500 and "device_id" in json.dumps(reply.json()["detail"])
    assert client.get("/api/devices/" + "a" * 128 + "/history").status_code == 404  # a valid id, never seen


def schema_key(param: dict, key: str) -> Any:
    """``key`` of a parameter's schema, at its top or in one branch of an ``anyOf`` (an optional value)."""
    schema = param["schema"]
    for part in [schema, *schema.get("anyOf", [])]:
        if key in part:
            return part[key]
    raise AssertionError(f"{param['name']}: no {key} in {schema}")


def test_the_live_bounds_are_stated_in_the_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    history = {p["name"]: p for p in paths["/api/devices/{device_id}/history"]["get"]["parameters"]}
    summary = {p["name"]: p for p in paths["/api/devices/{device_id}/summary"]["get"]["parameters"]}
    assert schema_key(history["device_id"], "maxLength") == 128
    assert schema_key(summary["device_id"], "pattern")
    assert schema_key(history["since"], "maxLength") > 0
    assert schema_key(history["step_s"], "minimum") == 0.001
    assert schema_key(history["step_s"], "maximum") == 86400
    assert schema_key(summary["utc_offset_min"], "minimum") == -960
    assert schema_key(summary["utc_offset_min"], "maximum") == 960
    assert schema_key(summary["day"], "pattern")
    assert "9999-12-30" in summary["day"]["description"]


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    since=st.one_of(st.none(), field_text, st.datetimes().map(lambda d: d.isoformat())),
    step=st.one_of(st.none(), field_text),
    day=st.one_of(st.none(), st.dates().map(str), st.text(max_size=12)),
    offset=st.one_of(st.none(), st.integers(-2000, 2000).map(str), field_text),
)
def test_property_live_parameters_never_give_a_5xx(client, since, step, day, offset):
    history = {k: v for k, v in (("since", since), ("step_s", step)) if v is not None}
    summary = {k: v for k, v in (("day", day), ("utc_offset_min", offset)) if v is not None}
    for path, params in (("history", history), ("summary", summary)):
        reply = client.get(f"/api/devices/pi-1/{path}", params=params)
        assert reply.status_code in (200, 400, 422), (path, params, reply.status_code, reply.text[:300])
        if reply.status_code == 200:
            body = reply.json()
            for key in ("since", "start", "end"):
                if key in body:
                    assert math.isfinite(body[key]) and 0 <= body[key] < 253402300800 + 86400


def test_live_parameters_are_4xx_on_postgresql_too(db_url, tmp_path):
    store = open_store_url(db_url)
    store.set_status("pi-1", "online", time.time())
    store.close()
    with TestClient(create_app(ServeConfig(db_url=db_url)), raise_server_exceptions=False) as c:
        for query in ("summary?day=9999-12-31", "summary?day=0001-01-01&utc_offset_min=60", "history?since=1e300"):
            reply = c.get(f"/api/devices/pi-1/{query}")
            assert 400 <= reply.status_code < 500, (query, reply.text[:300])
        assert c.get("/api/devices/pi-1/summary?day=2026-12-01").status_code == 200
