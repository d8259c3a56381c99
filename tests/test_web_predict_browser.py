"""The Predict page in a real headless Chromium against a real ``edge-har serve`` app and the tiny bundle.

A person's path: open the page, pick a recording with the file input (and drop one on the zone),
see the label most windows get from the device's runtime with how many windows say it, one bar per
class, the latency, a timeline with one cell per window and a table of segments (runs of one label)
in the label colours the timeline uses; an unusable file shows the server's one-line reason. Screenshots go to the
test's output folder (``<tmp_path>/screenshots``); README's docs/img/web-predict.png is one of them.
"""

from __future__ import annotations

import base64
import itertools
from collections import Counter

import pytest

from edge_har.core.recordings import read_samples
from edge_har.device.runtime import Runtime
from edge_har.web.config import ServeConfig
from tests.plugins.bundle import TINY_LABELS

pytestmark = pytest.mark.slow  # Chromium's start and two uploads: ~10-15 s on 2 cores


def device_labels(bundle, path) -> list[str]:
    """Each window's label from the device's runtime (no smoothing), for the file the browser uploads."""
    return [p.raw_label for p in Runtime.load(bundle, "int8", smoothing_window=1).run_samples(read_samples(path))]


def expected_majority(bundle, path) -> tuple[str, int]:
    labels = device_labels(bundle, path)
    return Counter(labels).most_common(1)[0][0], len(labels)


def test_upload_and_drop_show_the_label_bars_timeline_and_segments(
    web_server, browser_page, screenshot, tiny_bundle, tiny_dataset_dir, tmp_path
):
    server = web_server(ServeConfig(bundles=(tiny_bundle,)))
    page = browser_page()
    page.goto(server.url + "/")
    page.wait_for_function("document.querySelector('#accepts').textContent.includes('.csv')")
    assert page.locator("nav.top a.active").inner_text() == "Predict"
    assert page.locator("nav.top a[href='/live']").count() == 1

    # A "day" of three activities in one file: walk, sit, walk, wave (HMP-style x y z codes).
    day = tmp_path / "walk-sit-walk-wave.txt"
    parts = [
        sorted((tiny_dataset_dir / c).glob("*.txt"))[i] for c, i in (("Walk", 0), ("Sit", 0), ("Walk", 1), ("Wave", 0))
    ]
    day.write_text("".join(p.read_text() for p in parts))
    windows = device_labels(tiny_bundle, day)
    label, n_windows = Counter(windows).most_common(1)[0][0], len(windows)
    assert set(windows) == set(TINY_LABELS)  # the timeline shows all three
    page.set_input_files("#file", str(day))
    page.wait_for_selector("#result:not([hidden])")
    assert page.inner_text("#label") == label == "Walk"
    majority_windows = Counter(windows)[label]
    assert page.inner_text("#majority") == f"— {majority_windows} of {n_windows} windows"
    assert page.inner_text("#confidence").startswith(f"mean confidence of those {majority_windows} windows ")
    assert "ms" in page.inner_text("#latency")
    bars = page.locator("#bars .bar")
    assert bars.count() == len(TINY_LABELS)
    assert [bars.nth(i).get_attribute("data-label") for i in range(bars.count())] == TINY_LABELS
    assert page.locator("#bars .bar.top").get_attribute("data-label") == label
    # Rendered bar lengths (not just the style): each bar's share of its track is the class's probability.
    shares = bars.evaluate_all(
        "rows => rows.map(r => r.querySelector('.fill').getBoundingClientRect().width"
        " / r.querySelector('.track').getBoundingClientRect().width)"
    )
    shown = [float(bars.nth(i).locator(".value").inner_text().rstrip(" %")) / 100 for i in range(3)]
    assert shares == pytest.approx(shown, abs=0.01) and sum(shown) == pytest.approx(1.0, abs=0.01)
    assert max(shares) == shares[TINY_LABELS.index(label)] > 0.3
    cells = page.locator("#timeline > span")
    assert cells.count() == n_windows
    assert cells.evaluate_all("cs => cs.map(c => c.dataset.label)") == windows
    colours = cells.evaluate_all("cs => cs.map(c => getComputedStyle(c).backgroundColor)")
    assert len(set(colours)) == 3 and all(
        c1 == c2 for c1, c2, a, b in zip(colours, colours[1:], windows, windows[1:]) if a == b
    )
    assert all(c.evaluate("e => e.getBoundingClientRect().width") > 0 for c in (cells.first, cells.last))
    assert f"of {n_windows} windows" in page.inner_text("#summary")
    # The segments: the runs of one label the timeline shows, in order, in the timeline's colours.
    runs = [(name, len(list(group))) for name, group in itertools.groupby(windows)]
    rows = page.locator("#segments tbody tr")
    assert rows.count() == len(runs) >= 4
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.label)") == [name for name, _ in runs]
    assert [int(t) for t in page.locator("#segments td.windows").all_inner_texts()] == [k for _, k in runs]
    starts = page.locator("#segments td.start").all_inner_texts()
    ends = page.locator("#segments td.end").all_inner_texts()
    assert starts[0] == "0.0 s" and starts[1:] == ends[:-1]
    swatches = page.locator("#segments .swatch").evaluate_all("ss => ss.map(s => getComputedStyle(s).backgroundColor)")
    by_label = dict(zip(windows, colours))
    assert swatches == [by_label[name] for name, _ in runs]
    shot = screenshot(page, "web-predict")
    assert shot.stat().st_size > 10_000

    # A synthetic drop of another class's recording on the drop zone: the page uploads it as well.
    sit = sorted((tiny_dataset_dir / "Sit").glob("*.txt"))[0]
    sit_label, sit_windows = expected_majority(tiny_bundle, sit)
    page.evaluate(
        """([name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, {type: "text/plain"}));
            const zone = document.getElementById("drop");
            zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: dt, bubbles: true, cancelable: true}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
        }""",
        [sit.name, base64.b64encode(sit.read_bytes()).decode()],
    )
    page.wait_for_function(f"document.querySelector('#source').textContent.startsWith({sit.name!r})")
    assert page.inner_text("#label") == sit_label == "Sit"
    assert page.locator("#timeline > span").count() == sit_windows
    screenshot(page, "web-predict-drop")

    # A file the bundle does not take: the server's one line, shown on the page; the result is hidden.
    page.set_input_files("#file", files=[{"name": "photo.png", "mimeType": "image/png", "buffer": b"\x89PNG"}])
    page.wait_for_selector("#error:not([hidden])")
    error = page.inner_text("#error")
    assert error.startswith("415:") and "photo.png" in error and "sensor bundle" in error
    assert page.locator("#result").is_hidden()
    screenshot(page, "web-predict-error")


