"""Runs trials as Ray tasks: the one module that imports Ray.

With no address it starts an in-process Ray on this machine (the embedded default);
with ``address="auto"`` or ``"ray://head:10001"`` it joins an existing cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import ray
from ray.exceptions import RayTaskError, TaskCancelledError

from l2l.worker.executor import Outcome, ResourceUnavailable, TrialBuildError, TrialTask
from l2l.worker.trainer import run_trial

log = logging.getLogger(__name__)


class RayExecutor:
    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        if not ray.is_initialized():
            ray.init(
                address=address,
                num_cpus=num_cpus if address is None else None,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
                runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}},
            )
        # max_retries=0: the job loop owns the retry policy, with the error kept on the trial.
        self._train = ray.remote(max_retries=0)(_train_on_worker)
        self._running: dict[ray.ObjectRef, TrialTask] = {}

    def check_resources(self, resources: Mapping[str, float]) -> None:
        available = ray.cluster_resources()
        for name, amount in resources.items():
            have = available.get(name, 0.0)
            if have < amount:
                raise ResourceUnavailable(
                    f"a trial asks for {amount:g} {name} but the Ray cluster has {have:g}; "
                    f"lower budget.resources or add workers with {name}"
                )

    def submit(self, task: TrialTask, resources: Mapping[str, float]) -> None:
        ref = self._train.options(**_ray_options(resources)).remote(task.to_dict(), resources.get("CPU"))
        self._running[ref] = task

    def poll(self) -> list[Outcome]:
        if not self._running:
            return []
        done, _ = ray.wait(list(self._running), num_returns=len(self._running), timeout=0)
        return [self._outcome(ref, self._running.pop(ref)) for ref in done]

    def cancel(self, trial_id: int) -> None:
        for ref, task in list(self._running.items()):
            if task.trial_id == trial_id:
                ray.cancel(ref, force=True)
                del self._running[ref]

    def shutdown(self) -> None:
        for ref in list(self._running):
            ray.cancel(ref, force=True)
        self._running.clear()
        ray.shutdown()

    @staticmethod
    def _outcome(ref: ray.ObjectRef, task: TrialTask) -> Outcome:
        ended = {"attempt": task.attempt, "final": task.final, "kind": task.kind}
        try:
            ray.get(ref)
        except RayTaskError as error:
            cause = error.cause
            retryable = not isinstance(cause, TrialBuildError)
            return Outcome(task.trial_id, f"{type(cause).__name__}: {cause}\n{error}", retryable, **ended)
        except TaskCancelledError:
            return Outcome(task.trial_id, "the worker was cancelled", False, **ended)
        except Exception as error:  # a dead worker or node: worth another try
            return Outcome(task.trial_id, f"{type(error).__name__}: {error}", True, **ended)
        return Outcome(task.trial_id, **ended)


def _train_on_worker(task: dict[str, Any], cpus: float | None) -> dict[str, Any]:
    return run_trial(task, cpus)


def _ray_options(resources: Mapping[str, float]) -> dict[str, Any]:
    options: dict[str, Any] = {"num_cpus": resources.get("CPU", 1)}
    if "GPU" in resources:
        options["num_gpus"] = resources["GPU"]
    if "memory" in resources:
        options["memory"] = resources["memory"]
    custom = {name: amount for name, amount in resources.items() if name not in ("CPU", "GPU", "memory")}
    if custom:
        options["resources"] = custom
    return options
