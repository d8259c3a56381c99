"""The recordings half of ``edge-har serve``: devices push their sessions here, people label them, convert reads them.

Routes (all behind the app's one password, like every other route):

* ``/api/recordings...``: the store of pushed sessions (:class:`~edge_har.web.recording_store.RecordingStore`,
  the recording layout under ``--recordings-dir``): a resumable upload per file (``POST .../files/NAME?offset=N``,
  409 with the current size when N is not it), the list, a session's files, its signal min/max decimated for a
  plot, its labels read and saved by a person, delete, and a zip of sessions that ``convert --data`` reads.
* ``/api/devices/{id}/record|label|correct``: commands published to the device over MQTT, and
  ``GET /api/devices/{id}/record``: its last record state and ~30 s of its live signal
  (:class:`~edge_har.web.record_relay.RecordRelay`).

Every body is read within a bound before it is parsed (an upload within ``--max-upload-mb`` and its file's
cap, a JSON body within :data:`JSON_BODY_MAX` bytes through :func:`~edge_har.mqtt.bounded_json.parse_message`)
and every parameter has a range, stated in ``/openapi.json`` and checked with a one-line 400 naming it.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any, Callable, Optional, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from edge_har.core.recording_layout import (
    LABELS_FILE,
    LAYOUT_FILE,
    MAX_LABELS_BYTES,
    MAX_META_BYTES,
    MAX_PART_BYTES,
    LayoutError,
)
from edge_har.mqtt.bounded_json import RejectedMessage, parse_message
from edge_har.web import api_models as m
from edge_har.web.config import ServeConfig, recordings_root
from edge_har.web.predict import ErrorResponse
from edge_har.web.record_relay import PublishFailed, RecordRelay
from edge_har.web.recording_store import RecordingStore, StoreError, check_id

__all__ = ["RecordingsService"]

log = logging.getLogger("edge_har.web.recordings")

JSON_BODY_MAX = 2 * 1024 * 1024  # a PUT of labels: 10,000 segments of a 64-character label fit
COMMAND_BODY_MAX = 4096
LIST_DEFAULT, LIST_MAX = 100, 1000
POINTS_DEFAULT, POINTS_MIN, POINTS_MAX = 2000, 10, 20_000
TIME_MAX = 253402300800.0  # 10000-01-01T00:00:00Z
_ID_PATTERN = r"^[^/+#\x00\s]{1,128}$"
_NAME_PATTERN = r"^(recording\.json|labels\.csv|part-\d{5}\.csv)$"

_DEVICE: Any = PathParam(
    description="the device's id (one MQTT topic level: 1-128 characters, no /, \\, +, #, control characters or "
    "white space; not . or ..)",
    json_schema_extra={"minLength": 1, "maxLength": 128, "pattern": _ID_PATTERN},
)
_SESSION: Any = PathParam(
    description="the session's id (recording.json's session_id; the same rule as a device id)",
    json_schema_extra={"minLength": 1, "maxLength": 128, "pattern": _ID_PATTERN},
)
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "a parameter, name or body refused; `detail` names it"},
    404: {"model": ErrorResponse, "description": "no such session"},
}
# 422: FastAPI's own refusal of a parameter (a list of errors) or a session file the layout's reader refuses (text).
_UNREADABLE: dict[str, Any] = {
    "description": "a parameter of the wrong type (FastAPI's list of errors), or a file of the session that the "
    "recording layout's reader refuses (one line naming the file and line)",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["detail"],
                "properties": {"detail": {"anyOf": [{"type": "string"}, {"type": "array", "items": {}}]}},
            }
        }
    },
}
_BINARY_BODY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}

T = TypeVar("T", bound=BaseModel)


class RecordingsService:
    """The store, the relay and their router; :meth:`start` / :meth:`stop` from the app's lifespan."""

    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self.store = RecordingStore(recordings_root(cfg))
        self.relay = RecordRelay(cfg)
        self.router = APIRouter()
        self._routes()
        self._command_routes()

    def start(self) -> None:
        self.relay.start()
        log.info("recordings: stored under %s", self.store.root.absolute())

    def stop(self) -> None:
        self.relay.stop()

    # ------------------------------------------------------------------ the store

    def _routes(self) -> None:
        r = self.router
        store = self.store

        @r.get(
            "/api/recordings",
            tags=["recordings"],
            summary="The recordings pushed to serve, newest first",
            description="Each session's channels, rate, time span, sample count, labels and files. "
            "`total` counts every session matching `device`; the newest `limit` (by recording.json's start) "
            "are listed.",
            response_model=m.RecordingsList,
            responses={400: _ERRORS[400]},
        )
        def api_recordings(
            device: Optional[str] = Query(
                None,
                description="only this device's sessions",
                json_schema_extra={"minLength": 1, "maxLength": 128, "pattern": _ID_PATTERN},
            ),
            limit: int = Query(
                LIST_DEFAULT,
                description=f"sessions listed at most, 1..{LIST_MAX}",
                json_schema_extra={"minimum": 1, "maximum": LIST_MAX},
            ),
        ) -> dict[str, Any]:
            if not 1 <= limit <= LIST_MAX:
                raise HTTPException(400, f"limit: {str(limit)[:20]} is not within 1..{LIST_MAX} sessions")
            refs = _guard(lambda: store.sessions(device))
            started: list[tuple[float, Any]] = []
            for ref in refs:
                try:
                    started.append((store.started(ref), ref))
                except (LayoutError, OSError) as exc:
                    log.warning("recordings: %s left out of the list: %s", ref.path, str(exc)[:200])
            started.sort(key=lambda item: (-item[0], item[1].device_id, item[1].session_id))
            items = []
            for _at, ref in started[:limit]:
                try:
                    items.append(store.summary(ref))
                except (LayoutError, OSError) as exc:
                    log.warning("recordings: %s left out of the list: %s", ref.path, str(exc)[:200])
            return {"recordings": items, "total": len(started)}

        @r.get(
            "/api/recordings/export.zip",
            tags=["recordings"],
            summary="A zip of sessions in the recording layout, which `edge-har convert --data` reads once unzipped",
            description="Entries `edge-har-recordings/<device>/<session>/{recording.json,labels.csv,part-NNNNN.csv}`, "
            "streamed as they are compressed. A part still being written is cut at its size when the zip reached "
            "it (the reader skips a torn last line).",
            response_class=StreamingResponse,
            responses={
                200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}},
                400: _ERRORS[400],
            },
        )
        def api_export(
            device: Optional[str] = Query(
                None,
                description="only this device's sessions",
                json_schema_extra={"minLength": 1, "maxLength": 128, "pattern": _ID_PATTERN},
            ),
            session: Optional[str] = Query(
                None,
                description="only sessions of this id",
                json_schema_extra={"minLength": 1, "maxLength": 128, "pattern": _ID_PATTERN},
            ),
            labelled_only: bool = Query(True, description="only sessions with at least one label segment"),
        ) -> StreamingResponse:
            _guard(lambda: store.sessions(device, session))  # the ids checked before the answer starts
            return StreamingResponse(
                store.export(device, session, labelled_only),
                media_type="application/zip",
                headers={"Content-Disposition": 'attachment; filename="edge-har-recordings.zip"'},
            )

        @r.get(
            "/api/recordings/{device_id}/{session_id}",
            tags=["recordings"],
            summary="One session as an item of the list",
            response_model=m.RecordingItem,
            responses={**_ERRORS, 422: _UNREADABLE},
        )
        def api_recording(device_id: str = _DEVICE, session_id: str = _SESSION) -> dict[str, Any]:
            return _guard(lambda: store.item(device_id, session_id))

        @r.get(
            "/api/recordings/{device_id}/{session_id}/files",
            tags=["recordings"],
            summary="The session's files and their sizes: where a resumed upload continues",
            description="`{}` for a session serve does not have (yet). `labels.device.csv` is listed once a person "
            "edited the labels on serve: it holds the device's own labels.",
            response_model=m.RecordingFiles,
            responses={400: _ERRORS[400]},
        )
        def api_files(device_id: str = _DEVICE, session_id: str = _SESSION) -> dict[str, Any]:
            return {"files": _guard(lambda: store.files(device_id, session_id))}

        @r.post(
            "/api/recordings/{device_id}/{session_id}/files/{name}",
            tags=["recordings"],
            summary="Append the body to one of the session's files at byte `offset` (a resumable upload)",
            description=(
                "`offset` must be the file's current size (0 for a new file), else 409 with `size`, the offset "
                "to resume at. The body is at most --max-upload-mb and the file at most its cap "
                f"(recording.json {MAX_META_BYTES // 1024} KiB, labels.csv {MAX_LABELS_BYTES // 1024 // 1024} MiB, "
                f"a part {MAX_PART_BYTES // 1024 // 1024} MiB). recording.json is sent whole at offset 0 and "
                "validated (its device_id and session_id must be the URL's); a part sent from offset 0 must start "
                "with recording.json's header `t,<channels>`; labels.csv is validated whole and written "
                "atomically (see PUT .../files/labels.csv). Written and fsync'd before the answer."
            ),
            response_model=m.UploadResult,
            response_model_exclude_none=True,
            responses={
                **_ERRORS,
                409: {"model": m.UploadConflict, "description": "`offset` is not the file's size"},
                413: {"model": ErrorResponse, "description": "over --max-upload-mb or the file's cap"},
                507: {"model": ErrorResponse, "description": "the disk is (nearly) full"},
            },
            openapi_extra={"requestBody": {"required": True, "content": _BINARY_BODY}},
        )
        async def api_upload(
            request: Request,
            device_id: str = _DEVICE,
            session_id: str = _SESSION,
            name: str = PathParam(
                description="recording.json, labels.csv or part-NNNNN.csv (five digits)",
                json_schema_extra={"pattern": _NAME_PATTERN},
            ),
            offset: int = Query(
                description="the file's current size, where the body goes",
                json_schema_extra={"minimum": 0, "maximum": MAX_PART_BYTES},
            ),
        ) -> Any:
            _guard(lambda: (check_id(device_id, "device_id"), check_id(session_id, "session_id")))
            if not 0 <= offset <= MAX_PART_BYTES:
                raise HTTPException(400, f"offset: {str(offset)[:20]} is not within 0..{MAX_PART_BYTES}")
            cap = {LAYOUT_FILE: MAX_META_BYTES, LABELS_FILE: MAX_LABELS_BYTES}.get(name, MAX_PART_BYTES)
            data = await self._body(request, min(cap, self.cfg.max_upload_bytes))
            return await run_in_threadpool(
                _guard, lambda: store.append(device_id, session_id, name, offset, data), conflict=True, writing=True
            )

        @r.put(
            "/api/recordings/{device_id}/{session_id}/files/labels.csv",
            tags=["recordings"],
            summary="The device's labels.csv, whole (replacing the one it sent before)",
            description=(
                "The body is the CSV (`label,start,end`), validated as convert reads it and kept byte for byte. "
                "Once a person saved labels on serve (PUT .../labels), the device's go to labels.device.csv and "
                "the person's edit wins: `stored_as` and `edited` say which."
            ),
            response_model=m.UploadResult,
            responses={
                **_ERRORS,
                413: {"model": ErrorResponse, "description": f"over {MAX_LABELS_BYTES // 1024 // 1024} MiB"},
                507: {"model": ErrorResponse, "description": "the disk is (nearly) full"},
            },
            openapi_extra={"requestBody": {"required": True, "content": _BINARY_BODY}},
        )
        async def api_put_device_labels(request: Request, device_id: str = _DEVICE, session_id: str = _SESSION) -> Any:
            _guard(lambda: (check_id(device_id, "device_id"), check_id(session_id, "session_id")))
            data = await self._body(request, min(MAX_LABELS_BYTES, self.cfg.max_upload_bytes))
            return await run_in_threadpool(
                _guard, lambda: store.put_device_labels(device_id, session_id, data), writing=True
            )

        @r.get(
            "/api/recordings/{device_id}/{session_id}/signal",
            tags=["recordings"],
            summary="The session's samples in a time range, min/max decimated to at most `max_points`",
            description=(
                "`values` holds one list per channel (raw values, as recorded), aligned with `t`. With more samples "
                "than `max_points` they are cut into `max_points / 2` buckets, each giving its minimum and maximum "
                "per channel in time order (at the bucket's first and last t), so no peak is lost at any zoom."
            ),
            response_model=m.RecordingSignal,
            responses={**_ERRORS, 422: _UNREADABLE},
        )
        def api_signal(
            device_id: str = _DEVICE,
            session_id: str = _SESSION,
            start: Optional[float] = Query(
                None,
                description="Unix seconds: samples with t >= start (default: the first)",
                json_schema_extra={"minimum": 0, "maximum": TIME_MAX},
            ),
            end: Optional[float] = Query(
                None,
                description="Unix seconds: samples with t < end (default: past the last)",
                json_schema_extra={"minimum": 0, "maximum": TIME_MAX},
            ),
            max_points: int = Query(
                POINTS_DEFAULT,
                description=f"points per channel at most, {POINTS_MIN}..{POINTS_MAX}",
                json_schema_extra={"minimum": POINTS_MIN, "maximum": POINTS_MAX},
            ),
        ) -> dict[str, Any]:
            for name, value in (("start", start), ("end", end)):
                if value is not None and not (math.isfinite(value) and 0 <= value <= TIME_MAX):
                    raise HTTPException(400, f"{name}: {value!r} is not a Unix time from 1970 to the end of 9999")
            if start is not None and end is not None and end <= start:
                raise HTTPException(400, f"end: {end!r} is not after start ({start!r})")
            if not POINTS_MIN <= max_points <= POINTS_MAX:
                raise HTTPException(400, f"max_points: {str(max_points)[:20]} is not within {POINTS_MIN}..{POINTS_MAX}")
            return _guard(lambda: store.signal(device_id, session_id, start, end, max_points))

        @r.get(
            "/api/recordings/{device_id}/{session_id}/labels",
            tags=["recordings"],
            summary="The session's label segments (labels.csv) and whether a person edited them on serve",
            response_model=m.RecordingLabels,
            responses={**_ERRORS, 422: _UNREADABLE},
        )
        def api_labels(device_id: str = _DEVICE, session_id: str = _SESSION) -> dict[str, Any]:
            return _guard(lambda: store.labels(device_id, session_id))

        @r.put(
            "/api/recordings/{device_id}/{session_id}/labels",
            tags=["recordings"],
            summary="Save a person's label segments (replacing labels.csv); the session is marked edited",
            description=(
                "Each segment: a label of 1-64 characters (no control characters, no surrounding spaces), start and "
                "end in Unix seconds with end > start (null: open, past the last sample). Segments of different "
                "labels may not overlap (400 naming both); at most 10,000. Written atomically; the device's own "
                "labels are kept as labels.device.csv and its later uploads go there."
            ),
            response_model=m.RecordingLabels,
            responses={
                **_ERRORS,
                413: {"model": ErrorResponse, "description": f"a body over {JSON_BODY_MAX // 1024 // 1024} MiB"},
                507: {"model": ErrorResponse, "description": "the disk is (nearly) full"},
            },
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _inline_schema(m.LabelsIn)}},
                }
            },
        )
        async def api_put_labels(request: Request, device_id: str = _DEVICE, session_id: str = _SESSION) -> Any:
            _guard(lambda: (check_id(device_id, "device_id"), check_id(session_id, "session_id")))
            body = await self._json(request, m.LabelsIn, JSON_BODY_MAX)
            segments = [s.model_dump() for s in body.segments]
            return await run_in_threadpool(
                _guard, lambda: store.put_labels(device_id, session_id, segments), writing=True
            )

        @r.delete(
            "/api/recordings/{device_id}/{session_id}",
            tags=["recordings"],
            summary="Delete a session and every file of it",
            response_model=m.Deleted,
            responses={**_ERRORS, 507: {"model": ErrorResponse, "description": "the disk refused the delete"}},
        )
        def api_delete(device_id: str = _DEVICE, session_id: str = _SESSION) -> dict[str, Any]:
            _guard(lambda: store.delete(device_id, session_id), writing=True)
            return {"device_id": device_id, "session_id": session_id, "deleted": True}

    # ------------------------------------------------------------------ the devices (MQTT)

    def _command_routes(self) -> None:
        r = self.router
        unavailable: dict[int | str, dict[str, Any]] = {
            503: {
                "model": ErrorResponse,
                "description": "serve has no --broker, is not connected to it, or the broker did not acknowledge",
            }
        }

        async def send(device_id: str, kind: str, payload: str) -> dict[str, Any]:
            _guard(lambda: check_id(device_id, "device_id"))
            try:
                topic = await run_in_threadpool(self.relay.publish, device_id, kind, payload)
            except PublishFailed as exc:
                raise HTTPException(503, str(exc)) from None
            return {"device_id": device_id, "topic": topic, "payload": payload}

        def body_of(model: type[BaseModel]) -> dict[str, Any]:
            schema = _inline_schema(model)
            return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}

        @r.post(
            "/api/devices/{device_id}/record",
            tags=["recordings"],
            summary="Start or stop the device's recording: publishes <prefix>/<id>/record/set ON or OFF",
            response_model=m.CommandSent,
            responses={400: _ERRORS[400], 413: {"model": ErrorResponse}, **unavailable},
            openapi_extra=body_of(m.RecordCommand),
        )
        async def api_record(request: Request, device_id: str = _DEVICE) -> dict[str, Any]:
            body = await self._json(request, m.RecordCommand, COMMAND_BODY_MAX)
            return await send(device_id, "record/set", "ON" if body.action == "start" else "OFF")

        @r.post(
            "/api/devices/{device_id}/label",
            tags=["recordings"],
            summary="Set the label the device records under (null ends the segment): publishes label/set",
            description="The device refuses a name that is not one of its classes (it says so on label/error and "
            "in its record/state).",
            response_model=m.CommandSent,
            responses={400: _ERRORS[400], 413: {"model": ErrorResponse}, **unavailable},
            openapi_extra=body_of(m.LabelCommand),
        )
        async def api_label(request: Request, device_id: str = _DEVICE) -> dict[str, Any]:
            body = await self._json(request, m.LabelCommand, COMMAND_BODY_MAX)
            _check_label(body.label, "label")
            return await send(device_id, "label/set", json.dumps({"label": body.label}))

        @r.post(
            "/api/devices/{device_id}/correct",
            tags=["recordings"],
            summary="'That was X': the device captures the windows of the last seconds it predicted otherwise",
            description="Publishes <prefix>/<id>/label/correct {label, ts}; ts defaults to the device's now.",
            response_model=m.CommandSent,
            responses={400: _ERRORS[400], 413: {"model": ErrorResponse}, **unavailable},
            openapi_extra=body_of(m.CorrectCommand),
        )
        async def api_correct(request: Request, device_id: str = _DEVICE) -> dict[str, Any]:
            body = await self._json(request, m.CorrectCommand, COMMAND_BODY_MAX)
            _check_label(body.label, "label")
            message: dict[str, Any] = {"label": body.label}
            if body.ts is not None:
                message["ts"] = body.ts
            return await send(device_id, "label/correct", json.dumps(message))

        @r.get(
            "/api/devices/{device_id}/record",
            tags=["recordings"],
            summary="The device's last record/state and the last ~30 s of its record/signal, as heard on the broker",
            description="`state` is null until the device published one (or without --broker); `signal.values` "
            "holds one list per channel aligned with `signal.t` (decimated by the device to at most 25 samples/s).",
            response_model=m.DeviceRecording,
            responses={400: _ERRORS[400]},
        )
        def api_device_record(device_id: str = _DEVICE) -> dict[str, Any]:
            _guard(lambda: check_id(device_id, "device_id"))
            return {**self.relay.view(device_id), "broker": self.relay.configured}

    # ------------------------------------------------------------------ bodies

    async def _body(self, request: Request, limit: int) -> bytes:
        """The request body, refused (413) past ``limit`` bytes as it streams in."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        chunks: list[bytes] = []
        seen = 0
        try:
            async for chunk in request.stream():
                seen += len(chunk)
                if seen > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
        except ClientDisconnect:
            raise HTTPException(400, "the client went away before the body ended") from None
        return b"".join(chunks)

    async def _json(self, request: Request, model: type[T], limit: int) -> T:
        """The JSON body parsed within bounds and validated strictly as ``model``; 400 naming the field."""
        data = await self._body(request, limit)
        try:
            parsed = parse_message(data, max_bytes=limit, max_depth=8)
        except RejectedMessage as exc:
            raise HTTPException(400, f"body: {exc.detail}") from None
        try:
            return model.model_validate(parsed)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error.get("loc", ())) or "body"
            raise HTTPException(400, f"{where}: {error.get('msg', 'invalid')}"[:300]) from None


# ---------------------------------------------------------------------------------------------- helpers


def _guard(call: Callable[[], Any], conflict: bool = False, writing: bool = False) -> Any:
    """``call()`` with the store's refusals as HTTP answers: StoreError's status (a 409 with ``size``), an
    unreadable layout file 422, a disk error while writing 507 (while reading it is the server's: a 500)."""
    try:
        return call()
    except StoreError as exc:
        if exc.status == 409 and conflict:
            return JSONResponse({"detail": str(exc), "size": exc.size}, status_code=409)
        raise HTTPException(exc.status, str(exc)) from None
    except LayoutError as exc:
        raise HTTPException(422, str(exc).splitlines()[0][:500]) from None
    except OSError as exc:
        if not writing:
            raise
        log.warning("recordings: %s", exc)
        raise HTTPException(507, f"the recordings store could not write: {exc.strerror or exc}") from None


def _check_label(label: Optional[str], what: str) -> None:
    if label is not None and (any(ord(c) < 32 or ord(c) == 127 for c in label) or label != label.strip()):
        raise HTTPException(400, f"{what}: {label[:40]!r} holds a control character or surrounding spaces")


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"the body is over {limit} bytes (--max-upload-mb, or the file's own cap)")


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its ``$defs`` written in place (an ``openapi_extra`` body has no components)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.split("/")[-1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved
