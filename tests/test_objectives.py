"""Multi-objective (MnasNet) rewards, NAS-Bench-201 network costs, and Pareto fronts."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from test_bench_nb201 import planted_rows

from l2l.bench.nb201 import run_strategy
from l2l.pareto import hypervolume, pareto_front
from l2l.rewards import reward_from_metrics, why_no_reward
from l2l.service.jobspec import Objective
from search_spaces.nb201_cost import network_cost
from search_spaces.nb201_table import NB201Table

MNAS = {"metric": "val_accuracy", "mode": "max", "cost": "parameters", "target": 1000.0, "weight": -0.07}


@pytest.mark.parametrize(
    "cost, changes, expected",
    [
        (1000, {}, 0.8),  # at the target: the metric itself
        (2000, {}, 0.8 * 2**-0.07),  # twice the target: a little less
        (500, {}, 0.8 * 0.5**-0.07),  # soft target: smaller is a little better
        (500, {"weight_under": 0.0}, 0.8),  # hard target: below it, cost does not matter
        (2000, {"weight_under": 0.0}, 0.8 * 2**-0.07),
    ],
)
def test_the_mnasnet_reward(cost: float, changes: dict[str, Any], expected: float) -> None:
    reward = reward_from_metrics({"val_accuracy": 0.8, "parameters": cost}, {**MNAS, **changes})
    assert reward == pytest.approx(expected)


@pytest.mark.parametrize("cost", [float("nan"), float("inf"), None, "many", 0, -3])
def test_a_missing_or_unusable_cost_fails_the_trial(cost: object) -> None:
    metrics = {"val_accuracy": 0.8} if cost is None else {"val_accuracy": 0.8, "parameters": cost}
    assert reward_from_metrics(metrics, MNAS) is None
    assert "parameters" in why_no_reward(metrics, MNAS)


def test_a_plain_objective_is_unchanged() -> None:
    assert reward_from_metrics({"val_loss": 0.25}, {"metric": "val_loss", "mode": "min"}) == -0.25
    assert reward_from_metrics({"val_accuracy": math.nan}, {"metric": "val_accuracy"}) is None


def test_a_cost_objective_needs_a_target_and_max() -> None:
    with pytest.raises(ValidationError, match="needs a target"):
        Objective.model_validate({"metric": "val_accuracy", "cost": "flops"})
    with pytest.raises(ValidationError, match="needs a target"):
        Objective.model_validate({"metric": "val_loss", "mode": "min", "cost": "flops", "target": 1})
    with pytest.raises(ValidationError):
        Objective.model_validate({**MNAS, "weight": 0.5})


ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
NO_CONV = "|none~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|none~1|skip_connect~2|"
ONE_1X1 = "|nor_conv_1x1~0|+|none~0|none~1|+|none~0|none~1|none~2|"


def test_nb201_network_cost_by_hand() -> None:
    # no convolution in the cell: stem 3*3*3*16 + 2*16 = 464; residual blocks
    # 9*16*32+64 + 9*32*32+64 + 16*32 = 14,464 and 9*32*64+128 + 9*64*64+128 + 32*64 = 57,600;
    # last batch norm 128; classifier 64*10 + 10 = 650
    base = 464 + 14_464 + 57_600 + 128 + 650
    assert network_cost(NO_CONV)["parameters"] == base == 73_306
    # one 1x1 conv edge per cell: 5 cells at 16, 32 and 64 channels, c*c + 2c each
    assert network_cost(ONE_1X1)["parameters"] == base + 5 * (16 * 18 + 32 * 34 + 64 * 66)
    # every edge a 3x3 conv: NAS-Bench-201's largest network, 1.53 M parameters, ~220 M FLOPs
    assert network_cost(ALL_3X3) == {"parameters": 1_531_546, "flops": 220_119_680}
    # 100 classes only widen the classifier; ImageNet16's 16x16 input has a quarter of the FLOPs
    assert network_cost(ALL_3X3, "cifar100")["parameters"] == 1_531_546 + 90 * 64 + 90
    assert network_cost(ALL_3X3, "imagenet16")["flops"] == pytest.approx(220_119_680 / 4, rel=1e-3)


def test_pareto_front_and_hypervolume() -> None:
    points = [(0.9, 10.0), (0.8, 5.0), (0.85, 12.0), (0.7, 5.0), (0.95, 20.0), (0.8, 5.0), (0.9, 10.0)]
    assert pareto_front(points) == [1, 0, 4]  # cheapest first; duplicates and dominated dropped
    assert pareto_front([]) == []
    # (0.8 over costs 5..10) + (0.9 over 10..20) + 0.95 at the reference cost adds nothing
    assert hypervolume(points, max_cost=20.0) == pytest.approx((0.8 * 5 + 0.9 * 10) / 20)
    assert hypervolume(points, max_cost=4.0) == 0.0


def test_the_benchmark_records_each_runs_pareto_front_under_a_cost_objective() -> None:
    rows = planted_rows()
    table = NB201Table(
        [(r[0], r[1]) for r in rows], {"cifar10": [r[2] for r in rows]}, {"cifar10": [r[3] for r in rows]}
    )
    objective = {**MNAS, "target": 500_000.0}
    result = run_strategy("random", "cifar10", budget=15, runs=1, table=table, objective=objective)
    run = result.runs[0]
    front = [(point["valid_accuracy"], point["parameters"]) for point in run.pareto_front]
    assert front and [c for _, c in front] == sorted(c for _, c in front)
    assert all(a1 < a2 for (a1, _), (a2, _) in zip(front, front[1:], strict=False))
    assert 0 < run.hypervolume < 1 and run.cost_metric == "parameters"
    assert result.summary(15)["pareto_front_size_mean"] == len(front)


# ------------------------------------------------------------- the objective's metric at submission


@pytest.mark.parametrize(
    ("dataset", "objective", "refused"),
    [
        ("wine", {"metric": "val_acc"}, "'val_acc'"),
        ("wine", {"metric": "val_mae", "mode": "min"}, "'val_mae'"),  # a regression metric
        ("wine", {"metric": "val_accuracy", "cost": "flops", "target": 1e6}, "'flops'"),
        ("wine", {"metric": "val_accuracy"}, None),
        ("wine", {"metric": "loss", "mode": "min"}, None),
        ("wine", {"metric": "val_accuracy", "cost": "parameters", "target": 1e4}, None),
    ],
)
def test_an_unknown_objective_metric_is_refused_at_submission(
    dataset: str, objective: dict[str, Any], refused: str | None
) -> None:
    from l2l.service.jobspec import InvalidJob, JobSpec, validate_job
    from l2l.settings import Settings

    spec = JobSpec.model_validate(
        {"dataset": dataset, "space": "mlp", "budget": {"trials": 2}, "objective": objective}
    )
    if refused is None:
        assert validate_job(spec, Settings())["objective"]["metric"] == objective["metric"]
        return
    with pytest.raises(InvalidJob) as error:
        validate_job(spec, Settings())
    assert refused in str(error.value)
    reported = "accuracy, epochs, loss, parameters, train_seconds, val_accuracy, val_loss"
    assert f"it reports {reported}" in str(error.value)


def test_the_metrics_known_at_submission_are_those_a_real_trial_reports(tmp_path: Path) -> None:
    """The list the submit check uses, against a real one-epoch training of each task."""
    pytest.importorskip("keras")
    from l2l.service.datasets import check_dataset_spec
    from l2l.service.jobspec import reported_metrics
    from l2l.worker.executor import TrialTask
    from l2l.worker.trainer import run_trial
    from search_spaces import check_space_spec, get_space

    class Recorder:
        def __init__(self) -> None:
            self.finals: list[dict[str, Any]] = []

        def step(self, step: int, metrics: Any) -> None:
            pass

        def final(self, metrics: Any, step: int | None = None) -> None:
            self.finals.append(dict(metrics))

    prices = tmp_path / "prices.csv"
    prices.write_text("size,rooms,price\n" + "".join(f"{i},{i % 4},{3.5 * i + 0.1}\n" for i in range(40)))
    space = get_space("mlp")
    params = space.validate(space.sample(random.Random(0)))
    for dataset in ("wine", {"name": "csv", "path": str(prices), "target": "price"}):
        spec = check_dataset_spec(dataset)
        recorder = Recorder()
        task = TrialTask(
            trial_id=1,
            job_id=1,
            attempt=1,
            token="t",
            report_url="http://127.0.0.1:9",
            dataset=spec,
            space=space.to_dict(),
            params=params,
            epochs=1,
            seed=0,
        )
        run_trial(task.to_dict(), reporter=recorder)
        assert sorted(recorder.finals[0]) == reported_metrics(check_space_spec("mlp"), spec["task"])
