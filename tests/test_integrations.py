"""Our strategies inside other tuners: a tiny Ray Tune run and a tiny KerasTuner search.

Both use REINFORCE on a planted objective that costs nothing, so the tests check the
wiring (every proposal is told, failures stay failures, the values are ours), not speed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import start_local_ray

from search_spaces.spec import Choice, SearchSpace

SPACE = SearchSpace(
    "planted",
    (Choice("a", (0, 1, 2)), Choice("b", ("x", "y", "z")), Choice("c", (0.5, 1.0))),
    "tests:unused",
)


def score(values: dict[str, Any]) -> float:
    return values["a"] + (values["b"] == "y") + values["c"]


@pytest.mark.xdist_group("ray")  # a Ray cluster: one at a time (see tests/test_end_to_end.py)
def test_a_strategy_runs_as_a_ray_tune_searcher(tmp_path: Path) -> None:
    import ray
    from ray import tune

    from l2l.integrations.ray_tune import StrategySearcher

    def trainable(config: dict[str, Any]) -> dict[str, float]:
        # Self-contained: Ray workers cannot import this test module to find score().
        return {"score": config["a"] + (config["b"] == "y") + config["c"]}

    # With a space of ours and no param_space, Tune never tells the searcher TuneConfig's metric,
    # so it is given to the searcher (tests/test_integrations_ray.py covers TuneConfig's).
    searcher = StrategySearcher(
        SPACE, strategy="reinforce", seed=0, options={"learning_rate": 0.01}, metric="score", mode="max"
    )
    start_local_ray()
    try:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=6),
            run_config=tune.RunConfig(storage_path=str(tmp_path), name="l2l", verbose=0),
        )
        results = tuner.fit()
    finally:
        ray.shutdown()
    assert len(results) == 6 and not results.errors
    best = results.get_best_result(metric="score", mode="max")
    assert SPACE.validate({k: best.config[k] for k in SPACE.names})
    assert sorted(r.metrics["score"] for r in results) == sorted(score(r.config) for r in results)
    told = sorted(reward for _, status, reward in searcher.driver.tried.values() if status == "done")
    assert told == sorted(r.metrics["score"] for r in results)  # every result reached the strategy


def test_a_trial_without_the_metric_is_a_failure_not_a_zero() -> None:
    from l2l.integrations.ray_tune import StrategySearcher

    searcher = StrategySearcher(SPACE, strategy="evolution", seed=1, metric="score", mode="min")
    first, second = searcher.suggest("t1"), searcher.suggest("t2")
    assert isinstance(first, dict) and isinstance(second, dict)
    searcher.on_trial_complete("t1", {"other": 1.0})
    searcher.on_trial_complete("t2", {"score": 2.0})
    population = searcher.strategy.get_state()["population"]
    assert [reward for _, reward in population] == [-2.0]  # minimised: the reward is negated


def test_a_strategy_runs_as_a_keras_tuner_oracle(tmp_path: Path) -> None:
    import keras_tuner

    from l2l.integrations.keras_tuner_oracle import StrategyOracle

    class CheapTuner(keras_tuner.Tuner):  # type: ignore[misc]
        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
            return {"score": score(trial.hyperparameters.values)}

    oracle = StrategyOracle(
        SPACE,
        strategy="reinforce",
        options={"learning_rate": 0.01},
        seed=0,
        objective=keras_tuner.Objective("score", "max"),
        max_trials=8,
    )
    tuner = CheapTuner(oracle=oracle, directory=str(tmp_path), project_name="l2l", overwrite=True)
    tuner.search(verbose=0)
    trials = list(oracle.trials.values())
    assert len(trials) == 8 and all(t.status == "COMPLETED" for t in trials)
    for trial in trials:
        assert SPACE.validate(trial.hyperparameters.values) == trial.hyperparameters.values
    assert not oracle.strategy.pending and not oracle.driver.pending()
    # 8 distinct configurations told; a repeat the strategy proposed was told the known result
    assert len(oracle.driver.tried) == 8
    assert oracle.strategy.get_state()["updates"] == oracle.strategy.next_id >= 8
    best = tuner.oracle.get_best_trials(1)[0]
    assert best.score == max(t.score for t in trials)


@pytest.mark.parametrize("strategy", ["random", "evolution"])
def test_any_registered_strategy_name_works_as_an_oracle(strategy: str) -> None:
    import keras_tuner

    from l2l.integrations.keras_tuner_oracle import StrategyOracle

    oracle = StrategyOracle(SPACE, strategy=strategy, seed=3, objective=keras_tuner.Objective("score", "max"))
    assert oracle.populate_space("0")["status"] == "RUNNING"
