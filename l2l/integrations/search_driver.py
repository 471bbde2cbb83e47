"""One strategy as another tuner's searcher sees it: no repeats, an end, a space that may grow.

Ray Tune and KerasTuner spend a trial on every configuration they are handed. Our
strategies may propose a configuration again (random search draws with replacement,
evolution's child may equal an earlier trial) and most never say they are done. The
:class:`SearchDriver` sits between a strategy and a tuner adapter and keeps the
tuner's promise that each trial is a new configuration:

* A configuration is known by its canonical form by value
  (:meth:`SearchSpace.canonical_params`): in a space with conditional decisions
  two configurations that differ only in inactive decisions are one.
* When the strategy proposes a configuration already handed out, the tuner never
  sees it: the strategy is told the known result at once (or, if the first one is
  still running, when it arrives) and asked again.
* After ``max_repeats`` repeats in a row, or when every configuration of a small
  finite space has been handed out, a configuration not tried yet is drawn at random
  and adopted (:meth:`Strategy.adopt`), so the strategy learns from it too. When none
  is left, ``ask`` returns FINISHED.
* :meth:`extend` passes a grown space to the strategy (new decisions, older
  configurations read as having had their defaults) and re-keys what was tried.

Everything is pure Python and JSON-able (:meth:`get_state` / :meth:`set_state`), so
both adapters save it inside their own checkpoints. No Ray, no Keras here.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from typing import Any

from controller import FINISHED, Ask, Proposal, Result, Strategy, create_strategy, strategy_names
from search_spaces import get_space
from search_spaces.spec import Choice, FloatRange, IntRange, Params, SearchSpace

#: The strategy the adapters use when none is named.
DEFAULT_STRATEGY = "model_based"

#: Spaces with at most this many configurations are counted exactly (their forms enumerated).
ENUMERATE_LIMIT = 1 << 16

#: Repeats in a row before a random untried configuration is adopted (KerasTuner's own
#: oracles give up after 20 collisions).
MAX_REPEATS = 20

#: Random draws tried to find an untried configuration in a space too large to enumerate.
_DRAWS = 200


class SearchDriver:
    """A registered strategy, kept from repeating itself; see the module docstring."""

    def __init__(
        self,
        strategy: str,
        space: SearchSpace,
        seed: int | None = None,
        options: Mapping[str, Any] | None = None,
        max_repeats: int = MAX_REPEATS,
    ) -> None:
        self.strategy_name = strategy
        self.options = dict(options or {})
        self.seed = seed
        self.max_repeats = max_repeats
        self.space = space
        self.strategy: Strategy = create_strategy(strategy, space, seed, self.options)
        self.rng = random.Random(None if seed is None else seed + 7919)
        #: form key -> [params as proposed, "pending" | "done", reward or None]
        self.tried: dict[str, list[Any]] = {}
        #: proposal id handed out -> its form key
        self.handed_out: dict[int, str] = {}
        #: form key of a running configuration -> repeat proposal ids told when it ends
        self.waiting: dict[str, list[int]] = {}
        self._capacity: int | None | bool = False  # False: not counted yet

    # ---- asking ------------------------------------------------------------------------

    def ask(self) -> Ask:
        """A configuration not handed out before, WAIT or FINISHED."""
        if self.exhausted():
            return FINISHED
        for _ in range(self.max_repeats + 1):
            answer = self.strategy.ask()
            if not isinstance(answer, Proposal):
                return answer
            key = self.key(answer.params)
            if key not in self.tried:
                return self._hand_out(answer, key)
            self._answer_repeat(answer.id, key)
        params = self._untried()
        if params is None:
            return FINISHED
        return self.adopt(params)

    def adopt(self, params: Mapping[str, Any]) -> Proposal:
        """``params`` (complete) handed out as the strategy's next proposal, even if tried before."""
        proposal = self.strategy.adopt(self.space.validate(params))
        return self._hand_out(proposal, self.key(proposal.params))

    def exhausted(self) -> bool:
        """Whether every configuration of a finite space has been handed out."""
        capacity = self.capacity()
        return capacity is not None and len(self.tried) >= capacity

    def capacity(self) -> int | None:
        """How many distinct configurations (canonical forms) the space has, if it is finite
        and small enough to count; None otherwise."""
        if self._capacity is False:
            self._capacity = _count_forms(self.space)
        return self._capacity  # type: ignore[return-value]

    # ---- telling -----------------------------------------------------------------------

    def tell(self, proposal_id: int, reward: float | None) -> None:
        """The result of a configuration handed out (``None``: it failed)."""
        key = self.handed_out.pop(proposal_id)
        self.strategy.tell(proposal_id, Result(reward))
        entry = self.tried[key]
        if entry[1] == "pending":
            entry[1:] = ["done", reward]
        for repeat in self.waiting.pop(key, []):
            self.strategy.tell(repeat, Result(entry[2]))

    def observe(self, params: Mapping[str, Any], reward: float | None) -> None:
        """A configuration evaluated elsewhere: adopted and told at once."""
        proposal = self.adopt(params)
        self.tell(proposal.id, reward)

    def pending(self) -> list[int]:
        """Proposal ids handed out and not told yet."""
        return list(self.handed_out)

    # ---- growing -----------------------------------------------------------------------

    def extend(self, space: SearchSpace, fill: Mapping[str, Any] | None = None) -> None:
        """Switch to ``space``, which appends decisions (or changes only settings) to the current one."""
        self.strategy.extend_space(space, fill)
        fill_values = {d.name: (fill or {}).get(d.name, d.levels()[0]) for d in space.decisions}
        old_keys: dict[str, str] = {}
        tried: dict[str, list[Any]] = {}
        self.space = space
        for key, (params, status, reward) in self.tried.items():
            grown = {**fill_values, **params}
            new_key = self.key(grown)
            old_keys[key] = new_key
            tried.setdefault(new_key, [grown, status, reward])
        self.tried = tried
        self.handed_out = {pid: old_keys[key] for pid, key in self.handed_out.items()}
        waiting: dict[str, list[int]] = {}
        for key, ids in self.waiting.items():
            waiting.setdefault(old_keys[key], []).extend(ids)
        self.waiting = waiting
        self._capacity = False

    # ---- state -------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {
            "space": self.space.to_dict(),
            "strategy": self.strategy.get_state(),
            "rng": [version, list(internal), gauss],
            "tried": [[key, *entry] for key, entry in self.tried.items()],
            "handed_out": [[pid, key] for pid, key in self.handed_out.items()],
            "waiting": [[key, ids] for key, ids in self.waiting.items()],
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`get_state` (on a driver built with the same strategy, seed and options)."""
        space = SearchSpace.from_dict(state["space"])
        strategy = create_strategy(self.strategy_name, space, self.seed, self.options)
        strategy.set_state(state["strategy"])
        self.space, self.strategy, self._capacity = space, strategy, False
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.tried = {key: [params, status, reward] for key, params, status, reward in state["tried"]}
        self.handed_out = {int(pid): key for pid, key in state["handed_out"]}
        self.waiting = {key: [int(i) for i in ids] for key, ids in state["waiting"]}

    # ---- helpers -----------------------------------------------------------------------

    def key(self, params: Mapping[str, Any]) -> str:
        """The identity of a configuration: its canonical form by value, as JSON."""
        form = self.space.canonical_params(params)
        return json.dumps([[name, _plain(form[name])] for name in self.space.names])

    def _hand_out(self, proposal: Proposal, key: str) -> Proposal:
        self.handed_out[proposal.id] = key
        self.tried.setdefault(key, [dict(proposal.params), "pending", None])
        return proposal

    def _answer_repeat(self, proposal_id: int, key: str) -> None:
        params, status, reward = self.tried[key]
        if status == "done":
            self.strategy.tell(proposal_id, Result(reward))
        else:
            self.waiting.setdefault(key, []).append(proposal_id)

    def _untried(self) -> Params | None:
        """A configuration not handed out yet, drawn at random; None if there is none."""
        capacity = self.capacity()
        if capacity is not None:
            untried = [params for params in _grid(self.space) if self.key(params) not in self.tried]
            # one per form, so each form is equally likely
            unique = {self.key(params): params for params in untried}
            return self.rng.choice(list(unique.values())) if unique else None
        for _ in range(_DRAWS):
            params = self.space.sample(self.rng)
            if self.key(params) not in self.tried:
                return params
        return None


def space_and_strategy(
    space: SearchSpace | str | Mapping[str, Any] | None, strategy: str | None
) -> tuple[SearchSpace | None, str]:
    """The adapters' first two arguments read as (space or None, strategy name).

    ``("model_based", None)`` is a strategy with the tuner's own space; ``("nb201_cell",
    "evolution")`` or ``(SearchSpace(...), None)`` a space of ours (the default strategy
    if none is named). Spaces and strategies have distinct names.
    """
    if strategy is None and isinstance(space, str) and space in strategy_names():
        return None, space
    strategy = strategy or DEFAULT_STRATEGY
    if strategy not in strategy_names():
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {strategy_names()}")
    if space is None or isinstance(space, SearchSpace):
        return space, strategy
    return get_space(space), strategy


def _plain(value: Any) -> Any:
    # 1 and 1.0 are one value; a float keeps 12 significant digits so rounding noise is one key
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.12g}")
    return value


def _is_finite(space: SearchSpace) -> bool:
    """Whether the discrete view is the whole space (no float range, no thinned integer range)."""
    for decision in space.decisions:
        if isinstance(decision, FloatRange):
            return False
        if isinstance(decision, IntRange) and len(decision.levels()) < len(
            range(decision.low, decision.high + 1, decision.step)
        ):
            return False
        assert isinstance(decision, (Choice, IntRange))
    return True


def _grid(space: SearchSpace) -> list[Params]:
    configurations: list[Params] = [{}]
    for decision in space.decisions:
        configurations = [{**c, decision.name: level} for c in configurations for level in decision.levels()]
    return configurations


def _count_forms(space: SearchSpace) -> int | None:
    if not _is_finite(space) or math.prod(space.cardinalities) > ENUMERATE_LIMIT:
        return None
    if space.canonical is None:
        return math.prod(space.cardinalities)
    return len({json.dumps(list(space.canonical_params(c).items())) for c in _grid(space)})
