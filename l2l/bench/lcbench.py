"""``l2l bench lcbench``: multi-fidelity search on LCBench through YAHPO Gym's surrogate.

The surrogate (``model.onnx`` under ``../shared/data/lcbench``, Apache-2.0) maps a funnel MLP's
hyperparameters, an OpenML task and an epoch (1-52) to that epoch's validation accuracy;
it is loaded with onnxruntime and fed as YAHPO Gym feeds it (the task's integer code from
``encoding.json``, then epoch, batch_size, learning_rate, momentum, weight_decay, num_layers,
max_units, max_dropout as raw float32), so ``yahpo-gym`` itself is not needed.

Protocol (issue 17): a run's budget is 52 x 52 epochs, spent one epoch at a time by one
worker; its result is the best validation accuracy at epoch 52 among the configurations
that got there, read at 25%, 50% and 100% of the budget; every method runs on the same
tasks and seeds. Per task the methods are ranked by their mean result over the seeds, and
the ranks are averaged over the tasks (lower is better).

Methods:

* peers, through Optuna (continuous space): ``random`` (RandomSampler, full fidelity),
  ``optuna_tpe_mv`` (TPE multivariate, full fidelity), ``optuna_tpe_hyperband`` (TPE +
  HyperbandPruner), ``random_sh`` (random + SuccessiveHalvingPruner from epoch 1),
  ``hyperband`` (random + HyperbandPruner);
* ours, ``STRATEGY`` or ``STRATEGY+RULE[:key=value,...]`` (e.g. ``model_based+asha:grace=2``):
  a registered strategy over the LCBench space with one of :mod:`controller.early_stopping`'s
  rules, stopped trials paused and promoted from their checkpoint (no epoch trained twice),
  told their results with their fidelity; ``ours`` is :data:`OURS`.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from controller import create_strategy
from controller.base import FINISHED, WAIT, Proposal, Result
from controller.early_stopping import STOP, create_scheduler
from search_spaces.spec import FloatRange, IntRange, SearchSpace

TASKS = ("3945", "7593", "34539", "126025", "146212", "167104", "168868", "189909")
EPOCHS = 52
BUDGET = EPOCHS * EPOCHS
FRACTIONS = (0.25, 0.5, 1.0)
PEERS = ("random", "optuna_tpe_mv", "optuna_tpe_hyperband", "random_sh", "hyperband")
#: Our default: model_based learning from every fidelity, with ASHA from epoch 4 (chosen on seeds 0-1:
#: halving from epoch 1 loses where the first epochs mislead; see docs/benchmarks/lcbench.md).
OURS = "model_based+asha:grace=4"
#: The surrogate's inputs after the task code, in its order.
INPUTS = (
    "epoch",
    "batch_size",
    "learning_rate",
    "momentum",
    "weight_decay",
    "num_layers",
    "max_units",
    "max_dropout",
)
#: ``$L2L_LCBENCH_DATA``, else ``../shared/data/lcbench`` beside the repository.
DEFAULT_DATA = Path(
    os.environ.get("L2L_LCBENCH_DATA")
    or Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lcbench"
)


def lcbench_space(levels: int = 12) -> SearchSpace:
    """LCBench's seven hyperparameters as our search space (``levels`` points for index-based strategies)."""
    return SearchSpace(
        name="lcbench",
        decisions=(
            IntRange("batch_size", 16, 512, log=True, max_levels=levels),
            FloatRange("learning_rate", 1e-4, 0.1, log=True, max_levels=levels),
            FloatRange("momentum", 0.1, 0.99, max_levels=levels),
            FloatRange("weight_decay", 1e-5, 0.1, max_levels=levels),
            IntRange("num_layers", 1, 5),
            IntRange("max_units", 64, 1024, log=True, max_levels=levels),
            FloatRange("max_dropout", 0.0, 1.0, max_levels=levels),
        ),
        # never built: the surrogate stands in for training
        builder="l2l.bench.lcbench:not_trainable",
    )


def not_trainable(*_: Any) -> Any:
    raise RuntimeError("the LCBench space is answered by the surrogate; it builds no model")


class Surrogate:
    """YAHPO Gym's LCBench ONNX model: whole learning curves of validation accuracy (%)."""

    def __init__(self, folder: Path | str = DEFAULT_DATA) -> None:
        import onnxruntime

        folder = Path(folder)
        if not (folder / "model.onnx").is_file():
            raise FileNotFoundError(f"no LCBench surrogate (model.onnx) in {folder}; see its README")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(folder / "model.onnx"), options)
        self.codes: dict[str, int] = json.loads((folder / "encoding.json").read_text())["OpenML_task_id"]

    def curves(self, task: str, configs: Sequence[dict[str, Any]]) -> np.ndarray:
        """Validation accuracy (%) at epochs 1-52, one row per configuration."""
        rows = np.array(
            [
                [epoch] + [float(c[name]) for name in INPUTS[1:]]
                for c in configs
                for epoch in range(1, EPOCHS + 1)
            ],
            dtype=np.float32,
        )
        codes = np.full((len(rows), 1), self.codes[task], dtype=np.int32)
        output = self.session.run(None, {"x_cat": codes, "x_cont": rows})[0]
        return output[:, 1].reshape(len(configs), EPOCHS).astype(np.float64)  # column 1: val_accuracy


@dataclass
class Run:
    """One method on one task with one seed: when each configuration reached epoch 52."""

    #: (epochs spent when it got there, its validation accuracy at epoch 52)
    finished: list[tuple[int, float]] = field(default_factory=list)
    configurations: int = 0
    epochs: int = 0

    def result(self, fraction: float) -> float | None:
        """Best accuracy at epoch 52 among configurations that got there within ``fraction`` of the budget."""
        within = [value for spent, value in self.finished if spent <= fraction * BUDGET]
        return max(within) if within else None


# ------------------------------------------------------------------------------- ours


def run_ours(method: str, task: str, seed: int, surrogate: Surrogate) -> Run:
    """A registered strategy with an early-stopping rule, one worker, paused trials promoted."""
    strategy_name, rule = parse_ours(method)
    options = {"fidelity_input": True} if strategy_name == "model_based" and rule else {}
    strategy = create_strategy(strategy_name, lcbench_space(), seed, options)
    scheduler = create_scheduler(rule, EPOCHS)
    run = Run()
    lines: dict[int, tuple[Proposal, np.ndarray]] = {}
    told: set[int] = set()
    while run.epochs < BUDGET:
        promotion = scheduler.promotion()
        if promotion is not None:
            line, start = promotion
        else:
            asked = strategy.ask()
            if asked is WAIT or asked is FINISHED:
                break
            assert isinstance(asked, Proposal)
            line, start = len(lines), 0
            lines[line] = (asked, surrogate.curves(task, [asked.params])[0])
            run.configurations += 1
        proposal, curve = lines[line]
        for epoch in range(start + 1, EPOCHS + 1):
            if run.epochs >= BUDGET:
                return run
            run.epochs += 1
            value = curve[epoch - 1] / 100
            decision = scheduler.on_report(line, epoch, value)
            if epoch == EPOCHS:
                run.finished.append((run.epochs, float(curve[-1])))
            if epoch == EPOCHS or decision is STOP:
                result = Result(value, fidelity=epoch / EPOCHS)
                if line in told:
                    strategy.observe(proposal.params, result)
                else:
                    strategy.tell(proposal.id, result)
                    told.add(line)
                break
    return run


def parse_ours(method: str) -> tuple[str, dict[str, Any] | None]:
    """``STRATEGY`` or ``STRATEGY+RULE[:key=value,...]`` -> (strategy, early_stopping option)."""
    strategy, _, rest = method.partition("+")
    if not rest:
        return strategy, None
    rule, _, settings_text = rest.partition(":")
    settings: dict[str, Any] = {}
    for item in filter(None, settings_text.split(",")):
        key, _, value = item.partition("=")
        settings[key] = float(value) if "." in value else int(value)
    return strategy, {"name": rule, "settings": settings}


# ------------------------------------------------------------------------------ peers


