"""``edge-har serve``'s predict API, auth and command line, on the real tiny bundle and real interpreters.

Through FastAPI's TestClient (the app in process) where the HTTP details do not matter, and
through a real uvicorn (``web_server``) or a real ``edge-har serve`` process where they do: an
upload cut off at the size limit while it streams, concurrent requests, the warning and the
clean stop of the command. Every prediction is checked against the device's own runtime on the
same samples, so the API cannot drift from what a Pi would say.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from edge_har.cli import main  # noqa: E402
from edge_har.core.recordings import read_samples  # noqa: E402
from edge_har.device.runtime import Runtime  # noqa: E402
from edge_har.web.app import create_app  # noqa: E402
from edge_har.web.background import free_port  # noqa: E402
from edge_har.web.config import ServeConfig  # noqa: E402
from edge_har.web.predict import LoadedModel  # noqa: E402
from tests.plugins.bundle import TINY_LABELS, TINY_STRIDE, TINY_WINDOW  # noqa: E402

BIN = Path(sys.executable).parent
SECRET = "s3cret-for-tests"


@pytest.fixture(scope="module")
def loaded(tiny_bundle) -> LoadedModel:
    return LoadedModel.load(tiny_bundle, "int8")


@pytest.fixture
def make_client(loaded, tmp_path):
    """``make_client(**cfg_fields)`` -> a TestClient on create_app (lifespan run), bundle already loaded."""
    clients = []

    def make(**fields) -> TestClient:
        cfg = ServeConfig(bundles=(loaded.bundle.root,), db_path=tmp_path / f"db{len(clients)}.sqlite3", **fields)
        client = TestClient(create_app(cfg, [loaded]))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


@pytest.fixture(scope="module")
def recording(tiny_dataset_dir) -> Path:
    """A 'Walk' recording of the tiny data set (HMP layout: x y z codes, 32 Hz)."""
    return sorted((tiny_dataset_dir / "Walk").glob("*.txt"))[0]


def device_windows(bundle: Path, samples: np.ndarray, rate: float | None = None) -> list:
    """What the device's runtime says for these samples, window by window (no smoothing)."""
    runtime = Runtime.load(bundle, "int8", smoothing_window=1)
    return runtime.run_samples(samples, source_rate_hz=rate)


def post(client, name: str, body: bytes, content_type: str = "text/plain", **data):
    return client.post("/api/predict", files={"file": (name, body, content_type)}, data=data)


def assert_same_as_device(reply: dict, expected: list) -> None:
    assert len(reply["windows"]) == len(expected) > 0
    for got, want in zip(reply["windows"], expected):
        assert got["label"] == want.raw_label
        assert got["confidence"] == pytest.approx(want.raw_confidence, abs=1e-6)
        for label in TINY_LABELS:
            assert got["probabilities"][label] == pytest.approx(want.probabilities[label], abs=1e-6)
        assert got["latency_ms"] > 0


# ---------------------------------------------------------------------------- info and schema


def test_info_describes_the_loaded_bundle(client, tiny_bundle):
    info = client.get("/api/info").json()
    assert info["auth"] is False and info["max_upload_bytes"] == 20 * 1024 * 1024
    (b,) = info["bundles"]
    doc = json.loads((tiny_bundle / "bundle.json").read_text())
    assert b["model_id"] == doc["model_id"] and b["kind"] == "sensor"
    assert b["labels"] == TINY_LABELS
    assert b["input"]["shape"] == [1, TINY_WINDOW, 3]
    assert b["preprocessing"]["window"] == TINY_WINDOW and b["preprocessing"]["stride"] == TINY_STRIDE
    assert b["variant"] == "int8" and set(b["variants"]) == {"float32", "dynamic_range", "int8"}
    assert b["interpreter"]["backend"] in ("ai_edge_litert", "tflite_runtime", "tf_lite")
    assert ".csv" in b["accepts"] and ".json" in b["accepts"]


