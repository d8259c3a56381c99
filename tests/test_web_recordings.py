"""The recordings routes of ``edge-har serve``: resumable uploads, names, labels, signal, export, auth, relay.

Real parts throughout: the app through FastAPI's TestClient on a SQLite store and a recordings folder under
tmp_path, the files written by :mod:`edge_har.core.recording_layout`, a real mosquitto for the relay and the
device commands (with the app served by a real uvicorn).
"""

from __future__ import annotations

import io
import json
import math
import time
import zipfile
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edge_har.core.recording_layout import (  # noqa: E402
    LabelSegment,
    RecordingMeta,
    find_overlap,
    format_rows,
    read_labels,
)
from edge_har.web.app import create_app  # noqa: E402
from edge_har.web.config import ServeConfig, recordings_root  # noqa: E402
from edge_har.web.record_relay import MAX_DEVICES, SIGNAL_S, SIGNAL_SAMPLES, RecordRelay  # noqa: E402
from edge_har.web.recording_store import RecordingStore, StoreError, check_segments, decimate  # noqa: E402

DEVICE, SESSION = "pi-1", "20261207T060000Z"
BASE = f"/api/recordings/{DEVICE}/{SESSION}"
RATE = 50.0
T0 = 1_800_000_000.0


def meta_bytes(device: str = DEVICE, session: str = SESSION, channels: tuple[str, ...] = ("ax", "ay", "az")) -> bytes:
    meta = RecordingMeta(
        device_id=device, session_id=session, started=T0, channels=list(channels), sample_rate_hz=RATE, source="replay"
    )
    return json.dumps(meta.to_json()).encode()


