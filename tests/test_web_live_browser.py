"""The Live page in a real headless Chromium, against a real uvicorn, a real mosquitto and SQLite.

Devices publish the daemon's payloads with paho; the page must follow them without a reload (a marker
set in the page's window survives every step), say how long each device's current activity has
lasted, mark a stopped device's card as its last known state, show a device going offline when its
Last Will fires, say the server is unreachable while it is down (the cards kept, marked unknown) and
come back by itself after the server restarts on the same port. A phone-sized window in dark mode
must not scroll sideways and must stay readable. Screenshots go to the test's tmp_path/screenshots/
(``live-fleet.png`` is the README's docs/img/web-live.png).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import subprocess
import sys
import time
from typing import Any, Callable
from zoneinfo import ZoneInfo

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("playwright")

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from edge_har.mqtt.config import MqttConfig  # noqa: E402
from edge_har.mqtt.payloads import prediction_payload, stats_payload  # noqa: E402
from edge_har.web.app import create_app  # noqa: E402
from edge_har.web.background import BackgroundServer  # noqa: E402
from edge_har.web.config import ServeConfig  # noqa: E402
from tests.test_web_live import WILLING_DEVICE, wait_until  # noqa: E402

pytestmark = pytest.mark.slow

LABELS = ["Sit", "Walk", "Wave"]
STRIDE_S = 1.0
BURST = 300  # predictions per burst, well under mosquitto's 1000 queued for one subscriber


def payload(device: str, seq: int, ts: float, label: str, run_id: str = "a1b2c3d4e5f6") -> str:
    probs = {name: (0.86 if name == label else 0.07) for name in LABELS}
    return json.dumps(
        prediction_payload(
            device_id=device,
            model_id="tiny-cnn-lstm",
            variant="int8",
            run_id=run_id,
            seq=seq,
            window_end_ts=ts,
            label=label,
            confidence=0.86,
            probabilities=probs,
            inference_ms=0.6,
            e2e_ms=1.9,
        )
    )


def stored_row(p: dict[str, Any]) -> dict[str, Any]:
    """A prediction payload as ``Store.add_predictions`` takes it, received the moment its window ended."""
    return {
        "device_id": p["device_id"],
        "run_id": p["run_id"],
        "seq": p["seq"],
        "ts": p["window_end_ts"],
        "label": p["label"],
        "confidence": p["confidence"],
        "probabilities": p["probabilities"],
        "model_id": p["model_id"],
        "variant": p["variant"],
        "inference_ms": p["inference_ms"],
        "received_at": p["window_end_ts"],
    }


def stats(device: str, wps: float, reconnects: int) -> str:
    return json.dumps(
        stats_payload(
            device_id=device,
            model_id="tiny-cnn-lstm",
            run_id="a1b2c3d4e5f6",
            uptime_s=2400.0,
            windows_total=2400,
            windows_per_s=wps,
            inference_ms={"p50": 0.62, "p90": 0.9, "p99": 1.4, "max": 3.0},
            queue_depth=0,
            mqtt={"connected": True, "reconnects": reconnects},
            ts=time.time(),
            stats_interval_s=30.0,
        )
    )


def publish_history(
    client: paho.Client, device: str, plan: list[tuple[str, float]], end: float, settle: Callable[[int], None]
) -> int:
    """Windows every STRIDE_S ending at ``end``: ``plan`` is (label, minutes) oldest first. Returns the next seq.

    Sent in bursts of BURST, each followed by ``settle(n sent so far)`` (wait until the server stored
    them): mosquitto
    queues at most 1000 QoS 1 messages for a subscriber and drops the rest ("Outgoing messages are
    being dropped"), so a whole hour at once lost messages on a loaded machine.
    """
    total = sum(minutes for _, minutes in plan) * 60
    ts = end - total
    seq = 0
    infos = []
    for label, minutes in plan:
        for _ in range(int(minutes * 60 / STRIDE_S)):
            infos.append(client.publish(f"edge-har/{device}/prediction", payload(device, seq, ts, label), qos=1))
            seq += 1
            ts += STRIDE_S
            if len(infos) == BURST:
                for info in infos:
                    info.wait_for_publish(10)
                infos = []
                settle(seq)
    for info in infos:
        info.wait_for_publish(10)
    settle(seq)
    return seq


def text(page, device: str, selector: str) -> str:
    return page.locator(f'section.device[data-device="{device}"] {selector}').inner_text()


def style(page, device: str, selector: str, prop: str) -> str:
    return page.locator(f'section.device[data-device="{device}"] {selector}').evaluate(
        f"e => getComputedStyle(e).{prop}"
    )


def rgb(css: str) -> tuple[float, ...]:
    return tuple(float(v) for v in re.findall(r"[\d.]+", css)[:3])


def luminance(css: str) -> float:
    """WCAG relative luminance of a computed ``rgb(r, g, b)``."""

    def lin(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(c) for c in rgb(css))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def muted_colour(page) -> str:
    """The page's --muted, as a computed colour."""
    return page.evaluate(
        "() => { const e = document.createElement('span'); e.style.color = 'var(--muted)';"
        " document.body.append(e); const c = getComputedStyle(e).color; e.remove(); return c; }"
    )


def test_the_live_page_follows_the_fleet_without_reloading(
    web_server, browser_page, screenshot, mosquitto_broker, tmp_path
):
    mqtt = MqttConfig(host=mosquitto_broker.host, port=mosquitto_broker.port, reconnect_min_s=0.1, reconnect_max_s=1)
    cfg = ServeConfig(mqtt=mqtt, db_path=tmp_path / "live.sqlite3")
    server = web_server(cfg)
    assert server.app.state.live.ingest.ready.wait(10)

    fleet = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="browser-test-fleet")
    fleet.connect(mosquitto_broker.host, mosquitto_broker.port)
    fleet.loop_start()
    now = time.time()
    plans = {
        "pi-kitchen": [("Sit", 12), ("Walk", 6), ("Wave", 3), ("Walk", 9)],
        "pi-hall": [("Walk", 4), ("Sit", 20), ("Walk", 6)],
    }
    next_seq: dict[str, int] = {}
    counters = server.app.state.live.ingest.counters
    for device, plan in plans.items():
        fleet.publish(f"edge-har/{device}/status", "online", qos=1, retain=True).wait_for_publish(5)
        fleet.publish(f"edge-har/{device}/stats", stats(device, 1.0, 1), qos=1).wait_for_publish(5)
        base = sum(next_seq.values())

        def settle(n: int, base: int = base) -> None:  # every prediction published so far is stored
            wait_until(lambda: counters.stored >= base + n, timeout=30)

        next_seq[device] = publish_history(fleet, device, plan, now, settle)
    assert server.app.state.live.ingest.counters.stored == sum(next_seq.values())

    page = browser_page(timezone_id="Europe/Berlin")
    page.goto(server.url + "/live")
    page.wait_for_function("document.getElementById('stream-state').textContent === 'live'")
    offset = dt.datetime.now(ZoneInfo("Europe/Berlin")).strftime("%z")
    assert page.inner_text("#tz") == f"Times in Europe/Berlin (UTC{offset[:3]}:{offset[3:]})"
    page.evaluate("window.__noReload = 'still the same page'")
    for device in plans:
        page.locator(f'section.device[data-device="{device}"] .today .bar').first.wait_for()
    assert text(page, "pi-kitchen", ".now .label") == "Walk"
    assert text(page, "pi-kitchen", ".liveness") == "online"
    assert text(page, "pi-kitchen", ".wps") == "1.0" and text(page, "pi-kitchen", ".reconnects") == "1"
    assert page.locator('section.device[data-device="pi-hall"] svg.hour rect').count() >= 3
    kitchen_today = page.locator('section.device[data-device="pi-kitchen"] .today .bar .name').all_inner_texts()
    assert sorted(kitchen_today) == ["Sit", "Walk", "Wave"]
    # how long the current activity has lasted: pi-kitchen has walked for the last 9 minutes
    walking = {}
    for device in plans:
        shown = re.fullmatch(r"Walk for (\d+) min, since \d\d:\d\d", text(page, device, ".current"))
        assert shown, text(page, device, ".current")
        walking[device] = int(shown.group(1))
    late = (time.time() - now) / 60  # minutes since the newest window of the history
    assert 8 <= walking["pi-kitchen"] <= 9 + late and 5 <= walking["pi-hall"] <= 6 + late
    link = page.locator('section.device[data-device="pi-kitchen"] h2 a')
    assert link.get_attribute("href") == "/device/pi-kitchen"

    # a new activity, new stats and a clean stop arrive while the page is open
    seq = next_seq["pi-kitchen"]
    fleet.publish("edge-har/pi-kitchen/prediction", payload("pi-kitchen", seq, time.time(), "Wave"), qos=1)
    fleet.publish("edge-har/pi-kitchen/stats", stats("pi-kitchen", 2.5, 4), qos=1)
    page.wait_for_function(
        "document.querySelector('section.device[data-device=\"pi-kitchen\"] .now .label').textContent === 'Wave'"
    )
    assert re.fullmatch(r"Wave( for \d+ s,)? since \d\d:\d\d", text(page, "pi-kitchen", ".current"))
    page.wait_for_function(
        "document.querySelector('section.device[data-device=\"pi-kitchen\"] .reconnects').textContent === '4'"
    )
    fleet.publish("edge-har/pi-hall/status", "stopped", qos=1, retain=True)
    page.wait_for_function(
        "document.querySelector('section.device[data-device=\"pi-hall\"] .liveness').textContent === 'stopped'"
    )
    # a stopped device's card is its last known state: muted, with when it was last seen
    assert "past" in page.locator('section.device[data-device="pi-hall"]').get_attribute("class")
    assert style(page, "pi-hall", ".now .label", "color") == muted_colour(page)
    assert style(page, "pi-kitchen", ".now .label", "color") != muted_colour(page)
    assert re.fullmatch(r"last seen \d\d:\d\d · \d+ (s|min) ago", text(page, "pi-hall", ".age"))
    assert re.fullmatch(r"was Walk for 5 min, \d\d:\d\d–\d\d:\d\d", text(page, "pi-hall", ".current"))

    # a third device appears, then dies: the broker publishes its Last Will
    garage = subprocess.Popen(
        [sys.executable, "-c", WILLING_DEVICE.replace("willing-pi", "pi-garage"), mqtt.host, str(mqtt.port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert garage.stdout.readline().strip() == "online"
        fleet.publish(
            "edge-har/pi-garage/prediction", payload("pi-garage", 0, time.time(), "Sit", "0f0f0f0f0f0f"), qos=1
        )
        page.wait_for_function(
            "document.querySelector('section.device[data-device=\"pi-garage\"] .liveness')?.textContent === 'online'"
        )
        screenshot(page, "live-fleet-before-will")
        garage.send_signal(signal.SIGKILL)
        garage.wait(10)
        page.wait_for_function(
            "document.querySelector('section.device[data-device=\"pi-garage\"] .liveness').textContent === 'offline'"
        )
    finally:
        if garage.poll() is None:
            garage.kill()
            garage.wait(10)
    assert page.evaluate("window.__noReload") == "still the same page"
    shot = screenshot(page, "live-fleet")
    assert shot.stat().st_size > 10_000

    # the server goes away: the page keeps what it showed, marked unknown, and says since when
    cards = page.locator("section.device").count()
    server.stop()
    banner = page.locator("#down-banner")
    banner.wait_for(state="visible")
    assert re.match(r"Server unreachable since \d\d:\d\d — retrying", banner.inner_text())
    assert page.locator("section.device").count() == cards == 3
    assert page.locator("section.device .liveness").all_inner_texts() == ["unknown"] * 3
    assert page.locator("section.device.past").count() == 3
    assert text(page, "pi-kitchen", ".now .label") == "Wave"  # the last data stays, not "nothing yet today"
    assert page.locator('section.device[data-device="pi-kitchen"] .today .bar').count() == 3
    broker = page.inner_text("#broker")
    assert "unknown" in broker and "connected" not in broker.replace("whether it is connected", "")
    screenshot(page, "live-server-down")
    # it restarts on the same port: the page reconnects by itself and the banner goes
    again = BackgroundServer(create_app(server.cfg), server.port).start()
    try:
        page.wait_for_function("document.getElementById('stream-state').textContent === 'live'", timeout=20_000)
        banner.wait_for(state="hidden")
        assert "connected" in page.inner_text("#broker")
        fleet.publish("edge-har/pi-hall/prediction", payload("pi-hall", next_seq["pi-hall"], time.time(), "Sit"), qos=1)
        page.wait_for_function(
            "document.querySelector('section.device[data-device=\"pi-hall\"] .now .label').textContent === 'Sit'"
        )
        assert page.evaluate("window.__noReload") == "still the same page"
        assert text(page, "pi-garage", ".liveness") == "offline"  # from the store and the retained Last Will
    finally:
        fleet.disconnect()
        fleet.loop_stop()
        page.close()
        again.stop()


def test_without_a_broker_the_page_says_so_and_shows_the_stored_history(web_server, browser_page, screenshot, tmp_path):
    """On a 360-pixel phone in dark mode: the stored history, no sideways scroll, readable text.

    The page is served /api/devices without each device's ``current`` (as a server older than the
    field answers): it reads the current stretch off the last hour instead.
    """
    from edge_har.web.store import open_store_url

    db = tmp_path / "history.sqlite3"
    store = open_store_url(f"sqlite:///{db}")
    now = time.time()
    rows = [json.loads(payload("pi-attic", seq, now - 600 + seq, "Sit" if seq < 300 else "Walk")) for seq in range(400)]
    store.add_predictions([stored_row(p) for p in rows])
    store.set_status("pi-attic", "stopped", now - 200)
    store.close()
    server = web_server(ServeConfig(db_path=db))
    page = browser_page(viewport={"width": 360, "height": 740}, color_scheme="dark")

    def without_current(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        for view in body["devices"]:
            del view["current"]
        route.fulfill(response=response, json=body)

    page.route("**/api/devices?*", without_current)
    page.goto(server.url + "/live")
    page.get_by_text("No broker is configured.").wait_for()
    page.locator('section.device[data-device="pi-attic"] .today .bar').first.wait_for()
    assert text(page, "pi-attic", ".now .label") == "Walk"
    assert text(page, "pi-attic", ".liveness") == "stopped"
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 360
    assert page.locator('section.device[data-device="pi-attic"]').bounding_box()["width"] <= 360
    background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    panel = page.locator('section.device[data-device="pi-attic"]').evaluate("e => getComputedStyle(e).backgroundColor")
    assert luminance(background) < 0.05 and luminance(panel) < 0.05  # dark, not the light theme
    for selector in ("h2 .name", ".today .bar:first-child .name", "dl.stats dd.wps"):
        assert contrast(style(page, "pi-attic", selector, "color"), panel) >= 7  # body text: WCAG AAA
    for selector in (".now .label", ".age", "dl.stats div:first-child dt"):  # muted text still AA
        assert contrast(style(page, "pi-attic", selector, "color"), panel) >= 4.5
    assert "past" in page.locator('section.device[data-device="pi-attic"]').get_attribute("class")
    assert text(page, "pi-attic", ".age").startswith("last seen ")
    assert re.fullmatch(r"was Walk for 1 min, (at \d\d:\d\d|\d\d:\d\d–\d\d:\d\d)", text(page, "pi-attic", ".current"))
    bars = page.locator('section.device[data-device="pi-attic"] .today .bar .name').all_inner_texts()
    if time.gmtime(now - 600).tm_yday == time.gmtime(now).tm_yday:  # (headless Chromium's day is UTC here)
        assert bars == ["Sit", "Walk"]  # 300 s of Sit, 100 s of Walk: most first
    screenshot(page, "live-no-broker-phone-dark")