def test_openapi_documents_predict_and_info(client):
    schema = client.get("/openapi.json").json()
    predict = schema["paths"]["/api/predict"]["post"]
    assert "multipart/form-data" in predict["requestBody"]["content"]
    ok = predict["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ok.endswith("/PredictResponse")
    assert {"413", "415", "422"} <= set(predict["responses"])
    assert schema["paths"]["/api/info"]["get"]["responses"]["200"]["content"]["application/json"]["schema"][
        "$ref"
    ].endswith("/InfoResponse")
    assert {"windows", "summary", "probabilities", "label"} <= set(
        schema["components"]["schemas"]["PredictResponse"]["properties"]
    )


def test_the_predict_page_and_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<input type="file"' in page.text and 'href="/live"' in page.text
    for name in ("predict.js", "app.css"):
        assert client.get(f"/static/{name}").status_code == 200
    # Nothing the pages need comes from elsewhere (no CDN): an offline Pi serves them whole.
    for name in ("predict.html", "predict.js", "app.css"):
        assert not re.search(
            r"(?:src|href)=[\"']?(?:https?:)?//|url\(\s*['\"]?(?:https?:)?//", client.get(f"/static/{name}").text
        )
    assert client.get("/docs").status_code == 404  # FastAPI's CDN-loaded page is off


# ---------------------------------------------------------------------------- each input kind


def test_a_whitespace_recording_gives_the_devices_windows(client, tiny_bundle, recording):
    reply = post(client, recording.name, recording.read_bytes())
    assert reply.status_code == 200, reply.text
    body = reply.json()
    samples = read_samples(recording)
    expected = device_windows(tiny_bundle, samples)
    assert_same_as_device(body, expected)
    n = (len(samples) - TINY_WINDOW) // TINY_STRIDE + 1
    assert body["summary"]["windows"] == n and body["input"] == "recording"
    assert body["windows"][1]["start_s"] == pytest.approx(TINY_STRIDE / 32)
    assert body["windows"][0]["end_s"] == pytest.approx(TINY_WINDOW / 32)
    labels = [p.raw_label for p in expected]
    majority = max(set(labels), key=labels.count)
    assert body["label"] == body["summary"]["majority_label"] == majority
    assert body["summary"]["majority_share"] == pytest.approx(labels.count(majority) / n)
    assert sum(body["summary"]["shares"].values()) == pytest.approx(1.0)
    assert body["label"] == "Walk"  # the tiny model gets its own training data's classes right


def test_csv_semicolon_and_json_samples_give_the_same_windows(client, recording):
    samples = read_samples(recording)
    whitespace = post(client, recording.name, recording.read_bytes()).json()
    csv = "x,y,z\n" + "\n".join(",".join(f"{v:g}" for v in row) for row in samples)
    semicolon = "\n".join(";".join(f"{v:g}" for v in row) for row in samples)
    as_json = json.dumps(samples.tolist())
    wrapped = json.dumps({"samples": samples.tolist(), "sample_rate_hz": 32})
    for name, body, kind in (
        ("walk.csv", csv, "recording"),
        ("walk.txt", semicolon, "recording"),
        ("walk.json", as_json, "samples"),
        ("walk2.json", wrapped, "samples"),
    ):
        reply = post(client, name, body.encode(), "application/octet-stream")
        assert reply.status_code == 200, (name, reply.text)
        got = reply.json()
        assert got["input"] == kind and got["filename"] == name
        assert [w["probabilities"] for w in got["windows"]] == [w["probabilities"] for w in whitespace["windows"]]


def test_another_rate_is_resampled_as_on_the_device(client, tiny_bundle, recording):
    from edge_har.core.preprocessing import resample

    samples = resample(read_samples(recording), 32.0, 64.0)
    body = "\n".join(" ".join(f"{v:.6f}" for v in row) for row in samples).encode()
    reply = post(client, "walk64.txt", body, sample_rate_hz="64")
    assert reply.status_code == 200, reply.text
    assert_same_as_device(reply.json(), device_windows(tiny_bundle, samples, rate=64.0))
    as_json = json.dumps({"samples": samples.tolist(), "sample_rate_hz": 64}).encode()
    again = post(client, "walk64.json", as_json, "application/json").json()
    assert [w["label"] for w in again["windows"]] == [w["label"] for w in reply.json()["windows"]]


# ---------------------------------------------------------------------------- each 4xx


@pytest.mark.parametrize(
    "name, body, status, words",
    [
        ("photo.png", b"\x89PNG\r\n", 415, ["photo.png", "sensor bundle", ".csv"]),
        ("clip.mp4", b"\x00" * 100, 415, ["clip.mp4", "JSON array of samples"]),
        ("short.csv", b"1,2,3\n4,5,6\n7,8,9\n", 422, ["short.csv", "3 samples", "too short for one window", "64"]),
        ("two.csv", b"1,2\n" * 100, 422, ["two.csv", "2 columns", "3 channels"]),
        ("text.txt", b"1 2 3\n4 five 6\n" * 40, 422, ["text.txt", ":2:", "'five'"]),
        ("empty.txt", b"", 422, ["empty.txt", "empty file"]),
        ("bad.json", b"[[1, 2, 3], [4, 5", 422, ["bad.json", "not valid JSON"]),
        ("ragged.json", b"[[1, 2, 3], [4, 5]]", 422, ["ragged.json", "different lengths"]),
        ("obj.json", b'{"values": []}', 422, ["obj.json", "'samples'"]),
        ("nan.json", b"[[1, 2, NaN]]", 422, ["nan.json", "finite"]),
        ("cols.json", json.dumps([[1, 2, 3, 4]] * 100).encode(), 422, ["cols.json", "4 columns", "x, y, z"]),
        ("latin1.csv", "1,2,3\n\xe9,2,3\n".encode("latin-1") * 40, 422, ["latin1.csv", "UTF-8"]),
    ],
)
def test_a_bad_upload_is_one_line_naming_what_is_wrong(client, name, body, status, words):
    reply = post(client, name, body)
    assert reply.status_code == status, reply.text
    detail = reply.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    for word in words:
        assert word in detail, (word, detail)
    assert "/tmp" not in detail  # the server's temporary file is not the user's file name
    assert client.get("/api/info").status_code == 200  # and the server keeps serving


def test_request_mistakes_are_4xx(client, recording):
    assert client.post("/api/predict", content=b"1 2 3", headers={"content-type": "text/plain"}).status_code == 415
    no_file = client.post("/api/predict", data={"model_id": "x"})
    assert no_file.status_code in (400, 415) and "file" in no_file.json()["detail"]
    unknown = post(client, recording.name, recording.read_bytes(), model_id="nope")
    assert unknown.status_code == 400 and "'nope' is not loaded" in unknown.json()["detail"]
    rate = post(client, recording.name, recording.read_bytes(), sample_rate_hz="-3")
    assert rate.status_code == 422 and "sample_rate_hz" in rate.json()["detail"]


def test_an_upload_over_the_limit_is_413(make_client, recording):
    client = make_client(max_upload_bytes=2000)
    big = b"1 2 3\n" * 20_000  # 120 kB, over the limit plus the multipart allowance
    reply = post(client, "big.txt", big)
    assert (
        reply.status_code == 413 and "limit" in reply.json()["detail"] and "--max-upload-mb" in reply.json()["detail"]
    )
    just_over = b"1 2 3\n" * 400  # 2.4 kB: inside the multipart allowance, caught on the file's own size
    assert post(client, "over.txt", just_over).status_code == 413
    assert post(client, "ok.txt", b"1 2 3\n" * 30).status_code == 422  # under it: read, then too short
    assert client.get("/api/info").status_code == 200


def test_413_is_sent_while_the_upload_streams(web_server, tiny_bundle, tmp_path):
    """A chunked upload of 64 MiB to a 1 MiB limit: the 413 arrives near the limit, before the upload ends."""
    server = web_server(ServeConfig(bundles=(tiny_bundle,), max_upload_bytes=1024 * 1024))
    boundary = "edgeharboundary"
    chunk = b"1 2 3\n" * (64 * 1024 // 6)
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="huge.txt"\r\n\r\n'.encode()
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(
            f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode()
        )
        sock.sendall(f"{len(head):x}\r\n".encode() + head + b"\r\n")
        while sent < 64 * 1024 * 1024 and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        reply = b""
        while b'"}' not in reply:  # the head and the JSON body may come in two reads
            more = sock.recv(65536)
            if not more:
                break
            reply += more
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"limit" in reply
    assert sent < 16 * 1024 * 1024, f"the server let the client send {sent} bytes before answering"
    declared = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    declared.putrequest("POST", "/api/predict")
    declared.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    declared.putheader("Content-Length", str(500 * 1024 * 1024))
    declared.endheaders()  # no body at all: the declared length alone is refused
    reply = declared.getresponse()
    assert reply.status == 413 and b"limit" in reply.read()
    declared.close()
    with urllib.request.urlopen(server.url + "/api/info", timeout=10) as r:
        assert r.status == 200


def test_concurrent_requests_each_get_their_own_windows(web_server, tiny_bundle, tiny_dataset_dir):
    """Many uploads at once through a real server: the per-model lock keeps every answer exact."""
    server = web_server(ServeConfig(bundles=(tiny_bundle,)))
    files = sorted(tiny_dataset_dir.rglob("*.txt"))[:6]
    expected = {f.name: [p.raw_label for p in device_windows(tiny_bundle, read_samples(f))] for f in files}

    def upload(path: Path) -> tuple[str, list[str]]:
        boundary = "b0undary"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
                "Content-Type: text/plain\r\n\r\n"
            ).encode()
            + path.read_bytes()
            + f"\r\n--{boundary}--\r\n".encode()
        )
        request = urllib.request.Request(
            server.url + "/api/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        with urllib.request.urlopen(request, timeout=60) as r:
            return path.name, [w["label"] for w in json.loads(r.read())["windows"]]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(upload, files * 4))
    for name, labels in results:
        assert labels == expected[name], name


