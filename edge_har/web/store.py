"""Where ``edge-har serve`` keeps what the fleet published: predictions, status changes, last stats.

One small data layer on SQLAlchemy **Core** (tables and SQL expressions, no ORM: the rows are plain
records and the hot path, :meth:`Store.write_predictions`, sends one statement per batch written for
the driver) serves SQLite (the default, one file, WAL so the
web requests read while the ingest thread writes) and PostgreSQL (``postgresql+psycopg://...``, psycopg 3)
with the same statements. Why each choice:

* **De-duplication in the database**: ``UNIQUE (device_id, run_id, seq, ts)`` with ``ON CONFLICT DO
  NOTHING``. QoS 1 is at-least-once, so a re-delivery (same device, run and seq, hence the same
  ``window_end_ts``) is stored once, also across a server restart. ``ts`` is in the key only for payloads
  from devices older than the run id: they are stored with ``run_id = ''`` and fall back to
  ``(device_id, seq, window_end_ts)``, the key :mod:`edge_har.mqtt.payloads` prescribes for them.
* **Times are Unix seconds (double)**: ``ts`` is the device's ``window_end_ts``, ``received_at`` the
  server's clock. Retention is judged on ``received_at`` so a device with a wrong clock cannot keep rows
  forever or have them deleted at once.
* **Time per activity is additive** (:meth:`Store.activity_seconds`): within a run (same ``device_id``
  and ``run_id``; devices older than the run id, all in run ``''``, count a restart as a gap), ordered by
  ``(ts, seq)``, a prediction lasts until the next one when that comes within :data:`GAP_CAP_S`; else
  (the run's last window, or the last before an outage) as long as the gap from the previous one when
  that is within the cap (about one stride); else (a lone window) the cap. A device switched off for an
  hour does not count that hour as its last activity, and what the windows covered is counted, not
  ``count * stride``, so it stays right when a device drops windows or runs at another stride. A row's
  duration depends only on rows within the cap of it, so any range's seconds are the sum over the rows
  in it, computed exactly from the rows of the range widened by the cap.
* **Rollups make a month cost what an hour does**: seconds per label per device and 15-minute UTC bucket
  (every real time zone's midnight is a bucket edge) are kept in ``activity_rollup``, filled by the
  readers: a summary takes its whole buckets from there and computes only the missing buckets and the
  pieces at its edges, in one statement. The writer bumps ``rollup_versions`` for every bucket a new row
  can change (its own, and the neighbour within the cap of it) in the transaction that inserts the row;
  a reader reads the versions before the rows and stores each bucket with the version it read
  (``rollup_buckets``), and uses a bucket only while that version is still the current one (no version
  row: 0). A row committed while a reader computes leaves the version ahead of what it stored, so the
  next read computes that bucket again: no lock, no race, any number of ingest processes.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from edge_har.core.errors import EdgeHarError
from edge_har.web.config import ServeConfig

__all__ = ["GAP_CAP_S", "DevicePage", "Store", "StoreError", "events", "open_store", "open_store_url"]

log = logging.getLogger("edge_har.web.store")

# A gap between two predictions of one run longer than this is an outage (device off, broker away), not
# time spent in the activity: 10 strides of the reference 0.5 s stride, several missed windows tolerated.
GAP_CAP_S = 5.0
HISTORY_LIMIT = 20_000  # rows one history request returns at most (an hour at 5 windows/s is 18,000)
_ID_LEN = 128

metadata = sa.MetaData()

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("device_id", sa.String(_ID_LEN), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),  # '' for devices older than the run id
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("ts", sa.Double(), nullable=False),  # window_end_ts, the device's clock
    sa.Column("label", sa.String(_ID_LEN), nullable=False),
    sa.Column("confidence", sa.Double(), nullable=False),
    sa.Column("probabilities", sa.JSON(), nullable=False),
    sa.Column("model_id", sa.String(256), nullable=False),
    sa.Column("variant", sa.String(64), nullable=True),
    sa.Column("inference_ms", sa.Double(), nullable=True),
    sa.Column("received_at", sa.Double(), nullable=False),  # the server's clock
    sa.UniqueConstraint("device_id", "run_id", "seq", "ts", name="uq_predictions_key"),
    sa.Index("ix_predictions_device_ts", "device_id", "ts"),
    sa.Index("ix_predictions_received", "received_at"),
)

status_changes = sa.Table(
    "status_changes",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("device_id", sa.String(_ID_LEN), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("received_at", sa.Double(), nullable=False),
    sa.Index("ix_status_device_received", "device_id", "received_at"),
)

# One row per device: what the live page shows before any new message arrives (after a restart too).
devices = sa.Table(
    "devices",
    metadata,
    sa.Column("device_id", sa.String(_ID_LEN), primary_key=True),
    sa.Column("status", sa.String(32), nullable=True),
    sa.Column("status_at", sa.Double(), nullable=True),
    sa.Column("stats", sa.JSON(), nullable=True),  # the last stats payload, as it came
    sa.Column("stats_at", sa.Double(), nullable=True),
    sa.Column("stats_interval_s", sa.Double(), nullable=True),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("model_id", sa.String(256), nullable=True),
    sa.Column("last_seen", sa.Double(), nullable=False),
)


# Events the devices published (a fall): each once. A QoS 1 re-delivery repeats the device, run, type, last
# window and detection time, which the unique key turns into a no-op; the time columns are Unix seconds of
# the device's clock, ``received_at`` the server's (what retention judges, as for predictions).
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("device_id", sa.String(_ID_LEN), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("event_type", sa.String(_ID_LEN), nullable=False),
    sa.Column("impact_ts", sa.Double(), nullable=False),
    sa.Column("detected_ts", sa.Double(), nullable=False),
    sa.Column("confidence", sa.Double(), nullable=False),
    sa.Column("first_seq", sa.BigInteger(), nullable=False),
    sa.Column("last_seq", sa.BigInteger(), nullable=False),
    sa.Column("windows", sa.Integer(), nullable=False),
    sa.Column("model_id", sa.String(256), nullable=False),
    sa.Column("variant", sa.String(64), nullable=True),
    sa.Column("received_at", sa.Double(), nullable=False),
    sa.UniqueConstraint("device_id", "run_id", "event_type", "last_seq", "detected_ts", name="uq_events_once"),
    sa.Index("ix_events_device_impact", "device_id", "impact_ts"),
    sa.Index("ix_events_impact", "impact_ts"),
    sa.Index("ix_events_received", "received_at"),
)


# Per (device, run): which seq numbers arrived, as a range and a count, so predictions lost upstream (a burst
# beyond the broker's queue for serve, a device's dropped offline queue) are counted as gaps. Written in the
# transaction that stores the rows, so a restart (kill -9 included) goes on from what the store holds, and
# pruned with the rows. Runs with run_id '' (devices older than the run id) have none: their seq restarts at 0.
seq_books = sa.Table(
    "seq_books",
    metadata,
    sa.Column("device_id", sa.String(_ID_LEN), primary_key=True),
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("first_seq", sa.BigInteger(), nullable=False),
    sa.Column("high_seq", sa.BigInteger(), nullable=False),
    sa.Column("accounted", sa.BigInteger(), nullable=False),  # seqs that arrived: rows new to the store + refused
    sa.Column("updated_at", sa.Double(), nullable=False),
)


# One row per ingest worker process (``serve --ingest-processes``): its Ingest.status() as JSON, written every
# second and added up by the web process (edge_har.web.ingest_worker).
ingest_workers = sa.Table(
    "ingest_workers",
    metadata,
    sa.Column("worker", sa.String(160), primary_key=True),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("updated_at", sa.Double(), nullable=False),
    sa.Column("books", sa.Text(), nullable=False),
)


# Rollups (see the module doc). ``bucket`` is floor(ts / ROLLUP_BUCKET_S): the bucket of UTC seconds
# [bucket * 900, bucket * 900 + 900).
ROLLUP_BUCKET_S = 900
# How far a new row changes other rows' durations: its neighbours within the cap. One second more than
# the cap so that no rounding of ``ts +- cap`` misses a bucket.
_ROLLUP_REACH_S = GAP_CAP_S + 1.0

# Per (device, bucket): bumped by every write that can change the bucket's seconds.
rollup_versions = sa.Table(
    "rollup_versions",
    metadata,
    sa.Column("device_id", sa.String(_ID_LEN), primary_key=True),
    sa.Column("bucket", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger(), nullable=False),
)

# Per (device, bucket) computed by a reader: the version it read before reading the rows.
rollup_buckets = sa.Table(
    "rollup_buckets",
    metadata,
    sa.Column("device_id", sa.String(_ID_LEN), primary_key=True),
    sa.Column("bucket", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger(), nullable=False),
)

# Seconds per label of a computed bucket (a bucket with no prediction has a rollup_buckets row only).
activity_rollup = sa.Table(
    "activity_rollup",
    metadata,
    sa.Column("device_id", sa.String(_ID_LEN), primary_key=True),
    sa.Column("bucket", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("label", sa.String(_ID_LEN), primary_key=True),
    sa.Column("seconds", sa.Double(), nullable=False),
)


@dataclass(frozen=True)
class SeqBook:
    """One run's book: ``gaps`` are the seqs between the first and the highest that never arrived."""

    device_id: str
    run_id: str
    first_seq: int
    high_seq: int
    accounted: int

    @property
    def gaps(self) -> int:
        return max(0, self.high_seq - self.first_seq + 1 - self.accounted)


@dataclass(frozen=True)
class WriteResult:
    """What :meth:`Store.write_predictions` did: ``new[i]`` for ``rows[i]``, and the books it touched."""

    new: list[bool]
    books: list[SeqBook]


class StoreError(EdgeHarError):
    """The database cannot be opened or used (bad URL, server down, missing driver): names the URL."""


@dataclass(frozen=True)
class Activity:
    """A device's newest prediction."""

    ts: float
    label: str
    confidence: float
    probabilities: dict[str, float]
    model_id: str
    run_id: str
    seq: int
    received_at: float


@dataclass(frozen=True)
class DeviceRecord:
    """One row of :meth:`Store.devices`: the device table joined with its newest prediction."""

    device_id: str
    status: Optional[str]
    status_at: Optional[float]
    stats: Optional[dict[str, Any]]
    stats_at: Optional[float]
    stats_interval_s: Optional[float]
    run_id: Optional[str]
    model_id: Optional[str]
    last_seen: float
    activity: Optional[Activity]


@dataclass(frozen=True)
class DevicePage:
    """One page of :meth:`Store.device_page`: its records, how many devices match, the next page's cursor."""

    records: list[DeviceRecord]
    total: int
    next_after: Optional[str]  # pass as ``after`` for the next page; None: this is the last one


class Store:
    """The three tables on one SQLAlchemy engine; every method is one short transaction.

    Safe to call from several threads (the ingest thread writes, request threads read): each call takes
    its own pooled connection. Writers are expected to be one thread (the ingest), which is what keeps the
    read-then-write of :meth:`set_status` free of races.
    """

    def __init__(self, engine: Engine, *, retention_days: float = 30.0) -> None:
        self.engine = engine
        self.retention_days = retention_days
        self.backend = engine.dialect.name  # "sqlite" or "postgresql"
        # Both dialects' insert() have on_conflict_do_nothing/do_update with the same signature.
        self._insert: Any
        if self.backend == "sqlite":
            from sqlalchemy.dialects import sqlite

            self._insert = sqlite.insert
        elif self.backend == "postgresql":
            from sqlalchemy.dialects import postgresql

            self._insert = postgresql.insert
        else:
            raise StoreError(f"database {self.describe()}: only SQLite and PostgreSQL are supported")
        try:
            metadata.create_all(engine)  # idempotent: an existing database keeps its rows
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"database {self.describe()}: cannot create the tables: {_reason(exc)}") from exc

    def describe(self) -> str:
        """The URL without its password, for log lines and errors."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ writes (the ingest thread)

    def add_predictions(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert a batch; re-deliveries are skipped. Returns the rows new to the store (see write_predictions)."""
        return sum(self.write_predictions(rows).new)

    def write_predictions(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        refused: Sequence[tuple[str, str, int]] = (),
        at: Optional[float] = None,
    ) -> WriteResult:
        """Insert a batch (one multi-row INSERT) and keep the seq books, in one transaction.

        Each row has the ``predictions`` columns except ``id``; ``new[i]`` says whether ``rows[i]`` was new to
        the store (False: a re-delivery, or a repeat within the batch), which is what the gap books count.
        ``refused`` are ``(device_id, run_id, seq)`` of predictions that arrived but were not stored (refused
        by a check or set aside): the books count them as arrived. The device table's ``last_seen``,
        ``run_id`` and ``model_id`` follow the newest row of each device in the batch. ``at`` stamps the
        books (default: the newest ``received_at``, else now) for retention.
        """
        if not rows and not refused:
            return WriteResult([], [])
        stamp = at if at is not None else max((r["received_at"] for r in rows), default=time.time())
        with self.engine.begin() as conn:
            new = self._insert_rows(conn, rows)
            if rows:
                self._upsert_devices(conn, rows)
            arrived = [(r["device_id"], r["run_id"], r["seq"]) for r, fresh in zip(rows, new) if fresh]
            self._bump_rollups(
                conn, _touched_buckets((r["device_id"], r["ts"]) for r, fresh in zip(rows, new) if fresh)
            )
            books = self._count_seqs(conn, arrived + list(refused), stamp)
        return WriteResult(new, books)

    def _insert_rows(self, conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> list[bool]:
        """Insert ``rows`` skipping keys the store holds; which of them were new, in order.

        The statement is written for the driver, not compiled by SQLAlchemy per batch (its insertmanyvalues
        with RETURNING cost more than the database's own work): PostgreSQL gets one
        ``INSERT ... SELECT FROM json_to_recordset(<the batch as one JSON text>) ... RETURNING`` (one
        parameter, one round trip, the parsing done by the server; RETURNING names the rows inserted:
        psycopg's executemany rowcount is -1); SQLite gets one
        ``executemany``, whose row count says when every row was new (the common case) and, when not, the
        rows with an id beyond the largest before the insert are the new ones (the ingest is the only
        writer of the table).
        """
        if not rows:
            return []
        if self.backend == "postgresql":
            batch = _json_text([r if type(r) is dict else dict(r) for r in rows])  # extra keys are ignored
            inserted = {tuple(k) for k in conn.exec_driver_sql(_PG_INSERT, (batch,)).fetchall()}
        else:
            before = conn.exec_driver_sql("SELECT max(id) FROM predictions").scalar()
            result = conn.exec_driver_sql(_SQLITE_INSERT, [_values(r) for r in rows])
            if result.rowcount == len(rows):
                return [True] * len(rows)
            inserted = {
                tuple(k)
                for k in conn.exec_driver_sql(
                    "SELECT device_id, run_id, seq, ts FROM predictions WHERE id > ?", (before or 0,)
                ).fetchall()
            }
        new = []
        for row in rows:
            key = _key(row)
            new.append(key in inserted)
            inserted.discard(key)  # a repeat within the batch is not new twice
        return new

    def _bump_rollups(self, conn: sa.Connection, keys: Sequence[tuple[str, int]]) -> None:
        """Bump the version of each ``(device_id, bucket)`` in ``keys`` (sorted: concurrent writers lock in order).

        One statement for the batch, written for the driver as the insert is: PostgreSQL gets the keys as
        two arrays (one round trip), SQLite one ``executemany``.
        """
        if not keys:
            return
        if self.backend == "postgresql":
            conn.exec_driver_sql(_PG_BUMP, ([d for d, _ in keys], [b for _, b in keys]))
        else:
            conn.exec_driver_sql(_SQLITE_BUMP, list(keys))

    def _upsert_devices(self, conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        newest: dict[str, Mapping[str, Any]] = {}
        for row in rows:
            held = newest.get(row["device_id"])
            if held is None or row["received_at"] >= held["received_at"]:
                newest[row["device_id"]] = row
        # every device of the batch in one executemany, not a statement per device
        upsert = self._insert(devices)
        keep = {name: upsert.excluded[name] for name in ("run_id", "model_id", "last_seen")}
        conn.execute(
            upsert.on_conflict_do_update(index_elements=[devices.c.device_id], set_=keep),
            [
                {
                    "device_id": device_id,
                    "run_id": row["run_id"] or None,
                    "model_id": row["model_id"],
                    "last_seen": row["received_at"],
                }
                for device_id, row in newest.items()
            ],
        )

    def _count_seqs(self, conn: sa.Connection, arrived: Sequence[tuple[str, str, int]], at: float) -> list[SeqBook]:
        """Widen each run's range to the seqs that arrived and add them to its count; the updated books."""
        runs: dict[tuple[str, str], list[int]] = {}
        for device_id, run_id, seq in arrived:
            if not run_id:
                continue
            held = runs.get((device_id, run_id))
            if held is None:
                runs[(device_id, run_id)] = [seq, seq, 1]
            else:
                held[0], held[1], held[2] = min(held[0], seq), max(held[1], seq), held[2] + 1
        if not runs:
            return []
        t = seq_books.c
        upsert = self._insert(seq_books)
        ex = upsert.excluded
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[t.device_id, t.run_id],
                set_={
                    "first_seq": sa.case((ex.first_seq < t.first_seq, ex.first_seq), else_=t.first_seq),
                    "high_seq": sa.case((ex.high_seq > t.high_seq, ex.high_seq), else_=t.high_seq),
                    "accounted": t.accounted + ex.accounted,
                    "updated_at": ex.updated_at,
                },
            ),
            [
                {"device_id": d, "run_id": r, "first_seq": lo, "high_seq": hi, "accounted": n, "updated_at": at}
                for (d, r), (lo, hi, n) in runs.items()
            ],
        )
        touched = sa.select(seq_books).where(sa.tuple_(t.device_id, t.run_id).in_(list(runs)))
        return [_book(row) for row in conn.execute(touched).mappings()]

    def seq_books(self) -> list[SeqBook]:
        """Every run's seq book (the ingest restores its gap counts from these at start)."""
        with self.engine.connect() as conn:
            return [_book(row) for row in conn.execute(sa.select(seq_books)).mappings()]

    def set_status(self, device_id: str, status: str, received_at: float) -> bool:
        """Record a status message; True when it changed the device's status (a row in ``status_changes``).

        A broker re-sends the retained status at every (re)subscription: the same value again is no change.
        """
        with self.engine.begin() as conn:
            current = conn.execute(sa.select(devices.c.status).where(devices.c.device_id == device_id)).scalar()
            changed = current != status
            if changed:
                conn.execute(
                    status_changes.insert(), {"device_id": device_id, "status": status, "received_at": received_at}
                )
            self._upsert_device(conn, device_id, {"status": status, "status_at": received_at, "last_seen": received_at})
        return changed

    def add_event(self, row: Mapping[str, Any]) -> bool:
        """Store one event (the ``events`` columns but ``id``); False when the store already holds it (a re-delivery).

        The device's ``last_seen`` moves on too: an event is a sign of life like a status or stats message.
        """
        with self.engine.begin() as conn:
            stmt = self._insert(events).values(**{c.name: row[c.name] for c in events.c if c.name != "id"})
            stmt = stmt.on_conflict_do_nothing(index_elements=_EVENT_KEY).returning(events.c.id)
            new = conn.execute(stmt).first() is not None  # psycopg's rowcount says -1 here
            self._upsert_device(conn, row["device_id"], {"last_seen": row["received_at"]})
        return new

    def set_stats(self, device_id: str, stats: Mapping[str, Any], received_at: float) -> None:
        """Keep the device's last stats payload (the live page shows windows/s, p50, queue, reconnects)."""
        interval = stats.get("stats_interval_s")
        values: dict[str, Any] = {"stats": dict(stats), "stats_at": received_at, "last_seen": received_at}
        if isinstance(interval, (int, float)) and not isinstance(interval, bool) and math.isfinite(interval):
            values["stats_interval_s"] = float(interval)
        if isinstance(stats.get("run_id"), str):
            values["run_id"] = stats["run_id"]
        if isinstance(stats.get("model_id"), str):
            values["model_id"] = stats["model_id"]
        with self.engine.begin() as conn:
            self._upsert_device(conn, device_id, values)

    def _upsert_device(self, conn: sa.Connection, device_id: str, values: dict[str, Any]) -> None:
        stmt = self._insert(devices).values(device_id=device_id, **values)
        conn.execute(stmt.on_conflict_do_update(index_elements=[devices.c.device_id], set_=values))

    def prune(self, now: Optional[float] = None) -> int:
        """Delete predictions, status changes and events received more than ``retention_days`` ago; rows deleted.

        Devices not heard of since then go too, so the live page does not list a fleet long gone.
        """
        cutoff = (time.time() if now is None else now) - self.retention_days * 86400.0
        # Rollups of buckets before the cutoff's go; the buckets kept whose rows go too (a device whose clock
        # is ahead, a late delivery) are bumped, so no summary keeps counting rows that are gone.
        first_kept = bucket_of(cutoff) - 1 if math.isfinite(cutoff) else 0
        p = predictions.c
        with self.engine.begin() as conn:
            going = conn.execute(
                sa.select(p.device_id, p.ts).where(p.received_at < cutoff, p.ts >= first_kept * ROLLUP_BUCKET_S)
            ).all()
            self._bump_rollups(conn, _touched_buckets((d, ts) for d, ts in going))
            for table in (rollup_versions, rollup_buckets, activity_rollup):
                conn.execute(sa.delete(table).where(table.c.bucket < first_kept))
            deleted = conn.execute(sa.delete(predictions).where(predictions.c.received_at < cutoff)).rowcount
            deleted += conn.execute(sa.delete(status_changes).where(status_changes.c.received_at < cutoff)).rowcount
            deleted += conn.execute(sa.delete(events).where(events.c.received_at < cutoff)).rowcount
            conn.execute(sa.delete(devices).where(devices.c.last_seen < cutoff))
            conn.execute(sa.delete(seq_books).where(seq_books.c.updated_at < cutoff))
        return int(deleted)

    # ------------------------------------------------------------------ reads (request threads)

    def has_device(self, device_id: str) -> bool:
        with self.engine.connect() as conn:
            return (
                conn.execute(sa.select(devices.c.device_id).where(devices.c.device_id == device_id)).first() is not None
            )

    def devices(self) -> list[DeviceRecord]:
        """Every device with its newest prediction, in one query (the ingest's start-up reads them all)."""
        with self.engine.connect() as conn:
            return [_device_record(row) for row in conn.execute(_devices_query((), None, self.backend)).mappings()]

    def device(self, device_id: str) -> Optional[DeviceRecord]:
        """One device with its newest prediction (one probe of the device table's key), None if never seen."""
        with self.engine.connect() as conn:
            row = conn.execute(_devices_query((devices.c.device_id == device_id,), 1, self.backend)).mappings().first()
        return None if row is None else _device_record(row)

    def device_page(self, *, limit: int, after: Optional[str] = None, contains: Optional[str] = None) -> DevicePage:
        """One page of devices in ``device_id`` order, each with its newest prediction: two queries, any fleet size.

        Keyset pagination: ``after`` is the last ``device_id`` of the previous page, so a page costs the
        same at device 9,800 as at device 0 and a device added meanwhile neither repeats nor hides one.
        ``contains`` keeps the ids holding that text (ASCII letters match either case). ``total`` counts
        every device that matches, not only those after ``after``.
        """
        match = () if not contains else (_id_contains(contains),)
        where = match if after is None else (*match, devices.c.device_id > after)
        with self.engine.connect() as conn:
            total = int(conn.execute(sa.select(sa.func.count()).select_from(devices).where(*match)).scalar() or 0)
            rows = [
                _device_record(row) for row in conn.execute(_devices_query(where, limit + 1, self.backend)).mappings()
            ]
        more = len(rows) > limit
        rows = rows[:limit]
        return DevicePage(rows, total, rows[-1].device_id if more and rows else None)

    def recent(
        self, device_ids: Sequence[str], since: float, until: float, step_s: float
    ) -> dict[str, list[dict[str, Any]]]:
        """The newest prediction per ``step_s`` seconds of each device in ``since < ts <= until``, oldest first.

        One query for all the devices of a page (the Live page's timelines), so at most
        ``len(device_ids) * ((until - since) / step_s + 1)`` rows whatever the devices publish.
        """
        if not device_ids:
            return {}
        c = predictions.c
        columns = (c.ts, c.label, c.confidence, c.run_id, c.seq)
        millis = sa.cast((c.ts - since) * 1000.0, sa.BigInteger)  # integer buckets, as in history()
        bucket = millis // sa.literal(max(1, round(step_s * 1000.0)), sa.BigInteger)
        newest = sa.func.row_number().over(partition_by=(c.device_id, bucket), order_by=(c.ts.desc(), c.seq.desc()))
        ranked = (
            sa.select(c.device_id, *columns, newest.label("newest"))
            .where(c.device_id.in_(list(device_ids)), c.ts > since, c.ts <= until)
            .subquery()
        )
        query = (
            sa.select(ranked.c.device_id, *(ranked.c[col.name] for col in columns))
            .where(ranked.c.newest == 1)
            .order_by(ranked.c.device_id, ranked.c.ts)
        )
        out: dict[str, list[dict[str, Any]]] = {device_id: [] for device_id in device_ids}
        with self.engine.connect() as conn:
            for row in conn.execute(query).mappings():
                ts, confidence = finite_number(row["ts"]), finite_number(row["confidence"])
                if ts is not None:
                    out[row["device_id"]].append(
                        {
                            "ts": ts,
                            "label": row["label"],
                            "confidence": confidence,
                            "run_id": row["run_id"],
                            "seq": row["seq"],
                        }
                    )
        return out

    def summary(self, device_id: str, start: float, end: float, gap_cap_s: float = GAP_CAP_S) -> dict[str, float]:
        """Seconds per label for predictions with ``start <= ts < end``, computed in SQL (see the module doc)."""
        return self.summaries([device_id], start, end, gap_cap_s)[device_id]

    def summaries(
        self, device_ids: Sequence[str], start: float, end: float, gap_cap_s: float = GAP_CAP_S
    ) -> dict[str, dict[str, float]]:
        """:meth:`summary` of several devices (a page of the Live page), most time first."""
        if not device_ids:
            return {}
        return self.activity_seconds(device_ids, [(start, end)], gap_cap_s)[0]

    def activity_seconds(
        self, device_ids: Sequence[str], spans: Sequence[tuple[float, float]], gap_cap_s: float = GAP_CAP_S
    ) -> list[dict[str, dict[str, float]]]:
        """Seconds per label of each device in each ``[start, end)`` of ``spans``, most time first.

        ``spans`` are in order, each beginning where the one before ends; the edges between them that lie
        inside a 15-minute bucket all lie at the same offset within it (the midnights of one UTC offset).
        Whole buckets come from the rollups (two statements), the rest is computed in one statement over
        the rows of the missing buckets and edge pieces widened by the cap, and the missing whole buckets
        are stored (three statements). Another ``gap_cap_s`` than :data:`GAP_CAP_S` is
        computed from the rows, without rollups.
        """
        ids = list(dict.fromkeys(device_ids))
        out: list[dict[str, dict[str, float]]] = [{d: {} for d in ids} for _ in spans]
        spans = [(float(a), float(b)) for a, b in spans]
        if not ids or not spans or not all(math.isfinite(a) and math.isfinite(b) for a, b in spans):
            return out
        plan = _RollupPlan(spans)
        use_rollups = gap_cap_s == GAP_CAP_S and bool(plan.whole)
        whole = set(plan.whole)
        versions: dict[tuple[str, int], int] = {}
        cached: dict[tuple[str, int], dict[str, float]] = {}
        with self.engine.connect() as conn:
            if use_rollups:
                lo, hi = plan.whole[0], plan.whole[-1]
                v = rollup_versions.c
                for d, k, n in conn.execute(
                    sa.select(v.device_id, v.bucket, v.version).where(
                        v.device_id.in_(ids), v.bucket >= lo, v.bucket <= hi
                    )
                ):
                    versions[(d, int(k))] = int(n)
                b, r = rollup_buckets.c, activity_rollup.c
                joined = rollup_buckets.outerjoin(
                    activity_rollup, sa.and_(r.device_id == b.device_id, r.bucket == b.bucket)
                )
                stale: set[tuple[str, int]] = set()
                query = (
                    sa.select(b.device_id, b.bucket, b.version, r.label, r.seconds)
                    .select_from(joined)
                    .where(b.device_id.in_(ids), b.bucket >= lo, b.bucket <= hi)
                )
                for d, k, n, label, seconds in conn.execute(query):
                    key = (d, int(k))
                    if int(n) != versions.get(key, 0) or key in stale:
                        stale.add(key)
                        cached.pop(key, None)
                        continue
                    held = cached.setdefault(key, {})
                    if label is not None:
                        held[label] = finite_number(seconds) or 0.0
                for key in cached:
                    if key[1] not in whole:
                        continue
                    into = out[plan.span_of(key[1] * ROLLUP_BUCKET_S)][key[0]]
                    for label, seconds in cached[key].items():
                        into[label] = into.get(label, 0.0) + seconds
            missing = [k for k in plan.whole if any((d, k) not in cached for d in ids)]
            pieces = plan.pieces(missing)
            fresh: dict[tuple[str, int], dict[str, float]] = {}
            if pieces:
                query = _durations_query(ids, pieces, plan.phase, gap_cap_s)
                for found in conn.execute(query):
                    d, label, k, late = str(found[0]), str(found[1]), int(found[2]), bool(found[3])
                    if k in whole and (d, k) in cached:  # computed only because it lies between missing ones
                        continue
                    seconds = finite_number(found[4]) or 0.0
                    at = max(k * ROLLUP_BUCKET_S + (plan.phase if late else 0.0), spans[0][0])
                    into = out[plan.span_of(at)][d]
                    into[label] = into.get(label, 0.0) + seconds
                    if use_rollups and k in whole:
                        held = fresh.setdefault((d, k), {})
                        held[label] = held.get(label, 0.0) + seconds
            if use_rollups and missing:
                try:
                    self._store_rollups(conn, ids, missing, versions, fresh)
                except sa.exc.DBAPIError as exc:  # a deadlock with a reader storing the same buckets, a busy file
                    conn.rollback()  # the seconds computed stand; the next summary stores the buckets
                    log.info("summary: rollups not stored: %s", _reason(exc))
        return [{d: dict(sorted(each.items(), key=lambda kv: (-kv[1], kv[0]))) for d, each in o.items()} for o in out]

    def roll_up_settled(self, now: Optional[float] = None, max_buckets: int = 5000) -> int:
        """Compute the rollups of closed buckets a write has changed since they were last computed; how many.

        A bucket is closed once its end is further back than the cap (no new row's neighbour can lie in it
        any more, short of a late delivery, which bumps it again). Run in the background (every minute by
        :class:`edge_har.web.roller.Roller`), this leaves a page only the open bucket and the day edges to
        read from the rows; without it, the first summary over a range computes its buckets. At most
        ``max_buckets`` a call, oldest first, so a backlog is worked off a slice at a time.
        """
        closed = bucket_of((time.time() if now is None else now) - _ROLLUP_REACH_S) - 1
        v, b = rollup_versions.c, rollup_buckets.c
        dirty = (
            sa.select(v.device_id, v.bucket)
            .select_from(
                rollup_versions.outerjoin(rollup_buckets, sa.and_(b.device_id == v.device_id, b.bucket == v.bucket))
            )
            .where(v.bucket <= closed, sa.or_(b.version.is_(None), b.version != v.version))
            .order_by(v.bucket, v.device_id)
            .limit(max_buckets)
        )
        with self.engine.connect() as conn:
            keys = [(str(d), int(k)) for d, k in conn.execute(dirty)]
        by_range: dict[tuple[int, int], list[str]] = {}
        lows: dict[str, int] = {}
        highs: dict[str, int] = {}
        for d, k in keys:
            lows[d], highs[d] = min(lows.get(d, k), k), max(highs.get(d, k), k)
        for d in lows:
            by_range.setdefault((lows[d], highs[d]), []).append(d)
        for (lo, hi), ids in by_range.items():
            for at in range(0, len(ids), 500):  # a bounded IN list per statement
                self.activity_seconds(ids[at : at + 500], [(lo * ROLLUP_BUCKET_S, (hi + 1) * ROLLUP_BUCKET_S)])
        return len(keys)

    def _store_rollups(
        self,
        conn: sa.Connection,
        ids: Sequence[str],
        missing: Sequence[int],
        versions: Mapping[tuple[str, int], int],
        fresh: Mapping[tuple[str, int], Mapping[str, float]],
    ) -> None:
        """Keep the whole buckets just computed, each with the version read before its rows were.

        Buckets that begin in the future are not kept (their rows are still to come). A concurrent reader
        storing the same bucket is harmless: both store what some state of the rows gives, and the
        version kept last decides whether it is used.
        """
        now_bucket = bucket_of(time.time())
        keys = sorted((d, k) for d in ids for k in missing if k <= now_bucket)
        if not keys:
            return
        b, r = rollup_buckets.c, activity_rollup.c
        upsert = self._insert(rollup_buckets)
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[b.device_id, b.bucket], set_={"version": upsert.excluded.version}
            ),
            [{"device_id": d, "bucket": k, "version": versions.get((d, k), 0)} for d, k in keys],
        )
        kept = set(keys)
        if self.backend == "postgresql":
            conn.exec_driver_sql(_PG_CLEAR, ([d for d, _ in keys], [k for _, k in keys]))
        else:
            conn.exec_driver_sql(_SQLITE_CLEAR, keys)
        labels = [
            {"device_id": d, "bucket": k, "label": label, "seconds": seconds}
            for (d, k), each in sorted(fresh.items())
            if (d, k) in kept
            for label, seconds in sorted(each.items())
        ]
        if labels:
            upsert = self._insert(activity_rollup)
            conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=[r.device_id, r.bucket, r.label], set_={"seconds": upsert.excluded.seconds}
                ),
                labels,
            )
        conn.commit()

    def counts(self) -> dict[str, int]:
        """Rows per table (the benchmark and the tests read these)."""
        with self.engine.connect() as conn:
            return {
                t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() or 0)
                for t in (predictions, status_changes, devices, events)
            }


