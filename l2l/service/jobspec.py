"""What a user submits to start a job, and the checks it must pass before it is stored.

Two kinds of job: an architecture search (``kind: "search"``, the default) and a device
placement (``kind: "placement"``: find the devices that run one model's training step
fastest on a cluster, see :class:`Placement`). The request shape is a pydantic model
(used by the API and the command line); the checks that need our own registries live
in :func:`validate_job` so that bad input is refused with a message that says what to
fix, and nothing is stored. Checks that need the database (an uploaded dataset or graph,
an earlier job) are the service layer's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

import controller
import search_spaces
from controller.early_stopping import EarlyStoppingError, check_early_stopping
from controller.placement import check_placement_options
from l2l.placement.benchmarks import BENCHMARK_GRAPHS, check_benchmark_options
from l2l.placement.cluster import PRESETS, ClusterError, get_cluster
from l2l.rewards import DEFAULT_OBJECTIVES, PLACEMENT_OBJECTIVE
from l2l.service import datasets
from l2l.settings import Settings
from search_spaces.spec import SpaceError

#: Ray resource names a trial may ask for; anything else must be a custom resource of the cluster.
KNOWN_RESOURCES = ("CPU", "GPU", "TPU", "memory")

#: How a hardware-aware search places each trained model: a baseline of
#: :mod:`l2l.placement.baselines` (named here: that module imports the simulator, which the
#: API process does not load), or ``best_baseline``, the fastest of them.
Placer = Literal[
    "best_baseline",
    "expert",
    "expert_split_softmax",
    "contiguous",
    "metis",
    "single_device",
    "round_robin",
    "op_mod_k",
]
PLACERS: tuple[str, ...] = get_args(Placer)


#: Builders that compile with :func:`search_spaces.model_output.compile_for_task`, whose Keras
#: metrics are therefore known before anything trains (see :func:`reported_metrics`).
STANDARD_BUILDERS = ("search_spaces.mlp_builder:build", "search_spaces.nb201_builder:build")
#: Keras' metrics of those builders by task, each also reported on the validation data (``val_``).
KERAS_METRICS = {"classification": ("loss", "accuracy"), "regression": ("loss", "mae")}
#: What the trainer adds to every trained trial's final report (l2l.worker.trainer.run_trial).
TRAINER_METRICS = ("train_seconds", "parameters", "epochs")  # epochs: how far it trained (early stopping)


class InvalidJob(ValueError):
    """The job cannot run as submitted; the message says what to change."""


def _positive_resources(resources: dict[str, float]) -> dict[str, float]:
    for name, amount in resources.items():
        if not math.isfinite(amount) or amount <= 0:
            raise ValueError(f"resource {name!r} must be a positive number, got {amount}")
    return resources


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    trials: int = Field(ge=1, description="How many architectures to train in all.")
    concurrency: int = Field(default=1, ge=1, description="How many trials train at the same time.")
    epochs: int | None = Field(
        default=None,
        ge=1,
        description="Training epochs of each trial; default: enough passes for a few hundred training "
        "steps on the data's size (see default_epochs), 5 where the size is not known.",
    )
    resources: dict[str, float] = Field(
        default_factory=lambda: {"CPU": 1.0},
        description='Ray resources of one trial, e.g. {"CPU": 1}, {"GPU": 0.25} or {"TPU": 4}.',
    )
    trial_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=30 * 24 * 3600,
        allow_inf_nan=False,
        description="Stop an attempt of a trial (or of the final model) that runs longer than this; "
        "it is retried like a crash, and timed out once no retry is left. Default: the service's.",
    )
    pack_gpus: bool = Field(
        default=False,
        description='With resources {"GPU": 1}: each trial asks for the share of a GPU its model\'s '
        "predicted memory needs, so several trials train on one GPU; one that runs out of memory "
        "is retried on a GPU of its own.",
    )

    @field_validator("resources")
    @classmethod
    def _positive(cls, resources: dict[str, float]) -> dict[str, float]:
        return _positive_resources(resources)

    @model_validator(mode="after")
    def _packs_whole_gpus(self) -> Budget:
        if self.pack_gpus and self.resources.get("GPU") != 1:
            raise ValueError('pack_gpus shares whole GPUs between trials: set resources to {"GPU": 1}')
        return self


class StrategyChoice(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(default="reinforce", description="random, evolution or reinforce.")
    options: dict[str, Any] = Field(default_factory=dict, description="The strategy's own settings.")


class Objective(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    job_id: int = Field(
        description="An earlier job of the same team, strategy and search decisions (another "
        "dataset is fine) whose learned strategy state this job starts from."
    )


class Hardware(BaseModel):
    """Hardware-aware search: each trained trial's model is placed on a cluster and one
    training step simulated; the worker reports its seconds as the metric ``step_time``,
    which an objective with ``cost: "step_time"`` trades against accuracy (MnasNet)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    cluster: str | dict[str, Any] = Field(
        description='A ready-made cluster ("4gpu-pcie", ...) or one described as '
        "{name, devices: [{name, kind, flops, memory_bytes, op_overhead}], bandwidth, latency}."
    )
    placer: Placer = Field(
        default="best_baseline",
        description="How each model is placed; best_baseline is the fastest of the others.",
    )


