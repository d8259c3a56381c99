"""The Record page (/record) and the Label page (/label/<device>/<session>) in a real headless Chromium.

Record: a real ``edge-har serve`` on a real mosquitto, and a device that answers over MQTT the way
``edge-har record`` does (a small paho client here: record/set starts and stops a session, label/set
sets the label, record/state is retained, record/signal comes ~4/s while recording). The page must
start the device, set a label and show it as current, draw the signal as it arrives, stop, and say in
one line when the device is not recording or has no recorder at all.

Label: a session uploaded through the files API (recording.json, one part, labels.csv with two
adjacent segments) and the model's predictions of that time written into the store. The page must list
it, draw the predictions under the signal, move the shared boundary of the two segments by dragging
it, and save: GET labels then holds the moved boundary. A captured window gets "relabel as" buttons
that save one segment spanning the window. The page fits a 360-pixel phone in the dark scheme.
Screenshots go to the test's tmp_path/screenshots/. The browser tests are slow; the pages' routes
(served, no CDN, behind the password) are checked in the default run.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import threading
import time
import urllib.parse
import urllib.request
from typing import Any, Callable, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi")
pytest.importorskip("playwright")
paho = pytest.importorskip("paho.mqtt.client")

from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from edge_har.mqtt.config import MqttConfig  # noqa: E402
from edge_har.web.app import create_app  # noqa: E402
from edge_har.web.config import ServeConfig  # noqa: E402
from edge_har.web.pages_recordings import STATIC  # noqa: E402
from edge_har.web.store import open_store_url  # noqa: E402

PREFIX = "edge-har"
CLASSES = ["walk", "sit", "stand"]
CHANNELS = ["ax", "ay", "az"]
RATE_HZ = 25.0


PAGES = {
    "/record": ("record.js", "recording.css"),
    "/label": ("label.js", "recording.css"),
    "/label/pi-den/20261207T060000Z": ("label.js", "recording.css"),
}
CDN = re.compile(r"(?:src|href)=[\"']?(?:https?:)?//|url\(\s*['\"]?(?:https?:)?//")


def test_the_record_and_label_pages_are_served_without_a_cdn_and_behind_the_password(tmp_path):
    from fastapi.testclient import TestClient

    with TestClient(create_app(ServeConfig(db_path=tmp_path / "p.sqlite3"))) as client:
        for path, (script, css) in PAGES.items():
            page = client.get(path)
            assert page.status_code == 200 and "text/html" in page.headers["content-type"], path
            assert f"/static/{script}" in page.text and f"/static/{css}" in page.text, path
            assert 'href="/record"' in page.text and 'href="/label"' in page.text, path
            for name in (script, css, "record.html", "label.html"):
                static = client.get(f"/static/{name}")
                assert static.status_code == 200 and not CDN.search(static.text), name
            assert not CDN.search(page.text), path
        for other in ("/", "/live", "/static/device.html"):
            text = client.get(other).text
            assert 'href="/record"' in text and 'href="/label"' in text, other
    with TestClient(create_app(ServeConfig(db_path=tmp_path / "q.sqlite3", password="s3cret"))) as client:
        for path in PAGES:
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200, path


def test_the_label_route_answers_any_path_with_the_label_page_or_a_404(tmp_path):
    """Whatever the path's two parts hold (dots, slashes, quotes, non-ASCII), the answer is the page itself or a 404."""
    from fastapi.testclient import TestClient

    page = (STATIC / "label.html").read_text()
    with TestClient(create_app(ServeConfig(db_path=tmp_path / "h.sqlite3"))) as client:

        @settings(max_examples=50, deadline=None)
        @given(device=st.text(min_size=1, max_size=40), session=st.text(min_size=1, max_size=40))
        def check(device: str, session: str) -> None:
            path = f"/label/{urllib.parse.quote(device, safe='')}/{urllib.parse.quote(session, safe='')}"
            answer = client.get(path)
            assert answer.status_code in (200, 404), (path, answer.status_code)
            if answer.status_code == 200:
                assert answer.text == page

        check()


def wait_until(check: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or check}")


def http(method: str, url: str, body: Optional[bytes] = None, content_type: str = "application/json") -> Any:
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


