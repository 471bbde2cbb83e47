"""The real loop: real Ray workers train real Keras models and report over real HTTP.

(A killed ``l2l serve`` going on with its jobs where they were: tests/test_durability.py.)
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import HANG_SECONDS, LiveServer, free_port, make_settings

from l2l.loop import JobLoop
from l2l.service.jobs import create_team, submit_job
from l2l.service.jobspec import JobSpec
from l2l.settings import ServeSettings, Settings
from l2l.store import Store
from l2l.store.states import JobState, TrialState

# A Ray cluster and Ray Serve (whose predictor takes the default port): one at a time under
# pytest-xdist (scripts/test.sh runs --dist loadgroup).
pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def ray_executor() -> Iterator[object]:
    from l2l.worker.ray_executor import RayExecutor

    executor = RayExecutor(num_cpus=2)
    yield executor
    executor.shutdown()


def test_ray_workers_train_keras_models_and_report_over_http(
    sqlite_store: Store, tmp_path: Path, ray_executor: object
) -> None:
    settings = make_settings(tmp_path, port=free_port())
    settings = settings.model_copy(update={"serve": ServeSettings(port=free_port(), idle_seconds=30)})
    team, key = create_team(sqlite_store, "e2e")
    spec = {
        "dataset": "wine",
        "space": "mlp",
        "strategy": "reinforce",
        "budget": {"trials": 4, "concurrency": 2, "epochs": 3},
        "seed": 0,
    }
    server = LiveServer(sqlite_store, settings).__enter__()
    try:
        job = submit_job(sqlite_store, JobSpec.model_validate(spec), settings, team)
        loop = JobLoop(sqlite_store, ray_executor, settings)  # type: ignore[arg-type]
        deadline = time.monotonic() + HANG_SECONDS
        while not sqlite_store.get_job(job.id).state.is_finished():
            assert time.monotonic() < deadline, f"the job did not finish in {HANG_SECONDS:.0f} s"
            if not loop.step():
                time.sleep(0.1)
        _check_the_job_and_its_model(sqlite_store, job.id)
        _check_predictions(server, settings, key, sqlite_store, job.id)
    finally:
        server.__exit__(None, None, None)


def _check_the_job_and_its_model(sqlite_store: Store, job_id: int) -> None:
    job = sqlite_store.get_job(job_id)
    trials, total = sqlite_store.list_trials(job.id)
    assert job.state is JobState.COMPLETED and total == 4
    assert all(t.state is TrialState.COMPLETED and t.told for t in trials), [t.error for t in trials]
    for trial in trials:
        # Real training: Keras' own metrics, a real accuracy, one report per epoch.
        assert 0.0 <= trial.metrics["val_accuracy"] <= 1.0 and trial.reward == trial.metrics["val_accuracy"]
        assert trial.metrics["parameters"] > 0 and math.isfinite(trial.metrics["train_seconds"])
        assert [p.step for p in sqlite_store.trial_metrics(trial.id)] == [0, 1, 2]
    assert max(t.reward or 0 for t in trials) > 0.5  # wine has 3 classes: chance is ~0.4
    assert job.strategy_state is not None and len(job.strategy_state["pending"]) == 0

    # The final model: the best architecture retrained, scored once on the test part, loadable.
    final = sqlite_store.get_final_model(job.id)
    assert final is not None and final.state is TrialState.COMPLETED, final
    assert final.trial_id == job.best_trial_id and 0 <= final.test_metrics["test_accuracy"] <= 1
    assert final.test_metrics["test_examples"] == 36  # 20% of wine's 178 rows, held out from the search
    import keras

    from l2l.service.datasets import load_dataset

    model = keras.models.load_model(final.files["keras"])
    data = load_dataset("wine")
    predictions = model.predict(data.x_test, verbose=0)
    assert predictions.shape == (36, 3)
    accuracy = float((predictions.argmax(axis=1) == data.y_test).mean())
    assert abs(accuracy - final.test_metrics["test_accuracy"]) < 1e-6
    assert Path(final.files["savedmodel"]).stat().st_size > 0


def _check_predictions(server: LiveServer, settings: Settings, key: str, store: Store, job_id: int) -> None:
    """Predictions come from a Ray Serve replica started on first use, for raw rows."""
    import keras

    from l2l.service.datasets import load_dataset
    from l2l.worker.predictor import start_predictor, stop_predictor

    start_predictor(settings.serve.host, settings.serve.port, settings.serve.idle_seconds)
    try:
        data = load_dataset("wine")
        pre = data.preprocessor
        raw = data.x_test * np.asarray(pre.std) + np.asarray(pre.mean)  # the rows as the user has them
        auth = {"Authorization": f"Bearer {key}"}
        response = httpx.post(
            f"{server.url}/jobs/{job_id}/predict", json={"rows": raw.tolist()}, headers=auth, timeout=200
        )
        assert response.status_code == 200, response.text
        answers = response.json()["predictions"]
        model = keras.models.load_model(store.get_final_model(job_id).files["keras"])  # type: ignore[union-attr]
        expected = model.predict(data.x_test, verbose=0).argmax(axis=1)
        assert [a["label"] for a in answers] == [pre.class_names[i] for i in expected]
        assert abs(sum(answers[0]["probabilities"].values()) - 1) < 1e-4
        upload = io.BytesIO()
        np.savez(upload, x=raw[:5])
        from_file = httpx.post(
            f"{server.url}/jobs/{job_id}/predict/file",
            files={"file": ("rows.npz", upload.getvalue())},
            headers=auth,
            timeout=60,
        )
        assert from_file.status_code == 200, from_file.text
        assert [a["label"] for a in from_file.json()["predictions"]] == [a["label"] for a in answers[:5]]
        bad = httpx.post(f"{server.url}/jobs/{job_id}/predict", json={"rows": [[1, 2]]}, headers=auth)
        assert bad.status_code == 422 and "13 numbers" in bad.json()["detail"]
    finally:
        stop_predictor()


def test_a_placement_job_runs_on_a_ray_worker(
    sqlite_store: Store, tmp_path: Path, ray_executor: object
) -> None:
    """One task on the same Ray path as a trial: the worker searches placements of an uploaded
    graph, sends the result document and reports; the job completes with it."""
    from test_placement_service import TINY

    settings = make_settings(tmp_path, port=free_port())
    team, key = create_team(sqlite_store, "placers")
    auth = {"Authorization": f"Bearer {key}"}
    with LiveServer(sqlite_store, settings) as server:
        graph = httpx.post(f"{server.url}/graphs", json=TINY, headers=auth).json()
        spec = {
            "kind": "placement",
            "placement": {"graph": {"graph_id": graph["id"]}, "strategy": "random", "max_seconds": 2},
        }
        job = submit_job(sqlite_store, JobSpec.model_validate(spec), settings, team)
        loop = JobLoop(sqlite_store, ray_executor, settings)  # type: ignore[arg-type]
        deadline = time.monotonic() + HANG_SECONDS
        while not sqlite_store.get_job(job.id).state.is_finished():
            assert time.monotonic() < deadline, f"the placement job did not finish in {HANG_SECONDS:.0f} s"
            if not loop.step():
                time.sleep(0.1)
        finished = sqlite_store.get_job(job.id)
        trial = sqlite_store.list_trials(job.id)[0][0]
        assert finished.state is JobState.COMPLETED, (finished.reason, trial.error)
        assert trial.reward is not None and trial.metrics["samples"] > 0
        document = httpx.get(f"{server.url}/jobs/{job.id}/placement", headers=auth).json()
        assert document["step_time"] == trial.metrics["step_time"] and len(document["placement"]) == 7
