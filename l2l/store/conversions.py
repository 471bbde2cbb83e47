"""Row-to-record conversions shared by :mod:`l2l.store.database` and :mod:`l2l.store.step_reports`
(one copy, so a column added to trials reaches every record the store hands out)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from l2l.store.records import TrialRecord
from l2l.store.states import TrialState
from l2l.store.tables import utcnow

#: Ids are 64-bit signed integers in every database; a larger number names no row (and
#: would overflow the driver before the query ran).
MAX_ID = 2**63 - 1


def json_safe(values: Mapping[str, Any]) -> dict[str, Any]:
    # JSON has no NaN or infinity (PostgreSQL refuses them); null keeps "no usable value".
    return {
        name: None if isinstance(value, float) and not math.isfinite(value) else value
        for name, value in values.items()
    }


def aware(moment: datetime | None) -> datetime | None:
    # SQLite hands datetimes back without a zone; every time stored here is UTC.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def trial_record(row: Any, best_trial_id: int | None) -> TrialRecord:
    return TrialRecord(
        id=row.id,
        job_id=row.job_id,
        number=row.number,
        proposal_id=row.proposal_id,
        state=TrialState(row.state),
        params=dict(row.params),
        reward=row.reward,
        metrics=dict(row.metrics or {}),
        error=row.error,
        attempts=row.attempts,
        told=row.told,
        is_best=row.id == best_trial_id,
        created_at=aware(row.created_at) or utcnow(),
        started_at=aware(row.started_at),
        finished_at=aware(row.finished_at),
        resumes_trial_id=row.resumes_trial_id,
        start_epoch=row.start_epoch or 0,
    )
