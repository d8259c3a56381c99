"""Staged rollouts end to end: a real serve (bundle store, ingest, rollout engine), a real mosquitto and
three real daemons replaying recordings, each with an ``update:`` section pointing at that serve.

A good bundle goes to a canary, then the rest: every device ends on the new model with its ``seq``
unbroken. A deliberately bad bundle (its normalisation wrecked, so every window saturates to one class:
it passes its self-test, which feeds the model normalised windows, but says the same class all day)
stops at the canary, which is rolled back, and never reaches the others.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")

from edge_har.core.bundle_archive import pack_bundle  # noqa: E402
from edge_har.core.signing import generate_key  # noqa: E402
from tests.ingest_helpers import get_json, serve_config, wait_until  # noqa: E402
from tests.test_daemon import DaemonThread, write_config  # noqa: E402
from tests.update_helpers import derived_bundle  # noqa: E402

pytestmark = pytest.mark.slow
DEVICES = ("pi-1", "pi-2", "pi-3")


def post(url: str, data: bytes, content_type: str) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def upload(url: str, bundle: Path, tmp_path: Path) -> dict[str, Any]:
    archive = pack_bundle(bundle, tmp_path / f"{bundle.name}.tar")
    code, item = post(f"{url}/api/bundles", archive.read_bytes(), "application/x-tar")
    assert code == 201, item
    return item


def wait_rollout(url: str, rollout_id: str, states: set[str], timeout: float = 120.0) -> dict[str, Any]:
    return wait_until(
        lambda: (lambda r: r if r["state"] in states else None)(get_json(f"{url}/api/rollouts/{rollout_id}")[1]),
        timeout=timeout,
        what=f"rollout {rollout_id} to be {states}",
    )


def test_a_good_bundle_reaches_every_device_and_a_bad_one_stops_at_the_canary(
    tiny_bundle, web_server, mosquitto_broker, mqtt_listener, tmp_path
):
    release, public = generate_key(tmp_path / "keys", "release")
    start = derived_bundle(tiny_bundle, tmp_path / "a", key=release)
    good = derived_bundle(tiny_bundle, tmp_path / "good", lambda d: d.update(model_id="tiny-v2"), release)

    def wrecked(d: dict[str, Any]) -> None:
        d["model_id"] = "tiny-wrecked"
        d["preprocessing"]["normalisation"]["mean"] = [1000.0] * len(d["preprocessing"]["normalisation"]["mean"])

    bad = derived_bundle(tiny_bundle, tmp_path / "bad", wrecked, release)
    server = web_server(
        serve_config(mosquitto_broker, f"sqlite:///{tmp_path / 'serve.sqlite3'}", bundle_store_dir=tmp_path / "store")
    )
    assert server.app.state.live.ingest.ready.wait(10)
    good_item, bad_item = upload(server.url, good, tmp_path), upload(server.url, bad, tmp_path)

    from edge_har.convert.synthetic import write_synthetic_imu_dataset
    from tests.plugins.bundle import TINY_CLASSES

    replay = write_synthetic_imu_dataset(
        tmp_path / "replay", classes=TINY_CLASSES, recordings_per_class=1, subjects=1, seconds=6.0, seed=3
    )
    listener = mqtt_listener(mosquitto_broker, ["edge-har/+/prediction", "edge-har/+/update/state"])
    daemons = []
    for device in DEVICES:
        config = write_config(
            tmp_path / f"{device}.yaml",
            start,
            mosquitto_broker,
            {"type": "replay", "path": str(replay), "realtime": True, "speed": 8.0, "loop": True},
            device_id=device,
            update={"server": server.url, "dir": str(tmp_path / f"slots-{device}"), "confirm_after_windows": 5},
            trust={"keys": [str(public)], "require_signature": True},
        )
        daemons.append(DaemonThread(config))
    try:
        for device in DEVICES:
            listener.wait_count(f"edge-har/{device}/prediction", 20, timeout=60)
        criteria = {"soak_s": 4, "min_predictions": 5, "online_within_s": 60}
        code, rollout = post(
            f"{server.url}/api/rollouts",
            json.dumps(
                {"bundle_id": good_item["id"], "devices": list(DEVICES), "canary": 1, "criteria": criteria}
            ).encode(),
            "application/json",
        )
        assert code == 201 and [s["devices"] for s in rollout["stages"]] == [["pi-1"], ["pi-2", "pi-3"]], rollout
        done = wait_rollout(server.url, rollout["id"], {"done", "failed"})
        assert done["state"] == "done", (
            done["reason"],
            server.app.state.rollouts.device_states,
            server.app.state.rollouts._client,
        )
        assert all(p["state"] == "passed" for p in done["devices"].values()), done["devices"]
        canary_passed = done["stages"][0]["ended_at"]
        assert canary_passed <= done["stages"][1]["started_at"]  # the rest waited for the canary
        fleet = {d["device_id"]: d for d in get_json(f"{server.url}/api/fleet")[1]["devices"]}
        assert {fleet[d]["model_id"] for d in DEVICES} == {"tiny-v2"}

        code, bad_rollout = post(
            f"{server.url}/api/rollouts",
            json.dumps(
                {"bundle_id": bad_item["id"], "devices": list(DEVICES), "canary": "33%", "criteria": criteria}
            ).encode(),
            "application/json",
        )
        assert code == 201 and bad_rollout["stages"][0]["devices"] == ["pi-1"]
        failed = wait_rollout(server.url, bad_rollout["id"], {"done", "failed"})
        assert failed["state"] == "failed" and "pi-1: degenerate" in failed["reason"], failed
        back = wait_until(
            lambda: [s for s in listener.payloads("edge-har/pi-1/update/state") if s["state"] == "rolled_back"],
            timeout=30,
            what="pi-1 rolled back",
        )
        assert back[-1]["model_id"] == "tiny-v2"
        n = len(listener.payloads("edge-har/pi-1/prediction"))
        listener.wait_count("edge-har/pi-1/prediction", n + 5, timeout=30)
    finally:
        codes = [d.stop() for d in daemons]
    assert codes == [0, 0, 0]
    for device in DEVICES:
        preds = listener.payloads(f"edge-har/{device}/prediction")
        assert [p["seq"] for p in preds] == list(range(len(preds))), device  # nothing lost across the swaps
        models = [p["model_id"] for p in preds]
        if device == "pi-1":
            assert "tiny-wrecked" in models and models[-1] == "tiny-v2"
        else:
            assert "tiny-wrecked" not in models and models[-1] == "tiny-v2"
