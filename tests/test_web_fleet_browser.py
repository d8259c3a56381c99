"""The Fleet page (/fleet) in a real headless Chromium, against a real uvicorn, mosquitto and SQLite.

Two devices publish predictions (and one a failed update's state), so the store knows them: the devices
table lists both with the model they run, and the failed update with its reason in words. A bundle packed
by ``pack_bundle`` is uploaded through the page's file input and appears in the bundles list (a file that
is no tar shows the server's one-line refusal instead). A rollout started from the form (one device,
canary 1) appears running with its stage and the device's step; a canary the server refuses shows its
``detail``; "Stop and roll back" turns it stopped. On a 390 px dark phone the page does not scroll
sideways. Screenshots: ``<tmp_path>/screenshots/fleet.png`` and ``fleet-phone-dark.png``.
"""

from __future__ import annotations

import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("playwright")

from edge_har.core.bundle_archive import pack_bundle  # noqa: E402
from tests.ingest_helpers import Devices, get_json, prediction, serve_config, stats, wait_until  # noqa: E402

pytestmark = pytest.mark.slow

DEVICES = ("pi-hall", "pi-kitchen")
FAILED_REASON = "self-test failed: 3 of 12 windows differ from bundle.json's expected labels"


def row(page, table: str, key: str, value: str):
    return page.locator(f'{table} tr[data-{key}="{value}"]')


