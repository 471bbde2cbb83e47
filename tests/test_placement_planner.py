"""The hierarchical planner: same seed, same placement; it learns a planted optimum; the
search driver keeps the best; a trained placer's state loads on another graph."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from controller.placement import create_placement_strategy
from l2l.placement.baselines import evaluate_baselines
from l2l.placement.cluster import Device, uniform_cluster
from l2l.placement.graph import Op, OpGraph
from l2l.placement.search import search_placement
from l2l.placement.simulator import Simulator
from l2l.placement.space import PlacementSpace

# Small policies as plain TensorFlow graphs (built in a second or two, where an XLA compile takes
# ten): the options every test here uses. The learning test runs the default, XLA, path.
SMALL = {
    "groups": 8,
    "hidden_size": 16,
    "batch_size": 16,
    "learning_rate": 0.02,
    "imitation_steps": 20,
    "xla": False,
}


def planted(chains: int = 4, length: int = 6) -> OpGraph:
    """``chains`` independent chains (layers) of heavy ops with big tensors along each chain,
    listed interleaved (step t of every chain, then step t + 1): the best placement puts
    each chain on a device of its own; any op away from its chain pays two big transfers."""
    ops: list[Op] = []
    for t in range(length):
        for c in range(chains):
            inputs = (len(ops) - chains,) if t else ()
            ops.append(Op(f"chain{c}/t{t}", 1e12, 4_000_000_000, inputs, layer=f"chain{c}", kind="LSTM"))
    return OpGraph("planted", tuple(ops))


def cluster(devices: int = 4):
    return uniform_cluster("four", [Device(f"g{i}", "gpu", 1e12, 2**40) for i in range(devices)], 1e9, 1e-5)


def small_dag(seed: int = 22, n: int = 12) -> OpGraph:
    """A random 12-op DAG in three layers; on two devices its best placement is found by
    trying all 4,096 (seed 22: the best baseline, op i mod 2, is 29% slower than that)."""
    rng = np.random.default_rng(seed)
    ops = []
    for i in range(n):
        inputs: tuple[int, ...] = ()
        if i:
            count = int(rng.integers(1, 3))
            inputs = tuple(sorted({int(j) for j in rng.integers(max(0, i - 4), i, size=count)}))
        flops, nbytes = float(rng.integers(1, 10)), int(rng.integers(0, 6))
        ops.append(Op(f"op{i}", flops, nbytes, inputs, layer=f"layer{i // 4}"))
    return OpGraph(f"dag{seed}", tuple(ops))


def test_planner_finds_the_brute_force_optimum_the_baselines_miss():
    graph = small_dag()
    two = uniform_cluster("two", [Device(f"g{i}", "gpu", 1.0, 10**9) for i in range(2)], 1.0, 0.0)
    simulator = Simulator(graph, two)
    every = np.array(list(itertools.product([0, 1], repeat=len(graph))))
    optimum = simulator.step_times(every).min()
    best_baseline = min(step for _, step in evaluate_baselines(simulator).values())
    assert best_baseline > 1.25 * optimum
    options = {**SMALL, "try_hints": False, "start_from_baseline": False}
    learned = search_placement(graph, two, "hierarchical", options=options, seed=0, max_samples=1000)
    assert learned.step_time == pytest.approx(optimum)


def test_planner_learns_more_than_chance_on_planted_chains():
    graph, four = planted(), cluster()
    optimum = Simulator(graph, four).step_time(np.arange(len(graph)) % 4)  # chain c on device c
    options = {**SMALL, "try_hints": False, "start_from_baseline": False, "learning_rate": 0.005, "xla": True}
    learned = search_placement(graph, four, "hierarchical", options=options, seed=1, max_samples=2500)
    chance = search_placement(graph, four, "random", seed=1, max_samples=2500)
    assert optimum < learned.step_time < 0.85 * chance.step_time


def test_same_seed_same_placement():
    graph, four = planted(chains=2, length=4), cluster(2)
    runs = [
        search_placement(graph, four, "hierarchical", options=SMALL, seed=7, max_samples=100)
        for _ in range(2)
    ]
    assert runs[0].placement.tolist() == runs[1].placement.tolist()
    assert runs[0].step_time == runs[1].step_time
    assert [h[0] for h in runs[0].history] == [h[0] for h in runs[1].history]


def test_search_starts_from_the_hints_and_never_ends_worse_than_them():
    graph, four = planted(), cluster()
    sim = Simulator(graph, four)
    space = PlacementSpace(graph, four)
    best_hint = min(sim.step_time(p) for p in space.hints())
    result = search_placement(graph, four, "hierarchical", options=SMALL, seed=0, max_samples=200)
    assert result.step_time <= best_hint
    assert result.history[0][0] == 1  # the first proposal is a hint, already scored
    assert math.isclose(sim.step_time(result.placement), result.step_time)


def test_a_trained_placer_loads_on_a_bigger_graph_of_the_family():
    small, bigger, four = planted(length=4), planted(length=8), cluster()
    trained = search_placement(small, four, "hierarchical", options=SMALL, seed=0, max_samples=300)
    frozen = {**SMALL, "learning_rate": 0.0, "try_hints": False, "start_from_baseline": False}
    placer = create_placement_strategy("hierarchical", PlacementSpace(bigger, four), seed=0, options=frozen)
    placer.warm_start(trained.strategy_state)
    result = search_placement(bigger, four, placer, max_samples=32)
    assert result.samples == 32 and math.isfinite(result.step_time)
    with pytest.raises(ValueError, match="groups or devices"):
        other = create_placement_strategy(
            "hierarchical", PlacementSpace(bigger, cluster(2)), seed=0, options=frozen
        )
        other.warm_start(trained.strategy_state)