_EVENT_KEY = ["device_id", "run_id", "event_type", "last_seq", "detected_ts"]


def bucket_of(ts: float) -> int:
    """The rollup bucket holding ``ts``: floor(ts / 900), exact at the edges (whole multiples of 900)."""
    k = math.floor(ts / ROLLUP_BUCKET_S)
    if ts < k * ROLLUP_BUCKET_S:
        return k - 1
    if ts >= (k + 1) * ROLLUP_BUCKET_S:
        return k + 1
    return k


def _touched_buckets(points: Any) -> list[tuple[str, int]]:
    """The ``(device_id, bucket)`` whose seconds a new row at ``(device_id, ts)`` can change, sorted, once each.

    Its own bucket, and the one before (after) when a neighbour within the cap can lie there.
    """
    keys: set[tuple[str, int]] = set()
    for device_id, ts in points:
        if not isinstance(ts, (int, float)) or not math.isfinite(ts):
            continue
        k = bucket_of(ts)
        keys.add((device_id, k))
        if ts - _ROLLUP_REACH_S < k * ROLLUP_BUCKET_S:
            keys.add((device_id, k - 1))
        if ts + _ROLLUP_REACH_S >= (k + 1) * ROLLUP_BUCKET_S:
            keys.add((device_id, k + 1))
    return sorted(keys)


