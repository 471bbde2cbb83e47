"""An executor that runs each trial inline, in this process, through the real worker code.

:class:`InlineExecutor` calls :func:`l2l.worker.trainer.run_trial` inside ``submit`` and hands
the reports to :func:`l2l.service.jobs.report_trial` directly (:class:`ServiceReporter`): the
same code path as a Ray worker reporting over HTTP, without Ray or a web server. It
suits trials that cost nothing, such as tabular NAS-Bench-201 look-ups (the benchmark
harness, :mod:`l2l.bench.nb201`); a trial that trains blocks the job loop while it runs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from l2l.service.jobs import report_trial
from l2l.store import Store
from l2l.worker.executor import Outcome, ResourceUnavailable, TrialBuildError, TrialTask

if TYPE_CHECKING:
    from search_spaces.nb201_table import NB201Table


class ServiceReporter:
    """A worker's reporter that calls the service layer in-process instead of POSTing."""

    def __init__(self, store: Store, trial_id: int, token: str) -> None:
        self.store = store
        self.trial_id = trial_id
        self.token = token

    def step(self, step: int, metrics: Mapping[str, Any]) -> Any:
        return report_trial(self.store, self.trial_id, self.token, metrics, step=step)

    def final(self, metrics: Mapping[str, Any], step: int | None = None) -> Any:
        return report_trial(self.store, self.trial_id, self.token, metrics, step=step, final=True)


class InlineExecutor:
    """Runs each submitted trial to its end before ``submit`` returns; ``poll`` hands out the ends.

    ``table`` is the NAS-Bench-201 table tabular trials look up (default: the table file).
    """

    def __init__(self, store: Store, table: NB201Table | None = None) -> None:
        self.store = store
        self.table = table
        self._ended: list[Outcome] = []

    def check_resources(self, resources: Mapping[str, float]) -> None:
        if any(amount > 0 for name, amount in resources.items() if name not in ("CPU", "memory")):
            raise ResourceUnavailable(f"the inline executor runs on this process's CPU only, not {resources}")

    def submit(self, task: TrialTask, resources: Mapping[str, float]) -> None:
        from l2l.worker.trainer import run_trial

        reporter = ServiceReporter(self.store, task.trial_id, task.token)
        try:
            run_trial(task.to_dict(), reporter=reporter, table=self.table)
        except TrialBuildError as error:
            outcome = Outcome(task.trial_id, f"TrialBuildError: {error}", False, task.attempt, kind=task.kind)
        except Exception as error:  # the job loop's error policy decides about retries
            outcome = Outcome(
                task.trial_id, f"{type(error).__name__}: {error}", True, task.attempt, kind=task.kind
            )
        else:
            outcome = Outcome(task.trial_id, attempt=task.attempt, kind=task.kind)
        self._ended.append(outcome)

    def poll(self) -> list[Outcome]:
        ended, self._ended = self._ended, []
        return ended

    def wait(self, timeout: float) -> bool:
        # Trials end inside submit(); an ended one not yet polled is news at once.
        if self._ended:
            return True
        time.sleep(timeout)
        return False

    def cancel(self, trial_id: int) -> None:
        pass  # nothing runs between calls

    def shutdown(self) -> None:
        pass
