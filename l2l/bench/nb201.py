"""The NAS-Bench-201 benchmark: real strategies, the real job loop and store, tabular trials.

Every run is an ordinary job: submitted through :func:`l2l.service.jobs.submit_job`, driven
by :class:`l2l.loop.JobLoop` with the registered strategy, recorded trial by trial in a
:class:`l2l.store.Store` (SQLite in a temporary directory, in RAM where ``/dev/shm``
exists), its trials "trained" by :class:`l2l.worker.inline_executor.InlineExecutor`, which runs
the worker's :func:`l2l.worker.trainer.run_trial` inline on a tabular ``nb201_cell`` space and
reports through :func:`l2l.service.jobs.report_trial`.

Protocol, as in NAS-Bench-201's scripts: the search sees only validation accuracy (its
reward); after ``budget`` queries the architecture with the best reward seen is picked
(ties: the earliest), and only then is its test accuracy read from the table. Run
``i`` uses seed ``i``. Accuracies in the results are percent; ``reward`` is the
fraction the trial reported. ``std`` is the population standard deviation (``np.std``),
as in the benchmark's scripts.

:func:`queries_to_match` says how many queries each strategy's mean test accuracy of the
pick needs to reach the final (``budget``-query) mean of the strongest other strategy in
the same benchmark run.

With ``warm_start_from`` (another dataset), each run first searches that dataset cold
and then searches ``dataset`` as a job warm-started from that one (``"warm_start":
{"job_id": N}``); :func:`warm_start_effect` compares such runs with cold ones.

With an ``objective`` (e.g. MnasNet's ``{"metric": "val_accuracy", "cost": "parameters",
"target": 500000, "weight": -0.07}``) the jobs search that reward instead. Every run
records the Pareto front of validation accuracy against its cost metric (``parameters``
unless the objective names another) over all its completed trials, and its hypervolume
(:func:`l2l.pareto.hypervolume` with reference point accuracy 0 and the space's largest
cost; in accuracy-fraction units).

The job's ``dataset`` is a placeholder (``"digits"``): a tabular space's data is the table.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from controller import extra_strategy, strategy_names
from controller.config import KerasTunerBOConfig
from l2l.loop import JobLoop
from l2l.pareto import hypervolume, pareto_front
from l2l.service.jobs import submit_job
from l2l.service.jobspec import JobSpec
from l2l.settings import Settings
from l2l.store import Store
from l2l.store.states import TrialState
from l2l.worker.inline_executor import InlineExecutor
from search_spaces.nb201 import EDGE_NAMES, OPS, TABULAR_DATASETS, arch_str
from search_spaces.nb201_cost import network_cost
from search_spaces.nb201_table import NB201Table, load_table

#: Strategies the benchmark registers for its own runs: too slow for the strategy contract suite.
BENCH_ONLY_STRATEGIES: dict[str, tuple[str, type]] = {
    "keras_tuner_bo": ("controller.adapters.keras_tuner_bo:KerasTunerBO", KerasTunerBOConfig),
}

#: The costliest cell: every edge a 3x3 convolution (the hypervolume's reference cost).
LARGEST_CELL = {name: OPS[3] for name in EDGE_NAMES}

#: The share of the space (best by validation accuracy) that "queries to the top" counts toward.
TOP_FRACTION = 0.01

#: Resamples of the seeds behind the bootstrap interval of "queries to match".
BOOTSTRAP_RESAMPLES = 1000


@dataclass
class RunResult:
    """One search: what it picked, how that judges, and how its best reward grew."""

    seed: int
    #: The picked cell: NAS-Bench-201 index and arch string.
    index: int
    arch: str
    #: What the search saw of it (the fraction reported) and the same in percent.
    reward: float
    valid_accuracy: float
    #: Read from the table's test column after the pick (percent).
    test_accuracy: float
    #: Best reward seen after query 1, 2, ..., budget (fractions; None before any success).
    best_so_far: list[float | None]
    #: The reward of each query (None for a failed trial).
    rewards: list[float | None]
    #: The first query whose cell is in the top 1% of the space by validation (1-based), or None.
    queries_to_top: int | None
    wall_seconds: float
    #: The job and its trials in the benchmark's store (useful only while the store lives).
    job_id: int = 0
    #: The job on another dataset this search was warm-started from, if any.
    warm_start_job_id: int | None = None
    #: The non-dominated trials (validation accuracy % vs ``cost_metric``), cheapest first.
    pareto_front: list[dict[str, Any]] = field(default_factory=list)
    cost_metric: str = "parameters"
    hypervolume: float = 0.0
    #: Test accuracy (%) of the cell the search would have picked after query 1, 2, ..., budget
    #: (None before any success), read from the table only after the search has ended.
    test_so_far: list[float | None] = field(default_factory=list)


@dataclass
class StrategyResult:
    strategy: str
    options: dict[str, Any]
    runs: list[RunResult] = field(default_factory=list)

    def summary(self, budget: int) -> dict[str, Any]:
        tests = [run.test_accuracy for run in self.runs]
        valids = [run.valid_accuracy for run in self.runs]
        reached = [run.queries_to_top for run in self.runs if run.queries_to_top is not None]
        wall = sum(run.wall_seconds for run in self.runs)
        return {
            "pareto_front_size_mean": statistics.fmean(len(run.pareto_front) for run in self.runs),
            "hypervolume_mean": statistics.fmean(run.hypervolume for run in self.runs),
            "hypervolume_std": statistics.pstdev(run.hypervolume for run in self.runs),
            "runs": len(self.runs),
            "test_mean": statistics.fmean(tests),
            "test_std": statistics.pstdev(tests),
            "valid_mean": statistics.fmean(valids),
            "valid_std": statistics.pstdev(valids),
            "top1pct_reached": len(reached) / len(self.runs),
            "queries_to_top1pct_median": statistics.median(reached) if reached else None,
            "queries_to_top1pct_mean": statistics.fmean(reached) if reached else None,
            "wall_seconds": wall,
            "seconds_per_query": wall / (budget * len(self.runs)),
        }


def run_strategy(
    strategy: str,
    dataset: str,
    *,
    budget: int = 100,
    runs: int = 100,
    first_seed: int = 0,
    options: Mapping[str, Any] | None = None,
    table: NB201Table | None = None,
    store: Store | None = None,
    progress: Callable[[str], None] | None = None,
    warm_start_from: str | None = None,
    objective: Mapping[str, Any] | None = None,
) -> StrategyResult:
    """``runs`` searches of ``budget`` queries each with strategy ``strategy`` on ``dataset``.

    ``table`` must hold the test columns (default: the table file, loaded with them). A
    ``store`` given is used as is (migrated); otherwise a fresh temporary one is made
    and removed afterwards.
    """
    if warm_start_from is not None and warm_start_from not in TABULAR_DATASETS:
        raise ValueError(f"warm_start_from must be one of {list(TABULAR_DATASETS)}, got {warm_start_from!r}")
    if dataset not in TABULAR_DATASETS:
        raise ValueError(f"dataset must be one of {list(TABULAR_DATASETS)}, got {dataset!r}")
    table = table if table is not None else load_table(with_test=True)
    threshold = top_threshold(table, dataset)
    with contextlib.ExitStack() as stack:
        if strategy in BENCH_ONLY_STRATEGIES and strategy not in strategy_names():
            stack.enter_context(extra_strategy(strategy, *BENCH_ONLY_STRATEGIES[strategy]))
        active_store, settings = stack.enter_context(_BenchStore(store))
        executor = InlineExecutor(active_store, table)
        loop = JobLoop(active_store, executor, settings, owner="nb201-bench")
        result = StrategyResult(strategy, dict(options or {}))
        for seed in range(first_seed, first_seed + runs):
            started = time.perf_counter()
            source = None
            if warm_start_from is not None:
                source = _submit(
                    active_store, settings, strategy, warm_start_from, budget, seed, options, None, objective
                )
                _drive(active_store, loop, source)
            job_id = _submit(
                active_store, settings, strategy, dataset, budget, seed, options, source, objective
            )
            _drive(active_store, loop, job_id)
            run = _judge(active_store, job_id, table, dataset, threshold, seed)
            _add_front(run, active_store, job_id, dataset, (objective or {}).get("cost") or "parameters")
            run.warm_start_job_id = source
            run.wall_seconds = time.perf_counter() - started
            result.runs.append(run)
            if progress and (len(result.runs) % 10 == 0 or len(result.runs) == runs):
                mean = statistics.fmean(r.test_accuracy for r in result.runs)
                progress(f"{strategy} on {dataset}: {len(result.runs)}/{runs} runs, test {mean:.2f}%")
    return result


def _add_front(run: RunResult, store: Store, job_id: int, dataset: str, cost: str) -> None:
    """The run's Pareto front (validation accuracy vs ``cost``) and its hypervolume."""
    trials, _ = store.list_trials(job_id, states={TrialState.COMPLETED})
    points = [(float(t.metrics["val_accuracy"]), float(t.metrics[cost])) for t in trials]
    front = pareto_front(points)
    run.cost_metric = cost
    run.pareto_front = [
        {"arch": arch_str(trials[i].params), "valid_accuracy": 100 * points[i][0], cost: points[i][1]}
        for i in front
    ]
    largest = network_cost(LARGEST_CELL, dataset)[cost]
    run.hypervolume = hypervolume(points, max_cost=largest)


