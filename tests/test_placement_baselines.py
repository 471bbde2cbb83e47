"""Hand-made placements and the step-time floor, on tiny graphs where the answer can be checked."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from l2l.placement.baselines import (
    BASELINES,
    contiguous_partition,
    evaluate_baselines,
    expert,
    lower_bound,
    metis,
    round_robin,
    single_device,
)
from l2l.placement.cluster import Cluster, Device, GiB, get_cluster, uniform_cluster
from l2l.placement.graph import Op, OpGraph
from l2l.placement.simulator import Simulator


def unit_cluster(devices: int = 2, flops: tuple[float, ...] | None = None, latency: float = 0.0) -> Cluster:
    """Devices of 1 FLOP/s (FLOPs read as seconds) unless ``flops`` says otherwise; 1 byte/s links."""
    speeds = flops or (1.0,) * devices
    return uniform_cluster(
        "unit", [Device(f"d{i}", f"k{s}", s, 10**12) for i, s in enumerate(speeds)], 1.0, latency
    )


def chain(flops: list[float], layers: list[str] | None = None, output_bytes: int = 1) -> OpGraph:
    names = layers or [f"l{i}" for i in range(len(flops))]
    return OpGraph(
        "chain",
        tuple(
            Op(f"op{i}", f, output_bytes, (i - 1,) if i else (), layer=names[i]) for i, f in enumerate(flops)
        ),
    )


def random_dag(rng: np.random.Generator, n: int, layer_size: int = 2) -> OpGraph:
    ops = []
    for i in range(n):
        inputs = tuple(sorted({int(j) for j in rng.integers(0, i, size=min(i, 3))})) if i else ()
        ops.append(
            Op(
                f"op{i}",
                float(rng.uniform(0, 10)),
                int(rng.integers(0, 20)),
                inputs,
                layer=f"layer{i // layer_size}",
            )
        )
    return OpGraph("random", tuple(ops))


# ---------------------------------------------------------------- single device, round robin


def test_single_device_picks_the_fastest_accelerator_and_never_the_cpu():
    devices = [
        Device("slow", "k80", 1.0, GiB),
        Device("fast", "v100", 4.0, GiB),
        Device("mid", "p100", 2.0, GiB),
        Device("host", "cpu", 100.0, GiB),  # faster still, but not an accelerator
    ]
    cluster = uniform_cluster("mixed", devices, 1.0, 0.0)
    placement = single_device(chain([1, 2, 3]), cluster)
    assert placement.tolist() == [1, 1, 1]


def test_single_device_that_does_not_fit_has_infinite_step_time():
    graph = OpGraph("big", (Op("w", 1, 1, param_bytes=GiB),))
    cluster = uniform_cluster("small", [Device(f"d{i}", "g", 1.0, GiB) for i in range(2)], 1.0, 0.0)
    assert Simulator(graph, cluster).step_time(single_device(graph, cluster)) == math.inf


def test_round_robin_deals_layers_in_turn_to_the_accelerators():
    # five layers, the third of three ops; a CPU at index 1 between the two GPUs is skipped
    layers = ["a", "b", "c", "c", "c", "d", "e"]
    devices = [Device("gpu0", "g", 1.0, GiB), Device("cpu", "cpu", 1.0, GiB), Device("gpu1", "g", 1.0, GiB)]
    cluster = uniform_cluster("host", devices, 1.0, 0.0)
    placement = round_robin(chain([1.0] * 7, layers), cluster)
    assert placement.tolist() == [0, 2, 0, 0, 0, 2, 0]


# ---------------------------------------------------------------- expert


def brute_force_best_load(costs: np.ndarray) -> float:
    """The least largest run total over every way of cutting the items into consecutive runs."""
    n_items, n_parts = costs.shape
    best = math.inf
    for cuts in itertools.combinations_with_replacement(range(n_items + 1), n_parts - 1):
        bounds = (0, *cuts, n_items)
        load = max(costs[bounds[p] : bounds[p + 1], p].sum() for p in range(n_parts))
        best = min(best, load)
    return best


def run_loads(costs: np.ndarray, part_of_item: np.ndarray) -> np.ndarray:
    return np.array([costs[part_of_item == p, p].sum() for p in range(costs.shape[1])])


def test_contiguous_partition_is_optimal_against_brute_force():
    rng = np.random.default_rng(7)
    for _ in range(300):
        n_items, n_parts = int(rng.integers(1, 9)), int(rng.integers(1, 5))
        speeds = rng.choice([1.0, 2.0, 3.0], size=n_parts)  # mixed kinds: an item costs less on fast parts
        costs = rng.integers(0, 10, size=n_items)[:, None] / speeds[None, :]
        parts = contiguous_partition(costs)
        assert np.all(np.diff(parts) >= 0) and parts.min() >= 0 and parts.max() < n_parts
        assert run_loads(costs, parts).max() == pytest.approx(brute_force_best_load(costs))


def test_expert_keeps_layers_together_in_order_and_balances_them():
    # layer seconds (forward + backward = 3 x FLOPs at 1 FLOP/s): a 3, b 6, c 9, d 3+3, e 12.
    # The best cut is a b | c d | e with loads 9, 15, 12: every other cut has a part of 18 or more.
    layers = ["a", "b", "c", "d", "d", "e"]
    placement = expert(chain([1, 2, 3, 1, 1, 4], layers), unit_cluster(3))
    assert placement.tolist() == [0, 0, 1, 1, 1, 2]
    layer_seconds = np.array([3.0, 6.0, 9.0, 6.0, 12.0])[:, None].repeat(3, axis=1)
    assert brute_force_best_load(layer_seconds) == pytest.approx(15.0)


def test_expert_gives_the_faster_kind_more_layers():
    # 8 equal layers on a 1 FLOP/s and a 3 FLOP/s device: 2 and 6 layers balance exactly
    placement = expert(chain([3.0] * 8), unit_cluster(flops=(1.0, 3.0)))
    assert placement.tolist() == [0, 0, 1, 1, 1, 1, 1, 1]


def test_expert_with_fewer_layers_than_accelerators_and_one_accelerator():
    # two layers on four accelerators: one each, two accelerators left empty
    placement = expert(chain([1, 1]), unit_cluster(4))
    assert len(set(placement.tolist())) == 2 and np.all(np.diff(placement) >= 0)
    assert expert(chain([1, 2, 3]), unit_cluster(1)).tolist() == [0, 0, 0]


# ---------------------------------------------------------------- METIS


def planted_two_clusters() -> OpGraph:
    """Two tight groups of six ops (every op reads every earlier op of its group through
    1000-byte tensors) joined by one 1-byte tensor."""
    ops: list[Op] = []
    for group in range(2):
        base = len(ops)
        for k in range(6):
            inputs = tuple(range(base, base + k))
            if group == 1 and k == 0:
                inputs = (5,)  # the thin edge: group A's last op has a tiny output
            last_of_a = group == 0 and k == 5
            ops.append(Op(f"g{group}_{k}", 1.0, 1 if last_of_a else 1000, inputs))
    return OpGraph("planted", tuple(ops))


def test_metis_cuts_a_planted_two_cluster_graph_at_its_thin_edge():
    placement = metis(planted_two_clusters(), unit_cluster(2))
    assert len(set(placement[:6].tolist())) == 1
    assert len(set(placement[6:].tolist())) == 1
    assert placement[0] != placement[6]


def test_metis_returns_valid_deterministic_placements():
    rng = np.random.default_rng(3)
    graph = random_dag(rng, 40)
    cluster = get_cluster("4gpu-pcie+cpu")
    placement = metis(graph, cluster, seed=5)
    assert placement.shape == (40,) and np.issubdtype(placement.dtype, np.integer)
    assert set(placement.tolist()) <= set(cluster.accelerators())
    assert np.array_equal(placement, metis(graph, cluster, seed=5))
    Simulator(graph, cluster).check(placement)


def test_metis_on_one_accelerator_and_on_fewer_ops_than_accelerators():
    graph = chain([1, 2, 3])
    assert metis(graph, unit_cluster(1)).tolist() == [0, 0, 0]
    placement = metis(chain([1, 2]), unit_cluster(4))
    assert placement.shape == (2,) and set(placement.tolist()) <= {0, 1, 2, 3}


def test_metis_gives_the_faster_kind_more_work():
    # 20 independent equal ops on a 1 FLOP/s and a 3 FLOP/s device: about a quarter on the slow one
    graph = OpGraph("bag", tuple(Op(f"op{i}", 1.0, 1) for i in range(20)))
    placement = metis(graph, unit_cluster(flops=(1.0, 3.0)))
    assert 3 <= int((placement == 0).sum()) <= 7


# ---------------------------------------------------------------- lower bound


def test_lower_bound_equals_the_step_time_of_a_chain_on_one_device():
    # forward 1 + 2 + 3 seconds, backward twice that: 18 s, with nothing to overlap
    graph = chain([1, 2, 3])
    assert lower_bound(graph, unit_cluster(1)) == pytest.approx(18.0)
    # on two identical devices the chain still cannot overlap: its critical path is the step
    two = unit_cluster(2)
    assert lower_bound(graph, two) == pytest.approx(18.0)
    assert Simulator(graph, two).step_time([0, 0, 0]) == pytest.approx(18.0)


def test_lower_bound_of_independent_work_is_total_over_total_speed():
    # 40 independent ops of 3 FLOPs (9 s forward+backward at 1 FLOP/s): identical devices share
    # the work evenly; speeds 1 and 3 can at best finish together: 40 * 9 / (1 + 3)
    graph = OpGraph("bag", tuple(Op(f"op{i}", 3.0, 0) for i in range(40)))
    assert lower_bound(graph, unit_cluster(4)) == pytest.approx(40 * 9 / 4)
    assert lower_bound(graph, unit_cluster(flops=(1.0, 3.0))) == pytest.approx(40 * 9 / 4)


@pytest.mark.parametrize(
    "cluster",
    [
        unit_cluster(3, latency=0.5),
        unit_cluster(flops=(1.0, 2.0, 5.0)),
        get_cluster("4gpu-pcie+cpu"),
    ],
    ids=["identical", "mixed", "gpus+host"],
)
def test_lower_bound_is_below_every_placement(cluster: Cluster):
    rng = np.random.default_rng(11)
    for trial in range(6):
        graph = random_dag(rng, int(rng.integers(1, 30)))
        simulator = Simulator(graph, cluster)
        bound = lower_bound(graph, cluster)
        placements = rng.integers(0, len(cluster), size=(200, len(graph)))
        # and the all-on-one placements, where the bound is tightest
        placements = np.vstack([placements, np.repeat(np.arange(len(cluster))[:, None], len(graph), axis=1)])
        times = simulator.step_times(placements)
        assert np.all(times >= bound * (1 - 1e-9)), f"trial {trial}: {times.min()} < {bound}"
        for placement, step_time in evaluate_baselines(simulator).values():
            assert step_time >= bound * (1 - 1e-9)
            simulator.check(placement)


def test_evaluate_baselines_reports_every_baseline():
    graph = random_dag(np.random.default_rng(2), 25)
    results = evaluate_baselines(Simulator(graph, unit_cluster(2)))
    assert set(results) == set(BASELINES)
    for placement, step_time in results.values():
        assert placement.shape == (25,) and math.isfinite(step_time)
