"""schemathesis over every HTTP route of ``edge-har serve``: no 5xx, every answer as ``/openapi.json`` says.

The app is the real one: the tiny converted bundle loaded (``/api/predict`` predicts), a store on
SQLite and on PostgreSQL holding a few devices with predictions and status changes (the live routes
have data to serve). For each operation in the schema, schemathesis generates schema-valid requests
(positive) and schema-violating ones (negative) and checks each answer: not a server error, a status
code, content type, headers and body the schema documents, and a negative request refused. Half of
the valid uploads carry a real recording and half of the per-device requests name a stored device, so
the deep paths (windows, history rows, day summaries) answer 200 too, not only the 4xx of random data.

``EDGE_HAR_FUZZ_EXAMPLES`` sets the examples per operation and mode (default 25); run with ``-s`` to
see the inputs tried per route and the statuses they got.
"""

from __future__ import annotations

import collections
import os
import time
from typing import Any

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from edge_har.web.app import create_app  # noqa: E402
from edge_har.web.config import ServeConfig  # noqa: E402
from edge_har.web.predict import LoadedModel  # noqa: E402
from edge_har.web.store import open_store_url  # noqa: E402

pytest_plugins = ["tests.plugins.db"]

EXAMPLES = int(os.environ.get("EDGE_HAR_FUZZ_EXAMPLES", "25"))  # per operation and generation mode
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# Routes in the schema that the fuzzing leaves out, and why: each must be covered elsewhere.
NOT_FUZZED = {
    "GET /api/stream": "an endless event stream without parameters (tests/test_web_live.py reads it)",
    **{  # a 503 without --broker: tests/test_web_recordings_fuzz.py fuzzes them with a broker
        f"POST /api/devices/{{device_id}}/{command}": "tests/test_web_recordings_fuzz.py (needs a broker)"
        for command in ("record", "label", "correct")
    },
}
DEVICES = ("pi-1", "pi-kitchen", "wrist_7")


def seed_store(url: str) -> None:
    """A few devices with an hour of predictions (two labels), status changes and falls, as ingest stores them."""
    store = open_store_url(url)
    now = time.time()
    rows = [
        {
            "device_id": device,
            "run_id": "r1",
            "seq": i,
            "ts": now - 3600 + i * 30,
            "label": "Walk" if i % 3 else "Sit",
            "confidence": 0.8,
            "probabilities": {"Sit": 0.1, "Walk": 0.8, "Wave": 0.1},
            "model_id": "tiny",
            "variant": "int8",
            "inference_ms": 1.5,
            "received_at": now - 3600 + i * 30,
        }
        for device in DEVICES
        for i in range(120)
    ]
    store.add_predictions(rows)
    for device in DEVICES:
        store.set_status(device, "online", now - 3600)
    store.set_status(DEVICES[0], "stopped", now - 60)
    for device in DEVICES[:2]:  # a fall in the last hour (the Live page's marks) and one a day ago
        for n, ago in enumerate((600.0, 86000.0)):
            store.add_event(
                {
                    "device_id": device,
                    "run_id": "r1",
                    "event_type": "fall",
                    "impact_ts": now - ago,
                    "detected_ts": now - ago + 2.0,
                    "confidence": 0.99,
                    "first_seq": 10 * n,
                    "last_seq": 10 * n + 3,
                    "windows": 4,
                    "model_id": "tiny",
                    "variant": "int8",
                    "received_at": now - ago + 2.1,
                }
            )
    store.close()


@pytest.fixture(scope="module")
def loaded(tiny_bundle) -> LoadedModel:
    return LoadedModel.load(tiny_bundle, "int8")


@pytest.fixture(scope="module")
def recording(tiny_dataset_dir) -> bytes:
    return sorted((tiny_dataset_dir / "Walk").glob("*.txt"))[0].read_bytes()


def operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def has_inputs(operation: Any) -> bool:
    """Whether schemathesis can make a request that violates the schema (a parameter or a body to break)."""
    return bool(list(operation.path_parameters) or list(operation.query) or list(operation.body))


class Fuzzing:
    """Inputs tried, statuses seen and failures, per (operation, generation mode)."""

    def __init__(self, recording: bytes) -> None:
        self.recording = recording
        self.tried: collections.Counter[tuple[str, str]] = collections.Counter()
        self.statuses: dict[tuple[str, str], collections.Counter[int]] = collections.defaultdict(collections.Counter)
        self.failures: list[str] = []

    def run(self, op: Any, mode: GenerationMode) -> None:
        key = (op.label, mode.value)
        positive = mode is GenerationMode.POSITIVE

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy(mode), real=st.booleans(), device=st.sampled_from(DEVICES))
        def check(case: Any, real: bool, device: str) -> None:
            # Only a valid request is made more real: a negative one keeps what makes it invalid.
            if positive and real and isinstance(case.body, dict) and "file" in case.body:
                # the recording alone: a generated model_id or rate, valid by the schema, may still be one the
                # server refuses (no such model, under the model's rate / 16), and the deep path is the point
                for name in [k for k in case.body if k != "file"]:
                    del case.body[name]
                case.body["file"] = self.recording
            if positive and real and "device_id" in (case.path_parameters or {}):
                case.path_parameters["device_id"] = device
                # the range parameters' defaults (the last hour, today), which hold the seeded rows
                for name in ("since", "until", "day"):
                    (case.query or {}).pop(name, None)
            self.tried[key] += 1
            response = case.call()
            self.statuses[key][response.status_code] += 1
            case.validate_response(response, checks=CHECKS)

        try:
            check()
        except Unsatisfiable:
            pass
        except Exception as exc:  # noqa: BLE001 - every operation runs; all failures are reported at the end
            self.failures.append(f"{op.label} ({mode.value}):\n{exc}")

    def report(self) -> str:
        lines = ["inputs tried per route (mode: count {status: n}):"]
        for (label, mode), n in sorted(self.tried.items()):
            lines.append(f"  {label:42} {mode:8} {n:4}  {dict(sorted(self.statuses[(label, mode)].items()))}")
        return "\n".join(lines)


