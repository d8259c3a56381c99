"""Several ingest processes on one MQTT shared subscription into one PostgreSQL (``--ingest-processes``).

Real parts: mosquitto on a free port (persistence on), a fresh PostgreSQL database, worker processes
spawned by the web process's :class:`~edge_har.web.ingest.Ingest`. What is checked: every prediction is
stored exactly once and the web process's books add up every process's; retained status reaches the web
process (a shared subscription gets none); a worker killed with messages in hand is brought back and
loses nothing; several processes on SQLite are refused in one line.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import Any

import pytest

pytest.importorskip("sqlalchemy")

import sqlalchemy as sa  # noqa: E402

from edge_har.cli import main  # noqa: E402
from edge_har.web.ingest import Hub, Ingest  # noqa: E402
from edge_har.web.store import metadata, open_store_url  # noqa: E402
from tests.ingest_helpers import Devices, prediction, serve_config, wait_until  # noqa: E402

pytest_plugins = ["tests.plugins.db", "tests.plugins.broker"]


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    engine = sa.create_engine(postgres_url)
    metadata.drop_all(engine)  # ingest_workers too
    engine.dispose()
    return postgres_url


def _start(broker: Any, url: str, processes: int) -> tuple[Ingest, Any]:
    cfg = serve_config(broker, url, protocol="5", ingest_processes=processes, client_id=f"wk-{os.getpid()}")
    store = open_store_url(url)
    ingest = Ingest(cfg, store, Hub())
    ingest.start()
    # every process is on the shared subscription before anything is published
    wait_until(
        lambda: len([p for p in ingest.status()["processes"] if p["connected"]]) == processes and ingest.ready.is_set(),
        timeout=60,
        what=f"{processes} connected ingest processes",
    )
    return ingest, store


class Browser:
    """A Live page's event stream: a queue on the ingest's Hub, read on its own event loop."""

    def __init__(self, hub: Hub) -> None:
        self.loop = asyncio.new_event_loop()
        self.items: list[tuple[str, int]] = []
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.queue = asyncio.run_coroutine_threadsafe(self._subscribe(hub), self.loop).result(5)
        asyncio.run_coroutine_threadsafe(self._read(), self.loop)

    async def _subscribe(self, hub: Hub) -> Any:
        return hub.subscribe()

    async def _read(self) -> None:
        while (event := await self.queue.get()) is not None:
            if event["type"] == "predictions":
                self.items += [(item["device_id"], item["seq"]) for item in event["items"]]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, None)  # the stream ends as at a server stop


def _stored(store: Any) -> tuple[int, int]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT count(*) FROM predictions")).scalar()
        distinct = conn.execute(sa.text("SELECT count(DISTINCT (device_id, run_id, seq)) FROM predictions")).scalar()
    return int(rows or 0), int(distinct or 0)


def test_shared_subscription_workers_store_everything_exactly_once(mosquitto_broker: Any, pg_url: str) -> None:
    ingest, store = _start(mosquitto_broker, pg_url, 3)
    devices = Devices(mosquitto_broker, client_id="wk-devices")
    browser = Browser(ingest.hub)
    try:
        wait_until(lambda: ingest._feed is not None, what="the live feed of stored rows")  # a browser is watching
        devices.send("edge-har/pi-0/status", "online", retain=True)
        sent = 0
        for seq in range(100):
            for d in range(6):
                devices.send(f"edge-har/pi-{d}/prediction", prediction(f"pi-{d}", seq))
                sent += 1
        wait_until(lambda: ingest.status()["stored"] == sent, timeout=30, what="every process's books")
        assert _stored(store) == (sent, sent)
        status = ingest.status()
        assert status["duplicates"] == 0 and status["gaps"] == 0 and status["received"] >= sent
        # the broker shared the predictions out: every process stored some
        assert all(p["stored"] > 0 for p in status["processes"]), status["processes"]
        assert ingest.liveness("pi-0", time.time()) == "online"  # the retained status reached the web process
        assert ingest.device_books("pi-3") == {"gaps": 0, "rejected": 0}
        # the Live page was pushed every prediction, whichever process stored it, once
        wait_until(
            lambda: len(browser.items) >= sent,
            timeout=15,
            what=f"every prediction on the live stream ({browser.items})",
        )
        assert sorted(browser.items) == sorted((f"pi-{d}", seq) for seq in range(100) for d in range(6))
    finally:
        browser.close()
        devices.close()
        ingest.stop()
        store.close()


@pytest.mark.slow
def test_a_worker_killed_with_messages_in_hand_is_brought_back_and_loses_nothing(
    mosquitto_broker: Any, pg_url: str
) -> None:
    ingest, store = _start(mosquitto_broker, pg_url, 2)
    devices = Devices(mosquitto_broker, client_id="wk-devices")
    sent = 0
    try:
        (worker,) = ingest._workers.procs
        killed = threading.Event()

        def kill_soon() -> None:
            time.sleep(0.3)
            os.kill(worker.pid, signal.SIGKILL)
            killed.set()

        threading.Thread(target=kill_soon, daemon=True).start()
        for seq in range(300):
            for d in range(4):
                devices.send(f"edge-har/pi-{d}/prediction", prediction(f"pi-{d}", seq))
                sent += 1
        assert killed.is_set()
        wait_until(lambda: _stored(store)[0] == sent, timeout=60, what="every prediction, the killed worker's too")
        assert _stored(store) == (sent, sent)
        assert ingest._workers.procs[0].pid != worker.pid  # a new worker took the session over
        assert ingest.status()["gaps"] == 0
    finally:
        devices.close()
        ingest.stop()
        store.close()


def test_several_ingest_processes_on_sqlite_are_refused_in_one_line(tmp_path: Any, capsys: Any) -> None:
    argv = ["serve", "--broker", "127.0.0.1:1", "--db-path", str(tmp_path / "x.sqlite3"), "--ingest-processes", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--ingest-processes 2: several ingest processes need PostgreSQL" in err
    assert main(["serve", "--ingest-processes", "2", "--db-url", "postgresql+psycopg://x@h/db"]) == 2
    assert "--ingest-processes 2 needs --broker" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--ingest-processes", "0"])
    assert exited.value.code == 2 and "must be a whole number 1-64, got 0" in capsys.readouterr().err


def test_an_ingest_only_worker_stores_from_the_shared_subscription_and_stops_on_sigterm(
    mosquitto_broker: Any, pg_url: str, tmp_path: Any
) -> None:
    import subprocess
    import sys

    from edge_har.web.ingest_worker import read_books

    argv = [sys.executable, "-m", "edge_har", "serve", "--ingest-only", "--worker-index", "7"]
    argv += ["--broker", f"{mosquitto_broker.host}:{mosquitto_broker.port}", "--db-url", pg_url, "--client-id", "solo"]
    with open(tmp_path / "worker.log", "wb") as log_file:
        proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT)
    store = open_store_url(pg_url)
    devices = Devices(mosquitto_broker, client_id="wk-devices")
    try:
        wait_until(
            lambda: any(b["worker"] == "solo-w7" and b["connected"] for b in read_books(store, "solo-w")),
            timeout=30,
            what="the worker's books",
        )
        for seq in range(50):
            devices.send("edge-har/pi-s/prediction", prediction("pi-s", seq))
        wait_until(lambda: _stored(store) == (50, 50), timeout=15, what="every prediction")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, (tmp_path / "worker.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        devices.close()
        store.close()
