"""Our strategies inside KerasTuner and Ray Tune against those tools' own searchers.

    python -m l2l.bench.integrations --trials 15 --seeds 3 --out docs/benchmarks/results/integrations.json

The task: a KerasTuner-style ``build(hp)`` with a variable number of dense layers (a
``units_i`` per layer drawn), a Boolean dropout with a conditional rate, and a log-scaled
learning rate, trained on scikit-learn's digits (1,347 training images, 450 for
validation, a fixed stratified split) for ``--epochs`` epochs. The score of a search is the
best validation accuracy of its trials, as the tuner itself reports it.

* KerasTuner: ``StrategyOracle`` (model_based) in a stock ``keras_tuner.Tuner`` against
  ``RandomSearch``, ``BayesianOptimization`` and ``Hyperband``, each ``--trials`` trials
  (Hyperband sets its own count: ``max_epochs=--epochs``, ``factor=3``, as many
  iterations as keep it within the same number of full-length trainings).
* Ray Tune: ``StrategySearcher`` (model_based) against ``OptunaSearch`` (TPE), one trial at
  a time through the Searcher interface (see :func:`ray_search`), on the same build
  function with the same hyperparameters as a flat ``param_space`` (the ``units_i`` of
  unused layers are drawn and ignored, and ``rate`` is drawn even without dropout).

Every search starts from ``keras.utils.set_random_seed(seed)``; seeds 0..``--seeds``-1.
Writes every search's score and trial count to ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build(hp: Any) -> Any:
    """The searched model: 1-3 dense layers, optional dropout with a conditional rate."""
    import keras

    model = keras.Sequential([keras.Input((64,))])
    for i in range(hp.Int("layers", 1, 3)):
        model.add(keras.layers.Dense(hp.Int(f"units_{i}", 16, 128, step=16), activation="relu"))
    if hp.Boolean("dropout"):
        with hp.conditional_scope("dropout", [True]):
            model.add(keras.layers.Dropout(hp.Choice("rate", [0.1, 0.25, 0.5])))
    model.add(keras.layers.Dense(10, activation="softmax"))
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-4, 3e-2, sampling="log")),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def digits() -> tuple[Any, Any, Any, Any]:
    """The fixed split: (x_train, y_train, x_val, y_val), pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=450, stratify=y, random_state=0)
    return x_train.astype("float32"), y_train, x_val.astype("float32"), y_val


def ray_trainable(config: dict[str, Any]) -> dict[str, float]:
    """One Ray Tune trial: the build function with ``config`` as its values; best epoch's accuracy."""
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    hp.values.update(config["hp"])
    x_train, y_train, x_val, y_val = digits()
    history = build(hp).fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=config["epochs"],
        batch_size=64,
        verbose=0,
    )
    return {"val_accuracy": max(history.history["val_accuracy"])}


def keras_tuner_search(method: str, seed: int, trials: int, epochs: int, directory: str) -> dict[str, Any]:
    import keras
    import keras_tuner

    from l2l.integrations.keras_tuner_oracle import StrategyOracle

    keras.utils.set_random_seed(seed)
    common = {"directory": directory, "project_name": f"{method}_{seed}", "overwrite": True}
    objective = "val_accuracy"
    kt_seed = seed + 1  # KerasTuner reads seed 0 as "no seed"
    if method == "l2l model_based":
        oracle = StrategyOracle("model_based", objective=objective, max_trials=trials, seed=kt_seed)
        tuner = keras_tuner.Tuner(oracle=oracle, hypermodel=build, **common)
    elif method == "RandomSearch":
        tuner = keras_tuner.RandomSearch(
            build, objective=objective, max_trials=trials, seed=kt_seed, **common
        )
    elif method == "BayesianOptimization":
        tuner = keras_tuner.BayesianOptimization(
            build, objective=objective, max_trials=trials, seed=kt_seed, **common
        )
    elif method == "Hyperband":
        tuner = keras_tuner.Hyperband(
            build,
            objective=objective,
            max_epochs=epochs,
            factor=3,
            hyperband_iterations=_hyperband_iterations(trials, epochs),
            seed=kt_seed,
            **common,
        )
    else:
        raise ValueError(f"unknown method {method!r}")
    x_train, y_train, x_val, y_val = digits()
    started = time.perf_counter()
    tuner.search(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs, batch_size=64, verbose=0)
    finished = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]
    epochs_run = sum(
        int(t.hyperparameters.values.get("tuner/epochs", epochs))
        - int(t.hyperparameters.values.get("tuner/initial_epoch", 0))
        for t in finished
    )
    return {
        "tool": "KerasTuner",
        "method": method,
        "seed": seed,
        "best": max(t.score for t in finished),
        "trials": len(finished),
        "epochs": epochs_run,
        "seconds": time.perf_counter() - started,
    }


