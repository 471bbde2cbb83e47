"""Equal-budget searches: random search, local search, the planner's local-search polish, the bench."""

from __future__ import annotations

import math

import numpy as np

from l2l.bench.placement import bench_graph, format_table
from l2l.placement.baselines import BASELINES, HAND_MADE, expert, expert_split_softmax, lower_bound
from l2l.placement.cluster import Device, get_cluster, uniform_cluster
from l2l.placement.graph import Op, OpGraph
from l2l.placement.local_search import local_search, random_search
from l2l.placement.search import search_placement
from l2l.placement.simulator import Simulator

# The smallest policy that still learns: it compiles in seconds even on a loaded host.
TINY = {
    "groups": 4,
    "hidden_size": 8,
    "batch_size": 8,
    "imitation_steps": 3,
    "message_passing": 1,
    "xla": False,
}
TINY_START_TEMPERATURE = 0.02


def layered(chains: int = 3, length: int = 5, param_bytes: int = 50_000_000) -> OpGraph:
    """Independent unrolled recurrent layers (one per chain) with weights: best kept whole, one per device."""
    ops: list[Op] = []
    for t in range(length):
        for c in range(chains):
            inputs = (len(ops) - chains,) if t else ()
            ops.append(
                Op(
                    f"rnn_{c + 1}/t{t}",
                    2e11,
                    4_000_000,
                    inputs,
                    param_bytes if t == 0 else 0,
                    layer=f"rnn_{c + 1}",
                    kind="LSTM step",
                    state_bytes=4_000_000,
                )
            )
    return OpGraph("layered", tuple(ops))


def test_random_and_local_search_spend_exactly_their_budget_and_are_reproducible():
    graph = layered()
    sim = Simulator(graph, get_cluster("4gpu-pcie"))
    first = random_search(sim, 100, seed=3)
    assert first.calls == 100 and first.step_time == random_search(sim, 100, seed=3).step_time
    assert math.isclose(sim.step_time(first.placement), first.step_time)
    start = np.zeros(len(graph), dtype=np.int64)
    searched = local_search(sim, start, 200, seed=1)
    assert searched.calls == 200
    assert searched.placement.tolist() == local_search(sim, start, 200, seed=1).placement.tolist()
    assert math.isclose(sim.step_time(searched.placement), searched.step_time)
    # three independent layers on one device: local search must spread them
    assert searched.step_time < 0.9 * sim.step_time(start)
    assert searched.step_time >= lower_bound(graph, sim.cluster) * (1 - 1e-9)


def test_layer_level_random_search_never_splits_a_layer():
    graph = layered()
    sim = Simulator(graph, get_cluster("4gpu-pcie"))
    found = random_search(sim, 50, seed=0, by_layer=True).placement
    layers = np.array(graph.layer_of_ops())
    assert all(len(set(found[layers == k].tolist())) == 1 for k in range(layers.max() + 1))


def test_gnmt_expert_puts_layer_i_of_each_stack_on_gpu_i_and_splits_the_softmax():
    ops = [Op("src", 0, 10, layer="src", kind="InputLayer")]
    for name, reads in (("encoder_1", 0), ("encoder_2", 1), ("decoder_1", 2), ("decoder_2", 3)):
        ops.append(Op(name, 1e9, 10, (reads,), 100, layer=name, kind="LSTM step"))
    ops.append(Op("attention", 1e8, 10, (2, 3), layer="attention", kind="Attention"))
    for t in range(4):
        ops.append(Op(f"softmax/t{t}", 1e9, 10, (4, 5), 100 if t == 0 else 0, layer="softmax", kind="Dense"))
    graph = OpGraph("gnmt", tuple(ops))
    cluster = get_cluster("4gpu-pcie")
    placed = expert(graph, cluster).tolist()
    assert placed[:5] == [0, 0, 1, 0, 1]  # input with encoder_1; layer i of each stack on GPU i - 1
    assert placed[5:] == [1] * 5  # attention and softmax with the top layers
    split = expert_split_softmax(graph, cluster).tolist()
    assert split[6:] == [2, 2, 3, 3]  # softmax time steps on the GPUs no recurrent layer uses


def test_planner_polish_hands_its_best_to_local_search_and_never_ends_worse():
    graph = layered()
    cluster = uniform_cluster("four", [Device(f"g{i}", "gpu", 1e12, 2**40) for i in range(4)], 1e10, 1e-5)
    sim = Simulator(graph, cluster)
    best_hint = min(sim.step_time(place(graph, cluster)) for place in HAND_MADE.values())
    options = {**TINY, "polish_after": 24}
    run = search_placement(graph, cluster, "hierarchical", options=options, seed=5, max_samples=72)
    assert run.samples == 72 and run.step_time <= best_hint
    polish = run.strategy_state["polish"]
    assert polish is not None  # it reached the local-search phase
    assert polish["temperature"] < TINY_START_TEMPERATURE  # and cooled over its rounds
    assert math.isclose(sim.step_time(run.placement), run.step_time)


def test_bench_runs_every_method_at_the_same_budget_over_seeds():
    graph = layered(chains=2, length=3)
    row = bench_graph(
        graph,
        get_cluster("4gpu-pcie"),
        budget=24,
        seeds=2,
        polish_share=0.5,
        planner_options=TINY,
        log=lambda _: None,
    )
    searched = ("random_search", "random_layers", "local_search", "learned", "learned+local")
    assert all(len(row["methods"][m]["ms"]) == 2 and row["methods"][m]["calls"] == 24 for m in searched)
    assert all(len(row["methods"][m]["ms"]) == 1 for m in BASELINES)
    floor = row["lower_bound_ms"]
    assert all(v >= floor * (1 - 1e-6) for e in row["methods"].values() for v in e["ms"] if v is not None)
    table = format_table({"graphs": [row]})
    assert "learned+local / best other method" in table and "lower bound" in table