def run_peer(method: str, task: str, seed: int, surrogate: Surrogate) -> Run:
    """One of :data:`PEERS` through Optuna's ask-and-tell, reporting every epoch to its pruner."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    samplers: dict[str, Callable[[], Any]] = {
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "optuna_tpe_mv": lambda: optuna.samplers.TPESampler(seed=seed, multivariate=True),
        "optuna_tpe_hyperband": lambda: optuna.samplers.TPESampler(seed=seed),
        "random_sh": lambda: optuna.samplers.RandomSampler(seed=seed),
        "hyperband": lambda: optuna.samplers.RandomSampler(seed=seed),
    }
    pruners: dict[str, Callable[[], Any]] = {
        "random": optuna.pruners.NopPruner,
        "optuna_tpe_mv": optuna.pruners.NopPruner,
        "optuna_tpe_hyperband": lambda: optuna.pruners.HyperbandPruner(1, EPOCHS, 3),
        "random_sh": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(1, EPOCHS, 3),
    }
    study = optuna.create_study(direction="maximize", sampler=samplers[method](), pruner=pruners[method]())
    distributions = {
        "batch_size": optuna.distributions.IntDistribution(16, 512, log=True),
        "learning_rate": optuna.distributions.FloatDistribution(1e-4, 0.1, log=True),
        "momentum": optuna.distributions.FloatDistribution(0.1, 0.99),
        "weight_decay": optuna.distributions.FloatDistribution(1e-5, 0.1),
        "num_layers": optuna.distributions.IntDistribution(1, 5),
        "max_units": optuna.distributions.IntDistribution(64, 1024, log=True),
        "max_dropout": optuna.distributions.FloatDistribution(0.0, 1.0),
    }
    run = Run()
    while run.epochs < BUDGET:
        trial = study.ask(distributions)
        curve = surrogate.curves(task, [trial.params])[0]
        run.configurations += 1
        for epoch in range(1, EPOCHS + 1):
            if run.epochs >= BUDGET:
                return run
            run.epochs += 1
            value = float(curve[epoch - 1])
            if epoch == EPOCHS:
                run.finished.append((run.epochs, value))
                study.tell(trial, value)
                break
            trial.report(value, epoch)
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
    return run


# ---------------------------------------------------------------------------- the study


def run_method(method: str, task: str, seed: int, surrogate: Surrogate) -> Run:
    if method in PEERS:
        return run_peer(method, task, seed, surrogate)
    return run_ours(OURS if method == "ours" else method, task, seed, surrogate)


def run_benchmark(
    methods: Sequence[str],
    tasks: Sequence[str] = TASKS,
    seeds: Iterable[int] = range(30),
    surrogate: Surrogate | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every method on every task and seed; results[method][task] = per seed [25%, 50%, 100%] results."""
    surrogate = surrogate or Surrogate()
    seeds = list(seeds)
    results: dict[str, dict[str, list[list[float | None]]]] = {m: {t: [] for t in tasks} for m in methods}
    costs: dict[str, dict[str, Any]] = {m: {"seconds": 0.0, "configurations": 0} for m in methods}
    for task in tasks:
        for seed in seeds:
            for method in methods:  # side by side: every method on this task and seed, in turn
                started = time.perf_counter()
                run = run_method(method, task, seed, surrogate)
                costs[method]["seconds"] += time.perf_counter() - started
                costs[method]["configurations"] += run.configurations
                results[method][task].append([run.result(f) for f in FRACTIONS])
            if progress:
                progress(f"task {task} seed {seed} done")
    return {
        "protocol": {"epochs": EPOCHS, "budget_epochs": BUDGET, "fractions": list(FRACTIONS), "ours": OURS},
        "tasks": list(tasks),
        "seeds": seeds,
        "methods": list(methods),
        "results": results,
        "costs": costs,
    }


def merge(
    documents: Sequence[dict[str, Any]], methods: Sequence[str] | None = None, seeds: int | None = None
) -> dict[str, Any]:
    """One document from runs that split the work (by task, seed or method, e.g. run in parallel),
    keeping ``methods`` (default: all) and seeds below ``seeds`` (default: all).

    Results are deterministic given (method, task, seed), so a cell found in two documents is
    the same run. Raises ValueError if some method lacks a (task, seed) another one has.
    """
    cells: dict[tuple[str, str, int], list[float | None]] = {}
    costs: dict[str, dict[str, float]] = {}
    for document in documents:
        for method, by_task in document["results"].items():
            cost = costs.setdefault(method, {"seconds": 0.0, "configurations": 0, "runs": 0})
            runs = sum(len(r) for r in by_task.values())
            cost["seconds"] += document["costs"][method]["seconds"]
            cost["configurations"] += document["costs"][method]["configurations"]
            cost["runs"] += runs
            for task, per_seed in by_task.items():
                for seed, result in zip(document["seeds"], per_seed, strict=True):
                    if seeds is None or seed < seeds:
                        cells[method, task, seed] = result
    chosen = list(methods or dict.fromkeys(m for d in documents for m in d["methods"]))
    tasks = list(dict.fromkeys(t for d in documents for t in d["tasks"]))
    seeds = sorted({seed for _, _, seed in cells})
    missing = [(m, t, s) for m in chosen for t in tasks for s in seeds if (m, t, s) not in cells]
    if missing:
        raise ValueError(f"{len(missing)} runs are missing, e.g. {missing[0]} (method, task, seed)")
    return {
        "protocol": {**documents[0]["protocol"], "ours": OURS},
        "tasks": tasks,
        "seeds": seeds,
        "methods": chosen,
        "results": {m: {t: [cells[m, t, s] for s in seeds] for t in tasks} for m in chosen},
        # per run, from every document that ran the method (the cost of one run does not depend on the split)
        "costs": {
            m: {
                "seconds": costs[m]["seconds"] / costs[m]["runs"] * len(tasks) * len(seeds),
                "configurations": costs[m]["configurations"] / costs[m]["runs"] * len(tasks) * len(seeds),
            }
            for m in chosen
        },
    }