def part_bytes(n: int = 2000, start: float = T0, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    t = start + np.arange(n) / RATE
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return ("t,ax,ay,az\n" + format_rows(t, x)).encode()


@pytest.fixture
def cfg(tmp_path) -> ServeConfig:
    return ServeConfig(db_path=tmp_path / "w.sqlite3", recordings_dir=tmp_path / "recordings")


@pytest.fixture
def client(cfg) -> Any:
    with TestClient(create_app(cfg)) as c:
        yield c


def upload(client: Any, name: str, data: bytes, offset: int = 0, base: str = BASE) -> Any:
    return client.post(f"{base}/files/{name}", params={"offset": offset}, content=data)


def segment(text: str) -> str:
    """``text`` as one URL path segment, dots escaped too (a client would resolve ``..`` before sending)."""
    from urllib.parse import quote

    return quote(text, safe="").replace(".", "%2E")


def make_session(client: Any, labels: bytes | None = None, base: str = BASE, **meta: Any) -> None:
    assert upload(client, "recording.json", meta_bytes(**meta), base=base).status_code == 200
    assert upload(client, "part-00000.csv", part_bytes(), base=base).status_code == 200
    if labels is not None:
        assert client.put(f"{base}/files/labels.csv", content=labels).status_code == 200


# ---------------------------------------------------------------------------------------------- uploads


def test_a_cut_upload_resumes_at_the_size_409_names_and_the_bytes_are_equal(client, cfg):
    assert client.get(f"{BASE}/files").json() == {"files": {}}
    assert upload(client, "recording.json", meta_bytes()).json() == {
        "name": "recording.json",
        "size": len(meta_bytes()),
    }
    data = part_bytes(3000)
    first = upload(client, "part-00000.csv", data[:10_000])
    assert first.status_code == 200 and first.json()["size"] == 10_000
    # the client lost the answer and tries again from 0: told where to resume
    again = upload(client, "part-00000.csv", data[:10_000], offset=0)
    assert again.status_code == 409
    assert again.json()["size"] == 10_000 and "resume at 10000" in again.json()["detail"]
    ahead = upload(client, "part-00000.csv", data[20_000:], offset=20_000)
    assert ahead.status_code == 409 and ahead.json()["size"] == 10_000
    files = client.get(f"{BASE}/files").json()["files"]
    rest = upload(client, "part-00000.csv", data[files["part-00000.csv"] :], offset=files["part-00000.csv"])
    assert rest.json() == {"name": "part-00000.csv", "size": len(data)}
    stored = recordings_root(cfg) / DEVICE / SESSION / "part-00000.csv"
    assert stored.read_bytes() == data
    item = client.get(BASE).json()
    assert item["samples"] == 3000 and item["start"] == pytest.approx(T0)
    assert item["end"] == pytest.approx(T0 + 2999 / RATE)
    assert item["files"] == {"part-00000.csv": len(data), "recording.json": len(meta_bytes())}


def test_recording_json_is_whole_valid_and_of_the_url(client):
    bad = upload(client, "recording.json", b'{"format": "edge-har-recording"')
    assert bad.status_code == 400 and "recording.json" in bad.json()["detail"]
    other = upload(client, "recording.json", meta_bytes(device="pi-2"))
    assert other.status_code == 400 and "device_id 'pi-2' is not the URL's 'pi-1'" in other.json()["detail"]
    wrong = json.loads(meta_bytes())
    wrong["sample_rate_hz"] = -1
    refused = upload(client, "recording.json", json.dumps(wrong).encode())
    assert refused.status_code == 400 and "sample_rate_hz" in refused.json()["detail"]
    assert client.get(f"{BASE}/files").json() == {"files": {}}
    assert upload(client, "recording.json", meta_bytes()).status_code == 200
    assert upload(client, "recording.json", meta_bytes()).status_code == 409  # written once


def test_a_part_from_offset_0_names_the_sessions_channels(client):
    upload(client, "recording.json", meta_bytes())
    refused = upload(client, "part-00000.csv", b"t,gx,gy,gz\n1.0,1,2,3\n")
    assert refused.status_code == 400 and "t,ax,ay,az" in refused.json()["detail"]


def test_an_upload_over_max_upload_bytes_is_413_and_writes_nothing(tmp_path):
    cfg = ServeConfig(db_path=tmp_path / "w.sqlite3", recordings_dir=tmp_path / "rec", max_upload_bytes=1000)
    with TestClient(create_app(cfg)) as c:
        upload(c, "recording.json", meta_bytes())
        big = upload(c, "part-00000.csv", part_bytes(200))
        assert big.status_code == 413 and "1000 bytes" in big.json()["detail"]
        assert "part-00000.csv" not in c.get(f"{BASE}/files").json()["files"]


@pytest.mark.parametrize(
    "device, session, name",
    [
        ("..", SESSION, "part-00000.csv"),
        (".", SESSION, "part-00000.csv"),
        (DEVICE, "..", "recording.json"),
        ("a\\b", SESSION, "part-00000.csv"),
        (DEVICE, SESSION, "part-1.csv"),
        (DEVICE, SESSION, "labels.device.csv"),
        (DEVICE, SESSION, ".labels-edited"),
        (DEVICE, SESSION, "recording.json.tmp"),
        (DEVICE, SESSION, "..."),
        (DEVICE, SESSION, "PART-00000.CSV"),
        (DEVICE, SESSION, "part-000000.csv"),
    ],
)
def test_names_outside_the_layout_are_refused_with_400(client, cfg, device, session, name):
    url = f"/api/recordings/{segment(device)}/{segment(session)}/files/{segment(name)}"
    reply = client.post(url, params={"offset": 0}, content=b"label,start,end\n")
    assert reply.status_code == 400, reply.text
    written = [p for p in cfg.recordings_dir.parent.rglob("*") if p.is_file() and not p.name.startswith("w.sqlite3")]
    assert not written


def test_a_slash_in_a_name_reaches_no_route(client, cfg):
    for url in (
        f"{BASE}/files/..%2F..%2Fescape.csv",
        "/api/recordings/..%2F..%2Fetc/x/files/part-00000.csv",
        f"{BASE}/files/%2e%2e%2frecording.json",
    ):
        reply = client.post(url, params={"offset": 0}, content=b"x")
        assert 400 <= reply.status_code < 500, (url, reply.status_code)
    assert not (cfg.recordings_dir.parent / "escape.csv").exists()
    assert not cfg.recordings_dir.exists()


# ---------------------------------------------------------------------------------------------- labels


def test_labels_put_refuses_overlaps_nan_reversed_huge_and_keeps_the_file(client, cfg):
    make_session(client)
    good = [{"label": "walk", "start": T0, "end": T0 + 10}, {"label": "sit", "start": T0 + 10, "end": None}]
    saved = client.put(f"{BASE}/labels", json={"segments": good})
    assert saved.status_code == 200 and saved.json()["edited"] is True
    labels_file = recordings_root(cfg) / DEVICE / SESSION / "labels.csv"
    before = labels_file.read_bytes()

    overlap = [{"label": "walk", "start": T0, "end": T0 + 10}, {"label": "sit", "start": T0 + 5, "end": T0 + 20}]
    reply = client.put(f"{BASE}/labels", json={"segments": overlap})
    assert reply.status_code == 400
    detail = reply.json()["detail"]
    assert "segments[0] 'walk'" in detail and "segments[1] 'sit'" in detail
    open_overlap = [{"label": "sit", "start": T0, "end": None}, {"label": "walk", "start": T0 + 5, "end": T0 + 6}]
    assert "segments[0] 'sit'" in client.put(f"{BASE}/labels", json={"segments": open_overlap}).json()["detail"]

    nan = b'{"segments": [{"label": "walk", "start": NaN, "end": 2}]}'
    reply = client.put(f"{BASE}/labels", content=nan, headers={"content-type": "application/json"})
    assert reply.status_code == 400 and "NaN" in reply.json()["detail"]
    huge_number = b'{"segments": [{"label": "walk", "start": 1e999, "end": 2}]}'
    reply = client.put(f"{BASE}/labels", content=huge_number, headers={"content-type": "application/json"})
    assert reply.status_code == 400 and "start" in reply.json()["detail"]

    for segment, where in (
        ({"label": "walk", "start": T0 + 5, "end": T0 + 5}, "end"),
        ({"label": "walk", "start": T0 + 5, "end": T0 + 1}, "end"),
        ({"label": "w" * 65, "start": T0, "end": T0 + 1}, "label"),
        ({"label": "", "start": T0, "end": T0 + 1}, "label"),
        ({"label": "wa\nlk", "start": T0, "end": T0 + 1}, "label"),
        ({"label": " walk", "start": T0, "end": T0 + 1}, "label"),
        ({"label": "walk", "start": "1", "end": T0 + 1}, "start"),
        ({"label": "walk", "start": -5, "end": T0 + 1}, "start"),
        ({"label": "walk", "start": T0, "end": T0 + 1, "extra": 1}, "extra"),
    ):
        reply = client.put(f"{BASE}/labels", json={"segments": [segment]})
        assert reply.status_code == 400, (segment, reply.text)
        assert where in reply.json()["detail"], (segment, reply.json())
    many = [{"label": "walk", "start": T0 + i, "end": T0 + i + 0.5} for i in range(10_001)]
    assert client.put(f"{BASE}/labels", json={"segments": many}).status_code == 400
    assert client.put(f"{BASE}/labels", content=b"x" * (3 * 1024 * 1024)).status_code == 413
    assert labels_file.read_bytes() == before
    back = client.get(f"{BASE}/labels").json()
    assert back == {"segments": good, "edited": True}


def test_labels_of_an_unknown_session_are_404(client):
    assert client.get(f"{BASE}/labels").status_code == 404
    assert client.put(f"{BASE}/labels", json={"segments": []}).status_code == 404


def test_a_persons_edit_wins_and_the_devices_labels_go_to_labels_device_csv(client, cfg):
    device_v1 = f"label,start,end\nwalk,{T0:.6f},{T0 + 5:.6f}\n".encode()
    make_session(client, labels=device_v1)
    folder = recordings_root(cfg) / DEVICE / SESSION
    assert (folder / "labels.csv").read_bytes() == device_v1
    person = [{"label": "run", "start": T0, "end": T0 + 20}]
    assert client.put(f"{BASE}/labels", json={"segments": person}).status_code == 200
    assert (folder / "labels.device.csv").read_bytes() == device_v1  # the device's kept
    device_v2 = f"label,start,end\nwalk,{T0:.6f},{T0 + 9:.6f}\n".encode()
    answer = client.put(f"{BASE}/files/labels.csv", content=device_v2).json()
    assert answer == {"name": "labels.csv", "size": len(device_v2), "stored_as": "labels.device.csv", "edited": True}
    assert (folder / "labels.device.csv").read_bytes() == device_v2
    assert [(s.label, s.start, s.end) for s in read_labels(folder)] == [("run", T0, T0 + 20)]
    files = client.get(f"{BASE}/files").json()["files"]
    assert files["labels.device.csv"] == len(device_v2)
    # a device appending to its labels continues from its own copy
    more = f"sit,{T0 + 9:.6f},\n".encode()
    appended = upload(client, "labels.csv", more, offset=len(device_v2)).json()
    assert appended["stored_as"] == "labels.device.csv" and appended["size"] == len(device_v2 + more)
    bad = client.put(f"{BASE}/files/labels.csv", content=b"label,start,end\nwalk,2,1\n")
    assert bad.status_code == 400 and "labels.csv:2" in bad.json()["detail"]


# ---------------------------------------------------------------------------------------------- reading


def test_list_signal_and_delete(client):
    make_session(client)
    make_session(client, base=f"/api/recordings/pi-2/{SESSION}", device="pi-2")
    listed = client.get("/api/recordings").json()
    assert listed["total"] == 2 and {r["device_id"] for r in listed["recordings"]} == {"pi-1", "pi-2"}
    assert [r["device_id"] for r in client.get("/api/recordings", params={"device": "pi-2"}).json()["recordings"]] == [
        "pi-2"
    ]
    assert len(client.get("/api/recordings", params={"limit": 1}).json()["recordings"]) == 1
    whole = client.get(f"{BASE}/signal", params={"max_points": 20_000}).json()
    assert whole["decimated"] is False and len(whole["t"]) == 2000 and len(whole["values"]) == 3
    small = client.get(f"{BASE}/signal", params={"max_points": 100}).json()
    assert small["decimated"] is True and len(small["t"]) <= 100
    for c in range(3):
        assert min(small["values"][c]) == pytest.approx(min(whole["values"][c]))
        assert max(small["values"][c]) == pytest.approx(max(whole["values"][c]))
    part = client.get(f"{BASE}/signal", params={"start": T0 + 10, "end": T0 + 20}).json()
    assert part["samples"] == 500 and part["t"][0] == pytest.approx(T0 + 10) and part["t"][-1] < T0 + 20
    for params, name in (({"max_points": 5}, "max_points"), ({"start": 5, "end": 4}, "end"), ({"limit": 0}, "")):
        reply = client.get(f"{BASE}/signal", params=params)
        assert reply.status_code in (200, 400) and (not name or name in reply.json()["detail"])
    assert client.get("/api/recordings", params={"limit": 0}).status_code == 400
    assert client.delete(BASE).json() == {"device_id": DEVICE, "session_id": SESSION, "deleted": True}
    assert client.delete(BASE).status_code == 404
    assert client.get(f"{BASE}/signal").status_code == 404
    assert client.get("/api/recordings").json()["total"] == 1


def test_export_zip_unzipped_is_a_recording_set_convert_reads(client, tmp_path):
    pytest.importorskip("edge_har.core.formats.recorded", reason="the recorded format is not installed")
    from edge_har.core.formats import load_dataset

    labels = f"label,start,end\nwalk,{T0:.6f},{T0 + 20:.6f}\nsit,{T0 + 20:.6f},\n".encode()
    make_session(client, labels=labels)
    make_session(client, base=f"/api/recordings/pi-2/{SESSION}", device="pi-2")  # no labels: left out
    reply = client.get("/api/recordings/export.zip")
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(reply.content))
    assert sorted(archive.namelist()) == [
        f"edge-har-recordings/{DEVICE}/{SESSION}/{name}" for name in ("labels.csv", "part-00000.csv", "recording.json")
    ]
    out = tmp_path / "unzipped"
    archive.extractall(out)
    ds = load_dataset(out)
    assert ds.reader.format == "recorded"
    assert set(ds.labels) == {"walk", "sit"}
    everything = zipfile.ZipFile(io.BytesIO(client.get("/api/recordings/export.zip?labelled_only=false").content))
    assert len(everything.namelist()) == 5
    one = client.get("/api/recordings/export.zip", params={"device": "pi-2", "labelled_only": "false"}).content
    assert all("/pi-2/" in n for n in zipfile.ZipFile(io.BytesIO(one)).namelist())


