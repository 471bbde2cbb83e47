"""/jobs/{id}/rewards: a compact series of a job's finished trials, for charts.

The job page polls this every couple of seconds, so it stays small (two numbers a
trial) and cheap: a finished trial never changes again, so the number of finished
trials identifies the whole series. That number is the ETag (a poll that finds
nothing new is a 304 with no body), and the last series of each job is kept in
memory so that a new one is read from the database only when a trial finishes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from api.deps import JobDep, StoreDep
from api.routes.jobs import NOT_FOUND, UNAUTHORIZED
from l2l.store.states import TrialState

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=UNAUTHORIZED)

#: Trials that have a place on the chart: a reward, or a failure (drawn with no reward).
CHARTED = {TrialState.COMPLETED, TrialState.FAILED, TrialState.TIMED_OUT}

Series = list[tuple[int, float | None]]


class _SeriesCache:
    """The latest series of the most recently charted jobs, keyed by (job id, finished count)."""

    def __init__(self, size: int = 32) -> None:
        self._size = size
        self._items: OrderedDict[int, tuple[int, Series]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, job_id: int, finished: int) -> Series | None:
        with self._lock:
            item = self._items.get(job_id)
            if item is None or item[0] != finished:
                return None
            self._items.move_to_end(job_id)
            return item[1]

    def put(self, job_id: int, finished: int, series: Series) -> None:
        with self._lock:
            self._items[job_id] = (finished, series)
            self._items.move_to_end(job_id)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


def _short(reward: float | None) -> float | None:
    return None if reward is None else float(f"{reward:.6g}")


def _cache_of(request: Request) -> _SeriesCache:
    # One cache per app: job ids are only unique within one database.
    state = request.app.state
    if not hasattr(state, "reward_series"):
        state.reward_series = _SeriesCache()
    cache: _SeriesCache = state.reward_series
    return cache


@router.get(
    "/{job_id}/rewards",
    responses={
        **NOT_FOUND,
        200: {
            "description": "[[number, reward], ...] in trial order; reward is null for a failed trial.",
            "content": {"application/json": {"example": [[1, 0.91], [2, None], [3, 0.94]]}},
        },
        304: {"description": "Nothing finished since the ETag sent in If-None-Match."},
    },
)
def job_rewards(job: JobDep, store: StoreDep, request: Request) -> Response:
    """Every completed or failed trial as ``[number, reward|null]``, in trial order.

    Rewards are rounded to 6 significant digits, plenty for a chart; a trial's exact
    reward is in ``GET /jobs/{id}/trials/{trial_id}``.
    """
    counts = store.trial_counts(job.id)
    finished = sum(counts[state] for state in CHARTED)
    etag = f'"{job.id}-{finished}"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    cache = _cache_of(request)
    series = cache.get(job.id, finished)
    if series is None:
        trials, _ = store.list_trials(job.id, states=CHARTED, sort="number")
        series = [(t.number, _short(t.reward)) for t in trials]
        # A trial may have finished between the count and the read; key by what was read.
        finished = len(series)
        etag = f'"{job.id}-{finished}"'
        headers["ETag"] = etag
        cache.put(job.id, finished, series)
    return JSONResponse(series, headers=headers)
