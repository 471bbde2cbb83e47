"""The job loop with a fake trainer: real store, real API over HTTP, real strategies."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import HANG_SECONDS, LiveServer, free_port, make_settings
from fakes import ThreadExecutor, synthetic_metrics

from l2l.loop import JobLoop
from l2l.service.jobs import create_team, submit_job
from l2l.service.jobspec import JobSpec
from l2l.settings import Settings
from l2l.store import Store
from l2l.store.states import JobState, TrialState
from l2l.worker.executor import TrialBuildError, TrialTask

JOB = {
    "dataset": "wine",
    "space": "mlp",
    "budget": {"trials": 12, "concurrency": 3, "epochs": 1},
    "seed": 3,
}


@pytest.fixture
def live(store: Store, tmp_path: Path) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path, port=free_port(), max_retries=1, max_consecutive_failures=3)
    with LiveServer(store, settings) as server:
        yield server


def _submit(store: Store, settings: Settings, **changes: object) -> int:
    return submit_job(store, JobSpec.model_validate({**JOB, **changes}), settings).id


def _run_until_done(loop: JobLoop, job_id: int, seconds: float = HANG_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not loop.store.get_job(job_id).state.is_finished():
        assert time.monotonic() < deadline, f"job {job_id} did not finish in {seconds} s"
        if not loop.step():
            time.sleep(0.02)


@pytest.mark.parametrize("strategy", ["random", "evolution", "reinforce"])
def test_a_job_runs_to_its_budget(store: Store, live: LiveServer, strategy: str) -> None:
    executor = ThreadExecutor()
    job_id = _submit(store, live.settings, strategy=strategy)
    loop = JobLoop(store, executor, live.settings)
    _run_until_done(loop, job_id)

    job = store.get_job(job_id)
    trials, total = store.list_trials(job_id)
    assert job.state is JobState.COMPLETED and job.reason is None
    assert total == 12 and len(executor.submitted) == 12
    assert all(t.state is TrialState.COMPLETED and t.told for t in trials)
    assert [t.number for t in trials] == list(range(1, 13))  # "trial 1" is the first
    assert len({t.proposal_id for t in trials}) == 12
    best = max(trials, key=lambda t: t.reward or 0)
    assert job.best_trial_id == best.id and store.get_trial(best.id).is_best
    assert job.strategy_state is not None and job.strategy_state["next_id"] == 12
    # Each trial's intermediate report went through HTTP too.
    assert [p.step for p in store.trial_metrics(best.id)] == [0]


def test_concurrency_is_never_exceeded(store: Store, live: LiveServer) -> None:
    in_flight: list[int] = []

    def slow(task: TrialTask) -> dict[str, float]:
        time.sleep(0.1)
        return synthetic_metrics(task)

    job_id = _submit(store, live.settings, strategy="random")
    loop = JobLoop(store, ThreadExecutor(slow), live.settings)
    deadline = time.monotonic() + HANG_SECONDS
    while not store.get_job(job_id).state.is_finished():
        assert time.monotonic() < deadline
        loop.step()
        counts = store.trial_counts(job_id)
        in_flight.append(counts[TrialState.QUEUED] + counts[TrialState.RUNNING])
        time.sleep(0.01)
    assert max(in_flight) == 3


def test_build_errors_fail_without_retry_and_crashes_retry(store: Store, live: LiveServer) -> None:
    crashes: dict[int, int] = {}

    def flaky(task: TrialTask) -> dict[str, float]:
        if task.params["num_layers"] == 1:
            raise TrialBuildError("one layer is not allowed here")
        crashes[task.trial_id] = crashes.get(task.trial_id, 0) + 1
        if crashes[task.trial_id] == 1:
            raise RuntimeError("worker lost")
        return synthetic_metrics(task)

    job_id = _submit(store, live.settings, strategy="random", budget={"trials": 8, "concurrency": 2})
    loop = JobLoop(store, ThreadExecutor(flaky), live.settings)
    _run_until_done(loop, job_id)
    trials, _ = store.list_trials(job_id)
    for trial in trials:
        if trial.params["num_layers"] == 1:
            assert trial.state is TrialState.FAILED and trial.attempts == 1
            assert "cannot be built" in (trial.error or "")
        else:
            assert trial.state is TrialState.COMPLETED and trial.attempts == 2
            assert "worker lost" in (trial.error or "")  # the retried attempt's traceback is kept


def test_consecutive_failures_stop_the_job(store: Store, live: LiveServer) -> None:
    def always_nan(task: TrialTask) -> dict[str, float]:
        return {"val_accuracy": float("nan")}

    job_id = _submit(store, live.settings, strategy="evolution", budget={"trials": 20, "concurrency": 1})
    loop = JobLoop(store, ThreadExecutor(always_nan), live.settings)
    _run_until_done(loop, job_id)
    job = store.get_job(job_id)
    assert job.state is JobState.FAILED
    assert "3 trials failed in a row" in (job.reason or "") and "val_accuracy" in (job.reason or "")
    trials, total = store.list_trials(job_id)
    assert total == 3 and all(t.state is TrialState.FAILED and t.reward is None for t in trials)


def test_resources_the_cluster_lacks_fail_the_job_with_a_reason(store: Store, live: LiveServer) -> None:
    job_id = _submit(store, live.settings, budget={"trials": 2, "resources": {"GPU": 1}})
    JobLoop(store, ThreadExecutor(), live.settings).step()
    job = store.get_job(job_id)
    assert job.state is JobState.FAILED and "GPU" in (job.reason or "")
    assert store.list_trials(job_id)[1] == 0


@pytest.mark.parametrize("strategy", ["evolution", "reinforce"])
def test_a_new_controller_resumes_where_the_old_one_stopped(
    store: Store, live: LiveServer, strategy: str
) -> None:
    settings = live.settings.model_copy(
        update={"controller": live.settings.controller.model_copy(update={"lease_seconds": 0.5})}
    )
    job_id = _submit(store, settings, strategy=strategy, budget={"trials": 10, "concurrency": 2})
    first = JobLoop(store, ThreadExecutor(), settings, owner="first")
    while sum(1 for t in store.list_trials(job_id)[0] if t.told) < 4:
        first.step()
        time.sleep(0.01)
    state_when_stopped = store.get_job(job_id).strategy_state
    created_when_stopped = store.list_trials(job_id)[1]
    # The first controller dies here without a word: its lease runs out.
    time.sleep(0.6)

    second_executor = ThreadExecutor()
    second = JobLoop(store, second_executor, settings, owner="second")
    second.step()
    resumed = second._jobs[job_id].strategy
    assert resumed.get_state()["next_id"] >= state_when_stopped["next_id"]
    _run_until_done(second, job_id)

    job = store.get_job(job_id)
    trials, total = store.list_trials(job_id)
    assert job.state is JobState.COMPLETED and total == 10
    assert all(t.state is TrialState.COMPLETED and t.told for t in trials), [
        (t.number, t.state, t.told, t.error)
        for t in trials
        if t.state is not TrialState.COMPLETED or not t.told
    ]
    assert sorted(t.proposal_id for t in trials) == list(range(10))  # none lost, none twice
    # Trials the first controller had in flight were started again, not proposed again.
    restarted = {task.trial_id for task in second_executor.submitted if task.attempt > 1}
    assert len(second_executor.submitted) == 10 - created_when_stopped + len(restarted)


def test_pause_resume_and_cancel_while_the_loop_runs(store: Store, live: LiveServer) -> None:
    release = threading.Event()

    def held(task: TrialTask) -> dict[str, float]:
        release.wait(10)
        return synthetic_metrics(task)

    job_id = _submit(store, live.settings, strategy="random", budget={"trials": 8, "concurrency": 2})
    loop = JobLoop(store, ThreadExecutor(held), live.settings)
    loop.step()
    assert store.trial_counts(job_id)[TrialState.RUNNING] == 2
    store.change_job_state(job_id, None, "pause")
    release.set()
    deadline = time.monotonic() + HANG_SECONDS
    while store.trial_counts(job_id)[TrialState.COMPLETED] < 2 or store.list_trials(job_id, told=False)[1]:
        assert time.monotonic() < deadline
        loop.step()
        time.sleep(0.02)
    for _ in range(5):
        loop.step()
    assert store.list_trials(job_id)[1] == 2  # paused: results told, nothing new proposed
    assert store.get_job(job_id).state is JobState.PAUSED

    release.clear()
    store.change_job_state(job_id, None, "resume")
    loop.step()
    assert store.trial_counts(job_id)[TrialState.RUNNING] == 2  # carries on
    store.change_job_state(job_id, None, "cancel")
    loop.step()
    release.set()
    job = store.get_job(job_id)
    assert job.state is JobState.CANCELLED and job.reason == "cancelled by its team"
    assert store.trial_counts(job_id)[TrialState.CANCELLED] == 2
    assert job_id not in loop._jobs
    time.sleep(0.3)
    loop.step()  # the cancelled workers' late reports change nothing
    assert store.trial_counts(job_id)[TrialState.CANCELLED] == 2


def test_the_final_model_is_trained_after_the_search_and_downloadable(store: Store, live: LiveServer) -> None:
    team, key = create_team(store, "takers")
    spec = JobSpec.model_validate({**JOB, "strategy": "random", "budget": {"trials": 4, "concurrency": 2}})
    job_id = submit_job(store, spec, live.settings, team).id
    executor = ThreadExecutor()
    _run_until_done(JobLoop(store, executor, live.settings), job_id)

    job = store.get_job(job_id)
    final = store.get_final_model(job_id)
    assert job.state is JobState.COMPLETED and job.reason is None
    assert final is not None and final.state is TrialState.COMPLETED and final.trial_id == job.best_trial_id
    assert (
        len(executor.finals) == 1 and executor.finals[0].params == store.get_trial(job.best_trial_id).params
    )
    auth = {"Authorization": f"Bearer {key}"}
    shown = httpx.get(f"{live.url}/jobs/{job_id}", headers=auth).json()["final_model"]
    assert shown["state"] == "completed" and shown["test_metrics"]["test_accuracy"] > 0
    download = httpx.get(f"{live.url}{shown['downloads']['keras']}", headers=auth)
    assert download.status_code == 200 and download.content == f"model of trial {final.trial_id}".encode()
    assert "attachment" in download.headers["content-disposition"]
    # The final model's token is spent on its own report; a trial token or team key cannot upload one.
    again = httpx.post(
        f"{live.url}/jobs/{job_id}/model/report",
        data={"metrics": "{}"},
        files={"keras": ("m.keras", b"x")},
        headers=auth,
    )
    assert again.status_code == 403


def test_a_failing_final_model_is_retried_then_reported_on_the_job(store: Store, live: LiveServer) -> None:
    def broken_final(task: TrialTask) -> dict[str, float]:
        if task.final:
            raise RuntimeError("out of memory while retraining")
        return synthetic_metrics(task)

    job_id = _submit(store, live.settings, strategy="random", budget={"trials": 2, "concurrency": 2})
    executor = ThreadExecutor(broken_final)
    _run_until_done(JobLoop(store, executor, live.settings), job_id)
    job = store.get_job(job_id)
    final = store.get_final_model(job_id)
    assert job.state is JobState.COMPLETED and "the final model failed" in (job.reason or "")
    assert "out of memory" in (job.reason or "")
    assert final is not None and final.state is TrialState.FAILED and final.attempts == 2  # max_retries=1
    assert len(executor.finals) == 2


def _store_unchecked_job(store: Store, settings: Settings, objective: dict, **changes: object) -> int:
    # Straight to the store, as a job whose metrics cannot be known at submission would be.
    from l2l.service.jobspec import validate_job

    spec = validate_job(JobSpec.model_validate({**JOB, **changes}), settings)
    return store.create_job("unchecked", {**spec, "objective": objective}).id


def test_a_job_in_which_no_trial_succeeded_fails_and_says_why(store: Store, live: LiveServer) -> None:
    # Fewer trials than the consecutive-failure limit: the budget runs out, every trial failed.
    job_id = _store_unchecked_job(
        store, live.settings, {"metric": "val_acc", "mode": "max"}, budget={"trials": 2, "concurrency": 1}
    )
    _run_until_done(JobLoop(store, ThreadExecutor(), live.settings), job_id)

    job = store.get_job(job_id)
    assert job.state is JobState.FAILED, job.reason
    assert job.reason == (
        "no trial reported the objective metric 'val_acc'; metrics reported: accuracy, val_accuracy, val_loss"
    )
    assert store.get_final_model(job_id) is None and job.best_trial_id is None


def test_a_job_whose_trials_all_crash_fails_with_the_last_error(store: Store, live: LiveServer) -> None:
    def broken(task: TrialTask) -> dict[str, float]:
        raise TrialBuildError("the model does not fit in memory")

    job_id = _submit(store, live.settings, budget={"trials": 2, "concurrency": 1})
    _run_until_done(JobLoop(store, ThreadExecutor(broken), live.settings), job_id)

    job = store.get_job(job_id)
    assert job.state is JobState.FAILED
    assert job.reason is not None and job.reason.startswith("no trial succeeded (2 failed); the last error:")
    assert "does not fit in memory" in job.reason


def test_too_many_failures_in_a_row_name_the_missing_objective_metric(store: Store, live: LiveServer) -> None:
    job_id = _store_unchecked_job(store, live.settings, {"metric": "val_acc", "mode": "max"})
    _run_until_done(JobLoop(store, ThreadExecutor(), live.settings), job_id)

    job = store.get_job(job_id)
    assert job.state is JobState.FAILED
    assert job.reason == (
        "3 trials failed in a row; no trial reported the objective metric 'val_acc'; "
        "metrics reported: accuracy, val_accuracy, val_loss"
    )


def test_a_started_job_knows_the_chance_level_of_its_data(store: Store, live: LiveServer) -> None:
    job_id = _submit(store, live.settings, budget={"trials": 1, "concurrency": 1})
    JobLoop(store, ThreadExecutor(), live.settings).step()

    chance = store.get_job(job_id).chance
    # wine: 59 / 71 / 48 rows of its three classes; class_1 is the most frequent in any stratified split
    assert chance is not None and chance["metric"] == "accuracy" and chance["task"] == "classification"
    assert chance["guess"] == "always guessing the most frequent class ('class_1')"
    assert chance["validation"] == pytest.approx(14 / 36) and chance["test"] == pytest.approx(14 / 36)
