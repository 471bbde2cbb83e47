"""Ray Tune's searcher contract, for every registered strategy behind ``StrategySearcher``.

What Ray Tune's own searcher suites expect, checked in our words: metric and mode from
``TuneConfig`` (through ``set_search_properties``), metrics of numpy types, invalid and
missing values, ``points_to_evaluate`` and ``add_evaluated_point``, save and restore in
the middle of a run, ``ConcurrencyLimiter`` and ``Repeater``, Tune's distributions in
``param_space``, and one metric only. Most tests drive the searcher as Tune does, call
by call; the Tuner runs use one small Ray instance for the module.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import start_local_ray
from ray import tune
from ray.tune.search import ConcurrencyLimiter, Repeater, Searcher

from controller import strategy_names
from l2l.integrations.ray_tune import StrategySearcher
from search_spaces.spec import Choice, FloatRange, IntRange, SearchSpace

STRATEGIES = strategy_names()

PARAM_SPACE = {
    "lr": tune.loguniform(1e-4, 1e-1),
    "net": {"layers": tune.randint(1, 4), "width": tune.qrandint(16, 64, 16)},
    "act": tune.choice(["relu", "tanh"]),
    "epochs": 2,  # a constant: Tune merges it into every trial
}


def objective(config: dict[str, Any]) -> float:
    return config["net"]["layers"] + config["net"]["width"] / 16 + (config["act"] == "tanh") - config["lr"]


def searcher_for(strategy: str, **kwargs: Any) -> StrategySearcher:
    options = {"learning_rate": 0.01} if strategy == "reinforce" else None
    return StrategySearcher(strategy, options=options, seed=5, **kwargs)


def with_tune_config(searcher: Searcher, metric: str = "score", mode: str = "max") -> Searcher:
    """As Tune does with TuneConfig(metric, mode) and a param_space."""
    assert searcher.set_search_properties(metric, mode, dict(PARAM_SPACE))
    return searcher


def told(searcher: StrategySearcher) -> list[float | None]:
    """The rewards the strategy was told, in the order results came."""
    assert searcher.driver is not None
    return [reward for _, status, reward in searcher.driver.tried.values() if status == "done"]


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    import ray

    start_local_ray()
    yield
    ray.shutdown()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_metric_and_mode_in_tune_config_reach_the_strategy(
    strategy: str, ray_instance: None, tmp_path: Path
) -> None:
    def trainable(config: dict[str, Any]) -> dict[str, float]:
        net = config["net"]
        return {"loss": -(net["layers"] + net["width"] / 16 + (config["act"] == "tanh") - config["lr"])}

    searcher = searcher_for(strategy)
    results = tune.Tuner(
        trainable,
        param_space=PARAM_SPACE,
        tune_config=tune.TuneConfig(search_alg=searcher, metric="loss", mode="min", num_samples=5),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="contract", verbose=0),
    ).fit()
    assert len(results) == 5 and not results.errors
    assert searcher.metric == "loss" and searcher.mode == "min"
    losses = sorted(r.metrics["loss"] for r in results)
    # every result reached the strategy as a reward, negated because the loss is minimised
    assert sorted(-reward for reward in told(searcher)) == pytest.approx(losses)
    for result in results:
        config = result.config
        assert (
            config["epochs"] == 2 and 1 <= config["net"]["layers"] <= 3 and config["net"]["width"] % 16 == 0
        )
    assert searcher.strategy.pending == {}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_numpy_metric_values_are_rewards(strategy: str) -> None:
    searcher = with_tune_config(searcher_for(strategy))
    values = [np.float32(1.5), np.float64(2.5), np.int64(3), np.array(4.5), 5]
    for i, value in enumerate(values):
        assert isinstance(searcher.suggest(f"t{i}"), dict)
        searcher.on_trial_complete(f"t{i}", {"score": value})
    assert told(searcher) == [1.5, 2.5, 3.0, 4.5, 5.0]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_invalid_or_missing_values_are_failures_not_zeros(strategy: str) -> None:
    searcher = with_tune_config(searcher_for(strategy), mode="min")
    results: list[tuple[dict[str, Any] | None, bool]] = [
        ({"score": float("nan")}, False),
        ({"score": np.float32("inf")}, False),
        ({"other": 1.0}, False),
        ({"score": "high"}, False),
        (None, False),
        ({"score": 1.0}, True),  # errored: whatever it reported does not count
        ({"score": 2.0}, False),
    ]
    for i, (result, error) in enumerate(results):
        searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", result, error=error)
    assert told(searcher) == [None] * 6 + [-2.0]
    assert searcher.strategy.pending == {}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_points_to_evaluate_run_first_and_partial_points_are_filled(strategy: str) -> None:
    points = [{"lr": 0.01, "net": {"layers": 2, "width": 32}, "act": "tanh"}, {"act": "relu"}]
    searcher = with_tune_config(searcher_for(strategy, points_to_evaluate=points))
    first, second = searcher.suggest("a"), searcher.suggest("b")
    assert first == points[0]
    assert second["act"] == "relu" and 1 <= second["net"]["layers"] <= 3
    assert 1e-4 <= second["lr"] <= 1e-1
    searcher.on_trial_complete("a", {"score": objective(first)})
    searcher.on_trial_complete("b", {"score": objective(second)})
    assert told(searcher) == [objective(first), objective(second)]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_evaluated_points_teach_the_strategy(strategy: str) -> None:
    searcher = with_tune_config(searcher_for(strategy))
    point = {"lr": 0.001, "net": {"layers": 3, "width": 64}, "act": "tanh"}
    searcher.add_evaluated_point(point, np.float32(7.0))
    searcher.add_evaluated_point({**point, "act": "relu"}, 1.0, error=True)
    assert told(searcher) == [7.0, None]
    assert searcher.strategy.pending == {}
    with pytest.raises(ValueError, match="layers"):
        searcher.add_evaluated_point({**point, "net": {"layers": 9, "width": 64}}, 1.0)
    # a configuration already evaluated is not suggested again
    for i in range(6):
        config = searcher.suggest(f"t{i}")
        assert config != point
        searcher.on_trial_complete(f"t{i}", {"score": objective(config)})


def test_rewards_given_with_the_points_are_taught_before_the_first_suggestion() -> None:
    points = [{"lr": 0.01, "net": {"layers": 1, "width": 16}, "act": "relu"}]
    searcher = with_tune_config(
        searcher_for("model_based", points_to_evaluate=points, evaluated_rewards=[3.0])
    )
    assert told(searcher) == [3.0]
    assert searcher.suggest("t0") != points[0]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_save_and_restore_in_the_middle_of_a_run(strategy: str, tmp_path: Path) -> None:
    original = with_tune_config(searcher_for(strategy))
    configs = {f"t{i}": original.suggest(f"t{i}") for i in range(3)}
    for trial_id in ("t0", "t1"):
        original.on_trial_complete(trial_id, {"score": objective(configs[trial_id])})
    checkpoint = tmp_path / "searcher.pkl"
    original.save(str(checkpoint))

    restored = searcher_for(strategy)  # as Tune restores: a fresh searcher, then restore
    restored.restore(str(checkpoint))
    assert restored.metric == "score" and restored.mode == "max"
    for searcher in (original, restored):  # the trial in flight at the checkpoint ends after it
        searcher.on_trial_complete("t2", {"score": objective(configs["t2"])})
    for i in range(3, 7):
        suggestion = original.suggest(f"t{i}")
        assert restored.suggest(f"t{i}") == suggestion
        for searcher in (original, restored):
            searcher.on_trial_complete(f"t{i}", {"score": objective(suggestion)})
    assert told(restored) == told(original) and len(told(restored)) == 7


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_concurrency_limiter_holds_suggestions_back(strategy: str) -> None:
    limited = ConcurrencyLimiter(searcher_for(strategy), max_concurrent=2)
    assert limited.set_search_properties("score", "max", dict(PARAM_SPACE))
    first, second = limited.suggest("a"), limited.suggest("b")
    assert isinstance(first, dict) and isinstance(second, dict)
    assert limited.suggest("c") is None  # two running: wait
    limited.on_trial_complete("a", {"score": objective(first)})
    assert isinstance(limited.suggest("c"), dict)
    assert told(limited.searcher) == [objective(first)]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_repeater_tells_the_mean_of_the_repeats(strategy: str) -> None:
    repeated = Repeater(searcher_for(strategy), repeat=3)
    assert repeated.set_search_properties("score", "max", dict(PARAM_SPACE))
    configs = [repeated.suggest(f"t{i}") for i in range(3)]
    assert [config.pop("__trial_index__") for config in configs] == [0, 1, 2]
    assert configs[0] == configs[1] == configs[2]  # one configuration, three runs
    for i, score in enumerate([1.0, 2.0, np.float32(6.0)]):
        repeated.on_trial_complete(f"t{i}", {"score": score})
    assert told(repeated.searcher) == [pytest.approx(3.0)]


def test_tune_distributions_become_our_decisions() -> None:
    choices = [[1, 2], {"a": 1}, None]
    searcher = StrategySearcher("random", seed=0, metric="m", mode="max")
    space = {
        "u": tune.uniform(-1.0, 1.0),
        "q": tune.quniform(0.0, 1.0, 0.25),
        "log": tune.loguniform(1e-3, 1.0),
        "r": tune.randint(0, 3),
        "qr": tune.qrandint(10, 30, 10),
        "lr": tune.lograndint(1, 100),
        "c": tune.choice(choices),
        "nested": {"x": tune.choice([True, False])},
    }
    assert searcher.set_search_properties(None, None, space)
    decisions = {d.name: d for d in searcher.space.decisions}
    assert decisions["u"] == FloatRange("u", -1.0, 1.0)
    assert decisions["q"] == Choice("q", (0.0, 0.25, 0.5, 0.75, 1.0))
    assert decisions["log"] == FloatRange("log", 1e-3, 1.0, log=True)
    assert decisions["r"] == IntRange("r", 0, 2)  # Tune's randint excludes its upper bound
    assert decisions["qr"] == IntRange("qr", 10, 30, step=10)  # qrandint includes it
    assert decisions["lr"] == IntRange("lr", 1, 99, log=True)
    assert decisions["nested/x"] == Choice("nested/x", (True, False))
    seen_choices = []
    for i in range(40):
        config = searcher.suggest(f"t{i}")
        assert -1 <= config["u"] <= 1 and config["q"] in (0.0, 0.25, 0.5, 0.75, 1.0)
        assert config["r"] in (0, 1, 2) and config["qr"] in (10, 20, 30) and 1 <= config["lr"] <= 99
        assert isinstance(config["nested"]["x"], bool)
        seen_choices.append(config["c"])
        searcher.on_trial_complete(f"t{i}", {"m": 1.0})
    assert all(c in choices for c in seen_choices) and [1, 2] in seen_choices


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"g": tune.grid_search([1, 2])}, "grid_search"),
        ({"n": tune.randn(0.0, 1.0)}, "no counterpart"),
        ({"q": tune.quniform(0.0, 1.0, 1e-6)}, "too fine"),
    ],
)
def test_distributions_we_cannot_search_are_refused_clearly(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StrategySearcher("random").set_search_properties("m", "max", bad)


def test_a_space_given_twice_is_left_to_tune_to_refuse() -> None:
    ours = SearchSpace("s", (Choice("a", (1, 2)),), "x:y")
    searcher = StrategySearcher(ours, strategy="random")
    assert not searcher.set_search_properties("m", "max", {"a": tune.choice([1, 2])})
    # constants only: accepted, and TuneConfig's metric and mode are taken
    assert searcher.set_search_properties("m", "min", {"epochs": 3})
    assert (searcher.metric, searcher.mode) == ("m", "min")


def test_without_a_metric_the_searcher_says_what_to_pass() -> None:
    ours = SearchSpace("s", (Choice("a", (1, 2)),), "x:y")
    with pytest.raises(RuntimeError, match="metric= and mode="):
        StrategySearcher(ours, strategy="random").suggest("t0")
    with pytest.raises(RuntimeError, match="no search space"):
        StrategySearcher("random", metric="m", mode="max").suggest("t0")


def test_one_metric_only() -> None:
    with pytest.raises(ValueError, match="one metric"):
        StrategySearcher("random", metric=["a", "b"], mode=["max", "min"])
    with pytest.raises(ValueError, match="one metric"):
        StrategySearcher("random").set_search_properties(["a", "b"], ["max", "min"], dict(PARAM_SPACE))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_an_exhausted_space_finishes_the_search(strategy: str) -> None:
    searcher = searcher_for(strategy)
    assert searcher.set_search_properties("m", "max", {"a": tune.choice([1, 2]), "b": tune.choice(["x"])})
    configs = []
    while True:
        config = searcher.suggest(f"t{len(configs)}")
        if config == Searcher.FINISHED:
            break
        assert isinstance(config, dict)
        configs.append(config)
        searcher.on_trial_complete(f"t{len(configs) - 1}", {"m": float(config["a"])})
    assert sorted(c["a"] for c in configs) == [1, 2]
    assert not math.isnan(sum(r for r in told(searcher) if r is not None))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_pickled_searcher_carries_its_strategy(strategy: str) -> None:
    import pickle

    original = with_tune_config(searcher_for(strategy))
    first = original.suggest("t0")
    original.on_trial_complete("t0", {"score": objective(first)})
    copy = pickle.loads(pickle.dumps(original))  # as Tune keeps the searcher with the experiment
    assert copy.metric == "score" and told(copy) == told(original)
    assert copy.suggest("t1") == original.suggest("t1")
    # a restored experiment passes the same param_space again: accepted
    assert copy.set_search_properties("score", "max", dict(PARAM_SPACE))
