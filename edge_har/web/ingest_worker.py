"""Several ingest processes on one MQTT 5 shared subscription, writing into one PostgreSQL.

One Python process stores about 20,000 predictions a second (its paho thread and its ingest thread
share one interpreter lock), so a larger fleet is split between processes by the broker:
``edge-har serve --ingest-processes N`` subscribes the web process and N - 1 worker processes (started
here, with :mod:`multiprocessing`'s spawn, and stopped with the web process) to
``$share/<group>/<prefix>/+/prediction``; the broker hands each prediction to one of them. Why it is
laid out so:

* **each worker has its own persistent session** (``<client id>-w<i>``): what a stopped or killed
  worker held unacknowledged, and what the broker queued for its session meanwhile, is sent again when
  it comes back, and the web process brings a dead worker back within a couple of seconds
  (:meth:`Workers.revive`, the same index, so the same session); the store's unique key stores a
  re-delivery once whichever process gets it.
* **status and stats stay on the web process's own, non-shared subscription**: a broker delivers
  retained messages (every device's status) to no shared subscription, and liveness is judged where
  the Live page is served.
* **the books of every process are one**: each worker writes its counters to the ``ingest_workers``
  table every second and :meth:`~edge_har.web.ingest.Ingest.status` of the web process adds them to
  its own; the seq books are in the store already (one transaction with the rows), so the web process
  re-reads them.
* **the Live page still sees every prediction**: the web process reads the rows stored since the last
  look (:class:`StoredFeed`) while a browser is connected, instead of a second, non-shared
  subscription that would make it receive and check every message again. Rows become visible out of
  id order (each process takes ids, then commits its batch), so the ids skipped over are looked for
  again until :data:`GAP_WAIT_S` has passed (an id a duplicate used up never comes).

SQLite takes one writer at a time, so ``serve_cli`` refuses several processes on it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
import time
from typing import Any, Optional

import sqlalchemy as sa

from edge_har.web.config import ServeConfig
from edge_har.web.store import Store, ingest_workers, predictions

__all__ = ["BOOKS_EVERY_S", "StoredFeed", "Workers", "read_books", "rows_after", "run_worker", "write_books"]

log = logging.getLogger("edge_har.web.ingest_worker")

BOOKS_EVERY_S = 1.0  # how often a worker writes its counters (what the web process's status lags by at most)
STALE_BOOKS_S = 30.0  # a worker silent this long is shown, but its figures are still counted (they happened)


def write_books(store: Store, worker: str, books: dict[str, Any]) -> None:
    """Replace ``worker``'s row of counters (one short transaction)."""
    upsert = store._insert(ingest_workers)
    row = {"worker": worker, "pid": os.getpid(), "updated_at": time.time(), "books": json.dumps(books)}
    with store.engine.begin() as conn:
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[ingest_workers.c.worker],
                set_={k: upsert.excluded[k] for k in ("pid", "updated_at", "books")},
            ),
            row,
        )


def read_books(store: Store, prefix: str) -> list[dict[str, Any]]:
    """Every worker's last counters whose name starts with ``prefix``, with ``worker`` and ``updated_at``."""
    c = ingest_workers.c
    query = sa.select(c.worker, c.updated_at, c.books).where(c.worker.like(f"{prefix}%")).order_by(c.worker)
    out = []
    with store.engine.connect() as conn:
        for worker, updated_at, books in conn.execute(query):
            try:
                data = json.loads(books)
            except ValueError:
                continue
            if isinstance(data, dict):
                out.append({**data, "worker": worker, "updated_at": updated_at})
    return out


def last_id(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(predictions.c.id))).scalar() or 0)


_c = predictions.c
_FEED_COLUMNS = (_c.id, _c.device_id, _c.run_id, _c.seq, _c.ts, _c.label, _c.confidence, _c.model_id)