# ---------------------------------------------------------------------------- auth


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_every_route_needs_the_password_when_one_is_set(make_client, recording):
    client = make_client(host="0.0.0.0", password=SECRET)
    for path in ("/", "/api/info", "/static/app.css", "/openapi.json", "/live", "/api/devices", "/api/stream"):
        reply = client.get(path)
        assert reply.status_code == 401, path
        assert reply.headers["www-authenticate"].startswith("Basic realm=")
        assert "credentials required" in reply.json()["detail"]
    assert post(client, recording.name, recording.read_bytes()).status_code == 401
    for wrong in (
        _basic("me", "guess"),
        _basic("me", SECRET + "x"),
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic !!!"},
    ):
        reply = client.get("/api/info", headers=wrong)
        assert reply.status_code == 401 and "wrong credentials" in reply.json()["detail"]
    assert client.get("/api/info", headers=_basic("anyone", SECRET)).json()["auth"] is True
    assert client.get("/static/app.css", headers={"Authorization": f"Bearer {SECRET}"}).status_code == 200
    reply = client.post(
        "/api/predict",
        files={"file": (recording.name, recording.read_bytes(), "text/plain")},
        headers={"Authorization": f"Bearer {SECRET}"},
    )
    assert reply.status_code == 200 and reply.json()["label"] == "Walk"


