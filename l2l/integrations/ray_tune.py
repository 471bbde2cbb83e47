"""Any registered strategy (REINFORCE by default) as a Ray Tune ``Searcher``.

    from ray import tune
    from l2l.integrations.ray_tune import StrategySearcher

    searcher = StrategySearcher("nb201_cell", strategy="reinforce", metric="score", mode="max", seed=0)
    tune.Tuner(train, tune_config=tune.TuneConfig(search_alg=searcher, num_samples=50)).fit()

``suggest`` asks the strategy (WAIT becomes ``None``: Tune asks again later; FINISHED
ends the search); ``on_trial_complete`` tells it the trial's ``metric`` (negated for
``mode="min"``, so the strategy always maximises). An errored trial, or one without a
finite metric, is a failed proposal, never a reward of 0.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping
from typing import Any

from ray.tune.search import Searcher

from controller import Proposal, Result, Strategy, create_strategy
from controller.base import FINISHED
from search_spaces import SearchSpace, get_space


class StrategySearcher(Searcher):  # type: ignore[misc]
    def __init__(
        self,
        space: SearchSpace | str | Mapping[str, Any],
        strategy: str = "reinforce",
        options: Mapping[str, Any] | None = None,
        seed: int | None = None,
        metric: str | None = None,
        mode: str | None = None,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.space = space if isinstance(space, SearchSpace) else get_space(space)
        self.strategy_name = strategy
        self.options = dict(options or {})
        self.seed = seed
        self.strategy: Strategy = create_strategy(strategy, self.space, seed, self.options)
        self._proposals: dict[str, int] = {}  # Tune trial id -> proposal id

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        answer = self.strategy.ask()
        if answer is FINISHED:
            return Searcher.FINISHED
        if not isinstance(answer, Proposal):
            return None  # WAIT
        self._proposals[trial_id] = answer.id
        return dict(answer.params)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        proposal_id = self._proposals.pop(trial_id, None)
        if proposal_id is None:
            return
        reward = None
        if not error and result is not None and self.metric is not None:
            value = result.get(self.metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                reward = float(value) if self.mode != "min" else -float(value)
        self.strategy.tell(proposal_id, Result(reward))

    def get_state(self) -> dict[str, Any]:
        return {"strategy": self.strategy.get_state(), "proposals": dict(self._proposals)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.strategy = create_strategy(self.strategy_name, self.space, self.seed, self.options)
        self.strategy.set_state(state["strategy"])
        self._proposals = dict(state["proposals"])

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.get_state(), handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.set_state(pickle.load(handle))
