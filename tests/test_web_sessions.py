"""Nothing lost across broker or serve restarts: serve's persistent MQTT session, and what is lost counted as gaps.

A real mosquitto with persistence (autosaved every second), a real serve app in uvicorn, SQLite and
PostgreSQL. Serve's session has a fixed client id, so the broker keeps its subscriptions and queues QoS 1
predictions while serve is away (MQTT 5: for ``session_expiry_s``; 3.1.1: ``clean_session=False``);
beyond the broker's ``max_queued_messages`` they are dropped, and the gaps in each run's ``seq`` show it.
"""

from __future__ import annotations

import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")

from edge_har.web.ingest import default_client_id  # noqa: E402
from tests.ingest_helpers import (  # noqa: E402
    Devices,
    books_balance,
    get_json,
    prediction,
    serve_config,
    settled,
    stored_seqs,
    wait_stored,
    wait_until,
)

pytest_plugins = ["tests.plugins.db"]

TOPIC = "edge-har/pi-q/prediction"


@pytest.fixture
def devices(mosquitto_broker):
    d = Devices(mosquitto_broker)
    yield d
    d.close()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_broker_killed_and_restarted_loses_nothing_published_while_serve_was_away(
    web_server, mosquitto_broker, tmp_path, protocol
):
    # serve waits 3 s before reconnecting: everything below is published while it is away
    cfg = serve_config(
        mosquitto_broker,
        f"sqlite:///{tmp_path / 'b.sqlite3'}",
        protocol=protocol,
        reconnect_min_s=3.0,
        reconnect_max_s=3.0,
    )
    server = web_server(cfg)
    ingest = server.app.state.live.ingest
    assert ingest.ready.wait(10)
    first = Devices(mosquitto_broker, "test-devices-first")
    first.send(TOPIC, prediction("pi-q", 0))
    wait_stored(server.url, "pi-q", [0])
    first.client.loop_stop()
    mosquitto_broker.wait_autosaved(time.time())  # serve's session (its subscriptions) is on disk
    mosquitto_broker.kill()
    mosquitto_broker.start()
    again = Devices(mosquitto_broker, "test-devices-again")
    try:
        for seq in range(1, 21):
            again.send(TOPIC, prediction("pi-q", seq))
        assert not ingest.counters.connected, "serve reconnected before the predictions were published"
        wait_stored(server.url, "pi-q", list(range(21)), timeout=20)
    finally:
        again.close()
    status = settled(server.url)
    assert status["gaps"] == 0 and status["rejected"] == {} and status["connected"]
    books_balance(status)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_serve_restarted_with_the_same_client_id_gets_what_was_published_meanwhile(
    web_server, mosquitto_broker, devices, db_url, protocol
):
    cfg = serve_config(mosquitto_broker, db_url, protocol=protocol, client_id="serve-under-test")
    server = web_server(cfg)
    assert server.app.state.live.ingest.ready.wait(10)
    devices.send(TOPIC, prediction("pi-q", 0))
    wait_stored(server.url, "pi-q", [0])
    server.stop()
    for seq in range(1, 31):  # serve is away
        devices.send(TOPIC, prediction("pi-q", seq))
    again = web_server(cfg)
    wait_stored(again.url, "pi-q", list(range(31)))
    status = settled(again.url)
    assert status["stored"] == 30 and status["gaps"] == 0 and status["client_id"] == "serve-under-test"
    books_balance(status)


def test_an_expired_session_keeps_nothing_and_the_loss_shows_as_gaps(web_server, mosquitto_broker, devices, tmp_path):
    cfg = serve_config(
        mosquitto_broker,
        f"sqlite:///{tmp_path / 'e.sqlite3'}",
        protocol="5",
        client_id="serve-brief",
        session_expiry_s=1,
    )
    server = web_server(cfg)
    assert server.app.state.live.ingest.ready.wait(10)
    devices.send(TOPIC, prediction("pi-q", 0))
    wait_stored(server.url, "pi-q", [0])
    server.stop()
    time.sleep(2.5)  # the broker drops the session a second after serve left
    for seq in range(1, 6):
        devices.send(TOPIC, prediction("pi-q", seq))
    again = web_server(cfg)
    assert again.app.state.live.ingest.ready.wait(10)
    devices.send(TOPIC, prediction("pi-q", 6))
    wait_stored(again.url, "pi-q", [0, 6])
    assert settled(again.url)["gaps"] == 5


