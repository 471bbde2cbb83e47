"""Nothing confirmed is lost: SIGKILL of every process of a real ``l2l serve``, then a restart.

Jobs the API answered 201 and reports it answered 200 are all there afterwards, on SQLite
and PostgreSQL; the jobs resume and each finishes its budget exactly, every trial told once,
proposals numbered on from the state saved before the kill.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import _fresh_postgres_store, free_port
from service_process import ServeProcess, wait_until

from l2l.service.jobs import create_team, hash_token, new_report_token, submit_job
from l2l.service.jobspec import JobSpec
from l2l.settings import Settings
from l2l.store import Store
from l2l.store.states import JobState, TrialState

JOBS = 3
TRIALS = 2
REPORTS = 20
JOB = {
    "dataset": "wine",
    "space": "mlp",
    "strategy": "evolution",
    "budget": {"trials": TRIALS, "concurrency": 1, "epochs": 1},
    "final_model": False,
}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str | None, Store]]:
    if request.param == "sqlite":
        store = Store(f"sqlite:///{tmp_path / 'l2l.db'}")
        store.migrate()
        yield None, store
    else:
        url = request.getfixturevalue("postgres_url")
        store = _fresh_postgres_store(url)
        yield url, store
    store.dispose()


@pytest.mark.slow
def test_sigkill_of_everything_loses_nothing_confirmed_and_jobs_resume(
    database: tuple[str | None, Store], tmp_path: Path
) -> None:
    url, store = database
    team, key = create_team(store, "durable", {"max_concurrent_jobs": 20})
    auth = {"Authorization": f"Bearer {key}"}
    # A trial this test drives as its controller would, so it knows the report token.
    held = submit_job(store, JobSpec.model_validate({**JOB, "seed": 100}), Settings(), team)
    assert store.claim_job("the-test", lease_seconds=3600) is not None
    trial = store.add_trial(held.id, "the-test", 0, {"num_layers": 1, "units": 8, "dropout": 0.0}, {})
    token, token_hash = new_report_token()
    assert hash_token(token) == token_hash
    store.set_trial_state(trial.id, TrialState.RUNNING, token_hash=token_hash)

    serve = ServeProcess(tmp_path, free_port(), database_url=url).start()
    try:
        serve.wait_healthy()
        job_ids = []
        for index in range(JOBS):
            answer = httpx.post(
                f"{serve.url}/jobs",
                json={**JOB, "seed": index},
                headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
                timeout=30,
            )
            assert answer.status_code == 201, answer.text
            job_ids.append(answer.json()["id"])
        report = {"Authorization": f"Bearer {token}"}
        for step in range(REPORTS):
            answer = httpx.post(
                f"{serve.url}/trials/{trial.id}/report",
                json={"metrics": {"val_accuracy": step / REPORTS}, "step": step},
                headers=report,
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
        done = httpx.post(
            f"{serve.url}/trials/{trial.id}/report",
            json={"metrics": {"val_accuracy": 0.9}, "final": True},
            headers=report,
            timeout=30,
        )
        assert done.status_code == 200, done.text
        wait_until(
            "the jobs to be under way",
            lambda: sum(store.trial_counts(j)[TrialState.COMPLETED] for j in job_ids) >= 1,
            300,
        )
    finally:
        serve.kill_everything()

    # Everything answered 2xx is in the database, read by a fresh connection.
    store.dispose()
    assert {j.id for j in store.list_jobs(limit=100)[0]} >= set(job_ids)
    assert [p.step for p in store.trial_metrics(trial.id)] == list(range(REPORTS))
    reported = store.get_trial(trial.id)
    assert reported.state is TrialState.COMPLETED and reported.reward == 0.9
    listed_before = {j: store.list_trials(j) for j in job_ids}  # (trials, how many were made)
    told_before = {t.id for trials, _ in listed_before.values() for t in trials if t.told}
    created_before = {j: made for j, (_, made) in listed_before.items()}
    asked_before = {j: (store.get_job(j).strategy_state or {}).get("next_id", 0) for j in job_ids}
    assert any(not store.get_job(j).state.is_finished() for j in job_ids), "nothing was cut mid-job"

    serve = ServeProcess(tmp_path, serve.port, database_url=url).start()
    try:
        serve.wait_healthy()
        for job_id in job_ids:
            assert httpx.get(f"{serve.url}/jobs/{job_id}", headers=auth).status_code == 200
        wait_until(
            "every job to finish",
            lambda: all(store.get_job(j).state.is_finished() for j in job_ids),
            600,
            every=1,
        )
    finally:
        serve.stop()
    for job_id in job_ids:
        job = store.get_job(job_id)
        trials, total = store.list_trials(job_id)
        assert job.state is JobState.COMPLETED, job.reason
        assert total == TRIALS and sorted(t.proposal_id for t in trials) == list(range(TRIALS))
        assert all(t.state is TrialState.COMPLETED and t.told for t in trials), [
            (t.state, t.error) for t in trials
        ]
        assert job.strategy_state is not None and job.strategy_state["next_id"] == TRIALS
        assert all(t.attempts == 1 for t in trials if t.id in told_before)  # not run again
        # Proposals went on from the saved strategy state: the trials made before the kill hold
        # proposals asked before it (trial numbers count from 1).
        before = [t for t in trials if t.number <= created_before[job_id]]
        assert all(t.proposal_id < asked_before[job_id] for t in before), (before, asked_before)
