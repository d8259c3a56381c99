"""Where ``edge-har serve`` keeps what the fleet published: predictions, status changes, last stats.

One small data layer on SQLAlchemy **Core** (tables and SQL expressions, no ORM: the rows are plain
records and the hot path is a batched ``executemany``) serves SQLite (the default, one file, WAL so the
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
* **The day summary is computed by the database** (:meth:`Store.summary`): each prediction lasts until
  the next prediction of the same run (``LEAD`` over the run ordered by ``ts``; devices older than
  the run id, all in run ``''``, count a restart as a gap), capped at
  :data:`GAP_CAP_S` so that a device switched off for an hour does not count that hour as its last
  activity; the last prediction of a run (no next one) lasts the run's mean capped gap, i.e. about one
  window stride. The sum per label is time spent per activity. This counts what the windows covered, not
  ``count * stride``, so it stays right when a device drops windows or runs at another stride.
"""

from __future__ import annotations

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

__all__ = ["GAP_CAP_S", "Store", "StoreError", "open_store", "open_store_url"]

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
        self._returning = bool(engine.dialect.insert_executemany_returning)
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
        """Insert a batch (one ``executemany``); re-deliveries are skipped. Returns the rows new to the store.

        Each row has the ``predictions`` columns except ``id``. The device table's ``last_seen``,
        ``run_id`` and ``model_id`` follow the newest row of each device in the batch.
        """
        if not rows:
            return 0
        newest: dict[str, Mapping[str, Any]] = {}
        for row in rows:
            held = newest.get(row["device_id"])
            if held is None or row["received_at"] >= held["received_at"]:
                newest[row["device_id"]] = row
        stmt = self._insert(predictions).on_conflict_do_nothing()
        with self.engine.begin() as conn:
            if self._returning:
                # One multi-row INSERT per batch (SQLAlchemy's insertmanyvalues); RETURNING lists the rows
                # actually inserted, the only exact count on psycopg, whose executemany rowcount is -1.
                added = len(conn.execute(stmt.returning(predictions.c.id), [dict(r) for r in rows]).all())
            else:  # SQLite older than 3.35: no RETURNING; sqlite3 sums executemany's rowcount
                added = max(0, conn.execute(stmt, [dict(r) for r in rows]).rowcount)
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
        return added

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
        """Delete predictions and status changes received more than ``retention_days`` ago; rows deleted.

        Devices not heard of since then go too, so the live page does not list a fleet long gone.
        """
        cutoff = (time.time() if now is None else now) - self.retention_days * 86400.0
        with self.engine.begin() as conn:
            deleted = conn.execute(sa.delete(predictions).where(predictions.c.received_at < cutoff)).rowcount
            deleted += conn.execute(sa.delete(status_changes).where(status_changes.c.received_at < cutoff)).rowcount
            conn.execute(sa.delete(devices).where(devices.c.last_seen < cutoff))
        return int(deleted)

    # ------------------------------------------------------------------ reads (request threads)

    def has_device(self, device_id: str) -> bool:
        with self.engine.connect() as conn:
            return (
                conn.execute(sa.select(devices.c.device_id).where(devices.c.device_id == device_id)).first() is not None
            )

    def devices(self) -> list[DeviceRecord]:
        """Every device with its newest prediction (one indexed query per device: fleets are small)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(devices).order_by(devices.c.device_id)).mappings().all()
            out = []
            for row in rows:
                newest = (
                    conn.execute(
                        sa.select(predictions)
                        .where(predictions.c.device_id == row["device_id"])
                        .order_by(predictions.c.ts.desc())
                        .limit(1)
                    )
                    .mappings()
                    .first()
                )
                activity = None
                if newest is not None:
                    activity = Activity(
                        ts=newest["ts"],
                        label=newest["label"],
                        confidence=newest["confidence"],
                        probabilities=dict(newest["probabilities"]),
                        model_id=newest["model_id"],
                        run_id=newest["run_id"],
                        seq=newest["seq"],
                        received_at=newest["received_at"],
                    )
                out.append(DeviceRecord(**{k: row[k] for k in _DEVICE_FIELDS}, activity=activity))
        return out

    def history(
        self, device_id: str, since: float, limit: int = HISTORY_LIMIT, step_s: Optional[float] = None
    ) -> list[dict[str, Any]]:
        """Predictions of ``device_id`` with ``ts > since``, oldest first, at most ``limit`` (the newest kept).

        ``step_s`` thins them out in the database to the newest prediction of each ``step_s`` seconds since
        ``since``: an hour of a 7 windows/s device is 25,000 rows, more than a 500-pixel timeline can show.
        """
        c = predictions.c
        columns = (c.ts, c.label, c.confidence, c.run_id, c.seq)
        where = (c.device_id == device_id, c.ts > since)
        if step_s is None:
            query = sa.select(*columns).where(*where).order_by(c.ts.desc()).limit(limit)
        else:
            # Bucket = whole milliseconds since `since` // step in milliseconds: integer arithmetic, which SQLite
            # and PostgreSQL agree on (no floor(), which SQLite may lack), exact to the millisecond.
            millis = sa.cast((c.ts - since) * 1000.0, sa.BigInteger)
            bucket = millis // sa.literal(max(1, round(step_s * 1000.0)), sa.BigInteger)
            newest = sa.func.row_number().over(partition_by=bucket, order_by=(c.ts.desc(), c.seq.desc()))
            ranked = sa.select(*columns, newest.label("newest")).where(*where).subquery()
            query = (
                sa.select(*(ranked.c[col.name] for col in columns))
                .where(ranked.c.newest == 1)
                .order_by(ranked.c.ts.desc())
                .limit(limit)
            )
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        rows.reverse()
        return rows

    def status_history(self, device_id: str, since: float) -> list[dict[str, Any]]:
        """Status changes of ``device_id`` received after ``since``, oldest first."""
        c = status_changes.c
        query = (
            sa.select(c.status, c.received_at)
            .where(c.device_id == device_id, c.received_at > since)
            .order_by(c.received_at, c.id)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def summary(self, device_id: str, start: float, end: float, gap_cap_s: float = GAP_CAP_S) -> dict[str, float]:
        """Seconds per label for predictions with ``start <= ts < end``, computed in SQL (see the module doc)."""
        c = predictions.c
        run = (c.device_id, c.run_id)
        gaps = (
            sa.select(
                c.label,
                c.run_id,
                (sa.func.lead(c.ts).over(partition_by=run, order_by=(c.ts, c.seq)) - c.ts).label("gap"),
            )
            .where(c.device_id == device_id, c.ts >= start, c.ts < end)
            .cte("gaps")
        )
        capped_gap = sa.case((gaps.c.gap > gap_cap_s, gap_cap_s), else_=gaps.c.gap)
        mean_gap = sa.func.avg(capped_gap).over(partition_by=gaps.c.run_id)
        durations = sa.select(gaps.c.label, sa.func.coalesce(capped_gap, mean_gap, 0.0).label("seconds")).cte(
            "durations"
        )
        query = (
            sa.select(durations.c.label, sa.func.sum(durations.c.seconds).label("seconds"))
            .group_by(durations.c.label)
            .order_by(sa.func.sum(durations.c.seconds).desc(), durations.c.label)
        )
        with self.engine.connect() as conn:
            return {label: float(seconds or 0.0) for label, seconds in conn.execute(query)}

    def counts(self) -> dict[str, int]:
        """Rows per table (the benchmark and the tests read these)."""
        with self.engine.connect() as conn:
            return {
                t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() or 0)
                for t in (predictions, status_changes, devices)
            }


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
