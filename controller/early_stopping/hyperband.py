"""Asynchronous Hyperband (Li et al., JMLR 2018; asynchronous as in ASHA, MLSys 2020): brackets of ASHA.

Bracket ``b`` runs ASHA with its first rung at ``grace * eta**b`` epochs; the last bracket
has no rung at all (its trials train to ``max_epochs``). Hyperband hedges the first-rung
choice: where early epochs predict the last, the aggressive brackets find the best
configurations cheaply; where they do not, the conservative ones still do.

A trial's bracket is a function of its id alone (a fixed cycle, each bracket as often as
Hyperband gives it configurations: ``ceil(B / (b_rungs + 1) * eta**b_rungs)`` for ``b_rungs``
halvings out of ``B`` brackets), so every process that sees the same trial puts it in the
same bracket without sharing state.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from controller.early_stopping.asha import Asha, rung_epochs
from controller.early_stopping.base import Decision, Scheduler


class Hyperband(Scheduler):
    """Brackets of :class:`~controller.early_stopping.asha.Asha`; settings as ASHA's."""

    name = "hyperband"

    def __init__(self, max_epochs: int, grace: int = 1, eta: float = 3.0) -> None:
        super().__init__(max_epochs)
        first_rungs = rung_epochs(grace, eta, max_epochs)
        self.grace = grace
        self.eta = eta
        #: one ASHA per bracket; the last (grace = max_epochs) never stops a trial
        self.brackets = [Asha(max_epochs, rung, eta) for rung in first_rungs] + [
            Asha(max_epochs, max_epochs, eta)
        ]
        total = len(self.brackets)
        counts = [math.ceil(total / (halvings + 1) * eta**halvings) for halvings in range(total - 1, -1, -1)]
        self.cycle = _smooth_round_robin(counts)

    def bracket(self, trial_id: int) -> int:
        """The bracket of ``trial_id`` (0: the most aggressive)."""
        return self.cycle[trial_id % len(self.cycle)]

    def rungs(self, trial_id: int) -> tuple[int, ...]:
        return self.brackets[self.bracket(trial_id)].rungs(trial_id)

    def on_report(self, trial_id: int, epoch: int, value: float) -> Decision:
        self._record(trial_id, epoch, value)
        bracket = self.brackets[self.bracket(trial_id)]
        decision = bracket.on_report(trial_id, epoch, value)
        self.paused = {t: e for b in self.brackets for t, e in b.paused.items()}
        return decision

    def promotion(self, exclude: Collection[int] = ()) -> tuple[int, int] | None:
        # the bracket whose promotion is furthest along first: it is closest to a finished trial
        found = [p for b in self.brackets if (p := b.promotion(exclude)) is not None]
        return max(found, key=lambda p: (p[1], -p[0])) if found else None

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "brackets": [b.get_state() for b in self.brackets]}

    def set_state(self, state: Mapping[str, Any]) -> None:
        super().set_state(state)
        if len(state["brackets"]) != len(self.brackets):
            raise ValueError(
                f"the state has {len(state['brackets'])} brackets, these settings {len(self.brackets)}"
            )
        for bracket, saved in zip(self.brackets, state["brackets"], strict=True):
            bracket.set_state(saved)


def _smooth_round_robin(counts: list[int]) -> list[int]:
    """Each index ``i`` ``counts[i]`` times, spread evenly (nginx's smooth weighted round robin)."""
    total = sum(counts)
    current = [0] * len(counts)
    order = []
    for _ in range(total):
        current = [c + w for c, w in zip(current, counts, strict=True)]
        pick = max(range(len(counts)), key=lambda i: (current[i], -i))
        current[pick] -= total
        order.append(pick)
    return order
