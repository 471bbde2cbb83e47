"""Workers' intermediate (per-epoch) reports, many in one short transaction.

This is the service's hottest write: every running trial reports once an epoch. One call of
:func:`record_step_reports` takes a whole batch of reports in one transaction of three
statements, whatever the batch's size: one read of the trials concerned (with their job's best
trial, for the answer), one ``INSERT ... ON CONFLICT (trial_id, step) DO NOTHING RETURNING`` of
the new steps, and the commit. Core statements only: no ORM object is loaded.

Exactly once comes from the table's unique (trial_id, step) key, not from reading first: a
report whose step is already stored (sent again, or sent twice at the same moment) inserts
nothing and is answered :attr:`StepOutcome.REPEAT`.
"""

from __future__ import annotations

import fcntl
import hmac
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Connection, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite

from l2l.store.conversions import MAX_ID, json_safe, trial_record
from l2l.store.records import TrialRecord
from l2l.store.states import TrialState
from l2l.store.tables import JobRow, MetricRow, TrialRow, utcnow


class SqliteBatchGate:
    """Lets one batch writer at a time at a SQLite file, across processes, without busy sleeps.

    Several API processes each have a batch writer. SQLite serialises them itself, but a writer
    that finds the database locked sleeps in its busy handler (1, 2, 5 ... 100 ms) however soon
    the lock frees, which made the slowest reports wait hundreds of milliseconds. Waiting on an
    exclusive ``flock`` of a file beside the database instead wakes the next writer the moment
    the previous one committed. (A separate file, and a BSD lock: opening or closing it cannot
    drop SQLite's own POSIX locks on the database.) For other databases it does nothing.
    """

    def __init__(self, url: str) -> None:
        database = url.split("///", 1)[-1] if url.startswith("sqlite") else ""
        self._path = f"{database}-batch.lock" if database and database != ":memory:" else None
        self._thread_lock = threading.Lock()
        self._fd: int | None = None

    @contextmanager
    def hold(self) -> Iterator[None]:
        if self._path is None:
            yield
            return
        with self._thread_lock:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._thread_lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


@dataclass(frozen=True)
class StepReport:
    """One intermediate report: ``values`` of trial ``trial_id`` after ``step``."""

    trial_id: int
    step: int
    #: sha256 (hex) of the token the worker sent; compared in constant time with the trial's.
    token_hash: str
    values: Mapping[str, float | None]


class StepOutcome(StrEnum):
    RECORDED = "recorded"  # stored now
    REPEAT = "repeat"  # that step was already stored (or is stored by a twin in the same batch)
    FINISHED = "finished"  # the trial has ended; nothing stored
    NOT_RUNNING = "not_running"  # the trial has not started; nothing stored
    FORBIDDEN = "forbidden"  # the token is not the current attempt's
    NOT_FOUND = "not_found"  # no such trial


@dataclass(frozen=True)
class StepResult:
    outcome: StepOutcome
    #: The trial as this transaction saw it (None only for NOT_FOUND and FORBIDDEN).
    trial: TrialRecord | None


_TRIAL_COLUMNS = (
    TrialRow.id,
    TrialRow.job_id,
    TrialRow.number,
    TrialRow.proposal_id,
    TrialRow.state,
    TrialRow.params,
    TrialRow.reward,
    TrialRow.metrics,
    TrialRow.error,
    TrialRow.attempts,
    TrialRow.told,
    TrialRow.token_hash,
    TrialRow.created_at,
    TrialRow.started_at,
    TrialRow.finished_at,
    TrialRow.resumes_trial_id,
    TrialRow.start_epoch,
    JobRow.best_trial_id,
)

_READ_TRIALS = (
    select(*_TRIAL_COLUMNS)
    .join(JobRow, JobRow.id == TrialRow.job_id)
    # BIGINT: on PostgreSQL the id column is a 32-bit integer, and an id past that in a list cast
    # to the column's type overflows instead of matching nothing.
    .where(TrialRow.id.in_(bindparam("ids", expanding=True, type_=BigInteger)))
)


def record_step_reports(connection: Connection, reports: Sequence[StepReport]) -> list[StepResult]:
    """Store the new steps of ``reports`` on ``connection`` (inside the caller's transaction).

    Returns one result per report, in order. Reports of one batch never see each other's
    effects except through the unique key: of two identical reports, the first is RECORDED
    and the second a REPEAT, exactly as if they had come one after the other.
    """
    # An id past 64 bits names no trial (and would overflow the driver): it is simply not found.
    trial_ids = sorted({report.trial_id for report in reports if 0 < report.trial_id <= MAX_ID})
    rows = connection.execute(_READ_TRIALS, {"ids": trial_ids}).all() if trial_ids else []
    trials = {row.id: row for row in rows}

    verdicts: list[StepOutcome | None] = []  # None: a candidate for the insert
    to_insert: dict[tuple[int, int], dict[str, Any]] = {}
    now = utcnow()
    for report in reports:
        row = trials.get(report.trial_id)
        if row is None:
            verdicts.append(StepOutcome.NOT_FOUND)
        elif row.token_hash is None or not hmac.compare_digest(row.token_hash, report.token_hash):
            verdicts.append(StepOutcome.FORBIDDEN)
        elif TrialState(row.state).is_finished():
            verdicts.append(StepOutcome.FINISHED)
        elif row.state != TrialState.RUNNING.value:
            verdicts.append(StepOutcome.NOT_RUNNING)
        else:
            verdicts.append(None)
            to_insert.setdefault(
                (report.trial_id, report.step),
                {
                    "trial_id": report.trial_id,
                    "step": report.step,
                    "values": json_safe(report.values),
                    "created_at": now,
                },
            )

    inserted: set[tuple[int, int]] = set()
    if to_insert:
        # One cached statement, many parameter sets: SQLAlchemy sends them as one multi-row
        # INSERT ("insertmanyvalues") and hands back the rows that went in.
        inserted = {
            tuple(row) for row in connection.execute(_insert_new_steps(connection), list(to_insert.values()))
        }

    records: dict[int, TrialRecord] = {}  # one per trial, however many of its reports the batch holds
    results = []
    for report, verdict in zip(reports, verdicts, strict=True):
        key = (report.trial_id, report.step)
        if verdict is None:
            # The first report of a key that went in is the one that stored it.
            verdict = StepOutcome.RECORDED if key in inserted else StepOutcome.REPEAT
            inserted.discard(key)
        trial = None
        if verdict not in (StepOutcome.NOT_FOUND, StepOutcome.FORBIDDEN):
            trial = records.get(report.trial_id)
            if trial is None:
                row = trials[report.trial_id]
                trial = records[report.trial_id] = trial_record(row, row.best_trial_id)
        results.append(StepResult(verdict, trial))
    return results


def _insert_new_steps(connection: Connection) -> Any:
    statement = _insert(connection).on_conflict_do_nothing(index_elements=["trial_id", "step"])
    return statement.returning(MetricRow.trial_id, MetricRow.step)


def _insert(connection: Connection) -> Any:
    # ON CONFLICT is the same clause in both dialects, but each has its own insert() for it.
    if connection.dialect.name == "postgresql":
        return postgresql.insert(MetricRow)
    if connection.dialect.name == "sqlite":
        return sqlite.insert(MetricRow)
    raise NotImplementedError(f"step reports need ON CONFLICT; {connection.dialect.name} is not supported")