def test_the_browser_asks_for_the_password_and_uses_it(
    web_server, browser_page, screenshot, tiny_bundle, tiny_dataset_dir
):
    """Behind --password-file the page loads with basic-auth credentials, and every fetch it makes carries them.

    The browser is a 360-pixel phone in dark mode: the result fits without sideways scrolling (the
    segment table scrolls inside its box) and the page is dark.
    """
    server = web_server(ServeConfig(bundles=(tiny_bundle,), password="pw-for-browser"))
    denied = browser_page()
    assert denied.request.get(server.url + "/").status == 401
    assert denied.request.get(server.url + "/static/predict.js").status == 401
    page = browser_page(
        http_credentials={"username": "me", "password": "pw-for-browser"},
        viewport={"width": 360, "height": 740},
        color_scheme="dark",
    )
    page.goto(server.url + "/")
    page.wait_for_function("document.querySelector('#accepts').textContent.includes('.csv')")
    page.set_input_files("#file", str(sorted((tiny_dataset_dir / "Wave").glob("*.txt"))[0]))
    page.wait_for_selector("#result:not([hidden])")
    assert page.locator("#bars .bar").count() == len(TINY_LABELS)
    assert page.locator("#segments tbody tr").count() >= 1
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 360
    background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    assert max(int(v) for v in background[background.index("(") + 1 : -1].split(",")[:3]) < 60
    screenshot(page, "web-predict-phone-dark")
