"""Nothing lost across broker or serve restarts: serve's persistent MQTT session, and what is lost counted as gaps.

A real mosquitto with persistence (autosaved every second), a real serve app in uvicorn (or the real
``edge-har serve`` process, where it is killed), SQLite and PostgreSQL. Serve's session has a fixed client
id, so the broker keeps its subscriptions and queues QoS 1 predictions while serve is away (MQTT 5: for
``session_expiry_s``; 3.1.1: ``clean_session=False``); beyond the broker's ``max_queued_messages`` they are
dropped, and the gaps in each run's ``seq`` show it. Serve acknowledges a prediction to the broker only once
it is stored, so a serve killed with predictions in hand gets them again, and a database outage holds the
broker's in-flight window (``unacked``) instead of losing what was read.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

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


@contextlib.contextmanager
def writes_held(db_url: str) -> Iterator[None]:
    """Another client holds the predictions table (SQLite: the whole file) until the block ends: serve's
    writes wait or fail as they would behind a long transaction, with nothing committed."""
    import sqlalchemy as sa

    engine = sa.create_engine(db_url, connect_args={"timeout": 0.1} if db_url.startswith("sqlite") else {})
    conn = engine.connect()
    try:
        if db_url.startswith("sqlite"):
            conn.exec_driver_sql("BEGIN EXCLUSIVE")
        else:
            conn.begin()
            conn.exec_driver_sql("LOCK TABLE predictions IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        if db_url.startswith("sqlite"):
            conn.exec_driver_sql("ROLLBACK")
        else:
            conn.rollback()
        conn.close()
        engine.dispose()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_serve_killed_with_predictions_in_hand_gets_them_again_and_loses_none(
    mosquitto_broker, devices, db_url, tmp_path, protocol
):
    from edge_har.benchmarks.serve_faults import ServeProcess

    args = ["--db-url", db_url, "--protocol", protocol, "--client-id", "serve-killed"]
    serve = ServeProcess(f"{mosquitto_broker.host}:{mosquitto_broker.port}", args, tmp_path)
    try:
        serve.start(60)
        devices.send(TOPIC, prediction("pi-q", 0))
        wait_stored(serve.url, "pi-q", [0])
        with writes_held(db_url):  # the next predictions reach serve and wait for the database
            for seq in range(1, 21):
                devices.send(TOPIC, prediction("pi-q", seq))
            held = wait_until(
                lambda: (lambda s: s if s and s["received"] == 21 else None)(serve.get("/api/ingest")),
                what="serve holding the 20 predictions",
            )
            assert held["stored"] == 1 and held["unacked"] == 20, held
            serve.kill()  # SIGKILL with 20 predictions received, unwritten
        serve.start(60)
        wait_stored(serve.url, "pi-q", list(range(21)), timeout=20)  # re-sent by the broker: none lost
        status = settled(serve.url)
        assert status["gaps"] == 0 and status["stored"] == 20 and status["unacked"] == 0, status
        books_balance(status)
    finally:
        serve.stop()


def test_a_clean_stop_acknowledges_what_it_writes_on_the_way_out(web_server, mosquitto_broker, devices, tmp_path):
    cfg = serve_config(
        mosquitto_broker, f"sqlite:///{tmp_path / 's.sqlite3'}", protocol="5", client_id="serve-stopping"
    )
    server = web_server(cfg)
    ingest = server.app.state.live.ingest
    assert ingest.ready.wait(10)
    ingest.flush_s = 30.0  # the batch waits: what the stop finds in hand is written and acknowledged by it
    for seq in range(10):
        devices.send(TOPIC, prediction("pi-q", seq))
    held = wait_until(lambda: (lambda s: s if s["received"] == 10 else None)(get_json(f"{server.url}/api/ingest")[1]))
    assert held["stored"] == 0 and held["unacked"] == 10 and held["window"] == 2000, held
    server.stop()
    again = web_server(cfg)
    assert again.app.state.live.ingest.ready.wait(10)
    devices.send(TOPIC, prediction("pi-q", 10))
    wait_stored(again.url, "pi-q", list(range(11)))
    status = settled(again.url)
    assert status["received"] == 1 and status["duplicates"] == 0, status  # nothing re-sent: all acknowledged


@pytest.mark.slow  # an 8 s outage held on purpose: CI's slow step runs it
def test_a_database_outage_holds_the_brokers_window_and_ends_within_seconds_of_its_return(
    web_server, mosquitto_broker, devices, postgres_url, monkeypatch
):
    """PostgreSQL refusing connections: serve holds one in-flight window unacknowledged (the broker queues the
    rest), shows it, and writes again within the retry cap (2 s) of the database allowing connections again."""
    import sqlalchemy as sa

    from edge_har.web import ingest as ingest_module
    from edge_har.web.store import metadata

    engine = sa.create_engine(postgres_url)
    metadata.drop_all(engine)
    engine.dispose()
    monkeypatch.setattr(ingest_module, "RECEIVE_MAXIMUM", 10)
    server = web_server(serve_config(mosquitto_broker, postgres_url, protocol="5", client_id="serve-outage"))
    assert server.app.state.live.ingest.ready.wait(10)
    devices.send(TOPIC, prediction("pi-q", 0))
    wait_stored(server.url, "pi-q", [0])
    name = sa.engine.make_url(postgres_url).database
    admin = sa.create_engine(sa.engine.make_url(postgres_url).set(database="postgres"), isolation_level="AUTOCOMMIT")

    def allow(on: bool) -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(on).lower()}')
            if not on:
                conn.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")

    try:
        allow(False)
        for seq in range(1, 31):
            devices.send(TOPIC, prediction("pi-q", seq))
        status = wait_until(
            lambda: (lambda s: s if s["db"]["state"] == "outage" and s["received"] == 11 else None)(
                get_json(f"{server.url}/api/ingest")[1]
            ),
            what="the outage with the window held",
        )
        assert status["unacked"] == 10 and status["queued"] == 10 and status["window"] == 10, status
        wait_until(  # said on the next try (every 2 s at most)
            lambda: "10 messages held unacknowledged" in get_json(f"{server.url}/api/ingest")[1]["last_problem"],
            what="the held window named in last_problem",
        )
        time.sleep(8.0)  # long enough for a backoff doubling past the cap to wait 8 s more
        assert get_json(f"{server.url}/api/ingest")[1]["received"] == 11  # the broker still holds the other 20
    finally:
        allow(True)
        admin.dispose()
    back = time.monotonic()
    wait_stored(server.url, "pi-q", list(range(31)), timeout=20)
    assert time.monotonic() - back < 5.0
    status = settled(server.url)
    assert status["db"]["state"] == "ok" and status["db"]["outages"] == 1 and status["unacked"] == 0, status
    assert status["gaps"] == 0 and status["stored"] == 31
    books_balance(status)
