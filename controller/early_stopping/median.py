"""The median stopping rule (Golovin et al., "Google Vizier", KDD 2017).

At epoch ``e >= grace`` a trial stops if its best value so far is below the median of the
other trials' running means up to ``e`` (over those that reached ``e``, once at least
``min_trials`` have). It never promotes: a stopped trial's result at its epoch is final.
"""

from __future__ import annotations

import statistics

from controller.early_stopping.base import CONTINUE, STOP, Decision, Scheduler


class MedianStopping(Scheduler):
    """``grace``: the first epoch at which a trial may stop; ``min_trials``: others needed to judge."""

    name = "median"

    def __init__(self, max_epochs: int, grace: int = 1, min_trials: int = 3) -> None:
        super().__init__(max_epochs)
        if grace < 1:
            raise ValueError(f"grace must be at least 1 epoch, got {grace}")
        if min_trials < 1:
            raise ValueError(f"min_trials must be at least 1, got {min_trials}")
        self.grace = grace
        self.min_trials = min_trials

    def on_report(self, trial_id: int, epoch: int, value: float) -> Decision:
        self._record(trial_id, epoch, value)
        if epoch < self.grace or epoch >= self.max_epochs:
            return CONTINUE
        others = [
            statistics.fmean(v for e, v in curve.items() if e <= epoch)
            for trial, curve in self.curves.items()
            if trial != trial_id and epoch in curve
        ]
        if len(others) < self.min_trials:
            return CONTINUE
        best = max(v for e, v in self.curves[trial_id].items() if e <= epoch)
        return STOP if best < statistics.median(others) else CONTINUE
