"""Any registered strategy as a Ray Tune ``Searcher``.

    from ray import tune
    from l2l.integrations.ray_tune import StrategySearcher

    tuner = tune.Tuner(
        train,
        param_space={"lr": tune.loguniform(1e-4, 1e-1), "layers": tune.randint(1, 4)},
        tune_config=tune.TuneConfig(
            search_alg=StrategySearcher("model_based", seed=0), metric="score", mode="max", num_samples=30
        ),
    )

What a caller may rely on:

* The space comes from Tune's ``param_space`` (converted by :mod:`l2l.integrations.tune_space`)
  or is one of ours, given first (``StrategySearcher("nb201_cell", strategy="evolution")``).
  With a space of ours, ``param_space`` may hold constants only.
* ``metric`` and ``mode`` come from the constructor or from ``TuneConfig`` (through
  ``set_search_properties``, which Tune calls when a ``param_space`` is given). Without
  them ``suggest`` raises, naming what to pass: a searcher that does not know what to
  optimise would silently search at random. One metric only: our strategies maximise one
  number, so a list of metrics is refused (combine them in the trainable).
* The metric may be any real number type (``np.float32`` included). A trial that errors,
  lacks the metric or reports NaN or infinity is a failed proposal, never a reward of 0.
* ``points_to_evaluate`` are run first (a partial point gets the rest drawn at random);
  ``evaluated_rewards`` / :meth:`add_evaluated_point` teach the strategy results from
  elsewhere. No configuration is suggested twice and ``suggest`` says FINISHED when a
  finite space is exhausted (:mod:`l2l.integrations.search_driver`).
* ``save`` / ``restore`` (used by Tune's experiment checkpoints) keep everything, the
  strategy included, so a restored searcher suggests what the original would have.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

from ray.tune.search import Searcher

from controller import FINISHED, Proposal
from l2l.integrations.search_driver import SearchDriver, space_and_strategy
from l2l.integrations.tune_space import TuneSpace, has_domains, space_from_config
from search_spaces.spec import Params, SearchSpace


class StrategySearcher(Searcher):  # type: ignore[misc]
    """A Ray Tune searcher whose suggestions come from one of our strategies (see the module)."""

    def __init__(
        self,
        space: SearchSpace | str | Mapping[str, Any] | None = None,
        strategy: str | None = None,
        options: Mapping[str, Any] | None = None,
        seed: int | None = None,
        metric: str | None = None,
        mode: str | None = None,
        points_to_evaluate: Sequence[Mapping[str, Any]] | None = None,
        evaluated_rewards: Sequence[float] | None = None,
    ) -> None:
        _check_single_objective(metric, mode)
        super().__init__(metric=metric, mode=mode)
        our_space, self.strategy_name = space_and_strategy(space, strategy)
        self.options = dict(options or {})
        self.seed = seed
        self.tune_space: TuneSpace | None = None
        self.driver: SearchDriver | None = None
        self._points: list[dict[str, Any]] = [dict(point) for point in points_to_evaluate or []]
        self._evaluated_rewards = list(evaluated_rewards) if evaluated_rewards is not None else None
        if self._evaluated_rewards is not None and len(self._evaluated_rewards) != len(self._points):
            raise ValueError("evaluated_rewards must have one reward per point in points_to_evaluate")
        self._proposals: dict[str, int] = {}  # Tune trial id -> proposal id
        if our_space is not None:
            self._set_space(TuneSpace(our_space))

    @property
    def strategy(self) -> Any:
        """The strategy (None until the space is known)."""
        return None if self.driver is None else self.driver.strategy

    @property
    def space(self) -> SearchSpace | None:
        return None if self.tune_space is None else self.tune_space.space

    # ---- Tune's hooks ----------------------------------------------------------------------

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any
    ) -> bool:
        # The same space again (a restored experiment) is fine; another one is Tune's error
        # "the search algorithm was already instantiated with a search space".
        given_twice = self.tune_space is not None and has_domains(config)
        if given_twice and space_from_config(config) != self.tune_space:
            return False
        if self.tune_space is None:
            converted = space_from_config(config)
            if converted is not None:
                self._set_space(converted)
        _check_single_objective(metric or self._metric, mode or self._mode)
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        driver = self._ready()
        if self._points:
            proposal = driver.adopt(self._complete(self._points.pop(0)))
        else:
            answer = driver.ask()
            if answer is FINISHED:
                return Searcher.FINISHED
            if not isinstance(answer, Proposal):
                return None  # WAIT: Tune asks again later
            proposal = answer
        self._proposals[trial_id] = proposal.id
        assert self.tune_space is not None
        return self.tune_space.to_config(proposal.params)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        proposal_id = self._proposals.pop(trial_id, None)
        if proposal_id is None or self.driver is None:
            return
        reward = None if error or result is None else self._reward(result.get(self._metric))
        self.driver.tell(proposal_id, reward)

    def add_evaluated_point(
        self,
        parameters: dict[str, Any],
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """Teach the strategy a result from elsewhere; an errored or pruned trial is a failure."""
        driver = self._ready()
        assert self.tune_space is not None
        params = self.tune_space.from_config(parameters)
        driver.observe(params, None if error or pruned else self._reward(value))

    def get_state(self) -> dict[str, Any]:
        return {
            "metric": self._metric,
            "mode": self._mode,
            "strategy": self.strategy_name,
            "options": self.options,
            "seed": self.seed,
            "tune_space": self.tune_space,
            "driver": None if self.driver is None else self.driver.get_state(),
            "points": list(self._points),
            "evaluated_rewards": self._evaluated_rewards,
            "proposals": dict(self._proposals),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._metric, self._mode = state["metric"], state["mode"]
        self.strategy_name, self.options, self.seed = state["strategy"], dict(state["options"]), state["seed"]
        self.tune_space = state["tune_space"]
        self.driver = None
        if state["driver"] is not None:
            self.driver = SearchDriver(
                self.strategy_name, SearchSpace.from_dict(state["driver"]["space"]), self.seed, self.options
            )
            self.driver.set_state(state["driver"])
        self._points = list(state["points"])
        self._evaluated_rewards = state["evaluated_rewards"]
        self._proposals = dict(state["proposals"])

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles the searcher with the experiment; the strategy travels as its own state
        # (JSON-able), not as live objects (TensorFlow variables for reinforce).
        fields = {key: value for key, value in self.__dict__.items() if key != "driver"}
        return {"fields": fields, "driver": None if self.driver is None else self.driver.get_state()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state["fields"])
        self.driver = None
        if state["driver"] is not None:
            space = SearchSpace.from_dict(state["driver"]["space"])
            self.driver = SearchDriver(self.strategy_name, space, self.seed, self.options)
            self.driver.set_state(state["driver"])

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.get_state(), handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.set_state(pickle.load(handle))

    # ---- helpers ---------------------------------------------------------------------------

    def _set_space(self, tune_space: TuneSpace) -> None:
        self.tune_space = tune_space
        self.driver = SearchDriver(self.strategy_name, tune_space.space, self.seed, self.options)
        # Points with known rewards are taught at once; the others run first.
        if self._evaluated_rewards is not None:
            points, rewards = self._points, self._evaluated_rewards
            self._points, self._evaluated_rewards = [], None
            for point, reward in zip(points, rewards, strict=True):
                self.driver.observe(self._complete(point), self._reward(reward))
        for point in self._points:
            tune_space.from_config(point, partial=True)  # refuse a bad point now, not mid-run

    def _ready(self) -> SearchDriver:
        if self.driver is None:
            raise RuntimeError(
                "StrategySearcher has no search space: give one of ours as its first argument "
                "(StrategySearcher(space, strategy=...)), or tune.uniform/choice/... in Tuner's param_space"
            )
        if not self._metric or not self._mode:
            raise RuntimeError(
                "StrategySearcher does not know what to optimise: pass metric= and mode= to it, "
                "or to tune.TuneConfig together with a param_space (Tune tells a searcher "
                f"TuneConfig's metric only then); metric={self._metric!r}, mode={self._mode!r}"
            )
        return self.driver

    def _complete(self, point: Mapping[str, Any]) -> Params:
        """A point's values, the decisions it leaves out drawn at random."""
        assert self.tune_space is not None and self.driver is not None
        given = self.tune_space.from_config(point, partial=True)
        return {**self.tune_space.space.sample(self.driver.rng), **given}

    def _reward(self, value: Any) -> float | None:
        """The metric as the strategy's reward (higher is better); None if it is not a finite number."""
        if value is None or isinstance(value, (bool, str, bytes)):
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(number):
            return None
        return -number if self._mode == "min" else number


def _check_single_objective(metric: Any, mode: Any) -> None:
    if isinstance(metric, (list, tuple)) or isinstance(mode, (list, tuple)):
        raise ValueError(
            f"StrategySearcher optimises one metric, got metric={metric!r}, mode={mode!r}: "
            "report one number (e.g. a weighted sum) from the trainable and search on it"
        )


__all__ = ["StrategySearcher"]
