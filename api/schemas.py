"""Request and response bodies of the REST API (``XCreate`` in, ``XPublic`` out)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from l2l.service.jobspec import JobSpec
from l2l.store.conversions import MAX_ID
from l2l.store.records import DatasetRecord, FinalModelRecord, GraphRecord, JobRecord, TrialRecord
from l2l.store.states import JobState, TrialState

JobCreate = JobSpec


class Problem(BaseModel):
    """Every error response: what went wrong and what to do about it."""

    detail: str


class ValidationItem(BaseModel):
    """One thing wrong with a request, where FastAPI's validation found it."""

    loc: list[str | int] = Field(description="Where: e.g. ['body', 'budget', 'trials'].")
    msg: str
    type: str


class ValidationProblem(BaseModel):
    """Every 422: ``detail`` is a sentence (our checks) or a list of items (the request's shape)."""

    detail: str | list[ValidationItem]


class TrialPublic(BaseModel):
    id: int
    job_id: int
    number: int = Field(
        description='Order in the job: 1 is the first proposal ("trial 1"), as on the pages and the CLI.'
    )
    state: TrialState
    params: dict[str, Any] = Field(description="The architecture / hyper-parameters tried.")
    reward: float | None
    metrics: dict[str, Any] = Field(description="The final report's metrics.")
    error: str | None = Field(description="Why the trial failed, or the last retried error.")
    attempts: int
    is_best: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    resumes_trial_id: int | None = Field(
        default=None,
        description="Early stopping promoted that trial: this one trains its configuration further, "
        "from its checkpoint at start_epoch.",
    )
    start_epoch: int = Field(default=0, description="The epoch this trial's training starts after.")

    @classmethod
    def of(cls, trial: TrialRecord) -> TrialPublic:
        return cls(
            id=trial.id,
            job_id=trial.job_id,
            number=trial.number,
            state=trial.state,
            params=trial.params,
            reward=trial.reward,
            metrics=trial.metrics,
            error=trial.error,
            attempts=trial.attempts,
            is_best=trial.is_best,
            created_at=trial.created_at,
            started_at=trial.started_at,
            finished_at=trial.finished_at,
            resumes_trial_id=trial.resumes_trial_id,
            start_epoch=trial.start_epoch,
        )


class TrialsPublic(BaseModel):
    items: list[TrialPublic]
    total: int
    offset: int
    limit: int


class Progress(BaseModel):
    trials: int = Field(description="The budget.")
    created: int
    queued: int
    running: int
    completed: int
    failed: int
    cancelled: int
    timed_out: int = Field(default=0, description="Trials stopped at their time limit on every attempt.")


class FinalModelPublic(BaseModel):
    """The best architecture retrained on training + validation data and scored once on the test part."""

    state: TrialState
    trial_id: int = Field(description="The trial whose architecture it is.")
    params: dict[str, Any]
    test_metrics: dict[str, Any] = Field(description="Its one score on the held-out test part.")
    downloads: dict[str, str] = Field(description="Format -> download path (keras, savedmodel).")
    error: str | None

    @classmethod
    def of(cls, model: FinalModelRecord) -> FinalModelPublic:
        downloads = {name: f"/jobs/{model.job_id}/model?format={name}" for name in model.files}
        return cls(
            state=model.state,
            trial_id=model.trial_id,
            params=model.params,
            test_metrics=model.test_metrics,
            downloads=downloads,
            error=model.error,
        )


class JobPublic(BaseModel):
    id: int
    name: str
    kind: str = Field(
        default="search", description="search, or placement (its result: GET /jobs/{id}/placement)."
    )
    state: JobState
    spec: dict[str, Any] = Field(description="The job as submitted, normalised.")
    space: dict[str, Any] | None = Field(description="The resolved search space, once the job started.")
    progress: Progress
    best_trial: TrialPublic | None
    reason: str | None = Field(description="Why the job ended the way it did, if not plainly.")
    chance: dict[str, Any] | None = Field(
        default=None,
        description="What always guessing scores on this job's data (the training part's most frequent "
        'class, or its mean): {"task", "metric", "guess", "validation", "test"}; set when the job starts.',
    )
    warning: str | None = Field(
        default=None,
        description="Set when the best trial or the final model does not clearly beat the chance level.",
    )
    final_model: FinalModelPublic | None = None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(
        cls,
        job: JobRecord,
        counts: dict[TrialState, int],
        best: TrialRecord | None,
        final_model: FinalModelRecord | None = None,
        warning: str | None = None,
    ) -> JobPublic:
        return cls(
            id=job.id,
            name=job.name,
            kind=job.spec.get("kind", "search"),
            state=job.state,
            spec=job.spec,
            space=job.space,
            progress=Progress(
                trials=job.budget["trials"],
                created=sum(counts.values()),
                **{state.value: counts[state] for state in TrialState},
            ),
            best_trial=TrialPublic.of(best) if best else None,
            reason=job.reason,
            chance=job.chance,
            warning=warning,
            final_model=FinalModelPublic.of(final_model) if final_model else None,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )


class JobsPublic(BaseModel):
    items: list[JobPublic]
    total: int
    offset: int
    limit: int


class TrialReport(BaseModel):
    """What a worker sends: metrics after a step (an epoch), or the final metrics."""

    metrics: dict[str, float | None] = Field(
        description="Keras logs, e.g. {'val_accuracy': 0.93}; NaN or null fail a final report."
    )
    # The bound is the databases' 64-bit integer: a larger step could not be stored.
    step: int | None = Field(
        default=None, ge=0, le=MAX_ID, description="The epoch of an intermediate report."
    )
    final: bool = Field(default=False, description="True for the last report, which carries the reward.")


class MetricPointPublic(BaseModel):
    step: int = Field(description="The epoch (0 is the first).")
    values: dict[str, float | None]


class TrialCurve(BaseModel):
    trial_id: int
    points: list[MetricPointPublic]


class ReportAccepted(BaseModel):
    trial: TrialPublic
    changed: bool = Field(description="False when the report changed nothing (e.g. a repeat).")
    message: str
    decision: Literal["continue", "stop"] = Field(
        default="continue",
        description="After an epoch's report: train on, or stop (the job's early stopping ended the "
        "trial at this epoch; its report is its result).",
    )


class DatasetPublic(BaseModel):
    id: int
    name: str
    kind: str = Field(description="image or tabular")
    task: str = Field(description="classification or regression")
    summary: dict[str, Any] = Field(description="What the upload check found: rows, column types, classes.")
    created_at: datetime

    @classmethod
    def of(cls, dataset: DatasetRecord) -> DatasetPublic:
        return cls(
            id=dataset.id,
            name=dataset.name,
            kind=dataset.spec["kind"],
            task=dataset.spec["task"],
            summary=dataset.summary,
            created_at=dataset.created_at,
        )


class DatasetsPublic(BaseModel):
    items: list[DatasetPublic]


class GraphPublic(BaseModel):
    """An op graph the team uploaded; place it with a job's ``placement.graph: {"graph_id": id}``."""

    id: int
    name: str
    summary: dict[str, Any] = Field(description="ops, layers, flops, param_bytes, output_bytes.")
    created_at: datetime

    @classmethod
    def of(cls, graph: GraphRecord) -> GraphPublic:
        return cls(id=graph.id, name=graph.name, summary=graph.summary, created_at=graph.created_at)


class GraphsPublic(BaseModel):
    items: list[GraphPublic]


class PlacementAccepted(BaseModel):
    job_id: int
    changed: bool = Field(description="False when the trial had already finished: nothing changed.")
