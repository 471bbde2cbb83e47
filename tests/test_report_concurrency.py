"""Workers' reports under concurrency: every report answered, every step stored exactly once.

Through the real service (uvicorn on a free port) and the real store, on SQLite and PostgreSQL.
No timing is asserted: only answers and rows.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import LiveServer, free_port, make_settings

from l2l.service.jobs import hash_token
from l2l.service.step_writer import StepWriter
from l2l.store import Store
from l2l.store.states import TrialState
from l2l.store.step_reports import StepOutcome, StepReport

THREADS = 20


def _running_trials(store: Store, count: int) -> list[tuple[int, str]]:
    job = store.create_job("reports", {"objective": {"metric": "val_accuracy", "mode": "max"}})
    store.claim_job("test", lease_seconds=60)
    trials = []
    for number in range(count):
        trial = store.add_trial(job.id, "test", proposal_id=number, params={"units": 8}, strategy_state={})
        token = f"token-{number}"
        store.set_trial_state(trial.id, TrialState.RUNNING, token_hash=hash_token(token))
        trials.append((trial.id, token))
    return trials


@pytest.fixture
def service(store: Store, tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(store, make_settings(tmp_path, port=free_port())) as server:
        yield server


def _all_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` from as many threads, released together by a barrier."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def _stored_steps(store: Store, trial_id: int) -> list[int]:
    return [point.step for point in store.trial_metrics(trial_id)]


def test_concurrent_step_reports_are_each_stored_once(store: Store, service: LiveServer) -> None:
    (a, token_a), (b, token_b) = _running_trials(store, 2)

    def send(trial_id: int, token: str, steps: list[int]) -> list[httpx.Response]:
        with httpx.Client(base_url=service.url, timeout=60) as client:
            return [
                client.post(
                    f"/trials/{trial_id}/report",
                    json={"step": step, "metrics": {"loss": 1.0 / (step + 1)}},
                    headers={"Authorization": f"Bearer {token}"},
                )
                for step in steps
            ]

    # Every thread sends step 0 of trial a (the same report 20 times at once), a step of a of its
    # own, and one of five steps of trial b (each sent by four threads).
    calls = [(lambda i=i: send(a, token_a, [0, 100 + i]) + send(b, token_b, [i % 5])) for i in range(THREADS)]
    responses = [response for batch in _all_at_once(calls) for response in batch]

    assert all(response.status_code == 200 for response in responses), [
        (r.status_code, r.text) for r in responses if r.status_code != 200
    ]
    new = Counter(
        (r.json()["trial"]["id"], r.json()["message"].split()[1]) for r in responses if r.json()["changed"]
    )
    assert set(new.values()) == {1}  # no step was answered "recorded" twice
    assert len(new) == 1 + THREADS + 5  # and each distinct step was answered "recorded" once
    repeats = [r.json() for r in responses if not r.json()["changed"]]
    assert len(repeats) == (THREADS - 1) + (THREADS - 5)
    assert all("already recorded" in body["message"] for body in repeats)
    assert all(r.json()["trial"]["state"] == "running" for r in responses)
    assert _stored_steps(store, a) == [0, *range(100, 100 + THREADS)]
    assert _stored_steps(store, b) == [0, 1, 2, 3, 4]


def test_concurrent_identical_final_reports_finish_the_trial_once(store: Store, service: LiveServer) -> None:
    [(trial_id, token)] = _running_trials(store, 1)
    body = {"step": 3, "final": True, "metrics": {"val_accuracy": 0.75, "loss": 0.5}}

    def send() -> httpx.Response:
        return httpx.post(
            f"{service.url}/trials/{trial_id}/report",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )

    responses = _all_at_once([send] * THREADS)
    assert [r.status_code for r in responses] == [200] * THREADS, [r.text for r in responses]
    assert sum(r.json()["changed"] for r in responses) == 1
    trial = store.get_trial(trial_id)
    assert trial.state is TrialState.COMPLETED and trial.reward == 0.75
    assert _stored_steps(store, trial_id) == [3]
    # A step report after the end changes nothing and is still answered 200.
    late = httpx.post(
        f"{service.url}/trials/{trial_id}/report",
        json={"step": 4, "metrics": {"loss": 0.1}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert late.status_code == 200 and late.json()["changed"] is False
    assert "already completed" in late.json()["message"]
    assert _stored_steps(store, trial_id) == [3]


def test_a_batch_answers_each_report_as_if_alone(store: Store) -> None:
    (running, token), (ended, ended_token), (untouched, _) = _running_trials(store, 3)
    store.set_trial_state(ended, TrialState.FAILED, error="boom")
    job_id = store.get_trial(running).job_id
    waiting = store.add_trial(job_id, "test", proposal_id=9, params={}, strategy_state={})
    good = hash_token(token)
    batch = [
        StepReport(running, 0, good, {"loss": 1.0}),
        StepReport(running, 0, good, {"loss": 9.0}),  # its twin, in the same transaction
        StepReport(running, 1, good, {"loss": math.nan}),
        StepReport(running, 2, hash_token("not-the-token"), {"loss": 1.0}),
        StepReport(ended, 0, hash_token(ended_token), {"loss": 1.0}),
        StepReport(waiting.id, 0, hash_token(""), {"loss": 1.0}),
        StepReport(10**6, 0, good, {"loss": 1.0}),
    ]
    results = store.record_steps(batch)
    assert [r.outcome for r in results] == [
        StepOutcome.RECORDED,
        StepOutcome.REPEAT,
        StepOutcome.RECORDED,
        StepOutcome.FORBIDDEN,
        StepOutcome.FINISHED,
        StepOutcome.FORBIDDEN,  # a queued trial has no token yet
        StepOutcome.NOT_FOUND,
    ]
    assert results[0].trial is not None and results[0].trial.state is TrialState.RUNNING
    assert results[3].trial is None and results[6].trial is None  # a wrong token learns nothing
    assert results[4].trial is not None and results[4].trial.state is TrialState.FAILED
    assert [(p.step, p.values) for p in store.trial_metrics(running)] == [
        (0, {"loss": 1.0}),
        (1, {"loss": None}),
    ]
    assert store.record_steps(batch[:1])[0].outcome is StepOutcome.REPEAT  # sent again later
    # A trial started again by the controller takes the new attempt's token only.
    store.set_trial_state(running, TrialState.RUNNING, token_hash=hash_token("second attempt"))
    stale, fresh = store.record_steps(
        [StepReport(running, 5, good, {}), StepReport(running, 5, hash_token("second attempt"), {})]
    )
    assert (stale.outcome, fresh.outcome) == (StepOutcome.FORBIDDEN, StepOutcome.RECORDED)
    assert _stored_steps(store, untouched) == []


def test_the_writer_groups_concurrent_reports_and_answers_each(store: Store) -> None:
    trials = _running_trials(store, 4)
    writer = StepWriter(store)
    try:
        # Each of 4 steps of each trial is submitted by several threads at once.
        reports = [
            StepReport(trial_id, step, hash_token(token), {"loss": float(step)})
            for trial_id, token in trials
            for step in range(4)
        ] * 3
        futures = _all_at_once([(lambda r=r: writer.submit(r)) for r in reports[: THREADS * 2]])
        futures += [writer.submit(report) for report in reports[THREADS * 2 :]]
        results = [future.result(timeout=60) for future in futures]
    finally:
        writer.close()
    recorded = Counter(
        (report.trial_id, report.step)
        for report, result in zip(reports, results, strict=True)
        if result.outcome is StepOutcome.RECORDED
    )
    assert recorded == Counter({(trial_id, step): 1 for trial_id, _ in trials for step in range(4)})
    assert all(r.outcome in (StepOutcome.RECORDED, StepOutcome.REPEAT) for r in results)
    for trial_id, _ in trials:
        assert _stored_steps(store, trial_id) == [0, 1, 2, 3]


def test_step_reports_are_refused_as_the_route_refuses_them(store: Store, tmp_path: Path) -> None:
    """The fast path's refusals, and what it leaves to the route, answer as the route does."""
    from fastapi.testclient import TestClient

    from api.main import create_app

    [(trial_id, token)] = _running_trials(store, 1)
    app = create_app(make_settings(tmp_path), store)
    step = {"step": 0, "metrics": {"loss": math.nan}}
    for _ in range(2):  # the same app started twice (as tests do) takes reports both times
        with TestClient(app) as client:

            def post(path: str, body: Any, key: str | None = token) -> httpx.Response:
                headers = {"Content-Type": "application/json"}
                if key:
                    headers["Authorization"] = f"Bearer {key}"
                return client.post(path, content=json.dumps(body), headers=headers)

            report = f"/trials/{trial_id}/report"
            wrong = post(report, step, key="not-it")
            assert wrong.status_code == 403 and str(trial_id) in wrong.json()["detail"]
            assert post("/trials/999999/report", step).status_code == 404
            assert post(report, step, key=None).status_code == 401  # (the route: no token)
            invalid = post(report, {"step": -1, "metrics": {}})  # (the route: FastAPI's 422)
            assert invalid.status_code == 422 and isinstance(invalid.json()["detail"], list)
            assert post(report, {"metrics": {"loss": 1.0}}).status_code == 422  # no step, not final
            ok = post(report, step)
            assert ok.status_code == 200 and ok.json()["trial"]["id"] == trial_id
            as_text = client.post(
                report, content=json.dumps(step), headers={"Authorization": f"Bearer {token}"}
            )
            assert as_text.status_code == 422  # the route wants JSON declared; so does the fast path
    assert [(p.step, p.values) for p in store.trial_metrics(trial_id)] == [(0, {"loss": None})]
