"""A placement job's result, and its worker's upload of it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, HTTPException, status
from fastapi.responses import FileResponse

from api.deps import JobDep, SettingsDep, StoreDep
from api.routes.jobs import NOT_FOUND, UNAUTHORIZED
from api.routes.trials import bearer_token, worker_report_errors
from api.schemas import PlacementAccepted, Problem
from l2l.service import jobs as service
from l2l.service import placement_jobs

router = APIRouter(tags=["placement"])


@router.get(
    "/jobs/{job_id}/placement",
    response_class=FileResponse,
    responses={
        **UNAUTHORIZED,
        **NOT_FOUND,
        200: {"content": {"application/json": {}}, "description": "The placement and how it runs."},
    },
)
def get_placement(job: JobDep, store: StoreDep) -> FileResponse:
    """A placement job's result (404 until its worker sent it): ``placement`` (a device name per op),
    ``step_time`` (seconds) and ``step_time_ms``; ``graph`` (ops with name, layer, kind, inputs as op
    indices, flops, output_bytes); ``devices`` and ``cluster``; ``baselines`` (each one's ``step_time_ms``
    and placement), ``best_baseline``, ``lower_bound_ms`` and ``speedup`` over the expert and the best
    baseline; ``timelines`` of the learned and the expert placement, per device the op runs
    ``[op, backward, start_ms, end_ms]`` and the transfers it sends ``[op, backward, to_device, start_ms,
    end_ms]``; ``samples``, ``search_seconds`` and ``history`` ([samples, seconds, best ms])."""
    if service.job_kind(job) != "placement":
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job.id} is a search, not a placement job")
    path = placement_jobs.placement_result(store, job)
    if path is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"job {job.id} ({job.state.value}) has no placement yet"
        )
    return FileResponse(path, media_type="application/json", filename=f"l2l-job-{job.id}-placement.json")


@router.post(
    "/trials/{trial_id}/placement",
    tags=["workers"],
    responses={
        403: {"model": Problem, "description": "The token is not this trial's."},
        404: {"model": Problem},
        409: {"model": Problem, "description": "The trial is not running."},
        422: {"model": Problem},
    },
)
def report_placement(
    trial_id: int,
    document: Annotated[
        dict[str, Any], Body(description="The result document (see GET /jobs/{id}/placement).")
    ],
    store: StoreDep,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> PlacementAccepted:
    """A placement worker sends its result with its trial's token, before its final report."""
    with worker_report_errors(trial_id):
        artifact, changed = placement_jobs.report_placement(
            store, settings, trial_id, bearer_token(authorization), document
        )
    return PlacementAccepted(
        job_id=artifact.job_id if artifact else store.get_trial(trial_id).job_id, changed=changed
    )
