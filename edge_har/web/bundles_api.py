"""The bundle store's routes: upload a model bundle, list them, and let devices download one (resumably).

``POST /api/bundles`` takes the raw tar (or tar.gz) as the request body, streamed to a temporary file inside
the store while it is counted, so a 200 MB upload holds nothing in memory; the store checks and repacks it
in a worker thread (:class:`~edge_har.web.bundle_store.BundleStore`). ``GET .../bundle.tar`` is a
``FileResponse``: Starlette answers ``Range`` (206) and ``If-Range``, so a device on a flaky link resumes a
download, and ``ETag`` / ``X-Bundle-Sha256`` carry the sha256 it checks the whole file against.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from edge_har.web import api_models as m
from edge_har.web.bundle_store import BUNDLE_ID_MAX, BUNDLE_ID_PATTERN, BundleStore, BundleStoreError, Upload
from edge_har.web.predict import ErrorResponse

__all__ = ["bundle_router"]

log = logging.getLogger("edge_har.web.bundles")

WRITE_CHUNK = 1024 * 1024  # the body is written to disk (in a worker thread) this much at a time

_ID: Any = PathParam(
    description="a stored bundle's id, as POST /api/bundles or GET /api/bundles gave it",
    min_length=14,
    max_length=BUNDLE_ID_MAX,
    pattern=BUNDLE_ID_PATTERN,
)
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse, "description": "no such bundle"}}
_TAR = {"schema": {"type": "string", "format": "binary"}}
_DOWNLOAD_HEADERS = {
    "ETag": {
        "description": 'the sha256 in quotes ("<sha256>"), for If-Range',
        "required": True,
        "schema": {"type": "string", "pattern": '^"[0-9a-f]{64}"$'},
    },
    "X-Bundle-Sha256": {
        "description": "the sha256 of the whole tar",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    },
    "Accept-Ranges": {"description": "bytes", "required": True, "schema": {"type": "string", "enum": ["bytes"]}},
}


def bundle_router(store: BundleStore) -> APIRouter:
    """The routes of ``store``, tagged ``bundles``."""
    router = APIRouter(tags=["bundles"])

    @router.post(
        "/api/bundles",
        status_code=201,
        summary="Store a model bundle (the body: a tar or tar.gz of its folder) for devices to download",
        description=(
            "The body is the raw archive (Content-Type application/x-tar or application/gzip; detected from its "
            "bytes): the bundle's files at the top level or inside one top folder. Only regular files and folders "
            f"are taken (no links, no absolute names or '..'), at most {store.max_bytes} bytes uploaded and 4 times "
            "that unpacked. The bundle must load and verify as a device would (every file's "
            "size and sha256 as bundle.json records them). What a device needs (bundle.json, its model files and "
            "self-test, bundle.sig when present) is kept as one canonical tar; the same bundle uploaded again "
            "gives the same id and item."
        ),
        response_model=m.BundleItem,
        responses={
            400: {"model": ErrorResponse, "description": "not a tar, an unsafe member, or a bundle that does not load"},
            413: {"model": ErrorResponse, "description": "over the upload limit, or unpacking to over 4 times it"},
            507: {"model": ErrorResponse, "description": "the disk refused a write"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/x-tar": _TAR, "application/gzip": _TAR, "application/octet-stream": _TAR},
            }
        },
    )
    async def api_add_bundle(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > store.max_bytes:
            raise HTTPException(413, f"the upload is over {store.max_bytes} bytes, the bundle store's limit")
        try:
            upload: Upload = await run_in_threadpool(store.new_upload)
        except BundleStoreError as exc:
            raise HTTPException(exc.status, str(exc)) from None
        try:
            await _receive(request, upload)
            return await run_in_threadpool(store.add_upload, upload)
        except BundleStoreError as exc:
            raise HTTPException(exc.status, str(exc)) from None
        except ClientDisconnect:
            raise HTTPException(400, "the client went away before the body ended") from None
        finally:
            await run_in_threadpool(store.discard, upload)

    @router.get(
        "/api/bundles",
        summary="The stored bundles, newest first",
        response_model=m.BundlesList,
    )
    def api_bundles() -> dict[str, Any]:
        return {"bundles": store.list()}

    @router.get(
        "/api/bundles/{bundle_id}",
        summary="One stored bundle's item",
        response_model=m.BundleItem,
        responses=_NOT_FOUND,
    )
    def api_bundle(bundle_id: str = _ID) -> dict[str, Any]:
        item = store.get(bundle_id)
        if item is None:
            raise HTTPException(404, f"no bundle {bundle_id!r} in the store")
        return item

    @router.get(
        "/api/bundles/{bundle_id}/bundle.tar",
        summary="Download a stored bundle: an uncompressed tar with its files at the top level (Range resumes)",
        description=(
            "Send `Range: bytes=N-` to resume at byte N (206 with the rest; 416 beyond the end) and "
            '`If-Range: "<sha256>"` so that a bundle replaced meanwhile comes whole (200) instead of mixed. '
            "Check the whole file against `X-Bundle-Sha256` before extracting it."
        ),
        response_class=FileResponse,
        responses={
            200: {"content": {"application/x-tar": _TAR}, "headers": _DOWNLOAD_HEADERS, "description": "the tar"},
            206: {"content": {"application/x-tar": _TAR}, "headers": _DOWNLOAD_HEADERS, "description": "a range"},
            416: {"description": "a Range beyond the end of the file"},
            **_NOT_FOUND,
        },
    )
    def api_bundle_tar(bundle_id: str = _ID) -> FileResponse:
        item = store.get(bundle_id)
        path = store.archive_path(bundle_id)
        if item is None or path is None:
            raise HTTPException(404, f"no bundle {bundle_id!r} in the store")
        sha = str(item["sha256"])
        return FileResponse(
            path,
            media_type="application/x-tar",
            filename=f"{bundle_id}.tar",
            headers={"ETag": f'"{sha}"', "X-Bundle-Sha256": sha},
        )

    @router.delete(
        "/api/bundles/{bundle_id}",
        status_code=204,
        summary="Delete a stored bundle",
        response_class=Response,
        responses={**_NOT_FOUND, 507: {"model": ErrorResponse, "description": "the disk refused the delete"}},
    )
    def api_delete_bundle(bundle_id: str = _ID) -> Response:
        try:
            found = store.delete(bundle_id)
        except OSError as exc:
            log.warning("bundles: %s", exc)
            raise HTTPException(507, f"the bundle store could not delete: {exc.strerror or exc}") from None
        if not found:
            raise HTTPException(404, f"no bundle {bundle_id!r} in the store")
        return Response(status_code=204)

    return router


async def _receive(request: Request, upload: Upload) -> None:
    """Write the request body into ``upload`` as it arrives (to disk in a worker thread, a chunk at a time)."""
    buffer = bytearray()
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > upload.max_bytes:
            raise BundleStoreError(f"the upload is over {upload.max_bytes} bytes, the bundle store's limit", 413)
        buffer += chunk
        if len(buffer) >= WRITE_CHUNK:
            await run_in_threadpool(_write, upload, bytes(buffer))
            buffer.clear()
    if buffer:
        await run_in_threadpool(_write, upload, bytes(buffer))


def _write(upload: Upload, data: bytes) -> None:
    try:
        upload.write(data)
    except OSError as exc:
        log.warning("bundles: %s", exc)
        raise BundleStoreError(f"the bundle store could not write: {exc.strerror or exc}", 507) from None
