"""The one interface every search strategy implements.

Protocol
--------
A strategy proposes parameter sets for a :class:`~search_spaces.spec.SearchSpace` and
learns from their rewards. The job loop drives it:

* ``ask()`` returns a :class:`Proposal` (a fresh ``id`` and validated ``params``),
  :data:`WAIT` (nothing to propose until more results arrive) or :data:`FINISHED`
  (the strategy has nothing more to try). Budget is the loop's business, not the
  strategy's.
* ``tell(proposal_id, result)`` reports the outcome of an earlier proposal, in any
  order and at most once each. ``result.reward`` is ``None`` when the trial failed;
  a failed trial is never a reward of 0. Telling an id that is not pending (never
  proposed, or already told) raises :class:`UnknownProposalError`.
* ``observe(params, result)`` (optional) reports a further result of a configuration
  already told: under early stopping a trial stopped at a low fidelity (``result.fidelity``
  below 1) is told at once, and if it is later promoted and trains further, the result at
  its higher fidelity comes here. The default ignores it: a strategy that knows nothing of
  fidelity has already learned from the first result.
* ``get_state()`` returns JSON-able data; ``set_state(state)`` on a fresh instance
  built with the same space and config restores it exactly, so the next ``ask()``
  gives the same proposal the original would have given. The loop saves the state
  in the database after every ask and tell, so a search survives a restart.
* ``warm_start(previous_state)`` (optional) is called at most once, on a fresh instance
  before its first ``ask()``, with the saved state of an earlier job of the same strategy
  on a space with the same decisions (rewards on another dataset may be on another
  scale). It may carry over what was *learned*, never that job's pending proposals or
  its proposal ids; the new job's own state is what ``get_state()`` returns afterwards.
  The default does nothing.
* ``adopt(params)`` takes a configuration chosen elsewhere (a user's point to evaluate,
  a result from another tuner) as the next proposal, as if ``ask()`` had returned it:
  it gets a fresh id and is told like any other. Subclasses that keep something per
  proposal (the sampled indices, the set of configurations proposed) record it here.
* ``extend_space(space, fill)`` takes a space that keeps every decision of the current
  one, in order, and appends new ones (a KerasTuner ``build(hp)`` that registers a
  hyperparameter only for some values of another). What was learned so far is read as
  having had each new decision at ``fill[name]`` (its default; the first level if not
  given), and pending proposals are told later as such. The default refuses with
  NotImplementedError; every registered strategy implements it.

A strategy does no I/O and imports no Ray, no SQLAlchemy and no Keras model code.

A complete strategy::

    class FirstLevel(Strategy):
        '''Proposes the first level of every decision, then stops.'''

        def ask(self):
            if self.next_id:
                return FINISHED
            return self._propose(self.space.from_indices([0] * len(self.space.decisions)))

        def tell(self, proposal_id, result):
            self._settle(proposal_id)  # raises for an unknown id; nothing to learn here
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from search_spaces.spec import Decision, Params, SearchSpace, SpaceError


@dataclass(frozen=True)
class Proposal:
    """A parameter set to try; ``id`` is unique within one search."""

    id: int
    params: Params


@dataclass(frozen=True)
class Result:
    """The outcome of a proposal: its reward (``None`` if the trial failed) and its metrics.

    ``fidelity`` is the share of the full training the reward was measured at: 1 for a trial
    that trained all its epochs, e.g. 3/52 for one early stopping halted after 3 of 52.
    """

    reward: float | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    fidelity: float = 1.0

    def __post_init__(self) -> None:
        # NaN or inf is a failed trial (reward None), decided by the reward function, not here
        if self.reward is not None and not math.isfinite(self.reward):
            raise ValueError(f"reward must be a finite number or None (failed), got {self.reward!r}")
        if not 0 < self.fidelity <= 1:
            raise ValueError(f"fidelity must be in (0, 1], got {self.fidelity!r}")

    @property
    def failed(self) -> bool:
        return self.reward is None


class UnknownProposalError(KeyError):
    """``tell`` got an id that is not pending: never proposed, or already told."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


class _Signal:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: ``ask()`` has nothing to propose until more results come in.
WAIT = _Signal("WAIT")
#: ``ask()`` will never propose anything again.
FINISHED = _Signal("FINISHED")

Ask = Proposal | _Signal


