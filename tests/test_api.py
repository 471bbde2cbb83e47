"""The REST API through the real app and a real database."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import make_settings
from fastapi.testclient import TestClient

from api.main import create_app
from l2l.service.jobs import create_team, hash_token
from l2l.store import Store
from l2l.store.states import TrialState

JOB = {
    "dataset": "wine",
    "space": "mlp",
    "strategy": "random",
    "budget": {"trials": 4, "concurrency": 2, "epochs": 2},
    "seed": 1,
}


@pytest.fixture
def client(store: Store, tmp_path: Path) -> Iterator[TestClient]:
    """A client of the real app, signed in as team "alpha"."""
    _, key = create_team(store, "alpha")
    app = create_app(make_settings(tmp_path), store)
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as test_client:
        yield test_client


def _running_trial(store: Store, job_id: int, token: str = "secret") -> int:
    store.claim_job("test", lease_seconds=60)
    trial = store.add_trial(job_id, "test", proposal_id=0, params={"units": 32}, strategy_state={})
    store.set_trial_state(trial.id, TrialState.RUNNING, token_hash=hash_token(token))
    return trial.id


def test_submit_get_and_list_jobs(client: TestClient) -> None:
    created = client.post("/jobs", json=JOB)
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["state"] == "queued" and job["kind"] == "search"
    assert job["spec"]["strategy"] == {"name": "random", "options": {}}
    assert job["spec"]["objective"] == {"metric": "val_accuracy", "mode": "max"}
    assert job["progress"] == {
        "trials": 4,
        "created": 0,
        "queued": 0,
        "running": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
        "timed_out": 0,
    }
    assert client.get(f"/jobs/{job['id']}").json()["name"] == job["name"]
    listing = client.get("/jobs").json()
    assert listing["total"] == 1 and listing["items"][0]["id"] == job["id"]
    assert client.get(f"/jobs/{job['id']}/trials").json() == {
        "items": [],
        "total": 0,
        "offset": 0,
        "limit": 100,
    }


def test_unknown_job_is_404(client: TestClient) -> None:
    response = client.get("/jobs/12345")
    assert response.status_code == 404 and "12345" in response.json()["detail"]
    assert client.get("/jobs/12345/trials").status_code == 404


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"space": "no_such_space"}, "no_such_space"),
        ({"strategy": "no_such_strategy"}, "no_such_strategy"),
        ({"strategy": {"name": "evolution", "options": {"bogus": 1}}}, "bogus"),
        ({"budget": {"trials": 0}}, "trials"),
        ({"budget": {"trials": 10**9}}, "at most"),
        ({"budget": {"trials": 2, "concurrency": 0}}, "concurrency"),
        ({"budget": {"trials": 2, "resources": {"CPU": -1}}}, "positive"),
        ({"dataset": "no_such_dataset"}, "no_such_dataset"),
        ({"space": "nb201_cell"}, "image"),  # wine is tabular
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_bad_jobs_get_a_clear_4xx_and_nothing_is_stored(
    client: TestClient, change: dict, expected: str
) -> None:
    response = client.post("/jobs", json={**JOB, **change})
    assert response.status_code == 422, response.text
    assert expected in str(response.json()["detail"])
    assert client.get("/jobs").json()["total"] == 0


def test_csv_without_the_named_target_is_refused(client: TestClient, tmp_path: Path) -> None:
    csv_file = tmp_path / "data.csv"
    csv_file.write_text("a,b,label\n" + "".join(f"{i},{i * 2},{i % 2}\n" for i in range(40)))

    def submit(path: str, target: str) -> httpx.Response:
        return client.post("/jobs", json={**JOB, "dataset": {"name": "csv", "path": path, "target": target}})

    ok = submit(str(csv_file), "label")
    assert ok.status_code == 201, ok.text
    bad = submit(str(csv_file), "y")
    assert bad.status_code == 422 and "'y'" in bad.json()["detail"] and "label" in bad.json()["detail"]
    assert submit("/no/such.csv", "label").status_code == 422
    assert client.get("/jobs").json()["total"] == 1


def test_report_flow_is_idempotent(client: TestClient, store: Store) -> None:
    job_id = client.post("/jobs", json=JOB).json()["id"]
    trial_id = _running_trial(store, job_id)
    auth = {"Authorization": "Bearer secret"}
    step = client.post(f"/trials/{trial_id}/report", json={"step": 0, "metrics": {"loss": 1.5}}, headers=auth)
    assert step.status_code == 200 and step.json()["changed"] is True
    final = {"final": True, "metrics": {"val_accuracy": 0.8, "loss": 0.4}}
    done = client.post(f"/trials/{trial_id}/report", json=final, headers=auth)
    assert done.status_code == 200, done.text
    assert done.json()["trial"]["state"] == "completed" and done.json()["trial"]["reward"] == 0.8
    again = client.post(
        f"/trials/{trial_id}/report", json={**final, "metrics": {"val_accuracy": 0.1}}, headers=auth
    )
    assert again.status_code == 200 and again.json()["changed"] is False
    assert "already completed" in again.json()["message"]
    assert store.get_trial(trial_id).reward == 0.8
    trials = client.get(f"/jobs/{job_id}/trials").json()
    assert trials["items"][0]["reward"] == 0.8


@pytest.mark.parametrize("value", [None, float("nan"), "missing"])
def test_nan_or_missing_reward_fails_the_trial(client: TestClient, store: Store, value: object) -> None:
    job_id = client.post("/jobs", json=JOB).json()["id"]
    trial_id = _running_trial(store, job_id)
    metrics: dict = {"loss": 0.3}
    if value != "missing":
        metrics["val_accuracy"] = value
    body = {"final": True, "metrics": metrics}
    # Python's JSON writer turns float("nan") into the NaN token, as a careless worker would send.
    content = json.dumps(body)
    response = client.post(
        f"/trials/{trial_id}/report",
        content=content,
        headers={"Authorization": "Bearer secret", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    trial = store.get_trial(trial_id)
    assert trial.state is TrialState.FAILED and trial.reward is None
    assert "val_accuracy" in (trial.error or "")
    assert not math.isnan(trial.reward or 0)


def test_reports_need_the_trials_own_token(client: TestClient, store: Store) -> None:
    job_id = client.post("/jobs", json=JOB).json()["id"]
    trial_id = _running_trial(store, job_id, token="mine")
    other = store.add_trial(job_id, "test", proposal_id=1, params={}, strategy_state={})
    store.set_trial_state(other.id, TrialState.RUNNING, token_hash=hash_token("theirs"))
    body = {"final": True, "metrics": {"val_accuracy": 0.9}}
    no_token = client.post(f"/trials/{trial_id}/report", json=body, headers={"Authorization": ""})
    assert no_token.status_code == 401
    wrong = client.post(f"/trials/{trial_id}/report", json=body, headers={"Authorization": "Bearer theirs"})
    assert wrong.status_code == 403 and str(trial_id) in wrong.json()["detail"]
    unknown = client.post("/trials/999999/report", json=body, headers={"Authorization": "Bearer mine"})
    assert unknown.status_code == 404
    assert store.get_trial(trial_id).state is TrialState.RUNNING


def test_trial_listing_sorts_filters_and_pages(client: TestClient, store: Store) -> None:
    job_id = client.post("/jobs", json=JOB).json()["id"]
    store.claim_job("test", lease_seconds=60)
    for number, reward in enumerate([0.3, 0.9, None, 0.6]):
        trial = store.add_trial(job_id, "test", proposal_id=number, params={}, strategy_state={})
        store.set_trial_state(trial.id, TrialState.RUNNING, token_hash="x")
        if reward is None:
            store.set_trial_state(trial.id, TrialState.FAILED, error="boom")
        else:
            store.set_trial_state(trial.id, TrialState.COMPLETED, reward=reward)
    by_reward = client.get(f"/jobs/{job_id}/trials", params={"sort": "reward", "order": "desc"}).json()
    assert [t["reward"] for t in by_reward["items"]] == [0.9, 0.6, 0.3, None]
    failed = client.get(f"/jobs/{job_id}/trials", params={"state": "failed"}).json()
    assert failed["total"] == 1 and failed["items"][0]["error"] == "boom"
    page = client.get(f"/jobs/{job_id}/trials", params={"offset": 1, "limit": 2}).json()
    assert [t["number"] for t in page["items"]] == [2, 3] and page["total"] == 4  # numbered from 1
    assert client.get(f"/jobs/{job_id}/trials", params={"sort": "bogus"}).status_code == 422


def test_openapi_documents_every_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/trials", "/trials/{trial_id}/report"} <= set(paths)
    assert "403" in paths["/trials/{trial_id}/report"]["post"]["responses"]


def test_jobs_need_a_known_team_key(client: TestClient) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer l2l_not-a-key"}):
        response = client.get("/jobs", headers=headers)
        assert response.status_code == 401, response.text
        assert "API key" in response.json()["detail"]
    assert client.post("/jobs", json=JOB, headers={"Authorization": ""}).status_code == 401
    assert client.get("/jobs").json()["total"] == 0


def test_a_team_sees_and_changes_only_its_own_jobs(client: TestClient, store: Store) -> None:
    _, other_key = create_team(store, "beta")
    other = {"Authorization": f"Bearer {other_key}"}
    theirs = client.post("/jobs", json=JOB, headers=other).json()["id"]
    mine = client.post("/jobs", json=JOB).json()["id"]
    assert [j["id"] for j in client.get("/jobs").json()["items"]] == [mine]
    for path in (f"/jobs/{theirs}", f"/jobs/{theirs}/trials"):
        assert client.get(path).status_code == 404  # not 403: ids reveal nothing
    assert client.post(f"/jobs/{theirs}/cancel").status_code == 404
    assert store.get_job(theirs).state.value == "queued"
    assert client.get(f"/jobs/{theirs}", headers=other).status_code == 200


def test_team_limits(client: TestClient, store: Store) -> None:
    team, key = create_team(store, "small", {"max_concurrent_jobs": 1, "max_trials_per_job": 5})
    small = {"Authorization": f"Bearer {key}"}
    too_many_trials = client.post("/jobs", json={**JOB, "budget": {"trials": 6}}, headers=small)
    assert too_many_trials.status_code == 422 and "at most 5" in too_many_trials.json()["detail"]
    gpus = {"trials": 2, "concurrency": 4, "resources": {"GPU": 4}}
    too_many_gpus = client.post("/jobs", json={**JOB, "budget": gpus}, headers=small)
    assert too_many_gpus.status_code == 422 and "16 accelerators" in too_many_gpus.json()["detail"]
    assert client.post("/jobs", json=JOB, headers=small).status_code == 201
    second = client.post("/jobs", json=JOB, headers=small)
    assert second.status_code == 429 and "1 unfinished jobs" in second.json()["detail"]
    assert store.list_jobs(team_id=team.id)[1] == 1


def test_cancel_pause_resume(client: TestClient, store: Store) -> None:
    job_id = client.post("/jobs", json=JOB).json()["id"]
    assert client.post(f"/jobs/{job_id}/resume").status_code == 409  # not paused
    assert client.post(f"/jobs/{job_id}/pause").json()["state"] == "paused"
    assert client.post(f"/jobs/{job_id}/pause").status_code == 409
    assert client.post(f"/jobs/{job_id}/resume").json()["state"] == "queued"  # nobody drives it yet
    trial_id = _running_trial(store, job_id)
    cancelled = client.post(f"/jobs/{job_id}/cancel").json()
    assert cancelled["state"] == "cancelled" and cancelled["progress"]["cancelled"] == 1
    assert store.get_trial(trial_id).state is TrialState.CANCELLED
    again = client.post(f"/jobs/{job_id}/cancel")
    assert again.status_code == 409 and "already ended" in again.json()["detail"]


def test_trial_detail_and_metric_curve(client: TestClient, store: Store) -> None:
    job_id = client.post("/jobs", json=JOB).json()["id"]
    trial_id = _running_trial(store, job_id)
    auth = {"Authorization": "Bearer secret"}
    for epoch, loss in enumerate([1.0, 0.5, 0.25]):
        client.post(
            f"/trials/{trial_id}/report", json={"step": epoch, "metrics": {"loss": loss}}, headers=auth
        )
    curve = client.get(f"/jobs/{job_id}/trials/{trial_id}/metrics").json()
    assert [(p["step"], p["values"]["loss"]) for p in curve["points"]] == [(0, 1.0), (1, 0.5), (2, 0.25)]
    store.set_trial_state(trial_id, TrialState.FAILED, error="Traceback: boom")
    detail = client.get(f"/jobs/{job_id}/trials/{trial_id}").json()
    assert detail["state"] == "failed" and detail["error"] == "Traceback: boom"
    assert client.get(f"/jobs/{job_id}/trials/999999").status_code == 404


def test_openapi_has_request_and_response_models_for_every_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            ok = [code for code in responses if code.startswith("2")]
            assert ok, f"{method} {path} documents no success response"
            if path.startswith(("/jobs", "/datasets", "/trials")):
                errors = [code for code in responses if code.startswith("4")]
                assert errors, f"{method} {path} documents no error response"
            if method in ("post", "put") and operation.get("requestBody"):
                content = operation["requestBody"]["content"]
                assert any("schema" in media for media in content.values()), f"{method} {path}"
