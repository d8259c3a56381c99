"""Reads of the events the devices published (a fall): the list, each device's last hour, each device's last one.

Each read is one statement whatever the fleet: a page of devices gets its events of the last hour (at most
:data:`PER_DEVICE_MAX` each, the newest) and its newest event of each type with a window function, never a
query per device. Times are the device's (``impact_ts``, ``detected_ts``); ``received_at`` is the server's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import sqlalchemy as sa

from edge_har.web.store import Store, events, finite_number

__all__ = ["EVENTS_MAX", "PER_DEVICE_MAX", "event_list", "last_events", "public_event", "recent_events"]

EVENTS_MAX = 1000  # events one request lists at most
PER_DEVICE_MAX = 100  # events of one device's hour a page of devices carries (a 30 s refractory allows 120)

_SHOWN = ("event_type", "impact_ts", "detected_ts", "confidence", "windows", "first_seq", "last_seq")
_COLUMNS = (events.c.device_id, events.c.run_id, events.c.model_id, events.c.variant, events.c.received_at) + tuple(
    events.c[name] for name in _SHOWN
)


def public_event(row: Union[Mapping[str, Any], sa.RowMapping]) -> dict[str, Any]:
    """An event as the API and the push stream show it (the stored columns but ``id``)."""
    return {
        "device_id": row["device_id"],
        "event_type": row["event_type"],
        "impact_ts": finite_number(row["impact_ts"]),
        "detected_ts": finite_number(row["detected_ts"]),
        "confidence": finite_number(row["confidence"]),
        "windows": int(row["windows"]),
        "first_seq": int(row["first_seq"]),
        "last_seq": int(row["last_seq"]),
        "model_id": row["model_id"],
        "variant": row["variant"],
        "run_id": row["run_id"],
        "received_at": finite_number(row["received_at"]),
    }


def event_list(
    store: Store,
    *,
    since: float,
    until: float,
    limit: int,
    device_id: Optional[str] = None,
    event_type: Optional[str] = None,
) -> tuple[list[dict[str, Any]], bool]:
    """The newest ``limit`` events with ``since < impact_ts <= until``, newest first, and whether more matched."""
    c = events.c
    where = [c.impact_ts > since, c.impact_ts <= until]
    if device_id is not None:
        where.append(c.device_id == device_id)
    if event_type is not None:
        where.append(c.event_type == event_type)
    query = sa.select(*_COLUMNS).where(*where).order_by(c.impact_ts.desc(), c.id.desc()).limit(limit + 1)
    with store.engine.connect() as conn:
        rows = [public_event(row) for row in conn.execute(query).mappings()]
    return rows[:limit], len(rows) > limit


def recent_events(
    store: Store, device_ids: Sequence[str], since: float, until: float, per_device: int = PER_DEVICE_MAX
) -> dict[str, list[dict[str, Any]]]:
    """Each device's events with ``since < impact_ts <= until`` (its newest ``per_device``), oldest first."""
    if not device_ids:
        return {}
    c = events.c
    newest = sa.func.row_number().over(partition_by=c.device_id, order_by=(c.impact_ts.desc(), c.id.desc()))
    ranked = (
        sa.select(*_COLUMNS, newest.label("newest"))
        .where(c.device_id.in_(list(device_ids)), c.impact_ts > since, c.impact_ts <= until)
        .subquery()
    )
    query = sa.select(ranked).where(ranked.c.newest <= per_device).order_by(ranked.c.device_id, ranked.c.impact_ts)
    out: dict[str, list[dict[str, Any]]] = {device_id: [] for device_id in device_ids}
    with store.engine.connect() as conn:
        for row in conn.execute(query).mappings():
            out[row["device_id"]].append(public_event(row))
    return out


def last_events(store: Store, device_ids: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Each device's newest event of each type it has published (within retention): device -> type -> event."""
    if not device_ids:
        return {}
    c = events.c
    newest = sa.func.row_number().over(
        partition_by=(c.device_id, c.event_type), order_by=(c.impact_ts.desc(), c.id.desc())
    )
    ranked = sa.select(*_COLUMNS, newest.label("newest")).where(c.device_id.in_(list(device_ids))).subquery()
    query = sa.select(ranked).where(ranked.c.newest == 1).order_by(ranked.c.device_id, ranked.c.event_type)
    out: dict[str, dict[str, dict[str, Any]]] = {device_id: {} for device_id in device_ids}
    with store.engine.connect() as conn:
        for row in conn.execute(query).mappings():
            out[row["device_id"]][row["event_type"]] = public_event(row)
    return out
