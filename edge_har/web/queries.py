"""The read queries behind the per-device API of ``edge-har serve``: ranges, outages, summaries, exports.

They run on the store's engine and tables (:mod:`edge_har.web.store` owns the schema and the writes) and
answer one request each with a bounded number of statements whatever the range: a history is at most
``limit + 1`` rows, a range summary reads the rollups of its whole 15-minute buckets and computes the
rest in one statement, an export is read in keyset chunks so a month of predictions is never held in
memory, and the current stretch of a page of devices is one statement (usually none: :class:`CurrentStretches` remembers what it found).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import sqlalchemy as sa

from edge_har.web.store import GAP_CAP_S, Store, finite_number, predictions, status_changes

__all__ = [
    "CurrentStretches",
    "Stretch",
    "export_rows",
    "history_range",
    "labels_seen",
    "outages",
    "ping",
    "predictions_per_second",
    "range_summary",
    "status_before",
    "status_range",
]

DAY_S = 86400.0
DOWN_STATUSES = ("stopped", "offline")  # statuses during which a device publishes nothing on purpose
EXPORT_CHUNK = 5000  # rows per statement of an export: a short transaction each, bounded memory


def _prediction(row: Any) -> Optional[dict[str, Any]]:
    ts = finite_number(row["ts"])
    if ts is None:
        return None
    return {
        "ts": ts,
        "label": row["label"],
        "confidence": finite_number(row["confidence"]),
        "run_id": row["run_id"],
        "seq": int(row["seq"]),
    }


def history_range(
    store: Store, device_id: str, since: float, until: float, limit: int, step_s: Optional[float] = None
) -> tuple[list[dict[str, Any]], bool]:
    """Predictions with ``since < ts <= until``, oldest first, at most ``limit`` (the newest kept); truncated?

    ``step_s`` keeps the newest prediction of each ``step_s`` seconds since ``since`` (integer millisecond
    buckets, as :meth:`Store.history`). One statement reading ``limit + 1`` rows tells whether more existed.
    """
    c = predictions.c
    columns = (c.ts, c.label, c.confidence, c.run_id, c.seq)
    where = (c.device_id == device_id, c.ts > since, c.ts <= until)
    query: sa.Select[Any]
    if step_s is None:
        query = sa.select(*columns).where(*where).order_by(c.ts.desc(), c.seq.desc()).limit(limit + 1)
    else:
        millis = sa.cast((c.ts - since) * 1000.0, sa.BigInteger)
        bucket = millis // sa.literal(max(1, round(step_s * 1000.0)), sa.BigInteger)
        newest = sa.func.row_number().over(partition_by=bucket, order_by=(c.ts.desc(), c.seq.desc()))
        ranked = sa.select(*columns, newest.label("newest")).where(*where).subquery()
        query = (
            sa.select(*(ranked.c[col.name] for col in columns))
            .where(ranked.c.newest == 1)
            .order_by(ranked.c.ts.desc(), ranked.c.seq.desc())
            .limit(limit + 1)
        )
    with store.engine.connect() as conn:
        rows = list(conn.execute(query).mappings())
    truncated = len(rows) > limit
    out = [p for p in (_prediction(r) for r in rows[:limit]) if p is not None]
    out.reverse()
    return out, truncated


def status_range(store: Store, device_id: str, since: float, until: float) -> list[dict[str, Any]]:
    """Status changes with ``since < received_at <= until``, oldest first."""
    c = status_changes.c
    query = (
        sa.select(c.status, c.received_at)
        .where(c.device_id == device_id, c.received_at > since, c.received_at <= until)
        .order_by(c.received_at, c.id)
    )
    with store.engine.connect() as conn:
        return [
            {"status": r["status"], "received_at": finite_number(r["received_at"]) or 0.0}
            for r in conn.execute(query).mappings()
        ]


def status_before(store: Store, device_id: str, since: float) -> Optional[dict[str, Any]]:
    """The last status change at or before ``since`` (the device's state when the range starts), or None."""
    c = status_changes.c
    query = (
        sa.select(c.status, c.received_at)
        .where(c.device_id == device_id, c.received_at <= since)
        .order_by(c.received_at.desc(), c.id.desc())
        .limit(1)
    )
    with store.engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    if row is None:
        return None
    return {"status": row["status"], "received_at": finite_number(row["received_at"]) or 0.0}


def outages(
    store: Store,
    device_id: str,
    since: float,
    until: float,
    before: Optional[dict[str, Any]],
    statuses: Sequence[dict[str, Any]],
    limit: int,
    gap_cap_s: float = GAP_CAP_S,
    now: Optional[float] = None,
) -> list[dict[str, Any]]:
    """Periods of the range without predictions: gaps over ``gap_cap_s`` and stopped/offline statuses.

    A ``no_data`` period runs between two consecutive predictions of the range more than ``gap_cap_s``
    apart (found in SQL with ``LAG``, on every row, not on a thinned or truncated history), and at either
    edge: from the range start to its first prediction when the one before that is more than the cap
    older (or there is none), and from its last prediction to the range end or ``now``, whichever is
    earlier, when that is more than the cap (a range with no prediction is one such period). An edge
    period a stopped/offline status explains is left to that status. A ``stopped`` or ``offline``
    period runs from that status change (or the range start, when ``before`` says so) to the next change
    or the range end. Sorted by start; at most ``limit`` (the newest kept).
    """
    c = predictions.c
    previous = sa.func.lag(c.ts).over(order_by=c.ts)  # ts alone: ix_predictions_device_ts covers the scan
    steps = (
        sa.select(previous.label("start"), c.ts.label("end"))
        .where(c.device_id == device_id, c.ts > since, c.ts <= until)
        .subquery()
    )
    gaps = (
        sa.select(steps.c.start, steps.c.end)
        .where(steps.c.end - steps.c.start > gap_cap_s)
        .order_by(steps.c.end.desc())
        .limit(limit)
    )
    found: list[dict[str, Any]] = []
    with store.engine.connect() as conn:
        for start, end in conn.execute(gaps):
            start, end = finite_number(start), finite_number(end)
            if start is not None and end is not None:
                found.append({"start": start, "end": end, "reason": "no_data"})
    changes = ([{"status": before["status"], "received_at": since}] if before is not None else []) + list(statuses)
    down: list[tuple[float, float]] = []
    for i, change in enumerate(changes):
        if change["status"] not in DOWN_STATUSES:
            continue
        start = max(since, change["received_at"])
        end = min(until, changes[i + 1]["received_at"]) if i + 1 < len(changes) else until
        if end > start:
            found.append({"start": start, "end": end, "reason": change["status"]})
            down.append((start, end))
    for start, end in _edge_silences(store, device_id, since, until, gap_cap_s, time.time() if now is None else now):
        for d_start, d_end in down:  # the part a status explains is that status's
            if d_start <= start < d_end:
                start = d_end
            if d_start < end <= d_end:
                end = d_start
        if end - start > 0:
            found.append({"start": start, "end": end, "reason": "no_data"})
    found.sort(key=lambda o: (o["start"], o["end"]))
    return found[-limit:]


def _edge_silences(
    store: Store, device_id: str, since: float, until: float, gap_cap_s: float, now: float
) -> list[tuple[float, float]]:
    """The range's silent edges (see :func:`outages`): three index probes of ``ix_predictions_device_ts``."""
    c = predictions.c
    mine = c.device_id == device_id
    with store.engine.connect() as conn:
        first, last = conn.execute(
            sa.select(sa.func.min(c.ts), sa.func.max(c.ts)).where(mine, c.ts > since, c.ts <= until)
        ).one()
        before = conn.execute(sa.select(sa.func.max(c.ts)).where(mine, c.ts <= since)).scalar()
    first, last, before = finite_number(first), finite_number(last), finite_number(before)
    end = min(until, now)
    out: list[tuple[float, float]] = []
    if first is None or last is None:  # nothing in the range
        if end > since and end - (since if before is None else before) > gap_cap_s:
            out.append((since, end))
        return out
    # a device first heard of inside the range: only a silence longer than the cap, as between predictions
    if first - (since if before is None else before) > gap_cap_s:
        out.append((since, first))
    if end - last > gap_cap_s:
        out.append((last, end))
    return out


# ---------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class DaySpan:
    """One calendar day of a range at the viewer's offset, clipped to the range."""

    day: dt.date
    start: float
    end: float


def day_spans(since: float, until: float, utc_offset_min: int) -> list[DaySpan]:
    """The calendar days (at ``utc_offset_min``) that ``[since, until)`` touches, each clipped to it."""
    tz = dt.timezone(dt.timedelta(minutes=utc_offset_min))
    first = dt.datetime.fromtimestamp(since, tz).date()
    midnight = dt.datetime.combine(first, dt.time(), tz).timestamp()
    spans = []
    k = 0
    while midnight + k * DAY_S < until:
        lo, hi = midnight + k * DAY_S, midnight + (k + 1) * DAY_S
        spans.append(DaySpan(first + dt.timedelta(days=k), max(lo, since), min(hi, until)))
        k += 1
    return spans


def range_summary(
    store: Store, device_id: str, since: float, until: float, utc_offset_min: int, gap_cap_s: float = GAP_CAP_S
) -> list[tuple[DaySpan, dict[str, float]]]:
    """Seconds per label for each day of ``[since, until)``, through the store's rollups.

    Each day is counted as :meth:`Store.summary` counts it (a prediction's duration depends on its
    neighbours within ``gap_cap_s``, not on where the day ends), so the days add up to the range and equal
    per-day summaries; the whole 15-minute buckets of a month come from the rollups, so a second request
    reads a few thousand rollup rows instead of every prediction.
    """
    spans = day_spans(since, until, utc_offset_min)
    if not spans:
        return []
    per_span = store.activity_seconds([device_id], [(span.start, span.end) for span in spans], gap_cap_s)
    return [(span, each[device_id]) for span, each in zip(spans, per_span)]


# ---------------------------------------------------------------------------- the current stretch


@dataclass(frozen=True)
class Stretch:
    """A device's newest unbroken stretch of one label: same run, no gap over the cap."""

    label: str
    run_id: str
    since: float
    last_ts: float
    found_at: float = 0.0  # time.monotonic() when it was last found from scratch


class CurrentStretches:
    """Where each device's current stretch began, for a page of devices in one statement at most.

    A stretch is remembered with the newest prediction it was found for. The next page reuses it when that
    prediction is still the newest (no statement), extends it when newer rows continue it (the statement
    reads only those rows), and otherwise finds it anew from the last ``scan_s`` seconds, reading up to
    ``max_scan_s`` for the devices whose stretch is longer than that (a second statement, once). A
    stretch is found from scratch again after ``recheck_s``: a device's offline queue delivered late may
    fill a gap that had ended the stretch, and only a fresh scan sees rows older than the newest.
    """

    def __init__(
        self,
        store: Store,
        *,
        scan_s: float = 600.0,
        max_scan_s: float = DAY_S,
        gap_cap_s: float = GAP_CAP_S,
        recheck_s: float = 300.0,
    ) -> None:
        self.store = store
        self.recheck_s = recheck_s
        self.scan_s = scan_s
        self.max_scan_s = max_scan_s
        self.gap_cap_s = gap_cap_s
        self._known: dict[str, Stretch] = {}
        self._lock = threading.Lock()

    def for_devices(self, newest: dict[str, tuple[str, str, float]]) -> dict[str, Stretch]:
        """``newest``: device -> (label, run_id, ts) of its newest prediction; the stretch of each."""
        out: dict[str, Stretch] = {}
        clock = time.monotonic()
        with self._lock:
            known = {d: self._known.get(d) for d in newest}
        for device_id, held in known.items():
            if held is not None and clock - held.found_at > self.recheck_s:
                known[device_id] = None
        extend: dict[str, float] = {}  # device -> the lowest ts the statement reads
        for device_id, (label, run_id, ts) in newest.items():
            held = known[device_id]
            if held is not None and held.last_ts <= ts:
                if held.last_ts == ts and (held.label, held.run_id) == (label, run_id):
                    out[device_id] = held
                else:
                    # Newer rows: the stretch goes on from the remembered row, or (another label or run) a
                    # new one began after it, so only the rows since it are read, whatever the device's rate.
                    extend[device_id] = held.last_ts
            else:
                known[device_id] = None
                extend[device_id] = ts - self.scan_s
        if extend:
            found = self._scan(newest, extend)
            longer: dict[str, float] = {}
            for device_id, (first_ts, break_ts) in found.items():
                label, run_id, ts = newest[device_id]
                held = known[device_id]
                found_at = clock if held is None else held.found_at
                if held is not None and break_ts is None and (held.label, held.run_id) != (label, run_id):
                    held = known[device_id] = None  # the remembered row is gone (pruned): read the device anew
                    found_at = clock
                    extend[device_id] = ts - self.scan_s
                    first_ts, break_ts = self._scan(newest, {device_id: ts - self.scan_s})[device_id]
                if break_ts is not None:
                    since = break_ts
                elif held is not None:
                    since = held.since
                elif first_ts - extend[device_id] <= self.gap_cap_s and ts - extend[device_id] < self.max_scan_s:
                    longer[device_id] = ts - self.max_scan_s  # a row before the rows read may continue it
                    since = first_ts
                else:
                    since = first_ts
                out[device_id] = Stretch(label, run_id, since, ts, found_at)
            if longer:
                for device_id, (first_ts, break_ts) in self._scan(newest, longer).items():
                    label, run_id, ts = newest[device_id]
                    since = first_ts if break_ts is None else break_ts
                    out[device_id] = Stretch(label, run_id, since, ts, clock)
        with self._lock:
            if len(self._known) > 100_000:  # a bound on memory; a cleared device is found anew once
                self._known.clear()
            self._known.update(out)
        return out

    def _scan(
        self, newest: dict[str, tuple[str, str, float]], lowest: dict[str, float]
    ) -> dict[str, tuple[float, Optional[float]]]:
        """Per device: the oldest ts read and the newest stretch start found (None: none within the rows read).

        A row starts a stretch when the row before it (of the rows read) has another label or run, or is more
        than the cap older. Rows are read from ``lowest[device]`` to the device's newest prediction.
        """
        c = predictions.c
        bounds = _bounds_table(self.store.backend, [(d, low, newest[d][2]) for d, low in lowest.items()])
        order = (c.ts, c.seq)
        rows = (
            sa.select(
                c.device_id,
                c.ts,
                c.label,
                c.run_id,
                sa.func.lag(c.ts).over(partition_by=c.device_id, order_by=order).label("p_ts"),
                sa.func.lag(c.label).over(partition_by=c.device_id, order_by=order).label("p_label"),
                sa.func.lag(c.run_id).over(partition_by=c.device_id, order_by=order).label("p_run"),
            )
            .select_from(
                bounds.join(
                    predictions,
                    sa.and_(c.device_id == bounds.c.device_id, c.ts >= bounds.c.low, c.ts <= bounds.c.high),
                )
            )
            .subquery()
        )
        starts = sa.and_(
            rows.c.p_ts.is_not(None),
            sa.or_(
                rows.c.ts - rows.c.p_ts > self.gap_cap_s,
                rows.c.label != rows.c.p_label,
                rows.c.run_id != rows.c.p_run,
            ),
        )
        query = sa.select(rows.c.device_id, sa.func.min(rows.c.ts), sa.func.max(sa.case((starts, rows.c.ts)))).group_by(
            rows.c.device_id
        )
        out: dict[str, tuple[float, Optional[float]]] = {}
        with self.store.engine.connect() as conn:
            for device_id, first_ts, break_ts in conn.execute(query):
                first = finite_number(first_ts)
                if first is not None:
                    out[device_id] = (first, finite_number(break_ts))
        for device_id in lowest:  # no row read (a clock jump, a pruned row): the newest prediction alone
            out.setdefault(device_id, (newest[device_id][2], None))
        return out


def _bounds_table(backend: str, bounds: Sequence[tuple[str, float, float]]) -> Any:
    """``(device_id, low, high)`` rows as a table from ONE bound JSON parameter.

    One parameter whatever the page size (a 1,000-device page would otherwise bind thousands), and a
    join the planner runs as one index range scan of ``ix_predictions_device_ts`` per device (a CASE per
    row over the device list costs 0.3 s for 1,000 devices of 20 rows each, this 0.08 s).
    """
    doc = json.dumps([{"device_id": d, "low": lo, "high": hi} for d, lo, hi in bounds])
    if backend == "postgresql":
        sql = (
            "SELECT device_id, low, high FROM jsonb_to_recordset(CAST(:bounds AS jsonb)) "
            "AS b(device_id text, low double precision, high double precision)"
        )
    else:
        sql = (
            "SELECT json_extract(value, '$.device_id') AS device_id, json_extract(value, '$.low') AS low, "
            "json_extract(value, '$.high') AS high FROM json_each(:bounds)"
        )
    text = sa.text(sql).bindparams(bounds=doc).columns(device_id=sa.String, low=sa.Double, high=sa.Double)
    return text.subquery("bounds")


# ---------------------------------------------------------------------------- export, labels, health, rates

EXPORT_COLUMNS = (
    "time_utc",
    "ts",
    "label",
    "confidence",
    "run_id",
    "seq",
    "model_id",
    "variant",
    "inference_ms",
    "received_at",
    "probabilities",
)


def export_rows(store: Store, device_id: str, since: float, until: float) -> Iterator[dict[str, Any]]:
    """Every prediction with ``since < ts <= until``, oldest first, read :data:`EXPORT_CHUNK` rows at a time.

    Keyset chunks on ``(ts, id)``: each chunk is its own short statement (no connection held while the
    client reads), and memory stays one chunk whatever the range.
    """
    c = predictions.c
    columns = (c.id, c.ts, c.label, c.confidence, c.run_id, c.seq, c.model_id, c.variant, c.inference_ms)
    after: Optional[tuple[float, int]] = None
    while True:
        where = [c.device_id == device_id, c.ts > since, c.ts <= until]
        if after is not None:
            where.append(sa.or_(c.ts > after[0], sa.and_(c.ts == after[0], c.id > after[1])))
        query = (
            sa.select(*columns, c.received_at, sa.cast(c.probabilities, sa.Text).label("probabilities"))
            .where(*where)
            .order_by(c.ts, c.id)
            .limit(EXPORT_CHUNK)
        )
        with store.engine.connect() as conn:
            chunk = [dict(r) for r in conn.execute(query).mappings()]
        yield from chunk
        if len(chunk) < EXPORT_CHUNK:
            return
        after = (chunk[-1]["ts"], chunk[-1]["id"])


def labels_seen(store: Store) -> list[str]:
    """Every distinct label in the store (a DISTINCT over the whole table: cache the answer)."""
    with store.engine.connect() as conn:
        return [str(label) for (label,) in conn.execute(sa.select(predictions.c.label).distinct())]


def predictions_per_second(
    store: Store, device_ids: Sequence[str], now: float, window_s: float = 60.0
) -> dict[str, float]:
    """Predictions stored per second over the last ``window_s`` (by ``received_at``), per device, one statement."""
    if not device_ids:
        return {}
    c = predictions.c
    query = (
        sa.select(c.device_id, sa.func.count())
        .where(c.received_at > now - window_s, c.device_id.in_(list(device_ids)))
        .group_by(c.device_id)
    )
    with store.engine.connect() as conn:
        counts = {device_id: int(n) for device_id, n in conn.execute(query)}
    return {device_id: counts.get(device_id, 0) / window_s for device_id in device_ids}


def ping(store: Store, timeout_s: float) -> None:
    """Raise unless the database answers ``SELECT 1``.

    PostgreSQL: on the engine's pool (pre-pinged), ``timeout_s`` as the statement timeout. SQLite: on a
    fresh connection to the file, because a pooled connection's open file handle hides a file that was
    deleted or moved away.
    """
    if store.backend == "sqlite":
        path = store.engine.url.database
        if not path or path == ":memory:":
            with store.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return
        raw = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=rw", uri=True, timeout=timeout_s)
        try:
            raw.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            raw.close()
        return
    with store.engine.connect() as conn:
        conn.execute(sa.text(f"SET LOCAL statement_timeout = {max(1, int(timeout_s * 1000))}"))
        conn.execute(sa.text("SELECT 1"))


def export_line(row: dict[str, Any]) -> list[str]:
    """One CSV record of :func:`export_rows`' row, each cell safe to open in a spreadsheet."""
    ts = finite_number(row["ts"])
    when = (
        dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if ts is not None and 0 <= ts < 253402300800.0
        else ""
    )
    probabilities = row["probabilities"]
    try:
        probabilities = json.dumps(json.loads(probabilities), separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        probabilities = ""
    return [
        when,
        _number(ts),
        safe_cell(str(row["label"])),
        _number(finite_number(row["confidence"])),
        safe_cell(str(row["run_id"])),
        str(row["seq"]),
        safe_cell(str(row["model_id"])),
        safe_cell(str(row["variant"] or "")),
        _number(finite_number(row["inference_ms"])),
        _number(finite_number(row["received_at"])),
        probabilities,
    ]


def _number(value: Optional[float]) -> str:
    return "" if value is None else repr(value)


def safe_cell(text: str) -> str:
    """A text cell a spreadsheet shows as text: one starting with = + - @ (or a tab or CR) gets a leading '."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
