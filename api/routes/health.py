"""/health: is the service up, its job loop included.

The controller writes a heartbeat row in the database every few seconds
(``controller.heartbeat_seconds``); every API process, replicas started with
``l2l serve --no-controller`` included, reads it from there, so each answers for the
one controller the deployment has. ``/health/live`` says only that this API process answers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import SettingsDep, StoreDep
from api.schemas import Problem
from l2l import __version__
from l2l.store import StorageError

router = APIRouter(tags=["service"])


class ControllerHealth(BaseModel):
    id: str = Field(description="The controller whose heartbeat is the newest.")
    host: str
    pid: int
    heartbeat_age_seconds: float = Field(
        description="Seconds since that controller last wrote its heartbeat."
    )


class Health(BaseModel):
    status: str = Field(description="ok")
    version: str
    controller: ControllerHealth


class Live(BaseModel):
    status: str = Field(description="ok")
    version: str


UNHEALTHY = {
    503: {
        "model": Problem,
        "description": "No controller has written a heartbeat lately, or the database does not answer; "
        "jobs are accepted but will not run until it is back. Retry after the seconds in Retry-After.",
    }
}


@router.get("/health", response_model=Health, responses=UNHEALTHY)
def health(store: StoreDep, settings: SettingsDep) -> Any:
    """200 when the database answers and a controller's heartbeat is fresh, with its age; else 503."""
    fresh_for = settings.controller.heartbeat_stale_seconds
    retry_after = str(max(1, round(settings.controller.heartbeat_seconds)))
    try:
        controllers = store.controllers()
    except StorageError:
        return _unhealthy("the database does not answer", retry_after)
    if not controllers:
        return _unhealthy("no controller is running: jobs will not start", retry_after)
    newest = controllers[0]
    age = max(0.0, (datetime.now(UTC) - newest.heartbeat_at).total_seconds())
    if age > fresh_for:
        return _unhealthy(
            f"the controller's last heartbeat is {age:.0f} s old (more than {fresh_for:g} s): "
            "jobs will not progress until a controller runs",
            retry_after,
        )
    return Health(
        status="ok",
        version=__version__,
        controller=ControllerHealth(
            id=newest.id, host=newest.host, pid=newest.pid, heartbeat_age_seconds=round(age, 3)
        ),
    )


@router.get("/health/live")
def live() -> Live:
    """200 whenever this API process answers, whatever the database and the controller do."""
    return Live(status="ok", version=__version__)


def _unhealthy(detail: str, retry_after: str) -> JSONResponse:
    return JSONResponse(
        {"detail": detail},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": retry_after},
    )
