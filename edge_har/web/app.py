"""The ``edge-har serve`` application: the Predict half, the Live half, static files, auth.

:func:`create_app` is the one place the pieces are put together, from one :class:`ServeConfig`,
so the command line, the tests (FastAPI's TestClient, a real uvicorn in a thread) and the
benchmark all run the same app. Nothing is read from the environment or at import time.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Optional

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from edge_har import __version__
from edge_har.web import api_models, pages_recordings
from edge_har.web.auth import SharedSecretAuth
from edge_har.web.bundle_store import BundleStore
from edge_har.web.bundles_api import bundle_router
from edge_har.web.config import ServeConfig, bundle_store_root
from edge_har.web.explain import explain_router
from edge_har.web.health import HealthCheck
from edge_har.web.live import LiveService
from edge_har.web.predict import STATIC, ErrorResponse, LoadedModel, PredictService
from edge_har.web.recordings import RecordingsService
from edge_har.web.rollouts import RolloutEngine
from edge_har.web.rollouts_api import rollout_router
from edge_har.web.store import open_store

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Predictions from uploaded recordings, clips and images through the device's own preprocessing "
    "and interpreter, and a live view of every device on an MQTT broker, with its history. "
    "Every parameter is bounded (see each one); a mistake is a 4xx whose `detail` names it. A request head "
    "must arrive within the server's --header-timeout and a body within --body-timeout (else 408), and the "
    "server holds at most --max-connections connections (else 503)."
)
# What every route may answer besides its own statuses (the protocol's deadlines and connection limit).
SERVER_RESPONSES: dict[int | str, dict[str, Any]] = {
    408: {"model": ErrorResponse, "description": "the request head or body did not arrive in time"},
    503: {"description": "more connections than --max-connections are open"},
}
LIVE_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "a parameter out of its range, named in `detail`"},
    404: {"model": ErrorResponse, "description": "no such device has been seen"},
}


def create_app(cfg: ServeConfig, models: Optional[list[LoadedModel]] = None) -> FastAPI:
    """The app for ``cfg``; ``models`` (already loaded bundles) lets tests and benchmarks share them."""
    predict = PredictService(cfg, models)
    classes = [label for m in predict.models for label in m.bundle.labels]
    live = LiveService(cfg, open_store(cfg), model_labels=classes)
    health = HealthCheck(live.store)
    recordings = RecordingsService(cfg)
    bundles = BundleStore(bundle_store_root(cfg), cfg.max_bundle_bytes)
    rollouts = RolloutEngine(bundle_store_root(cfg) / "rollouts", live.store, bundles, cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        live.start()
        recordings.start()
        rollouts.start()
        try:
            yield
        finally:
            rollouts.stop()
            recordings.stop()
            live.stop()
            log.info("edge-har serve stopped")

    # No /docs or /redoc: FastAPI's pages load their scripts from a CDN, and a Pi may be offline.
    app = FastAPI(
        title="edge-har serve",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        responses=SERVER_RESPONSES,
    )
    app.state.cfg = cfg
    app.state.predict = predict
    app.state.live = live
    app.state.recordings = recordings
    app.state.bundles = bundles
    app.include_router(predict.router)
    app.include_router(live.router, responses=LIVE_RESPONSES)
    app.include_router(explain_router(predict, recordings.store))
    app.include_router(recordings.router)
    app.include_router(pages_recordings.router)
    app.include_router(bundle_router(bundles))
    app.include_router(rollout_router(rollouts))
    app.state.rollouts = rollouts
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _operations(app, live, health)
    if cfg.password is not None:
        app.add_middleware(SharedSecretAuth, password=cfg.password, open_paths=OPEN_PATHS)
    return app


# Answered without the password: what an orchestrator's probe reads, which says ok or not and nothing else.
OPEN_PATHS = frozenset({"/healthz"})


def _operations(app: FastAPI, live: LiveService, health: HealthCheck) -> None:
    """``/healthz`` (the probe) and ``/metrics`` (Prometheus), on a registry of this app's own."""
    from edge_har.web.metrics import CONTENT_TYPE_LATEST, registry_for, render

    registry = registry_for(live)

    @app.get(
        "/healthz",
        tags=["operations"],
        summary="200 when the store answers and the broker (if configured) is connected, else 503",
        description="No password needed. The store must answer `SELECT 1` within a couple of seconds.",
        response_model=api_models.HealthResponse,
        responses={503: {"model": api_models.HealthResponse, "description": "the store or the broker is away"}},
    )
    def healthz() -> JSONResponse:
        status, body = health.report(live.broker_state())
        return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics: the ingest's books, and per device gaps, predictions/s and liveness",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "metrics"}},
    )
    def metrics() -> Response:
        return Response(render(registry), media_type=CONTENT_TYPE_LATEST)
