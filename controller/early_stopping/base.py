"""The one interface every early-stopping rule implements (a *scheduler*, as Ray Tune calls it).

Protocol
--------
A scheduler watches the learning curves of a search's trials and says, at each epoch a
trial reports, whether it should train on. It knows nothing of strategies, workers or
the database; the caller feeds it reports and acts on its answers.

* ``on_report(trial_id, epoch, value)``: trial ``trial_id`` finished ``epoch`` (counted from
  1) with ``value`` (higher is better: the trial's reward at that epoch). Returns
  :data:`CONTINUE` or :data:`STOP`. A trial told STOP ends there and its result at that
  fidelity counts; if ``epoch`` is one of its rungs it is *paused*, its checkpoint kept, and
  it may be promoted later. Reports are fed in one fixed order (the order they were stored), so a
  scheduler rebuilt by replaying the same reports gives the same answers.
* ``rungs(trial_id)``: the epochs at which the trial may be paused for a later promotion;
  the worker saves a checkpoint at each of them (before reporting), and a promoted trial
  resumes from one. A rule that never promotes has none.
* ``promotion(exclude=())``: a paused trial (not in ``exclude``) that has since earned
  more epochs, as ``(trial_id, epoch)`` where ``epoch`` is the rung it is paused at (it
  resumes from that checkpoint), or None. ``exclude`` lets a caller pass over trials whose
  promotion is already under way. A report of a paused trial at a later epoch means it was promoted.
* ``get_state()`` / ``set_state(state)``: JSON-able state; a fresh scheduler with the same
  settings restored from it answers exactly as the original would.

A scheduler does no I/O and imports no Ray, no SQLAlchemy and no Keras.

A complete scheduler::

    class StopAtThree(Scheduler):
        '''Stops every trial after epoch 3, never promotes.'''

        name = "stop_at_three"

        def on_report(self, trial_id, epoch, value):
            self._record(trial_id, epoch, value)
            return STOP if epoch >= 3 else CONTINUE
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from typing import Any, ClassVar


class Decision(enum.Enum):
    """What a worker is told after an epoch's report."""

    CONTINUE = "continue"
    STOP = "stop"


CONTINUE = Decision.CONTINUE
STOP = Decision.STOP


class Scheduler(ABC):
    """Base class: keeps every trial's curve (``curves[trial_id][epoch] = value``) and the paused set.

    ``max_epochs`` is the job's epoch budget per trial: no trial trains past it, and a
    report at it ends the trial whatever the scheduler says.
    """

    name: ClassVar[str] = ""

    def __init__(self, max_epochs: int) -> None:
        if max_epochs < 1:
            raise ValueError(f"max_epochs must be at least 1, got {max_epochs}")
        self.max_epochs = max_epochs
        self.curves: dict[int, dict[int, float]] = {}
        #: trial id -> the epoch it is paused at (told STOP there, not promoted since)
        self.paused: dict[int, int] = {}

    @abstractmethod
    def on_report(self, trial_id: int, epoch: int, value: float) -> Decision:
        """Record ``value`` of ``trial_id`` at ``epoch`` (from 1) and say whether it trains on."""

    def rungs(self, trial_id: int) -> tuple[int, ...]:
        """Epochs at which ``trial_id`` may be paused and later promoted (so it is checkpointed there)."""
        return ()

    def promotion(self, exclude: Collection[int] = ()) -> tuple[int, int] | None:
        """A paused trial to resume, with the epoch it is paused at; by default none ever is."""
        return None

    def get_state(self) -> dict[str, Any]:
        return {
            # lists of pairs: JSON object keys would turn the ids into strings
            "curves": [
                [trial, [[epoch, value] for epoch, value in curve.items()]]
                for trial, curve in self.curves.items()
            ],
            "paused": [[trial, epoch] for trial, epoch in self.paused.items()],
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.curves = {
            int(trial): {int(epoch): float(value) for epoch, value in points}
            for trial, points in state["curves"]
        }
        self.paused = {int(trial): int(epoch) for trial, epoch in state["paused"]}

    def _record(self, trial_id: int, epoch: int, value: float) -> None:
        if epoch < 1:
            raise ValueError(f"epochs are counted from 1, got {epoch}")
        paused_at = self.paused.get(trial_id)
        if paused_at is not None and epoch > paused_at:
            self._resumed(trial_id, paused_at)
        self.curves.setdefault(trial_id, {})[epoch] = float(value)

    def _resumed(self, trial_id: int, paused_at: int) -> None:
        """``trial_id``, paused at ``paused_at``, reports again: it was promoted."""
        del self.paused[trial_id]


class NoEarlyStopping(Scheduler):
    """Every trial trains to ``max_epochs``."""

    name = "none"

    def on_report(self, trial_id: int, epoch: int, value: float) -> Decision:
        self._record(trial_id, epoch, value)
        return CONTINUE
