"""Runs trials in long-lived Ray actors: the one module that imports Ray for training.

With no address it starts an in-process Ray on this machine (the embedded default);
with ``address="auto"`` or ``"ray://head:10001"`` it joins an existing cluster.

Each trial runs in a warm worker, a :class:`TrialWorker` actor that keeps Keras imported
and its datasets loaded (:func:`l2l.worker.trainer.cached_dataset`), trial after trial:
the first trial on a worker pays the framework's import, the next ones do not. Workers
are pooled by what they hold (Keras backend and Ray resources); one that ran the same
dataset is preferred. A worker is used by one trial at a time, so a job with
concurrency N ends up with N warm workers.

A worker that dies (a crash, the node lost, killed for memory) is dropped and its trial
ends with a retryable error: the job loop's usual policy runs it again, on a new worker.
A worker whose resident memory grew past ``max_rss_mb`` after a trial is replaced, so a
leak never takes a node down. Idle workers hold their resources, so they are stopped
after ``idle_seconds`` without a trial, and at once when a trial of another shape needs
their room.

A trial that does not fit in what the cluster has free waits here, first come first served,
rather than as a Ray actor waiting to be scheduled: such an actor would wait behind idle
workers that hold the room it needs (for up to ``idle_seconds``), where a trial waiting here
takes the first worker that comes free, or its room.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError, TaskCancelledError

from l2l.worker.executor import Outcome, ResourceUnavailable, TrialBuildError, TrialTask
from l2l.worker.packing import is_out_of_memory

log = logging.getLogger(__name__)

#: How often a trial waiting for room looks again when no trial of ours ends meanwhile.
WAITING_RECHECK_SECONDS = 0.5

#: How long a stopped worker's resources may still count as used in Ray's own figures.
RETURN_SECONDS = 10.0

#: Keras backends a worker can run.
BACKENDS = ("tensorflow", "jax")


class TrialWorker:
    """A Ray actor that runs trials one after another in one process (see the module doc).

    Two calls may run at once so that :meth:`info` answers while a trial trains.
    """

    def __init__(self) -> None:
        self.trials = 0

    def run(self, task: dict[str, Any], cpus: float | None) -> dict[str, Any]:
        from l2l.worker.trainer import run_trial

        run_trial(task, cpus)
        self.trials += 1
        return self.info()

    def info(self) -> dict[str, Any]:
        """Where this worker runs and what it holds: node id, pid, resident memory in MB,
        trials run, datasets loaded from their source, and the Keras backend."""
        import sys

        import psutil

        from l2l.worker import trainer

        keras = sys.modules.get("keras")
        return {
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "rss_mb": psutil.Process().memory_info().rss / 2**20,
            "trials": self.trials,
            "dataset_loads": trainer.dataset_loads,
            "backend": keras.backend.backend() if keras is not None else None,
        }


@dataclass
class _Worker:
    actor: Any
    key: tuple[Any, ...]
    resources: dict[str, float]
    last_dataset: str | None = None
    idle_since: float = field(default_factory=time.monotonic)


class RayExecutor:
    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        *,
        max_rss_mb: float = 4096.0,
        idle_seconds: float = 60.0,
    ) -> None:
        if not ray.is_initialized():
            ray.init(
                address=address,
                num_cpus=num_cpus if address is None else None,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
                # Ray starts its workers at niceness 15; trials are this service's work, and on a
                # busy host they starved behind every other process (CI under load: trials timed out).
                runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2", "RAY_worker_niceness": "0"}},
            )
        self.max_rss_mb = max_rss_mb
        self.idle_seconds = idle_seconds
        # max_restarts=0 and no task retries: the job loop owns the retry policy, with the
        # error kept on the trial; a dead worker is replaced by a new one on the next trial.
        self._worker_class = ray.remote(max_restarts=0, max_task_retries=0, max_concurrency=2)(TrialWorker)
        self._running: dict[ray.ObjectRef, tuple[TrialTask, _Worker]] = {}
        self._idle: list[_Worker] = []
        self._waiting: list[tuple[TrialTask, dict[str, float]]] = []
        # Workers we stopped lately: (when, what they held), which Ray counts as used a moment longer.
        self._returning: list[tuple[float, dict[str, float]]] = []

    # ---------------------------------------------------------------- the contract

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
        self._waiting.append((task, dict(resources)))
        self._start_waiting()

    def poll(self) -> list[Outcome]:
        self._stop_idle_workers()
        outcomes = []
        if self._running:
            done, _ = ray.wait(list(self._running), num_returns=len(self._running), timeout=0)
            outcomes = [self._ended(ref) for ref in done]
        self._start_waiting()  # the workers that just ended, or their room, go to waiting trials
        return outcomes

    def wait(self, timeout: float) -> bool:
        """Block until a trial ends or ``timeout`` seconds pass; True if one ended."""
        if self._waiting:
            # Room can also come free without a trial of ours ending (a killed worker's
            # resources return a moment later, another user's actor ends): look again soon.
            timeout = min(timeout, WAITING_RECHECK_SECONDS)
        if not self._running:
            time.sleep(timeout)
            return False
        done, _ = ray.wait(list(self._running), num_returns=1, timeout=timeout)
        return bool(done)

    def cancel(self, trial_id: int) -> None:
        self._waiting = [(task, resources) for task, resources in self._waiting if task.trial_id != trial_id]
        for ref, (task, worker) in list(self._running.items()):
            if task.trial_id == trial_id:
                # An actor's task cannot be forced to stop; the worker is replaced instead.
                del self._running[ref]
                self._kill(worker)

    def shutdown(self) -> None:
        for _, worker in self._running.values():
            self._kill(worker)
        for worker in self._idle:
            self._kill(worker)
        self._running.clear()
        self._idle.clear()
        self._waiting.clear()
        ray.shutdown()

    # ------------------------------------------------------------------- workers

    def workers(self) -> list[dict[str, Any]]:
        """:meth:`TrialWorker.info` of every live worker, busy or idle (each answers even mid-trial)."""
        actors = [worker.actor for _, worker in self._running.values()] + [w.actor for w in self._idle]
        infos = []
        for actor in actors:
            try:
                infos.append(ray.get(actor.info.remote(), timeout=60))
            except RayActorError:
                continue  # died since; the loop hears of it through its trial
        return infos

    def _start_waiting(self) -> None:
        """Start waiting trials in order while a worker or room for one is there."""
        while self._waiting:
            task, resources = self._waiting[0]
            worker = self._worker_for(task, resources)
            if worker is None:
                return  # first come, first served: the next trial waits behind this one
            self._waiting.pop(0)
            ref = worker.actor.run.remote(task.to_dict(), resources.get("CPU"))
            self._running[ref] = (task, worker)

    def _worker_for(self, task: TrialTask, resources: Mapping[str, float]) -> _Worker | None:
        """An idle worker of the trial's shape, else a new one if there is room; else None."""
        backend = task.backend or "tensorflow"
        if backend not in BACKENDS:
            raise ValueError(f"unknown Keras backend {backend!r}; use one of {', '.join(BACKENDS)}")
        key = (backend, tuple(sorted(resources.items())))
        dataset = _dataset_key(task)
        fitting = [w for w in self._idle if w.key == key]
        if fitting:
            worker = next((w for w in fitting if w.last_dataset == dataset), fitting[0])
            self._idle.remove(worker)
        else:
            if not self._make_room(resources):
                return None
            env = {"KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
            if 0 < resources.get("GPU", 0) < 1:
                # Each framework takes most of a GPU's memory up front unless told otherwise.
                env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{resources['GPU']:.3f}"
                env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
            options = _ray_options(resources)
            actor = self._worker_class.options(**options, runtime_env={"env_vars": env}).remote()
            worker = _Worker(actor, key, dict(resources))
        worker.last_dataset = dataset
        return worker

    def _make_room(self, resources: Mapping[str, float]) -> bool:
        """Stop idle workers, least recently used first, until the cluster has ``resources``
        free (idle workers hold theirs); False if even that is not enough now."""
        free = self._free()
        short = {name: amount - free.get(name, 0.0) for name, amount in resources.items()}
        for worker in sorted(self._idle, key=lambda w: w.idle_since):
            if all(amount <= 1e-9 for amount in short.values()):
                break
            if not any(worker.resources.get(name, 0) > 0 for name, amount in short.items() if amount > 0):
                continue
            self._idle.remove(worker)
            self._kill(worker)
            for name in short:
                short[name] -= worker.resources.get(name, 0.0)
        return all(amount <= 1e-9 for amount in short.values())

    def _free(self) -> dict[str, float]:
        """What the cluster can still give a new worker.

        Ray's own count, but never more than the cluster's total less what our live workers
        hold: a worker just created is not counted by Ray until it is scheduled, and two
        trials submitted back to back must not both see the same room.
        """
        now = time.monotonic()
        self._returning = [(when, held) for when, held in self._returning if now - when < RETURN_SECONDS]
        ours = _sum([w.resources for _, w in self._running.values()] + [w.resources for w in self._idle])
        returning = _sum([held for _, held in self._returning])
        available, total = ray.available_resources(), ray.cluster_resources()
        return {
            name: min(available.get(name, 0.0) + returning.get(name, 0.0), total[name] - ours.get(name, 0.0))
            for name in total
        }

    def _kill(self, worker: _Worker) -> None:
        ray.kill(worker.actor, no_restart=True)
        self._returning.append((time.monotonic(), worker.resources))

    def _stop_idle_workers(self) -> None:
        now = time.monotonic()
        for worker in [w for w in self._idle if now - w.idle_since > self.idle_seconds]:
            self._idle.remove(worker)
            self._kill(worker)

    def _ended(self, ref: ray.ObjectRef) -> Outcome:
        task, worker = self._running.pop(ref)
        ended = {"attempt": task.attempt, "final": task.final, "kind": task.kind}
        try:
            info = ray.get(ref)
        except RayTaskError as error:  # the trial raised; the worker is fine
            self._release(worker)
            cause = error.cause
            retryable = not isinstance(cause, TrialBuildError)
            text = f"{type(cause).__name__}: {cause}\n{error}"
            return Outcome(task.trial_id, text, retryable, out_of_memory=is_out_of_memory(text), **ended)
        except TaskCancelledError:
            self._kill(worker)
            return Outcome(task.trial_id, "the worker was cancelled", False, **ended)
        except Exception as error:  # the worker died (crash, node lost, memory): a new one next time
            self._kill(worker)
            text = f"the worker died: {type(error).__name__}: {error}"
            return Outcome(task.trial_id, text, True, out_of_memory=is_out_of_memory(text), **ended)
        if info["rss_mb"] > self.max_rss_mb:
            log.warning(
                "worker pid %s on node %s uses %.0f MB after trial %s (limit %.0f): replacing it",
                info["pid"], info["node_id"], info["rss_mb"], task.trial_id, self.max_rss_mb,
            )  # fmt: skip
            self._kill(worker)
        else:
            self._release(worker)
        return Outcome(task.trial_id, worker=info, **ended)

    def _release(self, worker: _Worker) -> None:
        worker.idle_since = time.monotonic()
        self._idle.append(worker)


def _sum(holdings: list[dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for held in holdings:
        for name, amount in held.items():
            total[name] = total.get(name, 0.0) + amount
    return total


def _dataset_key(task: TrialTask) -> str:
    return repr(sorted(task.dataset.items())) if task.dataset else ""


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