class FakeRecorder:
    """A device's recorder on the broker: what ``edge-har record`` publishes and answers, nothing more."""

    def __init__(self, host: str, port: int, device: str) -> None:
        self.device = device
        self.recording = False
        self.session_id: Optional[str] = None
        self.label: Optional[str] = None
        self.samples = 0
        self.commands: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"fake-{device}")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        self.thread = threading.Thread(target=self._signal_loop, daemon=True)
        self.thread.start()

    def topic(self, leaf: str) -> str:
        return f"{PREFIX}/{self.device}/{leaf}"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        client.subscribe([(self.topic("record/set"), 1), (self.topic("label/set"), 1)])
        self.publish_state()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        text = msg.payload.decode("utf-8", "replace").strip()
        with self.lock:
            if msg.topic.endswith("/record/set"):
                self.commands.append(("record", text))
                if text.lower() in ("on", "start") and not self.recording:
                    self.recording = True
                    self.session_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
                    self.samples = 0
                elif text.lower() in ("off", "stop"):
                    self.recording = False
            else:
                try:
                    parsed = json.loads(text)
                    label = parsed.get("label") if isinstance(parsed, dict) else text
                except ValueError:
                    label = text
                self.commands.append(("label", str(label)))
                if label in (None, "", "none"):
                    self.label = None
                elif label in CLASSES:
                    self.label = label
                else:
                    client.publish(self.topic("label/error"), json.dumps({"error": "not a class", "label": label}))
                client.publish(self.topic("label/state"), self.label or "none", qos=1, retain=True)
        self.publish_state()

    def publish_state(self) -> None:
        with self.lock:
            state = {
                "recording": self.recording,
                "session_id": self.session_id if self.recording else None,
                "label": self.label,
                "samples": self.samples,
                "bytes": self.samples * 40,
                "budget_bytes": 500 * 1024 * 1024,
                "classes": CLASSES,
                "channels": CHANNELS,
                "sample_rate_hz": RATE_HZ,
                "error": None,
            }
        self.client.publish(self.topic("record/state"), json.dumps(state), qos=1, retain=True)

    def _signal_loop(self) -> None:
        while not self.stop_event.wait(0.25):
            with self.lock:
                if not self.recording:
                    continue
                now = time.time()
                t = [now - 0.25 + i / RATE_HZ for i in range(int(RATE_HZ / 4))]
                values = [[math.sin(x), math.cos(x * 1.7), 0.5 * math.sin(x * 4)] for x in t]
                self.samples += len(t)
                payload = {"session_id": self.session_id, "channels": CHANNELS, "t": t, "values": values}
            self.client.publish(self.topic("record/signal"), json.dumps(payload), qos=0)
            self.publish_state()

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def fake_recorder(mosquitto_broker) -> Any:
    made: list[FakeRecorder] = []

    def make(device: str) -> FakeRecorder:
        recorder = FakeRecorder(mosquitto_broker.host, mosquitto_broker.port, device)
        made.append(recorder)
        return recorder

    yield make
    for recorder in made:
        recorder.close()


