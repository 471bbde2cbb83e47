"""What a user submits to start a search, and the checks it must pass before it is stored.

The request shape is a pydantic model (used by the API and the command line); the
checks that need our own registries live in :func:`validate_job` so that bad input
is refused with a message that says what to fix, and nothing is stored.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

import controller
import search_spaces
from l2l import datasets
from l2l.rewards import DEFAULT_OBJECTIVES
from l2l.settings import Settings
from search_spaces.spec import SpaceError

#: Ray resource names a trial may ask for; anything else must be a custom resource of the cluster.
KNOWN_RESOURCES = ("CPU", "GPU", "TPU", "memory")


class InvalidJob(ValueError):
    """The job cannot run as submitted; the message says what to change."""


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trials: int = Field(ge=1, description="How many architectures to train in all.")
    concurrency: int = Field(default=1, ge=1, description="How many trials train at the same time.")
    epochs: int = Field(default=5, ge=1, description="Training epochs of each trial.")
    resources: dict[str, float] = Field(
        default_factory=lambda: {"CPU": 1.0},
        description='Ray resources of one trial, e.g. {"CPU": 1}, {"GPU": 0.25} or {"TPU": 4}.',
    )

    @field_validator("resources")
    @classmethod
    def _positive(cls, resources: dict[str, float]) -> dict[str, float]:
        for name, amount in resources.items():
            if not math.isfinite(amount) or amount <= 0:
                raise ValueError(f"resource {name!r} must be a positive number, got {amount}")
        return resources


class StrategyChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="reinforce", description="random, evolution or reinforce.")
    options: dict[str, Any] = Field(default_factory=dict, description="The strategy's own settings.")


class Objective(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str = Field(description="A Keras metric of the validation data, e.g. val_accuracy.")
    mode: str = Field(default="max", pattern="^(max|min)$")
    cost: str | None = Field(
        default=None,
        description="A cost metric to trade against (MnasNet), e.g. parameters or flops: "
        "reward = metric * (cost / target) ** weight; see l2l.rewards.",
    )
    target: float | None = Field(default=None, gt=0, description="The cost aimed at; needed with cost.")
    weight: float = Field(default=-0.07, le=0, description="The exponent above the target (MnasNet: -0.07).")
    weight_under: float | None = Field(
        default=None,
        le=0,
        description="The exponent at or below the target; default weight, 0 = hard target.",
    )

    @model_validator(mode="after")
    def _cost_needs_target(self) -> Objective:
        if self.cost is not None and (self.target is None or self.mode != "max"):
            raise ValueError("an objective with a cost needs a target and mode 'max'")
        return self


class WarmStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: int = Field(
        description="An earlier job of the same team, strategy and search decisions (another "
        "dataset is fine) whose learned strategy state this job starts from."
    )


class JobSpec(BaseModel):
    """A search job as submitted."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    dataset: str | dict[str, Any] = Field(
        description='"digits", "breast_cancer", "wine", or {"name": "csv", "path": ..., "target": ...}.'
    )
    space: str | dict[str, Any] = Field(
        description='"mlp", "nb201_cell", {"name": "nb201_cell", "settings": {...}}, a custom '
        'description with "template" and "decisions", or {"keras_tuner": "module:build"}.'
    )
    strategy: str | StrategyChoice = Field(default="reinforce")
    budget: Budget
    seed: int | None = Field(default=None, description="Makes proposals and data splits repeatable.")
    objective: Objective | None = Field(default=None, description="Defaults to val_accuracy (max).")
    warm_start: WarmStart | None = Field(
        default=None, description='Learn from an earlier job: {"job_id": N}; see WarmStart.'
    )
    final_model: bool = Field(
        default=True,
        description="When the search ends, retrain the best architecture on training + validation "
        "data, score it once on the held-out test part and keep it for download.",
    )


def validate_job(spec: JobSpec, settings: Settings) -> dict[str, Any]:
    """Check a submitted job against our registries and limits; return its normalised form."""
    limits = settings.api
    budget = spec.budget
    if budget.trials > limits.max_trials_per_job:
        raise InvalidJob(f"budget.trials is {budget.trials}; at most {limits.max_trials_per_job} per job")
    if budget.concurrency > limits.max_concurrency:
        raise InvalidJob(f"budget.concurrency is {budget.concurrency}; at most {limits.max_concurrency}")
    if budget.epochs > limits.max_epochs:
        raise InvalidJob(f"budget.epochs is {budget.epochs}; at most {limits.max_epochs}")

    try:
        dataset = datasets.check_dataset_spec(spec.dataset)
    except datasets.DatasetError as error:
        raise InvalidJob(f"dataset: {error}") from error
    try:
        space = search_spaces.check_space_spec(spec.space)
    except SpaceError as error:
        raise InvalidJob(f"space: {error}") from error
    try:
        search_spaces.check_space_fits_data(space, dataset["kind"])
    except SpaceError as error:
        raise InvalidJob(f"{error}; pick another space or dataset") from error

    choice = (
        spec.strategy if isinstance(spec.strategy, StrategyChoice) else StrategyChoice(name=spec.strategy)
    )
    try:
        options = controller.check_options(choice.name, choice.options)
    except ValueError as error:
        raise InvalidJob(f"strategy: {error}") from error

    task = dataset.get("task", "classification")
    if spec.objective is None:
        objective = dict(DEFAULT_OBJECTIVES[task])
    elif spec.objective.cost is None:  # a plain objective is stored as before costs existed
        objective = spec.objective.model_dump(include={"metric", "mode"})
    else:
        objective = spec.objective.model_dump()
    return {
        "dataset": dataset,
        "space": space,
        "strategy": {"name": choice.name, "options": options},
        "budget": budget.model_dump(),
        "seed": spec.seed,
        "objective": objective,
        "final_model": spec.final_model,
        **({"warm_start": spec.warm_start.model_dump()} if spec.warm_start else {}),
    }