def mean_results(document: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """means[method][task] = the mean result over seeds at each budget (a run with none counts 0)."""
    return {
        method: {
            task: [
                float(np.mean([r[i] if r[i] is not None else 0.0 for r in runs]))
                for i in range(len(FRACTIONS))
            ]
            for task, runs in by_task.items()
        }
        for method, by_task in document["results"].items()
    }


def mean_ranks(document: dict[str, Any]) -> dict[str, list[float]]:
    """Per method, its rank among the methods by mean result, averaged over tasks, at each budget."""
    means = mean_results(document)
    methods, tasks = document["methods"], document["tasks"]
    ranks = {m: [0.0] * len(FRACTIONS) for m in methods}
    for task in tasks:
        for i in range(len(FRACTIONS)):
            values = np.array([means[m][task][i] for m in methods])
            for m, rank in zip(methods, _ranks_high_first(values), strict=True):
                ranks[m][i] += rank / len(tasks)
    return ranks


def _ranks_high_first(values: np.ndarray) -> np.ndarray:
    """1 for the highest value; ties share the mean of their ranks."""
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def _label(method: str, document: dict[str, Any]) -> str:
    return f"**ours** ({method})" if method == document["protocol"]["ours"] else method


def format_report(document: dict[str, Any], command: str) -> str:
    """The markdown of ``docs/benchmarks/lcbench.md``: mean ranks, then one table per task."""
    methods, tasks = document["methods"], document["tasks"]
    ranks = mean_ranks(document)
    means = mean_results(document)
    labels = [f"{int(f * 100)}%" for f in FRACTIONS]
    lines = [
        "# LCBench: multi-fidelity search, ours beside the peers",
        "",
        "YAHPO Gym's LCBench surrogate (`../shared/data/lcbench`, loaded with onnxruntime). A run's",
        f"budget is {EPOCHS} x {EPOCHS} epochs spent by one worker; its result is the best validation",
        f"accuracy at epoch {EPOCHS} among the configurations that got there, read at "
        + ", ".join(labels)
        + " of the budget. Peers run through Optuna on the continuous space: `random` and",
        "`optuna_tpe_mv` train every configuration to the end; `optuna_tpe_hyperband` (TPE +",
        "HyperbandPruner), `random_sh` (random + SuccessiveHalvingPruner from epoch 1) and",
        "`hyperband` (random + HyperbandPruner) stop trials early. Ours are `STRATEGY+RULE` with our",
        "schedulers (`controller/early_stopping`): a paused trial is promoted from its rung, no epoch",
        "is trained twice, and the strategy is told each result with its fidelity.",
        "",
        "## Mean rank over the tasks (lower is better)",
        "",
        f"{len(document['seeds'])} seeds, tasks {', '.join(tasks)}; "
        f"`ours` is `{document['protocol']['ours']}`.",
        "",
        "| method | " + " | ".join(labels) + " | configurations per run | seconds per run |",
        "| --- | " + " | ".join("---:" for _ in labels) + " | ---: | ---: |",
    ]
    runs = len(document["seeds"]) * len(tasks)
    for m in sorted(methods, key=lambda m: ranks[m][-1]):
        cost = document["costs"][m]
        lines.append(
            f"| {_label(m, document)} | "
            + " | ".join(f"{r:.2f}" for r in ranks[m])
            + f" | {cost['configurations'] / runs:.0f} | {cost['seconds'] / runs:.2f} |"
        )
    lines += [
        "",
        "## Per task: mean validation accuracy (%) at epoch 52 of the best finished configuration",
        "",
    ]
    for task in tasks:
        best = [max(means[m][task][i] for m in methods) for i in range(len(FRACTIONS))]
        lines += [f"### task {task}", "", "| method | " + " | ".join(labels) + " |"]
        lines.append("| --- | " + " | ".join("---:" for _ in labels) + " |")
        for m in methods:
            cells = []
            for i in range(len(FRACTIONS)):
                value = means[m][task][i]
                sd = float(np.std([r[i] or 0.0 for r in document["results"][m][task]]))
                text = f"{value:.2f} ± {sd:.2f}"
                cells.append(f"**{text}**" if math.isclose(value, best[i]) else text)
            lines.append(f"| {_label(m, document)} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + f"\nMade by `{command}`.\n"