def _drive(store: Store, loop: JobLoop, job_id: int) -> None:
    while not store.get_job(job_id).state.is_finished():
        loop.step()


def warm_start_effect(cold: Sequence[RunResult], warm: Sequence[RunResult]) -> dict[str, Any]:
    """Queries the mean best-so-far validation accuracy (%) of each needs to reach cold's final mean.

    ``None`` if a curve never gets there within its budget.
    """
    cold_curve, warm_curve = _mean_curve(cold), _mean_curve(warm)
    target = cold_curve[-1]

    def reach(curve: list[float]) -> int | None:
        return _as_query(_first_reach(np.array([curve]), np.array([target]))[0], len(curve))

    return {
        "target_valid_mean": target,
        "cold_queries": reach(cold_curve),
        "warm_queries": reach(warm_curve),
        "cold_curve": cold_curve,
        "warm_curve": warm_curve,
    }


def _mean_curve(runs: Sequence[RunResult]) -> list[float]:
    """Mean best-so-far validation accuracy (%) after each query (a run with none yet counts 0)."""
    budget = min(len(run.best_so_far) for run in runs)
    return [100.0 * statistics.fmean(run.best_so_far[q] or 0.0 for run in runs) for q in range(budget)]


def top_threshold(table: NB201Table, dataset: str, fraction: float = TOP_FRACTION) -> float:
    """The validation accuracy (%) a cell needs to be in the best ``fraction`` of the space."""
    column = sorted(table.valid_column(dataset), reverse=True)
    return column[max(1, math.ceil(fraction * len(column))) - 1]


