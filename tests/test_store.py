"""Contract tests every store backend must pass (SQLite, and PostgreSQL where reachable)."""

from __future__ import annotations

import threading
import time

import pytest

from l2l.store import LeaseLost, NotFound, Store, TrialFinished
from l2l.store.states import JobState, TrialState

SPEC = {"budget": {"trials": 3, "concurrency": 1, "epochs": 1, "resources": {"CPU": 1}}}


def _running_trial(store: Store, owner: str = "a") -> tuple[int, int]:
    job = store.create_job("job", SPEC)
    claimed = store.claim_job(owner, lease_seconds=60)
    assert claimed is not None and claimed.id == job.id
    trial = store.add_trial(job.id, owner, proposal_id=0, params={"x": 1}, strategy_state={"n": 1})
    store.set_trial_state(trial.id, TrialState.RUNNING, token_hash="h")
    return job.id, trial.id


def test_job_round_trip_and_listing(store: Store) -> None:
    first = store.create_job("first", SPEC)
    second = store.create_job("second", SPEC)
    assert store.get_job(first.id).spec == SPEC
    assert store.get_job(first.id).state is JobState.QUEUED
    jobs, total = store.list_jobs()
    assert total == 2 and [j.id for j in jobs] == [second.id, first.id]  # newest first
    page, _ = store.list_jobs(offset=1, limit=1)
    assert [j.id for j in page] == [first.id]
    with pytest.raises(NotFound):
        store.get_job(999_999)


def test_claim_takes_queued_jobs_once(store: Store) -> None:
    job = store.create_job("job", SPEC)
    claimed = store.claim_job("a", lease_seconds=60)
    assert claimed is not None and claimed.id == job.id and claimed.state is JobState.RUNNING
    assert claimed.owner == "a"
    assert store.claim_job("b", lease_seconds=60) is None


def test_expired_lease_lets_another_controller_take_over(store: Store) -> None:
    job = store.create_job("job", SPEC)
    store.claim_job("a", lease_seconds=0.2)
    time.sleep(0.4)
    taken = store.claim_job("b", lease_seconds=60)
    assert taken is not None and taken.id == job.id and taken.owner == "b"
    with pytest.raises(LeaseLost):
        store.add_trial(job.id, "a", proposal_id=0, params={}, strategy_state={})
    with pytest.raises(LeaseLost):
        store.renew_lease(job.id, "a", 60)


def test_add_trial_saves_strategy_state_atomically(store: Store) -> None:
    job = store.create_job("job", SPEC)
    store.claim_job("a", lease_seconds=60)
    first = store.add_trial(job.id, "a", proposal_id=7, params={"x": 1}, strategy_state={"asked": 1})
    second = store.add_trial(job.id, "a", proposal_id=8, params={"x": 2}, strategy_state={"asked": 2})
    assert (first.number, second.number) == (1, 2)  # "trial 1" is the first
    assert store.get_job(job.id).strategy_state == {"asked": 2}
    assert first.state is TrialState.QUEUED
    with pytest.raises(Exception):  # noqa: B017 - a duplicate proposal id is refused, and nothing changes
        store.add_trial(job.id, "a", proposal_id=7, params={}, strategy_state={"asked": 99})
    assert store.get_job(job.id).strategy_state == {"asked": 2}
    assert store.trial_counts(job.id)[TrialState.QUEUED] == 2


def test_trial_state_machine(store: Store) -> None:
    job_id, trial_id = _running_trial(store)
    trial = store.get_trial(trial_id)
    assert trial.state is TrialState.RUNNING and trial.attempts == 1
    retried = store.set_trial_state(trial_id, TrialState.RUNNING, token_hash="h2")
    assert retried.attempts == 2
    assert store.trial_token_hash(trial_id) == "h2"
    with pytest.raises(ValueError):
        store.set_trial_state(trial_id, TrialState.QUEUED)
    with pytest.raises(ValueError):
        store.set_trial_state(trial_id, TrialState.COMPLETED, reward=float("nan"))
    done = store.set_trial_state(trial_id, TrialState.COMPLETED, reward=0.9, metrics={"val_accuracy": 0.9})
    assert done.state is TrialState.COMPLETED and done.reward == 0.9 and done.finished_at is not None


def test_finished_trials_cannot_change(store: Store) -> None:
    _, trial_id = _running_trial(store)
    store.set_trial_state(trial_id, TrialState.FAILED, error="boom")
    for state in (TrialState.COMPLETED, TrialState.FAILED, TrialState.RUNNING, TrialState.CANCELLED):
        with pytest.raises(TrialFinished) as raised:
            store.set_trial_state(state=state, trial_id=trial_id, reward=1.0)
        assert raised.value.trial.state is TrialState.FAILED
    with pytest.raises(TrialFinished):
        store.add_metrics(trial_id, 0, {"loss": 1.0})
    assert store.get_trial(trial_id).error == "boom" and store.get_trial(trial_id).reward is None


