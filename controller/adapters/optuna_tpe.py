"""Optuna's TPE sampler as a strategy (``optuna_tpe``, and ``optuna_tpe_mv`` with group decomposition).

An in-memory :class:`optuna.Study` does the sampling through Optuna's ask-and-tell
interface; our decisions become Optuna distributions (Choice -> Categorical, IntRange ->
Int, FloatRange -> Float). Optuna is imported when the strategy is built, not when the
registry is; it comes with the ``bench`` extra (``pip install 'l2l[bench]'``).

Repeatability: before every ask the sampler is rebuilt with a seed drawn from the
strategy's own RNG, whose state is saved, so a search's proposals depend only on its
seed and the results told.

State and its cost: ``get_state`` holds every trial in ask order (params, reward or
failure, or still pending): O(trials) JSON, saved by the loop after every ask and
tell. ``set_state`` replays them into a fresh study, O(trials) ``add_trial`` calls
(about 0.1 ms each), so a restored strategy proposes exactly what the original would.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from controller.base import Ask, Proposal, Result, Strategy
from controller.config import OptunaTPEConfig, StrategyError
from search_spaces.spec import Choice, IntRange, SearchSpace

_COMPLETE, _FAIL, _PENDING = "complete", "fail", "pending"


class OptunaTPE(Strategy):
    name = "optuna_tpe"

    def __init__(
        self, space: SearchSpace, seed: int | None = None, config: OptunaTPEConfig | None = None
    ) -> None:
        super().__init__(space, seed)
        self.config = config or OptunaTPEConfig()
        self._optuna = _import_optuna()
        self._distributions = distributions_for(space)
        self._study = self._new_study()
        #: Every trial in ask order: [proposal_id, params, status, reward].
        self._trials: list[list[Any]] = []
        #: Pending proposal id -> the Optuna trial number to tell.
        self._numbers: dict[int, int] = {}

    def ask(self) -> Ask:
        self._study.sampler = self._sampler(self.rng.getrandbits(32))
        trial = self._study.ask(self._distributions)
        proposal = self._propose(dict(trial.params))
        self._numbers[proposal.id] = trial.number
        self._trials.append([proposal.id, dict(proposal.params), _PENDING, None])
        return proposal

    def tell(self, proposal_id: int, result: Result) -> None:
        self._settle(proposal_id)
        number = self._numbers.pop(proposal_id)
        state = self._optuna.trial.TrialState
        if result.failed:
            self._study.tell(number, state=state.FAIL)
        else:
            self._study.tell(number, result.reward)
        entry = next(e for e in self._trials if e[0] == proposal_id)
        entry[2:] = [_FAIL, None] if result.failed else [_COMPLETE, result.reward]

    def adopt(self, params: Mapping[str, Any]) -> Proposal:
        # Optuna's own way to evaluate a given point: enqueue it, and the next ask returns it.
        self._study.enqueue_trial(dict(self.space.validate(params)))
        trial = self._study.ask(self._distributions)
        proposal = self._propose(dict(trial.params))
        self._numbers[proposal.id] = trial.number
        self._trials.append([proposal.id, dict(proposal.params), _PENDING, None])
        return proposal

    def extend_space(self, space: SearchSpace, fill: Mapping[str, Any] | None = None) -> None:
        """Every trial so far is read as having had the new decisions at their fill values:
        the study is rebuilt from the trials with those values."""
        values = self._grow(space, fill)
        self._distributions = distributions_for(space)
        for entry in self._trials:
            entry[1] = {**entry[1], **values}
        self.set_state(self.get_state())

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "trials": [list(entry) for entry in self._trials]}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self._study = self._new_study()
        self._trials, self._numbers = [], {}
        create_trial, trial_state = self._optuna.trial.create_trial, self._optuna.trial.TrialState
        for proposal_id, params, status, reward in state.get("trials", []):
            states = {_COMPLETE: trial_state.COMPLETE, _FAIL: trial_state.FAIL, _PENDING: trial_state.RUNNING}
            frozen = create_trial(
                state=states[status],
                value=reward if status == _COMPLETE else None,
                params=dict(params),
                distributions=self._distributions,
            )
            self._study.add_trial(frozen)
            if status == _PENDING:
                self._numbers[int(proposal_id)] = len(self._trials)
            self._trials.append([int(proposal_id), dict(params), status, reward])

    def _sampler(self, seed: int) -> Any:
        config = self.config
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # group and multivariate are "experimental" in Optuna
            return self._optuna.samplers.TPESampler(
                seed=seed,
                n_startup_trials=config.n_startup_trials,
                n_ei_candidates=config.n_ei_candidates,
                multivariate=config.multivariate,
                group=config.group,
            )

    def _new_study(self) -> Any:
        return self._optuna.create_study(direction="maximize", sampler=self._sampler(0))


def distributions_for(space: SearchSpace) -> dict[str, Any]:
    """Our decisions as Optuna distributions, in the space's order."""
    distributions = _import_optuna().distributions
    result: dict[str, Any] = {}
    for decision in space.decisions:
        if isinstance(decision, Choice):
            result[decision.name] = distributions.CategoricalDistribution(decision.options)
        elif isinstance(decision, IntRange):
            # Optuna has no stepped log range; such a range is searched on its linear grid.
            log = decision.log and decision.step == 1
            result[decision.name] = distributions.IntDistribution(
                decision.low, decision.high, log=log, step=1 if log else decision.step
            )
        else:
            result[decision.name] = distributions.FloatDistribution(
                decision.low, decision.high, log=decision.log
            )
    return result


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError as error:
        raise StrategyError(
            "the optuna strategies need Optuna: pip install 'l2l[bench]' (or pip install optuna)"
        ) from error
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


__all__ = ["OptunaTPE", "distributions_for"]
