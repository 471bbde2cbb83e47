"""REINFORCE with an autoregressive LSTM policy (Zoph & Le 2017, as in ENAS).

Reads top to bottom:

1. ``ask()``: draw one U[0, 1) number per decision from ``self.rng`` and let the
   policy turn them into level indices by inverse CDF (see :mod:`controller.policy`).
   Because the randomness is ``self.rng`` and the weights are in the state,
   ``get_state()`` pins down every future proposal.
2. ``tell()``: a result joins the batch (a failure is skipped, or scored
   ``failure_reward`` if configured). When ``batch_size`` results are in:
       baseline  <- decay * baseline + (1 - decay) * reward   (per result; starts at the first)
       advantage =  reward - baseline
       loss      =  -mean(advantage * sum_i log pi(a_i)) - entropy_weight * mean(entropy)
   then gradients are clipped by global norm and Adam takes a step.

Proposals may be told in any order, with several in flight: each proposal's sampled
indices are kept until its result arrives.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np

from controller.base import WAIT, Ask, Proposal, Result, Strategy
from controller.config import ReinforceConfig
from controller.policy import LstmPolicy
from search_spaces.spec import SearchSpace


class ReinforceController(Strategy):
    """Policy-gradient search over the discrete view of the space (``space.cardinalities``)."""

    name = "reinforce"

    def __init__(
        self, space: SearchSpace, seed: int | None = None, config: ReinforceConfig | None = None
    ) -> None:
        super().__init__(space, seed)
        self.config = config or ReinforceConfig()
        self.policy = LstmPolicy(space.cardinalities, self.config, seed)
        #: pending proposal id -> the level index sampled for each decision
        self.actions: dict[int, list[int]] = {}
        #: (actions, reward) of results not yet used by an update
        self.batch: list[tuple[list[int], float]] = []
        #: exponential moving average of rewards; None until the first one arrives
        self.baseline: float | None = None
        self.updates = 0
        #: what the last update measured, namespaced for a metrics sink (not part of the state)
        self.last_metrics: dict[str, float] = {}

    def ask(self) -> Ask:
        if len(self.pending) >= self.config.max_pending:
            return WAIT
        uniforms = [self.rng.random() for _ in self.space.decisions]
        actions = self.policy.sample(uniforms)
        proposal = self._propose(self.space.from_indices(actions))
        self.actions[proposal.id] = actions
        return proposal

    def tell(self, proposal_id: int, result: Result) -> None:
        self._settle(proposal_id)
        actions = self.actions.pop(proposal_id)
        reward = self.config.failure_reward if result.reward is None else result.reward
        if reward is None:
            return
        self.batch.append((actions, float(reward)))
        if len(self.batch) >= self.config.batch_size:
            self._update()

    def adopt(self, params: Mapping[str, Any]) -> Proposal:
        proposal = self._propose(dict(params))
        self.actions[proposal.id] = self.space.to_indices(proposal.params)
        return proposal

    def extend_space(self, space: SearchSpace, fill: Mapping[str, Any] | None = None) -> None:
        """New decisions get new heads (and the old last decision an embedding) from a fresh
        initialisation; everything learned so far is kept, and the actions in flight or in the
        batch are read as having taken each new decision's fill level."""
        old_count = len(self.space.decisions)
        values = self._grow(space, fill)
        extra = space.to_indices({**space.from_indices([0] * len(space.decisions)), **values})[old_count:]
        self.actions = {pid: actions + extra for pid, actions in self.actions.items()}
        self.batch = [(actions + extra, reward) for actions, reward in self.batch]
        learned, step = self.policy.arrays(), float(self.policy.adam_step.numpy())
        self.policy = LstmPolicy(space.cardinalities, self.config, self.rng.getrandbits(32))
        arrays = self.policy.arrays()
        for key, value in learned.items():
            arrays[key] = value  # same names, same shapes: the LSTM, the start, the old heads
        for key in set(arrays) - set(learned):
            if not key.startswith("weights/"):
                arrays[key] = np.zeros_like(arrays[key])  # Adam starts the new weights afresh
        self.policy.load_arrays(arrays)
        self.policy.adam_step.assign(step)

    def _update(self) -> None:
        decay = self.config.baseline_decay
        advantages = []
        for _, reward in self.batch:
            self.baseline = reward if self.baseline is None else decay * self.baseline + (1 - decay) * reward
            advantages.append(reward - self.baseline)
        metrics = self.policy.update([actions for actions, _ in self.batch], advantages)
        self.batch = []
        self.updates += 1
        self.last_metrics = {f"reinforce/{name}": value for name, value in metrics.items()}
        self.last_metrics["reinforce/baseline"] = self.baseline if self.baseline is not None else 0.0

    def policy_probabilities(self) -> list[list[float]]:
        """Per decision, the probability of each level along the greedy path (each step fed
        the most likely level of the step before); shows how settled the policy is."""
        return self.policy.greedy_probabilities()

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state.update(
            policy={key: _encode(value) for key, value in self.policy.arrays().items()},
            adam_step=float(self.policy.adam_step.numpy()),
            baseline=self.baseline,
            updates=self.updates,
            actions=[[proposal_id, actions] for proposal_id, actions in self.actions.items()],
            batch=[[actions, reward] for actions, reward in self.batch],
        )
        return state

    def set_state(self, state: Mapping[str, Any]) -> None:
        # the policy first: it refuses a state saved for another space or size, and
        # then nothing has been changed yet
        self.policy.load_arrays({key: _decode(value) for key, value in state["policy"].items()})
        super().set_state(state)
        self.policy.adam_step.assign(float(state["adam_step"]))
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        self.updates = int(state["updates"])
        self.actions = {int(proposal_id): list(actions) for proposal_id, actions in state["actions"]}
        self.batch = [(list(actions), float(reward)) for actions, reward in state["batch"]]


def _encode(array: np.ndarray) -> dict[str, Any]:
    """A float32 array as JSON: dtype, shape and the base64 of its raw little-endian bytes."""
    array = np.ascontiguousarray(array, dtype="<f4")
    return {
        "dtype": "float32",
        "shape": list(array.shape),
        "data": base64.b64encode(array.tobytes()).decode(),
    }


def _decode(data: Mapping[str, Any]) -> np.ndarray:
    if data.get("dtype") != "float32":
        raise ValueError(f"saved policy arrays must be float32, got {data.get('dtype')!r}")
    flat = np.frombuffer(base64.b64decode(data["data"]), dtype="<f4")
    return flat.reshape([int(d) for d in data["shape"]]).astype(np.float32)
