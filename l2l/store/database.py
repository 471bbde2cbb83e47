"""The only module that talks to the database (with :mod:`l2l.store.step_reports`, which it calls).

Every write goes through :meth:`Store._session`, which commits, rolls back on error,
turns SQLAlchemy errors into :class:`StorageError` and closes. ORM rows never leave
this module: callers get frozen records (:mod:`l2l.store.records`).

:meth:`Store.set_trial_state` is the one function that changes a trial's state. It
locks the row (``FOR UPDATE`` on PostgreSQL; on SQLite every write transaction is
``BEGIN IMMEDIATE``, which serialises writers) and refuses to touch a finished trial.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, func, or_, select, update
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from l2l.store.conversions import MAX_ID
from l2l.store.conversions import aware as _aware
from l2l.store.conversions import json_safe as _json_safe
from l2l.store.conversions import trial_record as _trial_record
from l2l.store.heartbeats import ControllerHeartbeats
from l2l.store.records import (
    ArtifactRecord,
    CurvePoint,
    DatasetRecord,
    FinalModelRecord,
    GraphRecord,
    JobRecord,
    MetricPoint,
    TeamRecord,
    TrialRecord,
)
from l2l.store.states import JobState, TrialState
from l2l.store.step_reports import SqliteBatchGate, StepReport, StepResult, record_step_reports
from l2l.store.tables import (
    ApiKeyRow,
    ArtifactRow,
    DatasetRow,
    FinalModelRow,
    GraphRow,
    JobRow,
    MetricRow,
    TeamRow,
    TrialRow,
    utcnow,
)

MIGRATIONS = Path(__file__).parent / "migrations"

#: Columns a trial listing may be sorted by.
TRIAL_SORT_KEYS = {"number": TrialRow.number, "reward": TrialRow.reward}


class StorageError(Exception):
    """The database refused or failed an operation."""


class InvalidValue(ValueError):
    """A value the database cannot hold (a NUL character, an out-of-range number): the caller's fault."""


class NotFound(StorageError):
    pass


class TrialFinished(StorageError):
    """A finished trial cannot change; ``trial`` is its stored record."""

    def __init__(self, trial: TrialRecord) -> None:
        super().__init__(f"trial {trial.id} already finished ({trial.state.value})")
        self.trial = trial


class FinalModelFinished(StorageError):
    """The job's final model already ended; ``model`` is its stored record."""

    def __init__(self, model: FinalModelRecord) -> None:
        super().__init__(f"the final model of job {model.job_id} already ended ({model.state.value})")
        self.model = model


class Conflict(StorageError):
    """The write would break a uniqueness rule (e.g. a team name that is taken)."""


class AlreadySubmitted(Conflict):
    """The team already submitted a job with this idempotency key; ``job`` is that job."""

    def __init__(self, job: JobRecord) -> None:
        super().__init__(f"job {job.id} was already submitted with this idempotency key")
        self.job = job


class LeaseLost(StorageError):
    """Another controller owns the job now; this one must stop driving it."""


class JobNotRunning(StorageError):
    """The job was paused or ended (by its team) since the controller last looked."""