def run_benchmark(
    strategies: Sequence[str | tuple[str, Mapping[str, Any]]],
    dataset: str,
    *,
    budget: int = 100,
    runs: int = 100,
    table: NB201Table | None = None,
    progress: Callable[[str], None] | None = None,
    warm_start_from: str | None = None,
    objective: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run every strategy (a name, or ``(name, options)``) and return the results document.

    With ``warm_start_from`` each strategy also runs warm-started from that dataset (label
    ``"<label> warm from <dataset>"``) and ``document["warm_start"][label]`` holds
    :func:`warm_start_effect` of its cold and warm runs.
    """
    table = table if table is not None else load_table(with_test=True)
    document: dict[str, Any] = {
        "benchmark": "nas-bench-201",
        "table": table.source,
        "dataset": dataset,
        "budget": budget,
        "runs": runs,
        "protocol": "search on validation accuracy; pick the best reward seen; report its test accuracy",
        "top1pct_valid_threshold": top_threshold(table, dataset),
        "objective": dict(objective) if objective else None,
        "strategies": {},
    }
    cold: dict[str, list[RunResult]] = {}
    for entry in strategies:
        name, options = (entry, {}) if isinstance(entry, str) else (entry[0], dict(entry[1]))
        label = name if not options else f"{name} {options}"
        common = dict(
            budget=budget, runs=runs, options=options, table=table, progress=progress, objective=objective
        )
        result = run_strategy(name, dataset, **common)  # type: ignore[arg-type]
        document["strategies"][label] = _entry(name, options, result, budget)
        cold[label] = result.runs
        if warm_start_from is not None:
            warm = run_strategy(name, dataset, warm_start_from=warm_start_from, **common)  # type: ignore[arg-type]
            warm_label = f"{label} warm from {warm_start_from}"
            document["strategies"][warm_label] = _entry(name, options, warm, budget)
            document.setdefault("warm_start", {})[label] = {
                "from": warm_start_from,
                **warm_start_effect(result.runs, warm.runs),
            }
    if len(cold) > 1:
        document["queries_to_match"] = queries_to_match(cold)
    document["reference"] = _reference(table, dataset)
    return document


def queries_to_match(results: Mapping[str, Sequence[RunResult]]) -> dict[str, dict[str, Any]]:
    """Per strategy: how soon its mean test accuracy of the pick reaches the strongest peer's final one.

    Cold runs only: the same seeds, the same budget, so the curves are comparable. See
    :func:`matches_from_curves` for what each entry holds.
    """
    return matches_from_curves({label: [run.test_so_far for run in runs] for label, runs in results.items()})


def matches_from_curves(
    curves: Mapping[str, Sequence[Sequence[float | None]]],
) -> dict[str, dict[str, Any]]:
    """Per strategy, from each run's test accuracy (%) of the pick after every query (run ``i``
    of every strategy used seed ``i``; None, counted as 0, before any pick):

    * ``peer``: the other strategy with the highest mean test accuracy after the last query
      (the score the benchmark reports), and ``peer_test_mean``, that score;
    * ``queries``: the first query at which this strategy's mean over runs reaches it, None if
      it never does;
    * ``queries_interval``: the 5th and 95th percentiles of ``queries`` over
      :data:`BOOTSTRAP_RESAMPLES` resamples of the seeds (drawn with replacement, the same
      seeds for both strategies, a fixed generator), None for a bound past the budget. Near
      the crossing both mean curves are nearly flat, so a few lucky or unlucky runs move it
      by several queries: this says by how many;
    * ``test_curve``: the mean curve.
    """
    arrays = {
        label: np.array([[value or 0.0 for value in run] for run in runs], dtype=np.float64)
        for label, runs in curves.items()
    }
    seeds = min(len(array) for array in arrays.values())
    resamples = np.random.default_rng(0).integers(0, seeds, size=(BOOTSTRAP_RESAMPLES, seeds))
    matches = {}
    for label, array in arrays.items():
        finals = {other: float(runs[:, -1].mean()) for other, runs in arrays.items() if other != label}
        peer = max(finals, key=finals.__getitem__)
        curve = array.mean(axis=0)
        resampled_targets = arrays[peer][resamples, -1].mean(axis=1)
        resampled_queries = _first_reach(array[resamples].mean(axis=1), resampled_targets)
        low, high = np.percentile(resampled_queries, [5, 95], method="nearest")
        budget = array.shape[1]
        matches[label] = {
            "peer": peer,
            "peer_test_mean": finals[peer],
            "queries": _as_query(_first_reach(curve[None], np.array([finals[peer]]))[0], budget),
            "queries_interval": [_as_query(low, budget), _as_query(high, budget)],
            "test_curve": curve.tolist(),
        }
    return matches


def _first_reach(curves: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per row of ``curves``, the first query (1-based) reaching its target; budget + 1 if none does."""
    reached = curves >= targets[:, None] - 1e-9
    return np.where(reached.any(axis=1), reached.argmax(axis=1) + 1, curves.shape[1] + 1)