def ray_search(method: str, seed: int, trials: int, epochs: int) -> dict[str, Any]:
    """One Ray Tune searcher, driven through the Searcher interface one trial at a time.

    Tune's controller calls ``set_search_properties``, ``suggest`` and ``on_trial_complete``
    exactly so when one trial runs at a time; the trials run here, in this process, rather than
    in Ray workers, whose start-up (TensorFlow imported in each) dominated on our loaded
    machine. The searchers see the same calls either way; the Tuner path is tested in
    tests/test_integrations_ray.py.
    """
    import keras
    from ray import tune
    from ray.tune.search import Searcher
    from ray.tune.search.optuna import OptunaSearch

    from l2l.integrations.ray_tune import StrategySearcher

    keras.utils.set_random_seed(seed)
    param_space = {
        "hp": {
            "layers": tune.randint(1, 4),
            **{f"units_{i}": tune.qrandint(16, 128, 16) for i in range(3)},
            "dropout": tune.choice([False, True]),
            "rate": tune.choice([0.1, 0.25, 0.5]),
            "lr": tune.loguniform(1e-4, 3e-2),
        },
    }
    if method == "l2l model_based":
        searcher: Any = StrategySearcher("model_based", seed=seed)
    elif method == "OptunaSearch":
        searcher = OptunaSearch(seed=seed)
    else:
        raise ValueError(f"unknown method {method!r}")
    assert searcher.set_search_properties("val_accuracy", "max", param_space)
    started = time.perf_counter()
    scores = []
    for number in range(trials):
        config = searcher.suggest(str(number))
        if config is None or config == Searcher.FINISHED:
            break
        result = ray_trainable({**config, "epochs": epochs})
        searcher.on_trial_complete(str(number), result)
        scores.append(result["val_accuracy"])
    return {
        "tool": "Ray Tune",
        "method": method,
        "seed": seed,
        "best": max(scores),
        "trials": len(scores),
        "epochs": len(scores) * epochs,
        "seconds": time.perf_counter() - started,
    }


def _hyperband_iterations(trials: int, epochs: int) -> int:
    """Hyperband iterations whose epochs come closest to ``trials`` full-length trainings.

    One iteration's epochs are counted by running KerasTuner's Hyperband oracle on a dummy
    space with random scores (no training: its schedule does not depend on the scores).
    """
    import random

    import keras_tuner

    hp = keras_tuner.HyperParameters()
    hp.Int("x", 1, 100)
    oracle = keras_tuner.oracles.HyperbandOracle(
        objective=keras_tuner.Objective("score", "max"),
        max_epochs=epochs,
        factor=3,
        seed=1,
        hyperparameters=hp,
    )
    oracle.verbose = 0
    with tempfile.TemporaryDirectory() as directory:
        oracle._set_project_dir(directory, "count")
        scores, per_iteration = random.Random(0), 0
        while (trial := oracle.create_trial("count")).status != "STOPPED":
            values = trial.hyperparameters.values
            per_iteration += values["tuner/epochs"] - values.get("tuner/initial_epoch", 0)
            oracle.update_trial(trial.trial_id, {"score": scores.random()})
            trial.status = "COMPLETED"
            oracle.end_trial(trial)
    return max(1, round(trials * epochs / per_iteration))


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| tool | searcher | seeds | best val. accuracy, mean ± std | per seed | trials | epochs | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["tool"], row["method"]), []).append(row)
    for (tool, method), runs in groups.items():
        best = [r["best"] for r in runs]
        spread = statistics.stdev(best) if len(best) > 1 else 0.0
        lines.append(
            f"| {tool} | {method} | {len(runs)} | {statistics.mean(best):.4f} ± {spread:.4f} | "
            f"{' / '.join(f'{b:.4f}' for b in best)} | {statistics.mean(r['trials'] for r in runs):.0f} | "
            f"{statistics.mean(r['epochs'] for r in runs):.0f} | "
            f"{statistics.mean(r['seconds'] for r in runs):.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=15)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--tool", choices=["keras_tuner", "ray", "both"], default="both")
    parser.add_argument("--out", help="results JSON file (runs already in it are kept, not rerun)")
    parser.add_argument("--report", nargs="+", metavar="FILE", help="only print the table of results files")
    args = parser.parse_args(argv)
    if args.report:
        print(table([row for path in args.report for row in json.loads(Path(path).read_text())["runs"]]))
        return 0
    if not args.out:
        parser.error("--out is required unless --report is given")
    rows: list[dict[str, Any]] = []
    out = Path(args.out)
    if out.exists():
        rows = json.loads(out.read_text())["runs"]  # resume: keep what is done
    done = {(r["tool"], r["method"], r["seed"]) for r in rows}

    def record(row: dict[str, Any]) -> None:
        rows.append(row)
        out.parent.mkdir(parents=True, exist_ok=True)
        settings = {"trials": args.trials, "epochs": args.epochs, "seeds": args.seeds}
        out.write_text(json.dumps({"settings": settings, "runs": rows}, indent=1))
        print(json.dumps(row), flush=True)

    with tempfile.TemporaryDirectory() as directory:
        if args.tool in ("keras_tuner", "both"):
            for seed in range(args.seeds):
                for method in ("l2l model_based", "RandomSearch", "BayesianOptimization", "Hyperband"):
                    if ("KerasTuner", method, seed) not in done:
                        record(keras_tuner_search(method, seed, args.trials, args.epochs, directory))
        if args.tool in ("ray", "both"):
            for seed in range(args.seeds):
                for method in ("l2l model_based", "OptunaSearch"):
                    if ("Ray Tune", method, seed) not in done:
                        record(ray_search(method, seed, args.trials, args.epochs))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
