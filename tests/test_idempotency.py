"""POST /jobs with an Idempotency-Key makes at most one job, and a failed POST stores none."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import LiveServer, free_port, make_settings

from l2l.service.jobs import create_team
from l2l.store import StorageError, Store

JOB = {"dataset": "wine", "space": "mlp", "budget": {"trials": 3, "epochs": 1}, "seed": 1}


@pytest.fixture
def live(store: Store, tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(store, make_settings(tmp_path, port=free_port())) as server:
        yield server


def _auth(store: Store, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_team(store, name)[1]}"}


def test_a_retried_submit_returns_the_first_job(store: Store, live: LiveServer) -> None:
    auth = _auth(store, "retriers")
    first = httpx.post(f"{live.url}/jobs", json=JOB, headers={**auth, "Idempotency-Key": "k-1"})
    again = httpx.post(f"{live.url}/jobs", json=JOB, headers={**auth, "Idempotency-Key": "k-1"})
    assert first.status_code == 201 and again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    other = httpx.post(f"{live.url}/jobs", json=JOB, headers={**auth, "Idempotency-Key": "k-2"})
    plain = httpx.post(f"{live.url}/jobs", json=JOB, headers=auth)
    assert other.status_code == 201 and plain.status_code == 201
    assert len({first.json()["id"], other.json()["id"], plain.json()["id"]}) == 3
    assert store.list_jobs()[1] == 3


def test_the_same_key_with_another_body_is_refused(store: Store, live: LiveServer) -> None:
    auth = {**_auth(store, "reusers"), "Idempotency-Key": "same"}
    assert httpx.post(f"{live.url}/jobs", json=JOB, headers=auth).status_code == 201
    changed = httpx.post(f"{live.url}/jobs", json={**JOB, "seed": 2}, headers=auth)
    assert changed.status_code == 422 and "another body" in changed.json()["detail"]
    assert store.list_jobs()[1] == 1


def test_keys_belong_to_one_team(store: Store, live: LiveServer) -> None:
    a = httpx.post(f"{live.url}/jobs", json=JOB, headers={**_auth(store, "a"), "Idempotency-Key": "k"})
    b = httpx.post(f"{live.url}/jobs", json=JOB, headers={**_auth(store, "b"), "Idempotency-Key": "k"})
    assert a.status_code == b.status_code == 201 and a.json()["id"] != b.json()["id"]


def test_concurrent_submits_with_one_key_make_one_job(store: Store, live: LiveServer) -> None:
    auth = {**_auth(store, "racers"), "Idempotency-Key": "race"}
    answers: list[httpx.Response] = []
    start = threading.Barrier(6)

    def submit() -> None:
        start.wait()
        answers.append(httpx.post(f"{live.url}/jobs", json=JOB, headers=auth, timeout=60))

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200] * 5 + [201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1 and store.list_jobs()[1] == 1


def test_a_stored_job_is_answered_201_even_if_reading_it_back_fails(
    store: Store, live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = _auth(store, "unlucky")

    def database_gone(*_args: object, **_kwargs: object) -> None:
        raise StorageError("database error: the server closed the connection")

    # The database fails right after the job's transaction committed: the answer must say
    # so (201), or a client that retries without a key makes a second job.
    monkeypatch.setattr(store, "trial_counts", database_gone)
    monkeypatch.setattr(store, "get_final_model", database_gone)
    answer = httpx.post(f"{live.url}/jobs", json=JOB, headers=auth)
    assert answer.status_code == 201, answer.text
    assert store.get_job(answer.json()["id"]).state.value == "queued"
