"""``POST /api/explain`` and ``GET /api/recordings/.../explain`` on the real tiny bundle and its int8 interpreter.

The window explained must be the one the Predict API predicted (same label and probabilities, from
the device's own windowing), its samples the device's normalised window with the bundle's
normalisation undone, and the attribution the one :func:`edge_har.core.attribution.occlusion` gives
through the same TFLite variant, the same on every request. Each mistake is a one-line 4xx naming its
field. A stored recording (uploaded through the files API) is explained at a time of it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from edge_har.core.attribution import occlusion  # noqa: E402
from edge_har.core.recording_layout import RecordingMeta  # noqa: E402
from edge_har.core.recordings import read_samples  # noqa: E402
from edge_har.device.runtime import Runtime  # noqa: E402
from edge_har.device.smoothing import Smoother  # noqa: E402
from edge_har.web.app import create_app  # noqa: E402
from edge_har.web.config import ServeConfig  # noqa: E402
from edge_har.web.predict import LoadedModel  # noqa: E402
from tests.plugins.bundle import TINY_LABELS, TINY_WINDOW  # noqa: E402

SEGMENTS = 16  # attribution.DEFAULT_SEGMENTS: a 64-sample window in 16 segments of 4 samples
T0 = 1_800_000_000.0


@pytest.fixture(scope="module")
def loaded(tiny_bundle) -> LoadedModel:
    return LoadedModel.load(tiny_bundle, "int8")


@pytest.fixture(scope="module")
def client(loaded, tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    cfg = ServeConfig(bundles=(loaded.bundle.root,), db_path=root / "w.sqlite3", recordings_dir=root / "recordings")
    with TestClient(create_app(cfg, [loaded])) as c:
        yield c


@pytest.fixture(scope="module")
def recording(tiny_dataset_dir) -> Path:
    return sorted((tiny_dataset_dir / "Walk").glob("*.txt"))[0]


def explain(client, path: Path, **data):
    return client.post("/api/explain", files={"file": (path.name, path.read_bytes(), "text/plain")}, data=data)


def device_windows(loaded: LoadedModel, samples: np.ndarray, rate: float | None = None) -> list:
    assert loaded.sensor_model is not None
    runtime = Runtime(loaded.bundle, loaded.variant, loaded.sensor_model, Smoother(loaded.bundle.labels, window=1))
    return runtime.windows(samples, source_rate_hz=rate)


def test_a_window_is_explained_as_predicted_through_the_deployed_variant(client, loaded, recording):
    predicted = client.post("/api/predict", files={"file": (recording.name, recording.read_bytes(), "text/plain")})
    assert predicted.status_code == 200, predicted.text
    windows = predicted.json()["windows"]
    index = 2
    reply = explain(client, recording, window=str(index))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    pre = loaded.bundle.preprocessing
    assert body["model_id"] == loaded.model_id and body["variant"] == "int8" and body["source"] == recording.name
    assert body["index"] == index and body["windows"] == len(windows)
    assert (body["start_s"], body["end_s"]) == (windows[index]["start_s"], windows[index]["end_s"])
    assert body["label"] == windows[index]["label"] == body["explained"]
    assert body["confidence"] == pytest.approx(windows[index]["confidence"], abs=1e-6)
    assert body["explained_probability"] == pytest.approx(body["confidence"], abs=1e-6)
    for label in TINY_LABELS:
        assert body["probabilities"][label] == pytest.approx(windows[index]["probabilities"][label], abs=1e-6)
    assert body["channels"] == list(pre.channels) and body["sample_rate_hz"] == pre.sample_rate_hz
    # The samples: the device's normalised window, back in physical units (the HMP codes are -1.5..1.5 g).
    window = device_windows(loaded, read_samples(recording))[index].data
    samples = np.asarray(body["samples"], dtype=np.float32).T
    assert samples.shape == (TINY_WINDOW, 3)
    assert np.allclose((samples - np.asarray(pre.mean)) / np.asarray(pre.std), window, atol=1e-4)
    assert np.abs(samples).max() <= 1.5 + 1e-4
    # The attribution: occlusion over the same window and interpreter.
    att = body["attribution"]
    assert att["method"] == "occlusion" and att["target"] == TINY_LABELS.index(body["label"])
    assert att["edges"] == list(range(0, TINY_WINDOW + 1, TINY_WINDOW // SEGMENTS))
    assert np.asarray(att["cells"]).shape == (SEGMENTS, 3)
    assert loaded.sensor_model is not None
    with loaded.lock:
        expected = occlusion(loaded.sensor_model.predict, window)
    assert np.allclose(att["cells"], expected.cells, atol=1e-4)
    assert att["calls"] == body["calls"] == expected.calls > SEGMENTS * 3 and body["ms"] > 0


def test_the_same_request_twice_gives_the_same_cells(client, recording):
    first = explain(client, recording, window="1").json()
    second = explain(client, recording, window="1").json()
    assert first["attribution"]["cells"] == second["attribution"]["cells"]
    assert first["samples"] == second["samples"]


def test_a_target_label_is_explained_instead_of_the_prediction(client, recording):
    default = explain(client, recording).json()
    assert default["index"] == 0  # no window field: the first
    other = next(label for label in TINY_LABELS if label != default["label"])
    reply = explain(client, recording, target=other)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["label"] == default["label"] and body["explained"] == other
    assert body["attribution"]["target"] == TINY_LABELS.index(other)
    assert body["explained_probability"] == pytest.approx(body["probabilities"][other], abs=1e-6)


def test_mistakes_are_one_line_4xx_naming_the_field(client, recording):
    n = explain(client, recording).json()["windows"]
    cases = [
        ({"window": str(n)}, 422, ["window", str(n), f"{n} windows"]),
        ({"window": "-1"}, 422, ["window", "whole number"]),
        ({"window": "two"}, 422, ["window", "whole number"]),
        ({"target": "Run"}, 422, ["target", "'Run'", "Sit, Walk, Wave"]),
        ({"target": "x" * 65}, 422, ["target", "64 characters"]),
        ({"model_id": "nope"}, 400, ["model_id", "not loaded"]),
        ({"sample_rate_hz": "0"}, 422, ["sample_rate_hz"]),
    ]
    for data, status, words in cases:
        reply = explain(client, recording, **data)
        assert reply.status_code == status, (data, reply.text)
        detail = reply.json()["detail"]
        assert "\n" not in detail and all(w in detail for w in words), (data, detail)
    # The upload itself is refused as the Predict API refuses it: same functions, same lines.
    for name, body in (("photo.png", b"\x89PNG"), ("short.txt", b"1 2 3\n" * 5)):
        files = {"file": (name, body, "application/octet-stream")}
        want = client.post("/api/predict", files=files)
        got = client.post("/api/explain", files=files)
        assert (got.status_code, got.json()) == (want.status_code, want.json())
        assert want.status_code in (415, 422)


def test_openapi_documents_the_explain_routes(client):
    schema = client.get("/openapi.json").json()
    post = schema["paths"]["/api/explain"]["post"]
    fields = post["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert {"file", "model_id", "sample_rate_hz", "window", "target"} <= set(fields)
    assert post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ExplainResponse")
    get = schema["paths"]["/api/recordings/{device_id}/{session_id}/explain"]["get"]
    assert get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ExplainResponse")
    assert {"at", "model_id", "target"} <= {p["name"] for p in get["parameters"]}
    assert {"cells", "edges", "calls", "ms"} <= set(
        schema["components"]["schemas"]["OcclusionAttribution"]["properties"]
    )


def store_session(client, device: str, session: str, codes: np.ndarray, rate: float, channels: list[str]) -> None:
    """A session through the files API, as a device pushes one: raw HMP codes with the HMP scaling."""
    meta = RecordingMeta(
        device_id=device,
        session_id=session,
        started=T0,
        channels=channels,
        sample_rate_hz=rate,
        scale=[3 / 63],
        offset=[-1.5],
        source="replay",
    )
    base = f"/api/recordings/{device}/{session}/files"
    assert (
        client.post(f"{base}/recording.json?offset=0", content=json.dumps(meta.to_json()).encode()).status_code == 200
    )
    t = T0 + np.arange(len(codes)) / rate
    rows = "".join(f"{ti:.6f}," + ",".join(f"{v:g}" for v in row) + "\n" for ti, row in zip(t, codes))
    part = f"t,{','.join(channels)}\n{rows}".encode()
    assert client.post(f"{base}/part-00000.csv?offset=0", content=part).status_code == 200


def test_a_stored_recording_is_explained_at_a_time(client, loaded, recording):
    codes = read_samples(recording)
    rate = loaded.bundle.preprocessing.sample_rate_hz
    store_session(client, "pi-x", "s1", codes, rate, ["ax", "ay", "az"])
    pre = loaded.bundle.preprocessing
    at = T0 + 3.0
    reply = client.get("/api/recordings/pi-x/s1/explain", params={"at": at})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    # The stride-grid window centred nearest to `at`, the one the Predict API numbers the same.
    index = round((3.0 - pre.window_seconds / 2) / pre.stride_seconds)
    assert body["index"] == index and body["source"] == "pi-x/s1"
    assert body["start_ts"] == pytest.approx(T0 + body["start_s"], abs=1e-6)
    assert body["start_s"] == pytest.approx(index * pre.stride_seconds, abs=1e-6)
    predicted = client.post("/api/predict", files={"file": (recording.name, recording.read_bytes(), "text/plain")})
    window = predicted.json()["windows"][index]
    assert body["windows"] == len(predicted.json()["windows"])
    assert body["label"] == window["label"] and body["confidence"] == pytest.approx(window["confidence"], abs=1e-6)
    assert np.asarray(body["attribution"]["cells"]).shape == (SEGMENTS, 3)
    # Default: the middle of the recording; a target; the same answer twice.
    middle = client.get("/api/recordings/pi-x/s1/explain").json()
    span = (len(codes) - 1) / rate
    assert abs(middle["start_s"] + pre.window_seconds / 2 - span / 2) <= pre.stride_seconds
    again = client.get("/api/recordings/pi-x/s1/explain", params={"at": at, "target": "Wave"}).json()
    assert again["explained"] == "Wave" and again["label"] == body["label"]
    repeat = client.get("/api/recordings/pi-x/s1/explain", params={"at": at}).json()["attribution"]
    assert repeat["cells"] == body["attribution"]["cells"]


def test_recording_mistakes_are_one_line_4xx(client, loaded, recording):
    codes = read_samples(recording)
    rate = loaded.bundle.preprocessing.sample_rate_hz
    store_session(client, "pi-y", "ok", codes[:200], rate, ["ax", "ay", "az"])
    store_session(client, "pi-y", "wide", np.hstack([codes[:200], codes[:200, :1]]), rate, ["a", "b", "c", "d"])
    store_session(client, "pi-y", "short", codes[:20], rate, ["ax", "ay", "az"])
    cases = [
        ("/api/recordings/pi-y/nope/explain", {}, 404, ["pi-y/nope"]),
        ("/api/recordings/pi-y/ok/explain", {"at": T0 - 100}, 422, ["at", "outside"]),
        ("/api/recordings/pi-y/ok/explain", {"target": "Run"}, 422, ["target", "'Run'"]),
        ("/api/recordings/pi-y/ok/explain", {"model_id": "nope"}, 400, ["model_id", "not loaded"]),
        ("/api/recordings/pi-y/wide/explain", {}, 422, ["channels", "4", "3"]),
        ("/api/recordings/pi-y/short/explain", {}, 422, ["20 samples", "too short"]),
    ]
    for url, params, status, words in cases:
        reply = client.get(url, params=params)
        assert reply.status_code == status, (url, params, reply.text)
        detail = reply.json()["detail"]
        assert "\n" not in detail and all(w in detail for w in words), (url, params, detail)
    assert math.isfinite(client.get("/api/recordings/pi-y/ok/explain").json()["ms"])