class _RollupPlan:
    """Which whole buckets ``spans`` cover, and the pieces of buckets left to compute from the rows."""

    def __init__(self, spans: Sequence[tuple[float, float]]) -> None:
        self.spans = spans
        self.starts = [a for a, _ in spans]
        self.whole: list[int] = []
        self.edges: list[tuple[float, float]] = []
        phases: set[float] = set()
        for i, (a, b) in enumerate(spans):
            if b <= a:
                continue
            first = bucket_of(a) + (0 if a == bucket_of(a) * ROLLUP_BUCKET_S else 1)
            last = bucket_of(b)  # exclusive
            if first < last:
                self.whole.extend(range(first, last))
                for lo, hi in ((a, first * ROLLUP_BUCKET_S), (last * ROLLUP_BUCKET_S, b)):
                    if lo < hi:
                        self.edges.append((lo, hi))
            else:
                self.edges.append((a, b))
            if i and a != spans[i - 1][1]:
                raise ValueError(f"spans: span {i} begins at {a!r}, not where the one before ends")
            if i and a != bucket_of(a) * ROLLUP_BUCKET_S:
                phases.add(a - bucket_of(a) * ROLLUP_BUCKET_S)  # an edge between two spans inside a bucket
        if len(phases) > 1:
            raise ValueError(f"spans: the edges inside buckets lie at different offsets {sorted(phases)}")
        self.phase = phases.pop() if phases else 0.0

    def span_of(self, at: float) -> int:
        """The index of the span holding ``at``."""
        return max(0, bisect.bisect_right(self.starts, at) - 1)

    def pieces(self, missing: Sequence[int]) -> list[tuple[float, float]]:
        """The ranges to compute: the edges and the ``missing`` whole buckets, joined where they touch.

        More than :data:`_PIECES_MAX` ranges are joined across the gaps (their whole buckets are computed
        and skipped), so the statement stays short whatever buckets are missing.
        """
        ranges = sorted(self.edges + [(k * ROLLUP_BUCKET_S, (k + 1) * ROLLUP_BUCKET_S) for k in missing])
        joined: list[tuple[float, float]] = []
        for lo, hi in ranges:
            if joined and lo <= joined[-1][1]:
                joined[-1] = (joined[-1][0], max(hi, joined[-1][1]))
            else:
                joined.append((lo, hi))
        while len(joined) > _PIECES_MAX:
            widest = sorted(range(1, len(joined)), key=lambda i: joined[i][0] - joined[i - 1][1])
            keep = set(widest[-(_PIECES_MAX - 1) :])  # the widest gaps stay, the others are closed
            merged = [joined[0]]
            for i in range(1, len(joined)):
                if i in keep:
                    merged.append(joined[i])
                else:
                    merged[-1] = (merged[-1][0], joined[i][1])
            joined = merged
        return joined