@pytest.mark.slow
def test_the_record_page_starts_labels_plots_and_stops_a_device(
    web_server, browser_page, screenshot, mosquitto_broker, fake_recorder, tmp_path
):
    mqtt = MqttConfig(host=mosquitto_broker.host, port=mosquitto_broker.port, reconnect_min_s=0.1, reconnect_max_s=1)
    server = web_server(ServeConfig(mqtt=mqtt, db_path=tmp_path / "rec.sqlite3", recordings_dir=tmp_path / "recs"))
    assert server.app.state.live.ingest.ready.wait(10)
    device = fake_recorder("pi-rec")
    api = f"{server.url}/api/devices/pi-rec/record"
    wait_until(
        lambda: (http("GET", api).get("state") or {}).get("classes") == CLASSES, what="the retained record/state"
    )

    page = browser_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.url}/record")
    page.fill("#device", "pi-rec")
    page.click("#pick button[type=submit]")
    page.wait_for_function("() => { const r = window.edgeHarRecord.state.record; return r && r.state; }")
    assert "device=pi-rec" in page.url
    labels = page.locator("#labels button").all_inner_texts()
    assert [text.split()[0] for text in labels] == [*CLASSES, "none"], labels
    assert page.locator("#rec-pill").inner_text() == "stopped"

    page.click("#start")
    page.wait_for_function("() => window.edgeHarRecord.state.record.state.recording === true")
    assert any(kind == "record" and text.lower() in ("on", "start") for kind, text in device.commands), device.commands
    assert page.locator("#session").inner_text() == device.session_id
    page.locator("#labels button[data-label='sit']").click()
    page.wait_for_function("() => document.querySelector(\"#labels button[data-label='sit']\").ariaPressed === 'true'")
    assert device.label == "sit"
    assert page.locator("#labels button[aria-pressed='true']").count() == 1

    # the plot follows the signal: points drawn, and newer ones a poll later
    page.wait_for_function(
        "() => { const c = window.edgeHarRecord.charts.signal; return c && c.data[0].length >= 10; }"
    )
    first_last = page.evaluate(
        "() => { const d = window.edgeHarRecord.charts.signal.data[0]; return d[d.length - 1]; }"
    )
    page.wait_for_function(
        f"() => {{ const d = window.edgeHarRecord.charts.signal.data[0]; return d[d.length - 1] > {first_last}; }}"
    )
    drawn = page.evaluate(
        "() => { const c = window.edgeHarRecord.charts.signal; const ctx = c.ctx;"
        " const b = c.bbox; const px = ctx.getImageData(b.left, b.top, b.width, b.height).data;"
        " let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++; return n; }"
    )
    assert drawn > 500, drawn  # the lines are on the canvas, not only in the data
    assert int(page.locator("#samples").inner_text().replace(",", "")) > 0
    screenshot(page, "record-recording")

    page.click("#stop")
    page.wait_for_function("() => window.edgeHarRecord.state.record.state.recording === false")
    assert not device.recording
    page.keyboard.press("1")  # a label while stopped: set, with a line saying nothing is written
    page.wait_for_function("() => !document.getElementById('error').hidden")
    assert "not recording" in page.locator("#error").inner_text()
    wait_until(lambda: device.label == "walk", what="label walk on the device")

    # a device without a recorder: one line naming it
    page.fill("#device", "pi-elsewhere")
    page.click("#pick button[type=submit]")
    page.wait_for_function("() => !document.getElementById('error').hidden")
    assert "pi-elsewhere" in page.locator("#error").inner_text()

    # the server goes away: one line, and the page keeps polling
    server.stop()
    page.wait_for_function("() => document.getElementById('error').textContent.includes('not answering')")
    assert not errors, errors


# ---------------------------------------------------------------------- the Label page


def upload_session(base: str, device: str, session: str, t0: float, seconds: float, labels: str, **meta: Any) -> None:
    """A whole session through the files API, as ``edge-har record --push`` sends it."""
    record = {
        "format": "edge-har-recording",
        "version": 1,
        "device_id": device,
        "session_id": session,
        "started": t0,
        "channels": CHANNELS,
        "sample_rate_hz": RATE_HZ,
        "units": "g",
        "scale": None,
        "offset": None,
        "source": "replay",
        "subject": None,
        "model_id": "tiny-cnn-lstm",
        **meta,
    }
    n = int(seconds * RATE_HZ)
    rows = [f"{t0 + i / RATE_HZ:.6f},{math.sin(i / 9):.4f},{math.cos(i / 5):.4f},{(i % 25) / 25:.4f}" for i in range(n)]
    files = {
        "recording.json": json.dumps(record).encode(),
        "part-00000.csv": ("t," + ",".join(CHANNELS) + "\n" + "\n".join(rows) + "\n").encode(),
        "labels.csv": ("label,start,end\n" + labels).encode(),
    }
    for name, body in files.items():
        url = f"{base}/api/recordings/{device}/{session}/files/{name}?offset=0"
        answer = http("POST", url, body, "application/octet-stream")
        assert answer["size"] == len(body), answer


def seed_predictions(db, device: str, t0: float, seconds: float) -> None:
    """The model's predictions over the session: walk the first half, sit the second, one a second."""
    store = open_store_url(f"sqlite:///{db}")
    rows = []
    for i in range(int(seconds)):
        label = "walk" if i < seconds / 2 else "sit"
        rows.append(
            {
                "device_id": device,
                "run_id": "0123456789ab",
                "seq": i,
                "ts": t0 + i + 1,
                "label": label,
                "confidence": 0.9,
                "probabilities": {c: (0.9 if c == label else 0.05) for c in CLASSES},
                "model_id": "tiny-cnn-lstm",
                "variant": "int8",
                "inference_ms": 0.5,
                "received_at": t0 + i + 1,
            }
        )
    store.set_status(device, "online", t0 - 1)
    store.add_predictions(rows)
    store.close()


