"""KerasTuner's oracle and Tuner contract, for every registered strategy behind ``StrategyOracle``.

What KerasTuner's own suites expect of an oracle, checked in our words: spaces that
``build(hp)`` grows trial by trial, conditional scopes, ``hp.Fixed``, reloading a project
with ``overwrite=False``, both ``end_trial`` signatures, retries and failed trials, the
end of a finite space, several tuners in threads on one oracle, and trial ids. The
tuners here score a trial with a planted formula (no training), so each test checks the
wiring and is fast; one test trains real Keras models on the digits.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import keras_tuner
import pytest

from controller import strategy_names
from l2l.integrations.keras_tuner_oracle import StrategyOracle

STRATEGIES = strategy_names()


def layered(hp: Any) -> float:
    """KerasTuner's classic pattern: a hyperparameter per layer, for as many layers as drawn."""
    hp.Fixed("classes", 10)
    total = 0.0
    for i in range(hp.Int("layers", 1, 3)):
        total += hp.Int(f"units_{i}", 8, 32, step=8) / 8
    kind = hp.Choice("kind", ["plain", "dropout"])
    with hp.conditional_scope("kind", ["dropout"]):
        if kind == "dropout":
            total += hp.Choice("rate", [0.0, 0.5]) * 4
    return total


def tiny(hp: Any) -> float:
    """Three configurations: kind=a, or kind=b with one of two sizes (inactive for a)."""
    kind = hp.Choice("kind", ["a", "b"])
    with hp.conditional_scope("kind", ["b"]):
        size = hp.Choice("size", [1, 2]) if kind == "b" else 0
    return float(size)


class PlantedTuner(keras_tuner.Tuner):  # type: ignore[misc]
    """Scores a trial with the build function's return value; trains nothing."""

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
        return {"score": float(self.hypermodel.build(trial.hyperparameters))}


def oracle_for(strategy: str, max_trials: int, **kwargs: Any) -> StrategyOracle:
    options = {"learning_rate": 0.01} if strategy == "reinforce" else None
    return StrategyOracle(
        strategy,
        options=options,
        objective=keras_tuner.Objective("score", "max"),
        max_trials=max_trials,
        seed=3,
        **kwargs,
    )


def search(strategy: str, build: Any, path: Path, max_trials: int, overwrite: bool = True) -> StrategyOracle:
    oracle = oracle_for(strategy, max_trials)
    tuner = PlantedTuner(
        oracle=oracle, hypermodel=build, directory=str(path), project_name="p", overwrite=overwrite
    )
    tuner.search(verbose=0)
    return oracle


