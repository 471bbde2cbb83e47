"""/jobs: submit a search and watch it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Response, status

from api.deps import JobDep, SettingsDep, StoreDep, TeamDep
from api.schemas import (
    JobCreate,
    JobPublic,
    JobsPublic,
    MetricPointPublic,
    Problem,
    TrialCurve,
    TrialPublic,
    TrialsPublic,
)
from l2l.service import jobs as service
from l2l.service.jobspec import InvalidJob
from l2l.store import NotFound, Store
from l2l.store.records import JobRecord, TrialRecord
from l2l.store.states import TrialState

UNAUTHORIZED = {401: {"model": Problem, "description": "No API key, or one the service does not know."}}
NOT_FOUND = {404: {"model": Problem, "description": "No such job for this team."}}

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=UNAUTHORIZED)


def _public(store: Store, job: JobRecord) -> JobPublic:
    progress = service.job_progress(store, job)
    return JobPublic.of(
        job, progress["counts"], progress["best"], progress["final_model"], progress["warning"]
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {
            "model": JobPublic,
            "description": "A retry: the job first submitted with this Idempotency-Key.",
        },
        422: {
            "model": Problem,
            "description": "The job cannot run as submitted, or its Idempotency-Key came with another body.",
        },
        429: {"model": Problem, "description": "The team has as many unfinished jobs as it may."},
    },
)
def submit_job(
    body: JobCreate,
    store: StoreDep,
    settings: SettingsDep,
    team: TeamDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=200,
            description="Any unique string (a UUID): a retry with the same key and body returns the "
            "first job (200) instead of making a second one.",
        ),
    ] = None,
) -> JobPublic:
    """Queue a search job. It is checked first; nothing is stored if it cannot run.

    The job is stored in one transaction: an answer other than 2xx means no job was made.
    """
    try:
        if idempotency_key is None:
            job, new = service.submit_job(store, body, settings, team), True
        else:
            job, new = service.submit_job_once(store, body, settings, team, idempotency_key)
    except (InvalidJob, service.IdempotencyKeyReused) as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    except service.OverLimit as error:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, str(error)) from None
    if not new:
        response.status_code = status.HTTP_200_OK
        return _public(store, job)
    # Built without reading the database again: the job is stored, so the answer must be 201.
    return JobPublic.of(job, {state: 0 for state in TrialState}, None, None)


@router.get("")
def list_jobs(
    store: StoreDep,
    team: TeamDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JobsPublic:
    """The team's jobs, newest first."""
    jobs, total = store.list_jobs(offset=offset, limit=limit, team_id=team.id)
    return JobsPublic(items=[_public(store, job) for job in jobs], total=total, offset=offset, limit=limit)


@router.get("/{job_id}", responses=NOT_FOUND)
def get_job(job: JobDep, store: StoreDep) -> JobPublic:
    return _public(store, job)


@router.get("/{job_id}/trials", responses=NOT_FOUND)
def list_trials(
    job: JobDep,
    store: StoreDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    sort: Annotated[str, Query(pattern="^(number|reward)$")] = "number",
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
    state: Annotated[list[TrialState] | None, Query()] = None,
) -> TrialsPublic:
    """A page of the job's trials, by proposal order or by reward, optionally of some states."""
    trials, total = store.list_trials(
        job.id,
        states=set(state) if state else None,
        sort=sort,
        descending=order == "desc",
        offset=offset,
        limit=limit,
    )
    if offset and offset >= total > 0:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"offset {offset} is past the last of {total} trials")
    return TrialsPublic(items=[TrialPublic.of(t) for t in trials], total=total, offset=offset, limit=limit)


def _change_state(job: JobRecord, store: Store, team_id: int | None, action: str) -> JobPublic:
    try:
        changed = store.change_job_state(job.id, team_id, action)
    except ValueError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    return _public(store, changed)


STATE_CHANGE = {**NOT_FOUND, 409: {"model": Problem, "description": "The job's state does not allow it."}}


@router.post("/{job_id}/cancel", responses=STATE_CHANGE)
def cancel_job(job: JobDep, store: StoreDep, team: TeamDep) -> JobPublic:
    """End the job now: trials in flight are cancelled, finished ones are kept."""
    return _change_state(job, store, team.id, "cancel")


@router.post("/{job_id}/pause", responses=STATE_CHANGE)
def pause_job(job: JobDep, store: StoreDep, team: TeamDep) -> JobPublic:
    """Start no new trials; those in flight finish and count."""
    return _change_state(job, store, team.id, "pause")


@router.post("/{job_id}/resume", responses=STATE_CHANGE)
def resume_job(job: JobDep, store: StoreDep, team: TeamDep) -> JobPublic:
    """Carry on a paused job from where it was."""
    return _change_state(job, store, team.id, "resume")


def _trial_of(job: JobRecord, trial_id: int, store: Store) -> TrialRecord:
    try:
        trial = store.get_trial(trial_id)
    except NotFound:
        trial = None
    if trial is None or trial.job_id != job.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job.id} has no trial {trial_id}")
    return trial


@router.get("/{job_id}/trials/{trial_id}", responses=NOT_FOUND)
def get_trial(job: JobDep, trial_id: int, store: StoreDep) -> TrialPublic:
    """One trial: its parameters, final metrics, and error text if it failed."""
    return TrialPublic.of(_trial_of(job, trial_id, store))


@router.get("/{job_id}/trials/{trial_id}/metrics", responses=NOT_FOUND)
def get_trial_curve(job: JobDep, trial_id: int, store: StoreDep) -> TrialCurve:
    """The trial's metrics after every epoch, as its worker reported them."""
    trial = _trial_of(job, trial_id, store)
    points = [MetricPointPublic(step=p.step, values=p.values) for p in store.trial_metrics(trial.id)]
    return TrialCurve(trial_id=trial.id, points=points)
