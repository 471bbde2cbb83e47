"""A fake trainer for job-loop tests: no Keras, but real HTTP reports to the real API.

Final models are uploaded too, as a small stand-in file.

The executor runs each trial in a thread with a function that turns parameters into
metrics, and reports them through :class:`l2l.worker.reporter.Reporter`, as a Ray worker would.
A placement job's trial costs no training, so it runs the real worker
(:func:`l2l.worker.trainer.run_trial`, reporting over HTTP) unless ``placement`` replaces it.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from l2l.worker.executor import Outcome, ResourceUnavailable, TrialBuildError, TrialTask
from l2l.worker.reporter import Reporter

Objective = Callable[[TrialTask], Mapping[str, Any]]


def synthetic_metrics(task: TrialTask) -> dict[str, float]:
    """A cheap objective over the mlp space: more units, less dropout, a mid learning rate."""
    params = task.params
    score = 0.5 + params["units"] / 1024 - params["dropout"] / 4 - abs(params["num_layers"] - 2) / 20
    return {"val_accuracy": score, "val_loss": 1 - score, "accuracy": score}


class ThreadExecutor:
    def __init__(
        self,
        objective: Objective = synthetic_metrics,
        cpus: float = 4,
        placement: Callable[[TrialTask], Any] | None = None,
    ) -> None:
        self.objective = objective
        self.placement = placement or _real_placement_worker
        self.cpus = cpus
        self.submitted: list[TrialTask] = []
        self.finals: list[TrialTask] = []
        #: Trial ids the job loop asked to stop (a thread cannot be stopped: its late end is ignored).
        self.cancelled: list[int] = []
        self._done: list[Outcome] = []
        self._lock = threading.Lock()

    def check_resources(self, resources: Mapping[str, float]) -> None:
        if resources.get("GPU", 0) > 0 or resources.get("CPU", 0) > self.cpus:
            raise ResourceUnavailable(f"the test executor has {self.cpus} CPUs and no GPU")

    def submit(self, task: TrialTask, resources: Mapping[str, float]) -> None:
        (self.finals if task.final else self.submitted).append(task)
        threading.Thread(target=self._run, args=(task,), daemon=True).start()

    def _run(self, task: TrialTask) -> None:
        outcome = Outcome(task.trial_id, attempt=task.attempt, final=task.final, kind=task.kind)
        try:
            if task.kind == "placement":
                self.placement(task)
            else:
                self._train(task)
        except TrialBuildError as error:
            outcome = Outcome(
                task.trial_id, f"TrialBuildError: {error}", False, task.attempt, task.final, task.kind
            )
        except Exception as error:
            outcome = Outcome(
                task.trial_id, f"{type(error).__name__}: {error}", True, task.attempt, task.final, task.kind
            )
        with self._lock:
            self._done.append(outcome)

    def _train(self, task: TrialTask) -> None:
        metrics = self.objective(task)
        reporter = Reporter(task.report_url, task.trial_id, task.token, attempts=2)
        if task.final:
            self._upload_final_model(reporter, task, metrics)
        else:
            reporter.step(0, metrics)
            reporter.final(metrics)

    @staticmethod
    def _upload_final_model(reporter: Reporter, task: TrialTask, metrics: Mapping[str, Any]) -> None:
        # No Keras here: the "model file" is a stand-in whose bytes name the trial.
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.keras"
            path.write_bytes(f"model of trial {task.trial_id}".encode())
            test = {"test_accuracy": metrics.get("val_accuracy", 0.0)}
            reporter.final_model(task.job_id, test, {"keras": path})

    def poll(self) -> list[Outcome]:
        with self._lock:
            done, self._done = self._done, []
        return done

    def cancel(self, trial_id: int) -> None:
        self.cancelled.append(trial_id)

    def shutdown(self) -> None:
        pass


def _real_placement_worker(task: TrialTask) -> None:
    from l2l.worker.trainer import run_trial

    run_trial(task.to_dict(), reporter=Reporter(task.report_url, task.trial_id, task.token, attempts=2))
