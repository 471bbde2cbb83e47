"""Frozen snapshots of stored rows: what the store hands out instead of ORM objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from l2l.store.states import JobState, TrialState


@dataclass(frozen=True)
class TeamRecord:
    id: int
    name: str
    max_concurrent_jobs: int | None
    max_trials_per_job: int | None
    max_accelerators_per_job: float | None
    created_at: datetime


@dataclass(frozen=True)
class JobRecord:
    id: int
    team_id: int | None
    name: str
    state: JobState
    #: The job as submitted and normalised: dataset, space, strategy, budget, seed, objective.
    spec: dict[str, Any]
    #: The resolved search space (``SearchSpace.to_dict()``); None until a controller claims the job.
    space: dict[str, Any] | None
    strategy_state: dict[str, Any] | None
    owner: str | None
    lease_expires_at: datetime | None
    best_trial_id: int | None
    reason: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    #: The client's ``Idempotency-Key`` of the submit, if it sent one, and its body's sha256.
    idempotency_key: str | None = None
    request_hash: str | None = None
    #: Times a controller claimed the job and died before it had loaded it (see quarantine).
    unfinished_starts: int = 0
    #: What always guessing scores on the job's data (see l2l.service.chance); None until it starts.
    chance: dict[str, Any] | None = None

    @property
    def budget(self) -> dict[str, Any]:
        budget: dict[str, Any] = self.spec["budget"]
        return budget


@dataclass(frozen=True)
class TrialRecord:
    id: int
    job_id: int
    #: Position in the job (1, 2, 3, ...), the order the strategy proposed it in: "trial 1" is
    #: the first, everywhere (API, pages, command line).
    number: int
    #: The strategy's own id for the proposal, used to tell it the result.
    proposal_id: int
    state: TrialState
    params: dict[str, Any]
    reward: float | None
    metrics: dict[str, Any]
    error: str | None
    attempts: int
    told: bool
    is_best: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class MetricPoint:
    trial_id: int
    step: int
    values: dict[str, float]


@dataclass(frozen=True)
class DatasetRecord:
    id: int
    team_id: int
    name: str
    #: What a job's dataset field becomes: the loader's spec (path, kind, task, target, split_seed).
    spec: dict[str, Any]
    summary: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class FinalModelRecord:
    job_id: int
    trial_id: int
    state: TrialState  # the same life cycle as a trial's
    params: dict[str, Any]
    test_metrics: dict[str, Any]
    files: dict[str, str]
    error: str | None
    attempts: int
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class GraphRecord:
    id: int
    team_id: int
    name: str
    #: The validated graph's JSON file.
    path: str
    summary: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class ArtifactRecord:
    job_id: int
    name: str
    trial_id: int
    path: str
    created_at: datetime


@dataclass(frozen=True)
class ControllerRecord:
    """A controller process and its last heartbeat."""

    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
