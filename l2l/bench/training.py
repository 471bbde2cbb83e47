"""``l2l bench training``: real training under a wall-clock budget, our service beside its peers.

    l2l bench training --seeds 3 --out docs/benchmarks/results/training.json

The question: given N minutes of this machine (2 trials at a time, one CPU and one thread
each), which search hands back the most accurate model? Contenders
(:mod:`l2l.bench.training_contenders` says how each runs and is stopped):

* ``l2l``: our job loop and Ray executor, ``model_based``, every trial ``--epochs`` epochs;
* ``l2l_asha``: the same with ``early_stopping: asha`` (grace 1, eta 3);
* ``kt_hyperband``: KerasTuner's ``Hyperband`` (``max_epochs=--epochs``, ``factor=3``);
* ``tune_asha_optuna``: Ray Tune with ``OptunaSearch`` and ``ASHAScheduler`` (``max_t=--epochs``,
  grace 1, reduction factor 3).

**Data** (nothing is downloaded): ``generated`` (default) is scikit-learn's
``make_classification`` with a fixed seed (:data:`GENERATED`): 15,000 rows, 32 features of
which 12 informative and 6 redundant, 6 classes of 3 clusters each, and 3% of the labels
replaced by random ones, so the answer is known to lie below ~97.5% (1 - 0.03 x 5/6); small
or badly trained networks stay far below it, so width, depth and learning rate matter.
``digits`` is scikit-learn's bundled 8x8 digits. Every contender reads the same split through
:func:`l2l.service.datasets.load_dataset` (60% training, 20% validation, 20% test, split seed
0, features standardised on the training part); l2l gets the generated file through the real
upload path, as a team's dataset.

**Space** (:data:`SPACE`, the same decisions for every tool): 1-3 dense ReLU layers of 16-256
units, dropout 0-0.5, Adam's learning rate 1e-4 to 1e-1 (log), batch 32, at most ``--epochs``
(27: Hyperband's and ASHA's rungs at 1, 3, 9 and 27 epochs). One builder
(``search_spaces.mlp_builder``) makes every model. ``model_based`` sees the float ranges as 8
levels each, as it always does; KerasTuner and Optuna draw them continuously.

**Anytime result.** One search per contender and seed runs for the largest budget; every
trial that completes is recorded with its configuration, the epochs it had trained, its
validation accuracy after its last epoch (the same rule for every tool) and when it
completed. The *pick* at budget b is the trial of best validation accuracy among those
completed by b (a trial still running at b does not count). Each distinct pick is then
retrained here from scratch, the same way whoever picked it: with the epochs it had when it
was picked (what was validated, fewer for a trial stopped early), on training + validation
data, ``keras.utils.set_random_seed(seed)``, and scored once on the test part. That test
accuracy is the figure; so one run at the largest budget gives every budget.

Seeds 0..``--seeds``-1, the contenders' order rotated each seed. ``--out`` gets every run
(trials, picks, test accuracies, the load average before and after) after each run; the
printed Markdown table gives mean ± std of test accuracy and the mean count of trials
completed, per contender and budget.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from l2l.bench.overhead import THREAD_ENV
from l2l.bench.training_contenders import CONTENDERS, CompletedTrial, Search

#: The generated data's recipe (``sklearn.datasets.make_classification``), fixed seed.
GENERATED = {
    "n_samples": 15_000,
    "n_features": 32,
    "n_informative": 12,
    "n_redundant": 6,
    "n_classes": 6,
    "n_clusters_per_class": 3,
    "flip_y": 0.03,
    "class_sep": 1.0,
    "random_state": 0,
}
DATASETS = ("generated", "digits")
#: The searched space, over the ``mlp`` template (its other decisions fixed: ReLU, batch 32).
SPACE = {
    "name": "bench-mlp",
    "template": "mlp",
    "decisions": [
        {"name": "num_layers", "type": "int", "low": 1, "high": 3},
        {"name": "units", "type": "choice", "options": [16, 32, 64, 128, 256]},
        {"name": "dropout", "type": "float", "low": 0.0, "high": 0.5},
        {"name": "learning_rate", "type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    ],
}
DEFAULT_BUDGET_MINUTES = (5.0, 10.0, 20.0)


def run_training(
    *,
    contenders: Sequence[str] = tuple(CONTENDERS),
    seeds: int = 3,
    budget_minutes: Sequence[float] = DEFAULT_BUDGET_MINUTES,
    dataset: str = "generated",
    epochs: int = 27,
    concurrency: int = 2,
    rows: int | None = None,
    log: Callable[[str], None] = print,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Every contender once per seed for the largest budget; picks and test accuracies per budget.

    ``rows`` shrinks the generated data (tests); the default is :data:`GENERATED`'s.
    """
    unknown = sorted(set(contenders) - set(CONTENDERS))
    if unknown or dataset not in DATASETS:
        raise ValueError(f"unknown contender(s) {unknown} or dataset {dataset!r}")
    budgets = sorted(budget_minutes)
    os.environ.update(THREAD_ENV)  # before anything here imports TensorFlow (the retraining)
    document: dict[str, Any] = {
        "protocol": {
            "dataset": dataset,
            "generated": {**GENERATED, **({"n_samples": rows} if rows else {})},
            "space": SPACE,
            "epochs": epochs,
            "concurrency": concurrency,
            "budget_minutes": budgets,
            "seeds": seeds,
            "contenders": list(contenders),
        },
        "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
        "runs": [],
    }
    folder = Path(tempfile.mkdtemp(prefix="l2l-bench-training-"))
    try:
        data = _dataset_spec(dataset, folder, rows)
        for seed in range(seeds):
            shift = seed % len(contenders)
            for name in [*contenders[shift:], *contenders[:shift]]:
                search = Search(data, SPACE, epochs, budgets[-1] * 60, seed, concurrency)
                log(f"seed {seed}: {name} for {budgets[-1]:g} min")
                document["runs"].append(_run_one(name, search, budgets, log))
                if checkpoint:
                    checkpoint(document)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    document["machine"]["load_average_at_end"] = os.getloadavg()
    return document