def rows_after(store: Store, after: int, limit: int = 5000) -> list[dict[str, Any]]:
    """Rows stored with an id beyond ``after``, oldest first (what the Live page is pushed), at most ``limit``."""
    c = predictions.c
    query = sa.select(*_FEED_COLUMNS).where(c.id > after).order_by(c.id).limit(limit)
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


GAP_WAIT_S = 10.0  # how long an id skipped by the feed is looked for (another process's batch still open)
GAPS_MAX = 50_000  # ids looked for at most (beyond: the oldest are given up)


def rows_with_ids(store: Store, ids: list[int]) -> list[dict[str, Any]]:
    c = predictions.c
    query = sa.select(*_FEED_COLUMNS).where(c.id.in_(ids))
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query.order_by(c.id)).mappings()]


class StoredFeed:
    """Every row any ingest process stores, each handed out once, soon after its commit."""

    def __init__(self, store: Store, after: int) -> None:
        self.store = store
        self.high = after  # the highest id handed out
        self.gaps: dict[int, float] = {}  # ids below ``high`` not seen yet -> when they were skipped

    def take(self, now: float, limit: int = 5000) -> list[dict[str, Any]]:
        """The rows visible since the last call (ids skipped earlier first), without their ids."""
        found = rows_with_ids(self.store, sorted(self.gaps)[:limit]) if self.gaps else []
        for row in found:
            self.gaps.pop(row["id"], None)
        fresh = rows_after(self.store, self.high, limit)
        expected = self.high + 1
        for row in fresh:
            for missing in range(expected, min(row["id"], expected + GAPS_MAX)):
                self.gaps[missing] = now
            expected = row["id"] + 1
        if fresh:
            self.high = fresh[-1]["id"]
        for gap in [g for g, since in self.gaps.items() if now - since > GAP_WAIT_S]:
            del self.gaps[gap]
        while len(self.gaps) > GAPS_MAX:
            del self.gaps[min(self.gaps)]
        out = found + fresh
        for row in out:
            del row["id"]
        return out


def run_worker(cfg: ServeConfig, index: int, parent: Optional[int]) -> None:
    """A worker process: the ingest alone on the shared subscription, until SIGTERM or SIGINT, or until the
    web process ``parent`` that started it is gone (None: a worker started on its own, ``--ingest-only``)."""
    from edge_har.web.ingest import Hub, Ingest
    from edge_har.web.store import open_store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    store = open_store(cfg)
    ingest = Ingest(dataclasses.replace(cfg, ingest_only=True, worker_index=index), store, Hub())
    ingest.start()
    try:
        while not stop.wait(1.0):
            if parent is not None and os.getppid() != parent:  # the web process died without stopping us
                break
    finally:
        ingest.stop()
        store.close()


class Workers:
    """The N - 1 worker processes of ``--ingest-processes N`` (the web process is the N-th consumer)."""

    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self.procs: list[Any] = []

    def start(self) -> None:
        for index in range(1, self.cfg.ingest_processes):
            self.procs.append(self._spawn(index))
        log.info("ingest: %d worker processes on the shared subscription", len(self.procs))

    def _spawn(self, index: int) -> Any:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # no copy of the web process's threads and sockets
        proc = ctx.Process(
            target=run_worker, args=(self.cfg, index, os.getpid()), name=f"edge-har-ingest-{index}", daemon=False
        )
        proc.start()
        return proc

    def revive(self) -> int:
        """Start again each worker that died (same index: its session, and what the broker queued for it)."""
        revived = 0
        for i, proc in enumerate(self.procs):
            if not proc.is_alive():
                log.warning("ingest: worker %d ended (exit code %s); starting it again", i + 1, proc.exitcode)
                proc.join(0)
                self.procs[i] = self._spawn(i + 1)
                revived += 1
        return revived

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM each (it stores and acknowledges what it holds), then SIGKILL what is left after ``timeout``."""
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        self.procs = []

    def alive(self) -> list[Optional[int]]:
        return [proc.pid if proc.is_alive() else None for proc in self.procs]
