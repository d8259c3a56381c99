"""The device page (/device/<id>) in a real headless Chromium, against a real uvicorn and SQLite.

Four days of one device's predictions are written into the store first: two hours on each of the three
days before, and the last 50 minutes of today with a silence (no data) and a stopped period in them.
The page must say what the device is doing now and for how long, follow the range picker (and keep the
range in the URL across a reload), explain a timeline segment and an outage under the pointer, stack
the per-day bars to the summary API's totals, download the range as CSV, fit a 360-pixel phone, turn
dark with the system, and keep its data with one clear line when the server goes away. The browser's
time zone is Europe/Berlin, so every clock time the page shows is checked against that zone, not UTC.
Screenshots go to the test's tmp_path/screenshots/ (``device-light``, ``device-dark``, ``device-phone``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
import urllib.parse
import urllib.request
from typing import Any
from zoneinfo import ZoneInfo

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("playwright")

from edge_har.web.config import ServeConfig  # noqa: E402
from edge_har.web.store import Store, open_store_url  # noqa: E402

pytestmark = pytest.mark.slow

DEVICE = "pi-den"
TZ = "Europe/Berlin"
ZONE = ZoneInfo(TZ)
LABELS = ["Sit", "Walk", "Wave"]


def row(ts: float, seq: int, label: str, run_id: str = "0123456789ab") -> dict[str, Any]:
    """One prediction as ``Store.add_predictions`` takes it, received the moment its window ended."""
    probs = {name: (0.8 if name == label else 0.1) for name in LABELS}
    return {
        "device_id": DEVICE,
        "run_id": run_id,
        "seq": seq,
        "ts": ts,
        "label": label,
        "confidence": round(0.75 + 0.2 * math.sin(seq / 90), 3),  # a line that moves
        "probabilities": probs,
        "model_id": "tiny-cnn-lstm",
        "variant": "int8",
        "inference_ms": 0.6,
        "received_at": ts,
    }


def seed(store: Store, now: float) -> dict[str, Any]:
    """Write the four days in the order a broker would deliver them; returns the times the page is checked against."""
    written: list[tuple[float, str]] = []
    seq = 0

    def windows(start: float, count: int, stride: float, label: str, run_id: str) -> None:
        nonlocal seq
        rows = [row(start + stride * (i + 1), seq + i, label, run_id) for i in range(count)]
        store.add_predictions(rows)
        written.extend((r["ts"], label) for r in rows)
        seq += count

    # the three days before today (Berlin): 09:00-10:00 Sit, 10:00-11:00 Walk, one window every 5 s
    today = dt.datetime.fromtimestamp(now, ZONE).date()
    marks: dict[str, Any] = {"days": []}
    for back in (3, 2, 1):
        marks["days"].append((today - dt.timedelta(days=back)).isoformat())
        nine = dt.datetime.combine(today - dt.timedelta(days=back), dt.time(9), ZONE).timestamp()
        windows(nine, 720, 5.0, "Sit", f"run-day-{back}")
        windows(nine + 3600, 720, 5.0, "Walk", f"run-day-{back}")
    # today's last 50 minutes, one window a second:
    #   Sit 20 min | no data 5 min | Walk 10 min | stopped 5 min | Walk 10 min up to now
    t = now - 3000
    store.set_status(DEVICE, "online", t - 60)
    marks["sit"] = (t, t + 1200)
    windows(t, 1200, 1.0, "Sit", "run-today")
    marks["silence"] = (t + 1200, t + 1500)
    marks["walk"] = (t + 1500, t + 2100)
    windows(t + 1500, 600, 1.0, "Walk", "run-today")
    marks["stopped"] = (t + 2100, t + 2400)
    store.set_status(DEVICE, "stopped", t + 2100)
    store.set_status(DEVICE, "online", t + 2400)
    marks["walk_again"] = (t + 2400, now)
    windows(t + 2400, 600, 1.0, "Walk", "run-today-2")
    marks["rows"] = written
    return marks


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def clock(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, ZONE).strftime("%H:%M:%S")


def seconds_of(text: str) -> float:
    """ "12 min 30 s", "20 min", "2 h 5 min" -> seconds."""
    parts = text.split()
    unit = {"s": 1, "min": 60, "h": 3600, "d": 86400}
    return sum(float(n) * unit[u] for n, u in zip(parts[::2], parts[1::2]))


def hover_at(page, chart: str, ts: float) -> None:
    """Move the mouse over ``ts`` on a uPlot chart of the page (its value-to-pixel map, not a guess)."""
    x = page.evaluate(f"window.edgeHarDevice.charts.{chart}.valToPos({ts}, 'x')")
    box = page.locator(f"#{chart} .u-over").bounding_box()
    page.mouse.move(box["x"] + x, box["y"] + box["height"] / 2)


def hover_parts(page) -> dict[str, str]:
    hover = page.locator("#timeline-hover")
    return {cls: hover.locator(f".dv-{cls}").inner_text() for cls in ("label", "start", "end", "duration")}


def ready(page) -> None:
    page.wait_for_function(
        "() => { const s = window.edgeHarDevice && window.edgeHarDevice.state;"
        " return s && s.loads === 0 && s.history && s.summary && s.view; }"
    )


def near_clock(shown: str, ts: float, slack_s: float) -> bool:
    want = dt.datetime.fromtimestamp(ts, ZONE)
    got = dt.datetime.combine(want.date(), dt.time.fromisoformat(shown), ZONE)
    return abs((got - want).total_seconds()) <= slack_s


def test_the_device_page_shows_one_device_over_a_chosen_range(web_server, browser_page, screenshot, tmp_path):
    db = tmp_path / "device.sqlite3"
    store = open_store_url(f"sqlite:///{db}")
    now = time.time()
    marks = seed(store, now)
    store.close()
    server = web_server(ServeConfig(db_path=db))
    base = f"{server.url}/device/{DEVICE}"
    api = f"{server.url}/api/devices/{DEVICE}"

    page = browser_page(timezone_id=TZ)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(base)
    ready(page)
    assert "range=1h" in page.url

    # what the device is doing now, as the API says, in Berlin's clock
    view = get_json(api)
    current = view["current"]
    assert current["label"] == "Walk"
    assert abs(current["since"] - marks["walk_again"][0]) < 5
    shown = page.locator("#current").inner_text()
    since_hm = dt.datetime.fromtimestamp(current["since"], ZONE).strftime("%H:%M")
    assert shown.startswith("Walk for ") and ", since " in shown and shown.endswith(since_hm), shown
    assert 540 <= seconds_of(shown.removeprefix("Walk for ").split(",")[0]) <= 720, shown
    assert page.locator("#liveness").inner_text() == view["liveness"]
    offset = dt.datetime.fromtimestamp(now, ZONE).strftime("%z")
    assert page.locator("#tz").inner_text() == f"{TZ} (UTC{offset[0]}{offset[1:3]}:{offset[3:]})".replace("-", "−")

    # the timeline under the pointer: the 20 minutes of Sit, then the stopped period (shaded)
    sit_start, sit_end = marks["sit"]
    hover_at(page, "timeline", (sit_start + sit_end) / 2)
    parts = hover_parts(page)
    assert parts["label"] == "Sit"
    assert near_clock(parts["start"], sit_start, 4) and near_clock(parts["end"], sit_end, 4), parts
    assert abs(seconds_of(parts["duration"]) - 1200) <= 60, parts
    history = get_json(f"{api}/history?since={now - 3600}&until={now + 1}")
    stopped = [o for o in history["outages"] if o["reason"] == "stopped"]
    assert len(stopped) == 1 and abs(stopped[0]["start"] - marks["stopped"][0]) < 3, history["outages"]
    hover_at(page, "timeline", (stopped[0]["start"] + stopped[0]["end"]) / 2)
    parts = hover_parts(page)
    assert parts["label"] == "Stopped"
    assert parts["start"] == clock(stopped[0]["start"]) and parts["end"] == clock(stopped[0]["end"]), parts
    assert "Stopped" in page.locator("#timeline-legend").inner_text()
    silence = [o for o in history["outages"] if o["reason"] == "no_data" and o["start"] < marks["walk"][0]]
    assert silence, history["outages"]
    hover_at(page, "timeline", (silence[0]["start"] + silence[0]["end"]) / 2)
    assert hover_parts(page)["label"] == "No data"
    shot = screenshot(page, "device-light")
    assert shot.stat().st_size > 10_000

    # the CSV link downloads the range it shows: every window stored in it, one row each
    with page.expect_download() as info:
        page.locator("#csv").click()
    download = info.value
    query = urllib.parse.parse_qs(urllib.parse.urlparse(download.url).query)
    since, until = float(query["since"][0]), float(query["until"][0])
    assert abs(since - (now - 3600)) < 120 and until >= now
    lines = download.path().read_text().strip().splitlines()
    assert len(lines) - 1 == sum(1 for ts, _ in marks["rows"] if since <= ts <= until)
    assert download.suggested_filename.startswith(f"{DEVICE}_") and download.suggested_filename.endswith(".csv")

    # the range picker: 24 h, a day, a custom range; the URL keeps it across a reload
    page.get_by_role("radio", name="24 h").click()
    ready(page)
    assert "range=24h" in page.url
    bounds = page.evaluate("window.edgeHarDevice.state.bounds")
    assert abs(bounds["until"] - bounds["since"] - 86400) < 1
    yesterday = (dt.datetime.fromtimestamp(now, ZONE).date() - dt.timedelta(days=1)).isoformat()
    page.get_by_role("radio", name="A day").click()
    page.locator("#day").fill(yesterday)
    page.wait_for_function(f"location.search.includes('day={yesterday}')")
    ready(page)
    midnight = dt.datetime.combine(dt.date.fromisoformat(yesterday), dt.time(), ZONE).timestamp()
    assert page.evaluate("window.edgeHarDevice.state.bounds.since") == midnight
    nine = dt.datetime.combine(dt.date.fromisoformat(yesterday), dt.time(9, 30), ZONE).timestamp()
    hover_at(page, "timeline", nine)
    parts = hover_parts(page)
    assert parts["label"] == "Sit" and abs(seconds_of(parts["duration"]) - 3600) <= 120, parts
    page.reload()
    ready(page)
    assert page.locator("#day").input_value() == yesterday
    assert page.get_by_role("radio", name="A day").get_attribute("aria-checked") == "true"
    page.get_by_role("radio", name="Custom").click()
    day_before = (dt.date.fromisoformat(yesterday) - dt.timedelta(days=1)).isoformat()
    page.locator("#from").fill(f"{day_before}T08:30")
    page.locator("#to").fill(f"{day_before}T11:30")
    page.get_by_role("button", name="Show").click()
    page.wait_for_function("location.search.includes('range=custom') && location.search.includes('T08%3A30')")
    ready(page)
    assert (
        page.evaluate("window.edgeHarDevice.state.bounds.until - window.edgeHarDevice.state.bounds.since") == 3 * 3600
    )
    assert "3 h" in page.locator("#range-text").inner_text()

    # per-day stacked bars: each day's stack is the summary API's total, over 7 days and then 30
    for days in (7, 30):
        if days == 30:
            page.get_by_role("radio", name="30 days").click()
            page.wait_for_function("window.edgeHarDevice.state.summary.days.length === 30")
            ready(page)
            assert "days=30" in page.url
        summary = get_json(server.url + page.evaluate("window.edgeHarDevice.state.summaryUrl"))
        assert len(summary["days"]) == days
        stacks = page.evaluate("window.edgeHarDevice.charts.days.data[1]")  # the tallest stack: every label
        assert len(stacks) == days
        for drawn, day in zip(stacks, summary["days"]):
            assert abs(drawn * 3600 - day["total_s"]) < 1e-6 * max(1.0, day["total_s"]), (drawn, day)
        assert abs(sum(stacks) * 3600 - summary["total_s"]) < 1e-3
        # the window ends on the custom range's day: each seeded day in it is two hours, 1,440 windows of 5 s
        shown_days = {day["day"] for day in summary["days"]}
        assert abs(summary["total_s"] - 7200 * len(shown_days & set(marks["days"]))) < 10, summary
    page.get_by_role("radio", name="Last hour").click()
    ready(page)

    # the server goes away: one clear line, the drawn data stays; it comes back by itself after Retry
    segments = page.evaluate("window.edgeHarDevice.state.segments.length")
    assert segments >= 3
    server.stop()
    page.get_by_role("button", name="Retry").click()
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "not answering" in error.inner_text()
    assert page.evaluate("window.edgeHarDevice.state.segments.length") == segments
    assert page.locator("#current").inner_text().startswith("Walk for ")
    screenshot(page, "device-server-down")

    # an unknown device says so
    again = web_server(ServeConfig(db_path=db))
    page.goto(f"{again.url}/device/pi-nowhere")
    error.wait_for(state="visible")
    assert "No device “pi-nowhere”" in error.inner_text()
    assert errors == []  # no script error on the way


def test_the_device_page_fits_a_phone_and_turns_dark(web_server, browser_page, screenshot, tmp_path):
    db = tmp_path / "device.sqlite3"
    store = open_store_url(f"sqlite:///{db}")
    seed(store, time.time())
    store.close()
    server = web_server(ServeConfig(db_path=db))

    phone = browser_page(timezone_id=TZ, viewport={"width": 360, "height": 780}, is_mobile=True)
    phone.goto(f"{server.url}/device/{DEVICE}?range=7d")
    ready(phone)
    assert phone.evaluate("document.scrollingElement.scrollWidth") <= 360
    for chart in ("timeline", "confidence", "days"):
        box = phone.locator(f"#{chart} canvas").first.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 360, (chart, box)
    screenshot(phone, "device-phone")

    # a hand-edited link's nonsense is dropped for the default range, not drawn
    dark = browser_page(timezone_id=TZ, color_scheme="dark")
    errors: list[str] = []
    dark.on("pageerror", lambda exc: errors.append(str(exc)))
    dark.goto(f"{server.url}/device/{DEVICE}?range=custom&from=2026-13-40T99:00&to=%3Cscript%3E&days=-1")
    ready(dark)
    query = urllib.parse.parse_qs(urllib.parse.urlparse(dark.url).query)
    assert query == {"range": ["1h"]}, dark.url
    assert dark.get_by_role("radio", name="Last hour").get_attribute("aria-checked") == "true"
    background = dark.evaluate("getComputedStyle(document.body).backgroundColor")
    red, green, blue = (int(v) for v in background[background.index("(") + 1 : background.index(")")].split(",")[:3])
    assert 0.2126 * red + 0.7152 * green + 0.0722 * blue < 60, background
    screenshot(dark, "device-dark")
    assert errors == []
