"""``l2l serve`` as operators run it: a real process with its controller and embedded Ray.

It restarts a controller that died, and SIGTERM stops every process it started within
seconds, with the job's lease released (the next controller takes the job at once).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from service_process import ServeProcess, alive, wait_until

from l2l.service.jobs import create_team
from l2l.store import Store
from l2l.store.states import TrialState

#: A job whose first trial trains for minutes: a worker is busy whenever the test looks.
LONG_JOB = {
    "dataset": "wine",
    "space": "mlp",
    "strategy": "random",
    "budget": {"trials": 2, "concurrency": 1, "epochs": 1000},
    "final_model": False,
}


@pytest.mark.slow
def test_serve_restarts_a_dead_controller_and_sigterm_stops_everything(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'l2l.db'}")
    store.migrate()
    _, key = create_team(store, "operators")
    auth = {"Authorization": f"Bearer {key}"}
    serve = ServeProcess(tmp_path, free_port()).start()
    try:
        first = serve.wait_healthy()["controller"]
        job_id = httpx.post(f"{serve.url}/jobs", json=LONG_JOB, headers=auth).json()["id"]
        wait_until("a trial to run", lambda: store.trial_counts(job_id)[TrialState.RUNNING] == 1, 180)

        os.kill(first["pid"], signal.SIGKILL)  # the controller dies; l2l serve lives on
        second = wait_until(
            "a new controller",
            lambda: (h := serve.health()) and h["controller"]["pid"] != first["pid"] and h["controller"],
            240,
        )
        assert not alive(first["pid"])
        wait_until("the new controller's lease", lambda: store.get_job(job_id).owner == second["id"], 60)
        wait_until("its trial to run again", lambda: store.list_trials(job_id)[0][0].attempts == 2, 60)
        tree = serve.tree()
        assert second["pid"] in tree and len(tree) > 3, tree  # API, controller, Ray's processes

        serve.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        serve.process.wait(timeout=60)  # type: ignore[union-attr]
        # l2l serve itself exits only after it stopped the rest; allow a moment for /proc to say so
        wait_until(f"every process of {tree} to stop", lambda: not any(alive(p) for p in tree), 10)
        job = store.get_job(job_id)
        assert job.owner is None and job.lease_expires_at is None  # released, not left to run out
        assert job.state.value == "running"
        # The stopped controller removed its heartbeat row; the killed one could not.
        assert [c.id for c in store.controllers()] == [first["id"]]
    finally:
        serve.stop()
        store.dispose()
