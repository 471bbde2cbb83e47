"""Faults on real Ray workers: a killed worker's trial is retried; a hung one is stopped at
its time limit (the Ray task cancelled, its process gone) and ends ``timed_out``."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LiveServer, free_port, make_settings
from service_process import alive, wait_until

from l2l.client.supervisor import descendants
from l2l.loop import JobLoop
from l2l.service.jobs import submit_job
from l2l.service.jobspec import JobSpec
from l2l.store import Store
from l2l.store.states import JobState, TrialState

JOB = {
    "dataset": "wine",
    "space": "mlp",
    "strategy": "random",
    "budget": {"trials": 1, "concurrency": 1, "epochs": 60},
    "seed": 2,
    "final_model": False,
}


@pytest.fixture(scope="module")
def ray_executor() -> Iterator[object]:
    from l2l.worker.ray_executor import RayExecutor

    executor = RayExecutor(num_cpus=2)
    yield executor
    executor.shutdown()


def _workers_running(title: str) -> list[int]:
    """Ray worker processes (below this one) whose title says they run ``title``."""
    found = []
    for pid in descendants(os.getpid()):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f"ray::{title}" in command:
            found.append(pid)
    return found


def _reported_a_step(store: Store, job_id: int) -> bool:
    trials, total = store.list_trials(job_id)
    return total > 0 and bool(store.trial_metrics(trials[0].id))


def _run(loop: JobLoop, job_id: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not loop.store.get_job(job_id).state.is_finished():
        assert time.monotonic() < deadline, f"the job did not finish in {seconds} s"
        if not loop.step():
            time.sleep(0.1)


@pytest.mark.slow
def test_a_killed_ray_worker_s_trial_is_retried(
    sqlite_store: Store, tmp_path: Path, ray_executor: object
) -> None:
    settings = make_settings(tmp_path, port=free_port(), max_retries=2)
    with LiveServer(sqlite_store, settings):
        job_id = submit_job(sqlite_store, JobSpec.model_validate(JOB), settings).id
        loop = JobLoop(sqlite_store, ray_executor, settings)  # type: ignore[arg-type]
        deadline = time.monotonic() + 180
        while not _reported_a_step(sqlite_store, job_id):
            assert time.monotonic() < deadline, "the trial did not start training"
            loop.step()
            time.sleep(0.1)
        workers = _workers_running("TrialWorker")  # the warm actor that runs the trial
        assert len(workers) == 1, workers
        os.kill(workers[0], signal.SIGKILL)  # the worker dies mid-training (OOM killer, node loss)
        _run(loop, job_id, 300)
    trial = sqlite_store.list_trials(job_id)[0][0]
    assert sqlite_store.get_job(job_id).state is JobState.COMPLETED
    assert trial.state is TrialState.COMPLETED and trial.attempts == 2 and trial.told
    assert trial.error  # the first attempt's crash is kept on the trial


@pytest.mark.slow
def test_a_hung_ray_worker_is_cancelled_at_its_time_limit(
    sqlite_store: Store, tmp_path: Path, ray_executor: object
) -> None:
    import ray

    from l2l.worker.ray_executor import RayExecutor, TrialWorker

    class HangingWorker(TrialWorker):
        def run(self, task: dict, cpus: float | None) -> dict:
            time.sleep(3600)  # a worker stuck in a deadlock or on a dead mount
            return {}

    hanging = RayExecutor()  # joins the module's Ray; its workers take trials and never end them
    hanging._worker_class = ray.remote(max_restarts=0, max_task_retries=0, max_concurrency=2)(HangingWorker)
    settings = make_settings(tmp_path, port=free_port(), max_retries=1)
    budget = {**JOB["budget"], "trial_timeout_seconds": 8}  # type: ignore[dict-item]
    with LiveServer(sqlite_store, settings):
        job_id = submit_job(sqlite_store, JobSpec.model_validate({**JOB, "budget": budget}), settings).id
        loop = JobLoop(sqlite_store, hanging, settings)  # type: ignore[arg-type]
        seen: set[int] = set()
        deadline = time.monotonic() + 180
        while not sqlite_store.get_job(job_id).state.is_finished():
            assert time.monotonic() < deadline, "the job did not finish"
            seen.update(_workers_running("HangingWorker"))
            if not loop.step():
                time.sleep(0.1)
    trial = sqlite_store.list_trials(job_id)[0][0]
    assert trial.state is TrialState.TIMED_OUT and trial.attempts == 2 and trial.told
    assert "ran past the trial time limit of 8 s" in (trial.error or "")
    assert seen, "no hung worker was seen"
    wait_until("the hung workers' processes to end", lambda: not any(alive(pid) for pid in seen), 30)