class GraphSource(BaseModel):
    """What a placement job places: exactly one of a benchmark model, the model of an earlier
    search job of the same team, or an op graph the team uploaded (``POST /graphs``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    benchmark: str | None = Field(default=None, description=f"One of {', '.join(BENCHMARK_GRAPHS)}.")
    options: dict[str, Any] | None = Field(
        default=None, description="Overrides of the benchmark's settings (sequence length, layers...)."
    )
    job_id: int | None = Field(
        default=None,
        description="An earlier search job of this team: its final model, or else its best trial's "
        "architecture rebuilt.",
    )
    graph_id: int | None = Field(default=None, description="An op graph uploaded with POST /graphs.")

    @model_validator(mode="after")
    def _exactly_one(self) -> GraphSource:
        given = [name for name in ("benchmark", "job_id", "graph_id") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                'name exactly one thing to place: {"benchmark": "nmt"}, {"job_id": N} or {"graph_id": N}'
                + (f"; got {' and '.join(given)}" if given else "")
            )
        if self.options is not None and self.benchmark is None:
            raise ValueError('"options" are a benchmark\'s overrides; remove them or name a benchmark')
        return self


class PlacementStrategyChoice(StrategyChoice):
    name: str = Field(default="hierarchical", description="hierarchical or random.")


class Placement(BaseModel):
    """A placement job: which device runs each op of one model's training step."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    graph: GraphSource
    cluster: str | dict[str, Any] = Field(
        default="4gpu-pcie",
        description='A ready-made cluster ("4gpu-pcie", "4gpu-nvlink", "8gpu-nvlink", "tpu-v3-8", ...) '
        "or a described one, as in hardware.cluster.",
    )
    strategy: str | PlacementStrategyChoice = Field(
        default="hierarchical", description='The placer: "hierarchical" (learned) or "random".'
    )
    max_seconds: float | None = Field(
        default=None, gt=0, description="How long the placer searches; default 120 s (a setting)."
    )
    batch_size: int | None = Field(
        default=None,
        ge=1,
        description="The batch of the step placed: for a model from a job (default: the trial's own "
        "batch size) or a benchmark (as its options' batch_size); an uploaded graph has its own.",
    )
    resources: dict[str, float] = Field(
        default_factory=lambda: {"CPU": 1.0}, description="Ray resources of the placement worker."
    )

    @field_validator("resources")
    @classmethod
    def _positive(cls, resources: dict[str, float]) -> dict[str, float]:
        return _positive_resources(resources)


