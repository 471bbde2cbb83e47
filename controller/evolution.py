"""Regularized ("aging") evolution, Real et al. 2019, run asynchronously.

The population is the ``population_size`` most recent successful trials, oldest
first. While the population plus the proposals in flight is smaller than
``population_size``, proposals are random. After that each proposal is a child:
draw ``sample_size`` members, take the one with the best reward and change one of
its decisions to a different level. When a result arrives the child joins the
population and, if the population is over size, its *oldest* member dies, however
good it was; that aging is what keeps the search from clinging to one lucky trial.

Failed trials (reward ``None``) never join the population. If every slot is taken
by proposals in flight and no result has come back yet there is no parent to
mutate, so ``ask()`` returns WAIT.

Warm start (:meth:`RegularizedEvolution.warm_start`): the best half of an earlier job's
population are proposed first, before any random member, so they are re-evaluated here
and join the population with this job's rewards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.base import WAIT, Ask, Result, Strategy
from controller.config import EvolutionConfig
from search_spaces.spec import Params, SearchSpace


class RegularizedEvolution(Strategy):
    """Tournament selection, single-decision mutation, oldest member removed first."""

    name = "evolution"

    def __init__(
        self, space: SearchSpace, seed: int | None = None, config: EvolutionConfig | None = None
    ) -> None:
        super().__init__(space, seed)
        self.config = config or EvolutionConfig()
        # (params, reward), oldest first
        self.population: list[tuple[Params, float]] = []
        #: a warm start's members still to propose, best first
        self.seeds: list[Params] = []

    def ask(self) -> Ask:
        cfg = self.config
        if self.seeds:
            return self._propose(self.seeds.pop(0))
        if len(self.population) + len(self.pending) < cfg.population_size:
            return self._propose(self.space.sample(self.rng))
        if not self.population:
            return WAIT
        contenders = self.rng.sample(self.population, min(cfg.sample_size, len(self.population)))
        parent, _ = max(contenders, key=lambda member: member[1])
        return self._propose(self._mutate(parent))

    def tell(self, proposal_id: int, result: Result) -> None:
        params = self._settle(proposal_id)
        if result.reward is None:
            return
        self.population.append((params, float(result.reward)))
        if len(self.population) > self.config.population_size:
            self.population.pop(0)

    def _mutate(self, parent: Params) -> Params:
        """``parent`` with one decision moved to a different level of the discrete view.

        Only decisions with more than one level can change; in a space with none the
        child is a copy of its parent.
        """
        child = dict(parent)
        mutable = [i for i, d in enumerate(self.space.decisions) if len(d.levels()) > 1]
        if not mutable:
            return child
        position = self.rng.choice(mutable)
        decision = self.space.decisions[position]
        current = self.space.to_indices(parent)[position]
        others = [i for i in range(len(decision.levels())) if i != current]
        child[decision.name] = decision.levels()[self.rng.choice(others)]
        return child

    def warm_start(self, previous_state: Mapping[str, Any]) -> None:
        ranked = sorted(previous_state["population"], key=lambda member: -float(member[1]))
        seeds: dict[tuple[int, ...], Params] = {}
        for params, _ in ranked:
            valid = self.space.validate(params)  # raises for another space
            seeds.setdefault(tuple(self.space.to_indices(valid)), valid)
        self.seeds = list(seeds.values())[: max(1, self.config.population_size // 2)]

    def extend_space(self, space: SearchSpace, fill: Mapping[str, Any] | None = None) -> None:
        """New decisions: members and seeds are read as having had them at their fill value."""
        values = self._grow(space, fill)
        self.population = [({**params, **values}, reward) for params, reward in self.population]
        self.seeds = [{**params, **values} for params in self.seeds]

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state["population"] = [[params, reward] for params, reward in self.population]
        state["seeds"] = [dict(params) for params in self.seeds]
        return state

    def set_state(self, state: Mapping[str, Any]) -> None:
        super().set_state(state)
        self.population = [(dict(params), float(reward)) for params, reward in state["population"]]
        self.seeds = [dict(params) for params in state.get("seeds", [])]
