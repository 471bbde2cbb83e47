"""KerasTuner's ``BayesianOptimizationOracle`` as a strategy (``keras_tuner_bo``, benchmark only).

The oracle sees our space through :func:`search_spaces.keras_tuner_space.to_hyperparameters`
and is driven as a KerasTuner tuner drives it: ``create_trial`` to ask (one tuner id per
proposal, so several may be in flight), ``update_trial`` + ``end_trial`` to tell. It
writes no files (its ``save`` is switched off) and prints nothing.

It is not in the default registry: each proposal after the random start fits a Gaussian
process with 20 optimiser restarts and 50 acquisition restarts, about a second per
proposal on a small machine, too slow for the strategy contract suite. The NAS-Bench-201
benchmark registers it for its own runs with :func:`controller.extra_strategy`.

State: the event log (every ask and tell, in order). ``set_state`` rebuilds the oracle
with the same seed and replays the log, so a restored strategy proposes exactly what
the original would; the cost is one Gaussian-process fit per replayed proposal.
"""

from __future__ import annotations

from typing import Any

from controller.base import FINISHED, WAIT, Ask, Result, Strategy
from controller.config import KerasTunerBOConfig
from search_spaces.spec import SearchSpace

#: The objective name the oracle maximises.
OBJECTIVE = "reward"


class KerasTunerBO(Strategy):
    name = "keras_tuner_bo"

    def __init__(
        self, space: SearchSpace, seed: int | None = None, config: KerasTunerBOConfig | None = None
    ) -> None:
        super().__init__(space, seed)
        self.config = config or KerasTunerBOConfig()
        # KerasTuner treats seed 0 as "no seed"; every seed maps to a distinct positive one.
        self._oracle_seed = (seed if seed is not None else self.rng.randrange(2**30)) + 1
        self._oracle = self._new_oracle()
        self._trials: dict[int, Any] = {}
        #: ["ask", proposal_id] or ["tell", proposal_id, reward or None], in order.
        self._events: list[list[Any]] = []

    def ask(self) -> Ask:
        answer = self._ask_oracle()
        if answer is FINISHED or answer is WAIT:
            return answer
        assert isinstance(answer, dict)
        proposal = self._propose(answer)
        self._events.append(["ask", proposal.id])
        return proposal

    def tell(self, proposal_id: int, result: Result) -> None:
        self._settle(proposal_id)
        self._tell_oracle(proposal_id, result.reward)
        self._events.append(["tell", proposal_id, result.reward])

    def adopt(self, params: Any) -> Any:
        raise NotImplementedError("keras_tuner_bo cannot evaluate a configuration it did not propose")

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "events": [list(event) for event in self._events]}

    def set_state(self, state: dict[str, Any]) -> None:
        self._oracle, self._trials = self._new_oracle(), {}
        next_id = 0
        for event in state.get("events", []):
            if event[0] == "ask":
                # Re-asking the fresh oracle gives the same values: same seed, same history.
                self.next_id = next_id = int(event[1])
                self._ask_oracle(next_id)
                next_id += 1
            else:
                self._tell_oracle(int(event[1]), event[2])
        super().set_state(state)
        self._events = [list(event) for event in state.get("events", [])]

    def _ask_oracle(self, proposal_id: int | None = None) -> Any:
        proposal_id = self.next_id if proposal_id is None else proposal_id
        trial = self._oracle.create_trial(f"proposal-{proposal_id}")
        if trial.status == "STOPPED":
            return FINISHED
        if trial.status != "RUNNING":
            return WAIT
        self._trials[proposal_id] = trial
        values = trial.hyperparameters.values
        return {name: values[name] for name in self.space.names}

    def _tell_oracle(self, proposal_id: int, reward: float | None) -> None:
        trial = self._trials.pop(proposal_id)
        if reward is None:
            trial.status = "FAILED"
        else:
            self._oracle.update_trial(trial.trial_id, {OBJECTIVE: reward})
            trial.status = "COMPLETED"
        self._oracle.end_trial(trial)

    def _new_oracle(self) -> Any:
        import keras_tuner
        from keras_tuner.oracles import BayesianOptimizationOracle

        from search_spaces.keras_tuner_space import to_hyperparameters

        class _Quiet(BayesianOptimizationOracle):  # type: ignore[misc]
            def save(self) -> None:
                pass  # the job loop keeps the state; no project directory

            def _save_trial(self, trial: Any) -> None:
                pass

        oracle = _Quiet(
            objective=keras_tuner.Objective(OBJECTIVE, "max"),
            max_trials=None,
            num_initial_points=self.config.num_initial_points,
            alpha=self.config.alpha,
            beta=self.config.beta,
            seed=self._oracle_seed,
            hyperparameters=to_hyperparameters(self.space),
            max_consecutive_failed_trials=2**31,
        )
        oracle.verbose = 0
        return oracle
