"""The Live half of ``edge-har serve``: the fleet page, its JSON API and the push stream.

:class:`LiveService` owns the store, the MQTT ingest (when a broker is configured) and the
:class:`~edge_har.web.ingest.Hub` of connected browsers, and exposes them as one FastAPI router so
:func:`edge_har.web.app.create_app` only includes it and calls :meth:`~LiveService.start` /
:meth:`~LiveService.stop` from its lifespan. Without a broker the API still serves what the store holds
(a restarted server shows yesterday's history) and the page says no broker is configured.

Push is **server-sent events**: one-way is all the page needs, it is plain HTTP (proxies, basic
auth and the TestClient handle it), and the browser's ``EventSource`` reconnects by itself after the
server restarts, after the ``retry:`` delay the stream sets. The page re-reads ``/api/devices`` on every
(re)connect, so nothing published while it was away is missing from what it shows.

The routes are plain ``def`` functions: FastAPI runs them in its thread pool, so a slow database query
never holds the event loop that feeds the streams.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Optional

from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from edge_har.mqtt.liveness import device_liveness
from edge_har.web import api_models as m
from edge_har.web import event_queries, queries
from edge_har.web.config import ServeConfig
from edge_har.web.ingest import Hub, Ingest, stats_brief
from edge_har.web.roller import Roller
from edge_har.web.store import GAP_CAP_S, HISTORY_LIMIT, DeviceRecord, Store

__all__ = ["LiveService", "RETRY_MS"]

log = logging.getLogger("edge_har.web.live")

STATIC = Path(__file__).resolve().parent / "static"
RETRY_MS = 2000  # EventSource's reconnect delay after the stream drops (server restart)
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing an idle stream
HISTORY_DEFAULT_S = 3600.0
EVENTS_DEFAULT_S = 86400.0  # /api/events without since: the last day
DEVICES_DEFAULT = 100  # devices per /api/devices page unless the request says (also the most with detail)
DEVICES_MAX = 1000  # the most one page lists: one query, a response of a few hundred kB
DETAIL_LIMIT = DEVICES_DEFAULT  # the most devices one page adds an hour or a day summary for
HOUR_POINTS_MAX = 20_000  # timeline points one page returns at most (as one history request)
SUMMARY_DAYS_MAX = 366  # the longest range one summary covers
LABELS_CACHE_S = 60.0  # /api/labels re-reads the store's labels (a DISTINCT over every row) this often at most
STATIC_DEVICE_PAGE = "device.html"
_DEVICE_ID = re.compile(r"^[^/+#\x00\s]{1,128}$")  # one MQTT topic level, as edge_har.mqtt.client.topics


class LiveService:
    """Store + ingest + push stream behind one router; see the module docstring."""

    def __init__(self, cfg: ServeConfig, store: Store, model_labels: Sequence[str] = ()) -> None:
        self.cfg = cfg
        self.store = store
        self.hub = Hub()
        self.ingest: Optional[Ingest] = Ingest(cfg, store, self.hub) if cfg.mqtt is not None else None
        self.started_at = time.time()
        self.model_labels = list(dict.fromkeys(model_labels))  # the loaded models' classes, in class order
        self.stretches = queries.CurrentStretches(store)
        self.roller = Roller(store)  # closed buckets' rollups kept computed, so summaries read few rows
        self._labels: tuple[float, list[str]] = (-math.inf, [])
        self.router = APIRouter()
        self._routes()

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        self.started_at = time.time()
        self.roller.start()
        if self.ingest is not None:
            self.ingest.start()  # prunes old rows now and every hour
        else:
            deleted = self.store.prune()  # no broker: nothing new arrives, so once at start is enough
            if deleted:
                log.info("retention: deleted %d rows older than %g days", deleted, self.store.retention_days)

    def stop(self) -> None:
        """Stop ingest (what was received is written first), end the streams, close the database."""
        if self.ingest is not None:
            self.ingest.stop()
        self.roller.stop()
        self.hub.close()
        self.store.close()

    # ------------------------------------------------------------------ what the API returns

    def broker_state(self) -> dict[str, Any]:
        if self.ingest is None:
            return {"configured": False, "address": None, "connected": False, "subscribed": False, "last_problem": None}
        return self.ingest.broker_state()

    def liveness(self, record: DeviceRecord, now: float) -> str:
        if self.ingest is not None:
            return self.ingest.liveness(record.device_id, now)
        return device_liveness(
            record.status,
            now=now,
            last_stats_at=record.stats_at,
            stats_interval_s=record.stats_interval_s,
            watching_since=self.started_at,
        )

    def device_views(self, records: Sequence[DeviceRecord], now: float) -> list[dict[str, Any]]:
        """The views of a page of devices, their current stretches found in one statement at most."""
        newest = {r.device_id: (r.activity.label, r.activity.run_id, r.activity.ts) for r in records if r.activity}
        stretches = self.stretches.for_devices(newest) if newest else {}
        last = event_queries.last_events(self.store, [r.device_id for r in records])
        views = [self.device_view(r, now, stretches.get(r.device_id)) for r in records]
        for view in views:
            view["last_events"] = last.get(view["device_id"], {})
        return views

    def device_view(
        self, record: DeviceRecord, now: float, stretch: Optional[queries.Stretch] = None
    ) -> dict[str, Any]:
        activity = record.activity
        books = self.device_books(record.device_id)
        return {
            "device_id": record.device_id,
            "status": record.status,
            "liveness": self.liveness(record, now),
            "status_at": record.status_at,
            "last_seen": record.last_seen,
            "run_id": record.run_id,
            "model_id": record.model_id,
            "stats": stats_brief(record.stats),
            "stats_at": record.stats_at,
            "gaps": books["gaps"],
            "rejected": books["rejected"],
            "activity": None
            if activity is None
            else {
                "label": activity.label,
                "confidence": activity.confidence,
                "ts": activity.ts,
                "received_at": activity.received_at,
                "probabilities": activity.probabilities,
            },
            "current": None
            if activity is None or stretch is None
            else {
                "label": activity.label,
                "since": stretch.since,
                "duration_s": max(0.0, activity.ts - stretch.since),
            },
        }

    def device_books(self, device_id: str) -> dict[str, int]:
        """Predictions of the device lost upstream (seq gaps) and its messages rejected; 0 without a broker."""
        if self.ingest is None:
            return {"gaps": 0, "rejected": 0}
        return self.ingest.device_books(device_id)

    # ------------------------------------------------------------------ routes

    def _routes(self) -> None:
        r = self.router

        @r.get("/live", include_in_schema=False)
        def live_page() -> FileResponse:
            return FileResponse(STATIC / "live.html", media_type="text/html")

        @r.get(
            "/api/devices",
            tags=["live"],
            summary="One page of devices: activity, liveness, last stats, gaps and rejections",
            description=(
                "Devices in device_id order, at most `limit` per page; `next` is the cursor of the next page "
                "(pass it as `after`), null on the last one; `total` counts every device matching `q`. "
                "`hour_step_s` adds each device's last hour (`hour`: the newest prediction per that many seconds) "
                "and `today=true` its seconds per activity today (`today`); with either, `limit` is at most "
                f"{DETAIL_LIMIT} and `limit * 3600 / hour_step_s` at most {HOUR_POINTS_MAX}."
            ),
            response_class=JSONResponse,
            responses={200: {"model": m.DevicesPage, "description": "one page of devices"}},
        )
        def api_devices(
            limit: int = Query(
                DEVICES_DEFAULT,
                description=f"devices per page, 1..{DEVICES_MAX}",
                json_schema_extra={"minimum": 1, "maximum": DEVICES_MAX},
            ),
            after: Optional[str] = Query(
                None,
                description="the previous page's `next` (a device id): list the devices after it",
                json_schema_extra={"minLength": 1, "maxLength": 128},
            ),
            q: Optional[str] = Query(
                None,
                description="only device ids containing this text (ASCII letters in either case)",
                json_schema_extra={"maxLength": 128},
            ),
            hour_step_s: Optional[float] = Query(
                None,
                description="add each device's last hour, the newest prediction per this many seconds",
                json_schema_extra={"minimum": 1, "maximum": 3600},
            ),
            today: bool = Query(False, description="add each device's seconds per activity today (at utc_offset_min)"),
            utc_offset_min: int = Query(
                0,
                description="the viewer's offset from UTC in minutes (CET: 60), for `today`",
                json_schema_extra={"minimum": -960, "maximum": 960},
            ),
        ) -> JSONResponse:
            _check_page(limit, after, q, hour_step_s, today, utc_offset_min)
            now = time.time()
            page = self.store.device_page(limit=limit, after=after, contains=q or None)
            views = self.device_views(page.records, now)
            ids = [view["device_id"] for view in views]
            if hour_step_s is not None:
                hours = self.store.recent(ids, now - HISTORY_DEFAULT_S, now, hour_step_s)
                marks = event_queries.recent_events(self.store, ids, now - HISTORY_DEFAULT_S, now)
                for view in views:
                    view["hour"] = hours[view["device_id"]]
                    view["hour_events"] = marks[view["device_id"]]
            if today:
                tz = dt.timezone(dt.timedelta(minutes=utc_offset_min))
                date = dt.datetime.now(tz).date()
                start = dt.datetime.combine(date, dt.time(), tz).timestamp()
                end = dt.datetime.combine(date + dt.timedelta(days=1), dt.time(), tz).timestamp()
                days = self.store.summaries(ids, start, end)
                for view in views:
                    seconds = days[view["device_id"]]
                    view["today"] = {"day": date.isoformat(), "seconds": seconds, "total_s": sum(seconds.values())}
            body: dict[str, Any] = {
                "now": now,
                "broker": self.broker_state(),
                "total": page.total,
                "limit": limit,
                "next": page.next_after,
                "devices": views,
            }
            if self.ingest is not None:
                body["ingest"] = self.ingest.status()
            # Plain JSON types already: straight to json.dumps, not FastAPI's jsonable_encoder walk, which
            # costs ten times as much (175 ms of a 1,000-device page).
            return JSONResponse(body)

        @r.get(
            "/api/events",
            tags=["live"],
            summary="Events the devices published (a fall), newest first",
            description=(
                "Events whose impact falls in `since < impact_ts <= until` (default: the last 24 hours), of one "
                "device and one type when asked, at most `limit`; `truncated` says whether more matched."
            ),
            response_model=m.EventsResponse,
        )
        def api_events(
            since: Optional[str] = _time_param("since", "default: a day before until"),
            until: Optional[str] = _time_param("until", "default: now"),
            limit: int = Query(
                100,
                description=f"events at most, 1..{event_queries.EVENTS_MAX} (the newest are kept)",
                json_schema_extra={"minimum": 1, "maximum": event_queries.EVENTS_MAX},
            ),
            device_id: Optional[str] = Query(
                None,
                description="only this device's",
                json_schema_extra={"minLength": 1, "maxLength": 128, "pattern": r"^[^/+#\x00\s]{1,128}$"},
            ),
            event_type: Optional[str] = Query(
                None,
                alias="type",
                description="only events of this type (`fall`)",
                json_schema_extra={"minLength": 1, "maxLength": 128},
            ),
        ) -> JSONResponse:
            if not 1 <= limit <= event_queries.EVENTS_MAX:
                raise HTTPException(400, f"limit: {str(limit)[:20]} is not within 1..{event_queries.EVENTS_MAX} events")
            if device_id is not None and not _DEVICE_ID.match(device_id):
                raise HTTPException(400, f"device_id: {device_id[:60]!r} is not a device id (one MQTT topic level)")
            if event_type is not None and not (0 < len(event_type) <= 128 and event_type.isprintable()):
                raise HTTPException(400, f"type: {event_type[:60]!r} is not an event type (1-128 printable characters)")
            start, end = _range(since, until, EVENTS_DEFAULT_S)
            items, truncated = event_queries.event_list(
                self.store, since=start, until=end, limit=limit, device_id=device_id, event_type=event_type
            )
            return JSONResponse({"since": start, "until": end, "limit": limit, "truncated": truncated, "events": items})

        @r.get(
            "/api/ingest",
            tags=["live"],
            summary="The MQTT ingest's books: received, stored, rejected, gaps",
            response_model=m.IngestStatus,
        )
        def api_ingest() -> dict[str, Any]:
            return {"configured": False} if self.ingest is None else self.ingest.status()

        @r.get(
            "/api/labels",
            tags=["live"],
            summary="Every activity label: the loaded models' classes in class order, then the others stored",
            description="Without `unknown`. Re-read from the store at most once a minute. A page gives each "
            "label the colour of its position, so one label has one colour everywhere.",
            response_model=m.LabelsResponse,
        )
        def api_labels() -> dict[str, Any]:
            return {"labels": self.labels()}

        @r.get(
            "/api/devices/{device_id}",
            tags=["live"],
            summary="One device: the same view as an item of /api/devices, with its current stretch",
            response_model=m.DeviceView,
        )
        def api_device(device_id: str = _DEVICE_ID_PARAM) -> JSONResponse:
            self._known(device_id)
            record = self._record(device_id)
            if record is None:
                raise HTTPException(404, f"device_id: no device {device_id!r} has been seen")
            return JSONResponse(self.device_views([record], time.time())[0])

        @r.get(
            "/api/devices/{device_id}/history",
            tags=["live"],
            summary="Predictions, status changes and outages of a time range",
            description=(
                f"At most `limit` predictions (the newest), oldest first; `truncated` says whether more fell in "
                f"the range. `outages` are the periods without predictions: gaps over {GAP_CAP_S:g} s between "
                "two predictions (`no_data`) and the periods the device's status was stopped or offline, "
                "clipped to the range. `status_before` is the last status change at or before `since`. "
                f"`events` are the device's events whose impact is in the range (the newest {event_queries.EVENTS_MAX}), "
                "oldest first."
            ),
            response_model=m.HistoryResponse,
        )
        def api_history(
            device_id: str = _DEVICE_ID_PARAM,
            since: Optional[str] = _time_param("since", "default: an hour before until"),
            until: Optional[str] = _time_param("until", "default: now"),
            limit: int = Query(
                HISTORY_LIMIT,
                description=f"predictions at most, 1..{HISTORY_LIMIT} (the newest are kept)",
                json_schema_extra={"minimum": 1, "maximum": HISTORY_LIMIT},
            ),
            step_s: Optional[float] = Query(
                None,
                description="at most one prediction (the newest) per this many seconds; default: every one",
                json_schema_extra={"minimum": STEP_MIN_S, "maximum": STEP_MAX_S},
            ),
        ) -> JSONResponse:
            self._known(device_id)
            start, end = _range(since, until, HISTORY_DEFAULT_S)
            if not 1 <= limit <= HISTORY_LIMIT:
                raise HTTPException(400, f"limit: {str(limit)[:20]} is not within 1..{HISTORY_LIMIT} predictions")
            if step_s is not None and not (math.isfinite(step_s) and STEP_MIN_S <= step_s <= STEP_MAX_S):
                raise HTTPException(
                    400, f"step_s: {step_s:.6g} is not a number of seconds within {STEP_MIN_S:g}..{STEP_MAX_S:g}"
                )
            rows, truncated = queries.history_range(self.store, device_id, start, end, limit, step_s)
            status = queries.status_range(self.store, device_id, start, end)
            before = queries.status_before(self.store, device_id, start)
            events, _ = event_queries.event_list(
                self.store, since=start, until=end, limit=event_queries.EVENTS_MAX, device_id=device_id
            )
            return JSONResponse(
                {
                    "device_id": device_id,
                    "since": start,
                    "until": end,
                    "limit": limit,
                    "step_s": step_s,
                    "truncated": truncated,
                    "predictions": rows,
                    "status": status,
                    "status_before": before,
                    "outages": queries.outages(self.store, device_id, start, end, before, status, HISTORY_LIMIT),
                    "events": events[::-1],
                }
            )

        @r.get(
            "/api/devices/{device_id}/summary",
            tags=["live"],
            summary="Time per activity over a range of days, per day and in all",
            description=(
                "Seconds per label of each calendar day (at `utc_offset_min`) of `[since, until)`, the first and "
                f"last day clipped to the range, and their sum; at most {SUMMARY_DAYS_MAX} days. `since` and "
                "`until` take Unix seconds, ISO 8601 times or a date YYYY-MM-DD (that day's midnight at "
                "`utc_offset_min`); by default today. `day=` asks for one day (and excludes since/until)."
            ),
            response_model=m.SummaryResponse,
            response_model_exclude_none=True,
        )
        def api_summary(
            device_id: str = _DEVICE_ID_PARAM,
            since: Optional[str] = _time_param("since", "or YYYY-MM-DD; default: today's midnight"),
            until: Optional[str] = _time_param("until", "or YYYY-MM-DD; default: since's day's end"),
            by: Literal["day", "total"] = Query("day", description="`day`: per day and in all; `total`: in all only"),
            day: Optional[str] = Query(
                None,
                description=f"YYYY-MM-DD, {_DAY_MIN}..{_DAY_MAX}: that one day (instead of since and until)",
                json_schema_extra={"pattern": r"^\d{4}-\d{2}-\d{2}$"},
            ),
            utc_offset_min: int = Query(
                0,
                description="the viewer's offset from UTC in minutes (CET: 60)",
                json_schema_extra={"minimum": -OFFSET_MAX_MIN, "maximum": OFFSET_MAX_MIN},
            ),
        ) -> dict[str, Any]:
            self._known(device_id)
            if not -OFFSET_MAX_MIN <= utc_offset_min <= OFFSET_MAX_MIN:
                shown = str(utc_offset_min)[:20]
                raise HTTPException(
                    400, f"utc_offset_min: {shown} is not within -{OFFSET_MAX_MIN}..{OFFSET_MAX_MIN} minutes"
                )
            tz = dt.timezone(dt.timedelta(minutes=utc_offset_min))
            if day is not None:
                if since is not None or until is not None:
                    raise HTTPException(400, "day: give either day or since/until, not both")
                date = _parse_day(day)
                start = dt.datetime.combine(date, dt.time(), tz).timestamp()
                end = start + queries.DAY_S
            else:
                today = dt.datetime.combine(dt.datetime.now(tz).date(), dt.time(), tz).timestamp()
                start = today if since is None else _parse_time(since, "since", tz)
                _check_summary_time("since", start)
                if until is None:
                    first = dt.datetime.fromtimestamp(start, tz).date() + dt.timedelta(days=1)
                    end = dt.datetime.combine(first, dt.time(), tz).timestamp()
                else:
                    end = _parse_time(until, "until", tz)
                if end <= start:
                    raise HTTPException(400, f"until: {end:.6f} is not after since ({start:.6f})")
                _check_summary_time("until", end)
            if end - start > (SUMMARY_DAYS_MAX + 1) * queries.DAY_S:
                raise HTTPException(400, f"until: the range is longer than {SUMMARY_DAYS_MAX} days")
            spans = queries.day_spans(start, end, utc_offset_min)
            if len(spans) > SUMMARY_DAYS_MAX:
                raise HTTPException(400, f"until: the range covers {len(spans)} days, more than {SUMMARY_DAYS_MAX}")
            days = queries.range_summary(self.store, device_id, start, end, utc_offset_min)
            seconds: dict[str, float] = {}
            for _span, each in days:
                for label, s in each.items():
                    seconds[label] = seconds.get(label, 0.0) + s
            body: dict[str, Any] = {
                "device_id": device_id,
                "since": start,
                "until": end,
                "start": start,
                "end": end,
                "utc_offset_min": utc_offset_min,
                "seconds": dict(sorted(seconds.items(), key=lambda kv: (-kv[1], kv[0]))),
                "total_s": sum(seconds.values()),
            }
            if day is not None:
                body["day"] = spans[0].day.isoformat()
            if by == "day":
                body["days"] = [
                    {
                        "day": span.day.isoformat(),
                        "start": span.start,
                        "end": span.end,
                        "seconds": each,
                        "total_s": sum(each.values()),
                    }
                    for span, each in days
                ]
            return body

        @r.get(
            "/api/devices/{device_id}/export.csv",
            tags=["live"],
            summary="A time range's predictions as CSV, streamed",
            description=(
                "One row per prediction, oldest first: " + ",".join(queries.EXPORT_COLUMNS) + " (a JSON object). "
                "Text cells starting with = + - @ get a leading ' so a spreadsheet does not run them. "
                "Default range: the last hour."
            ),
            response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "CSV"}},
        )
        def api_export(
            device_id: str = _DEVICE_ID_PARAM,
            since: Optional[str] = _time_param("since", "default: an hour before until"),
            until: Optional[str] = _time_param("until", "default: now"),
        ) -> StreamingResponse:
            self._known(device_id)
            start, end = _range(since, until, HISTORY_DEFAULT_S)
            name = f"{_file_part(device_id)}_{_stamp(start)}_{_stamp(end)}.csv"
            return StreamingResponse(
                _csv_lines(queries.export_rows(self.store, device_id, start, end)),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
            )

        @r.get(
            "/api/stream",
            tags=["live"],
            summary="Server-sent events: predictions, status, stats, liveness, device events",
            description=(
                "text/event-stream: a `hello` event, then `predictions`, `status`, `stats`, `liveness`, `event` "
                "(a device's event such as a fall, once however often the broker delivers it) and "
                "`resync` events, each a JSON object in `data:`; a comment line every "
                f"{KEEPALIVE_S:g} s; `retry: {RETRY_MS}`."
            ),
            response_class=StreamingResponse,
            responses={
                200: {
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    "description": "an endless event stream",
                }
            },
        )
        async def api_stream() -> StreamingResponse:
            return StreamingResponse(
                self._events(),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )

        @r.get("/device/{device_id}", include_in_schema=False)
        def device_page(device_id: str) -> FileResponse:
            page = STATIC / STATIC_DEVICE_PAGE
            if not page.is_file():
                raise HTTPException(404, "the device page is not installed")
            return FileResponse(page, media_type="text/html")

    def labels(self) -> list[str]:
        """The models' classes in order, then the other labels stored, sorted; cached for LABELS_CACHE_S."""
        at, seen = self._labels
        now = time.monotonic()
        if now - at > LABELS_CACHE_S:
            seen = queries.labels_seen(self.store)
            self._labels = (now, seen)
        first = [label for label in self.model_labels if label.lower() != "unknown" and label]
        known = set(first)
        return first + sorted({label for label in seen if label and label.lower() != "unknown" and label not in known})

    def _record(self, device_id: str) -> Optional[DeviceRecord]:
        return self.store.device(device_id)

    def _known(self, device_id: str) -> None:
        if not _DEVICE_ID.match(device_id):
            raise HTTPException(400, f"device_id: {device_id[:60]!r} is not a device id (one MQTT topic level)")
        if not self.store.has_device(device_id):
            raise HTTPException(404, f"device_id: no device {device_id!r} has been seen")

    async def _events(self) -> AsyncIterator[str]:
        q = self.hub.subscribe()
        try:
            hello = {"type": "hello", "now": time.time(), "broker": self.broker_state()}
            yield f"retry: {RETRY_MS}\nevent: hello\ndata: {json.dumps(hello)}\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(q.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if event is None:
                    return  # the server is stopping; the browser reconnects after RETRY_MS
                yield f"event: {event['type']}\ndata: {json.dumps(event, default=str)}\n\n"
        finally:
            self.hub.unsubscribe(q)