def test_the_fleet_page_uploads_a_bundle_starts_and_stops_a_rollout(
    web_server, browser_page, screenshot, mosquitto_broker, tiny_bundle, tmp_path
):
    cfg = serve_config(mosquitto_broker, f"sqlite:///{tmp_path / 'fleet.sqlite3'}", bundle_store_dir=tmp_path / "store")
    server = web_server(cfg)
    assert server.app.state.live.ingest.ready.wait(10)
    devices = Devices(mosquitto_broker, "fleet-browser-devices")
    try:
        for device in DEVICES:
            devices.send(f"edge-har/{device}/status", "online", retain=True)
            devices.send(f"edge-har/{device}/stats", stats(device))
            for seq in range(5):
                devices.send(f"edge-har/{device}/prediction", prediction(device, seq))
        failed = {"state": "failed", "reason": FAILED_REASON, "model_id": "tiny-model-v2", "ts": time.time()}
        devices.send("edge-har/pi-kitchen/update/state", failed, retain=True)

        def fleet_known():
            body = get_json(f"{server.url}/api/fleet")[1]
            by_id = {d["device_id"]: d for d in body["devices"]}
            return (
                set(by_id) == set(DEVICES)
                and all(d["model_id"] == "tiny-model" for d in by_id.values())
                and (by_id["pi-kitchen"]["update"] or {}).get("state") == "failed"
            )

        wait_until(fleet_known, what="both devices and pi-kitchen's failed update in /api/fleet")

        page = browser_page()
        page.goto(server.url + "/fleet")
        assert page.locator("nav.top a.active").inner_text() == "Fleet"
        wait_until(lambda: page.evaluate("window.edgeHarFleet.state.refreshes") >= 1, what="the first refresh")

        # the devices table: both devices with the model they run; the failed update with its reason
        for device in DEVICES:
            tr = row(page, "#devices", "device", device)
            wait_until(lambda tr=tr: tr.count() == 1, what=f"{device} listed")
            assert tr.locator("td.model").inner_text() == "tiny-model"
            assert "online" in tr.inner_text()
            assert "ago" in tr.locator("td.seen").inner_text() or tr.locator("td.seen").inner_text() == "just now"
        kitchen = row(page, "#devices", "device", "pi-kitchen").locator("td.update").inner_text()
        assert "failed" in kitchen and FAILED_REASON in kitchen and "tiny-model-v2" in kitchen
        assert "no update yet" in row(page, "#devices", "device", "pi-hall").locator("td.update").inner_text()
        assert page.locator("#devices-count").inner_text() == "2 devices"

        # a file that is no tar: the server's one line, and nothing stored
        junk = tmp_path / "notes.tar"
        junk.write_bytes(b"this is not a tar archive\n" * 40)
        page.set_input_files("#bundle-file", str(junk))
        page.click("#upload-button")
        status = page.locator("#upload-status")
        wait_until(lambda: "refused" in status.inner_text(), what="the refusal shown")
        assert "error" in (status.get_attribute("class") or "") and "\n" not in status.inner_text().strip()
        assert get_json(f"{server.url}/api/bundles")[1]["bundles"] == []

        # upload a real bundle through the file input
        archive = pack_bundle(tiny_bundle, tmp_path / "b.tar")
        page.set_input_files("#bundle-file", str(archive))
        page.click("#upload-button")
        wait_until(lambda: status.inner_text().startswith("Stored"), what="the upload stored")
        (item,) = get_json(f"{server.url}/api/bundles")[1]["bundles"]
        assert item["id"] in status.inner_text() and "unsigned" in status.inner_text()
        bundle_row = row(page, "#bundles", "bundle", item["id"])
        wait_until(lambda: bundle_row.count() == 1, what="the bundle listed")
        assert bundle_row.locator("td.id").inner_text() == item["id"]
        assert item["model_id"] in bundle_row.inner_text() and "unsigned" in bundle_row.inner_text()
        assert page.locator("#rollout-bundle").input_value() == item["id"]

        # a canary the server refuses: its detail, no rollout
        page.fill("#target", "pi-hall")
        page.fill("#canary", "half")
        page.click("#start-rollout")
        rollout_status = page.locator("#rollout-status")
        wait_until(lambda: "canary" in rollout_status.inner_text(), what="the refusal shown")
        assert rollout_status.inner_text().startswith("Not started:")
        assert get_json(f"{server.url}/api/rollouts")[1]["rollouts"] == []

        # start a rollout to one device, canary 1
        page.fill("#canary", "1")
        page.click("#start-rollout")
        wait_until(lambda: rollout_status.inner_text().startswith("Started"), what="the rollout started")
        (rollout,) = get_json(f"{server.url}/api/rollouts")[1]["rollouts"]
        section = page.locator(f'section.rollout[data-rollout="{rollout["id"]}"]')
        assert section.get_attribute("data-state") == "running"
        assert section.locator(".rollout-state").inner_text() == "running"
        assert item["model_id"] in section.locator(".model").inner_text()
        assert item["id"] in section.locator(".bundle").inner_text()
        stage = section.locator('.stage[data-stage="0"]')
        wait_until(lambda: stage.get_attribute("data-state") == "running", what="the stage running")
        assert "Stage 1 of 1" in stage.inner_text() and "0/1 passed" in stage.inner_text()
        device = section.locator('tr[data-device="pi-hall"]')
        wait_until(lambda: device.get_attribute("data-state") == "sent", what="the update sent to pi-hall")
        assert "update sent" in device.inner_text()
        screenshot(page, "fleet")

        # stop it and roll back
        page.once("dialog", lambda dialog: dialog.accept())
        section.locator("button.stop").click()
        wait_until(lambda: section.get_attribute("data-state") == "stopped", what="the rollout stopped")
        assert section.locator(".rollout-state").inner_text() == "stopped"
        assert "stopped by a user" in section.inner_text()
        assert section.locator("button.stop").count() == 0
        assert get_json(f"{server.url}/api/rollouts/{rollout['id']}")[1]["state"] == "stopped"
        wait_until(lambda: stage.get_attribute("data-state") == "stopped", what="the stage stopped")

        # a phone in dark mode: nothing scrolls sideways
        phone = browser_page(viewport={"width": 390, "height": 844}, color_scheme="dark")
        phone.goto(server.url + "/fleet")
        wait_until(lambda: phone.locator("section.rollout").count() == 1, what="the phone page loaded")
        wait_until(lambda: row(phone, "#devices", "device", "pi-kitchen").count() == 1, what="the phone's devices")
        assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert phone.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
        screenshot(phone, "fleet-phone-dark")
    finally:
        devices.close()