def test_every_route_needs_the_password_when_one_is_set(tmp_path):
    cfg = ServeConfig(db_path=tmp_path / "w.sqlite3", recordings_dir=tmp_path / "rec", password="s3cret")
    with TestClient(create_app(cfg)) as c:
        for method, url in (
            ("get", "/api/recordings"),
            ("get", f"{BASE}/files"),
            ("post", f"{BASE}/files/recording.json?offset=0"),
            ("put", f"{BASE}/files/labels.csv"),
            ("get", f"{BASE}/signal"),
            ("put", f"{BASE}/labels"),
            ("delete", BASE),
            ("get", "/api/recordings/export.zip"),
            ("post", "/api/devices/pi-1/record"),
            ("get", "/api/devices/pi-1/record"),
        ):
            assert getattr(c, method)(url).status_code == 401, url
        assert upload(c, "recording.json", meta_bytes()).status_code == 401
        assert not (tmp_path / "rec").exists()
        ok = c.post(
            f"{BASE}/files/recording.json", params={"offset": 0}, content=meta_bytes(),
            headers={"Authorization": "Bearer s3cret"},
        )  # fmt: skip
        assert ok.status_code == 200
        assert c.get("/api/recordings", auth=("any", "s3cret")).json()["total"] == 1


def test_device_commands_without_a_broker_are_503_saying_so(client):
    reply = client.post("/api/devices/pi-1/record", json={"action": "start"})
    assert reply.status_code == 503 and "--broker" in reply.json()["detail"]
    assert client.post("/api/devices/pi-1/record", json={"action": "jump"}).status_code == 400
    assert client.post("/api/devices/pi%201/record", json={"action": "start"}).status_code == 400
    assert client.get("/api/devices/pi-1/record").json()["state"] is None