# The bounds of the per-device routes' parameters, stated in /openapi.json and checked by the routes
# (one-line 400s naming the parameter).
STEP_MIN_S, STEP_MAX_S = 0.001, 86400.0
OFFSET_MAX_MIN = 16 * 60
_SINCE_MAX_CHARS = 64
_TIME_END = 253402300800.0  # 10000-01-01T00:00:00Z: datetime's range and any timestamp column's
_DAY_MIN, _DAY_MAX = dt.date(1970, 1, 2), dt.date(9999, 12, 30)  # a whole day at any offset within ±16 h
_SUMMARY_MIN, _SUMMARY_MAX = 86400.0, _TIME_END - 2 * 86400.0  # a summary's range: whole local days at any offset
_DEVICE_ID_PARAM: Any = PathParam(
    description="the device's id (one MQTT topic level: 1-128 characters, no /, +, #, NUL or white space)",
    json_schema_extra={"minLength": 1, "maxLength": 128, "pattern": r"^[^/+#\x00\s]{1,128}$"},
)


def _check_page(
    limit: int, after: Optional[str], q: Optional[str], hour_step_s: Optional[float], today: bool, utc_offset_min: int
) -> None:
    """The bounds /api/devices states in its schema, as one-line 400s naming the parameter."""
    if not 1 <= limit <= DEVICES_MAX:
        raise HTTPException(400, f"limit: {str(limit)[:20]} is not within 1..{DEVICES_MAX} devices")
    if after is not None and not _DEVICE_ID.match(after):
        raise HTTPException(400, f"after: {after[:60]!r} is not a device id (the previous page's next)")
    if q is not None and (len(q) > 128 or not q.isprintable()):
        raise HTTPException(400, f"q: {q[:60]!r} is not up to 128 printable characters")
    if hour_step_s is not None and not (math.isfinite(hour_step_s) and 1 <= hour_step_s <= 3600):
        raise HTTPException(400, f"hour_step_s: {hour_step_s:.6g} is not a number of seconds within 1..3600")
    if not -960 <= utc_offset_min <= 960:
        raise HTTPException(400, f"utc_offset_min: {str(utc_offset_min)[:20]} is not within -960..960 minutes")
    if (hour_step_s is not None or today) and limit > DETAIL_LIMIT:
        raise HTTPException(400, f"limit: {limit} is more than {DETAIL_LIMIT} devices with hour_step_s or today")
    if hour_step_s is not None and limit * HISTORY_DEFAULT_S / hour_step_s > HOUR_POINTS_MAX:
        raise HTTPException(
            400,
            f"hour_step_s: {hour_step_s:g} s for {limit} devices is over {HOUR_POINTS_MAX} points: "
            "ask for a longer step or fewer devices",
        )


