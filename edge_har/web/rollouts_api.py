"""The rollouts' routes: start a staged rollout of a stored bundle, follow it, stop it; the fleet's models.

See :mod:`edge_har.web.rollouts` for what a stage checks. Every answer is documented in ``/openapi.json``
(and so fuzzed); a request the engine refuses is a 400 whose ``detail`` names the field.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from fastapi import APIRouter, HTTPException, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from edge_har.web import api_models as m
from edge_har.web.predict import ErrorResponse
from edge_har.web.rollouts import NoBroker, RolloutEngine, RolloutError

__all__ = ["rollout_router"]

_ID: Any = PathParam(
    description="a rollout's id, as POST /api/rollouts gave it",
    min_length=24,
    max_length=24,
    pattern=r"^r-[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$",
)
_ERRORS: dict[Union[int, str], dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "a field the rollout cannot take, named in `detail`"},
    503: {"model": ErrorResponse, "description": "serve has no broker to reach the devices"},
}


class RolloutRequest(BaseModel):
    """What to roll out where: one of ``devices``, ``group`` or ``all``."""

    model_config = ConfigDict(extra="forbid")

    bundle_id: str = Field(min_length=1, max_length=128, description="a stored bundle's id (GET /api/bundles)")
    devices: Optional[list[str]] = Field(None, max_length=10_000, description="these devices")
    group: Optional[str] = Field(None, min_length=1, max_length=64, description="the devices that report this group")
    all: Optional[bool] = Field(None, description="every device the store knows")
    canary: Union[int, str] = Field(
        1, description="the first stage: a number of devices (>= 1) or a percentage ('10%'); then the rest"
    )
    criteria: Optional[dict[str, float]] = Field(
        None,
        description=(
            "health thresholds: online_within_s, soak_s, min_predictions, max_runs, max_p99_factor, "
            "min_p99_increase_ms, min_confidence_factor (see the README)"
        ),
    )


def rollout_router(engine: RolloutEngine) -> APIRouter:
    router = APIRouter(tags=["rollouts"])

    @router.post(
        "/api/rollouts",
        status_code=201,
        summary="Start a staged rollout of a stored bundle (a canary, then the rest)",
        response_model=m.Rollout,
        responses=_ERRORS,
    )
    def create(body: RolloutRequest) -> dict[str, Any]:
        try:
            return engine.create(body.model_dump(exclude_none=True))
        except RolloutError as exc:
            raise HTTPException(400, str(exc)) from None
        except NoBroker as exc:
            raise HTTPException(503, str(exc)) from None

    @router.get("/api/rollouts", summary="Every rollout, newest first", response_model=m.RolloutList)
    def list_rollouts() -> dict[str, Any]:
        return {"rollouts": engine.all_rollouts()}

    @router.get(
        "/api/rollouts/{rollout_id}",
        summary="One rollout: its stages and each device's progress and health",
        response_model=m.Rollout,
        responses={404: {"model": ErrorResponse, "description": "no such rollout"}},
    )
    def get(rollout_id: str = _ID) -> dict[str, Any]:
        rollout = engine.get(rollout_id)
        if rollout is None:
            raise HTTPException(404, f"rollout_id: no rollout {rollout_id!r}")
        return rollout

    @router.post(
        "/api/rollouts/{rollout_id}/stop",
        summary="Stop a running rollout; with rollback=true every device that took its bundle goes back",
        response_model=m.Rollout,
        responses={404: {"model": ErrorResponse, "description": "no such rollout"}},
    )
    def stop(
        rollout_id: str = _ID, rollback: bool = Query(True, description="roll back the devices that took it")
    ) -> dict[str, Any]:
        try:
            return engine.stop_rollout(rollout_id, rollback)
        except KeyError:
            raise HTTPException(404, f"rollout_id: no rollout {rollout_id!r}") from None

    @router.get(
        "/api/fleet",
        summary="Every device with the model it runs and its last update state",
        response_model=m.FleetResponse,
    )
    def fleet() -> dict[str, Any]:
        return {"devices": engine.fleet()}

    return router