@pytest.mark.parametrize("device", ["pi\x94", "pi\x7f", "pi\ufffe", "pi\U0001ffff", "pi\ufdd0", "pi\x01"])
def test_an_id_a_broker_refuses_in_a_topic_is_400(client, device):
    url = f"/api/devices/{segment(device)}"
    assert client.post(f"{url}/record", json={"action": "start"}).status_code == 400
    assert client.get(f"{url}/record").status_code == 400
    assert (
        upload(client, "recording.json", meta_bytes(), base=f"/api/recordings/{segment(device)}/s").status_code == 400
    )


def test_recordings_dir_defaults_beside_the_sqlite_file(tmp_path):
    assert recordings_root(ServeConfig(db_path=tmp_path / "a.sqlite3")) == tmp_path / "edge-har-recordings"
    url = f"sqlite:///{tmp_path / 'b.sqlite3'}"
    assert recordings_root(ServeConfig(db_url=url)) == tmp_path / "edge-har-recordings"
    assert recordings_root(ServeConfig(recordings_dir=tmp_path / "x")) == tmp_path / "x"


def test_serve_help_explains_recordings_dir(capsys):
    from edge_har.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--recordings-dir DIR" in text and "convert --data DIR" in text


# ---------------------------------------------------------------------------------------------- properties


