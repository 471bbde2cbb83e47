"""The web pages: login, job list, new-job form and the live job page.

Plain tests go through the real app with TestClient. One test drives a real headless
Chromium (the ``browser`` fixture in conftest.py) against a live server and a job loop
with a fake trainer; it is skipped, saying why, where Chromium is not installed. The
placement job's page has its own browser test, in test_web_placement.py.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LiveServer, free_port, make_settings, screenshot, wait_for
from fakes import ThreadExecutor, synthetic_metrics
from fastapi.testclient import TestClient
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from api.deps import KEY_COOKIE
from api.main import create_app
from l2l.loop import JobLoop
from l2l.service.jobs import create_team, submit_job
from l2l.service.jobspec import JobSpec, validate_job
from l2l.settings import Settings
from l2l.store import Store
from l2l.store.states import JobState, TrialState
from l2l.store.tables import JobRow, TrialRow
from l2l.worker.executor import Outcome, TrialBuildError, TrialTask
from l2l.worker.reporter import Reporter

JOB = {
    "dataset": "wine",
    "space": "mlp",
    "strategy": "random",
    "budget": {"trials": 4, "concurrency": 2, "epochs": 2},
    "seed": 1,
}


@pytest.fixture
def app_client(sqlite_store: Store, tmp_path: Path) -> Iterator[TestClient]:
    """A client of the real app that follows no redirects and has no credentials."""
    with TestClient(create_app(make_settings(tmp_path), sqlite_store), follow_redirects=False) as client:
        yield client


def _job(store: Store, settings: Settings, team: Any, **changes: Any) -> int:
    return submit_job(store, JobSpec.model_validate({**JOB, **changes}), settings, team).id


# ------------------------------------------------------------------ login and access


def test_login_sets_an_http_only_same_site_strict_cookie(app_client: TestClient, sqlite_store: Store) -> None:
    _, key = create_team(sqlite_store, "alpha")
    response = app_client.post("/login", data={"key": key, "next": "/new"})
    assert response.status_code == 303 and response.headers["location"] == "/new"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{KEY_COOKIE}={key};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = app_client.get("/")
    assert page.status_code == 200 and "Team <strong>alpha</strong>" in page.text
    assert "No searches yet" in page.text


@pytest.mark.parametrize("path", ["/", "/new", "/job/1"])
def test_pages_send_a_visitor_without_the_cookie_to_the_login(app_client: TestClient, path: str) -> None:
    response = app_client.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")
    assert app_client.get(response.headers["location"]).status_code == 200
    app_client.cookies.set(KEY_COOKIE, "l2l_not-a-key")
    assert app_client.get(path).status_code == 303  # a stale cookie is no better


def test_a_wrong_key_shows_an_error_and_sets_no_cookie(app_client: TestClient, sqlite_store: Store) -> None:
    create_team(sqlite_store, "alpha")
    response = app_client.post("/login", data={"key": "l2l_wrong"})
    assert response.status_code == 401
    assert 'role="alert"' in response.text and "not known" in response.text
    assert "set-cookie" not in response.headers
    empty = app_client.post("/login", data={"key": ""})
    assert empty.status_code == 401 and "Enter your team" in empty.text


def test_login_redirects_only_within_the_site(app_client: TestClient, sqlite_store: Store) -> None:
    _, key = create_team(sqlite_store, "alpha")
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        response = app_client.post("/login", data={"key": key, "next": target})
        assert response.headers["location"] == "/"


def test_logout_clears_the_cookie(app_client: TestClient, sqlite_store: Store) -> None:
    _, key = create_team(sqlite_store, "alpha")
    app_client.post("/login", data={"key": key})
    response = app_client.post("/logout")
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert f'{KEY_COOKIE}=""' in response.headers["set-cookie"]
    assert app_client.get("/").status_code == 303


def test_another_teams_job_page_is_a_404(app_client: TestClient, sqlite_store: Store, tmp_path: Path) -> None:
    alpha, _ = create_team(sqlite_store, "alpha")
    _, beta_key = create_team(sqlite_store, "beta")
    job_id = _job(sqlite_store, make_settings(tmp_path), alpha)
    app_client.cookies.set(KEY_COOKIE, beta_key)
    response = app_client.get(f"/job/{job_id}")
    assert response.status_code == 404 and f"Job {job_id} not found" in response.text
    assert app_client.get("/job/999").status_code == 404  # the same page as a job that does not exist
    assert app_client.get(f"/jobs/{job_id}").status_code == 404  # and through the API with the cookie


def test_the_api_takes_the_cookie_when_no_bearer_header_is_sent(
    app_client: TestClient, sqlite_store: Store, tmp_path: Path
) -> None:
    alpha, key = create_team(sqlite_store, "alpha")
    job_id = _job(sqlite_store, make_settings(tmp_path), alpha)
    assert app_client.get("/jobs").status_code == 401
    app_client.cookies.set(KEY_COOKIE, key)
    listed = app_client.get("/jobs")
    assert listed.status_code == 200 and [j["id"] for j in listed.json()["items"]] == [job_id]
    # A Bearer header, when sent, is the credential: a wrong one is not rescued by the cookie.
    assert app_client.get("/jobs", headers={"Authorization": "Bearer l2l_wrong"}).status_code == 401


# ------------------------------------------------------------------ pages


def test_the_job_list_shows_state_and_progress(
    app_client: TestClient, sqlite_store: Store, tmp_path: Path
) -> None:
    alpha, key = create_team(sqlite_store, "alpha")
    job_id = _job(sqlite_store, make_settings(tmp_path), alpha, name="wine, first try")
    app_client.cookies.set(KEY_COOKIE, key)
    page = app_client.get("/")
    assert page.status_code == 200
    assert f'href="/job/{job_id}">wine, first try</a>' in page.text
    assert "state-queued" in page.text and "0 / 4 completed" in page.text


def test_the_form_submits_a_job_with_defaults(app_client: TestClient, sqlite_store: Store) -> None:
    alpha, key = create_team(sqlite_store, "alpha")
    app_client.cookies.set(KEY_COOKIE, key)
    form = app_client.get("/new")
    assert form.status_code == 200 and 'value="digits" checked' in form.text
    response = app_client.post("/new", data={"dataset": "digits", "space": "nb201_cell"})
    assert response.status_code == 303
    job_id = int(response.headers["location"].rsplit("/", 1)[1])
    job = sqlite_store.get_job(job_id, team_id=alpha.id)
    # epochs left empty: enough for ~150 steps on digits' 1,078 training images (34 a pass)
    budget = {"trials": 20, "concurrency": 2, "epochs": 5, "resources": {"CPU": 1.0}, "pack_gpus": False}
    assert job.spec["budget"] == budget
    assert job.spec["strategy"]["name"] == "reinforce" and job.spec["space"]["name"] == "nb201_cell"
    page = app_client.get(response.headers["location"])
    assert page.status_code == 200 and f'data-job-id="{job_id}"' in page.text
    assert 'id="job-warning"' in page.text and 'id="job-chance"' in page.text  # filled from GET /jobs/{id}
    # Nothing but the form's defaults: the space is chosen from the data (a small image set: the MLP).
    assert 'name="space" value="" checked' in form.text
    defaults = app_client.post("/new", data={"dataset": "digits", "space": "", "epochs": ""})
    assert defaults.status_code == 303
    chosen = sqlite_store.get_job(int(defaults.headers["location"].rsplit("/", 1)[1]))
    assert chosen.spec["space"]["name"] == "mlp" and chosen.spec["budget"]["epochs"] == 5


def test_an_upload_from_the_page_is_offered_by_the_new_job_form(
    app_client: TestClient, sqlite_store: Store, tmp_path: Path
) -> None:
    alpha, key = create_team(sqlite_store, "alpha")
    app_client.cookies.set(KEY_COOKIE, key)
    page = app_client.get("/upload")
    assert page.status_code == 200 and 'enctype="multipart/form-data"' in page.text
    assert 'name="file"' in page.text and 'name="target"' in page.text
    assert 'href="/upload"' in app_client.get("/new").text  # the form says where uploads are made

    rows = "".join(f"{i % 7},{(i * 3) % 11},{'yes' if i % 2 else 'no'}\n" for i in range(60))
    uploaded = app_client.post(
        "/upload",
        files={"file": ("churn.csv", ("a,b,left\n" + rows).encode())},
        data={"target": "left", "name": "customers 2026"},
    )
    assert uploaded.status_code == 303, uploaded.text
    dataset = sqlite_store.list_datasets(alpha.id)[0]
    assert uploaded.headers["location"] == f"/new?dataset=upload:{dataset.id}"
    form = app_client.get(uploaded.headers["location"])
    assert f'value="upload:{dataset.id}" checked' in form.text and "customers 2026" in form.text
    assert "60 rows, 2 classes" in form.text

    submitted = app_client.post("/new", data={"dataset": f"upload:{dataset.id}", "trials": "3"})
    assert submitted.status_code == 303, submitted.text
    job = sqlite_store.get_job(int(submitted.headers["location"].rsplit("/", 1)[1]))
    assert job.spec["dataset"]["dataset_id"] == dataset.id and job.name == "reinforce on customers 2026 (mlp)"


def test_a_bad_upload_from_the_page_says_what_to_fix_and_keeps_nothing(
    app_client: TestClient, sqlite_store: Store, tmp_path: Path
) -> None:
    alpha, key = create_team(sqlite_store, "alpha")
    app_client.cookies.set(KEY_COOKIE, key)
    latin = "a,b,left\n" + "".join(f"{i},{i},caf\u00e9 {i % 2}\n" for i in range(30))
    refused = app_client.post(
        "/upload", files={"file": ("sales.csv", latin.encode("latin-1"))}, data={"target": "left"}
    )
    assert refused.status_code == 422 and 'id="form-error"' in refused.text
    assert "the CSV is not UTF-8 text (line 2); save it as UTF-8" in refused.text
    assert "caf" not in refused.text  # never the file's content
    assert 'value="left"' in refused.text  # what was typed stays
    no_file = app_client.post("/upload", data={"target": "left"})
    assert no_file.status_code == 422 and "Choose a file" in no_file.text
    assert sqlite_store.list_datasets(alpha.id) == []
    assert not any((tmp_path / "datasets").glob("*"))  # no file left behind


def test_the_form_shows_the_message_of_a_job_that_cannot_run(
    app_client: TestClient, sqlite_store: Store
) -> None:
    _, key = create_team(sqlite_store, "alpha")
    app_client.cookies.set(KEY_COOKIE, key)
    wrong = app_client.post(
        "/new", data={"dataset": "wine", "space": "nb201_cell", "trials": "7", "name": "cells on wine"}
    )
    assert wrong.status_code == 422
    assert 'id="form-error"' in wrong.text and "pick another space or dataset" in wrong.text
    assert 'value="wine" checked' in wrong.text and 'value="7"' in wrong.text  # what was typed stays
    assert 'value="cells on wine"' in wrong.text
    no_number = app_client.post("/new", data={"dataset": "wine", "space": "mlp", "trials": "many"})
    assert no_number.status_code == 422 and "Trials must be a whole number" in no_number.text
    too_few = app_client.post("/new", data={"dataset": "wine", "space": "mlp", "trials": "0"})
    assert too_few.status_code == 422 and "budget.trials" in too_few.text
    assert sqlite_store.list_jobs()[1] == 0  # nothing stored


def test_the_form_places_a_model(app_client: TestClient, sqlite_store: Store, tmp_path: Path) -> None:
    alpha, key = create_team(sqlite_store, "alpha")
    app_client.cookies.set(KEY_COOKIE, key)
    search = _job(sqlite_store, make_settings(tmp_path), alpha, name="my wine search")
    sqlite_store.claim_job("test", 60)
    trial = sqlite_store.add_trial(search, "test", 0, {"units": 32}, {})
    sqlite_store.set_trial_state(trial.id, TrialState.RUNNING)
    sqlite_store.set_trial_state(trial.id, TrialState.COMPLETED, reward=0.9)
    sqlite_store.finish_job(search, "test", JobState.COMPLETED)
    form = app_client.get("/new")
    assert "Place a model" in form.text and 'value="benchmark:nmt" selected' in form.text
    assert 'value="4gpu-nvlink"' in form.text and 'value="hierarchical" selected' in form.text
    response = app_client.post(
        "/new",
        data={
            "kind": "placement",
            "source": "benchmark:rnnlm",
            "cluster": "4gpu-nvlink",
            "placer": "random",
            "max_seconds": "30",
            "batch_size": "16",
            "dataset": "digits",
            "space": "nb201_cell",
        },
    )
    assert response.status_code == 303, response.text
    job = sqlite_store.get_job(int(response.headers["location"].rsplit("/", 1)[1]), team_id=alpha.id)
    assert job.spec["kind"] == "placement" and job.spec["placement"]["cluster"] == "4gpu-nvlink"
    assert job.spec["placement"]["graph"] == {"benchmark": "rnnlm", "options": {"batch_size": 16}}
    assert (
        job.spec["placement"]["strategy"]["name"] == "random" and job.spec["placement"]["max_seconds"] == 30
    )
    page = app_client.get(response.headers["location"])
    assert page.status_code == 200 and 'data-kind="placement"' in page.text
    assert (
        "the rnnlm benchmark" in page.text and "placement.js" in page.text and 'id="chart"' not in page.text
    )
    # An earlier search's model is offered too; mistakes come back with the form as it was.
    assert f'value="job:{search}"' in form.text
    too_long = app_client.post(
        "/new", data={"kind": "placement", "source": f"job:{search}", "max_seconds": "99999", "name": "slow"}
    )
    assert too_long.status_code == 422 and "at most 3600" in too_long.text
    assert f'value="job:{search}" selected' in too_long.text and 'value="slow"' in too_long.text
    assert len(sqlite_store.list_jobs()[0]) == 2


def test_static_files_are_served(app_client: TestClient) -> None:
    assert app_client.get("/static/job.js").status_code == 200
    assert app_client.get("/static/placement.js").status_code == 200
    assert "text/css" in app_client.get("/static/l2l.css").headers["content-type"]


# ------------------------------------------------------------------ the chart's series


def _running_job(store: Store, settings: Settings, team: Any, trials: int) -> int:
    job_id = _job(store, settings, team, budget={"trials": trials, "concurrency": 1, "epochs": 1})
    store.claim_job("test", lease_seconds=600)
    return job_id


def test_rewards_are_a_compact_series_with_an_etag(
    app_client: TestClient, sqlite_store: Store, tmp_path: Path
) -> None:
    alpha, key = create_team(sqlite_store, "alpha")
    job_id = _running_job(sqlite_store, make_settings(tmp_path), alpha, trials=4)
    trials = [sqlite_store.add_trial(job_id, "test", n, {"units": 32}, {}) for n in range(3)]
    for trial in trials:
        sqlite_store.set_trial_state(trial.id, TrialState.RUNNING)
    sqlite_store.set_trial_state(trials[0].id, TrialState.COMPLETED, reward=0.5)
    sqlite_store.set_trial_state(trials[2].id, TrialState.FAILED, error="NaN loss")
    app_client.cookies.set(KEY_COOKIE, key)

    first = app_client.get(f"/jobs/{job_id}/rewards")
    assert first.status_code == 200 and first.json() == [[1, 0.5], [3, None]]
    etag = first.headers["etag"]
    assert app_client.get(f"/jobs/{job_id}/rewards", headers={"If-None-Match": etag}).status_code == 304
    sqlite_store.set_trial_state(trials[1].id, TrialState.COMPLETED, reward=0.75)
    again = app_client.get(f"/jobs/{job_id}/rewards", headers={"If-None-Match": etag})
    assert again.status_code == 200 and again.json() == [[1, 0.5], [2, 0.75], [3, None]]
    assert again.headers["etag"] != etag

    _, beta_key = create_team(sqlite_store, "beta")
    app_client.cookies.set(KEY_COOKIE, beta_key)
    assert app_client.get(f"/jobs/{job_id}/rewards").status_code == 404


def _insert_finished_job(store: Store, settings: Settings, team: Any, trials: int) -> int:
    """A completed job with ``trials`` trials, written in bulk (add_trial would take minutes)."""
    spec = JobSpec.model_validate({**JOB, "budget": {"trials": trials, "concurrency": 8, "epochs": 2}})
    # Straight to the store: teams may not submit this many trials, but a job this big must still show.
    job_id = store.create_job(f"{trials:,} trials", validate_job(spec, settings), team_id=team.id).id
    rows = []
    for n in range(trials):
        failed = n % 97 == 13
        params = {
            "num_layers": 1 + n % 4,
            "units": [16, 32, 64, 128, 256][n % 5],
            "activation": "relu",
            "dropout": [0.0, 0.1, 0.25, 0.5][n % 4],
            "learning_rate": 0.001,
            "batch_size": 32,
        }
        reward = None if failed else 0.6 + 0.3 * (n / trials) + 0.05 * ((n * 7919) % 13) / 13
        rows.append(
            {
                "job_id": job_id,
                "number": n + 1,  # trials are numbered from 1
                "proposal_id": n,
                "params": params,
                "attempts": 1,
                "told": True,
                "state": (TrialState.FAILED if failed else TrialState.COMPLETED).value,
                "reward": reward,
                "metrics": {} if failed else {"val_accuracy": reward},
                "error": "TrialBuildError: the model could not be built" if failed else None,
            }
        )
    with Session(store._write_engine) as session, session.begin():
        session.execute(insert(TrialRow), rows)
        best = session.scalars(
            select(TrialRow.id).where(TrialRow.job_id == job_id).order_by(TrialRow.reward.desc()).limit(1)
        ).one()
        session.execute(
            update(JobRow)
            .where(JobRow.id == job_id)
            .values(state=JobState.COMPLETED.value, best_trial_id=best)
        )
    return job_id


def test_a_job_of_10000_trials_is_paged_and_charted_compactly(
    app_client: TestClient, sqlite_store: Store, tmp_path: Path
) -> None:
    alpha, key = create_team(sqlite_store, "alpha")
    job_id = _insert_finished_job(sqlite_store, make_settings(tmp_path), alpha, 10_000)
    app_client.cookies.set(KEY_COOKIE, key)
    assert app_client.get(f"/job/{job_id}").status_code == 200
    page = app_client.get(f"/jobs/{job_id}/trials", params={"limit": 50, "sort": "reward", "order": "desc"})
    series = app_client.get(f"/jobs/{job_id}/rewards")
    assert len(page.json()["items"]) == 50 and page.json()["total"] == 10_000
    assert len(series.json()) == 10_000 and len(series.content) < 250_000
    # The second read comes from the cache (what it holds, not how fast it answers).
    cache = app_client.app.state.reward_series
    assert cache.get(job_id, 10_000) is not None
    again = app_client.get(f"/jobs/{job_id}/rewards")
    assert again.content == series.content and again.headers["ETag"] == series.headers["ETag"]


# ------------------------------------------------------------------ in a real browser


class SlowTrainer(ThreadExecutor):
    """A fake trainer that takes a while: one report per epoch, and its third trial cannot be built.

    The final model is the plain fake's: a stand-in file and a test score, uploaded over HTTP.
    """

    def __init__(self, epoch_seconds: float = 0.3, broken: int = 3) -> None:
        super().__init__()
        self.epoch_seconds = epoch_seconds
        self._order = itertools.count(1)
        self._broken = broken
        self.broken_ids: set[int] = set()

    def submit(self, task: TrialTask, resources: Any) -> None:
        if not task.final and next(self._order) == self._broken:
            self.broken_ids.add(task.trial_id)
        super().submit(task, resources)

    def _run(self, task: TrialTask) -> None:
        if task.final:  # the job's final model: the plain fake uploads a stand-in file
            time.sleep(2 * self.epoch_seconds)
            return super()._run(task)
        outcome = Outcome(task.trial_id, attempt=task.attempt)
        try:
            if task.trial_id in self.broken_ids:
                time.sleep(self.epoch_seconds)
                raise TrialBuildError("Dense(4096) x 4 needs more memory than the worker has")
            final = synthetic_metrics(task)
            reporter = Reporter(task.report_url, task.trial_id, task.token, attempts=2)
            for epoch in range(task.epochs):
                time.sleep(self.epoch_seconds)
                done = (epoch + 1) / task.epochs
                reporter.step(
                    epoch,
                    {
                        "accuracy": final["accuracy"] * (0.6 + 0.4 * done),
                        "val_accuracy": final["val_accuracy"] * (0.55 + 0.45 * done),
                        "val_loss": final["val_loss"] * (2 - done),
                    },
                )
            reporter.final(final)
        except TrialBuildError as error:
            outcome = Outcome(task.trial_id, f"TrialBuildError: {error}", False, task.attempt)
        except Exception as error:
            outcome = Outcome(task.trial_id, f"{type(error).__name__}: {error}", True, task.attempt)
        with self._lock:
            self._done.append(outcome)


def test_a_search_in_the_browser(browser: Any, sqlite_store: Store, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    store = sqlite_store
    settings = make_settings(tmp_path, port=free_port(), max_retries=1, max_consecutive_failures=5)
    alpha, key = create_team(store, "alpha")
    big_job = _insert_finished_job(store, settings, alpha, 10_000)  # before the loop runs: never claimed

    trainer = SlowTrainer()
    loop = JobLoop(store, trainer, settings)
    stop = threading.Event()
    driving = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    with LiveServer(store, settings) as server:
        driving.start()
        try:
            _browse(browser, server.url, key, big_job, By, Select)
        except Exception:
            screenshot(browser, "failure.png")  # what the browser showed when the test failed
            raise
        finally:
            stop.set()
            driving.join(timeout=10)


def _browse(driver: Any, url: str, key: str, big_job: int, By: Any, Select: Any) -> None:
    find = driver.find_element

    def text_of(element_id: str) -> str:
        # Rendered text, as a reader sees it; badges are capitalised by the style sheet.
        return str(find(By.ID, element_id).text)

    def completed() -> int:
        return int(find(By.ID, "progress-text").get_attribute("data-completed") or 0)

    # Logging in: a wrong key is refused with a message, the right one lands on the jobs.
    driver.get(url + "/new")
    assert "/login" in driver.current_url
    find(By.ID, "key").send_keys("l2l_wrong")
    find(By.CSS_SELECTOR, "button[type=submit]").click()
    assert "not known" in wait_for("the login error shows", lambda: text_of("login-error"))
    find(By.ID, "key").send_keys(key)
    find(By.CSS_SELECTOR, "form.stack button[type=submit]").click()
    wait_for("the form opens after the login", lambda: driver.current_url.endswith("/new"))

    # A job that cannot run comes back with the API's message and the form as typed.
    find(By.CSS_SELECTOR, "input[name=dataset][value=wine]").click()
    find(By.CSS_SELECTOR, "input[name=space][value=nb201_cell]").click()
    find(By.ID, "submit-job").click()
    message = wait_for("the 422 message shows", lambda: text_of("form-error"))
    assert "pick another space or dataset" in message
    assert find(By.CSS_SELECTOR, "input[name=dataset][value=wine]").is_selected()

    # A job through the form: the mlp space on wine, by evolution, with a small budget.
    find(By.CSS_SELECTOR, "input[name=space][value=mlp]").click()
    find(By.CSS_SELECTOR, "input[name=strategy][value=evolution]").click()
    for field, value in (("trials", "10"), ("concurrency", "2"), ("epochs", "3")):
        find(By.ID, field).clear()
        find(By.ID, field).send_keys(value)
    find(By.ID, "submit-job").click()
    wait_for("the job page opens", lambda: "/job/" in driver.current_url)
    job_id = int(driver.current_url.rsplit("/", 1)[1])

    # It runs: the completed count rises while we watch, and the chart gains points.
    wait_for("a first trial completes", lambda: completed() >= 1)
    first_seen = completed()
    wait_for("more trials complete", lambda: completed() > first_seen)
    wait_for("the chart has points", lambda: int(find(By.ID, "chart").get_attribute("data-points") or 0) >= 2)
    wait_for("the best architecture is drawn", lambda: find(By.CSS_SELECTOR, "#arch svg"))

    # The failed trial's error, in the table and in its detail.
    wait_for("the job ends", lambda: text_of("job-state").lower() == "completed")
    wait_for("the table shows the failure", lambda: "Dense(4096)" in text_of("trial-rows"))
    Select(find(By.ID, "state-filter")).select_by_value("failed")
    wait_for(
        "only the failed trial is listed",
        lambda: (
            len(find(By.ID, "trial-rows").find_elements(By.TAG_NAME, "tr")) == 1
            and "failed" in text_of("trial-rows").lower()
        ),
    )
    find(By.CSS_SELECTOR, "#trial-rows tr[data-trial-id]").click()
    error = wait_for("the failed trial's error shows", lambda: text_of("trial-error"))
    assert "cannot be built" in error or "Dense(4096)" in error

    # A completed trial: its metric curves, one per metric, a point per epoch.
    Select(find(By.ID, "state-filter")).select_by_value("")
    find(By.CSS_SELECTOR, "th[data-sort=reward] button").click()
    wait_for(
        "the table sorts by reward",
        lambda: find(By.CSS_SELECTOR, "th[data-sort=reward]").get_attribute("aria-sort") == "descending",
    )
    wait_for(
        "the best trial is first",
        lambda: "best" in (find(By.CSS_SELECTOR, "#trial-rows tr").get_attribute("class") or ""),
    )
    find(By.CSS_SELECTOR, "#trial-rows tr[data-trial-id] button.open-trial").click()
    curves = wait_for(
        "its curves show", lambda: find(By.ID, "trial-curves").find_elements(By.CSS_SELECTOR, "svg")
    )
    assert len(curves) == 3 and len(curves[0].find_elements(By.CSS_SELECTOR, "circle")) == 3
    assert not driver.find_elements(By.ID, "trial-error")

    # The final model: its test score and its download, through the login cookie like every request.
    # (The fake trainer uploads a stand-in .keras file and no SavedModel.)
    assert "test_accuracy" in text_of("test-metrics")
    link = find(By.CSS_SELECTOR, "#final-model .downloads a[data-format=keras]")
    assert link.get_attribute("href") == f"{url}/jobs/{job_id}/model?format=keras"
    downloaded = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(r => r.text()).then(done, e => done(String(e)));",
        link.get_attribute("href"),
    )
    assert downloaded.startswith("model of trial ")
    shot = screenshot(driver, "job-page.png")
    assert shot.stat().st_size > 10_000

    # The job list shows it, with its state and progress.
    driver.get(url + "/")
    row = find(By.CSS_SELECTOR, f"tr[data-job-id='{job_id}']")
    assert "completed" in row.text.lower() and "9 / 10 completed, 1 failed" in row.text

    # 10,000 trials: the page loads quickly and the table holds one page of them.
    driver.get(f"{url}/job/{big_job}")
    wait_for(
        "the big table is paged", lambda: find(By.ID, "page-info").get_attribute("data-total") == "10000"
    )
    wait_for("the big chart is drawn", lambda: find(By.ID, "chart").get_attribute("data-points") == "10000")
    assert len(find(By.ID, "trial-rows").find_elements(By.TAG_NAME, "tr")) == 50
    assert "1–50 of 10,000 trials" in text_of("page-info")
    find(By.ID, "last-page").click()
    wait_for("the last page shows", lambda: "9,951–10,000 of 10,000" in text_of("page-info"))
    screenshot(driver, "job-page-10000-trials.png")