_PIECES_MAX = 400  # below SQLite's 500 terms of a compound SELECT (the reads are a UNION ALL)


def _bucket_expr(ts: Any) -> Any:
    """bucket_of(ts) in SQL: an integer estimate (SQLite truncates, PostgreSQL rounds) corrected by comparing
    ``ts`` with the bucket's bounds, whole multiples of 900, exact in a double."""
    guess = sa.cast(ts / float(ROLLUP_BUCKET_S), sa.BigInteger)
    low = guess * ROLLUP_BUCKET_S
    return guess - sa.case((ts < low, 1), else_=0) + sa.case((ts >= low + ROLLUP_BUCKET_S, 1), else_=0)


def _durations_query(
    device_ids: Sequence[str], pieces: Sequence[tuple[float, float]], phase: float, gap_cap_s: float
) -> sa.Select[Any]:
    """Seconds per (device, label, bucket, part) of the rows in ``pieces``: one statement (see the module doc).

    The rows read are the pieces widened by the cap, so the first and last rows of each piece see their
    neighbours; ``part`` is 1 for rows at or after ``phase`` seconds into their bucket (where a day edge
    inside a bucket splits it), else 0.
    """
    c = predictions.c
    reach = gap_cap_s + 1.0
    reads: list[tuple[float, float]] = []  # the pieces widened, joined where they overlap
    for lo, hi in pieces:
        if reads and lo - reach <= reads[-1][1]:
            reads[-1] = (reads[-1][0], max(reads[-1][1], hi + reach))
        else:
            reads.append((lo - reach, hi + reach))
    # One range of ix_predictions_device_ts per read (UNION ALL): an OR of ranges makes SQLite scan
    # every row of the device instead.
    selects = [
        sa.select(c.device_id, c.run_id, c.ts, c.seq, c.label).where(
            c.device_id.in_(list(device_ids)), c.ts >= lo, c.ts < hi
        )
        for lo, hi in reads
    ]
    rows = (selects[0] if len(selects) == 1 else sa.union_all(*selects)).cte("near_rows")
    run = (rows.c.device_id, rows.c.run_id)
    order = (rows.c.ts, rows.c.seq)
    gaps = sa.select(
        rows.c.device_id,
        rows.c.label,
        rows.c.ts,
        (sa.func.lead(rows.c.ts).over(partition_by=run, order_by=order) - rows.c.ts).label("next_gap"),
        (rows.c.ts - sa.func.lag(rows.c.ts).over(partition_by=run, order_by=order)).label("prev_gap"),
    ).cte("gaps")
    g = gaps.c
    seconds = sa.case((g.next_gap <= gap_cap_s, g.next_gap), (g.prev_gap <= gap_cap_s, g.prev_gap), else_=gap_cap_s)
    inside = sa.or_(*(sa.and_(g.ts >= lo, g.ts < hi) for lo, hi in pieces))
    bucket = _bucket_expr(g.ts).label("bucket")
    keys: list[Any] = [g.device_id, g.label, bucket]
    if phase:
        keys.append(sa.case((g.ts >= _bucket_expr(g.ts) * ROLLUP_BUCKET_S + phase, 1), else_=0).label("part"))
    else:
        keys.append(sa.literal(1, sa.Integer).label("part"))  # no edge inside a bucket: one part
    return sa.select(*keys, sa.func.sum(seconds).label("seconds")).where(inside).group_by(*keys[: 4 if phase else 3])