def _time_param(name: str, default: str) -> Any:
    return Query(
        None,
        description=f"Unix seconds or ISO 8601 (2026-12-02T14:00:00Z), from 1970 to the end of 9999; {default}",
        json_schema_extra={"maxLength": _SINCE_MAX_CHARS},
    )


def _check_summary_time(name: str, value: float) -> None:
    """A summary's bound whose local calendar day, at any offset within ±16 h, is within 1970..9999."""
    if not _SUMMARY_MIN <= value <= _SUMMARY_MAX:
        raise HTTPException(400, f"{name}: {value:.6f} is not within {_DAY_MIN}..{_DAY_MAX}")


def _parse_time(text: str, name: str, tz: Optional[dt.timezone] = None) -> float:
    """Unix seconds or an ISO 8601 time, within 1970..9999 (what a timestamp column and the reply hold).

    A bare date YYYY-MM-DD is that day's midnight at ``tz`` (UTC by default).
    """
    if len(text) > _SINCE_MAX_CHARS:
        raise HTTPException(400, f"{name}: {text[:40]!r}... is longer than {_SINCE_MAX_CHARS} characters")
    try:
        value = float(text)
    except ValueError:
        try:
            parsed = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=tz or dt.timezone.utc)
            value = parsed.timestamp()
        except (ValueError, OverflowError):
            raise HTTPException(
                400, f"{name}: {text[:60]!r} is neither Unix seconds nor an ISO 8601 time (2026-12-02T14:00:00Z)"
            ) from None
    if not (math.isfinite(value) and 0 <= value < _TIME_END):
        raise HTTPException(400, f"{name}: {text[:60]!r} is not a time from 1970 to the end of 9999")
    return value


