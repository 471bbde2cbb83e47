"""``l2l demo``: the main job of the README's first command.

Starts the service (API + controller, SQLite, embedded Ray) unless one already answers,
submits a REINFORCE search over the NAS-Bench-201 cell space on scikit-learn's digits,
prints each trial as it finishes, and ends with the best architecture and its accuracy.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

from l2l.client import ApiError, Client
from l2l.settings import get_settings

DEMO_TEAM = "demo"

#: Trials whose mean the best trial is compared with: the controller's first guesses.
FIRST_TRIALS = 4


def demo_job(trials: int, epochs: int, concurrency: int) -> dict[str, Any]:
    return {
        "name": "demo: REINFORCE over NAS-Bench-201 cells on digits",
        "dataset": "digits",
        "space": {"name": "nb201_cell", "settings": {"channels": 8, "cells_per_stage": 1}},
        "strategy": {"name": "reinforce"},
        "budget": {"trials": trials, "concurrency": concurrency, "epochs": epochs, "resources": {"CPU": 1}},
        "seed": 0,
    }


def run_demo(trials: int, epochs: int, concurrency: int, keep_serving: bool) -> int:
    client = Client(get_settings().report_url)
    server = None
    if client.healthy():
        print(f"using the service already running at {client.base_url}")
    else:
        data_dir = get_settings().data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        log_path = data_dir / "serve.log"
        print(f"starting the service at {client.base_url} (SQLite and embedded Ray; log in {log_path})")
        with open(log_path, "ab") as log:
            # Own session, so stopping it stops its controller and Ray workers too.
            server = subprocess.Popen(
                [sys.executable, "-m", "l2l.client.cli", "serve"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            client.wait_until_healthy(300, alive=lambda: server.poll() is None)
        except ApiError as error:
            raise ApiError(f"{error}; its log is {log_path}") from None
    key = _demo_key()
    client.use_key(key)
    try:
        job = client.submit_job(demo_job(trials, epochs, concurrency))
        print(f"watch it live at {client.base_url}/job/{job['id']} (log in with the demo team's key {key})")
        return _watch(client, job)
    finally:
        if server is not None and not keep_serving:
            print("stopping the service (run `l2l serve` to start it again; the database keeps every trial)")
            stop_process_group(server)


def stop_process_group(process: subprocess.Popen[bytes], grace_seconds: float = 60) -> None:
    """SIGTERM a process and everything it started in its group; SIGKILL what outlives the grace."""
    os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_seconds)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _demo_key() -> str:
    """A fresh key of the "demo" team (made on first use) from the service's own database."""
    from l2l.service import jobs as service
    from l2l.store import NotFound, Store

    store = Store(get_settings().resolved_database_url)
    try:
        store.migrate()
        try:
            return service.issue_api_key(store, store.team_by_name(DEMO_TEAM).id)
        except NotFound:
            return service.create_team(store, DEMO_TEAM)[1]
    finally:
        store.dispose()


def _watch(client: Client, job: dict[str, Any]) -> int:
    print(f"submitted job {job['id']}: {job['name']}, {job['progress']['trials']} trials")
    seen: set[int] = set()
    announced = False
    started = time.monotonic()
    while True:
        job = client.job(job["id"])
        finished = client.trials(job["id"], state=["completed", "failed"], limit=500)["items"]
        for trial in sorted(finished, key=lambda t: t["number"]):
            if trial["id"] not in seen:
                seen.add(trial["id"])
                print(_trial_line(trial, job), flush=True)
        if job["state"] in ("completed", "failed", "cancelled"):
            break
        progress = job["progress"]
        searched = progress["created"] == progress["trials"] and not progress["running"]
        if searched and not announced:
            print("search done; retraining the best architecture on training + validation data...")
            announced = True
        time.sleep(2)
    print(
        f"job {job['id']} {job['state']} after {time.monotonic() - started:.0f} s"
        + (f": {job['reason']}" if job["reason"] else "")
    )
    best = job["best_trial"]
    if best is None:
        print("no trial completed")
        return 1
    ordered = client.trials(job["id"], limit=500)["items"]
    first = [t["reward"] for t in ordered[:FIRST_TRIALS] if t["reward"] is not None]
    print(f"best architecture (trial {best['number']}): {_describe(best['params'])}")
    accuracy = best["metrics"].get("val_accuracy", best["reward"])
    print(f"best validation accuracy: {accuracy:.4f}")
    if first:
        mean = statistics.fmean(first)
        gain = 100 * (accuracy - mean)
        print(f"mean of the first {len(first)} trials: {mean:.4f}; the best is {gain:+.1f} points")
    final = job.get("final_model")
    if final and final["state"] == "completed":
        score = final["test_metrics"].get("test_accuracy")
        print(f"final model, scored once on held-out test data: test accuracy {score:.4f}")
        print(f"download it: {client.base_url}{final['downloads']['keras']} (or `l2l download {job['id']}`)")
    return 0 if job["state"] == "completed" else 1


def _trial_line(trial: dict[str, Any], job: dict[str, Any]) -> str:
    total = job["progress"]["trials"]
    if trial["state"] == "failed":
        reason = (trial["error"] or "").strip().splitlines()[-1:] or ["?"]
        return f"trial {trial['number']:>3}/{total} failed: {reason[0][:120]}"
    best = job["best_trial"] or {}
    return (
        f"trial {trial['number']:>3}/{total}  val_accuracy {trial['reward']:.4f}  "
        f"({trial['metrics'].get('train_seconds', 0):.0f} s)  {_describe(trial['params'])}"
        + ("" if not best else f"  best so far {best.get('reward', 0):.4f}")
    )


def _describe(params: dict[str, Any]) -> str:
    from search_spaces.nb201 import arch_str

    try:
        return arch_str(params)
    except (KeyError, ValueError):
        return ", ".join(f"{name}={value}" for name, value in params.items())