_segment = st.fixed_dictionaries(
    {
        "label": st.sampled_from(["walk", "sit", "run"]),
        "start": st.integers(0, 40).map(float),
        "end": st.one_of(st.none(), st.integers(1, 20).map(float)),
    }
).map(lambda s: {**s, "end": None if s["end"] is None else s["start"] + s["end"]})


@settings(max_examples=50, deadline=None)
@given(segments=st.lists(_segment, max_size=8))
def test_property_segments_are_refused_exactly_when_two_labels_overlap(segments):
    def overlaps(a: dict[str, Any], b: dict[str, Any]) -> bool:
        a_end = math.inf if a["end"] is None else a["end"]
        b_end = math.inf if b["end"] is None else b["end"]
        return a["label"] != b["label"] and a["start"] < b_end and b["start"] < a_end

    expected = any(overlaps(a, b) for i, a in enumerate(segments) for b in segments[i + 1 :])
    try:
        checked = check_segments(segments)
    except StoreError as exc:
        assert expected and exc.status == 400 and "overlaps" in str(exc)
    else:
        assert not expected and len(checked) == len(segments)
        assert find_overlap([LabelSegment(s.label, s.start, s.end) for s in checked]) is None


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(0, 3000),
    channels=st.integers(1, 4),
    max_points=st.integers(10, 500),
    seed=st.integers(0, 2**16),
)
def test_property_decimation_keeps_every_extreme_within_max_points(n, channels, max_points, seed):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 100, n))
    x = rng.normal(size=(n, channels))
    dt, dx, decimated = decimate(t, x, max_points)
    assert len(dt) <= max(max_points, n if not decimated else 0) and len(dt) == len(dx)
    assert decimated == (n > max_points)
    assert np.all(np.diff(dt) >= 0)
    if n:
        np.testing.assert_array_equal(dx.min(axis=0), x.min(axis=0))
        np.testing.assert_array_equal(dx.max(axis=0), x.max(axis=0))


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory) -> Any:
    root = tmp_path_factory.mktemp("fuzz")
    cfg = ServeConfig(db_path=root / "w.sqlite3", recordings_dir=root / "rec")
    with TestClient(create_app(cfg), raise_server_exceptions=False) as c:
        yield c, root


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    device=st.one_of(st.sampled_from([DEVICE, "..", ".", "a b", "x" * 129, "é" * 100]), st.text(max_size=20)),
    name=st.one_of(
        st.sampled_from(["recording.json", "labels.csv", "part-00001.csv", "../labels.csv", "part-1.csv"]),
        st.text(max_size=20),
    ),
    offset=st.integers(-5, 100),
    body=st.binary(max_size=200),
)
def test_property_uploads_never_5xx_and_stay_inside_the_store(fuzz_client, device, name, offset, body):
    client, root = fuzz_client
    url = f"/api/recordings/{segment(device)}/s1/files/{segment(name)}"
    try:
        reply = client.post(url, params={"offset": offset}, content=body)
    except Exception as exc:  # noqa: BLE001 - a URL the client itself refuses never reaches the server
        assert "url" in f"{type(exc).__name__} {exc}".lower(), exc
        return
    assert reply.status_code < 500, (url, reply.status_code, reply.text[:200])
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        assert rel.parts[0] in ("rec", "w.sqlite3") or rel.name.startswith("w.sqlite3"), rel
        if rel.parts[0] == "rec" and path.is_file():
            assert len(rel.parts) == 4 and rel.parts[2] == "s1", rel


