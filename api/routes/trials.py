"""/trials: the worker's side of the API."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, status
from starlette.concurrency import run_in_threadpool

from api.deps import StepWriterDep, StoreDep
from api.schemas import Problem, ReportAccepted, TrialPublic, TrialReport
from l2l.service import jobs as service
from l2l.store import NotFound

router = APIRouter(prefix="/trials", tags=["trials"])


@router.post(
    "/{trial_id}/report",
    responses={
        401: {"model": Problem, "description": "No report token was sent."},
        403: {"model": Problem, "description": "The token is not this trial's."},
        404: {"model": Problem},
        409: {"model": Problem, "description": "The trial is not running."},
    },
)
async def report(
    trial_id: int,
    body: TrialReport,
    store: StoreDep,
    writer: StepWriterDep,
    authorization: Annotated[str | None, Header()] = None,
) -> ReportAccepted:
    """A worker reports metrics with its per-trial token. Repeats of a finished trial change nothing.

    Answered once the report is stored (committed). An intermediate report's step is stored
    once: sending it again, even at the same moment, is answered 200 with ``changed: false``.
    """
    token = bearer_token(authorization)
    if token is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "send the trial's report token as 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    with worker_report_errors(trial_id):
        if not body.final and body.step is not None:
            # The hot path (every epoch of every trial): async, batched with its neighbours.
            outcome = await service.report_step(writer, trial_id, token, body.step, body.metrics)
        else:
            outcome = await run_in_threadpool(
                service.report_trial, store, trial_id, token, body.metrics, step=body.step, final=body.final
            )
    return ReportAccepted(
        trial=TrialPublic.of(outcome.trial), changed=outcome.changed, message=outcome.message
    )


@contextmanager
def worker_report_errors(trial_id: int) -> Iterator[None]:
    """The HTTP answer to each way a worker's report can be refused (every worker upload)."""
    try:
        yield
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"trial {trial_id} not found") from None
    except service.Forbidden as error:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(error)) from None
    except service.NotRunning as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
