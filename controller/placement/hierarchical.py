"""The hierarchical planner: a grouper and a placer trained together with REINFORCE.

How a search goes:

1. The first proposals are the space's cheap hints (one device, an expert split, METIS):
   placements anyone would try first. Their rewards come back through ``tell`` like any other.
2. If ``start_from_baseline``, the policy is fitted by maximum likelihood to the best hint,
   so sampling starts around it (a placement decomposed into groups: each device's ops in
   topological order cut into contiguous runs, one group each).
3. Then REINFORCE: batches of ``batch_size`` placements sampled from the policy, advantage =
   the reward minus the batch mean, over the batch's standard deviation; a failed result
   (None) counts as the batch's worst.
4. With ``polish_after``, once that many proposals have been made, the policy stops and the
   best placement seen (hint or sample) is polished by local search (simulated annealing
   over the moves of :mod:`controller.placement.moves`): learning finds the region, local
   search the last few percent, and both spend proposals from the same budget.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from controller.base import WAIT, Ask, Result, Strategy
from controller.placement.config import HierarchicalConfig
from controller.placement.moves import Neighbourhood, accept
from controller.placement.policy import PlacementPolicy


class HierarchicalPlanner(Strategy):
    name = "hierarchical"

    def __init__(self, space: Any, seed: int | None = None, config: HierarchicalConfig | None = None) -> None:
        super().__init__(space, seed)
        self.config = config = config or HierarchicalConfig()
        if config.groups < 1 or config.batch_size < 2:
            raise ValueError("groups must be >= 1 and batch_size >= 2")
        self.allowed = np.asarray(space.allowed, np.int64)
        self.policy = PlacementPolicy(
            space.features.shape[1],
            config.groups,
            len(self.allowed),
            config.hidden_size,
            config.message_passing,
            seed or 0,
            xla=config.xla,
        )
        graph = space.graph
        self._graph_inputs = self.policy.graph_inputs(
            space.features, [op.inputs for op in graph.ops], np.array([op.flops for op in graph.ops])
        )
        hints = space.hints() if config.try_hints or config.start_from_baseline else []
        self._hints: list[np.ndarray] = [np.asarray(p, np.int64) for p in hints]
        self._hint_rewards: dict[int, float | None] = {}
        self._hint_index: dict[int, int] = {}
        self._hints_given = 0
        self._imitated = not config.start_from_baseline
        self._queue: list[tuple[np.ndarray, np.ndarray]] = []
        self._batch: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._rewards: dict[int, float | None] = {}
        self.updates = 0
        # the best placement proposed so far and its reward, whoever proposed it
        self._best: tuple[float, list[int]] | None = None
        self._neighbours = Neighbourhood(graph.layer_of_ops(), self.allowed)
        self._polish: dict[str, Any] | None = None  # current, its step time, temperature
        self._polish_round: dict[int, list[int]] = {}
        self._polish_rewards: dict[int, float | None] = {}

    # ------------------------------------------------------------------ protocol

    def ask(self) -> Ask:
        if self._hints_given < len(self._hints):
            proposal = self._propose({"devices": self._hints[self._hints_given].tolist()})
            self._hint_rewards[proposal.id] = None
            self._hint_index[proposal.id] = self._hints_given
            self._hints_given += 1
            return proposal
        if self._pending_hints():
            return WAIT  # the start needs every hint's reward
        if not self._imitated:
            self._imitate_best_hint()
        if self._polishing():
            return self._ask_polish()
        if not self._queue:
            if self._batch:
                return WAIT  # the batch must be told before the policy moves on
            seed = (self.rng.randrange(2**31), self.rng.randrange(2**31))
            groups, devices = self.policy.sample(self._graph_inputs, self.config.batch_size, seed)
            self._queue = list(zip(groups, devices, strict=True))
        groups, devices = self._queue.pop(0)
        placement = self.allowed[devices[groups]]
        proposal = self._propose({"devices": placement.tolist()})
        self._batch[proposal.id] = (groups, devices)
        return proposal

    def tell(self, proposal_id: int, result: Result) -> None:
        devices = self.pending.get(proposal_id, {}).get("devices")
        self._settle(proposal_id)
        finite = result.reward is not None and np.isfinite(result.reward) and devices is not None
        if finite and (self._best is None or result.reward > self._best[0]):
            self._best = (float(result.reward), list(devices))
        if proposal_id in self._polish_round:
            self._polish_rewards[proposal_id] = result.reward
            if len(self._polish_rewards) == len(self._polish_round):
                self._finish_polish_round()
            return
        if proposal_id in self._hint_rewards:
            self._hint_rewards[proposal_id] = result.reward if result.reward is not None else -np.inf
            return
        if proposal_id in self._batch:
            self._rewards[proposal_id] = result.reward
            if len(self._rewards) == len(self._batch) and not self._queue:
                self._learn()

    # ------------------------------------------------------------------ local search

    def _polishing(self) -> bool:
        limit = self.config.polish_after
        if limit <= 0 or self._best is None or self._batch:
            return False  # a policy batch in flight finishes first
        return self._polish is not None or self.next_id >= limit

    def _ask_polish(self) -> Ask:
        if self._polish is None:
            reward, devices = self._best  # type: ignore[misc]
            self._polish = {
                "current": devices,
                "step": reward**2,
                "temperature": self.config.polish_temperature,
            }
        if len(self._polish_round) >= self.config.polish_batch:
            return WAIT  # the round must be told before the next one
        current = np.asarray(self._polish["current"], np.int64)
        placement = self._neighbours.propose(current, self.rng)
        proposal = self._propose({"devices": placement.tolist()})
        self._polish_round[proposal.id] = placement.tolist()
        return proposal

    def _finish_polish_round(self) -> None:
        assert self._polish is not None
        told = [
            (-(r**2) if r is not None and np.isfinite(r) else -np.inf, pid)
            for pid, r in self._polish_rewards.items()
        ]
        score, best_id = max(told)
        step = -score if np.isfinite(score) else np.inf
        if accept(step, self._polish["step"], self._polish["temperature"], self.rng):
            self._polish["current"], self._polish["step"] = self._polish_round[best_id], step
        self._polish["temperature"] *= self.config.polish_cooling
        self._polish_round.clear()
        self._polish_rewards.clear()

    # ------------------------------------------------------------------ learning

    def _pending_hints(self) -> bool:
        return any(pid in self.pending for pid in self._hint_rewards)

    def _learn(self) -> None:
        ids = sorted(self._batch)
        rewards = np.array(
            [np.nan if self._rewards[i] is None else self._rewards[i] for i in ids], np.float64
        )
        worst = np.nanmin(rewards) if np.isfinite(rewards).any() else 0.0
        rewards = np.where(np.isfinite(rewards), rewards, worst)
        advantage = (rewards - rewards.mean()) / (rewards.std() + 1e-8)
        groups = np.stack([self._batch[i][0] for i in ids])
        devices = np.stack([self._batch[i][1] for i in ids])
        self.policy.update(
            self._graph_inputs,
            groups,
            devices,
            advantage.astype(np.float32),
            self.config.entropy_weight,
            self.config.learning_rate,
            self.config.grad_clip_norm,
        )
        self.updates += 1
        self._batch.clear()
        self._rewards.clear()

    def _imitate_best_hint(self) -> None:
        self._imitated = True
        scored = [(r, pid) for pid, r in self._hint_rewards.items() if r is not None and np.isfinite(r)]
        if not scored:
            return
        _, best_id = max(scored)
        target = self._hints[self._hint_index[best_id]]
        groups, devices = decompose(target, self.allowed, self.config.groups)
        for _ in range(self.config.imitation_steps):
            self.policy.update(
                self._graph_inputs,
                groups[None],
                devices[None],
                np.ones(1, np.float32),
                0.0,
                self.config.learning_rate * 3,
                self.config.grad_clip_norm * 10,
            )

    # ------------------------------------------------------------------ state

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state.update(
            policy=self.policy.get_state(),
            updates=self.updates,
            imitated=self._imitated,
            hints_given=self._hints_given,
            hint_rewards=[[pid, self._hint_index[pid], r] for pid, r in self._hint_rewards.items()],
            best=self._best,
            polish=self._polish,
        )
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("pending"):
            raise ValueError("a hierarchical planner's state can be restored between batches only")
        super().set_state(state)
        self.policy.set_state(state["policy"])
        self.updates = int(state["updates"])
        self._imitated = bool(state["imitated"])
        self._hints_given = int(state["hints_given"])
        self._hint_rewards = {int(pid): r for pid, _, r in state["hint_rewards"]}
        self._hint_index = {int(pid): int(index) for pid, index, _ in state["hint_rewards"]}
        best = state.get("best")
        self._best = (float(best[0]), list(best[1])) if best else None
        self._polish = state.get("polish")

    def warm_start(self, previous_state: dict[str, Any]) -> None:
        """Start from a placer trained on another graph (same groups and device count)."""
        self.policy.set_state(previous_state["policy"], optimizer=False)


def decompose(placement: np.ndarray, allowed: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Groups and group devices that give ``placement``: each device's ops, in topological
    order, cut into equal contiguous runs, one group per run."""
    per_device = max(n_groups // len(allowed), 1)
    groups = np.zeros(len(placement), np.int32)
    devices = np.zeros(n_groups, np.int32)
    for d, device in enumerate(allowed):
        ops = np.flatnonzero(placement == device)
        first = min(d * per_device, n_groups - 1)
        last = min(first + per_device, n_groups)
        devices[first:last] = d
        if len(ops):
            chunks = np.minimum(np.arange(len(ops)) * (last - first) // len(ops), last - first - 1)
            groups[ops] = first + chunks
    return groups, devices