def _serve_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["serve", "--db-path", str(tmp_path / "db.sqlite3"), *extra]


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--host", "0.0.0.0"], ["--host 0.0.0.0", "--password-file", "--insecure-no-auth"]),
        (["--host", "192.168.1.20"], ["--host 192.168.1.20", "--password-file"]),
        (["--host", "pi.local"], ["--host pi.local"]),
        (["--password-file", "/nonexistent/web.pass"], ["--password-file /nonexistent/web.pass", "cannot read"]),
        (["--bundle", "/nonexistent/bundle"], ["--bundle /nonexistent/bundle", "no bundle.json"]),
        (["--broker-username", "viewer"], ["broker options without --broker"]),
        (["--broker", "broker:99999"], ["--broker", "1-65535"]),
    ],
)
def test_serve_refuses_bad_options_in_one_line(tmp_path, capsys, extra, words):
    assert main(_serve_args(tmp_path, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edge-har serve: error:") and "\n" not in err, err
    for word in words:
        assert word in err, (word, err)
    assert "Traceback" not in err


def test_serve_refuses_an_empty_password_file_and_both_auth_options(tmp_path, capsys):
    empty = tmp_path / "empty.pass"
    empty.write_text("\n\n")
    assert main(_serve_args(tmp_path, "--password-file", str(empty))) == 2
    assert "the first line is empty" in capsys.readouterr().err
    good = tmp_path / "web.pass"
    good.write_text(SECRET + "\n")
    assert main(_serve_args(tmp_path, "--password-file", str(good), "--insecure-no-auth")) == 2
    assert "contradict" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra", [["--port", "0"], ["--port", "http"], ["--max-upload-mb", "-1"], ["--retention-days", "0"]]
)
def test_serve_argument_types_are_checked(tmp_path, capsys, extra):
    with pytest.raises(SystemExit) as exc:
        main(_serve_args(tmp_path, *extra))
    assert exc.value.code == 2
    assert extra[0] in capsys.readouterr().err


def test_loopback_needs_no_password_and_a_password_file_is_read(tmp_path):
    from edge_har.cli import build_parser
    from edge_har.web.serve_cli import build_serve_config, is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "pi.local"))
    pw = tmp_path / "web.pass"
    pw.write_text(f"{SECRET}\nsecond line ignored\n")
    parser = build_parser("serve")
    cfg = build_serve_config(parser.parse_args(_serve_args(tmp_path, "--host", "0.0.0.0", "--password-file", str(pw))))
    assert cfg.password == SECRET and cfg.host == "0.0.0.0" and cfg.mqtt is None
    assert SECRET not in repr(cfg)
    cfg = build_serve_config(
        parser.parse_args(
            _serve_args(
                tmp_path, "--broker", "mqtts://broker.lan", "--broker-username", "viewer", "--max-upload-mb", "1.5"
            )
        )
    )
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.username, cfg.mqtt.tls is not None) == (
        "broker.lan",
        8883,
        "viewer",
        True,
    )
    assert cfg.max_upload_bytes == int(1.5 * 1024 * 1024) and cfg.password is None


