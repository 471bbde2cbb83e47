"""Any registered strategy (REINFORCE by default) as a KerasTuner ``Oracle``.

    import keras_tuner
    from l2l.integrations.keras_tuner_oracle import StrategyOracle

    oracle = StrategyOracle("nb201_cell", objective=keras_tuner.Objective("val_accuracy", "max"),
                            max_trials=30, seed=0)
    tuner = MyTuner(oracle=oracle, ...)   # or keras_tuner.Tuner(oracle=oracle, hypermodel=build)
    tuner.search(x, y, validation_data=(x_val, y_val))

``populate_space`` asks the strategy (WAIT is KerasTuner's "IDLE", FINISHED its
"STOPPED"); ``end_trial`` tells it the trial's score (negated when the objective is
minimised). A trial that KerasTuner marks failed or invalid is a failed proposal. The
space is ours (``space``); KerasTuner sees it through ``to_hyperparameters``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import keras_tuner

from controller import Proposal, Result, create_strategy
from controller.base import FINISHED
from search_spaces import SearchSpace, get_space
from search_spaces.keras_tuner_space import to_hyperparameters


class StrategyOracle(keras_tuner.Oracle):  # type: ignore[misc]
    def __init__(
        self,
        space: SearchSpace | str | Mapping[str, Any],
        strategy: str = "reinforce",
        options: Mapping[str, Any] | None = None,
        seed: int | None = None,
        **oracle_kwargs: Any,
    ) -> None:
        self.space = space if isinstance(space, SearchSpace) else get_space(space)
        # KerasTuner may only use the values we propose: no new entries, none tuned behind our back.
        oracle_kwargs.setdefault("tune_new_entries", False)
        oracle_kwargs.setdefault("allow_new_entries", False)
        super().__init__(hyperparameters=to_hyperparameters(self.space), seed=seed, **oracle_kwargs)
        self.strategy = create_strategy(strategy, self.space, seed, options)
        self._proposals: dict[str, int] = {}  # KerasTuner trial id -> proposal id

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        answer = self.strategy.ask()
        if answer is FINISHED:
            return {"status": keras_tuner.engine.trial.TrialStatus.STOPPED, "values": None}
        if not isinstance(answer, Proposal):
            return {"status": keras_tuner.engine.trial.TrialStatus.IDLE, "values": None}
        self._proposals[trial_id] = answer.id
        return {"status": keras_tuner.engine.trial.TrialStatus.RUNNING, "values": dict(answer.params)}

    def end_trial(self, trial: Any) -> None:
        super().end_trial(trial)
        ended = self.trials[trial.trial_id]
        if ended.status not in ("COMPLETED", "FAILED"):
            return  # INVALID with retries left: KerasTuner runs it again
        proposal_id = self._proposals.pop(trial.trial_id, None)
        if proposal_id is None:
            return
        score = ended.score if ended.status == "COMPLETED" else None
        reward = None
        if score is not None and math.isfinite(score):
            reward = -float(score) if self.objective.direction == "min" else float(score)
        self.strategy.tell(proposal_id, Result(reward))
