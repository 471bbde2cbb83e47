"""The command line over the real API: submit a YAML job, wait, list, download; and its errors."""

from __future__ import annotations

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
    assert "[##############################] 4/4 trials" in out and "job 1 completed" in out
    assert "final model:" in out

    assert main(["jobs"]) == 0
    assert "completed" in capsys.readouterr().out
    assert main(["trials", "1"]) == 0
    listing = capsys.readouterr().out
    assert "(4 of 4 trials)" in listing and '"num_layers"' in listing

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

    assert main(["submit", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read" in capsys.readouterr().err

    assert main(["download", "99"]) == 1
    assert "404" in capsys.readouterr().err

    monkeypatch.delenv("L2L_API_KEY")
    assert main(["jobs"]) == 1
    assert "no API key" in capsys.readouterr().err

    assert main(["admin", "create-team", "not a name!"]) == 2
    assert "team name" in capsys.readouterr().err
