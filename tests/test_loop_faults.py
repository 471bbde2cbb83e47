"""The job loop survives what a request or the database throws at it (real store, real API).

A bad job fails with its reason and the others go on; a job that stopped the controller
twice while loading is quarantined; a lost lease drops only that job; a hung trial is
stopped at its time limit; a database outage is waited out and the job still finishes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import HANG_SECONDS, LiveServer, free_port, make_settings
from fakes import ThreadExecutor, synthetic_metrics

from l2l.loop import JobLoop
from l2l.service.jobs import submit_job
from l2l.service.jobspec import JobSpec
from l2l.settings import Settings
from l2l.store import StorageError, Store
from l2l.store.states import JobState, TrialState
from l2l.worker.executor import TrialTask

JOB = {
    "dataset": "wine",
    "space": "mlp",
    "strategy": "random",
    "budget": {"trials": 4, "concurrency": 2, "epochs": 1},
    "seed": 1,
    "final_model": False,
}


@pytest.fixture
def live(store: Store, tmp_path: Path) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path, port=free_port(), max_retries=1, max_consecutive_failures=3)
    with LiveServer(store, settings) as server:
        yield server


def _submit(store: Store, settings: Settings, **changes: object) -> int:
    return submit_job(store, JobSpec.model_validate({**JOB, **changes}), settings).id


def _run_until(loop: JobLoop, done: object, seconds: float = HANG_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not done in {seconds} s"
        if not loop.step():
            time.sleep(0.02)


def _finished(store: Store, *job_ids: int) -> object:
    return lambda: all(store.get_job(job_id).state.is_finished() for job_id in job_ids)


def _check_budget_exactly(store: Store, job_id: int, trials: int) -> None:
    job = store.get_job(job_id)
    rows, total = store.list_trials(job_id)
    assert job.state is JobState.COMPLETED, job.reason
    assert total == trials and sorted(t.proposal_id for t in rows) == list(range(trials))
    assert all(t.state is TrialState.COMPLETED and t.told for t in rows), [(t.state, t.error) for t in rows]


def test_a_job_that_cannot_be_loaded_fails_with_its_reason_and_others_run(
    store: Store, live: LiveServer
) -> None:
    settings = live.settings
    good = _submit(store, settings)
    # Stored behind the API's back, as a job from an older version or a bad migration would be.
    bad = store.create_job("unloadable", {**store.get_job(good).spec, "space": {"name": "no-such-space"}}).id
    loop = JobLoop(store, ThreadExecutor(), settings)
    _run_until(loop, _finished(store, good, bad))
    failed = store.get_job(bad)
    assert failed.state is JobState.FAILED and "search space cannot be loaded" in (failed.reason or "")
    _check_budget_exactly(store, good, 4)


@pytest.mark.parametrize("fault", [RuntimeError("the strategy broke"), SystemExit(3)])
def test_a_strategy_that_raises_fails_its_job_only(
    store: Store, live: LiveServer, fault: BaseException
) -> None:
    settings = live.settings
    victim = _submit(store, settings)
    loop = JobLoop(store, ThreadExecutor(), settings)
    loop.step()  # claims and starts the job
    other = _submit(store, settings, seed=2)

    def broken_ask() -> object:
        raise fault

    loop._jobs[victim].strategy.ask = broken_ask  # type: ignore[method-assign]
    _run_until(loop, _finished(store, victim, other))
    failed = store.get_job(victim)
    assert failed.state is JobState.FAILED and "internal error in the controller" in (failed.reason or "")
    _check_budget_exactly(store, other, 4)


def test_a_job_that_stopped_the_controller_twice_is_quarantined(store: Store, live: LiveServer) -> None:
    settings = live.settings
    poison = _submit(store, settings)
    # Two controllers claimed it and died before they had loaded it: claims and no start.
    for dead in ("dead-controller-1", "dead-controller-2"):
        assert store.claim_job(dead, lease_seconds=0) is not None
        time.sleep(0.01)  # the zero-second lease is over
    time.sleep(0.01)
    healthy = _submit(store, settings, seed=4)
    loop = JobLoop(store, ThreadExecutor(), settings)
    _run_until(loop, _finished(store, poison, healthy))
    quarantined = store.get_job(poison)
    assert quarantined.state is JobState.FAILED and "quarantined" in (quarantined.reason or "")
    assert store.list_trials(poison)[1] == 0 and store.claim_job("anyone", 30) is None
    _check_budget_exactly(store, healthy, 4)


def test_one_crash_while_loading_is_forgiven(store: Store, live: LiveServer) -> None:
    settings = live.settings
    job_id = _submit(store, settings)
    assert store.claim_job("dead-controller", lease_seconds=0) is not None
    time.sleep(0.01)
    loop = JobLoop(store, ThreadExecutor(), settings)
    _run_until(loop, _finished(store, job_id))
    _check_budget_exactly(store, job_id, 4)
    assert store.get_job(job_id).unfinished_starts == 0


def test_a_job_cancelled_while_it_loads_is_dropped_not_the_loop(store: Store, live: LiveServer) -> None:
    settings = live.settings
    job_id = _submit(store, settings)
    loop = JobLoop(store, ThreadExecutor(), settings)
    record = store.claim_job(loop.owner, 30)
    assert record is not None
    store.change_job_state(job_id, None, "cancel")  # submit-then-cancel at once
    loop._take(record)  # the claim the loop made before the cancel landed: LeaseLost inside
    assert job_id not in loop._jobs
    other = _submit(store, settings, seed=5)
    _run_until(loop, _finished(store, other))
    assert store.get_job(job_id).state is JobState.CANCELLED
    _check_budget_exactly(store, other, 4)


def test_cancels_racing_a_running_loop_leave_it_alive(store: Store, live: LiveServer) -> None:
    settings = live.settings

    def slowish(task: TrialTask) -> dict[str, float]:
        time.sleep(0.05)
        return synthetic_metrics(task)

    loop = JobLoop(store, ThreadExecutor(slowish), settings)
    stop = threading.Event()
    runner = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    runner.start()
    try:
        cancelled = []
        for index in range(6):
            job_id = _submit(store, settings, seed=10 + index)
            time.sleep(0.03 * index)  # cancel at different points of the job's life
            try:
                store.change_job_state(job_id, None, "cancel")
                cancelled.append(job_id)
            except ValueError:  # it already ended
                pass
        survivor = _submit(store, settings, seed=99)
        deadline = time.monotonic() + HANG_SECONDS
        while not store.get_job(survivor).state.is_finished():
            assert runner.is_alive(), "the job loop died"
            assert time.monotonic() < deadline, "the last job did not finish"
            time.sleep(0.1)
        assert runner.is_alive()
        assert cancelled and all(store.get_job(j).state is JobState.CANCELLED for j in cancelled)
        _check_budget_exactly(store, survivor, 4)
        assert [c.id for c in store.controllers()] == [loop.owner]  # its heartbeat is there
    finally:
        stop.set()
        runner.join(timeout=30)
    assert not runner.is_alive() and store.controllers() == []  # it said goodbye


def test_a_hung_trial_is_stopped_at_its_time_limit_and_retried_then_timed_out(
    store: Store, live: LiveServer
) -> None:
    settings = live.settings  # max_retries=1: two attempts in all
    release = threading.Event()
    hung: list[tuple[int, int]] = []

    def hangs_on_the_first_trial(task: TrialTask) -> dict[str, float]:
        if store.get_trial(task.trial_id).number == 1:  # trials are numbered from 1
            hung.append((task.trial_id, task.attempt))
            release.wait(60)  # a worker that never ends on its own
        return synthetic_metrics(task)

    job_id = _submit(
        store, settings, budget={"trials": 3, "concurrency": 3, "epochs": 1, "trial_timeout_seconds": 4}
    )
    executor = ThreadExecutor(hangs_on_the_first_trial)
    loop = JobLoop(store, executor, settings)
    try:
        _run_until(loop, _finished(store, job_id))
    finally:
        release.set()
    trials, _ = store.list_trials(job_id)
    stuck = trials[0]
    assert stuck.state is TrialState.TIMED_OUT and stuck.attempts == 2 and stuck.told
    assert "ran past the trial time limit of 4 s" in (stuck.error or "")
    assert [attempt for trial_id, attempt in hung if trial_id == stuck.id][-1] == 2
    assert executor.cancelled.count(stuck.id) == 2  # each attempt's worker was told to stop
    assert store.get_job(job_id).state is JobState.COMPLETED
    assert all(t.state is TrialState.COMPLETED and t.attempts == 1 for t in trials[1:])


def test_a_pass_cut_by_database_errors_is_redone_from_the_stored_state(
    store: Store, live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proposal that could not be stored, a result that could not be marked told: the loop
    reloads the strategy from the database, so no proposal is skipped and none told twice."""
    settings = live.settings.model_copy(
        update={
            "controller": live.settings.controller.model_copy(
                update={"database_retry_first_seconds": 0.05, "database_retry_max_seconds": 0.1}
            )
        }
    )
    job_id = _submit(
        store, settings, strategy="evolution", budget={"trials": 8, "concurrency": 2, "epochs": 1}
    )
    calls = {"add_trial": 0, "mark_told": 0}
    real_add, real_told = store.add_trial, store.mark_told

    def flaky(name: str, real: object, fail_on: int) -> object:
        def call(*args: object, **kwargs: object) -> object:
            calls[name] += 1
            if calls[name] == fail_on:  # after the strategy asked / learned: it is ahead now
                raise StorageError("database error: server closed the connection unexpectedly")
            return real(*args, **kwargs)  # type: ignore[operator]

        return call

    monkeypatch.setattr(store, "add_trial", flaky("add_trial", real_add, 3))
    monkeypatch.setattr(store, "mark_told", flaky("mark_told", real_told, 2))
    loop = JobLoop(store, ThreadExecutor(), settings)
    stop = threading.Event()
    runner = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + HANG_SECONDS
        while not store.get_job(job_id).state.is_finished():
            assert runner.is_alive() and time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        stop.set()
        runner.join(timeout=30)
    assert loop.failed_passes >= 2
    _check_budget_exactly(store, job_id, 8)
    assert store.get_job(job_id).strategy_state["next_id"] == 8  # type: ignore[index]