@pytest.mark.slow
def test_the_label_page_moves_a_boundary_and_saves_it(web_server, browser_page, screenshot, tmp_path):
    db = tmp_path / "label.sqlite3"
    t0 = math.floor(time.time()) - 600
    seed_predictions(db, "pi-lab", t0, 40)
    server = web_server(ServeConfig(db_path=db, recordings_dir=tmp_path / "recs"))
    session = dt.datetime.fromtimestamp(t0, dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    upload_session(
        server.url, "pi-lab", session, t0, 40, f"walk,{t0 + 10:.6f},{t0 + 20:.6f}\nsit,{t0 + 20:.6f},{t0 + 30:.6f}\n"
    )
    labels_api = f"{server.url}/api/recordings/pi-lab/{session}/labels"

    page = browser_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.url}/label")
    link = page.locator(f"#recordings a[href='/label/pi-lab/{session}']")
    link.click()
    page.wait_for_url(f"**/label/pi-lab/{session}")
    page.wait_for_function("() => window.edgeHarLabel.state.loaded && window.edgeHarLabel.state.predictions !== null")
    state = page.evaluate("() => window.edgeHarLabel.state")
    assert [s["label"] for s in state["segments"]] == ["walk", "sit"]
    assert len(state["predictions"]) >= 30, "the model's predictions of the session's time"
    assert page.locator("#lane .rec-seg").count() == 2

    # drag the shared walk|sit boundary from t0+20 to about t0+26
    lane = page.locator("#lane").bounding_box()
    y = lane["y"] + lane["height"] / 2
    x_from = lane["x"] + page.evaluate(f"() => window.edgeHarLabel.x({t0 + 20})")
    x_to = lane["x"] + page.evaluate(f"() => window.edgeHarLabel.x({t0 + 26})")
    seconds_per_px = 40 / lane["width"]
    page.mouse.move(x_from + 2, y)  # just inside sit's start edge
    page.mouse.down()
    page.mouse.move((x_from + x_to) / 2, y, steps=4)
    page.mouse.move(x_to + 2, y, steps=4)
    page.mouse.up()
    assert page.locator("#dirty").inner_text() == "unsaved changes"
    page.click("#save")
    page.wait_for_function("() => window.edgeHarLabel.state.saves === 1 && !window.edgeHarLabel.state.saving")
    assert page.locator("#error").is_hidden()

    saved = http("GET", labels_api)["segments"]
    assert [s["label"] for s in saved] == ["walk", "sit"], saved
    walk, sit = saved
    assert walk["start"] == pytest.approx(t0 + 10, abs=1e-6)
    assert walk["end"] == pytest.approx(t0 + 26, abs=4 * seconds_per_px), (walk, seconds_per_px)
    assert sit["start"] == pytest.approx(walk["end"], abs=1e-6)
    assert sit["end"] == pytest.approx(t0 + 30, abs=1e-6)
    screenshot(page, "label-light")

    # a refused save says why in one line and keeps the edit; Delete then removes the culprit
    page.evaluate(
        f"() => {{ const s = window.edgeHarLabel.state; s.segments.push({{label: 'stand', start: {t0 + 27}, "
        f"end: {t0 + 29}}}); s.segments.sort((a, b) => a.start - b.start); s.dirty = true; }}"
    )
    page.locator("#lane").focus()
    page.keyboard.press("Control+s")
    page.wait_for_function("() => !document.getElementById('error').hidden")
    refused = page.locator("#error").inner_text()
    assert refused.startswith("Not saved:") and "stand" in refused, refused
    assert http("GET", labels_api)["segments"] == saved
    page.locator("#segments tbody tr", has_text="stand").click()
    page.keyboard.press("Delete")
    page.click("#save")
    page.wait_for_function("() => window.edgeHarLabel.state.saves === 2")
    assert page.locator("#error").is_hidden()
    assert http("GET", labels_api)["segments"] == saved

    # a label of one's own, and a segment drawn with it on empty space after sit
    page.fill(".rec-new-label input", "jump, high")
    page.press(".rec-new-label input", "Enter")
    assert page.locator("#labels button[aria-pressed='true']").inner_text().startswith("jump, high")
    lane = page.locator("#lane").bounding_box()  # the new button may have wrapped the toolbar
    y = lane["y"] + lane["height"] / 2
    x_a = lane["x"] + page.evaluate(f"() => window.edgeHarLabel.x({t0 + 32})")
    x_b = lane["x"] + page.evaluate(f"() => window.edgeHarLabel.x({t0 + 36})")
    page.mouse.move(x_a, y)
    page.mouse.down()
    page.mouse.move(x_b, y, steps=5)
    page.mouse.up()
    page.click("#save")
    page.wait_for_function("() => window.edgeHarLabel.state.saves === 3")
    drawn = http("GET", labels_api)["segments"]
    assert [s["label"] for s in drawn] == ["walk", "sit", "jump, high"], drawn
    assert drawn[2]["start"] == pytest.approx(t0 + 32, abs=2 * seconds_per_px), drawn
    assert drawn[2]["end"] == pytest.approx(t0 + 36, abs=2 * seconds_per_px), drawn

    # dragging across the signal zooms in, and the signal is read again for that range
    over = page.locator("#chart .u-over").bounding_box()
    page.mouse.move(over["x"] + over["width"] * 0.25, over["y"] + 40)
    page.mouse.down()
    page.mouse.move(over["x"] + over["width"] * 0.5, over["y"] + 40, steps=5)
    page.mouse.up()
    page.wait_for_function(
        "() => { const s = window.edgeHarLabel.state; const t = s.signal.t; return s.view.end - s.view.start < 15"
        " && t.length > 10 && t[0] >= s.view.start - 0.05 && t[t.length - 1] <= s.view.end + 0.05; }"
    )
    assert page.locator("#reset-zoom").is_enabled()

    # a captured window: "relabel as sit" saves one segment over the window
    capture = {
        "reason": "unsure",
        "predicted": "walk",
        "confidence": 0.41,
        "probabilities": {"walk": 0.41, "sit": 0.39, "stand": 0.2},
        "model_id": "tiny-cnn-lstm",
        "window_end_ts": t0 + 102,
        "corrected": None,
    }
    upload_session(server.url, "pi-lab", "capture-1000-0", t0 + 100, 2, "", capture=capture)
    phone = browser_page(viewport={"width": 360, "height": 780}, color_scheme="dark")
    phone.on("pageerror", lambda exc: errors.append(str(exc)))
    phone.goto(f"{server.url}/label/pi-lab/capture-1000-0")
    phone.wait_for_function("() => window.edgeHarLabel.state.loaded")
    assert (
        "walk" in phone.locator("#capture-text").inner_text() and "41%" in phone.locator("#capture-text").inner_text()
    )
    phone.locator("#capture-buttons button[data-label='sit']").click()
    phone.wait_for_function("() => window.edgeHarLabel.state.saves === 1")
    saved = http("GET", f"{server.url}/api/recordings/pi-lab/capture-1000-0/labels")["segments"]
    assert len(saved) == 1 and saved[0]["label"] == "sit", saved
    assert saved[0]["start"] <= t0 + 100 and saved[0]["end"] > t0 + 100 + 49 / RATE_HZ, saved
    assert phone.evaluate("document.documentElement.scrollWidth") <= 360
    background = phone.evaluate("getComputedStyle(document.querySelector('.panel')).backgroundColor")
    assert background == "rgb(28, 33, 40)", background  # app.css's dark --panel
    screenshot(phone, "label-phone-dark")
    assert not errors, errors


