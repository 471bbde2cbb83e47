"""Any registered strategy as a KerasTuner ``Oracle``, on the classic ``build(hp)``.

    import keras_tuner
    from l2l.integrations.keras_tuner_oracle import StrategyOracle

    oracle = StrategyOracle("model_based", objective="val_accuracy", max_trials=20, seed=0)
    tuner = keras_tuner.RandomSearch(build, ...)   # any Tuner: only the oracle is ours
    tuner = keras_tuner.Tuner(oracle=oracle, hypermodel=build, directory="kt", project_name="p")
    tuner.search(x, y, validation_data=(x_val, y_val), epochs=5)

What a caller may rely on:

* The space is KerasTuner's own: whatever ``build(hp)`` registers, when it registers it.
  New hyperparameters found mid-search (``for i in range(hp.Int("layers", 1, 3)):
  hp.Int(f"units_{i}", ...)``) are passed to the strategy as new decisions
  (:meth:`controller.Strategy.extend_space`); older trials are read as having had their
  defaults, which is what their ``build(hp)`` used. ``hp.Fixed`` is not searched.
  Hyperparameters under a conditional scope are given values only while active (as
  KerasTuner's own oracles do), and the strategy sees an inactive one at its default.
  A space of ours may be given instead (first argument, e.g. ``"nb201_cell"``).
* No configuration is run twice, and the search stops (KerasTuner's ``STOPPED``) when a
  finite space is exhausted; see :mod:`l2l.integrations.search_driver`.
* A trial that ends COMPLETED tells the strategy its score (negated when the objective
  is minimised); FAILED, or INVALID with no retries left, tells a failure; INVALID with
  retries left tells nothing until the retry ends. Both ``end_trial(trial)`` and the
  older ``end_trial(trial_id, status)`` work. Every strategy call happens under the
  oracle's lock, so tuners in several threads may share one oracle.
* The strategy's state is part of the oracle's state (``oracle.json``): a Tuner made again
  with ``overwrite=False`` resumes the strategy where it stopped, with the same proposals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras_tuner
from keras_tuner.engine import hyperparameters as kt_hp

from controller import FINISHED, Proposal
from l2l.integrations.search_driver import SearchDriver, space_and_strategy
from search_spaces.conditions import ACTIVE_FORM, CONDITIONS, INACTIVE
from search_spaces.keras_tuner_space import space_from_hyperparameters, to_hyperparameters
from search_spaces.spec import SearchSpace

_RUNNING = keras_tuner.engine.trial.TrialStatus.RUNNING
_IDLE = keras_tuner.engine.trial.TrialStatus.IDLE
_STOPPED = keras_tuner.engine.trial.TrialStatus.STOPPED
_COMPLETED = keras_tuner.engine.trial.TrialStatus.COMPLETED
_FAILED = keras_tuner.engine.trial.TrialStatus.FAILED


class StrategyOracle(keras_tuner.Oracle):  # type: ignore[misc]
    """A KerasTuner oracle whose proposals come from one of our strategies (see the module).

    ``StrategyOracle(strategy, ...)`` searches the ``build(hp)`` space;
    ``StrategyOracle(space, strategy=..., ...)`` searches one of our spaces (a
    :class:`SearchSpace` or a description :func:`search_spaces.get_space` takes).
    ``options`` are the strategy's (checked as in :func:`controller.check_options`);
    everything else is KerasTuner's ``Oracle`` arguments.
    """

    def __init__(
        self,
        space: SearchSpace | str | Mapping[str, Any] | None = None,
        strategy: str | None = None,
        options: Mapping[str, Any] | None = None,
        seed: int | None = None,
        **oracle_kwargs: Any,
    ) -> None:
        base_space, self.strategy_name = space_and_strategy(space, strategy)
        self.base_space = base_space
        if base_space is not None:
            if oracle_kwargs.get("hyperparameters") is not None:
                raise ValueError("give either a space of ours or hyperparameters=, not both")
            oracle_kwargs["hyperparameters"] = to_hyperparameters(base_space)
        super().__init__(seed=seed, **oracle_kwargs)
        self.options = dict(options or {})
        self.driver: SearchDriver | None = None
        #: KerasTuner trial id -> proposal id, for trials running (or waiting for a retry)
        self._proposals: dict[str, int] = {}
        #: a build(hp) with nothing tunable runs once, as KerasTuner's own oracles do
        self._untunable_done = False
        if base_space is not None:
            self.driver = self._new_driver(base_space)

    @property
    def strategy(self) -> Any:
        """The strategy (None until ``build(hp)`` has registered something tunable)."""
        return None if self.driver is None else self.driver.strategy

    # ---- KerasTuner's hooks --------------------------------------------------------------

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        space = self._current_space()
        if space is None:
            if self._untunable_done:
                return {"status": _STOPPED, "values": None}
            self._untunable_done = True
            return {"status": _RUNNING, "values": self._active_values({})}
        self._follow(space)
        assert self.driver is not None
        answer = self.driver.ask()
        if not isinstance(answer, Proposal):
            status = _STOPPED if answer is FINISHED else _IDLE
            return {"status": status, "values": None}
        self._proposals[trial_id] = answer.id
        return {"status": _RUNNING, "values": self._active_values(answer.params)}

    def end_trial(self, trial: Any = None, status: str | None = None, trial_id: str | None = None) -> None:
        """End a trial: ``end_trial(trial)``, or the older ``end_trial(trial_id, status="COMPLETED")``."""
        if trial_id is not None or isinstance(trial, str):
            self._end_by_id(trial_id if trial_id is not None else trial, status or _COMPLETED)
        else:
            self._end(trial)

    @keras_tuner.synchronized
    def _end_by_id(self, trial_id: str, status: str) -> None:
        # The trial as KerasTuner keeps it (values and metrics reported), with the status given;
        # KerasTuner's own conversion would make a new trial without the values that ran.
        trial = self.trials[trial_id]
        trial.status = status
        self._end(trial)

    @keras_tuner.synchronized
    def _end(self, trial: Any) -> None:
        super().end_trial(trial)
        ended = self.trials[trial.trial_id]
        if trial.trial_id in self._retry_queue:
            return  # INVALID with retries left: KerasTuner runs it again under the same id
        self._tell(ended)
        self.save()  # again: the checkpoint written above predates this result

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state["l2l"] = {
            "strategy": self.strategy_name,
            "options": self.options,
            "driver": None if self.driver is None else self.driver.get_state(),
            "proposals": dict(self._proposals),
            "untunable_done": self._untunable_done,
        }
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        ours = state.get("l2l")
        if ours is None:
            raise ValueError("this KerasTuner project was searched by another oracle; use overwrite=True")
        if ours["strategy"] != self.strategy_name:
            raise ValueError(
                f"this KerasTuner project was searched by strategy {ours['strategy']!r}, not "
                f"{self.strategy_name!r}: pass strategy={ours['strategy']!r}, or overwrite=True to start over"
            )
        self.options = dict(ours["options"])
        self.driver = None
        if ours["driver"] is not None:
            self.driver = self._new_driver(SearchSpace.from_dict(ours["driver"]["space"]))
            self.driver.set_state(ours["driver"])
        self._proposals = {str(k): int(v) for k, v in ours["proposals"].items()}
        self._untunable_done = bool(ours["untunable_done"])
        # A trial that ended after the last checkpoint of the strategy was written (a crash
        # between KerasTuner's save and ours) is told now.
        for trial_id in list(self._proposals):
            trial = self.trials.get(trial_id)
            if trial is not None and trial.status in (_COMPLETED, _FAILED) and trial_id in self.end_order:
                self._tell(trial)

    # ---- helpers ---------------------------------------------------------------------------

    def _tell(self, trial: Any) -> None:
        proposal_id = self._proposals.pop(trial.trial_id, None)
        if proposal_id is None or self.driver is None:
            return
        reward = None
        if trial.status == _COMPLETED and trial.score is not None:
            score = float(trial.score)
            if score == score and abs(score) != float("inf"):
                reward = -score if self.objective.direction == "min" else score
        self.driver.tell(proposal_id, reward)

    def _new_driver(self, space: SearchSpace) -> SearchDriver:
        return SearchDriver(self.strategy_name, space, seed=self.seed, options=self.options)

    def _current_space(self) -> SearchSpace | None:
        """Our view of KerasTuner's space now: the base space (if any) and what build(hp) added."""
        found = space_from_hyperparameters(self.hyperparameters, name="keras_tuner")
        if self.base_space is None:
            return found
        if found is None:
            return self.base_space
        extra = tuple(d for d in found.decisions if d.name not in self.base_space.names)
        settings = dict(self.base_space.settings)
        for key in (CONDITIONS, INACTIVE):
            if key in found.settings:
                settings[key] = found.settings[key]
        conditional = CONDITIONS in settings
        if not extra and not conditional:
            return self.base_space
        return SearchSpace(
            self.base_space.name,
            self.base_space.decisions + extra,
            self.base_space.builder,
            settings,
            self.base_space.input_kinds,
            ACTIVE_FORM if conditional else self.base_space.canonical,
        )

    def _follow(self, space: SearchSpace) -> None:
        """Create the driver, or pass it the space if build(hp) has grown it."""
        if self.driver is None:
            self.driver = self._new_driver(space)
        elif space != self.driver.space:
            self.driver.extend(space, fill=space.settings.get("defaults"))

    def _active_values(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The values of the hyperparameters active for ``params``, as KerasTuner's oracles give
        them (an inactive one has no value; a fixed one its value)."""
        hps = kt_hp.HyperParameters()
        for hp in self.hyperparameters.space:
            hps.merge([hp])
            if hps.is_active(hp):
                hps.values[hp.name] = params.get(hp.name, hp.default)
        return dict(hps.values)
