"""Early stopping in jobs: real store (SQLite and PostgreSQL), the real service and job loop.

The loop tests use a fake trainer that reports a learning curve made from the parameters
(through the real service, as the in-process executor does); the checkpoint tests train for
real on tiny data.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import HANG_SECONDS, LiveServer, free_port, make_settings

import controller
from l2l.loop import JobLoop
from l2l.service.jobs import (
    early_stopping_scheduler,
    new_report_token,
    report_trial,
    submit_job,
)
from l2l.service.jobspec import InvalidJob, JobSpec, validate_job
from l2l.settings import Settings
from l2l.store import Store
from l2l.store.states import JobState, TrialState
from l2l.worker.executor import Outcome, ResourceUnavailable, TrialBuildError, TrialTask
from l2l.worker.inline_executor import ServiceReporter
from l2l.worker.reporter import Reporter

EPOCHS = 9
JOB: dict[str, Any] = {
    "dataset": "wine",
    "space": "mlp",
    "budget": {"trials": 9, "concurrency": 2, "epochs": EPOCHS},
    "seed": 5,
    "final_model": False,
    "early_stopping": {"name": "asha", "settings": {"grace": 1, "eta": 3}},
}


def curve(params: Mapping[str, Any], epoch: int) -> float:
    """A made-up learning curve: each configuration has its own ceiling and speed (from 1)."""
    digest = hashlib.sha256(repr(sorted(params.items())).encode()).digest()
    ceiling, speed = 0.5 + digest[0] / 512, 0.5 + digest[1] / 64
    return ceiling * (1 - math.exp(-epoch / speed))


class CurveExecutor:
    """Runs each trial in ``submit``, reporting ``curve`` epoch by epoch through the service.

    It obeys "stop" and starts a continuation at its ``start_epoch``. ``die_after``: from
    that many submissions on, a trial reports its first epoch and its worker dies (no end).
    """

    def __init__(self, store: Store, die_after: int | None = None) -> None:
        self.store = store
        self.die_after = die_after
        self.submitted: list[TrialTask] = []
        self._ended: list[Outcome] = []

    def check_resources(self, resources: Mapping[str, float]) -> None:
        if resources.get("GPU", 0):
            raise ResourceUnavailable("no GPU here")

    def submit(self, task: TrialTask, resources: Mapping[str, float]) -> None:
        self.submitted.append(task)
        dies = self.die_after is not None and len(self.submitted) > self.die_after
        reporter = ServiceReporter(self.store, task.trial_id, task.token)
        for step in range(task.start_epoch, task.epochs):
            metrics = {"val_accuracy": curve(task.params, step + 1)}
            if reporter.step(step, metrics).decision == "stop":
                break
            if dies:
                return  # the worker died with its controller: no outcome, the trial stays running
        else:
            reporter.final({**metrics, "epochs": task.epochs})
        self._ended.append(Outcome(task.trial_id, attempt=task.attempt))

    def poll(self) -> list[Outcome]:
        ended, self._ended = self._ended, []
        return ended

    def cancel(self, trial_id: int) -> None:
        pass

    def shutdown(self) -> None:
        pass


def _settings(tmp_path: Path, **controller_settings: float) -> Settings:
    return make_settings(tmp_path, port=free_port(), **controller_settings)


def _run(loop: JobLoop, job_id: int, seconds: float = HANG_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not loop.store.get_job(job_id).state.is_finished():
        assert time.monotonic() < deadline, f"job {job_id} did not finish in {seconds} s"
        if not loop.step():
            time.sleep(0.01)


def _check_lines(store: Store, job_id: int, trials_budget: int) -> None:
    """Every configuration proposed once; each continuation resumes a trial stopped at its rung."""
    trials, _ = store.list_trials(job_id)
    firsts = {t.id: t for t in trials if t.resumes_trial_id is None}
    continuations = [t for t in trials if t.resumes_trial_id is not None]
    assert sorted(t.proposal_id for t in firsts.values()) == list(range(trials_budget))
    assert all(t.told and t.state.is_finished() for t in trials)
    starts = [(t.resumes_trial_id, t.start_epoch) for t in continuations]
    assert len(starts) == len(set(starts)), "a configuration was promoted twice from one rung"
    for t in continuations:
        line = [u for u in trials if u.line == t.line and u.number < t.number]
        # the trial before it in its line stopped exactly at the rung it resumes from
        assert line[-1].metrics["epochs"] == t.start_epoch and line[-1].metrics["early_stopped"] == 1
        steps = [p.step for p in store.trial_metrics(t.id)]
        assert steps and steps[0] == t.start_epoch, "a continuation trained again from epoch 1"


# ---------------------------------------------------------------------------- the job option


def test_the_job_option_is_validated_and_stored_complete(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    job = validate_job(JobSpec.model_validate({**JOB, "strategy": "model_based"}), settings)
    assert job["early_stopping"] == {"name": "asha", "settings": {"grace": 1, "eta": 3.0}}
    assert job["strategy"]["options"]["fidelity_input"] is True  # model_based learns from curves
    plain = validate_job(JobSpec.model_validate({**JOB, "early_stopping": None}), settings)
    assert "early_stopping" not in plain
    for option, message in [
        ("asah", "unknown rule 'asah'"),
        ({"name": "median", "settings": {"eta": 3}}, "unknown setting(s) ['eta'] for median"),
        ({"name": "asha", "settings": {"grace": 9}}, "grace is 9 epochs, but trials train only 9"),
    ]:
        with pytest.raises(InvalidJob, match="early_stopping") as raised:
            validate_job(JobSpec.model_validate({**JOB, "early_stopping": option}), settings)
        assert message in str(raised.value)


def test_an_unknown_rule_is_a_422_over_http(store: Store, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from api.main import create_app
    from l2l.service.jobs import create_team

    settings = _settings(tmp_path)
    _, key = create_team(store, "es-team")
    with TestClient(create_app(settings, store)) as client:
        response = client.post(
            "/jobs", json={**JOB, "early_stopping": "sha"}, headers={"Authorization": f"Bearer {key}"}
        )
    assert response.status_code == 422
    assert "unknown rule 'sha'" in response.text


# ------------------------------------------------------------------- the service's decisions


def _running_trials(store: Store, settings: Settings, count: int, **changes: Any) -> tuple[int, list]:
    job_id = submit_job(store, JobSpec.model_validate({**JOB, **changes}), settings).id
    store.claim_job("tester", 30)
    trials = []
    for number in range(count):
        trial = store.add_trial(job_id, "tester", number, {"units": number}, {})
        token, token_hash = new_report_token()
        store.set_trial_state(trial.id, TrialState.RUNNING, token_hash=token_hash)
        trials.append((trial, token))
    return job_id, trials


def test_a_stopped_trial_keeps_its_curve_and_completes_at_its_epoch(store: Store, tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    job_id, trials = _running_trials(store, settings, 3)
    (a, token_a), (b, token_b), (c, token_c) = trials
    # epoch 1 (step 0) of three trials: a third of three is one, and b (0.9) is that one
    first = report_trial(store, a.id, token_a, {"val_accuracy": 0.5, "loss": 1.0}, step=0)
    assert first.decision == "stop" and first.trial.state is TrialState.COMPLETED
    assert first.trial.reward == pytest.approx(0.5)
    assert first.trial.metrics == {"val_accuracy": 0.5, "loss": 1.0, "epochs": 1, "early_stopped": 1}
    assert [(p.step, p.values["val_accuracy"]) for p in store.trial_metrics(a.id)] == [(0, 0.5)]
    assert report_trial(store, b.id, token_b, {"val_accuracy": 0.9}, step=0).decision == "stop"
    assert report_trial(store, c.id, token_c, {"val_accuracy": 0.6}, step=0).decision == "stop"
    # the worker's final report after a stop changes nothing
    again = report_trial(store, a.id, token_a, {"val_accuracy": 0.7}, final=True)
    assert not again.changed and again.trial.reward == pytest.approx(0.5)
    scheduler, _ = early_stopping_scheduler(store, store.get_job(job_id))
    assert scheduler.promotion() == (b.number, 1)


def test_decisions_are_the_same_from_any_replica_and_a_repeat(store: Store, tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    job_id, trials = _running_trials(
        store, settings, 4, early_stopping={"name": "median", "settings": {"grace": 2, "min_trials": 2}}
    )
    curves = [[0.5, 0.6, 0.7], [0.3, 0.4, 0.5], [0.1, 0.2, 0.3], [0.6, 0.7, 0.8]]
    answers = {}
    for epoch in range(3):
        for (trial, token), values in zip(trials, curves, strict=True):
            if store.get_trial(trial.id).state is TrialState.RUNNING:
                answers[trial.number, epoch] = report_trial(
                    store, trial.id, token, {"val_accuracy": values[epoch]}, step=epoch
                ).decision
    slow = trials[2][0].number  # the third trial's curve
    assert answers[slow, 1] == "stop"  # 0.2 is below the median of the others' running means
    assert all(d == "continue" for (n, e), d in answers.items() if n != slow)
    # a second replica replays the same rows: same decisions, and a repeat is answered alike
    _, decisions = early_stopping_scheduler(store, store.get_job(job_id))
    assert {(n, e): d.value for (n, e), d in decisions.items()} == {
        (n, e + 1): d for (n, e), d in answers.items()
    }


def test_the_decision_travels_over_http(store: Store, tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with LiveServer(store, settings):
        _, [(trial, token)] = _running_trials(store, settings, 1)
        reply = Reporter(settings.report_url, trial.id, token).step(0, {"val_accuracy": 0.4})
    assert reply["decision"] == "stop" and reply["trial"]["state"] == "completed"


# -------------------------------------------------------------------------- the job loop


@pytest.mark.parametrize("strategy", controller.strategy_names())
def test_early_stopping_works_with_every_strategy(store: Store, tmp_path: Path, strategy: str) -> None:
    if strategy.startswith("optuna"):
        pytest.importorskip("optuna", reason="Optuna's TPE comes with the bench extra")
    settings = _settings(tmp_path)
    job_id = submit_job(store, JobSpec.model_validate({**JOB, "strategy": strategy}), settings).id
    loop = JobLoop(store, CurveExecutor(store), settings)
    _run(loop, job_id)

    job = store.get_job(job_id)
    assert job.state is JobState.COMPLETED, job.reason
    trials, _ = store.list_trials(job_id)
    _check_lines(store, job_id, 9)
    stopped = [t for t in trials if t.metrics.get("early_stopped")]
    assert stopped and all(t.reward is not None and t.metrics["epochs"] < EPOCHS for t in stopped)
    assert any(t.resumes_trial_id is not None for t in trials), "ASHA never promoted anything"
    # whatever reached the last epoch did so through promotions from the rungs
    assert any(t.metrics.get("epochs") == EPOCHS for t in trials)
    if strategy == "model_based":
        state = job.strategy_state or {}
        fidelities = state["fidelities"]
        assert min(fidelities) < 1 and len(fidelities) == len(state["history"])


@pytest.mark.parametrize("rule", ["hyperband", "median"])
def test_the_other_rules_run_a_job(store: Store, tmp_path: Path, rule: str) -> None:
    settings = _settings(tmp_path)
    spec = {**JOB, "strategy": "random", "early_stopping": rule, "budget": {**JOB["budget"], "trials": 12}}
    job_id = submit_job(store, JobSpec.model_validate(spec), settings).id
    _run(JobLoop(store, CurveExecutor(store), settings), job_id)
    assert store.get_job(job_id).state is JobState.COMPLETED
    _check_lines(store, job_id, 12)
    assert any(t.metrics.get("early_stopped") for t in store.list_trials(job_id)[0])


def test_a_controller_restart_in_the_middle_of_a_rung(store: Store, tmp_path: Path) -> None:
    settings = _settings(tmp_path, lease_seconds=0.5)
    spec = {**JOB, "strategy": "random", "budget": {**JOB["budget"], "trials": 12, "concurrency": 3}}
    job_id = submit_job(store, JobSpec.model_validate(spec), settings).id
    # The first controller's workers die from the 6th trial on, after their first epoch's report.
    first = JobLoop(store, CurveExecutor(store, die_after=5), settings, owner="first")
    while sum(1 for t in store.list_trials(job_id)[0] if t.state is TrialState.RUNNING) < 3:
        first.step()
    in_flight = [t.id for t in store.list_trials(job_id, states={TrialState.RUNNING})[0]]
    scheduler_then, _ = early_stopping_scheduler(store, store.get_job(job_id))
    assert scheduler_then.curves and any(len(c) == 1 for c in scheduler_then.curves.values())
    time.sleep(0.6)  # the first controller is gone; its lease runs out

    executor = CurveExecutor(store)
    second = JobLoop(store, executor, settings, owner="second")
    scheduler_now, _ = early_stopping_scheduler(store, store.get_job(job_id))
    assert scheduler_now.get_state() == scheduler_then.get_state()  # restored from the stored curves
    _run(second, job_id)

    assert store.get_job(job_id).state is JobState.COMPLETED
    _check_lines(store, job_id, 12)
    # the trials in flight were started again, not lost and not proposed again
    restarted = [task for task in executor.submitted if task.trial_id in in_flight]
    assert {task.trial_id for task in restarted} == set(in_flight)
    assert all(task.attempt == 2 for task in restarted)


# -------------------------------------------------------------- checkpoints, real training


class ScriptedReporter:
    """Records reports and answers "stop" after epoch ``stop_after`` (from 1)."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after = stop_after
        self.steps: list[int] = []
        self.finals: list[Mapping[str, Any]] = []

    def step(self, step: int, metrics: Mapping[str, Any]) -> dict[str, Any]:
        self.steps.append(step)
        return {"decision": "stop" if self.stop_after == step + 1 else "continue"}

    def final(self, metrics: Mapping[str, Any], step: int | None = None) -> dict[str, Any]:
        self.finals.append(dict(metrics))
        return {}