_csv_line = st.tuples(
    st.sampled_from(["walk", "sit", "", " run", "a,b", '"q"', "x" * 65, "wa\nlk"]),
    st.sampled_from(["1", "2.5", "nan", "inf", "-1e999", "", "x", "1e308"]),
    st.sampled_from(["3", "2", "", "nan", "1e999", "4.000001"]),
).map(lambda f: ",".join(f))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.lists(_csv_line, max_size=5).map(lambda lines: ("label,start,end\n" + "\n".join(lines) + "\n").encode()),
    )
)
def test_property_a_devices_labels_csv_is_stored_whole_or_refused_with_400(tmp_path_factory, data):
    store = RecordingStore(tmp_path_factory.mktemp("labels"))
    folder = store.session_path("pi-1", "s1")
    try:
        answer = store.put_device_labels("pi-1", "s1", data)
    except StoreError as exc:
        assert exc.status == 400 and str(exc).startswith("labels.csv"), exc
        assert not (folder / "labels.csv").exists()
        return
    assert answer["stored_as"] == "labels.csv" and (folder / "labels.csv").read_bytes() == data
    for seg in read_labels(folder):
        assert math.isfinite(seg.start) and (seg.end is None or seg.end > seg.start)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.integers(-1, 3), st.binary(min_size=0, max_size=40)), max_size=12))
def test_property_appends_at_the_size_build_the_file_and_others_are_409_with_it(tmp_path_factory, steps):
    store = RecordingStore(tmp_path_factory.mktemp("appends"))
    expected = b""
    for shift, chunk in steps:
        offset = max(0, len(expected) + shift) if shift else len(expected)
        try:
            answer = store.append("pi-1", "s1", "part-00003.csv", offset, chunk)
        except StoreError as exc:
            assert offset != len(expected) and exc.status == 409 and exc.size == len(expected)
            continue
        assert offset == len(expected)
        expected += chunk
        assert answer == {"name": "part-00003.csv", "size": len(expected)}
    path = store.session_path("pi-1", "s1") / "part-00003.csv"
    assert (path.read_bytes() if path.exists() else b"") == expected


def test_racing_uploads_at_one_offset_write_once_and_the_others_get_409(tmp_path):
    import threading

    store = RecordingStore(tmp_path / "rec")
    store.append(DEVICE, SESSION, "recording.json", 0, meta_bytes())
    data = part_bytes(200)
    results: list[Any] = []
    start = threading.Barrier(8)

    def push() -> None:
        start.wait()
        try:
            results.append(store.append(DEVICE, SESSION, "part-00000.csv", 0, data)["size"])
        except StoreError as exc:
            results.append((exc.status, exc.size))

    threads = [threading.Thread(target=push) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results, key=str) == sorted([len(data)] + [(409, len(data))] * 7, key=str)
    assert (store.session_path(DEVICE, SESSION) / "part-00000.csv").read_bytes() == data


# ---------------------------------------------------------------------------------------------- the relay


def state_payload(**extra: Any) -> bytes:
    state = {
        "recording": True,
        "session_id": SESSION,
        "label": "walk",
        "samples": 10,
        "bytes": 300,
        "budget_bytes": None,
        "classes": ["walk", "sit"],
        "channels": ["ax", "ay", "az"],
        "sample_rate_hz": RATE,
        "error": None,
    }
    return json.dumps({**state, **extra}).encode()