def _as_query(query: float, budget: int) -> int | None:
    return int(query) if query <= budget else None


def _entry(name: str, options: Mapping[str, Any], result: StrategyResult, budget: int) -> dict[str, Any]:
    return {
        "strategy": name,
        "options": dict(options),
        "summary": result.summary(budget),
        "runs": [asdict(run) for run in result.runs],
    }


def format_table(documents: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table: mean ± std test accuracy per strategy (rows) and dataset (columns)."""
    datasets = list(dict.fromkeys(doc["dataset"] for doc in documents))
    cells: dict[str, dict[str, str]] = {}
    for doc in documents:
        for label, entry in doc["strategies"].items():
            summary = entry["summary"]
            cells.setdefault(label, {})[doc["dataset"]] = (
                f"{summary['test_mean']:.2f} ± {summary['test_std']:.2f} "
                f"(n={summary['runs']}, {1000 * summary['seconds_per_query']:.1f} ms/query)"
            )
    lines = ["| strategy | " + " | ".join(datasets) + " |", "|---" * (len(datasets) + 1) + "|"]
    for label, row in cells.items():
        lines.append(f"| {label} | " + " | ".join(row.get(d, "") for d in datasets) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------ helpers


def _submit(
    store: Store,
    settings: Settings,
    strategy: str,
    dataset: str,
    budget: int,
    seed: int,
    options: Mapping[str, Any] | None,
    warm_start: int | None = None,
    objective: Mapping[str, Any] | None = None,
) -> int:
    spec = JobSpec.model_validate(
        {
            "name": f"nb201 {dataset} {strategy} seed {seed}",
            "dataset": "digits",  # a placeholder: the table is the tabular space's data
            "space": {"name": "nb201_cell", "settings": {"tabular": dataset}},
            "strategy": {"name": strategy, "options": dict(options or {})},
            "budget": {"trials": budget, "concurrency": 1, "epochs": 1, "resources": {"CPU": 1}},
            "seed": seed,
            "warm_start": {"job_id": warm_start} if warm_start is not None else None,
            "objective": dict(objective) if objective else None,
        }
    )
    return submit_job(store, spec, settings).id


def _judge(
    store: Store, job_id: int, table: NB201Table, dataset: str, threshold: float, seed: int
) -> RunResult:
    job = store.get_job(job_id)
    trials, _ = store.list_trials(job_id)
    best: float | None = None
    best_so_far: list[float | None] = []
    # the cell the search would pick after each query (ties: the earliest, as the job picks)
    pick: str | None = None
    pick_so_far: list[str | None] = []
    queries_to_top = None
    for trial in trials:
        if trial.reward is not None:
            if best is None or trial.reward > best:
                best = trial.reward
                pick = arch_str(trial.params)
            if queries_to_top is None and trial.reward >= threshold / 100.0:
                queries_to_top = trial.number  # trials are numbered from 1
        best_so_far.append(best)
        pick_so_far.append(pick)
    if job.best_trial_id is None:
        raise RuntimeError(f"job {job_id} ended ({job.state.value}: {job.reason}) without a completed trial")
    picked = store.get_trial(job.best_trial_id)
    assert picked.state is TrialState.COMPLETED and picked.reward is not None
    arch = arch_str(picked.params)
    # The search is over: only now is the test column read, for the picked cell and for the
    # cells it would have picked had it stopped earlier (each read once).
    tests = {cell: table.test_accuracy(cell, dataset) for cell in dict.fromkeys(pick_so_far) if cell}
    test = tests[arch] if arch in tests else table.test_accuracy(arch, dataset)
    return RunResult(
        seed=seed,
        index=table.index(arch),
        arch=arch,
        reward=picked.reward,
        valid_accuracy=table.valid_accuracy(arch, dataset),
        test_accuracy=test,
        best_so_far=best_so_far,
        rewards=[trial.reward for trial in trials],
        queries_to_top=queries_to_top,
        wall_seconds=0.0,
        job_id=job_id,
        test_so_far=[tests[cell] if cell else None for cell in pick_so_far],
    )


def _reference(table: NB201Table, dataset: str) -> dict[str, Any]:
    # Read after every search has ended: what a perfect search on validation would pick.
    archs = table.archs()
    valid = table.valid_column(dataset)
    best = max(range(len(archs)), key=lambda i: valid[i])
    return {
        "best_valid_arch": archs[best],
        "best_valid_index": table.index(archs[best]),
        "best_valid_accuracy": valid[best],
        "test_of_best_valid": table.test_accuracy(archs[best], dataset),
    }


class _BenchStore:
    """A migrated store (the one given, or a temporary SQLite file) and the settings to drive it."""

    def __init__(self, store: Store | None) -> None:
        self.given = store
        self.directory: str | None = None
        self.store: Store | None = None

    def __enter__(self) -> tuple[Store, Settings]:
        ram = Path("/dev/shm")
        self.directory = tempfile.mkdtemp(prefix="l2l-bench-", dir=ram if ram.is_dir() else None)
        if self.given is not None:
            self.store = self.given
        else:
            self.store = Store(f"sqlite:///{self.directory}/bench.db")
            self.store.migrate()
        settings = Settings(
            data_dir=Path(self.directory),
            database_url=self.store.url,
            controller={"lease_seconds": 3600.0, "max_retries": 0, "max_consecutive_failures": 10},
        )
        return self.store, settings

    def __exit__(self, *exc: object) -> None:
        if self.given is None and self.store is not None:
            self.store.dispose()
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)


def print_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