def _run_one(name: str, search: Search, budgets: list[float], log: Callable[[str], None]) -> dict[str, Any]:
    run: dict[str, Any] = {"contender": name, "seed": search.seed, "load_average_before": os.getloadavg()}
    started = time.monotonic()
    try:
        trials = CONTENDERS[name](search)
    except Exception as error:  # one contender's failure is reported, the others still run
        log(f"  failed: {error!r}")
        return {**run, "error": repr(error), "load_average_after": os.getloadavg()}
    run["search_seconds"] = time.monotonic() - started
    run["load_average_after"] = os.getloadavg()
    run["trials"] = [asdict(trial) for trial in trials]
    scores: dict[str, float] = {}  # the same configuration and epochs are retrained once
    run["budgets"] = []
    for minutes in budgets:
        done = [trial for trial in trials if trial.seconds <= minutes * 60]
        pick = max(done, key=lambda trial: trial.val_accuracy, default=None)  # the earliest of ties
        entry: dict[str, Any] = {"minutes": minutes, "trials_completed": len(done), "pick": None}
        if pick is not None:
            key = json.dumps([pick.params, pick.epochs], sort_keys=True)
            if key not in scores:
                scores[key] = retrained_test_accuracy(search, pick)
            entry.update(pick=asdict(pick), test_accuracy=scores[key])
        run["budgets"].append(entry)
        shown = f"test {entry['test_accuracy']:.4f}" if pick else "no trial completed"
        log(f"  {minutes:g} min: {len(done)} trials, {shown}")
    return run


def retrained_test_accuracy(search: Search, pick: CompletedTrial) -> float:
    """Retrain ``pick`` from scratch on training + validation data; its accuracy on the test part."""
    import keras
    import numpy as np

    from l2l.worker.executor import DEFAULT_BATCH_SIZE
    from l2l.worker.trainer import cached_dataset
    from search_spaces import batch_size_for, get_space

    space = get_space(search.space)
    data = cached_dataset(search.data)
    keras.backend.clear_session()
    keras.utils.set_random_seed(search.seed)
    model = space.load_builder()(pick.params, data.info, space.settings)
    batch_size = batch_size_for(space, pick.params, DEFAULT_BATCH_SIZE)
    model.fit(
        np.concatenate([data.x_train, data.x_val]),
        np.concatenate([data.y_train, data.y_val]),
        epochs=pick.epochs,
        batch_size=batch_size,
        verbose=0,
    )
    scores = model.evaluate(data.x_test, data.y_test, batch_size=batch_size, verbose=0, return_dict=True)
    return float(scores["accuracy"])


def _dataset_spec(dataset: str, folder: Path, rows: int | None) -> dict[str, Any]:
    """The spec every contender loads; the generated data is written to ``folder`` first."""
    if dataset == "digits":
        return {"name": "digits", "kind": "image", "task": "classification", "split_seed": 0}
    import numpy as np
    from sklearn.datasets import make_classification

    x, y = make_classification(**{**GENERATED, **({"n_samples": rows} if rows else {})})
    path = folder / "generated.npz"
    np.savez(path, x=x.astype(np.float32), y=y.astype(np.int64))
    return {"name": "npz", "path": str(path), "kind": "tabular", "task": "classification", "split_seed": 0}


def format_report(document: dict[str, Any]) -> str:
    """Markdown: test accuracy of the pick (mean ± std over seeds) and trials completed, by budget."""
    budgets = document["protocol"]["budget_minutes"]
    header = "| contender | " + " | ".join(f"{minutes:g} min" for minutes in budgets) + " |"
    rule = "| --- |" + " --- |" * len(budgets)
    accuracy, trials = [header, rule], [header, rule]
    for name in document["protocol"]["contenders"]:
        runs = [run for run in document["runs"] if run["contender"] == name and "budgets" in run]
        failed = sum(1 for run in document["runs"] if run["contender"] == name and "error" in run)
        if not runs:
            accuracy.append(f"| {name} |" + f" failed ({failed}) |" * len(budgets))
            continue
        label = f"{name} ({failed} failed)" if failed else name
        cells, counts = [], []
        for index in range(len(budgets)):
            entries = [run["budgets"][index] for run in runs]
            scores = [e["test_accuracy"] for e in entries if e["pick"] is not None]
            cells.append(_mean_std(scores, len(entries)))
            counts.append(f"{statistics.mean(e['trials_completed'] for e in entries):.1f}")
        accuracy.append(f"| {label} | " + " | ".join(cells) + " |")
        trials.append(f"| {label} | " + " | ".join(counts) + " |")
    seeds = document["protocol"]["seeds"]
    loads = [run[key][0] for run in document["runs"] for key in ("load_average_before", "load_average_after")]
    return "\n".join(
        [
            f"Test accuracy of each budget's pick, mean ± std over {seeds} seed(s):",
            "",
            *accuracy,
            "",
            "Trials completed by each budget (mean over seeds):",
            "",
            *trials,
            "",
            f"1-minute load average before and after each run: {min(loads, default=0):.2f} "
            f"to {max(loads, default=0):.2f} on {document['machine']['cpus']} CPUs.",
        ]
    )


def _mean_std(scores: list[float], runs: int) -> str:
    if not scores:
        return "no trial"
    spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
    missing = f" ({len(scores)} of {runs} seeds)" if len(scores) < runs else ""
    return f"{statistics.mean(scores):.4f} ± {spread:.4f}{missing}"