_DEVICE_FIELDS = (
    "device_id",
    "status",
    "status_at",
    "stats",
    "stats_at",
    "stats_interval_s",
    "run_id",
    "model_id",
    "last_seen",
)

# Columns of the newest prediction as they come out of _devices_query (prefixed: the device row has run_id too).
_ACTIVITY_FIELDS = ("ts", "label", "confidence", "probabilities", "model_id", "run_id", "seq", "received_at")
_INT64 = 2**63


def _devices_query(where: Sequence[Any], limit: Optional[int], backend: str) -> sa.Select[Any]:
    """Devices matching ``where`` in id order (at most ``limit``), each joined with its newest prediction.

    The device rows are chosen (and limited) first; the newest prediction of each is then one probe of
    ``ix_predictions_device_ts``, so the cost follows the page, not the fleet or its history. PostgreSQL
    gets that probe as a ``LATERAL`` subquery, the one form its planner always runs per row (a correlated
    subquery in the join let it hash the whole predictions table instead, 0.7 s for a 1,000-device page
    of a 200,000-row table); SQLite, which has no ``LATERAL``, runs the correlated subquery in the join
    condition per row. JSON columns come back as text, decoded by :func:`_load_json`, which no stored
    value breaks.
    """
    d = devices.c
    page = (
        sa.select(*(d[name] for name in _DEVICE_FIELDS if name != "stats"), sa.cast(d.stats, sa.Text).label("stats"))
        .where(*where)
        .order_by(d.device_id)
    )
    if limit is not None:
        page = page.limit(limit)
    chosen = page.subquery("page")
    p = predictions.c
    newest_first = (p.ts.desc(), p.id.desc())
    if backend == "postgresql":
        newest: Any = (
            sa.select(p.id, *(p[name] for name in _ACTIVITY_FIELDS))
            .where(p.device_id == chosen.c.device_id)
            .order_by(*newest_first)
            .limit(1)
            .lateral("newest")
        )
        joined = chosen.outerjoin(newest, sa.true())
    else:
        newest_id = (
            sa.select(p.id)
            .where(p.device_id == chosen.c.device_id)
            .order_by(*newest_first)
            .limit(1)
            .correlate(chosen)
            .scalar_subquery()
        )
        newest = predictions.alias("newest")
        joined = chosen.outerjoin(newest, newest.c.id == newest_id)
    activity = [
        (sa.cast(newest.c[name], sa.Text) if name == "probabilities" else newest.c[name]).label(f"a_{name}")
        for name in _ACTIVITY_FIELDS
    ]
    return sa.select(chosen, newest.c.id.label("a_id"), *activity).select_from(joined).order_by(chosen.c.device_id)


def _id_contains(text: str) -> Any:
    """``device_id`` holds ``text``: LIKE with the wildcards escaped, lower-cased on both sides."""
    escaped = text.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return sa.func.lower(devices.c.device_id).like(sa.func.lower(f"%{escaped}%"), escape="/")


def _device_record(row: sa.RowMapping) -> DeviceRecord:
    activity = None
    ts = finite_number(row["a_ts"])
    if row["a_id"] is not None and ts is not None:
        probabilities = _load_json(row["a_probabilities"])
        activity = Activity(
            ts=ts,
            label=row["a_label"],
            confidence=finite_number(row["a_confidence"]) or 0.0,
            probabilities={
                k: v
                for k, v in (probabilities if isinstance(probabilities, dict) else {}).items()
                if finite_number(v) is not None
            },
            model_id=row["a_model_id"],
            run_id=row["a_run_id"],
            seq=row["a_seq"],
            received_at=finite_number(row["a_received_at"]) or 0.0,
        )
    stats = _load_json(row["stats"])
    return DeviceRecord(
        device_id=row["device_id"],
        status=row["status"],
        status_at=finite_number(row["status_at"]),
        stats=stats if isinstance(stats, dict) else None,
        stats_at=finite_number(row["stats_at"]),
        stats_interval_s=finite_number(row["stats_interval_s"]),
        run_id=row["run_id"],
        model_id=row["model_id"],
        last_seen=finite_number(row["last_seen"]) or 0.0,
        activity=activity,
    )


