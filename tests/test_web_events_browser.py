"""Events (a fall) on the Live page in a real headless Chromium, against a real uvicorn, mosquitto and SQLite.

A device publishes the daemon's own event payload: the page lists it at the top, its card says when the
last fall was, and its last-hour timeline carries a mark at the impact. A fall published while the page
is open appears without a reload (a marker set in the page's window survives), and a QoS 1 re-delivery
of it is not a second fall. The device page marks both on its timeline and describes one under the
cursor. Screenshots: ``<tmp_path>/screenshots/live-events.png`` and ``device-events.png``.
"""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("playwright")

from edge_har.core.events import Event  # noqa: E402
from edge_har.mqtt.payloads import event_payload  # noqa: E402
from tests.ingest_helpers import Devices, prediction, serve_config, stats, wait_until  # noqa: E402

pytestmark = pytest.mark.slow


def fall(device: str, impact_ts: float, first_seq: int) -> dict:
    event = Event("fall", impact_ts, impact_ts + 2.3, 0.997, first_seq, first_seq + 3)
    return event_payload(
        device_id=device, model_id="fall-int8", variant="int8", run_id="run000000001", event=event.to_json()
    )


def card(page, device: str, selector: str):
    return page.locator(f'section.device[data-device="{device}"] {selector}')


def test_the_live_page_lists_marks_and_dates_falls_as_they_come(
    web_server, browser_page, screenshot, mosquitto_broker, tmp_path
):
    server = web_server(serve_config(mosquitto_broker, f"sqlite:///{tmp_path / 'events.sqlite3'}"))
    live = server.app.state.live
    assert live.ingest.ready.wait(10)
    devices = Devices(mosquitto_broker, "events-browser-devices")
    try:
        now = time.time()
        for device in ("pi-hall", "pi-kitchen"):
            devices.send(f"edge-har/{device}/status", "online", retain=True)
            devices.send(f"edge-har/{device}/stats", stats(device))
            for seq in range(20):
                devices.send(
                    f"edge-har/{device}/prediction", prediction(device, seq) | {"window_end_ts": now - 60 + 3 * seq}
                )
        devices.send("edge-har/pi-hall/event", fall("pi-hall", now - 125, 40))
        wait_until(lambda: live.ingest.counters.events == 1, what="the first fall stored")

        page = browser_page()
        page.goto(server.url + "/live")
        page.wait_for_function("document.getElementById('stream-state').textContent === 'live'")
        page.evaluate("window.__notReloaded = true")
        items = page.locator("#events li")
        wait_until(lambda: items.count() == 1, what="the fall listed")
        assert page.locator("#events-panel").is_visible()
        first = items.nth(0)
        assert first.get_attribute("data-device") == "pi-hall" and first.locator(".type").inner_text() == "fall"
        assert "99.7 %" in first.inner_text() and "4 windows" in first.inner_text()
        last = card(page, "pi-hall", ".last-events")
        assert last.inner_text().startswith("last fall 2 min ago"), last.inner_text()
        assert card(page, "pi-hall", ".last-events .event.recent").count() == 1
        assert card(page, "pi-hall", "svg.hour rect.event-mark").count() == 1
        assert "fall at" in card(page, "pi-hall", "svg.hour rect.event-mark title").text_content()
        assert card(page, "pi-kitchen", ".last-events").inner_text() == ""
        assert card(page, "pi-kitchen", "svg.hour rect.event-mark").count() == 0

        # a fall while the page is open, then its QoS 1 re-delivery
        second = fall("pi-hall", time.time() - 3, 90)
        devices.send("edge-har/pi-hall/event", second)
        devices.send("edge-har/pi-hall/event", json.dumps(second))
        wait_until(lambda: items.count() == 2, what="the new fall listed without a reload")
        wait_until(
            lambda: live.ingest.counters.event_duplicates == 1, what="the re-delivery accounted for as a duplicate"
        )
        page.wait_for_timeout(500)  # what the stream would push of the re-delivery has arrived by now
        assert items.count() == 2 and page.evaluate("window.__notReloaded") is True
        assert [items.nth(i).get_attribute("data-device") for i in range(2)] == ["pi-hall", "pi-hall"]
        assert "s ago" in items.nth(0).locator(".ago").inner_text()  # newest first: seconds ago
        wait_until(lambda: card(page, "pi-hall", "svg.hour rect.event-mark").count() == 2, what="two marks")
        wait_until(
            lambda: card(page, "pi-hall", ".last-events").inner_text().split(" (")[0].endswith("s ago"),
            what="the card's last fall to be the new one",
        )
        screenshot(page, "live-events")

        # the device page: both falls marked on its timeline, named in the legend, described under the cursor
        page.goto(f"{server.url}/device/pi-hall")
        page.wait_for_function("window.edgeHarDevice && window.edgeHarDevice.state.history !== null")
        assert page.evaluate("window.edgeHarDevice.state.history.events.length") == 2
        assert "fall ×2" in page.locator("#timeline-legend").inner_text()
        x = page.evaluate(
            "() => { const c = window.edgeHarDevice.charts.timeline;"
            " const r = c.over.getBoundingClientRect();"
            " return r.left + c.valToPos(window.edgeHarDevice.state.history.events[0].impact_ts, 'x'); }"
        )
        box = page.locator("#timeline .u-over").bounding_box()
        page.mouse.move(x, box["y"] + box["height"] / 2)
        hover = page.locator("#timeline-hover")
        wait_until(lambda: hover.inner_text().startswith("fall"), what="the hover to describe the fall")
        assert "99.7 %" in hover.inner_text()
        screenshot(page, "device-events")
    finally:
        devices.close()