# ~35 s per store: SQLite in the default run, PostgreSQL with the slow tests (the store's own tests cover both).
@pytest.mark.parametrize("db_url", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)], indirect=True)
def test_schemathesis_over_every_route(db_url, loaded, recording, tmp_path):
    seed_store(db_url)
    app = create_app(
        ServeConfig(db_url=db_url, recordings_dir=tmp_path / "recordings", bundle_store_dir=tmp_path / "bundles"),
        [loaded],
    )
    fuzz = Fuzzing(recording)
    with TestClient(app):
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        ops = operations(schema)
        labels = {op.label for op in ops}
        assert set(NOT_FUZZED) <= labels, "a route left out of the fuzzing is no longer in the schema"
        for op in ops:
            if op.label in NOT_FUZZED:
                continue
            fuzz.run(op, GenerationMode.POSITIVE)
            if has_inputs(op):
                fuzz.run(op, GenerationMode.NEGATIVE)
    print(fuzz.report())
    assert not fuzz.failures, "\n\n".join(fuzz.failures)
    for label in labels - set(NOT_FUZZED):
        assert fuzz.tried[(label, "positive")] > 0, f"{label}: no input was tried"
    # The deep paths were reached, not only the refusals of random data.
    assert fuzz.statuses[("POST /api/predict", "positive")][200] > 0
    assert fuzz.statuses[("POST /api/explain", "positive")][200] > 0
    assert fuzz.statuses[("GET /api/devices/{device_id}/history", "positive")][200] > 0
    assert fuzz.statuses[("GET /api/devices/{device_id}/summary", "positive")][200] > 0
    assert fuzz.statuses[("GET /api/devices/{device_id}", "positive")][200] > 0
    assert fuzz.statuses[("GET /api/devices/{device_id}/export.csv", "positive")][200] > 0
    assert fuzz.statuses[("GET /healthz", "positive")][200] > 0
    assert fuzz.statuses[("GET /api/events", "positive")][200] > 0


def test_every_new_parameter_is_bounded_in_the_schema(tmp_path):
    """What schemathesis generates from: every query parameter of the live routes states its bounds."""
    with TestClient(create_app(ServeConfig(db_path=tmp_path / "w.sqlite3"))) as client:
        paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/devices/{device_id}",
        "/api/devices/{device_id}/history",
        "/api/devices/{device_id}/summary",
        "/api/devices/{device_id}/export.csv",
    ):
        for param in paths[path]["get"]["parameters"]:
            parts = [param["schema"], *param["schema"].get("anyOf", [])]
            bounded = any(
                {"maxLength", "maximum", "enum", "pattern"} & set(part) or part.get("type") == "boolean"
                for part in parts
            )
            assert bounded, f"{path} {param['name']}: no bound in {param['schema']}"


def route_paths(routes: Any) -> list[str]:
    """Every path the app answers, through FastAPI's included routers."""
    paths: list[str] = []
    for route in routes:
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        if inner is not None:
            paths += route_paths(inner)
        elif getattr(route, "path", None) is not None:
            paths.append(route.path)
    return paths


def test_every_route_of_the_app_is_in_the_schema_or_a_page(tmp_path):
    """A route added later lands in /openapi.json (and so in the fuzzing) unless it is a page or static files."""
    app = create_app(ServeConfig(db_path=tmp_path / "w.sqlite3"))
    with TestClient(app) as client:
        paths = set(client.get("/openapi.json").json()["paths"])
    pages = {
        "/",
        "/live",
        "/device/{device_id}",
        "/record",
        "/label",
        "/label/{device_id}/{session_id}",
        "/fleet",
        "/static",
        "/openapi.json",
    }
    found = route_paths(app.routes)
    assert "/api/predict" in found and "/live" in found
    for path in found:
        assert path in paths or path in pages, f"{path}: neither in the schema nor a known page"


@pytest.fixture(scope="module")
def page_client(tmp_path_factory) -> Any:
    app = create_app(ServeConfig(db_path=tmp_path_factory.mktemp("pages") / "w.sqlite3"))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@settings(max_examples=EXAMPLES * 2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.one_of(
        st.text(max_size=60),
        st.lists(st.sampled_from(["..", ".", "%2e%2e", "%2F", "app.css", "live.js", "%00", "a" * 300]), max_size=6).map(
            "/".join
        ),
    )
)
def test_property_the_pages_and_static_files_never_give_a_5xx(page_client, path):
    for prefix in ("/static/", "/"):
        try:
            reply = page_client.get(prefix + path)
        except Exception as exc:  # noqa: BLE001 - a URL the client itself refuses never reaches the server
            assert "url" in f"{type(exc).__name__} {exc}".lower(), exc
            continue
        assert reply.status_code < 500, (prefix + path, reply.status_code, reply.text[:200])