def _task(tmp_path: Path, trial_id: int, **changes: Any) -> dict[str, Any]:
    from search_spaces import get_space

    params = {
        "num_layers": 1,
        "units": 16,
        "activation": "relu",
        "dropout": 0.0,
        "learning_rate": 0.01,
        "batch_size": 32,
    }
    task = TrialTask(
        trial_id=trial_id,
        job_id=1,
        attempt=1,
        token="t",
        report_url="http://unused",
        dataset={"name": "wine"},
        space=get_space("mlp").to_dict(),
        params=get_space("mlp").validate(params),
        epochs=4,
        seed=0,
        checkpoint_epochs=(2,),
        checkpoint_dir=str(tmp_path / "trial-1"),
    )
    return {**task.to_dict(), **changes}


def test_a_promoted_trial_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    import keras
    import numpy as np

    from l2l.worker.trainer import checkpoint_path, run_trial

    stopped = ScriptedReporter(stop_after=2)
    result = run_trial(_task(tmp_path, 1), cpus=1, reporter=stopped)
    assert stopped.steps == [0, 1] and not stopped.finals  # the service already has its result
    assert result["epochs"] == 2 and result["early_stopped"] == 1
    saved = checkpoint_path(TrialTask(**_task(tmp_path, 1)), 2)
    assert saved.is_file()

    # The continuation loads those weights (not a fresh initialisation) before it trains on.
    loaded: list[list[np.ndarray]] = []
    original_fit = keras.Model.fit

    def fit_and_look(model: keras.Model, *args: Any, **kwargs: Any) -> Any:
        loaded.append([w.copy() for w in model.get_weights()])
        assert kwargs["initial_epoch"] == 2
        return original_fit(model, *args, **kwargs)

    from search_spaces import get_space
    from search_spaces.spec import DataInfo

    reference = get_space("mlp").load_builder()(
        _task(tmp_path, 1)["params"], DataInfo((13,), 3), get_space("mlp").settings
    )
    reference.load_weights(saved)
    resumed = ScriptedReporter()
    keras.Model.fit = fit_and_look  # type: ignore[method-assign]
    try:
        final = run_trial(_task(tmp_path, 2, start_epoch=2), cpus=1, reporter=resumed)
    finally:
        keras.Model.fit = original_fit  # type: ignore[method-assign]
    assert resumed.steps == [2, 3]  # the epoch counter goes on from the rung
    assert final["epochs"] == 4 and resumed.finals and resumed.finals[0]["epochs"] == 4
    assert all(np.array_equal(a, b) for a, b in zip(loaded[0], reference.get_weights(), strict=True))


def test_a_continuation_without_its_checkpoint_never_trains_from_scratch(tmp_path: Path) -> None:
    from l2l.worker.trainer import run_trial

    reporter = ScriptedReporter()
    with pytest.raises(TrialBuildError, match="checkpoint to resume from"):
        run_trial(_task(tmp_path, 3, start_epoch=2), cpus=1, reporter=reporter)
    assert reporter.steps == []