def test_concurrent_finishes_let_exactly_one_win(store: Store) -> None:
    _, trial_id = _running_trial(store)
    winners: list[float] = []
    losers: list[float] = []

    def finish(reward: float) -> None:
        try:
            store.set_trial_state(trial_id, TrialState.COMPLETED, reward=reward)
            winners.append(reward)
        except TrialFinished:
            losers.append(reward)

    threads = [threading.Thread(target=finish, args=(r / 10,)) for r in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1 and len(losers) == 7
    assert store.get_trial(trial_id).reward == winners[0]


def test_metrics_steps_are_recorded_once(store: Store) -> None:
    _, trial_id = _running_trial(store)
    assert store.add_metrics(trial_id, 0, {"loss": 2.0})
    assert store.add_metrics(trial_id, 1, {"loss": 1.0})
    assert not store.add_metrics(trial_id, 1, {"loss": 5.0})
    assert [(p.step, p.values["loss"]) for p in store.trial_metrics(trial_id)] == [(0, 2.0), (1, 1.0)]


def test_told_marks_and_listing_filters(store: Store) -> None:
    job_id, trial_id = _running_trial(store)
    second = store.add_trial(job_id, "a", proposal_id=1, params={"x": 2}, strategy_state={})
    store.set_trial_state(second.id, TrialState.RUNNING, token_hash="x")
    store.set_trial_state(trial_id, TrialState.COMPLETED, reward=0.5)
    store.set_trial_state(second.id, TrialState.COMPLETED, reward=0.7)
    untold, total = store.list_trials(job_id, states={TrialState.COMPLETED}, told=False)
    assert total == 2
    store.mark_told(trial_id, "a", {"told": 1})
    untold, total = store.list_trials(job_id, states={TrialState.COMPLETED}, told=False)
    assert [t.id for t in untold] == [second.id]
    assert store.get_job(job_id).strategy_state == {"told": 1}
    by_reward, _ = store.list_trials(job_id, sort="reward", descending=True)
    assert [t.reward for t in by_reward] == [0.7, 0.5]


def test_finish_job_marks_best_and_cancels_unstarted_trials(store: Store) -> None:
    job_id, trial_id = _running_trial(store)
    store.set_trial_state(trial_id, TrialState.COMPLETED, reward=0.5)
    never_ran = store.add_trial(job_id, "a", proposal_id=1, params={}, strategy_state={})
    with pytest.raises(LeaseLost):
        store.finish_job(job_id, "someone else", JobState.COMPLETED)
    job = store.finish_job(job_id, "a", JobState.COMPLETED)
    assert job.state is JobState.COMPLETED and job.best_trial_id == trial_id and job.owner is None
    assert store.get_trial(trial_id).is_best
    assert store.get_trial(never_ran.id).state is TrialState.CANCELLED
    assert store.claim_job("b", lease_seconds=60) is None  # finished jobs are never claimed


def test_migrate_is_idempotent(store: Store) -> None:
    store.migrate()
    store.create_job("job", SPEC)
    store.migrate()
    assert store.list_jobs()[1] == 1


def test_migration_0007_numbers_stored_trials_from_one_and_back(store: Store) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy import text

    from l2l.store.database import MIGRATIONS

    job = store.create_job("job", SPEC)
    store.claim_job("a", lease_seconds=60)
    for proposal in range(3):
        store.add_trial(job.id, "a", proposal_id=proposal, params={}, strategy_state={})
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    before = ScriptDirectory.from_config(config).get_revision("0007").down_revision

    def numbers() -> list[int]:
        with store._write_engine.begin() as connection:
            rows = connection.execute(
                text("SELECT number FROM trials WHERE job_id = :j ORDER BY number"), {"j": job.id}
            )
            return [row[0] for row in rows]

    def migrate(command_: object, revision: str) -> None:
        with store._write_engine.begin() as connection:
            config.attributes["connection"] = connection
            command_(config, revision)  # type: ignore[operator]

    assert numbers() == [1, 2, 3]
    migrate(command.downgrade, str(before))
    assert numbers() == [0, 1, 2]  # as stored before 0007
    migrate(command.upgrade, "0007")
    assert numbers() == [1, 2, 3]
    migrate(command.upgrade, "head")
    assert store.get_job(job.id).chance is None  # the column is back, empty until a controller starts it
