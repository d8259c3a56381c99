"""The explanation band in a real headless Chromium: the Predict page (click a window) and the Label page (Explain).

Predict: upload a recording of the tiny data set, click a window of the timeline; the page sends the
File it kept to POST /api/explain and draws, per channel, the signal over a heat band on a <canvas>,
with the explained label, a legend of the colours and the cost line ("occlusion: N model calls, X ms").
It is drawn in the light and the dark scheme. Label: a session pushed through the files API with one
label segment; selecting the segment and pressing Explain draws the band of the window at its centre.
Screenshots go to the test's tmp_path/screenshots/.
"""

from __future__ import annotations

import json
import re
import urllib.request

import numpy as np
import pytest

from edge_har.core.recording_layout import RecordingMeta
from edge_har.core.recordings import read_samples
from edge_har.web.config import ServeConfig

pytestmark = pytest.mark.slow  # Chromium's start: ~5-10 s on 2 cores

COST = re.compile(r"^occlusion: (\d+) model calls, (\d+\.\d) ms")
# Distinct colours in the canvas' band rows and whether the line is drawn: what a drawn band looks like.
CANVAS_STATS = """c => {
    const g = c.getContext('2d');
    const d = g.getImageData(0, 0, c.width, c.height).data;
    const seen = new Set();
    let opaque = 0;
    for (let i = 0; i < d.length; i += 4) { if (d[i + 3] > 0) { opaque++; seen.add(d[i] + ',' + d[i + 1] + ',' + d[i + 2]); } }
    return {opaque, colours: seen.size, width: c.width, height: c.height};
}"""


def _check_band(page, recording) -> None:
    canvas = page.locator("#explain canvas.explain-canvas")
    stats = canvas.evaluate(CANVAS_STATS)
    assert stats["width"] > 200 and stats["height"] > 100, stats
    assert stats["opaque"] > 0.2 * stats["width"] * stats["height"] and stats["colours"] > 10, stats
    cost = page.locator("#explain .explain-cost").inner_text()
    match = COST.match(cost)
    assert match and int(match.group(1)) > 3 * 16, cost
    assert "supports" in page.inner_text("#explain .explain-legend")
    assert "against" in page.inner_text("#explain .explain-legend")


def test_clicking_a_window_draws_its_explanation(web_server, browser_page, screenshot, tiny_bundle, tiny_dataset_dir):
    server = web_server(ServeConfig(bundles=(tiny_bundle,)))
    recording = sorted((tiny_dataset_dir / "Walk").glob("*.txt"))[0]
    for scheme in ("light", "dark"):
        page = browser_page(color_scheme=scheme)
        page.goto(server.url + "/")
        page.wait_for_function("document.querySelector('#accepts').textContent.includes('.csv')")
        page.set_input_files("#file", str(recording))
        page.wait_for_selector("#result:not([hidden])")
        assert page.locator("#explain-hint").is_visible()
        cells = page.locator("#timeline > span")
        assert cells.count() > 3
        cells.nth(2).click()
        page.wait_for_selector("#explain canvas.explain-canvas[data-drawn]")
        assert "picked" in (cells.nth(2).get_attribute("class") or "")
        head = page.inner_text("#explain .explain-head")
        assert head.startswith(f"Window 3 of {cells.count()}") and "why " in head and "%" in head
        _check_band(page, recording)
        screenshot(page, f"web-predict-explain-{scheme}")
        # another window replaces it; a new upload clears it
        cells.nth(0).click()
        page.wait_for_function(
            "document.querySelector('#explain .explain-head strong')?.textContent.startsWith('Window 1 ')"
        )
        page.set_input_files("#file", str(recording))
        page.wait_for_selector("#result:not([hidden])")
        assert page.locator("#explain").is_hidden()


def test_the_label_page_explains_the_selected_segment(
    web_server, browser_page, screenshot, tiny_bundle, tiny_dataset_dir, tmp_path
):
    server = web_server(ServeConfig(bundles=(tiny_bundle,), recordings_dir=tmp_path / "recordings"))
    codes = read_samples(sorted((tiny_dataset_dir / "Walk").glob("*.txt"))[0])
    rate, t0 = 32.0, 1_800_000_000.0
    meta = RecordingMeta(
        device_id="pi-den",
        session_id="s1",
        started=t0,
        channels=["ax", "ay", "az"],
        sample_rate_hz=rate,
        scale=[3 / 63],
        offset=[-1.5],
        source="replay",
    )
    t = t0 + np.arange(len(codes)) / rate
    part = "t,ax,ay,az\n" + "".join(f"{ti:.6f}," + ",".join(f"{v:g}" for v in row) + "\n" for ti, row in zip(t, codes))
    labels = f"label,start,end\nwalk,{t0 + 1:.6f},{t0 + 6:.6f}\n"
    base = f"{server.url}/api/recordings/pi-den/s1/files"
    for name, body, method in (
        ("recording.json?offset=0", json.dumps(meta.to_json()), "POST"),
        ("part-00000.csv?offset=0", part, "POST"),
        ("labels.csv", labels, "PUT"),
    ):
        request = urllib.request.Request(f"{base}/{name}", data=body.encode(), method=method)
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200
    page = browser_page()
    page.goto(server.url + "/label/pi-den/s1")
    page.wait_for_function("window.edgeHarLabel && window.edgeHarLabel.state.loaded")
    assert page.locator("#explain-segment").is_disabled()
    page.locator("#lane .rec-seg").first.click()
    page.wait_for_function("window.edgeHarLabel.state.selected === 0")
    page.click("#explain-segment")
    page.wait_for_selector("#explain canvas.explain-canvas[data-drawn]")
    assert page.inner_text("#explain .explain-head").startswith("walk segment, model window ")
    _check_band(page, None)
    screenshot(page, "web-label-explain")