class JobSpec(BaseModel):
    """A job as submitted: a search (the default) or, with ``kind: "placement"``, a placement."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: Literal["search", "placement"] = Field(
        default="search", description="search: find an architecture; placement: place a model on devices."
    )
    name: str | None = Field(default=None, max_length=200)
    dataset: str | dict[str, Any] | None = Field(
        default=None,
        description='A search\'s data: "digits", "breast_cancer", "wine", or {"id": N}, a dataset of '
        "this team (POST /datasets, or one an admin added). A job never names a file.",
    )
    space: str | dict[str, Any] | None = Field(
        default=None,
        description='A search\'s space (default: chosen from the data, see default_space): "mlp", '
        '"nb201_cell", {"name": "nb201_cell", "settings": {...}}, '
        'a custom description with "template" and "decisions", or {"keras_tuner": NAME}, a build(hp) '
        "function an admin registered (the 422 lists them).",
    )
    strategy: str | StrategyChoice = Field(default="reinforce")
    budget: Budget | None = Field(default=None, description="A search's budget (required for a search).")
    placement: Placement | None = Field(
        default=None, description="What a placement job places, where and how; see Placement."
    )
    hardware: Hardware | None = Field(
        default=None,
        description="Hardware-aware search: place each trained model on this cluster and report its "
        'simulated step time as the metric "step_time" (use it as the objective\'s cost).',
    )
    seed: int | None = Field(default=None, description="Makes proposals and data splits repeatable.")
    backend: Literal["tensorflow", "jax"] | None = Field(
        default=None,
        description="The Keras backend trials train under (default: the service's, "
        "L2L_WORKER__BACKEND, normally tensorflow).",
    )
    objective: Objective | None = Field(default=None, description="Defaults to val_accuracy (max).")
    warm_start: WarmStart | None = Field(
        default=None, description='Learn from an earlier job: {"job_id": N}; see WarmStart.'
    )
    early_stopping: str | dict[str, Any] | None = Field(
        default=None,
        description='Stop unpromising trials early: "asha", "hyperband", "median", "none", or '
        '{"name": "asha", "settings": {"grace": 2, "eta": 3}}. A stopped trial counts as a result '
        "at the epoch it reached; ASHA and Hyperband may later resume it from its checkpoint.",
    )
    final_model: bool = Field(
        default=True,
        description="When the search ends, retrain the best architecture on training + validation "
        "data, score it once on the held-out test part and keep it for download.",
    )

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> JobSpec:
        if self.kind == "search":
            missing = [name for name in ("dataset", "budget") if getattr(self, name) is None]
            if missing:
                raise ValueError(f"a search job needs {', '.join(missing)}")
            if self.placement is not None:
                raise ValueError('"placement" describes a placement job: add kind: "placement" or remove it')
            return self
        if self.placement is None:
            raise ValueError(
                'a placement job needs a "placement" section, e.g. '
                '{"graph": {"benchmark": "nmt"}, "cluster": "4gpu-pcie"}'
            )
        search_only = [
            name
            for name in (
                "dataset",
                "space",
                "budget",
                "objective",
                "warm_start",
                "hardware",
                "early_stopping",
                "backend",
            )
            if getattr(self, name) is not None
        ]
        if "strategy" in self.model_fields_set:
            search_only.append("strategy")
        if search_only:
            raise ValueError(
                f"a placement job has no {', '.join(search_only)}: its strategy, time limit and "
                'resources go in the "placement" section'
            )
        return self


def check_cluster(given: str | Mapping[str, Any], where: str) -> str | dict[str, Any]:
    """A cluster as a job stores it: a preset's name, or a described cluster normalised."""
    try:
        cluster = get_cluster(given)
    except ClusterError as error:
        if isinstance(given, str):
            raise InvalidJob(f"{where}: {error}") from None
        raise InvalidJob(
            f"{where}: {error}; or name a ready-made one: {', '.join(sorted(PRESETS))}"
        ) from None
    if isinstance(given, str):
        return given
    described = cluster.to_dict()
    try:
        json.dumps(described, allow_nan=False)  # stored as JSON, which has no infinity
    except ValueError:
        raise InvalidJob(f"{where}: every bandwidth, latency and size must be a finite number") from None
    return described


#: Gradient steps a trial should take at least, by default: a small data set gets more epochs.
TARGET_STEPS = 150
#: The default epochs stay within these bounds whatever the data's size.
DEFAULT_EPOCHS = (5, 50)
#: An image set this large gets the convolutional cell space by default; a smaller one, the MLP.
CELL_SPACE_MIN_ROWS = 5_000


def default_space(kind: str, rows: int | None) -> str:
    """The space a job searches when it names none.

    The MLP learns from a few hundred examples in a few hundred steps; the NAS-Bench-201 cell
    space needs many more (on 180 images at 2 epochs every cell scored chance, the MLP 1.0), so
    it is the default only for image sets of at least :data:`CELL_SPACE_MIN_ROWS` examples.
    """
    return "nb201_cell" if kind == "image" and rows is not None and rows >= CELL_SPACE_MIN_ROWS else "mlp"