def signal_payload(t0: float, n: int = 5, session: str = SESSION) -> bytes:
    t = [t0 + i / 25 for i in range(n)]
    return json.dumps(
        {"session_id": session, "channels": ["ax", "ay", "az"], "t": t, "values": [[i, -i, 0.5] for i in range(n)]}
    ).encode()


def test_relay_keeps_30_s_of_signal_for_at_most_200_devices():
    relay = RecordRelay(ServeConfig())
    relay.take("edge-har/pi-1/record/state", state_payload())
    for k in range(100):  # 40 s at 25 samples/s
        relay.take("edge-har/pi-1/record/signal", signal_payload(T0 + k * 0.4, n=10))
    view = relay.view("pi-1")
    assert view["state"]["label"] == "walk" and view["state"]["recording"] is True
    t = view["signal"]["t"]
    assert t[-1] - t[0] <= SIGNAL_S and len(t) <= SIGNAL_SAMPLES and len(view["signal"]["values"]) == 3
    relay.take("edge-har/pi-1/record/signal", signal_payload(T0 + 100, session="other"))
    assert len(relay.view("pi-1")["signal"]["t"]) == 5  # a new session starts over
    for i in range(MAX_DEVICES + 50):
        relay.take(f"edge-har/dev-{i}/record/state", state_payload())
    assert relay.devices() == MAX_DEVICES
    assert relay.view("pi-1")["state"] is None  # the least recently heard of went first
    for topic, payload in (
        ("edge-har/pi-1/record/state", b"{"),
        ("edge-har/pi-1/record/state", state_payload(recording="yes")),
        ("edge-har/pi-1/record/signal", b'{"channels": ["a"], "t": [1, 2], "values": [[1]]}'),
        ("edge-har/pi-1/record/signal", b'{"channels": ["a"], "t": [NaN], "values": [[1]]}'),
        ("edge-har/pi 1/record/state", state_payload()),
        ("other/pi-1/record/state", state_payload()),
        ("edge-har/pi-1/record/state", b"x" * 100_000),
    ):
        relay.take(topic, payload)
    assert sum(relay.rejected.values()) == 7


@settings(max_examples=50, deadline=None)
@given(
    kind=st.sampled_from(["state", "signal", "other"]),
    payload=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=10),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
    ),
)
def test_property_the_relay_takes_any_message_without_raising(kind, payload):
    relay = RecordRelay(ServeConfig())
    relay.take(f"edge-har/pi-1/record/{kind}", payload)
    view = relay.view("pi-1")
    json.dumps(view, allow_nan=False)  # always a valid answer
    assert len(view["signal"]["values"]) == len(view["signal"]["channels"])


def call(url: str, body: Any = None) -> tuple[int, Any]:
    """(status, JSON answer) of a GET, or of a POST of ``body`` as JSON, to the real server."""
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_relay_and_commands_through_a_real_broker(mosquitto_broker, mqtt_listener, web_server, tmp_path):
    from edge_har.mqtt.config import MqttConfig

    mqtt = MqttConfig(host=mosquitto_broker.host, port=mosquitto_broker.port, reconnect_min_s=0.1, reconnect_max_s=1.0)
    server = web_server(ServeConfig(mqtt=mqtt, recordings_dir=tmp_path / "rec", client_id="serve-rec-test"))
    listener = mqtt_listener(mosquitto_broker, ["edge-har/+/record/set", "edge-har/+/label/#"])
    relay = server.app.state.recordings.relay
    assert relay.ready.wait(10)
    # the device's retained state and a few signal messages
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    device = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="fake-pi")
    device.connect(mosquitto_broker.host, mosquitto_broker.port)
    device.loop_start()
    try:
        device.publish("edge-har/pi-1/record/state", state_payload(), qos=1, retain=True).wait_for_publish(5)
        for k in range(3):
            device.publish("edge-har/pi-1/record/signal", signal_payload(T0 + k * 0.2), qos=0).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while True:
            view = call(f"{server.url}/api/devices/pi-1/record")[1]
            if view["state"] is not None and len(view["signal"]["t"]) == 15 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert view["state"]["session_id"] == SESSION and view["broker"] is True
        assert len(view["signal"]["t"]) == 15 and view["signal"]["channels"] == ["ax", "ay", "az"]
        status, sent = call(f"{server.url}/api/devices/pi-1/record", {"action": "start"})
        assert status == 200 and sent["topic"] == "edge-har/pi-1/record/set"
        listener.wait_last("edge-har/pi-1/record/set", b"ON")
        call(f"{server.url}/api/devices/pi-1/record", {"action": "stop"})
        listener.wait_last("edge-har/pi-1/record/set", b"OFF")
        call(f"{server.url}/api/devices/pi-1/label", {"label": "walk"})
        listener.wait_last("edge-har/pi-1/label/set", b'{"label": "walk"}')
        call(f"{server.url}/api/devices/pi-1/label", {"label": None})
        listener.wait_last("edge-har/pi-1/label/set", b'{"label": null}')
        call(f"{server.url}/api/devices/pi-1/correct", {"label": "sit", "ts": T0})
        assert listener.wait_count("edge-har/pi-1/label/correct", 1)[-1].json() == {"label": "sit", "ts": T0}
        # found by schemathesis: a C1 control character in a topic makes mosquitto close the publisher's link
        status, refused = call(f"{server.url}/api/devices/%C2%BE%C2%94/label", {"label": None})
        assert status == 400 and "device_id" in refused["detail"]
        assert relay._client.is_connected()
    finally:
        device.loop_stop()
        device.disconnect()
    mosquitto_broker.stop()
    deadline = time.monotonic() + 10
    while relay._client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.05)
    status, down = call(f"{server.url}/api/devices/pi-1/record", {"action": "start"})
    assert status == 503 and "not connected" in down["detail"]


