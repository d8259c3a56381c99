"""The whole "your own data" loop on real parts, once, end to end.

Real HMP wrist-accelerometer recordings (../shared/data/hmp) are sent line by line into a pty that
``edge-har record`` reads as a serial port; the labels are set over a real mosquitto the way a phone
or Home Assistant sets them; ``record --push`` uploads the session to a real ``edge-har serve``
(password on); a person then trims a label through serve's API; the set is exported as a zip,
unzipped and personalised with ``edge-har convert --from-bundle`` (a new class added); and the
daemon runs the new bundle on recordings it has not seen, publishing the new class over MQTT.
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from edge_har.core.bundle import Bundle
from edge_har.core.recording_layout import LabelSegment, read_labels, read_meta, read_parts, session_dirs, write_session
from tests.test_sources import FakeMicrocontroller

pytestmark = pytest.mark.slow

HMP = Path(__file__).resolve().parents[2] / "shared" / "data" / "hmp" / "HMP"
REPO = Path(__file__).resolve().parents[1]
DEVICE = "pi-loop"
PASSWORD = "loop-secret"
SPEED = 4.0  # lines are sent four times faster than HMP's 32 Hz: the loop, not the clock, is under test
LINES = {"Walk": 480, "Brush_teeth": 960}  # 15 s of each walk, 30 s of each brushing (after its first 10 s)
SKIP = {"Walk": 0, "Brush_teeth": 320}

RECORDED = {  # (class, file) in the order they are sent; labels switch between them
    "Walk": [
        "Walk/Accelerometer-2012-05-30-22-02-42-walk-m2.txt",
        "Walk/Accelerometer-2012-05-30-22-04-20-walk-m2.txt",
        "Walk/Accelerometer-2012-05-30-22-03-52-walk-m2.txt",
    ],
    "Brush_teeth": [
        "Brush_teeth/Accelerometer-2011-05-30-09-36-50-brush_teeth-f1.txt",
        "Brush_teeth/Accelerometer-2011-04-11-13-28-18-brush_teeth-f1.txt",
        "Brush_teeth/Accelerometer-2011-05-30-08-35-11-brush_teeth-f1.txt",
    ],
}
UNSEEN = [  # what the daemon runs the new bundle on afterwards, as a later session of the same device
    "Walk/Accelerometer-2012-05-29-17-13-45-walk-m3.txt",
    "Brush_teeth/Accelerometer-2011-06-02-10-42-22-brush_teeth-f1.txt",
]


def _lines(label: str, rel: str) -> list[str]:
    lines = [line.strip() for line in (HMP / rel).read_text().splitlines() if line.strip()]
    return lines[SKIP[label] : SKIP[label] + LINES[label]]


def _send(mcu: FakeMicrocontroller, lines: list[str]) -> None:
    period = 1.0 / (32.0 * SPEED)
    t0 = time.monotonic()
    for k, line in enumerate(lines):
        mcu.send(line.replace(" ", ",") + "\n")
        delay = t0 + (k + 1) * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _device_config(path: Path, port: Path, bundle: Path, broker: Any) -> Path:
    data = {
        "device_id": DEVICE,
        "bundle": str(bundle),
        "source": {"type": "serial", "port": str(port), "rate_hz": 32.0, "timeout": 0},
        "mqtt": {"host": broker.host, "port": broker.port, "reconnect_min_s": 0.1, "reconnect_max_s": 1.0},
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class _Api:
    """serve's API over plain HTTP with the bearer token, as any client of it would call it."""

    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> tuple[int, bytes]:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path + query, data=data, method=method)
        request.add_header("Authorization", f"Bearer {PASSWORD}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def json(self, method: str, path: str, body: Any = None, **params: Any) -> tuple[int, Any]:
        status, raw = self.call(method, path, body, **params)
        return status, json.loads(raw)

    def get(self, path: str, **params: Any) -> Any:
        status, doc = self.json("GET", path, **params)
        assert status == 200, (path, status, doc)
        return doc


def _edge_har(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_har", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.skipif(not HMP.is_dir(), reason=f"the HMP data set is not at {HMP} (see ../shared/data/README.md)")
def test_record_label_push_adjust_export_personalise_and_run(
    tmp_path, tiny_bundle, mosquitto_broker, mqtt_listener, web_server
):
    pytest.importorskip("serial", reason="pyserial is not installed (pip install 'edge-har[device]')")
    from edge_har.mqtt.config import MqttConfig
    from edge_har.web.config import ServeConfig

    # ---------------------------------------------------------------- serve, with a password and the broker
    served = tmp_path / "served"
    server = web_server(
        ServeConfig(
            db_path=tmp_path / "web.sqlite3",
            recordings_dir=served,
            password=PASSWORD,
            mqtt=MqttConfig(host=mosquitto_broker.host, port=mosquitto_broker.port, reconnect_min_s=0.1),
        )
    )
    api = _Api(server.url)
    (tmp_path / "password").write_text(PASSWORD + "\n")

    # ---------------------------------------------------------------- record from a pty, labels over MQTT
    mcu = FakeMicrocontroller(tmp_path)
    config = _device_config(tmp_path / "device.yaml", mcu.port, tiny_bundle, mosquitto_broker)
    out = tmp_path / "recordings"
    base = f"edge-har/{DEVICE}"
    listener = mqtt_listener(mosquitto_broker, [f"{base}/#"])
    record = subprocess.Popen(
        [sys.executable, "-m", "edge_har", "record", "--config", str(config), "--out", str(out)]
        + ["--classes", "+Brush_teeth", "--push", server.url, "--password-file", str(tmp_path / "password")]
        + ["--rotate-mb", "0.02", "--push-wait", "30", "--duration", "300"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sent: dict[str, int] = {"Walk": 0, "Brush_teeth": 0}
    try:
        listener.wait_for(
            lambda ms: any(m.topic == f"{base}/record/state" and m.json()["recording"] for m in ms),
            timeout=60,
            what="record/state recording",
        )
        mcu.send("\n")  # the source skips what precedes the first newline
        time.sleep(0.5)
        for walk, brush in zip(RECORDED["Walk"], RECORDED["Brush_teeth"]):
            for label, rel in (("Walk", walk), ("Brush_teeth", brush)):
                listener.client.publish(f"{base}/label/set", label, qos=1).wait_for_publish(5)
                listener.wait_last(f"{base}/label/state", label.encode(), timeout=10)
                lines = _lines(label, rel)
                _send(mcu, lines)
                sent[label] += len(lines)
                listener.client.publish(f"{base}/label/set", "none", qos=1).wait_for_publish(5)
                listener.wait_last(f"{base}/label/state", b"none", timeout=10)
                time.sleep(0.4)  # a pause between recordings: a gap the reader splits at
        listener.client.publish(f"{base}/label/set", "Jump", qos=1).wait_for_publish(5)  # no such class
        listener.wait_count(f"{base}/label/error", 1, timeout=10)
        time.sleep(0.5)
        record.send_signal(signal.SIGTERM)
        _, err = record.communicate(timeout=90)
    finally:
        if record.poll() is None:
            record.kill()
        mcu.unplug()
    assert record.returncode == 0, err[-4000:]

    (session,) = session_dirs(out)
    t, x = read_parts(session)
    assert len(x) == sum(sent.values()) and x.shape[1] == 3
    local = read_labels(session)
    assert [s.label for s in local] == ["Walk", "Brush_teeth"] * 3
    error = listener.payloads(f"{base}/label/error")[0]
    assert error["label"] == "Jump"

    # ---------------------------------------------------------------- what serve holds is what the device wrote
    files = api.get(f"/api/recordings/{DEVICE}/{session.name}/files")["files"]
    for f in session.iterdir():
        if f.is_file() and f.name != "labels.csv":
            assert files.get(f.name) == f.stat().st_size, (f.name, files)
    assert sum(1 for n in files if n.startswith("part-")) >= 2  # rotated parts, each pushed whole
    assert api.get("/api/recordings", device=DEVICE)["recordings"][0]["labels"] == 6

    # ---------------------------------------------------------------- a person trims every segment's first second
    labels_url = f"/api/recordings/{DEVICE}/{session.name}/labels"
    segments = api.get(labels_url)["segments"]
    assert [s["label"] for s in segments] == ["Walk", "Brush_teeth"] * 3
    trimmed = [{**s, "start": s["start"] + 1.0} for s in segments]
    status, answer = api.json("PUT", labels_url, {"segments": trimmed})
    assert status == 200, answer
    assert api.get(labels_url)["edited"] is True
    overlap = [{"label": "Walk", "start": 0.0, "end": 10.0}, {"label": "Brush_teeth", "start": 5.0, "end": 12.0}]
    status, refused = api.json("PUT", labels_url, {"segments": overlap})
    assert status == 400 and "Brush_teeth" in refused["detail"], refused

    # ---------------------------------------------------------------- export, unzip, read as convert reads it
    status, exported = api.call("GET", "/api/recordings/export.zip", device=DEVICE)
    assert status == 200
    data = tmp_path / "export"
    zipfile.ZipFile(io.BytesIO(exported)).extractall(data)
    from edge_har.core.formats import load_dataset

    ds = load_dataset(data)
    assert ds.reader.format == "recorded" and sorted(ds.labels) == ["Brush_teeth", "Walk"]
    assert sum(r.label == "Walk" for r in ds.recordings) == 3  # the pauses split the stretches
    kept = sum(len(r) for r in ds.recordings)
    assert kept <= len(x) - 6 * 28  # each segment lost its first second (32 samples, at 4x speed about 8 to 32)

    # ---------------------------------------------------------------- personalise: a new class, the gate, a report
    parent = tmp_path / "parent"
    shutil.copytree(tiny_bundle, parent)
    new = tmp_path / "personal"
    done = _edge_har(
        "convert", "--from-bundle", str(parent), "--data", str(data), "--add-classes", "--out", str(new),
        "--train-layers", "all", "--epochs", "30", "--allow-int8-drop", "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    bundle = Bundle.load(new)
    assert bundle.labels == ["Sit", "Walk", "Wave", "Brush_teeth"]
    report = json.loads((new / "report.json").read_text())
    held_out = report["held_out"]
    assert held_out["windows"] > 0 and held_out["after"]["accuracy"] >= held_out["before"]["accuracy"] + 0.3, report
    assert "your held-out recordings" in (new / "report.md").read_text()

    # ---------------------------------------------------------------- the daemon runs the new bundle on unseen data
    # the same sensor's next session, recorded and labelled later (the layout the bundle's reader reads)
    unseen = tmp_path / "unseen"
    meta = read_meta(session)
    pieces, stamps, segments_unseen = [], [], []
    t0 = time.time() - 600.0
    for rel in UNSEEN:
        block = np.loadtxt(HMP / rel, ndmin=2).astype(np.float32)
        times = t0 + np.arange(len(block)) / 32.0
        segments_unseen.append(LabelSegment(rel.split("/")[0], float(times[0]), float(times[-1] + 1 / 32.0)))
        pieces.append(block)
        stamps.append(times)
        t0 = float(times[-1]) + 5.0  # a pause between the two
    later = replace(meta, session_id="20261207T000000Z", started=float(stamps[0][0]))
    write_session(
        unseen / DEVICE / later.session_id, later, np.concatenate(stamps), np.concatenate(pieces), segments_unseen
    )
    run_cfg = tmp_path / "run.yaml"
    run_cfg.write_text(
        yaml.safe_dump(
            {
                "device_id": DEVICE,
                "bundle": str(new),
                "source": {"type": "replay", "path": str(unseen), "realtime": False, "stop_at_end": True},
                "mqtt": {"host": mosquitto_broker.host, "port": mosquitto_broker.port},
                "smoothing": {"window": 1},
            }
        )
    )
    ran = _edge_har("run", "--config", str(run_cfg), timeout=300)
    assert ran.returncode == 0, ran.stderr[-4000:]
    predictions = [p for p in listener.payloads(f"{base}/prediction") if p.get("model_id") == bundle.model_id]
    assert predictions
    assert {p["label"] for p in predictions} <= set(bundle.labels)

    def share(truth: str) -> float:  # the share of a recording's windows called Brush_teeth
        mine = [p for p in predictions if p.get("extra", {}).get("truth") == truth]
        assert mine, truth
        return sum(p["label"] == "Brush_teeth" for p in mine) / len(mine)

    brushing, walking = share("Brush_teeth"), share("Walk")
    assert brushing > walking + 0.3, (brushing, walking)  # the new class is told apart on recordings never seen
