"""The NAS-Bench-201 benchmark: tabular trials, the protocol, and real jobs in a real store.

Most tests use a planted table (every cell of the space; validation accuracy grows with
the number of edges at a planted op), so they need neither the table file nor luck.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest

from l2l.bench.nb201 import RunResult, matches_from_curves, queries_to_match, run_strategy, top_threshold
from l2l.store import Store
from l2l.store.states import JobState, TrialState
from search_spaces import SpaceError, get_space
from search_spaces.nb201 import EDGE_NAMES, OPS, arch_str, params_from_arch_str
from search_spaces.nb201_cost import network_cost
from search_spaces.nb201_table import (
    METRIC,
    NB201Table,
    TestColumnNotLoaded,
    load_table,
    table_path,
    tabular_metrics,
)

PLANTED = ("nor_conv_3x3", "skip_connect", "nor_conv_1x1", "avg_pool_3x3", "nor_conv_3x3", "none")


def planted_rows() -> list[tuple[int, str, float, float]]:
    """(index, arch, valid %, test %) for every cell: 50% + 8% per edge at its planted op."""
    rows = []
    for index, ops in enumerate(itertools.product(OPS, repeat=len(EDGE_NAMES))):
        hits = sum(op == planted for op, planted in zip(ops, PLANTED, strict=True))
        tiebreak = (index % 97) / 100.0  # distinct values, so the pick is unambiguous
        valid = 50.0 + 8.0 * hits + tiebreak
        rows.append((index, arch_str(dict(zip(EDGE_NAMES, ops, strict=True))), valid, valid - 1.5))
    return rows


class RecordingTable(NB201Table):
    """Counts validation look-ups and records, at each test look-up, what had happened by then."""

    def __init__(self, store: Store | None = None) -> None:
        rows = planted_rows()
        columns = {"cifar10": [r[2] for r in rows]}
        super().__init__([(r[0], r[1]) for r in rows], columns, {"cifar10": [r[3] for r in rows]}, "planted")
        self.store = store
        self.valid_lookups = 0
        self.test_reads: list[dict[str, Any]] = []

    def valid_accuracy(self, arch: str, dataset: str) -> float:
        self.valid_lookups += 1
        return super().valid_accuracy(arch, dataset)

    def test_accuracy(self, arch: str, dataset: str) -> float:
        seen: dict[str, Any] = {"valid_lookups": self.valid_lookups}
        if self.store is not None:
            jobs, _ = self.store.list_jobs()
            seen["jobs_finished"] = [job.state.is_finished() for job in jobs]
        self.test_reads.append(seen)
        return super().test_accuracy(arch, dataset)


@pytest.fixture(scope="module")
def planted() -> RecordingTable:
    return RecordingTable()


def test_tabular_space_reports_validation_accuracy_and_size_and_nothing_else(planted: RecordingTable) -> None:
    space = get_space({"name": "nb201_cell", "settings": {"tabular": "cifar10"}})
    params = dict(zip(EDGE_NAMES, PLANTED, strict=True))
    metrics = tabular_metrics(space, params, planted)
    assert metrics == {
        METRIC: pytest.approx(planted.valid_accuracy(arch_str(params), "cifar10") / 100),
        **network_cost(params, "cifar10"),
    }
    assert list(metrics) == ["val_accuracy", "parameters", "flops"]  # never a test accuracy
    with pytest.raises(SpaceError, match="must be null or one of"):
        get_space({"name": "nb201_cell", "settings": {"tabular": "cifar11"}})
    with pytest.raises(SpaceError, match="not tabular"):
        tabular_metrics(get_space("nb201_cell"), params, planted)


def test_a_table_loaded_for_searching_has_no_test_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "table.csv", planted_rows()[:50])
    searching = load_table(path)
    arch = searching.archs()[3]
    assert searching.valid_accuracy(arch, "cifar10") == pytest.approx(planted_rows()[3][2])
    with pytest.raises(TestColumnNotLoaded):
        searching.test_accuracy(arch, "cifar10")
    assert load_table(path, with_test=True).test_accuracy(arch, "cifar10") == pytest.approx(
        planted_rows()[3][3]
    )


def test_the_same_seed_gives_the_same_result(planted: RecordingTable) -> None:
    first = run_strategy("evolution", "cifar10", budget=12, runs=2, table=planted)
    second = run_strategy("evolution", "cifar10", budget=12, runs=2, table=planted)
    fields = [(r.index, r.arch, r.reward, r.test_accuracy, r.best_so_far) for r in first.runs]
    assert fields == [(r.index, r.arch, r.reward, r.test_accuracy, r.best_so_far) for r in second.runs]
    assert first.runs[0].best_so_far != first.runs[1].best_so_far  # seed = run index


def test_every_query_is_a_completed_told_trial_of_a_real_job(sqlite_store: Store) -> None:
    table = RecordingTable(sqlite_store)
    result = run_strategy("random", "cifar10", budget=8, runs=2, table=table, store=sqlite_store)
    jobs, total = sqlite_store.list_jobs()
    assert total == 2 and all(job.state is JobState.COMPLETED for job in jobs)
    for run in result.runs:
        trials, count = sqlite_store.list_trials(run.job_id)
        assert count == 8
        assert all(t.state is TrialState.COMPLETED and t.told and t.attempts == 1 for t in trials)
        # the worker reported the validation accuracy and the size only; the reward is that accuracy
        assert all(set(t.metrics) == {METRIC, "parameters", "flops"} for t in trials)
        assert all(t.reward == t.metrics[METRIC] for t in trials)
        best = [max(t.reward for t in trials[: n + 1]) for n in range(8)]
        assert run.best_so_far == best
        assert run.reward == best[-1]
        picked = sqlite_store.get_trial(sqlite_store.get_job(run.job_id).best_trial_id)
        assert arch_str(picked.params) == run.arch
        assert run.test_accuracy == table.test_accuracy(run.arch, "cifar10")


def test_the_test_column_is_read_only_after_each_search_ends(sqlite_store: Store) -> None:
    table = RecordingTable(sqlite_store)
    result = run_strategy("evolution", "cifar10", budget=10, runs=3, table=table, store=sqlite_store)
    # one read per cell a run picked or would have picked had it stopped earlier
    picks_per_run = [len({t for t in run.test_so_far if t is not None}) for run in result.runs]
    assert len(table.test_reads) == sum(picks_per_run)
    reads = iter(table.test_reads)
    for run, picks in enumerate(picks_per_run):
        for seen in itertools.islice(reads, picks):
            assert seen["valid_lookups"] >= 10 * (run + 1)  # that run's ten queries were looked up
            assert seen["jobs_finished"] == [True] * (run + 1)  # its job (and every earlier one) had ended


def test_learning_strategies_beat_random_on_a_planted_table(planted: RecordingTable) -> None:
    def late_mean(strategy: str, options: dict[str, Any] | None = None) -> float:
        """The mean reward of the last 30 of 100 queries of one run."""
        result = run_strategy(strategy, "cifar10", budget=100, runs=1, table=planted, options=options)
        return statistics.fmean(r for run in result.runs for r in run.rewards[-30:] if r is not None)

    random_search = late_mean("random")
    assert late_mean("evolution", {"population_size": 10, "sample_size": 3}) > random_search + 0.05
    assert late_mean("reinforce", {"learning_rate": 0.01}) > random_search + 0.02


def test_queries_to_the_top_percent(planted: RecordingTable) -> None:
    threshold = top_threshold(planted, "cifar10")
    assert sum(v >= threshold for v in planted.valid_column("cifar10")) == 157  # 1% of 15,625
    result = run_strategy("random", "cifar10", budget=5, runs=1, table=planted)
    run = result.runs[0]
    hit = [i + 1 for i, r in enumerate(run.best_so_far) if r is not None and r >= threshold / 100]
    assert run.queries_to_top == (hit[0] if hit else None)


def test_the_test_accuracy_so_far_follows_the_best_reward_so_far(planted: RecordingTable) -> None:
    run = run_strategy("random", "cifar10", budget=20, runs=1, table=planted).runs[0]
    # every planted cell's test accuracy is its validation accuracy less 1.5 points
    assert run.test_so_far == pytest.approx([100 * best - 1.5 for best in run.best_so_far])
    assert run.test_so_far[-1] == run.test_accuracy


def test_queries_to_match_the_strongest_peer(planted: RecordingTable) -> None:
    def fake(curve: list[float]) -> RunResult:
        run = run_strategy("random", "cifar10", budget=len(curve), runs=1, table=planted).runs[0]
        run.test_so_far = list(curve)
        return run

    fast = [fake([80.0, 85.0, 86.0, 87.0]), fake([70.0, 85.0, 88.0, 89.0])]  # mean 75, 85, 87, 88
    slow = [fake([60.0, 70.0, 80.0, 86.0])]
    weak = [fake([50.0, 60.0, 70.0, 75.0])]
    matches = queries_to_match({"fast": fast, "slow": slow, "weak": weak})
    assert matches["fast"]["peer"] == "slow" and matches["fast"]["peer_test_mean"] == 86.0
    assert matches["fast"]["queries"] == 3  # 87 >= 86 at query 3
    assert matches["slow"]["peer"] == "fast" and matches["slow"]["queries"] is None  # never reaches 88
    assert matches["weak"]["peer"] == "fast" and matches["fast"]["test_curve"] == [75.0, 85.0, 87.0, 88.0]


def test_the_match_interval_is_one_query_when_the_runs_agree() -> None:
    matches = matches_from_curves({"a": [[1.0, 2.0, 3.0, 4.0]] * 5, "b": [[0.0, 1.0, 2.0, 3.0]] * 5})
    assert matches["a"]["queries"] == 3 and matches["a"]["queries_interval"] == [3, 3]
    assert matches["b"]["queries"] is None and matches["b"]["queries_interval"] == [None, None]


def test_the_match_interval_spreads_with_the_runs() -> None:
    # run j of "ramp" jumps to 10 at query j: its mean after query q is q, so it reaches the
    # peer's 5.0 at query 5; a resample with more early (late) runs gets there sooner (later)
    ramp = [[0.0] * (j - 1) + [10.0] * (11 - j) for j in range(1, 11)]
    matches = matches_from_curves({"ramp": ramp, "flat": [[5.0] * 10] * 10})
    low, high = matches["ramp"]["queries_interval"]
    assert matches["ramp"]["queries"] == 5
    assert 1 <= low < 5 < high <= 10
    assert matches_from_curves({"ramp": ramp, "flat": [[5.0] * 10] * 10}) == matches  # a fixed generator


def test_the_command_line_writes_results_and_draws_them(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("matplotlib", reason="plotting needs the bench extra (matplotlib)")
    from l2l.client.cli import main

    table = write_csv(tmp_path / "table.csv", planted_rows())
    out = tmp_path / "results.json"
    argv = ["bench", "nb201", "--dataset", "cifar10", "--budget", "6", "--runs", "2", "--table", str(table)]
    assert main([*argv, "--strategy", "random", "--strategy", "evolution", "--out", str(out)]) == 0
    document = json.loads(out.read_text())
    assert set(document["strategies"]) == {"random", "evolution"}
    summary = document["strategies"]["random"]["summary"]
    assert summary["runs"] == 2 and summary["test_mean"] > 0 and math.isfinite(summary["seconds_per_query"])
    run = document["strategies"]["random"]["runs"][0]
    assert params_from_arch_str(run["arch"]) and len(run["best_so_far"]) == 6
    assert {"index", "reward", "test_accuracy", "queries_to_top", "test_so_far"} <= set(run)
    assert document["queries_to_match"]["random"]["peer"] == "evolution"
    printed = capsys.readouterr().out
    assert "| random |" in printed and "random: mean test accuracy of the pick reaches evolution's" in printed

    assert "90% bootstrap interval over the seeds" in printed
    assert main(["bench", "match", str(out)]) == 0
    assert "random: mean test accuracy of the pick reaches evolution's" in capsys.readouterr().out
    assert main(["bench", "match", str(table)]) == 2
    assert "is not a results file" in capsys.readouterr().err

    png = tmp_path / "curves.png"
    assert main(["bench", "plot", str(out), str(out), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not table_path().exists(), reason=f"the NAS-Bench-201 table is not at {table_path()}")
def test_the_real_table_matches_the_space() -> None:
    table = load_table()
    assert len(table) == 15_625
    space = get_space({"name": "nb201_cell", "settings": {"tabular": "imagenet16"}})
    params = params_from_arch_str(table.archs()[0])
    assert 0 < tabular_metrics(space, params)["val_accuracy"] < 1


# ---- Optuna's TPE as a strategy ----------------------------------------------------------


def test_optuna_tpe_maps_the_space_and_restores_exactly() -> None:
    pytest.importorskip("optuna", reason="the optuna strategies need the bench extra (optuna)")
    from controller import Result, create_strategy
    from controller.adapters.optuna_tpe import distributions_for
    from search_spaces.spec import Choice, FloatRange, IntRange, SearchSpace

    space = SearchSpace(
        "mixed",
        (
            Choice("op", ("a", "b", "c")),
            IntRange("units", 16, 128, step=16),
            FloatRange("lr", 1e-4, 1e-1, log=True),
        ),
        "tests:unused",
    )
    kinds = {name: type(d).__name__ for name, d in distributions_for(space).items()}
    assert kinds == {"op": "CategoricalDistribution", "units": "IntDistribution", "lr": "FloatDistribution"}

    def drive(strategy: Any, steps: int, log: list[Any]) -> None:
        for _ in range(steps):
            proposal = strategy.ask()
            log.append(proposal.params)
            reward = (
                None
                if len(log) % 7 == 0
                else proposal.params["units"] / 128 - abs(proposal.params["lr"] - 0.01)
            )
            strategy.tell(proposal.id, Result(reward))

    for name in ("optuna_tpe", "optuna_tpe_mv"):
        original, log = create_strategy(name, space, seed=2), []
        drive(original, 14, log)
        pending = original.ask()  # saved with a proposal in flight
        restored = create_strategy(name, space, seed=2)
        restored.set_state(json.loads(json.dumps(original.get_state())))
        for strategy in (original, restored):
            strategy.tell(pending.id, Result(0.5))
        twin_log: list[Any] = []
        drive(original, 6, log)
        drive(restored, 6, twin_log)
        assert twin_log == log[-6:]


def write_csv(path: Path, rows: list[tuple[int, str, float, float]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        columns = [f"{p}_{k}_12ep" for p in ("c10", "c100", "in16") for k in ("valid", "test")]
        writer.writerow(["index", "arch_str", *columns])
        for index, arch, valid, test in rows:
            writer.writerow([index, arch, *([valid, test] * 3)])
    return path