def values_of(oracle: StrategyOracle) -> list[tuple[tuple[str, Any], ...]]:
    return [tuple(sorted(oracle.trials[t].hyperparameters.values.items())) for t in oracle.start_order]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_space_that_grows_trial_by_trial_is_searched(strategy: str, tmp_path: Path) -> None:
    oracle = search(strategy, layered, tmp_path, max_trials=10)
    trials = [oracle.trials[t] for t in oracle.start_order]
    assert len(trials) == 10 and all(t.status == "COMPLETED" for t in trials)
    assert {"layers", "units_0", "units_1", "units_2", "kind", "rate"} <= set(oracle.driver.space.names)
    assert "classes" not in oracle.driver.space.names  # hp.Fixed is KerasTuner's, not searched
    for trial in trials:
        values = trial.hyperparameters.values
        assert values["classes"] == 10
        assert ("rate" in values) == (values["kind"] == "dropout")  # inactive: no value
        assert trial.score == layered(trial.hyperparameters.copy())
    assert len(set(values_of(oracle))) == 10, "a configuration ran twice"
    assert oracle.strategy.pending == {} and not oracle.driver.pending()
    told = [entry for entry in oracle.driver.tried.values() if entry[1] == "done"]
    assert len(told) == 10 and all(reward is not None for _, _, reward in told)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_an_exhausted_space_stops_the_search(strategy: str, tmp_path: Path) -> None:
    oracle = search(strategy, tiny, tmp_path, max_trials=12)
    ran = values_of(oracle)
    # inactive "size" for kind=a: three configurations, each run once, then STOPPED
    assert sorted(ran) == sorted(
        [(("kind", "a"),), (("kind", "b"), ("size", 1)), (("kind", "b"), ("size", 2))]
    )


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_reloaded_project_resumes_the_strategy(strategy: str, tmp_path: Path) -> None:
    straight = search(strategy, layered, tmp_path / "straight", max_trials=8)
    first = search(strategy, layered, tmp_path / "resumed", max_trials=4)
    told_before = first.strategy.get_state()["next_id"]
    resumed = oracle_for(strategy, max_trials=8)
    tuner = PlantedTuner(
        oracle=resumed,
        hypermodel=layered,
        directory=str(tmp_path / "resumed"),
        project_name="p",
        overwrite=False,
    )
    # Reloading restores the strategy as it was, not a fresh one that knows nothing.
    assert resumed.strategy.get_state()["next_id"] == told_before
    assert sum(entry[1] == "done" for entry in resumed.driver.tried.values()) == 4
    tuner.search(verbose=0)
    assert len(resumed.trials) == 8
    assert values_of(resumed) == values_of(straight), "a resumed search differs from an uninterrupted one"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_older_end_trial_signature_tells_the_strategy(strategy: str, tmp_path: Path) -> None:
    oracle = oracle_for(strategy, max_trials=5, hyperparameters=_hp_space())
    oracle._set_project_dir(str(tmp_path), "p")
    trial = oracle.create_trial("tuner0")
    oracle.update_trial(trial.trial_id, {"score": 2.5})
    oracle.end_trial(trial.trial_id, "COMPLETED")  # end_trial(trial_id, status), as before 1.4
    ended = oracle.trials[trial.trial_id]
    assert ended.status == "COMPLETED" and ended.score == 2.5
    assert ended.hyperparameters.values == trial.hyperparameters.values  # the values that ran
    assert [entry[2] for entry in oracle.driver.tried.values()] == [2.5]
    assert oracle.strategy.pending == {}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_retried_and_failed_trials(strategy: str, tmp_path: Path) -> None:
    attempts: dict[str, int] = {}

    class Flaky(keras_tuner.Tuner):  # type: ignore[misc]
        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
            attempts[trial.trial_id] = attempts.get(trial.trial_id, 0) + 1
            if trial.trial_id == "1" and attempts["1"] == 1:
                raise RuntimeError("a flaky worker: the retry succeeds")
            if trial.trial_id == "2":
                raise keras_tuner.errors.FailedTrialError("this configuration cannot be built")
            return {"score": float(trial.hyperparameters.values["units"])}

    oracle = oracle_for(strategy, max_trials=4, hyperparameters=_hp_space(), max_retries_per_trial=1)
    Flaky(oracle=oracle, directory=str(tmp_path), project_name="p", overwrite=True).search(verbose=0)
    statuses = {t: oracle.trials[t].status for t in oracle.start_order}
    assert statuses == {"0": "COMPLETED", "1": "COMPLETED", "2": "FAILED", "3": "COMPLETED"}
    assert attempts == {"0": 1, "1": 2, "2": 1, "3": 1}
    rewards = {oracle.trials[t].hyperparameters.values["units"]: oracle.trials[t].score for t in statuses}
    told = {params["units"]: reward for params, _, reward in oracle.driver.tried.values()}
    failed_units = oracle.trials["2"].hyperparameters.values["units"]
    assert told[failed_units] is None  # a failure, never a reward of 0
    assert all(told[u] == rewards[u] for u in told if u != failed_units)
    assert oracle.strategy.pending == {}  # the retried trial was told once, after its retry


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_tuners_in_threads_share_one_oracle(strategy: str, tmp_path: Path) -> None:
    oracle = oracle_for(strategy, max_trials=16, hyperparameters=_hp_space(wide=True))
    oracle._set_project_dir(str(tmp_path), "p")
    oracle.verbose = 0
    errors: list[BaseException] = []

    def worker(tuner_id: str) -> None:
        try:
            while True:
                trial = oracle.create_trial(tuner_id)
                if trial.status == "STOPPED":
                    return
                if trial.status != "RUNNING":
                    continue
                values = trial.hyperparameters.values
                oracle.update_trial(trial.trial_id, {"score": float(values["units"] + values["depth"])})
                # as a tuner in another process reports it: a copy of the trial, not the oracle's own
                ended = keras_tuner.engine.trial.Trial(
                    trial.hyperparameters.copy(), trial_id=trial.trial_id, status="COMPLETED"
                )
                oracle.end_trial(ended)
        except BaseException as error:  # noqa: BLE001 (reported by the main thread)
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(f"tuner{i}",), daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert len(oracle.trials) == 16 and all(t.status == "COMPLETED" for t in oracle.trials.values())
    assert len(set(values_of(oracle))) == 16
    assert oracle.strategy.pending == {} and not oracle.driver.pending()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_trial_ids_count_up_without_gaps(strategy: str, tmp_path: Path) -> None:
    oracle = search(strategy, layered, tmp_path, max_trials=12)
    assert oracle.start_order == [f"{i:02d}" for i in range(12)]
    assert oracle.end_order == oracle.start_order
    assert oracle.strategy.next_id >= 12  # repeats answered from memory take ids, trials do not


def test_a_project_of_another_strategy_is_not_reloaded_silently(tmp_path: Path) -> None:
    search("random", tiny, tmp_path, max_trials=2)
    with pytest.raises(ValueError, match="searched by strategy 'random'"):
        PlantedTuner(
            oracle=oracle_for("evolution", 4), hypermodel=tiny, directory=str(tmp_path), project_name="p"
        )


def test_our_build_example_runs_in_a_stock_tuner_and_trains(tmp_path: Path) -> None:
    """tests/kt_build_example.build (hp.Fixed, a Boolean, a per-layer loop) on the digits, for real."""
    import numpy as np
    from sklearn.datasets import load_digits

    from tests.kt_build_example import build

    images, labels = load_digits(return_X_y=True)
    x = (images / 16.0).reshape(-1, 8, 8, 1).astype("float32")[:400]
    y = labels[:400]
    oracle = StrategyOracle("model_based", objective="val_accuracy", max_trials=3, seed=0)
    tuner = keras_tuner.Tuner(
        oracle=oracle, hypermodel=build, directory=str(tmp_path), project_name="digits", overwrite=True
    )
    tuner.search(x, y, validation_split=0.25, epochs=2, batch_size=64, verbose=0)
    trials = list(oracle.trials.values())
    assert len(trials) == 3 and all(t.status == "COMPLETED" for t in trials)
    assert all(0.0 <= t.score <= 1.0 for t in trials) and np.isfinite([t.score for t in trials]).all()
    assert "classes" not in oracle.driver.space.names
    assert oracle.strategy.pending == {}


def _hp_space(wide: bool = False) -> keras_tuner.HyperParameters:
    hp = keras_tuner.HyperParameters()
    hp.Int("units", 1, 8)
    if wide:
        hp.Int("depth", 1, 4)
    return hp