def finite_number(value: Any) -> Optional[float]:
    """A number JSON can carry, else None: bools, huge integers, NaN and infinities are not.

    The API serves stored numbers through it, and the ingest reads a device's stats through it.
    """
    if type(value) is float:  # the common case, first: a page calls this a dozen times per device
        return value if value - value == 0.0 else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            return None
        return number if math.isfinite(number) else None
    return None


def _json_float(text: str) -> Optional[float]:
    number = float(text)
    return number if number - number == 0.0 else None  # inf - inf and nan - nan are nan


def _json_int(text: str) -> Optional[int]:
    return int(text) if len(text) <= 20 and -_INT64 <= int(text) < _INT64 else None


def _load_json(text: Optional[str]) -> Any:
    """A stored JSON column for the API: numbers that do not fit a double or an int64 become None; junk is None.

    Whatever an older version stored (a 400-digit integer, ``1e999``, ``NaN``, text that is not JSON)
    must not turn a device listing into a 500.
    """
    if text is None:
        return None
    try:
        return json.loads(text, parse_int=_json_int, parse_float=_json_float, parse_constant=lambda _: None)
    except (ValueError, RecursionError):
        return None


_INSERT_COLUMNS = (
    "device_id",
    "run_id",
    "seq",
    "ts",
    "label",
    "confidence",
    "probabilities",
    "model_id",
    "variant",
    "inference_ms",
    "received_at",
)
_PG_TYPES = ("text", "text", "int8", "float8", "text", "float8", "json", "text", "text", "float8", "float8")
_PG_INSERT = (
    f"INSERT INTO predictions ({', '.join(_INSERT_COLUMNS)}) SELECT {', '.join(_INSERT_COLUMNS)} "
    f"FROM json_to_recordset(%s::json) AS r({', '.join(f'{c} {t}' for c, t in zip(_INSERT_COLUMNS, _PG_TYPES))}) "
    "ON CONFLICT DO NOTHING RETURNING device_id, run_id, seq, ts"
)
_PG_BUMP = (
    "INSERT INTO rollup_versions (device_id, bucket, version) SELECT d, b, 1 FROM unnest(%s::text[], %s::int8[]) "
    "AS k(d, b) ON CONFLICT (device_id, bucket) DO UPDATE SET version = rollup_versions.version + 1"
)
_SQLITE_BUMP = (
    "INSERT INTO rollup_versions (device_id, bucket, version) VALUES (?, ?, 1) "
    "ON CONFLICT (device_id, bucket) DO UPDATE SET version = version + 1"
)
_PG_CLEAR = (
    "DELETE FROM activity_rollup r USING unnest(%s::text[], %s::int8[]) AS k(d, b) "
    "WHERE r.device_id = k.d AND r.bucket = k.b"
)
_SQLITE_CLEAR = "DELETE FROM activity_rollup WHERE device_id = ? AND bucket = ?"
_SQLITE_INSERT = (
    f"INSERT INTO predictions ({', '.join(_INSERT_COLUMNS)}) VALUES ({', '.join('?' for _ in _INSERT_COLUMNS)}) "
    "ON CONFLICT DO NOTHING"
)


def _json_text(value: Any) -> str:
    """A JSON column's text (what SQLAlchemy's JSON type would store, without its per-row overhead)."""
    if _orjson_dumps is not None:
        try:
            return _orjson_dumps(value).decode()
        except TypeError:  # what orjson does not serialise (an int beyond 64 bits): the standard encoder
            pass
    return json.dumps(value)


def _load_orjson_dumps() -> Any:
    try:
        import orjson
    except ImportError:
        return None
    return orjson.dumps


_orjson_dumps = _load_orjson_dumps()


def _values(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        row["device_id"],
        row["run_id"],
        row["seq"],
        row["ts"],
        row["label"],
        row["confidence"],
        _json_text(row["probabilities"]),
        row["model_id"],
        row.get("variant"),
        row.get("inference_ms"),
        row["received_at"],
    )


def _key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """A prediction's identity in the store (``uq_predictions_key``)."""
    return (row["device_id"], row["run_id"], row["seq"], row["ts"])


def _book(row: Any) -> SeqBook:
    return SeqBook(row["device_id"], row["run_id"], int(row["first_seq"]), int(row["high_seq"]), int(row["accounted"]))


def _reason(exc: BaseException) -> str:
    """The driver's one-line reason, without SQLAlchemy's statement dump and background link."""
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    # WAL: readers (web requests) do not wait for the writer (ingest) and vice versa. NORMAL sync is
    # durable across a process crash in WAL mode (only a power cut may lose the last transactions).
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def open_store_url(url: str, *, retention_days: float = 30.0) -> Store:
    """A :class:`Store` on an SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://...``)."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise StoreError(f"--db-url {url!r}: not a database URL (sqlite:///FILE or postgresql+psycopg://...)") from None
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("psycopg2", "psycopg2cffi"):
        raise StoreError("--db-url: use the psycopg 3 driver, postgresql+psycopg://...")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(
            f"--db-url {parsed.render_as_string(hide_password=True)}: only SQLite and PostgreSQL are supported"
        )
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3 (the web extra), not psycopg2
    shown = parsed.render_as_string(hide_password=True)
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = sa.create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 5.0})
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = sa.create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=5)
        with engine.connect():
            pass
    except (sa.exc.SQLAlchemyError, ImportError) as exc:
        raise StoreError(f"database {shown}: cannot connect: {_reason(exc)}") from exc
    return Store(engine, retention_days=retention_days)


def open_store(cfg: ServeConfig) -> Store:
    """The store ``edge-har serve`` was asked for: ``cfg.db_url`` when given, else SQLite at ``cfg.db_path``."""
    if cfg.db_url:
        store = open_store_url(cfg.db_url, retention_days=cfg.retention_days)
    else:
        path = Path(cfg.db_path).expanduser()
        if not path.parent.is_dir():
            raise StoreError(f"--db {path}: the folder {path.parent} does not exist")
        store = open_store_url(f"sqlite:///{path.resolve()}", retention_days=cfg.retention_days)
    log.info("store: %s (retention %g days)", store.describe(), cfg.retention_days)
    return store
