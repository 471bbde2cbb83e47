"""The step-time simulator against step times worked out by hand on tiny graphs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from l2l.placement.cluster import Cluster, Device, get_cluster, uniform_cluster
from l2l.placement.graph import Op, OpGraph
from l2l.placement.simulator import PlacementError, Simulator

# Devices doing 1 FLOP/s, links of 1 byte/s: FLOPs read as seconds, bytes as seconds of transfer.
UNIT = 1.0


def unit_cluster(devices: int = 2, latency: float = 0.0, memory: int = 10**9) -> Cluster:
    return uniform_cluster(
        "unit", [Device(f"d{i}", "unit", UNIT, memory) for i in range(devices)], UNIT, latency
    )


def chain() -> OpGraph:
    return OpGraph("chain", (Op("a", 1, 1), Op("b", 2, 1, (0,)), Op("c", 3, 1, (1,))))


def test_chain_on_one_device_is_the_sum_of_forward_and_backward():
    # forward 1+2+3, backward twice that
    assert Simulator(chain(), unit_cluster()).step_time([0, 0, 0]) == pytest.approx(18.0)


def test_chain_split_pays_one_activation_and_one_gradient_transfer():
    # a on d0 (0-1), send 1 s, b then c on d1 (2-4, 4-7), backward c, b (7-13, 13-17),
    # gradient of a's output back to d0 (17-18), backward a (18-20)
    simulation = Simulator(chain(), unit_cluster()).simulate([0, 1, 1])
    assert simulation.step_time == pytest.approx(20.0)
    assert [(t.op, t.backward, t.device, t.to_device) for t in simulation.transfers] == [
        (0, False, 0, 1),
        (1, True, 1, 0),
    ]


def test_fork_join_runs_branches_in_parallel():
    # a -> (b, c) -> d; b and c 4 FLOPs each, tensors of 0 bytes, latency 0
    graph = OpGraph(
        "fork",
        (Op("a", 1, 0), Op("b", 4, 0, (0,)), Op("c", 4, 0, (0,)), Op("d", 1, 0, (1, 2))),
    )
    sim = Simulator(graph, unit_cluster())
    # one device: forward 10, backward 20
    assert sim.step_time([0, 0, 0, 0]) == pytest.approx(30.0)
    # branches apart: forward 1 + 4 + 1, backward 2 + 8 + 2
    assert sim.step_time([0, 0, 1, 0]) == pytest.approx(18.0)


def test_transfer_bound_pair_and_link_latency():
    # two cheap ops with a big tensor between them: 100 bytes at 1 byte/s plus 5 s latency
    graph = OpGraph("pair", (Op("a", 1, 100), Op("b", 1, 0, (0,))))
    sim = Simulator(graph, unit_cluster(latency=5.0))
    assert sim.step_time([0, 0]) == pytest.approx(6.0)
    # forward 1 + 105 + 1, backward of b 2, gradient of a's output 105, backward of a 2
    assert sim.step_time([0, 1]) == pytest.approx(216.0)


def test_a_tensor_goes_once_to_each_device_and_a_link_carries_one_transfer_at_a_time():
    # a feeds b and c, both on d1: one transfer. x and y each send 10 bytes to z's device: queued.
    graph = OpGraph("fan", (Op("a", 1, 10), Op("b", 1, 0, (0,)), Op("c", 1, 0, (0,))))
    forward = [t for t in Simulator(graph, unit_cluster()).simulate([0, 1, 1]).transfers if not t.backward]
    assert len(forward) == 1
    graph = OpGraph("queue", (Op("x", 1, 10), Op("y", 1, 10), Op("z", 1, 0, (0, 1))))
    sim = Simulator(graph, unit_cluster(devices=2))
    runs = sim.simulate([0, 0, 1]).runs
    z = next(r for r in runs if r.op == 2 and not r.backward)
    # x done at 1, y at 2; x's tensor 1-11, y's waits for the link: 11-21
    assert z.start == pytest.approx(21.0)


def test_a_placement_that_does_not_fit_has_infinite_step_time():
    # params 100 bytes x 4 copies + 1 byte activation per op: 401 each
    graph = OpGraph("big", (Op("a", 1, 1, (), 100), Op("b", 1, 1, (0,), 100)))
    sim = Simulator(graph, unit_cluster(memory=600))
    assert math.isinf(sim.step_time([0, 0]))
    assert not sim.simulate([0, 0]).fits
    assert math.isfinite(sim.step_time([0, 1]))
    # d1 holds b (401) and the copy of a's output it received (1)
    assert sim.memory([0, 1]).tolist() == [401.0, 402.0]


def test_measured_seconds_override_flops_for_their_device_kind():
    graph = OpGraph("m", (Op("a", 1000, 0, seconds={"unit": 2.0}),), backward_factor=1.0)
    assert Simulator(graph, unit_cluster()).step_time([0]) == pytest.approx(4.0)


def test_batch_and_single_agree_and_are_deterministic():
    rng = np.random.default_rng(0)
    ops = []
    for i in range(200):
        inputs = tuple(sorted({int(j) for j in rng.integers(max(0, i - 10), i, size=2)})) if i else ()
        ops.append(Op(f"o{i}", float(rng.uniform(1e9, 1e10)), int(rng.uniform(1e5, 1e7)), inputs, 10_000))
    sim = Simulator(OpGraph("random", tuple(ops)), get_cluster("4gpu-pcie"))
    placements = rng.integers(0, 4, size=(20, 200))
    batch = sim.step_times(placements)
    assert batch.tolist() == [sim.step_time(p) for p in placements]
    assert batch.tolist() == sim.step_times(placements).tolist()
    assert sim.simulate(placements[0]).step_time == batch[0]


def test_bad_placements_are_refused_with_what_is_wrong():
    sim = Simulator(chain(), unit_cluster())
    with pytest.raises(PlacementError, match="3 entries"):
        sim.step_time([0, 1])
    with pytest.raises(PlacementError, match=r"\[0, 2\)"):
        sim.step_time([0, 1, 2])
