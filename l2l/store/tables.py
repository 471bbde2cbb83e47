"""SQLAlchemy 2 table definitions. Only :mod:`l2l.store` uses these classes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class TeamRow(Base):
    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    #: Per-team limits; None means the service's default (settings.limits).
    max_concurrent_jobs: Mapped[int | None] = mapped_column(Integer)
    max_trials_per_job: Mapped[int | None] = mapped_column(Integer)
    max_accelerators_per_job: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    #: sha256 of the key; the key itself is shown once, when it is made, and never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("team_id", "idempotency_key", name="uq_jobs_team_idempotency_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int | None] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE", name="fk_jobs_team_id"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[dict[str, Any]]
    #: The resolved search space, filled in by the controller when it first claims the job.
    space: Mapped[dict[str, Any] | None]
    strategy_state: Mapped[dict[str, Any] | None]
    owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    best_trial_id: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    #: What always guessing scores on the job's data (l2l.service.chance), set when it starts.
    chance: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    #: The client's ``Idempotency-Key`` for the submit, and the sha256 of the body it came with.
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    #: Claims since the job last started cleanly: a controller that dies while loading the
    #: job leaves it above 0, and a job that stops the controller twice is quarantined.
    unfinished_starts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    trials: Mapped[list[TrialRow]] = relationship(back_populates="job", order_by="TrialRow.number")


class TrialRow(Base):
    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("job_id", "number", name="uq_trials_job_number"),
        UniqueConstraint("job_id", "proposal_id", name="uq_trials_job_proposal"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    proposal_id: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)
    params: Mapped[dict[str, Any]]
    reward: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: sha256 of the current attempt's report token; the token itself is never stored.
    token_hash: Mapped[str | None] = mapped_column(String(64))
    #: The strategy has been told this trial's result (and its state saved with that).
    told: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    job: Mapped[JobRow] = relationship(back_populates="trials")


class MetricRow(Base):
    __tablename__ = "trial_metrics"
    __table_args__ = (UniqueConstraint("trial_id", "step", name="uq_trial_metrics_step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    values: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DatasetRow(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    #: What a worker loads: {"name": "csv"|"npz", "path": ..., "kind", "task", "target"?, "split_seed"}.
    spec: Mapped[dict[str, Any]]
    #: What the upload check found: rows, columns and their types, classes.
    summary: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FinalModelRow(Base):
    """The best architecture retrained on training + validation data and scored once on the test part."""

    __tablename__ = "final_models"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    trial_id: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any]]
    test_metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: format -> stored file path (".keras", "savedmodel" zip)
    files: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    token_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class GraphRow(Base):
    """An op graph a team uploaded to place (``POST /graphs``); the JSON lives in a file."""

    __tablename__ = "op_graphs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    #: The validated graph, written once as OpGraph.to_json().
    path: Mapped[str] = mapped_column(Text)
    #: What the upload check found: ops, layers, FLOPs, bytes.
    summary: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ArtifactRow(Base):
    """A file a job's worker produced besides its metrics, e.g. a placement job's result."""

    __tablename__ = "job_artifacts"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    #: The trial whose worker sent it.
    trial_id: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ControllerRow(Base):
    """A running controller (job loop) and when it last said it was alive (``GET /health``)."""

    __tablename__ = "controllers"

    #: The controller's owner name, as on the jobs it holds leases on.
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