def test_the_schema_documents_the_recordings_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    upload_op = paths["/api/recordings/{device_id}/{session_id}/files/{name}"]["post"]
    assert "409" in upload_op["responses"] and "application/octet-stream" in upload_op["requestBody"]["content"]
    put = paths["/api/recordings/{device_id}/{session_id}/labels"]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"]["properties"]["segments"]["maxItems"] == 10_000
    assert "/api/devices/{device_id}/record" in paths and "/api/recordings/export.zip" in paths


def test_the_devices_push_client_uploads_a_session_into_serve_byte_for_byte(web_server, tmp_path):
    """edge-har record's pusher against the real serve (uvicorn, password): resumed after a cut, labels kept."""
    from edge_har.core.recording_layout import write_session
    from edge_har.device.recording.push import Pusher, ServeClient

    server = web_server(ServeConfig(recordings_dir=tmp_path / "serve", password="s3cret"))
    local = tmp_path / "device" / DEVICE
    session = local / SESSION
    meta = RecordingMeta.from_json(json.loads(meta_bytes()))
    t = T0 + np.arange(3000) / RATE
    write_session(
        session, meta, t, np.random.default_rng(1).normal(size=(3000, 3)), [LabelSegment("walk", T0, T0 + 10)]
    )
    (session / "part-00001.csv").write_bytes(part_bytes(500, start=T0 + 60))
    client = ServeClient(server.url, token="s3cret")
    # a push cut short earlier: serve holds recording.json and the first 1000 bytes of part 0
    client.append(DEVICE, SESSION, "recording.json", 0, (session / "recording.json").read_bytes())
    client.append(DEVICE, SESSION, "part-00000.csv", 0, (session / "part-00000.csv").read_bytes()[:1000])
    pusher = Pusher(client, local, DEVICE, chunk_bytes=4096)
    assert pusher.run_pass() is True
    stored = tmp_path / "serve" / DEVICE / SESSION
    for name in ("recording.json", "part-00000.csv", "part-00001.csv", "labels.csv"):
        assert (stored / name).read_bytes() == (session / name).read_bytes(), name
    # a person relabels on serve; the device's next labels go beside them
    status, _ = call_with_token(
        server.url, f"{BASE}/labels", {"segments": [{"label": "sit", "start": T0, "end": T0 + 5}]}
    )
    assert status == 200
    write_labels_file = session / "labels.csv"
    write_labels_file.write_text(f"label,start,end\nwalk,{T0:.6f},{T0 + 30:.6f}\n")
    pusher = Pusher(client, local, DEVICE)
    assert pusher.run_pass() is True
    assert (stored / "labels.device.csv").read_bytes() == write_labels_file.read_bytes()
    assert [s.label for s in read_labels(stored)] == ["sit"]


def call_with_token(base: str, path: str, body: Any) -> tuple[int, Any]:
    import urllib.request

    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"Content-Type": "application/json", "Authorization": "Bearer s3cret"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return reply.status, json.loads(reply.read())