def _range(since: Optional[str], until: Optional[str], default_s: float) -> tuple[float, float]:
    """``since`` and ``until`` parsed (defaults: ``until`` now, ``since`` ``default_s`` before it); until > since."""
    end = time.time() if until is None else _parse_time(until, "until")
    start = max(0.0, end - default_s) if since is None else _parse_time(since, "since")
    if end <= start and until is None:
        raise HTTPException(400, f"since: {start:.6f} is not before until (default: now, {end:.6f})")
    if end <= start:
        raise HTTPException(400, f"until: {end:.6f} is not after since ({start:.6f})")
    return start, end


def _file_part(text: str) -> str:
    """``text`` with only the characters a file name and a quoted header value take everywhere."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:80] or "device"


def _stamp(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _csv_lines(rows: Iterator[dict[str, Any]], per_chunk: int = 500) -> Iterator[str]:
    """The CSV text of ``rows`` (header first), a few hundred rows per chunk sent."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(queries.EXPORT_COLUMNS)
    for n, row in enumerate(rows, 1):
        writer.writerow(queries.export_line(row))
        if n % per_chunk == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _parse_day(text: str) -> dt.date:
    """A calendar day whose start and end, at any offset within ±16 h, are Unix times of 1970..9999."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise HTTPException(400, f"day: {text[:40]!r} is not a date YYYY-MM-DD")
    try:
        day = dt.date.fromisoformat(text)
    except ValueError as exc:
        raise HTTPException(400, f"day: {text!r} is not a calendar date ({exc})") from None
    if not _DAY_MIN <= day <= _DAY_MAX:
        raise HTTPException(400, f"day: {text} is outside {_DAY_MIN}..{_DAY_MAX}")
    return day
