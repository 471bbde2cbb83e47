"""``l2l bench training``: the anytime picks on canned trials, and every contender for real, briefly."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from l2l.bench import training
from l2l.bench.overhead import THREAD_ENV
from l2l.bench.training_contenders import CONTENDERS, CompletedTrial, Search
from l2l.client.cli import main


def _trial(units: int, val_accuracy: float, seconds: float, epochs: int = 3) -> CompletedTrial:
    params = {"num_layers": 1, "units": units, "dropout": 0.0, "learning_rate": 1e-3}
    return CompletedTrial(params, epochs, val_accuracy, seconds)


def test_each_budget_picks_the_best_trial_completed_by_then(monkeypatch: pytest.MonkeyPatch) -> None:
    canned = [
        _trial(16, 0.50, 10.0),
        _trial(32, 0.70, 20.0, epochs=1),  # stopped early: retrained for its one epoch
        _trial(64, 0.70, 40.0),  # a tie: the earlier trial stays the pick
        _trial(128, 0.90, 100.0),
    ]
    retrained: list[tuple[int, int]] = []

    def retrain(search: Search, pick: CompletedTrial) -> float:
        retrained.append((pick.params["units"], pick.epochs))
        return pick.val_accuracy - 0.05

    monkeypatch.setitem(CONTENDERS, "canned", lambda search: canned)
    monkeypatch.setattr(training, "retrained_test_accuracy", retrain)
    for name, value in THREAD_ENV.items():
        monkeypatch.setenv(name, value)  # run_training sets them; put them back after
    document = training.run_training(
        contenders=["canned"], seeds=2, budget_minutes=[0.25, 1.0, 0.5, 2.0], rows=60, log=lambda line: None
    )
    budgets = document["runs"][0]["budgets"]
    assert [b["minutes"] for b in budgets] == [0.25, 0.5, 1.0, 2.0]
    assert [b["trials_completed"] for b in budgets] == [1, 2, 3, 4]
    assert [b["pick"]["params"]["units"] for b in budgets] == [16, 32, 32, 128]
    assert [b["test_accuracy"] for b in budgets] == pytest.approx([0.45, 0.65, 0.65, 0.85])
    assert retrained == [(16, 3), (32, 1), (128, 3)] * 2  # each distinct pick once per run
    report = training.format_report(document)
    assert "| canned | 0.4500 ± 0.0000 | 0.6500 ± 0.0000 | 0.6500 ± 0.0000 | 0.8500 ± 0.0000 |" in report


def test_the_command_refuses_a_budget_that_is_not_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "training", "--budget-minutes", "0", "--seeds", "1"]) == 2
    assert "--budget-minutes must be positive" in capsys.readouterr().err


@pytest.mark.skipif(
    os.environ.get("L2L_TEST_BENCH_TRAINING") != "1",
    reason="a wall-clock benchmark (30 s per contender, trials must finish inside it, which a loaded "
    "machine cannot promise): L2L_TEST_BENCH_TRAINING=1 pytest tests/test_bench_training.py",
)
@pytest.mark.xdist_group("ray")  # a Ray cluster: one at a time (see tests/test_end_to_end.py)
def test_every_contender_trains_and_its_picks_are_scored_on_test(monkeypatch: pytest.MonkeyPatch) -> None:
    for package in ("keras_tuner", "optuna", "grpc"):
        pytest.importorskip(package, reason="the training benchmark needs the bench extra")
    for name, value in THREAD_ENV.items():
        monkeypatch.setenv(name, value)
    lines: list[str] = []
    document: dict[str, Any] = training.run_training(
        seeds=1, budget_minutes=[0.25, 0.5], epochs=3, rows=400, log=lines.append
    )
    json.dumps(document)  # the --out file
    runs = {run["contender"]: run for run in document["runs"]}
    assert sorted(runs) == sorted(CONTENDERS)
    for name, run in runs.items():
        assert "error" not in run, f"{name}: {run['error']}"
        assert run["budgets"][-1]["trials_completed"] >= 1, f"{name} completed no trial: {lines}"
        for trial in run["trials"]:
            assert 1 <= trial["epochs"] <= 3 and 0 <= trial["val_accuracy"] <= 1
            assert trial["seconds"] <= 30  # trials still running at the deadline do not count
        for budget in run["budgets"]:
            if budget["pick"] is not None:
                assert 0 < budget["test_accuracy"] <= 1
    report = training.format_report(document)
    assert all(f"| {name} |" in report for name in CONTENDERS)
