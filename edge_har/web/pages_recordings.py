"""The Record, Label and Fleet pages of ``edge-har serve``: three static HTML files behind four routes.

``/record`` starts and stops a device's recording and sets its current label; ``/label`` lists the
recordings the server holds, and ``/label/<device>/<session>`` edits one session's label segments;
``/fleet`` shows the devices with the model each runs, the bundle store and the staged rollouts.
The pages read everything through the JSON API (``edge_har.web.recordings``, ``bundles_api``,
``rollouts_api``), so these routes only hand out the HTML; the path's device and session are read by
the page's script.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

__all__ = ["router"]

STATIC = Path(__file__).resolve().parent / "static"

router = APIRouter()


def _page(name: str) -> FileResponse:
    page = STATIC / name
    if not page.is_file():
        raise HTTPException(404, f"the page {name} is not installed")
    return FileResponse(page, media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/record", include_in_schema=False)
def record_page() -> FileResponse:
    return _page("record.html")


@router.get("/label", include_in_schema=False)
def recordings_page() -> FileResponse:
    return _page("label.html")


@router.get("/label/{device_id}/{session_id}", include_in_schema=False)
def label_page(device_id: str, session_id: str) -> FileResponse:
    return _page("label.html")


@router.get("/fleet", include_in_schema=False)
def fleet_page() -> FileResponse:
    return _page("fleet.html")
