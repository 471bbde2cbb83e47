"""/jobs: submit a search and watch it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from api.deps import JobDep, SettingsDep, StoreDep
from api.schemas import JobCreate, JobPublic, JobsPublic, Problem, TrialPublic, TrialsPublic
from l2l import service
from l2l.jobspec import InvalidJob
from l2l.records import JobRecord
from l2l.states import TrialState
from l2l.store import Store

router = APIRouter(prefix="/jobs", tags=["jobs"])


def _public(store: Store, job: JobRecord) -> JobPublic:
    progress = service.job_progress(store, job)
    return JobPublic.of(job, progress["counts"], progress["best"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={422: {"model": Problem, "description": "The job cannot run as submitted."}},
)
def submit_job(body: JobCreate, store: StoreDep, settings: SettingsDep) -> JobPublic:
    """Queue a search job. It is checked first; nothing is stored if it cannot run."""
    try:
        job = service.submit_job(store, body, settings)
    except InvalidJob as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    return _public(store, job)


@router.get("")
def list_jobs(
    store: StoreDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JobsPublic:
    """Jobs, newest first."""
    jobs, total = store.list_jobs(offset=offset, limit=limit)
    return JobsPublic(items=[_public(store, job) for job in jobs], total=total, offset=offset, limit=limit)


@router.get("/{job_id}", responses={404: {"model": Problem}})
def get_job(job: JobDep, store: StoreDep) -> JobPublic:
    return _public(store, job)


@router.get("/{job_id}/trials", responses={404: {"model": Problem}})
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
