"""The command line over the real API: submit a YAML job, wait, list, download; and its errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LiveServer, free_port, make_settings
from fakes import ThreadExecutor

from l2l.client.cli import main
from l2l.loop import JobLoop
from l2l.service.jobs import create_team
from l2l.settings import get_settings
from l2l.store import Store

REPO = Path(__file__).resolve().parents[1]

JOB_YAML = """
name: from the command line
dataset: wine
space: mlp
strategy: evolution
budget: {trials: 4, concurrency: 2, epochs: 1}
seed: 2
"""


@pytest.fixture
def service(sqlite_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path, port=free_port())
    _, key = create_team(sqlite_store, "cli")
    monkeypatch.setenv("L2L_URL", settings.report_url)
    monkeypatch.setenv("L2L_DATA_DIR", str(tmp_path / "cli-data"))
    get_settings.cache_clear()
    monkeypatch.setenv("L2L_API_KEY", key)
    stop = threading.Event()
    loop = JobLoop(sqlite_store, ThreadExecutor(), settings)
    with LiveServer(sqlite_store, settings) as server:
        thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
        thread.start()
        yield server
        stop.set()
        thread.join(timeout=10)
    get_settings.cache_clear()


def test_submit_wait_list_and_download(
    service: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    job_file = tmp_path / "job.yaml"
    job_file.write_text(JOB_YAML)
    assert main(["submit", str(job_file), "--wait"]) == 0
    out = capsys.readouterr().out
    assert "submitted job 1: from the command line" in out
    assert "[##############################] 4/4 trials" in out
    # A summary a person reads, not a Python dict.
    summary = out.split("\n", 2)[-1]
    assert "{" not in summary and "'" not in summary.split("chance level")[0], summary
    assert "job 1 completed: from the command line\n  4 of 4 trials completed\n  best: trial " in summary
    best_number = int(summary.split("best: trial ")[1].split(",")[0])
    assert 1 <= best_number <= 4  # numbered from 1, as everywhere
    assert (
        "chance level: accuracy 0.3889 on the test part" in summary
        and "most frequent class ('class_1')" in summary
    )
    assert f"final model (trial {best_number} retrained): test_accuracy 0." in summary
    assert "download it: l2l download 1" in summary and "WARNING" not in summary

    assert main(["jobs"]) == 0
    assert "completed" in capsys.readouterr().out
    assert main(["trials", "1"]) == 0
    listing = capsys.readouterr().out
    assert "(4 of 4 trials)" in listing and '"num_layers"' in listing
    numbers = sorted(int(line.split()[0]) for line in listing.splitlines()[:-1])
    assert numbers == [1, 2, 3, 4] and f"{best_number:>5}  completed" in listing.splitlines()[0]

    monkeypatch.chdir(tmp_path)
    assert main(["download", "1"]) == 0
    assert "saved l2l-job-1.keras" in capsys.readouterr().out
    assert (tmp_path / "l2l-job-1.keras").read_bytes().startswith(b"model of trial")


def test_errors_are_one_line(
    service: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: wine\nspace: nope\nbudget: {trials: 2}\n")
    assert main(["submit", str(bad)]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("l2l: POST /jobs -> 422: space: unknown search space 'nope'") and err.count("\n") == 1
    )

    # pydantic's own 422s: "field: message", one line for one error, a line each for more.
    bad.write_text("dataset: wine\nspace: mlp\nbudget: {trials: 0}\n")
    assert main(["submit", str(bad)]) == 1
    assert capsys.readouterr().err == (
        "l2l: POST /jobs -> 422: budget.trials: Input should be greater than or equal to 1\n"
    )
    bad.write_text("dataset: wine\nspace: mlp\nbudget: {trials: 0, epochs: many}\n")
    assert main(["submit", str(bad)]) == 1
    assert capsys.readouterr().err == (
        "l2l: POST /jobs -> 422: \n"
        "  budget.trials: Input should be greater than or equal to 1\n"
        "  budget.epochs: Input should be a valid integer, unable to parse string as an integer\n"
    )

    assert main(["submit", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read" in capsys.readouterr().err

    assert main(["download", "99"]) == 1
    assert "404" in capsys.readouterr().err

    monkeypatch.delenv("L2L_API_KEY")
    assert main(["jobs"]) == 1
    assert "no API key" in capsys.readouterr().err

    assert main(["admin", "create-team", "not a name!"]) == 2
    assert "team name" in capsys.readouterr().err


def test_create_team_prints_the_key_and_no_log_lines(tmp_path: Path) -> None:
    env = {**os.environ, "L2L_DATA_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    env.pop("L2L_DATABASE_URL", None)
    made = subprocess.run(
        [sys.executable, "-m", "l2l.client.cli", "admin", "create-team", "newcomers"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert re.fullmatch(r"l2l_[A-Za-z0-9_-]{43}\n", made.stdout), made.stdout
    assert made.stderr == "API key for team newcomers (shown once; keep it secret):\n", made.stderr


def test_the_demo_and_the_summary_number_trials_as_the_api_does() -> None:
    from l2l.client.demo import _trial_line
    from l2l.client.format import job_summary

    first = {
        "id": 41,
        "number": 1,
        "state": "completed",
        "reward": 0.9,
        "metrics": {},
        "params": {"units": 8},
    }
    job = {
        "id": 3,
        "name": "demo",
        "state": "completed",
        "reason": None,
        "spec": {"objective": {"metric": "val_accuracy"}},
        "progress": {"trials": 24, "completed": 24, "failed": 0, "cancelled": 0},
        "best_trial": {**first, "metrics": {"val_accuracy": 0.9, "parameters": 866.0}},
        "final_model": {
            "state": "completed",
            "trial_id": 41,
            "test_metrics": {"test_accuracy": 0.9583, "test_examples": 360.0, "parameters": 866.0},
        },
        "chance": None,
        "warning": None,
    }
    assert _trial_line(first, job).startswith("trial   1/24  val_accuracy 0.9000")
    summary = "\n".join(job_summary(job))
    assert "best: trial 1, val_accuracy 0.9000" in summary
    assert (
        "final model (trial 1 retrained): test_accuracy 0.9583, test_examples 360, parameters 866" in summary
    )