class Store(ControllerHeartbeats):
    def __init__(self, url: str) -> None:
        self.url = url
        self._write_engine = _make_engine(url, immediate=True)
        # SQLite readers must not take the write lock; elsewhere one engine serves both.
        self._read_engine = (
            _make_engine(url, immediate=False) if self._write_engine.dialect.name == "sqlite" else None
        )
        self._batch_gate = SqliteBatchGate(url)
        self._write_sessions = sessionmaker(self._write_engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(self._read_engine or self._write_engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self._write_engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (safe to call every start)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self._write_engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def dispose(self) -> None:
        self._batch_gate.close()
        self._write_engine.dispose()
        if self._read_engine is not None:
            self._read_engine.dispose()

    @contextmanager
    def _session(self, write: bool = True) -> Iterator[Session]:
        factory = self._write_sessions if write else self._read_sessions
        session = factory()
        try:
            yield session
            session.commit()
        except (DataError, StatementError, OverflowError) as error:
            session.rollback()
            cause = getattr(error, "orig", error)
            if isinstance(error, (DataError, OverflowError)) or isinstance(cause, ValueError | OverflowError):
                # The value, not the database, is at fault (a NUL character, a number past 64 bits):
                # a lookup by it finds nothing, a write of it is refused.
                if not write:
                    raise NotFound("no such record") from error
                raise InvalidValue(f"a value cannot be stored ({type(cause).__name__})") from error
            raise StorageError(f"database error: {error}") from error
        except SQLAlchemyError as error:
            session.rollback()
            raise StorageError(f"database error: {error}") from error
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    # ---------------------------------------------------------------- teams

    def create_team(self, name: str, limits: Mapping[str, Any] | None = None) -> TeamRecord:
        with self._session() as session:
            if session.scalars(select(TeamRow).where(TeamRow.name == name)).first() is not None:
                raise Conflict(f"a team named {name!r} already exists")
            row = TeamRow(name=name, **dict(limits or {}))
            session.add(row)
            session.flush()
            return _team_record(row)

    def get_team(self, team_id: int) -> TeamRecord:
        with self._session(write=False) as session:
            return _team_record(_get(session, TeamRow, team_id))

    def team_by_name(self, name: str) -> TeamRecord:
        with self._session(write=False) as session:
            row = session.scalars(select(TeamRow).where(TeamRow.name == name)).first()
            if row is None:
                raise NotFound(f"no team named {name!r}")
            return _team_record(row)

    def add_api_key(self, team_id: int, key_hash: str) -> None:
        with self._session() as session:
            _get(session, TeamRow, team_id)
            session.add(ApiKeyRow(team_id=team_id, key_hash=key_hash))

    def revoke_api_keys(self, team_id: int) -> int:
        """Revoke every live key of the team (they stop working on the next request); how many."""
        with self._session() as session:
            _get(session, TeamRow, team_id)
            rows = session.scalars(
                select(ApiKeyRow).where(ApiKeyRow.team_id == team_id, ApiKeyRow.revoked_at.is_(None))
            ).all()
            now = datetime.now(UTC)
            for row in rows:
                row.revoked_at = now
            return len(rows)

    def team_for_key(self, key_hash: str) -> TeamRecord | None:
        """The team an unrevoked key belongs to, or None."""
        with self._session(write=False) as session:
            row = session.scalars(
                select(TeamRow)
                .join(ApiKeyRow, ApiKeyRow.team_id == TeamRow.id)
                .where(ApiKeyRow.key_hash == key_hash, ApiKeyRow.revoked_at.is_(None))
            ).first()
            return _team_record(row) if row is not None else None

    # ------------------------------------------------------------- datasets

    def create_dataset(
        self, team_id: int, name: str, spec: Mapping[str, Any], summary: Mapping[str, Any]
    ) -> DatasetRecord:
        with self._session() as session:
            row = DatasetRow(team_id=team_id, name=name, spec=dict(spec), summary=dict(summary))
            session.add(row)
            session.flush()
            return _dataset_record(row)

    def get_dataset(self, dataset_id: int, team_id: int | None = None) -> DatasetRecord:
        with self._session(write=False) as session:
            row = _get(session, DatasetRow, dataset_id)
            if team_id is not None and row.team_id != team_id:
                raise NotFound(f"dataset {dataset_id} not found")
            return _dataset_record(row)

    def list_datasets(self, team_id: int) -> list[DatasetRecord]:
        with self._session(write=False) as session:
            rows = session.scalars(
                select(DatasetRow).where(DatasetRow.team_id == team_id).order_by(DatasetRow.id.desc())
            )
            return [_dataset_record(row) for row in rows]

    # ------------------------------------------------------------ op graphs

    def create_graph(self, team_id: int, name: str, path: str, summary: Mapping[str, Any]) -> GraphRecord:
        with self._session() as session:
            row = GraphRow(team_id=team_id, name=name, path=path, summary=dict(summary))
            session.add(row)
            session.flush()
            return _graph_record(row)

    def get_graph(self, graph_id: int, team_id: int | None = None) -> GraphRecord:
        """An uploaded graph; with ``team_id``, only that team's (another team's is NotFound)."""
        with self._session(write=False) as session:
            row = session.get(GraphRow, graph_id)
            if row is None or (team_id is not None and row.team_id != team_id):
                raise NotFound(f"graph {graph_id} not found")
            return _graph_record(row)

    def list_graphs(self, team_id: int) -> list[GraphRecord]:
        with self._session(write=False) as session:
            rows = session.scalars(
                select(GraphRow).where(GraphRow.team_id == team_id).order_by(GraphRow.id.desc())
            )
            return [_graph_record(row) for row in rows]

    # ------------------------------------------------------------ artifacts

    def save_artifact(self, trial_id: int, name: str, path: str) -> ArtifactRecord:
        """Record a file that trial ``trial_id``'s worker sent, as its job's ``name`` artifact.

        Only while the trial runs (a retried attempt replaces an earlier attempt's file):
        raises :class:`TrialFinished` once it finished, so a late worker changes nothing.
        """
        with self._session() as session:
            trial = _get(session, TrialRow, trial_id, lock=True)
            if TrialState(trial.state).is_finished():
                raise TrialFinished(_trial_record(trial, _best_trial_id(session, trial.job_id)))
            row = session.get(ArtifactRow, (trial.job_id, name), with_for_update=True)
            if row is None:
                row = ArtifactRow(job_id=trial.job_id, name=name)
                session.add(row)
            row.trial_id = trial_id
            row.path = path
            row.created_at = utcnow()
            session.flush()
            return _artifact_record(row)

    def get_artifact(self, job_id: int, name: str) -> ArtifactRecord | None:
        with self._session(write=False) as session:
            row = session.get(ArtifactRow, (job_id, name))
            return _artifact_record(row) if row is not None else None

    # --------------------------------------------------------- final models

    def start_final_model(
        self, job_id: int, owner: str, trial_id: int, params: Mapping[str, Any], token_hash: str
    ) -> FinalModelRecord:
        """Create (or start a new attempt of) the job's final model, running with a new token."""
        with self._session() as session:
            _owned_job(session, job_id, owner)
            row = session.get(FinalModelRow, job_id, with_for_update=True)
            if row is None:
                row = FinalModelRow(job_id=job_id, trial_id=trial_id, params=dict(params), attempts=0)
                session.add(row)
            elif TrialState(row.state).is_finished():
                raise FinalModelFinished(_final_model_record(row))
            row.state = TrialState.RUNNING.value
            row.attempts = (row.attempts or 0) + 1
            row.token_hash = token_hash
            session.flush()
            return _final_model_record(row)

    def get_final_model(self, job_id: int) -> FinalModelRecord | None:
        with self._session(write=False) as session:
            row = session.get(FinalModelRow, job_id)
            return _final_model_record(row) if row is not None else None

    def final_model_token_hash(self, job_id: int) -> str | None:
        with self._session(write=False) as session:
            row = session.get(FinalModelRow, job_id)
            return row.token_hash if row is not None else None

    def finish_final_model(
        self,
        job_id: int,
        state: TrialState,
        *,
        test_metrics: Mapping[str, Any] | None = None,
        files: Mapping[str, str] | None = None,
        error: str | None = None,
    ) -> FinalModelRecord:
        """End the final model (completed with its files and test score, or failed); once only."""
        if not state.is_finished():
            raise ValueError(f"{state} is not a final state")
        with self._session() as session:
            row = session.get(FinalModelRow, job_id, with_for_update=True)
            if row is None:
                raise NotFound(f"job {job_id} has no final model")
            if TrialState(row.state).is_finished():
                raise FinalModelFinished(_final_model_record(row))
            row.state = state.value
            row.test_metrics = _json_safe(test_metrics or {})
            row.files = dict(files or {})
            row.error = error
            row.finished_at = utcnow()
            return _final_model_record(row)

    # ----------------------------------------------------------------- jobs

    def create_job(
        self,
        name: str,
        spec: Mapping[str, Any],
        team_id: int | None = None,
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> JobRecord:
        """Store a queued job in one transaction.

        With ``idempotency_key``, raises :class:`AlreadySubmitted` (nothing stored) if the
        team already has a job with that key, also when a concurrent submit just stored it.
        """
        try:
            with self._session() as session:
                if idempotency_key is not None:
                    existing = _job_by_key(session, team_id, idempotency_key)
                    if existing is not None:
                        raise AlreadySubmitted(_job_record(existing))
                row = JobRow(
                    name=name,
                    state=JobState.QUEUED.value,
                    spec=dict(spec),
                    team_id=team_id,
                    idempotency_key=idempotency_key,
                    request_hash=request_hash,
                )
                session.add(row)
                session.flush()
                return _job_record(row)
        except AlreadySubmitted:
            raise
        except StorageError as error:
            if idempotency_key is None or not isinstance(error.__cause__, IntegrityError):
                raise
            lost_race = error
        with self._session(write=False) as session:  # a concurrent submit with the key won
            existing = _job_by_key(session, team_id, idempotency_key)
            if existing is None:
                raise lost_race
            raise AlreadySubmitted(_job_record(existing))

    def job_by_idempotency_key(self, team_id: int | None, key: str) -> JobRecord | None:
        with self._session(write=False) as session:
            row = _job_by_key(session, team_id, key)
            return _job_record(row) if row is not None else None

    def get_job(self, job_id: int, team_id: int | None = None) -> JobRecord:
        """A job; with ``team_id``, only that team's (another team's job is NotFound, not Forbidden)."""
        with self._session(write=False) as session:
            row = _get(session, JobRow, job_id)
            if team_id is not None and row.team_id != team_id:
                raise NotFound(f"job {job_id} not found")
            return _job_record(row)

    def list_jobs(
        self, offset: int = 0, limit: int = 50, team_id: int | None = None
    ) -> tuple[list[JobRecord], int]:
        with self._session(write=False) as session:
            where = [JobRow.team_id == team_id] if team_id is not None else []
            total = session.scalar(select(func.count()).select_from(JobRow).where(*where)) or 0
            rows = session.scalars(
                select(JobRow).where(*where).order_by(JobRow.id.desc()).offset(offset).limit(limit)
            )
            return [_job_record(row) for row in rows], total

    def count_unfinished_jobs(self, team_id: int) -> int:
        unfinished = [s.value for s in JobState if not s.is_finished()]
        with self._session(write=False) as session:
            query = select(func.count()).where(JobRow.team_id == team_id, JobRow.state.in_(unfinished))
            return session.scalar(query) or 0

    def claim_job(self, owner: str, lease_seconds: float) -> JobRecord | None:
        """Take the oldest queued job, or a running one whose controller's lease ran out."""
        now = utcnow()
        with self._session() as session:
            claimable = or_(
                JobRow.state == JobState.QUEUED.value,
                (JobRow.state == JobState.RUNNING.value)
                & or_(JobRow.lease_expires_at.is_(None), JobRow.lease_expires_at < now),
            )
            row = session.scalars(
                select(JobRow).where(claimable).order_by(JobRow.id).limit(1).with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return None
            if row.owner != owner:  # our own lapsed lease taken back is no new start
                row.unfinished_starts = (row.unfinished_starts or 0) + 1
            row.state = JobState.RUNNING.value
            row.owner = owner
            row.lease_expires_at = now + timedelta(seconds=lease_seconds)
            row.started_at = row.started_at or now
            return _job_record(row)

    def job_started(self, job_id: int, owner: str) -> None:
        """The controller loaded the job it claimed: it no longer counts as an unfinished start."""
        with self._session() as session:
            _owned_job(session, job_id, owner).unfinished_starts = 0

    def renew_lease(self, job_id: int, owner: str, lease_seconds: float) -> None:
        with self._session() as session:
            job = _owned_job(session, job_id, owner)
            job.lease_expires_at = utcnow() + timedelta(seconds=lease_seconds)

    def save_space(self, job_id: int, owner: str, space: Mapping[str, Any]) -> None:
        with self._session() as session:
            _owned_job(session, job_id, owner).space = dict(space)

    def save_chance(self, job_id: int, owner: str, chance: Mapping[str, Any]) -> None:
        """Keep what always guessing scores on the job's data (set once, when the job starts)."""
        with self._session() as session:
            _owned_job(session, job_id, owner).chance = dict(chance)

    def trial_counts(self, job_id: int) -> dict[TrialState, int]:
        """How many of the job's trials are in each state (every state present, zeros included)."""
        with self._session(write=False) as session:
            rows = session.execute(
                select(TrialRow.state, func.count()).where(TrialRow.job_id == job_id).group_by(TrialRow.state)
            )
            counts = {state: 0 for state in TrialState}
            for state, count in rows:
                counts[TrialState(state)] = count
            return counts

    def change_marker(self) -> tuple[Any, ...]:
        """A cheap summary that differs whenever something a job loop waits for happened.

        It changes when a job is submitted or changes state (paused, resumed, cancelled,
        finished), when a trial ends (a final report, a failure, a cancel) and when an
        intermediate report is stored; an idle loop compares it to wake at once instead of
        sleeping a whole pass. Only equality between two markers means anything.
        """
        ended = [state.value for state in TrialState if state.is_finished()]
        with self._session(write=False) as session:
            jobs = sorted(session.execute(select(JobRow.state, func.count()).group_by(JobRow.state)).all())
            trials_ended = session.scalar(select(func.count()).where(TrialRow.state.in_(ended)))
            last_report = session.scalar(select(func.max(MetricRow.id)))
        return (tuple(tuple(row) for row in jobs), trials_ended, last_report)

    def change_job_state(self, job_id: int, team_id: int | None, action: str) -> JobRecord:
        """A team's cancel, pause or resume. Cancelling ends every unfinished trial at once.

        Raises NotFound (also for another team's job) and ValueError for an action the
        job's state does not allow, with a message that says why.
        """
        now = utcnow()
        with self._session() as session:
            job = _get(session, JobRow, job_id, lock=True)
            if team_id is not None and job.team_id != team_id:
                raise NotFound(f"job {job_id} not found")
            state = JobState(job.state)
            if state.is_finished():
                raise ValueError(f"job {job_id} already ended ({state.value}); it cannot be {action}d")
            if action == "cancel":
                job.state = JobState.CANCELLED.value
                job.reason = "cancelled by its team"
                job.finished_at = now
                job.owner = None
                job.lease_expires_at = None
                for trial in session.scalars(
                    select(TrialRow).where(
                        TrialRow.job_id == job_id,
                        TrialRow.state.in_([TrialState.QUEUED.value, TrialState.RUNNING.value]),
                    )
                ):
                    trial.state = TrialState.CANCELLED.value
                    trial.finished_at = now
                    trial.error = "the job was cancelled"
            elif action == "pause":
                if state is JobState.PAUSED:
                    raise ValueError(f"job {job_id} is already paused")
                job.state = JobState.PAUSED.value
            elif action == "resume":
                if state is not JobState.PAUSED:
                    raise ValueError(f"job {job_id} is {state.value}, not paused")
                # A job nobody drives goes back in the queue; else its controller carries on.
                job.state = (JobState.RUNNING if job.owner else JobState.QUEUED).value
            else:
                raise ValueError(f"unknown action {action!r}; use cancel, pause or resume")
            return _job_record(job)

    def release_job(self, job_id: int, owner: str) -> None:
        """Give a running job back so another controller can take it at once."""
        with self._session() as session:
            session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.owner == owner)
                .values(owner=None, lease_expires_at=None)
            )

    def finish_job(self, job_id: int, owner: str, state: JobState, reason: str | None = None) -> JobRecord:
        """End a job, marking its best completed trial, and cancel trials that never ran."""
        if not state.is_finished():
            raise ValueError(f"{state} is not a final job state")
        now = utcnow()
        with self._session() as session:
            job = _owned_job(session, job_id, owner)
            if JobState(job.state).is_finished():
                raise JobNotRunning(f"job {job_id} already ended ({job.state})")
            best = session.scalars(
                select(TrialRow)
                .where(TrialRow.job_id == job_id, TrialRow.state == TrialState.COMPLETED.value)
                .order_by(TrialRow.reward.desc(), TrialRow.number)
                .limit(1)
            ).first()
            for trial in session.scalars(
                select(TrialRow).where(TrialRow.job_id == job_id, TrialRow.state == TrialState.QUEUED.value)
            ):
                trial.state = TrialState.CANCELLED.value
                trial.finished_at = now
            job.state = state.value
            job.reason = reason
            job.best_trial_id = best.id if best else None
            job.finished_at = now
            job.owner = None
            job.lease_expires_at = None
            return _job_record(job)

    # --------------------------------------------------------------- trials

    def add_trial(
        self,
        job_id: int,
        owner: str,
        proposal_id: int | None,
        params: Mapping[str, Any],
        strategy_state: Mapping[str, Any],
        *,
        resumes_trial_id: int | None = None,
        start_epoch: int = 0,
    ) -> TrialRecord:
        """Store a new proposal and the strategy state that produced it, in one transaction.

        A continuation (early stopping promoted trial ``resumes_trial_id``, which must be the
        first of its line and of this job) has no proposal id and starts at ``start_epoch``.
        """
        if (proposal_id is None) == (resumes_trial_id is None):
            raise ValueError("a trial has a proposal id, or continues another trial, not both nor neither")
        with self._session() as session:
            job = _owned_job(session, job_id, owner)
            if job.state != JobState.RUNNING.value:
                raise JobNotRunning(f"job {job_id} is {job.state}; it takes no new trials")
            # Numbered from 1: people say "trial 1" for the first, and every view shows this number.
            number = (session.scalar(select(func.count()).where(TrialRow.job_id == job_id)) or 0) + 1
            if resumes_trial_id is not None:
                first = _get(session, TrialRow, resumes_trial_id)
                if first.job_id != job_id or first.resumes_trial_id is not None:
                    raise ValueError(f"trial {resumes_trial_id} is not the first of a line in job {job_id}")
            row = TrialRow(
                job_id=job_id,
                number=number,
                proposal_id=proposal_id,
                resumes_trial_id=resumes_trial_id,
                start_epoch=start_epoch,
                state=TrialState.QUEUED.value,
                params=dict(params),
                metrics={},
                attempts=0,
                told=False,
            )
            session.add(row)
            job.strategy_state = dict(strategy_state)
            session.flush()
            return _trial_record(row, job.best_trial_id)

    def set_trial_state(
        self,
        trial_id: int,
        state: TrialState,
        *,
        reward: float | None = None,
        metrics: Mapping[str, Any] | None = None,
        error: str | None = None,
        token_hash: str | None = None,
    ) -> TrialRecord:
        """The one way a trial's state changes.

        Moving to RUNNING starts a new attempt (``attempts`` + 1) whose report token
        hashes to ``token_hash``. COMPLETED needs a finite ``reward``. Raises
        :class:`TrialFinished` if the trial had already finished, and ValueError for a
        move the state machine does not allow.
        """
        if state is TrialState.COMPLETED and (reward is None or not math.isfinite(reward)):
            raise ValueError("a completed trial needs a finite reward")
        now = utcnow()
        with self._session() as session:
            row = _get(session, TrialRow, trial_id, lock=True)
            current = TrialState(row.state)
            if current.is_finished():
                raise TrialFinished(_trial_record(row, _best_trial_id(session, row.job_id)))
            if not current.can_become(state):
                raise ValueError(f"trial {trial_id} cannot go from {current.value} to {state.value}")
            row.state = state.value
            if state is TrialState.RUNNING:
                row.attempts += 1
                row.token_hash = token_hash
                row.started_at = now
            if state.is_finished():
                row.finished_at = now
                row.reward = reward if state is TrialState.COMPLETED else None
            if metrics is not None:
                row.metrics = _json_safe(metrics)
            if error is not None:
                row.error = error
            return _trial_record(row, _best_trial_id(session, row.job_id))

    def note_trial_error(self, trial_id: int, error: str) -> None:
        """Keep the traceback of a failed attempt that will be retried."""
        with self._session() as session:
            row = _get(session, TrialRow, trial_id, lock=True)
            row.error = error

    def add_metrics(self, trial_id: int, step: int, values: Mapping[str, float]) -> bool:
        """Record an intermediate report; a repeated step replaces nothing and returns False."""
        with self._session() as session:
            row = _get(session, TrialRow, trial_id)
            if TrialState(row.state).is_finished():
                raise TrialFinished(_trial_record(row, _best_trial_id(session, row.job_id)))
            exists = session.scalar(
                select(func.count()).where(MetricRow.trial_id == trial_id, MetricRow.step == step)
            )
            if exists:
                return False
            session.add(MetricRow(trial_id=trial_id, step=step, values=_json_safe(values)))
            return True

    def record_steps(self, reports: Sequence[StepReport]) -> list[StepResult]:
        """Store a batch of intermediate reports in one transaction; one result per report, in order.

        See :mod:`l2l.store.step_reports`: each (trial, step) is stored at most once, and only
        for a running trial whose current token hash matches.
        """
        try:
            with self._batch_gate.hold(), self._write_engine.begin() as connection:
                return record_step_reports(connection, reports)
        except SQLAlchemyError as error:
            raise StorageError(f"database error: {error}") from error

    def mark_told(self, trial_id: int, owner: str, strategy_state: Mapping[str, Any]) -> None:
        """Record that the strategy learned this trial's result, with the state it has since."""
        with self._session() as session:
            row = _get(session, TrialRow, trial_id, lock=True)
            job = _owned_job(session, row.job_id, owner)
            row.told = True
            job.strategy_state = dict(strategy_state)

    def get_trial(self, trial_id: int) -> TrialRecord:
        with self._session(write=False) as session:
            row = _get(session, TrialRow, trial_id)
            return _trial_record(row, _best_trial_id(session, row.job_id))

    def trial_token_hash(self, trial_id: int) -> str | None:
        with self._session(write=False) as session:
            return _get(session, TrialRow, trial_id).token_hash

    def list_trials(
        self,
        job_id: int,
        *,
        states: set[TrialState] | None = None,
        told: bool | None = None,
        sort: str = "number",
        descending: bool = False,
        offset: int = 0,
        limit: int | None = None,
    ) -> tuple[list[TrialRecord], int]:
        """A page of a job's trials and how many match in all."""
        with self._session(write=False) as session:
            job = _get(session, JobRow, job_id)
            where = [TrialRow.job_id == job_id]
            if states:
                where.append(TrialRow.state.in_([s.value for s in states]))
            if told is not None:
                where.append(TrialRow.told == told)
            total = session.scalar(select(func.count()).select_from(TrialRow).where(*where)) or 0
            column = TRIAL_SORT_KEYS[sort]
            order = column.desc().nulls_last() if descending else column.asc().nulls_last()
            query = select(TrialRow).where(*where).order_by(order, TrialRow.number).offset(offset)
            if limit is not None:
                query = query.limit(limit)
            return [_trial_record(row, job.best_trial_id) for row in session.scalars(query)], total

    def count_continuations(self, job_id: int) -> int:
        """How many of the job's trials are continuations (they do not count against budget.trials)."""
        with self._session(write=False) as session:
            where = [TrialRow.job_id == job_id, TrialRow.resumes_trial_id.is_not(None)]
            return session.scalar(select(func.count()).select_from(TrialRow).where(*where)) or 0

    def job_curves(self, job_id: int) -> list[CurvePoint]:
        """Every epoch report of the job's trials, in the order they were stored.

        Early stopping replays these to rebuild its state, so every API replica and the
        controller reach the same decisions from the same rows. A trial's reports go under
        its line's first trial; steps (0-based epochs, as workers send them) become epochs.
        """
        with self._session(write=False) as session:
            _get(session, JobRow, job_id)
            trials = session.execute(
                select(TrialRow.id, TrialRow.number, TrialRow.resumes_trial_id).where(
                    TrialRow.job_id == job_id
                )
            ).all()
            numbers = {trial_id: number for trial_id, number, _ in trials}
            line = {
                trial_id: numbers[first if first is not None else trial_id] for trial_id, _, first in trials
            }
            rows = session.execute(
                select(MetricRow.trial_id, MetricRow.step, MetricRow.values)
                .where(MetricRow.trial_id.in_(list(numbers)))
                .order_by(MetricRow.id)
            ).all()
            return [CurvePoint(line[trial_id], step + 1, dict(values)) for trial_id, step, values in rows]

    def trial_metrics(self, trial_id: int) -> list[MetricPoint]:
        with self._session(write=False) as session:
            _get(session, TrialRow, trial_id)
            rows = session.scalars(
                select(MetricRow).where(MetricRow.trial_id == trial_id).order_by(MetricRow.step)
            )
            return [MetricPoint(row.trial_id, row.step, dict(row.values)) for row in rows]


# ------------------------------------------------------------------ helpers


def _make_engine(url: str, immediate: bool) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not the driver, decide when a transaction begins (see below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cursor.execute("PRAGMA foreign_keys=ON")
        # In WAL mode NORMAL syncs at checkpoints, not at every commit: a commit survives the
        # process being killed (the OS has it), and only an OS crash or power cut can undo the
        # last ones. That is the guarantee an answered report keeps; FULL cost an fsync (4 ms
        # here) per batch of reports, which capped them near 900/s (docs/benchmarks/report-throughput.md).
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):  # type: ignore[no-untyped-def]
        # IMMEDIATE takes the write lock up front, so two writers queue instead of
        # deadlocking when both try to upgrade a read lock.
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _get(session: Session, model: type[Any], key: int, lock: bool = False) -> Any:
    if not isinstance(key, int) or not 0 < key <= MAX_ID:
        raise NotFound(f"{model.__tablename__[:-1]} {key} not found")
    query = select(model).where(model.id == key)
    if lock:
        query = query.with_for_update()
    row = session.scalars(query).first()
    if row is None:
        raise NotFound(f"{model.__tablename__[:-1]} {key} not found")
    return row


def _job_by_key(session: Session, team_id: int | None, key: str) -> JobRow | None:
    team = JobRow.team_id.is_(None) if team_id is None else JobRow.team_id == team_id
    return session.scalars(select(JobRow).where(team, JobRow.idempotency_key == key)).first()


def _best_trial_id(session: Session, job_id: int) -> int | None:
    # A scalar, not row.job: loading the job row would parse its JSON (the strategy state
    # can be hundreds of kilobytes) on every trial read.
    return session.scalar(select(JobRow.best_trial_id).where(JobRow.id == job_id))


def _owned_job(session: Session, job_id: int, owner: str) -> JobRow:
    job: JobRow = _get(session, JobRow, job_id, lock=True)
    if job.owner != owner:
        raise LeaseLost(f"job {job_id} is driven by {job.owner!r}, not {owner!r}")
    return job


def _team_record(row: TeamRow) -> TeamRecord:
    return TeamRecord(
        id=row.id,
        name=row.name,
        max_concurrent_jobs=row.max_concurrent_jobs,
        max_trials_per_job=row.max_trials_per_job,
        max_accelerators_per_job=row.max_accelerators_per_job,
        created_at=_aware(row.created_at) or utcnow(),
    )


def _dataset_record(row: DatasetRow) -> DatasetRecord:
    return DatasetRecord(
        id=row.id,
        team_id=row.team_id,
        name=row.name,
        spec=dict(row.spec),
        summary=dict(row.summary),
        created_at=_aware(row.created_at) or utcnow(),
    )


def _graph_record(row: GraphRow) -> GraphRecord:
    return GraphRecord(
        id=row.id,
        team_id=row.team_id,
        name=row.name,
        path=row.path,
        summary=dict(row.summary),
        created_at=_aware(row.created_at) or utcnow(),
    )


def _artifact_record(row: ArtifactRow) -> ArtifactRecord:
    return ArtifactRecord(
        job_id=row.job_id,
        name=row.name,
        trial_id=row.trial_id,
        path=row.path,
        created_at=_aware(row.created_at) or utcnow(),
    )


def _final_model_record(row: FinalModelRow) -> FinalModelRecord:
    return FinalModelRecord(
        job_id=row.job_id,
        trial_id=row.trial_id,
        state=TrialState(row.state),
        params=dict(row.params),
        test_metrics=dict(row.test_metrics or {}),
        files=dict(row.files or {}),
        error=row.error,
        attempts=row.attempts,
        created_at=_aware(row.created_at) or utcnow(),
        finished_at=_aware(row.finished_at),
    )


def _job_record(row: JobRow) -> JobRecord:
    return JobRecord(
        id=row.id,
        team_id=row.team_id,
        name=row.name,
        state=JobState(row.state),
        spec=dict(row.spec),
        space=dict(row.space) if row.space is not None else None,
        strategy_state=dict(row.strategy_state) if row.strategy_state is not None else None,
        owner=row.owner,
        lease_expires_at=_aware(row.lease_expires_at),
        best_trial_id=row.best_trial_id,
        reason=row.reason,
        created_at=_aware(row.created_at) or utcnow(),
        started_at=_aware(row.started_at),
        finished_at=_aware(row.finished_at),
        idempotency_key=row.idempotency_key,
        request_hash=row.request_hash,
        unfinished_starts=row.unfinished_starts or 0,
        chance=dict(row.chance) if row.chance is not None else None,
    )