class Strategy(ABC):
    """Base class: owns the space, a seeded RNG, the proposal counter and the pending proposals.

    ``pending`` maps each proposal id that has not been told yet to its params;
    ``_propose`` adds to it and ``_settle`` takes from it, and both are saved in the
    state, so subclasses only keep what they add on top.
    """

    #: The name jobs use to pick this strategy.
    name: ClassVar[str] = ""

    def __init__(self, space: SearchSpace, seed: int | None = None, **options: Any) -> None:
        if options:
            raise TypeError(f"{type(self).__name__} takes no options, got {sorted(options)}")
        self.space = space
        self.seed = seed
        self.rng = random.Random(seed)
        self.next_id = 0
        self.pending: dict[int, Params] = {}

    @abstractmethod
    def ask(self) -> Ask:
        """A new proposal, WAIT or FINISHED."""

    @abstractmethod
    def tell(self, proposal_id: int, result: Result) -> None:
        """Learn from the outcome of proposal ``proposal_id``."""

    def observe(self, params: Params, result: Result) -> None:  # noqa: B027 (optional hook)
        """A further, higher-fidelity result of ``params``, told before at a lower one; by default ignored."""

    def warm_start(self, previous_state: Mapping[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Start from what an earlier job learned (its ``get_state()``); by default, nothing.

        Called on a fresh instance before the first ``ask()``. Raises ValueError if the
        state does not fit this space or config.
        """

    def adopt(self, params: Mapping[str, Any]) -> Proposal:
        """``params`` (validated) as the next proposal, as if ``ask()`` had chosen it."""
        return self._propose(dict(params))

    def extend_space(self, space: SearchSpace, fill: Mapping[str, Any] | None = None) -> None:
        """Take new decisions appended to the space; see the module docstring."""
        raise NotImplementedError(f"strategy {self.name or type(self).__name__} cannot take new decisions")

    def _grow(self, space: SearchSpace, fill: Mapping[str, Any] | None) -> Params:
        """Check ``space`` extends ``self.space``, switch to it and fill the pending proposals.

        Returns the value of every new decision that older configurations are read as having
        (``fill`` checked against the new decisions, their first level where not given).
        """
        added = new_decisions(self.space, space)
        values = {d.name: d.levels()[0] for d in added}
        for name, value in (fill or {}).items():
            if name in values:
                values[name] = next(d for d in added if d.name == name).check(value)
        self.space = space
        self.pending = {pid: {**params, **values} for pid, params in self.pending.items()}
        return values

    def get_state(self) -> dict[str, Any]:
        """JSON-able state; subclasses extend the dict returned here."""
        version, internal, gauss = self.rng.getstate()
        return {
            "next_id": self.next_id,
            "rng": [version, list(internal), gauss],
            # a list of pairs: JSON object keys would turn the ids into strings
            "pending": [[proposal_id, params] for proposal_id, params in self.pending.items()],
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.next_id = int(state["next_id"])
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.pending = {int(proposal_id): dict(params) for proposal_id, params in state.get("pending", [])}

    def _propose(self, params: Params) -> Proposal:
        """Validate ``params`` and hand out the next proposal id."""
        proposal = Proposal(self.next_id, self.space.validate(params))
        self.pending[proposal.id] = dict(proposal.params)
        self.next_id += 1
        return proposal

    def _settle(self, proposal_id: int) -> Params:
        """Take proposal ``proposal_id`` off ``pending`` and return its params.

        Raises :class:`UnknownProposalError` if it is not pending, before the caller
        has changed anything, so a bad ``tell`` leaves the strategy as it was.
        """
        try:
            return self.pending.pop(proposal_id)
        except KeyError:
            told = "already told" if 0 <= proposal_id < self.next_id else "never proposed"
            raise UnknownProposalError(
                f"proposal {proposal_id} is not pending ({told}); pending: {sorted(self.pending)[:10]}"
            ) from None


def new_decisions(old: SearchSpace, new: SearchSpace) -> list[Decision]:
    """The decisions ``new`` appends to ``old``; SpaceError unless ``new`` keeps ``old``'s in order."""
    kept = new.decisions[: len(old.decisions)]
    if kept != old.decisions:
        raise SpaceError(
            f"space {new.name!r} does not extend {old.name!r}: its first decisions must be "
            f"{list(old.names)}, unchanged"
        )
    return list(new.decisions[len(old.decisions) :])
