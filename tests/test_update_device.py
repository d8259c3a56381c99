"""Updates on the device, on real parts: a real HTTP server for the download, real mosquitto, the real
tiny bundle and the daemon (in a thread, or as a process that is killed).

* the download resumes after a cut (HTTP Range), refuses bytes that do not hash to the announced
  sha256 and a server that wants a password it was not given;
* a running daemon swaps to a new bundle between two windows: ``seq`` goes on without a gap, the
  predictions name the new model from the ``from_seq`` the state topic announced, no window dropped;
* what it must not take is reported ``failed`` with the reason while it keeps running: a signature by
  a key it does not trust, a self-test the model does not reproduce, another input spec, a damaged
  download;
* a bundle with other labels is made current and started by a restart (exit 75);
* a bundle on trial that fails its starts is given up for the one before (``rolled_back``);
* a kill -9 in the middle of a download leaves the old bundle running at the next start, and the
  retained update is taken again, the download resumed; a kill at any step (downloading, verifying,
  testing, active) leaves a device that starts on one whole bundle and ends on the new one;
* the command, the archive and ``state.json`` are outside input: fuzzed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from edge_har.core.bundle_archive import ArchiveError, unpack_bundle
from edge_har.core.self_test import SELF_TEST_FILE
from edge_har.core.signing import generate_key
from edge_har.device.bundle_download import DownloadError, download_archive
from edge_har.device.bundle_slots import BundleSlots
from edge_har.device.daemon import EXIT_RESTART
from edge_har.device.updater import UpdateError, parse_command
from tests.test_daemon import DaemonThread, write_config
from tests.update_helpers import ArchiveServer, archive_of, derived_bundle

REPO = Path(__file__).resolve().parents[1]
PREFIX = "edge-har/pi-test"


@pytest.fixture
def server():
    s = ArchiveServer()
    yield s
    s.close()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("update-keys")
    return {name: generate_key(folder, name) for name in ("release", "other")}


@pytest.fixture(scope="module")
def replay_dir(tmp_path_factory) -> Path:
    from edge_har.convert.synthetic import write_synthetic_imu_dataset
    from tests.plugins.bundle import TINY_CLASSES

    return write_synthetic_imu_dataset(
        tmp_path_factory.mktemp("update-replay") / "data",
        classes=TINY_CLASSES,
        recordings_per_class=1,
        subjects=1,
        seconds=6.0,
        seed=9,
    )


# ====================================================================== the download


def test_a_cut_download_resumes_where_it_broke(tiny_bundle, server, tmp_path):
    command = archive_of(tiny_bundle, tmp_path / "a.tar")
    server.add(command)
    server.cut_after = command["size_bytes"] // 3
    url = f"{server.url}/api/bundles/{command['bundle_id']}/bundle.tar"
    out = download_archive(url, tmp_path / "dl.tar", size=command["size_bytes"], sha256=command["sha256"])
    assert out.read_bytes() == command["path"].read_bytes()
    assert [r["range"] for r in server.requests] == [None, f"bytes={command['size_bytes'] // 3}-"]
    assert not (tmp_path / "dl.tar.part").exists()


def test_a_download_that_does_not_hash_right_is_deleted_and_named(tiny_bundle, server, tmp_path):
    command = archive_of(tiny_bundle, tmp_path / "a.tar")
    server.add(command)
    server.corrupt = True
    url = f"{server.url}/api/bundles/{command['bundle_id']}/bundle.tar"
    with pytest.raises(DownloadError, match="not the announced"):
        download_archive(url, tmp_path / "dl.tar", size=command["size_bytes"], sha256=command["sha256"])
    assert not (tmp_path / "dl.tar").exists() and not (tmp_path / "dl.tar.part").exists()
    server.corrupt, server.password = False, "pw-1"
    with pytest.raises(DownloadError, match="HTTP 401"):
        download_archive(url, tmp_path / "dl.tar", size=command["size_bytes"], sha256=command["sha256"])
    out = download_archive(
        url, tmp_path / "dl.tar", size=command["size_bytes"], sha256=command["sha256"], password="pw-1"
    )
    assert out.stat().st_size == command["size_bytes"]


# ====================================================================== outside input, fuzzed


@settings(max_examples=200, deadline=None)
@given(
    payload=st.binary(max_size=300)
    | st.dictionaries(
        st.sampled_from(["bundle_id", "sha256", "size_bytes", "rollout_id", "x"]),
        st.none() | st.integers() | st.text(max_size=70) | st.floats(),
        max_size=5,
    ).map(lambda d: json.dumps(d).encode())
)
def test_any_update_message_is_a_command_or_refused_in_one_line(payload):
    try:
        command = parse_command(payload)
    except UpdateError as exc:
        assert "\n" not in str(exc)
        return
    assert command is None or (len(command.sha256) == 64 and command.size_bytes > 0)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3000))
def test_any_archive_unpacks_inside_its_folder_or_is_refused(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("unpack")
    archive = folder / "x.tar"
    archive.write_bytes(data)
    try:
        out = unpack_bundle(archive, folder / "out", 10_000)
    except ArchiveError as exc:
        assert str(archive) in str(exc) and not (folder / "out").exists()
        return
    assert all(p.parent == out and p.is_file() for p in out.iterdir())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.text(max_size=200)
    | st.dictionaries(
        st.sampled_from(["current", "previous", "trial_starts", "x"]),
        st.none() | st.integers() | st.text(max_size=20),
        max_size=4,
    ).map(json.dumps)
)
def test_any_state_file_gives_a_start_on_a_whole_bundle(tmp_path_factory, text):
    root = tmp_path_factory.mktemp("slots")
    (root / "state.json").write_text(text)
    plan = BundleSlots(root).begin_start()
    assert plan.bundle is None or (plan.bundle / "bundle.json").is_file()


# ====================================================================== slots


def test_a_bundle_on_trial_gets_its_starts_then_the_one_before_comes_back(tiny_bundle, tmp_path):
    slots = BundleSlots(tmp_path / "slots", max_failed_starts=2)
    derived_bundle(tiny_bundle, slots.path("a"))
    slots.activate("a", started=False)
    assert slots.begin_start().name == "a" and slots.confirm()  # a is good
    derived_bundle(tiny_bundle, slots.path("b"))  # installed, then made current, as the update thread does
    derived_bundle(tiny_bundle, slots.path(".staging-left-over"))
    slots.activate("b", started=False)
    assert sorted(p.name for p in slots.root.iterdir()) == ["a", "b", "state.json"]
    plans = [slots.begin_start() for _ in range(3)]
    assert [(p.name, p.on_trial, p.rolled_back_from) for p in plans] == [
        ("b", True, None),
        ("b", True, None),
        ("a", False, "b"),
    ]
    state = slots.read()
    assert state.current == "a" and state.previous is None and "2 starts" in state.rollback_reason


# ====================================================================== the daemon


def update_config(
    tmp_path: Path, bundle: Path, broker: Any, replay: Path, server_url: str, keys: Any, **extra: Any
) -> Path:
    return write_config(
        tmp_path / "config.yaml",
        bundle,
        broker,
        {"type": "replay", "path": str(replay), "realtime": True, "speed": 8.0, "loop": True},
        update={"server": server_url, "dir": str(tmp_path / "slots"), "confirm_after_windows": 5, **extra},
        trust={"keys": [str(keys["release"][1])], "require_signature": True},
        queues={"windows": 1000},
    )


def publish_update(broker: Any, command: dict[str, Any], device: str = "pi-test") -> None:
    body = {k: command[k] for k in ("bundle_id", "sha256", "size_bytes", "action") if k in command} | {
        "rollout_id": "r1"
    }
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"rollout-{time.monotonic_ns()}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(f"edge-har/{device}/update/set", json.dumps(body), qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def states(listener) -> list[dict]:
    return listener.payloads(f"{PREFIX}/update/state")


def wait_state(listener, state: str, n: int = 1, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [s for s in states(listener) if s["state"] == state]
        if len(found) >= n:
            return found[n - 1]
        time.sleep(0.05)
    raise AssertionError(f"no {state!r} state in time; got {[(s['state'], s.get('reason')) for s in states(listener)]}")


@pytest.fixture
def signed_a(tiny_bundle, keys, tmp_path):
    return derived_bundle(tiny_bundle, tmp_path / "a", key=keys["release"][0])


def test_a_running_daemon_swaps_between_two_windows_and_refuses_what_it_must(
    signed_a, tiny_bundle, keys, server, mosquitto_broker, mqtt_listener, replay_dir, tmp_path
):
    release, other = keys["release"][0], keys["other"][0]
    good = archive_of(
        derived_bundle(tiny_bundle, tmp_path / "b", lambda d: d.update(model_id="tiny-v2"), release), tmp_path / "b.tar"
    )

    def broken_self_test(d: dict) -> None:
        d["model_id"] = "tiny-broken"

    bad_test_dir = derived_bundle(tiny_bundle, tmp_path / "c", broken_self_test)
    with np.load(bad_test_dir / SELF_TEST_FILE) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["p_int8"] = arrays["p_int8"][:, ::-1].copy()
    np.savez(bad_test_dir / SELF_TEST_FILE, **arrays)
    raw = (bad_test_dir / SELF_TEST_FILE).read_bytes()
    import hashlib

    doc = json.loads((bad_test_dir / "bundle.json").read_text())
    doc["self_test"].update(sha256=hashlib.sha256(raw).hexdigest(), size_bytes=len(raw))
    (bad_test_dir / "bundle.json").write_text(json.dumps(doc))
    from edge_har.core.signing import sign_bundle

    sign_bundle(bad_test_dir, release)
    bad_test = archive_of(bad_test_dir, tmp_path / "c.tar")
    foreign = archive_of(
        derived_bundle(tiny_bundle, tmp_path / "d", lambda d: d.update(model_id="tiny-foreign"), other),
        tmp_path / "d.tar",
    )

    def two_channels(d: dict) -> None:
        d["model_id"] = "tiny-xyz"
        d["preprocessing"]["channels"] = ["x", "y", "w"]

    wrong_input = archive_of(derived_bundle(tiny_bundle, tmp_path / "e", two_channels, release), tmp_path / "e.tar")
    for command in (good, bad_test, foreign, wrong_input):
        server.add(command)

    listener = mqtt_listener(mosquitto_broker, [f"{PREFIX}/prediction", f"{PREFIX}/update/state"])
    config = update_config(tmp_path, signed_a, mosquitto_broker, replay_dir, server.url, keys)
    daemon = DaemonThread(config)
    try:
        listener.wait_count(f"{PREFIX}/prediction", 5, timeout=30)
        publish_update(mosquitto_broker, good)
        active = wait_state(listener, "active")
        assert active["model_id"] == "tiny-v2" and active["previous_model_id"] != "tiny-v2" and active["trial"] is True
        assert [s["state"] for s in states(listener)][:4] == ["downloading", "verifying", "testing", "active"]
        confirmed = wait_state(listener, "active", 2)
        assert confirmed["trial"] is False  # after confirm_after_windows predictions on it
        for command, words in (
            (bad_test, "does not compute this model"),
            (foreign, "which this device does not trust"),
            (wrong_input, "takes channels ['x', 'y', 'w']"),
        ):
            publish_update(mosquitto_broker, command)
            failed = wait_state(listener, "failed", [bad_test, foreign, wrong_input].index(command) + 1)
            assert failed["bundle_id"] == command["bundle_id"] and words in failed["reason"], failed
        n = len(listener.payloads(f"{PREFIX}/prediction"))
        listener.wait_count(f"{PREFIX}/prediction", n + 5, timeout=30)  # still running, on the good bundle
        swapped = json.loads((tmp_path / "slots" / "state.json").read_text())
        # a rollout's rollback: back to the bundle before (here the config's), swapped the same way
        publish_update(mosquitto_broker, {"action": "rollback"})
        back = wait_state(listener, "rolled_back")
        n = len(listener.payloads(f"{PREFIX}/prediction"))
        listener.wait_count(f"{PREFIX}/prediction", n + 3, timeout=30)
    finally:
        code = daemon.stop()
    assert code == 0
    preds = listener.payloads(f"{PREFIX}/prediction")
    seqs = [p["seq"] for p in preds]
    assert seqs == list(range(len(preds)))  # no window lost or published twice across the swap
    first_new = next(i for i, p in enumerate(preds) if p["model_id"] == "tiny-v2")
    assert first_new == active["from_seq"]
    assert all(p["model_id"] == "tiny-v2" for p in preds[first_new : back["from_seq"]])
    old = json.loads((signed_a / "bundle.json").read_text())["model_id"]
    assert back["model_id"] == old and {p["model_id"] for p in preds[back["from_seq"] :]} == {old}
    assert daemon.daemon.stats.windows_dropped == 0
    assert swapped["current"].startswith("tiny-v2-") and swapped["trial_starts"] is None and swapped["previous"] is None
    state = json.loads((tmp_path / "slots" / "state.json").read_text())
    assert state["current"] is None and "rollout r1 rolled it back" in state["rollback_reason"]


def test_new_labels_restart_into_the_bundle_and_the_next_start_runs_it(
    signed_a, tiny_bundle, keys, server, mosquitto_broker, mqtt_listener, replay_dir, tmp_path
):
    relabelled = archive_of(
        derived_bundle(
            tiny_bundle,
            tmp_path / "b",
            lambda d: d.update(model_id="tiny-lower", labels=["sit", "walk", "wave"]),
            keys["release"][0],
        ),
        tmp_path / "b.tar",
    )
    server.add(relabelled)
    listener = mqtt_listener(mosquitto_broker, [f"{PREFIX}/prediction", f"{PREFIX}/update/state"])
    config = update_config(tmp_path, signed_a, mosquitto_broker, replay_dir, server.url, keys)
    daemon = DaemonThread(config)
    listener.wait_count(f"{PREFIX}/prediction", 3, timeout=30)
    publish_update(mosquitto_broker, relabelled)
    restarting = wait_state(listener, "restarting")
    assert "its labels differ" in restarting["reason"]
    daemon.thread.join(20)
    assert daemon.code == EXIT_RESTART
    before = len(listener.payloads(f"{PREFIX}/prediction"))
    again = DaemonThread(config)  # what systemd does after exit 75
    try:
        listener.wait_count(f"{PREFIX}/prediction", before + 3, timeout=30)
        wait_state(listener, "active")
    finally:
        assert again.stop() == 0
    late = listener.payloads(f"{PREFIX}/prediction")[before:]
    assert {p["model_id"] for p in late} == {"tiny-lower"} and late[0]["label"] in {"sit", "walk", "wave", "unknown"}


def test_a_bundle_that_keeps_failing_its_starts_is_given_up_for_the_one_before(
    signed_a, tiny_bundle, keys, mosquitto_broker, mqtt_listener, replay_dir, tmp_path
):
    slots = BundleSlots(tmp_path / "slots", max_failed_starts=3)
    derived_bundle(
        tiny_bundle, slots.path("tiny-v2-000000000000"), lambda d: d.update(model_id="tiny-v2"), keys["release"][0]
    )
    slots.activate("tiny-v2-000000000000", started=False)
    state = slots.read()
    state.trial_starts = 3  # three starts that never got to confirm it (crashes)
    slots.write(state)
    listener = mqtt_listener(mosquitto_broker, [f"{PREFIX}/prediction", f"{PREFIX}/update/state"])
    config = update_config(tmp_path, signed_a, mosquitto_broker, replay_dir, "http://127.0.0.1:9", keys)
    daemon = DaemonThread(config)
    try:
        rolled = wait_state(listener, "rolled_back")
        assert "gave up tiny-v2-000000000000" in rolled["reason"] and "3 starts" in rolled["reason"]
        preds = listener.wait_count(f"{PREFIX}/prediction", 3, timeout=30)
    finally:
        assert daemon.stop() == 0
    assert {json.loads(p.payload)["model_id"] for p in preds} == {
        json.loads((signed_a / "bundle.json").read_text())["model_id"]
    }
    assert slots.read().current is None  # back on the config's bundle

    # a bundle on trial that the start checks refuse is given up at once: exit 75, into the one before
    derived_bundle(
        tiny_bundle, slots.path("tiny-bad-000000000000"), lambda d: d.update(model_id="tiny-bad"), keys["other"][0]
    )
    slots.activate("tiny-bad-000000000000", started=False)
    refused = DaemonThread(config)
    refused.thread.join(30)
    assert refused.code == EXIT_RESTART
    assert slots.read().current is None and "does not trust" in slots.read().rollback_reason


def test_a_kill_during_the_download_leaves_the_old_bundle_and_the_next_start_resumes_it(
    signed_a, tiny_bundle, keys, server, mosquitto_broker, mqtt_listener, replay_dir, tmp_path
):
    good = archive_of(
        derived_bundle(tiny_bundle, tmp_path / "b", lambda d: d.update(model_id="tiny-v2"), keys["release"][0]),
        tmp_path / "b.tar",
    )
    server.add(good)
    server.bytes_per_s = good["size_bytes"] / 6.0  # six seconds for the whole archive
    listener = mqtt_listener(mosquitto_broker, [f"{PREFIX}/prediction", f"{PREFIX}/update/state"])
    config = update_config(tmp_path, signed_a, mosquitto_broker, replay_dir, server.url, keys)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_har", "run", "--config", str(config)], cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    try:
        listener.wait_count(f"{PREFIX}/prediction", 3, timeout=60)
        publish_update(mosquitto_broker, good)
        wait_state(listener, "downloading")
        part = tmp_path / "slots" / ".downloads" / f"{good['sha256']}.tar.part"
        deadline = time.monotonic() + 20
        while not (part.exists() and part.stat().st_size > good["size_bytes"] // 4) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    had = part.stat().st_size
    assert 0 < had < good["size_bytes"]
    assert not (tmp_path / "slots" / "state.json").exists()  # nothing changed: the old bundle runs next
    server.bytes_per_s = None
    before = len(listener.payloads(f"{PREFIX}/prediction"))
    again = DaemonThread(config)
    try:
        active = wait_state(listener, "active", timeout=60)
        assert active["model_id"] == "tiny-v2"
    finally:
        again.stop()
    assert server.requests[-1]["range"] == f"bytes={had}-"  # resumed, not started over
    old = json.loads((signed_a / "bundle.json").read_text())["model_id"]
    assert active["previous_model_id"] == old  # the restart ran the old bundle until the swap
    seqs = [p["seq"] for p in listener.payloads(f"{PREFIX}/prediction")[before:]]
    assert seqs == list(range(len(seqs)))


@pytest.mark.slow
@pytest.mark.parametrize("step", ["downloading", "verifying", "testing", "active"])
def test_a_kill_at_any_step_leaves_a_device_that_starts_on_one_whole_bundle(
    step, signed_a, tiny_bundle, keys, server, mosquitto_broker, mqtt_listener, replay_dir, tmp_path
):
    good = archive_of(
        derived_bundle(tiny_bundle, tmp_path / "b", lambda d: d.update(model_id="tiny-v2"), keys["release"][0]),
        tmp_path / "b.tar",
    )
    server.add(good)
    if step == "downloading":
        server.bytes_per_s = good["size_bytes"] / 4.0
    listener = mqtt_listener(mosquitto_broker, [f"{PREFIX}/prediction", f"{PREFIX}/update/state"])
    config = update_config(tmp_path, signed_a, mosquitto_broker, replay_dir, server.url, keys)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_har", "run", "--config", str(config)],
        cwd=REPO,
        stderr=subprocess.DEVNULL,
    )
    try:
        listener.wait_count(f"{PREFIX}/prediction", 3, timeout=60)
        publish_update(mosquitto_broker, good)
        wait_state(listener, step, timeout=60)
        os.kill(proc.pid, signal.SIGKILL)  # as soon as the step is seen: wherever it has got to by now
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    server.bytes_per_s = None
    slots = BundleSlots(tmp_path / "slots")
    state = slots.read()
    assert state.current is None or (slots.path(state.current) / "bundle.json").is_file()
    before = len(listener.payloads(f"{PREFIX}/prediction"))
    again = DaemonThread(config)  # systemd's restart
    try:
        listener.wait_count(f"{PREFIX}/prediction", before + 3, timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and listener.payloads(f"{PREFIX}/prediction")[-1]["model_id"] != "tiny-v2":
            time.sleep(0.1)
    finally:
        assert again.stop() == 0
    late = listener.payloads(f"{PREFIX}/prediction")[before:]
    assert late[-1]["model_id"] == "tiny-v2"  # the update was taken, on the first start or after it
    assert [p["seq"] for p in late] == list(range(len(late)))