@pytest.mark.slow
def test_the_pages_name_a_missing_session_and_a_missing_broker(web_server, browser_page, tmp_path):
    server = web_server(ServeConfig(db_path=tmp_path / "none.sqlite3", recordings_dir=tmp_path / "recs"))
    page = browser_page()
    page.goto(f"{server.url}/label/pi-x/20260101T000000Z")
    page.wait_for_function("() => !document.getElementById('error').hidden")
    assert "pi-x/20260101T000000Z" in page.locator("#error").inner_text()

    # the Record page of a server without --broker says so
    page.goto(f"{server.url}/record?device=pi-x")
    page.wait_for_function("() => window.edgeHarRecord.state.polls > 0")
    assert page.locator("#error").inner_text().startswith("No broker"), page.locator("#error").inner_text()
    page.click("#start")
    page.wait_for_function("() => document.getElementById('error').textContent.startsWith('Start: no broker')")


@pytest.mark.slow
def test_a_real_recorder_from_the_record_page_to_the_label_page(
    web_server, browser_page, screenshot, mosquitto_broker, tmp_path
):
    """`edge-har record` on a serial pty: started, labelled and stopped from the Record page, its session
    pushed to serve, and its label boundary moved on the Label page."""
    pytest.importorskip("serial", reason="pyserial is not installed (pip install 'edge-har[device]')")
    from tests.record_helpers import FakeMicrocontroller, Feeder, record_process, write_config

    mqtt = MqttConfig(host=mosquitto_broker.host, port=mosquitto_broker.port, reconnect_min_s=0.1, reconnect_max_s=1)
    server = web_server(ServeConfig(mqtt=mqtt, db_path=tmp_path / "e2e.sqlite3", recordings_dir=tmp_path / "serve"))
    assert server.app.state.live.ingest.ready.wait(10)
    mcu = FakeMicrocontroller(tmp_path)
    cfg = write_config(tmp_path, mcu.port, broker=mosquitto_broker, device_id="pi-real")
    proc = record_process(
        ["--config", str(cfg), "--out", str(tmp_path / "rec"), "--channels", "3", "--rate", "50"]
        + ["--channel-names", "ax,ay,az", "--classes", "sit,walk", "--start-stopped", "--duration", "120"]
        + ["--push", server.url, "--push-wait", "10"]
    )
    feeder = Feeder(mcu).start()
    page = browser_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        record_api = f"{server.url}/api/devices/pi-real/record"
        wait_until(lambda: http("GET", record_api)["state"] is not None, timeout=30, what="the recorder's state")
        page.goto(f"{server.url}/record?device=pi-real")
        page.wait_for_function("() => { const r = window.edgeHarRecord.state.record; return r && r.state; }")
        page.click("#start")
        page.wait_for_function("() => window.edgeHarRecord.state.record.state.recording === true")
        session = page.evaluate("() => window.edgeHarRecord.state.record.state.session_id")
        page.keyboard.press("2")  # walk: the second of --classes sit,walk
        page.wait_for_function("() => window.edgeHarRecord.state.record.state.label === 'walk'")
        page.wait_for_function(
            "() => { const c = window.edgeHarRecord.charts.signal; return c && c.data[0].length >= 20; }"
        )
        time.sleep(1.5)
        page.locator("#labels button[data-label='sit']").click()
        page.wait_for_function("() => window.edgeHarRecord.state.record.state.label === 'sit'")
        time.sleep(1.5)
        page.click("#stop")
        page.wait_for_function("() => window.edgeHarRecord.state.record.state.recording === false")
        screenshot(page, "record-real")

        def pushed() -> bool:
            items = http("GET", f"{server.url}/api/recordings?device=pi-real")["recordings"]
            return any(r["session_id"] == session and r["labels"] == 2 and r["samples"] > 100 for r in items)

        wait_until(pushed, timeout=30, what="the session pushed to serve")
        page.goto(f"{server.url}/label/pi-real/{session}")
        page.wait_for_function("() => window.edgeHarLabel.state.loaded")
        segments = page.evaluate("() => window.edgeHarLabel.state.segments")
        assert [s["label"] for s in segments] == ["walk", "sit"], segments
        walk, sit = segments
        assert walk["end"] == pytest.approx(sit["start"], abs=1e-6)
        moved_to = walk["start"] + (walk["end"] - walk["start"]) / 2
        lane = page.locator("#lane").bounding_box()
        y = lane["y"] + lane["height"] / 2
        x_from = lane["x"] + page.evaluate(f"() => window.edgeHarLabel.x({walk['end']})")
        x_to = lane["x"] + page.evaluate(f"() => window.edgeHarLabel.x({moved_to})")
        page.mouse.move(x_from - 2, y)  # just inside walk's end edge, the edge shared with sit
        page.mouse.down()
        page.mouse.move(x_to - 2, y, steps=6)
        page.mouse.up()
        page.click("#save")
        page.wait_for_function("() => window.edgeHarLabel.state.saves === 1 && !window.edgeHarLabel.state.saving")
        saved = http("GET", f"{server.url}/api/recordings/pi-real/{session}/labels")
        seconds_per_px = (
            page.evaluate("() => window.edgeHarLabel.state.full.end - window.edgeHarLabel.state.full.start")
            / lane["width"]
        )
        assert [s["label"] for s in saved["segments"]] == ["walk", "sit"], saved
        assert saved["segments"][0]["end"] == pytest.approx(moved_to, abs=4 * seconds_per_px), saved
        assert saved["segments"][1]["start"] == pytest.approx(saved["segments"][0]["end"], abs=1e-6)
        assert saved["edited"] is True
        assert not errors, errors
    finally:
        feeder.stop()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.communicate(timeout=20)
            except Exception:  # noqa: BLE001 - a recorder that hangs is killed; the assertions above speak
                proc.kill()
                proc.communicate()
        mcu.unplug()