def test_serve_runs_warns_without_auth_and_stops_on_sigterm(tiny_bundle, tmp_path):
    """The real command: binds all addresses with --insecure-no-auth (a loud warning), serves, stops cleanly."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    argv = [str(BIN / "edge-har"), *_serve_args(tmp_path, "--host", "0.0.0.0", "--insecure-no-auth")]
    argv += ["--port", str(port), "--bundle", str(tiny_bundle)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        info = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=2) as r:
                    info = json.loads(r.read())
                break
            except OSError:
                time.sleep(0.2)
        assert info is not None, proc.stderr.read() if proc.poll() is not None else "no answer"
        assert info["auth"] is False and info["bundles"][0]["labels"] == TINY_LABELS
        # a Live page left open: its event stream never ends by itself, and must not hold up the stop
        stream = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        stream.request("GET", "/api/stream")
        assert stream.getresponse().status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully on SIGTERM (the app's lifespan ends: the store is closed, "stopped"
    # logged), then re-raises the signal, as systemd expects of a service it stops.
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "edge-har serve stopped" in err, err
    warning = [line for line in err.splitlines() if "NO AUTHENTICATION" in line]
    assert warning and "WARNING" in warning[0] and "0.0.0.0" in warning[0], err
    assert "Traceback" not in err


def test_without_the_web_extra_serve_names_it(tmp_path):
    """fastapi and uvicorn hidden: ``serve --help`` still works, ``serve`` names the extra to install."""
    hide = "import sys\nfor m in ('fastapi', 'uvicorn', 'starlette'): sys.modules[m] = None\n"
    code = hide + "from edge_har.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    shown = subprocess.run([sys.executable, "-c", code, "serve", "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "--password-file" in shown.stdout, shown.stderr
    result = subprocess.run(
        [sys.executable, "-c", code, *_serve_args(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "needs the web extra" in result.stderr and "pip install 'edge-har[web]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_same_bundle_twice_is_one_line_at_start(tiny_bundle, tmp_path, capsys):
    args = _serve_args(tmp_path, "--bundle", str(tiny_bundle), "--bundle", str(tiny_bundle), "--port", str(free_port()))
    assert main(args) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("edge-har serve: error:") and "already served" in err and "\n" not in err
