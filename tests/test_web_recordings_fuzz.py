"""schemathesis over the recordings routes of ``edge-har serve``: no 5xx, every answer as ``/openapi.json`` says.

The app is the real one on SQLite and a real mosquitto (the device commands publish), with a recordings folder
holding two real sessions (one labelled); half of
the valid requests name a stored device and session, so the deep paths (signal decimation, labels saved,
uploads appended, the zip) answer 200 too, not only the refusals of random data. Each operation gets schema-valid
requests (positive) and schema-violating ones (negative); a negative one must be refused with a 4xx.
``EDGE_HAR_FUZZ_EXAMPLES`` sets the examples per operation and mode (default 15); ``-s`` shows the statuses.
"""

from __future__ import annotations

import collections
import os
from typing import Any

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from edge_har.web.app import create_app  # noqa: E402
from edge_har.web.config import ServeConfig  # noqa: E402
from tests.test_web_api_fuzz import CHECKS, has_inputs, operations  # noqa: E402
from tests.test_web_recordings import T0, meta_bytes, part_bytes  # noqa: E402

EXAMPLES = int(os.environ.get("EDGE_HAR_FUZZ_EXAMPLES", "15"))
SESSIONS = (("pi-1", "20261207T060000Z"), ("pi-2", "capture-1-0"))
LABELS = f"label,start,end\nwalk,{T0:.6f},{T0 + 20:.6f}\n".encode()


def seed(client: Any) -> None:
    for device, session in SESSIONS:
        base = f"/api/recordings/{device}/{session}/files"
        assert client.post(f"{base}/recording.json?offset=0", content=meta_bytes(device, session)).status_code == 200
        assert client.post(f"{base}/part-00000.csv?offset=0", content=part_bytes(1500)).status_code == 200
    assert client.put("/api/recordings/pi-1/20261207T060000Z/files/labels.csv", content=LABELS).status_code == 200


def recordings_operations(schema: Any) -> list[Any]:
    return [
        op
        for op in operations(schema)
        if op.path.startswith("/api/recordings")
        or op.path
        in ("/api/devices/{device_id}/record", "/api/devices/{device_id}/label", "/api/devices/{device_id}/correct")
    ]


class Fuzzing:
    """Statuses seen and failures, per (operation, generation mode)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.statuses: dict[tuple[str, str], collections.Counter[int]] = collections.defaultdict(collections.Counter)
        self.failures: list[str] = []

    def run(self, op: Any, mode: GenerationMode) -> None:
        key = (op.label, mode.value)
        positive = mode is GenerationMode.POSITIVE

        # derandomize: the same inputs every run, so "some upload got a 200" is decided once, not by the draw
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(case=op.as_strategy(mode), real=st.booleans(), which=st.sampled_from(SESSIONS))
        def check(case: Any, real: bool, which: tuple[str, str]) -> None:
            params = case.path_parameters or {}
            if positive and (real or "name" in params) and "device_id" in params:  # every positive upload lands
                params["device_id"] = which[0]
                if "session_id" in params:
                    params["session_id"] = which[1]
                # the seeded samples' range, not a random one; the explained window's default time, model, label
                for name in ("start", "end", "at", "model_id", "target"):
                    (case.query or {}).pop(name, None)
                if "name" in params:  # an upload: at the file's size, into a session of its own
                    params["session_id"] = "fuzz-uploads"
                    files = self.client.get(f"/api/recordings/{params['device_id']}/fuzz-uploads/files").json()
                    case.query["offset"] = files["files"].get(params["name"], 0)
            response = case.call()
            self.statuses[key][response.status_code] += 1
            case.validate_response(response, checks=CHECKS)

        try:
            check()
        except Unsatisfiable:
            pass
        except Exception as exc:  # noqa: BLE001 - every operation runs; all failures are reported at the end
            self.failures.append(f"{op.label} ({mode.value}):\n{exc}")


def test_schemathesis_over_the_recordings_routes(tmp_path, mosquitto_broker, tiny_bundle):
    from edge_har.mqtt.config import MqttConfig

    mqtt = MqttConfig(host=mosquitto_broker.host, port=mosquitto_broker.port, reconnect_min_s=0.1, reconnect_max_s=1.0)
    cfg = ServeConfig(  # the tiny bundle loaded: the seeded sessions' windows are explained
        db_path=tmp_path / "w.sqlite3",
        recordings_dir=tmp_path / "rec",
        mqtt=mqtt,
        client_id="fuzz",
        bundles=(tiny_bundle,),
    )
    app = create_app(cfg)
    with TestClient(app) as client:
        fuzz = Fuzzing(client)
        assert app.state.recordings.relay.ready.wait(10)  # the commands publish (200), not a 503
        seed(client)
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        # DELETE last: it removes the seeded sessions the other routes read
        ops = sorted(recordings_operations(schema), key=lambda op: op.method.upper() == "DELETE")
        assert len(ops) >= 13, [op.label for op in ops]
        for op in ops:
            fuzz.run(op, GenerationMode.POSITIVE)
            if has_inputs(op):
                fuzz.run(op, GenerationMode.NEGATIVE)
    for (label, mode), seen in sorted(fuzz.statuses.items()):
        print(f"  {label:60} {mode:8} {dict(sorted(seen.items()))}")
    assert not fuzz.failures, "\n\n".join(fuzz.failures)
    statuses = fuzz.statuses
    assert statuses[("GET /api/recordings/{device_id}/{session_id}/signal", "positive")][200] > 0
    assert statuses[("GET /api/recordings/{device_id}/{session_id}/labels", "positive")][200] > 0
    assert statuses[("GET /api/recordings/{device_id}/{session_id}/explain", "positive")][200] > 0
    assert statuses[("GET /api/recordings/export.zip", "positive")][200] > 0
    assert statuses[("GET /api/recordings", "positive")][200] > 0
    assert statuses[("POST /api/devices/{device_id}/record", "positive")][200] > 0
    assert statuses[("POST /api/recordings/{device_id}/{session_id}/files/{name}", "positive")][200] > 0
    assert statuses[("DELETE /api/recordings/{device_id}/{session_id}", "positive")][200] > 0


def test_every_recordings_parameter_is_bounded_in_the_schema(tmp_path):
    """What schemathesis generates from: every parameter of the recordings routes states its bounds."""
    with TestClient(create_app(ServeConfig(db_path=tmp_path / "w.sqlite3", recordings_dir=tmp_path / "r"))) as c:
        paths = c.get("/openapi.json").json()["paths"]
    checked = 0
    for path, methods in paths.items():
        if not (path.startswith("/api/recordings") or path.endswith(("/record", "/label", "/correct"))):
            continue
        for op in methods.values():
            for param in op.get("parameters", []):
                parts = [param["schema"], *param["schema"].get("anyOf", [])]
                bounded = any(
                    {"maxLength", "maximum", "enum", "pattern"} & set(part) or part.get("type") == "boolean"
                    for part in parts
                )
                assert bounded, f"{path} {param['name']}: no bound in {param['schema']}"
                checked += 1
    assert checked >= 20