def test_a_burst_beyond_the_brokers_queue_for_serve_shows_up_as_gaps(web_server, mosquitto_factory, db_url):
    broker = mosquitto_factory(extra_conf="max_queued_messages 10")
    devices = Devices(broker)
    try:
        cfg = serve_config(broker, db_url, client_id="serve-burst")
        server = web_server(cfg)
        assert server.app.state.live.ingest.ready.wait(10)
        devices.send(TOPIC, prediction("pi-q", 0))
        wait_stored(server.url, "pi-q", [0])
        server.stop()
        for seq in range(1, 101):  # a burst while serve is away: the broker queues 10 of them for serve
            devices.send(TOPIC, prediction("pi-q", seq))
        again = web_server(cfg)
        assert again.app.state.live.ingest.ready.wait(10)
        devices.send(TOPIC, prediction("pi-q", 101))
        wait_until(lambda: 101 in stored_seqs(again.url, "pi-q"), what="the prediction after the burst")
        status = settled(again.url)
        kept = stored_seqs(again.url, "pi-q")
        assert 10 <= len(kept) < 60, kept  # seq 0, what the broker queued, seq 101
        assert status["gaps"] == 102 - len(kept)  # published == stored + rejected (0) + gaps
        books_balance(status)
        code, body = get_json(f"{again.url}/api/devices")
        assert code == 200 and body["devices"][0]["gaps"] == status["gaps"]
        again.stop()
        third = web_server(cfg)  # the books survive a restart: they are in the store
        assert settled(third.url)["gaps"] == 102 - len(kept)
        assert get_json(f"{third.url}/api/devices")[1]["devices"][0]["gaps"] == 102 - len(kept)
    finally:
        devices.close()


def test_gaps_filled_by_a_late_arrival_are_taken_back_off(web_server, mosquitto_broker, devices, db_url):
    server = web_server(serve_config(mosquitto_broker, db_url))
    assert server.app.state.live.ingest.ready.wait(10)
    for seq in (0, 1, 5):
        devices.send(TOPIC, prediction("pi-q", seq))
    wait_stored(server.url, "pi-q", [0, 1, 5])
    assert settled(server.url)["gaps"] == 3
    devices.send(TOPIC, prediction("pi-q", 3))
    devices.send(TOPIC, prediction("pi-q", 3))  # a re-delivery fills nothing twice
    devices.send(TOPIC, prediction("pi-q", 9, run_id="run000000002"))  # a new run starts its own book
    devices.send(TOPIC, {**prediction("pi-q", 2), "confidence": 7})  # refused, but it arrived: not a gap
    wait_stored(server.url, "pi-q", [0, 1, 3, 5, 9])
    status = settled(server.url)
    assert status["gaps"] == 1 and status["duplicates"] == 1 and status["rejected"] == {"bad_field": 1}
    assert get_json(f"{server.url}/api/devices")[1]["devices"][0]["gaps"] == 1
    books_balance(status)


def test_serve_options_for_the_session(tmp_path, capsys):
    from edge_har.cli import build_parser, main
    from edge_har.web.serve_cli import build_serve_config

    base = ["serve", "--db-path", str(tmp_path / "w.sqlite3"), "--broker", "127.0.0.1"]
    cfg = build_serve_config(
        build_parser("serve").parse_args([*base, "--client-id", "serve-a", "--session-expiry", "60"])
    )
    assert (cfg.client_id, cfg.session_expiry_s, cfg.mqtt.protocol) == ("serve-a", 60, "5")
    cfg = build_serve_config(build_parser("serve").parse_args([*base, "--protocol", "3.1.1"]))
    assert (cfg.client_id, cfg.session_expiry_s, cfg.mqtt.protocol) == (None, 86400, "3.1.1")
    assert default_client_id("edge-har") == default_client_id("edge-har") != default_client_id("lab/fleet")
    assert default_client_id("lab/fleet").startswith("edge-har-serve-") and "/" not in default_client_id("lab/fleet")
    for bad in ("-1", "2592001", "1.5", "forever"):
        with pytest.raises(SystemExit) as exc:
            main([*base, "--session-expiry", bad])
        assert exc.value.code == 2 and "--session-expiry" in capsys.readouterr().err
    assert main([*base, "--client-id", " "]) == 2
    assert "--client-id" in capsys.readouterr().err


def test_a_second_serve_with_the_same_client_id_is_named_as_the_problem(web_server, mosquitto_broker, tmp_path):
    cfg = serve_config(mosquitto_broker, f"sqlite:///{tmp_path / 't.sqlite3'}", protocol="5", client_id="serve-twin")
    first = web_server(cfg)
    assert first.app.state.live.ingest.ready.wait(10)
    web_server(
        serve_config(mosquitto_broker, f"sqlite:///{tmp_path / 'u.sqlite3'}", protocol="5", client_id="serve-twin")
    )
    shown = wait_until(
        lambda: get_json(f"{first.url}/api/ingest")[1]["last_problem"],
        what="the takeover shown",
    )
    assert "took the session over" in shown and "--client-id" in shown
