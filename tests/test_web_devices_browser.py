"""The Live page with a large fleet, in a real headless Chromium against a real uvicorn.

What is measured is what the page asks of the server: its requests are recorded from the browser's
side (Playwright's ``request`` event) and must not grow with the number of devices (one
``/api/devices`` page carries every card's hour and today). The gaps and rejections a device's
messages caused upstream are shown on its card and in the ingest line, from a real mosquitto.
Screenshots go to the test's tmp_path/screenshots/.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("playwright")

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from edge_har.mqtt.config import MqttConfig  # noqa: E402
from edge_har.web.config import ServeConfig  # noqa: E402
from edge_har.web.store import devices, open_store_url  # noqa: E402
from tests.ingest_helpers import wait_until  # noqa: E402
from tests.test_web_live_browser import payload, stored_row  # noqa: E402

pytestmark = pytest.mark.slow

PAGE = 24  # live.js's devices per request


def fleet_db(path, n: int) -> None:
    """``n`` devices; every third one published a prediction a second for the last five minutes."""
    store = open_store_url(f"sqlite:///{path}")
    now = time.time()
    ids = [f"pi-{i:05d}" for i in range(n)]
    with store.engine.begin() as conn:
        conn.execute(devices.insert(), [{"device_id": d, "status": "online", "last_seen": now} for d in ids])
    rows = []
    for d in ids[::3]:
        for seq in range(300):
            rows.append(stored_row(json.loads(payload(d, seq, now - 300 + seq, "Sit" if seq < 200 else "Walk"))))
    store.add_predictions(rows)
    store.close()


def api_requests(urls: list[str]) -> list[str]:
    """The page's API requests (the push stream aside), as ``path?sorted query names``."""
    out = []
    for url in urls:
        parts = urlsplit(url)
        if parts.path.startswith("/api/") and parts.path != "/api/stream":
            out.append(f"{parts.path}?{','.join(sorted(parse_qs(parts.query)))}")
    return out


def open_live(browser_page, url: str, cards: int):
    page = browser_page()
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.goto(url + "/live")
    page.wait_for_function("document.getElementById('stream-state').textContent === 'live'")
    page.wait_for_function(f"document.querySelectorAll('section.device').length === {cards}")
    page.wait_for_timeout(1500)  # anything a card would still fetch by itself
    return page, urls


def test_the_page_makes_the_same_requests_for_thirty_devices_as_for_three_hundred(
    web_server, browser_page, screenshot, tmp_path
):
    seen = {}
    for n in (30, 300):
        db = tmp_path / f"fleet-{n}.sqlite3"
        fleet_db(db, n)
        server = web_server(ServeConfig(db_path=db))
        page, urls = open_live(browser_page, server.url, PAGE)
        seen[n] = api_requests(urls)
        if n == 30:
            page.close()
    # one request for the cards, whatever the fleet, the fleet's newest events, and the palette's label order once
    assert (
        seen[30]
        == seen[300]
        == [
            "/api/labels?",
            "/api/devices?hour_step_s,limit,today,utc_offset_min",
            "/api/events?limit",
        ]
    ), seen
    assert page.locator("#count").inner_text() == "Showing 24 of 300 devices"
    card = 'section.device[data-device="pi-00003"]'
    assert page.locator(f"{card} .now .label").inner_text() == "Walk"
    assert page.locator(f"{card} svg.hour rect").count() >= 2  # Sit then Walk, from the page's one request
    assert sorted(page.locator(f"{card} .today .bar .name").all_inner_texts()) == ["Sit", "Walk"]
    screenshot(page, "live-300-devices")

    # "Show more": one request for the next page, after the last device shown
    urls.clear()
    page.locator("#more").click()
    page.wait_for_function(f"document.querySelectorAll('section.device').length === {2 * PAGE}")
    assert api_requests(urls) == ["/api/devices?after,hour_step_s,limit,today,utc_offset_min"]
    assert page.locator("#count").inner_text() == "Showing 48 of 300 devices"
    assert page.locator("section.device").nth(PAGE).get_attribute("data-device") == "pi-00024"

    # the filter asks the server, which answers the ids containing the text
    page.locator("#filter").fill("PI-0029")
    page.wait_for_function("document.querySelectorAll('section.device').length === 10")
    shown = page.locator("section.device").evaluate_all("els => els.map((el) => el.dataset.device)")
    assert shown == [f"pi-{i:05d}" for i in range(290, 300)]
    assert page.locator("#more").is_hidden()
    assert page.locator("#count").inner_text().startswith("Showing 10 of 10 devices matching")


def test_a_device_s_gaps_and_rejected_messages_are_on_its_card(web_server, browser_page, screenshot, mosquitto_broker):
    mqtt = MqttConfig(host=mosquitto_broker.host, port=mosquitto_broker.port, reconnect_min_s=0.1, reconnect_max_s=1)
    server = web_server(ServeConfig(mqtt=mqtt))
    ingest = server.app.state.live.ingest
    assert ingest.ready.wait(10)
    fleet = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="devices-browser-fleet")
    fleet.connect(mosquitto_broker.host, mosquitto_broker.port)
    fleet.loop_start()
    try:
        now = time.time()
        for device, seqs in (("pi-gappy", [0, 1, 2, 7, 8]), ("pi-steady", [0, 1, 2, 3, 4])):
            for seq in seqs:
                fleet.publish(
                    f"edge-har/{device}/prediction", payload(device, seq, now - 10 + seq, "Walk"), qos=1
                ).wait_for_publish(5)
        bad = json.loads(payload("pi-gappy", 9, now, "Walk"))
        bad["confidence"] = "very"
        fleet.publish("edge-har/pi-gappy/prediction", json.dumps(bad), qos=1).wait_for_publish(5)
        wait_until(lambda: ingest.counters.stored >= 10, timeout=15)
        wait_until(lambda: ingest.device_books("pi-gappy") == {"gaps": 4, "rejected": 1}, timeout=15)

        page = browser_page()
        page.goto(server.url + "/live")
        card = 'section.device[data-device="pi-gappy"]'
        page.locator(f"{card} .gaps").wait_for()
        page.wait_for_function(f"document.querySelector('{card} .gaps').textContent === '4'")
        assert page.locator(f"{card} .rejected").inner_text() == "1"
        assert "warn" in page.locator(f"{card} .gaps").evaluate("el => el.parentElement.className")
        steady = 'section.device[data-device="pi-steady"]'
        assert page.locator(f"{steady} .gaps").inner_text() == "0"
        assert page.locator(f"{steady} .rejected").inner_text() == "0"
        line = page.locator("#ingest").inner_text()
        assert "stored 10" in line and "rejected 1" in line and "lost upstream 4" in line, line
        screenshot(page, "live-gaps")

        # the whole list is shown, so a device that appears meanwhile gets a card and is counted at once
        fleet.publish("edge-har/pi-new/prediction", payload("pi-new", 0, time.time(), "Sit"), qos=1)
        page.locator('section.device[data-device="pi-new"] .now .label').wait_for()
        assert page.locator("#count").inner_text() == "Showing 3 of 3 devices"
    finally:
        fleet.disconnect()
        fleet.loop_stop()