def default_epochs(rows: int | None, batch_size: int = 32) -> int:
    """Epochs for about :data:`TARGET_STEPS` training steps on ``rows`` examples (60% of them train),
    within :data:`DEFAULT_EPOCHS`; the lower bound where the size is not known."""
    low, high = DEFAULT_EPOCHS
    if not rows:
        return low
    steps_per_epoch = math.ceil(max(1, round(rows * 0.6)) / batch_size)
    return min(high, max(low, math.ceil(TARGET_STEPS / steps_per_epoch)))


def validate_job(
    spec: JobSpec,
    settings: Settings,
    rows: int | None = None,
    uploaded: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Check a submitted job against our registries and limits; return its normalised form.

    ``rows`` is the dataset's size where the caller knows it (an upload's summary); the
    defaults of a job that names no space or epochs are chosen from it and the data's kind.
    ``uploaded`` is the stored spec of the dataset a job names as ``{"id": N}``, which the
    service layer looked up for the team (this module has no database); any other dataset
    must be a built-in: a job never names a file.
    """
    if spec.kind == "placement":
        return _validate_placement(spec, settings)
    assert spec.dataset is not None and spec.budget is not None
    limits = settings.api
    budget = spec.budget
    if budget.trials > limits.max_trials_per_job:
        raise InvalidJob(f"budget.trials is {budget.trials}; at most {limits.max_trials_per_job} per job")
    if budget.concurrency > limits.max_concurrency:
        raise InvalidJob(f"budget.concurrency is {budget.concurrency}; at most {limits.max_concurrency}")
    if budget.epochs is not None and budget.epochs > limits.max_epochs:
        raise InvalidJob(f"budget.epochs is {budget.epochs}; at most {limits.max_epochs}")

    _check_resources(budget.resources, settings)
    try:
        if isinstance(spec.dataset, Mapping) and "id" in spec.dataset:
            if uploaded is None:
                raise datasets.DatasetError('an uploaded dataset {"id": N} must be looked up for its team')
            dataset = datasets.check_dataset_spec(uploaded)
        else:
            dataset = datasets.check_team_dataset(spec.dataset)
    except datasets.DatasetError as error:
        raise InvalidJob(f"dataset: {error}") from error
    rows = rows if rows is not None else datasets.BUILT_IN_ROWS.get(dataset["name"])
    try:
        space = search_spaces.check_space_spec(
            spec.space if spec.space is not None else default_space(dataset["kind"], rows)
        )
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
        early_stopping = check_early_stopping(spec.early_stopping, budget.epochs)
    except EarlyStoppingError as error:
        raise InvalidJob(str(error)) from error
    given_options = dict(choice.options)
    if early_stopping and choice.name == "model_based":
        # learn from the stopped trials' partial curves, unless the job says otherwise
        given_options.setdefault("fidelity_input", True)
    try:
        options = controller.check_options(choice.name, given_options)
    except ValueError as error:
        raise InvalidJob(f"strategy: {error}") from error

    task = dataset.get("task", "classification")
    if spec.objective is None:
        objective = dict(DEFAULT_OBJECTIVES[task])
    elif spec.objective.cost is None:  # a plain objective is stored as before costs existed
        objective = spec.objective.model_dump(include={"metric", "mode"})
    else:
        objective = spec.objective.model_dump()
    hardware = _validate_hardware(spec, space, objective)
    _check_objective_metrics(objective, reported_metrics(space, task, hardware is not None))
    return {
        "dataset": dataset,
        "space": space,
        "strategy": {"name": choice.name, "options": options},
        "budget": {**budget.model_dump(exclude_none=True), "epochs": budget.epochs or default_epochs(rows)},
        "seed": spec.seed,
        "objective": objective,
        "final_model": spec.final_model,
        **({"warm_start": spec.warm_start.model_dump()} if spec.warm_start else {}),
        **({"hardware": hardware} if hardware else {}),
        **({"early_stopping": early_stopping} if early_stopping else {}),
        **({"backend": spec.backend} if spec.backend else {}),
    }


def reported_metrics(space: Mapping[str, Any], task: str, hardware: bool = False) -> list[str] | None:
    """The metrics every trial of this space reports, where known before training; else None.

    Known for the built-in builders (any space on them: ``mlp``, ``nb201_cell``, custom
    descriptions over their templates) and for tabular NAS-Bench-201 look-ups; a KerasTuner
    build function or another builder compiles its own metrics.
    """
    settings = space.get("settings") or {}
    if settings.get("tabular"):
        return ["flops", "parameters", "val_accuracy"]
    if space.get("builder") not in STANDARD_BUILDERS:
        return None
    keras_metrics = KERAS_METRICS[task]
    names = [*keras_metrics, *(f"val_{name}" for name in keras_metrics), *TRAINER_METRICS]
    return sorted([*names, *(["step_time"] if hardware else [])])


def _check_objective_metrics(objective: Mapping[str, Any], known: list[str] | None) -> None:
    if known is None:
        return
    for role in ("metric", "cost"):
        name = objective.get(role)
        if name is not None and name not in known:
            raise InvalidJob(
                f"objective.{role}: no trial of this space reports {name!r}; it reports {', '.join(known)}"
            )


def _check_resources(resources: Mapping[str, float], settings: Settings) -> None:
    floor = settings.security.min_cpu_per_trial
    cpu = resources.get("CPU")
    if cpu is not None and cpu < floor:
        raise InvalidJob(f"budget.resources.CPU is {cpu:g}; a trial needs at least {floor:g} CPU")


def _validate_hardware(
    spec: JobSpec, space: Mapping[str, Any], objective: Mapping[str, Any]
) -> dict[str, Any] | None:
    uses_step_time = "step_time" in (objective.get("cost"), objective.get("metric"))
    if spec.hardware is None:
        if uses_step_time:
            raise InvalidJob(
                'objective: "step_time" is measured only in a hardware-aware search; add '
                '"hardware": {"cluster": "4gpu-pcie", "placer": "best_baseline"}'
            )
        return None
    if (space.get("settings") or {}).get("tabular"):
        raise InvalidJob(
            "hardware: a tabular NAS-Bench-201 space looks accuracies up and builds no model to "
            "place; remove hardware or use a space that trains"
        )
    return {
        "cluster": check_cluster(spec.hardware.cluster, "hardware.cluster"),
        "placer": spec.hardware.placer,
    }


def _validate_placement(spec: JobSpec, settings: Settings) -> dict[str, Any]:
    """The normalised placement job: one task, scored -sqrt(step time) (see PLACEMENT_OBJECTIVE)."""
    placement = spec.placement
    assert placement is not None
    source = placement.graph
    if source.benchmark is not None and source.benchmark not in BENCHMARK_GRAPHS:
        raise InvalidJob(
            f"placement.graph: unknown benchmark {source.benchmark!r}; "
            f"choose one of {', '.join(BENCHMARK_GRAPHS)}"
        )
    graph = source.model_dump(exclude_none=True)
    if source.benchmark is not None:
        try:
            check_benchmark_options(source.benchmark, source.options or {})
        except ValueError as error:
            raise InvalidJob(f"placement.graph.options: {error}") from None
    _check_resources(placement.resources, settings)
    batch_size = placement.batch_size
    if source.benchmark is not None:
        graph["options"] = dict(source.options or {})
        if batch_size is not None:  # a benchmark's batch is one of its sizes
            if graph["options"].setdefault("batch_size", batch_size) != batch_size:
                raise InvalidJob("placement: batch_size and graph.options.batch_size differ; give one")
            batch_size = None
    elif source.graph_id is not None and batch_size is not None:
        raise InvalidJob("placement.batch_size: an uploaded graph's batch is built into its sizes; remove it")
    cluster = check_cluster(placement.cluster, "placement.cluster")
    choice = (
        placement.strategy
        if isinstance(placement.strategy, PlacementStrategyChoice)
        else PlacementStrategyChoice(name=placement.strategy)
    )
    try:
        options = check_placement_options(choice.name, choice.options)
    except ValueError as error:
        raise InvalidJob(f"placement.strategy: {error}") from error
    limits = settings.placement
    max_seconds = placement.max_seconds or limits.default_seconds
    if max_seconds > limits.max_seconds:
        raise InvalidJob(f"placement.max_seconds is {max_seconds:g}; at most {limits.max_seconds:g}")
    return {
        "kind": "placement",
        "placement": {
            "graph": graph,
            "cluster": cluster,
            "strategy": {"name": choice.name, "options": options},
            "max_seconds": max_seconds,
            "batch_size": batch_size,
        },
        # One task: the budget the job loop and the pages read, with the worker's resources.
        "budget": {"trials": 1, "concurrency": 1, "epochs": 1, "resources": dict(placement.resources)},
        "seed": spec.seed,
        "objective": dict(PLACEMENT_OBJECTIVE),
        "final_model": False,
    }
