"""The cost model charges what hardware charges: weight traffic, recurrent state, updates, shared links.

These are the regression tests that would have caught the gap behind the old headline: a
layer split over devices was free, every GPU pair had a private link, and trivial placements
matched the learned one.
"""

from __future__ import annotations

import numpy as np
import pytest

from l2l.placement.baselines import expert, lower_bound, op_mod_k
from l2l.placement.cluster import PRESETS, Cluster, Device, Link, get_cluster, uniform_cluster
from l2l.placement.graph import Op, OpGraph
from l2l.placement.simulator import UPDATE_PASSES, Simulator

MB = 1_000_000


@pytest.fixture(scope="module")
def small_graphs() -> dict[str, OpGraph]:
    """Small members of the RNNLM and NMT families (Keras-built, cached as JSON)."""
    from l2l.placement.benchmarks import benchmark_graph

    return {
        "rnnlm_small": benchmark_graph("rnnlm", seq_len=6, hidden=256, vocab=2000, layers=2),
        "nmt_small": benchmark_graph("nmt", seq_len=5, hidden=256, vocab=2000, layers=3),
    }


@pytest.fixture(scope="module")
def benchmark_graphs() -> dict[str, OpGraph]:
    from l2l.placement.benchmarks import benchmark_graph

    return {"rnnlm": benchmark_graph("rnnlm"), "nmt": benchmark_graph("nmt")}


def unit_devices(n: int, memory_bandwidth: float = 1e30) -> list[Device]:
    # 1 FLOP/s: FLOPs read as seconds; an update costs nothing unless memory_bandwidth says so
    return [Device(f"d{i}", "unit", 1.0, 10**12, 0.0, memory_bandwidth) for i in range(n)]


def test_a_layer_split_over_two_devices_pays_its_weight_copy_and_gradient_return():
    # one Dense layer, 10 MB of weights, as two ops (two halves of the batch) over 2 GPUs on PCIe
    x = Op("x", 0, 1000)
    half_a = Op("dense/a", 4.5e9, 1000, (0,), 10 * MB, layer="dense", kind="Dense")
    half_b = Op("dense/b", 4.5e9, 1000, (0,), 0, layer="dense", kind="Dense")
    graph = OpGraph("dense", (x, half_a, half_b, Op("y", 0, 0, (1, 2))))
    sim = Simulator(graph, get_cluster("4gpu-pcie"))
    together, split = sim.step_time([0, 0, 0, 0]), sim.step_time([0, 0, 1, 0])
    weights = [t for t in sim.simulate([0, 0, 1, 0]).transfers if t.kind in ("weights", "weight_gradient")]
    assert [(t.kind, t.device, t.to_device) for t in weights] == [
        ("weights", 0, 1),
        ("weight_gradient", 1, 0),
    ]
    # 10 MB over a 10 GB/s port each way: at least 2 ms on top of the compute of one half
    copy = 10 * MB / 10e9
    assert all(t.end - t.start >= copy for t in weights)
    half_compute = 3 * 4.5e9 / 4.5e12
    assert split >= half_compute + 2 * copy
    # the old model (weights with the first op only) gave the split 2 of the 3 ms of the whole layer
    assert split > 0.6 * together


def test_split_layer_weight_copy_is_charged_exactly_on_unit_devices():
    # a (layer L, 10 FLOPs, 5 bytes of params) on d0, b (layer L, 10 FLOPs) on d1, no activations
    graph = OpGraph(
        "l",
        (Op("a", 10, 0, (), 5, layer="L"), Op("b", 10, 0, (), 0, layer="L")),
        backward_factor=1.0,
    )
    cluster = uniform_cluster("unit", unit_devices(2), 1.0, 0.0)
    sim = Simulator(graph, cluster)
    assert sim.step_time([0, 0]) == pytest.approx(40.0)
    # d1: weights 0-5, forward 5-15, backward 15-25, gradient 25-30; the owner's update is free
    assert sim.step_time([0, 1]) == pytest.approx(30.0)
    # memory: the owner keeps 4 copies, the other device weights and a gradient
    assert sim.memory([0, 1]).tolist() == [20.0, 10.0]


def test_recurrent_state_crossing_devices_is_copied_both_ways():
    steps = (
        Op("lstm/t0", 1, 3, (), 0, layer="lstm", kind="LSTM step", state_bytes=7),
        Op("lstm/t1", 1, 3, (0,), 0, layer="lstm", kind="LSTM step", state_bytes=7),
    )
    graph = OpGraph("rnn", steps, backward_factor=1.0)
    sim = Simulator(graph, uniform_cluster("unit", unit_devices(2), 1.0, 0.0))
    transfers = sim.simulate([0, 1]).transfers
    sizes = sorted(round(t.end - t.start) for t in transfers)
    assert sizes == [3, 3, 7, 7]  # h and c forward, their gradients back
    # t0 0-1, h and c share the one link: 1-4, 4-11; t1 11-12, back 12-13, gradients 13-16, 16-23; t0 23-24
    assert sim.step_time([0, 1]) == pytest.approx(24.0)


def test_the_optimizer_update_is_timed_and_everything_on_one_device_is_the_serial_time():
    graph = OpGraph(
        "two",
        (Op("a", 10, 2, (), 100, layer="A"), Op("b", 20, 0, (0,), 50, layer="B")),
    )
    cluster = uniform_cluster("unit", unit_devices(2, memory_bandwidth=70.0), 1.0, 0.0)
    sim = Simulator(graph, cluster)
    # forward 30, backward 60, updates 7 x 150 bytes / 70 B/s = 15
    assert sim.step_time([0, 0]) == pytest.approx(90 + UPDATE_PASSES * 150 / 70)
    assert sim.step_time([1, 1]) == pytest.approx(sim.serial_seconds(1))


@pytest.mark.parametrize("name", ["rnnlm_small", "nmt_small"])
@pytest.mark.parametrize("cluster", ["4gpu-pcie", "8gpu-nvlink", "8gpu-nvswitch", "1gpu+cpu"])
def test_everything_on_one_device_equals_the_single_device_time(name, cluster, small_graphs):
    graph = small_graphs[name]
    sim = Simulator(graph, get_cluster(cluster))
    for device in range(len(sim.cluster)):
        placement = np.full(len(graph), device)
        if np.isfinite(sim.step_time(placement)):
            assert sim.step_time(placement) == pytest.approx(sim.serial_seconds(device), rel=1e-9)


@pytest.mark.parametrize("name", ["rnnlm", "nmt"])
def test_op_mod_k_and_random_placements_lose_to_the_expert(name, benchmark_graphs):
    graph = benchmark_graphs[name]
    sim = Simulator(graph, get_cluster("4gpu-pcie"))
    expert_time = sim.step_time(expert(graph, sim.cluster))
    assert sim.step_time(op_mod_k(graph, sim.cluster)) > expert_time
    rng = np.random.default_rng(0)
    randoms = sim.step_times(rng.integers(0, 4, size=(100, len(graph))))
    assert randoms.min() > expert_time


def _placed_floor(sim: Simulator, placement: np.ndarray) -> float:
    """The longest chain of this placement with every activation copy on it paid alone."""
    graph, cluster = sim.graph, sim.cluster
    n = len(graph)
    d = placement
    copy = lambda a, b, nbytes: 0.0 if a == b else cluster.latency[a, b] + nbytes / cluster.bandwidth[a, b]  # noqa: E731
    fwd = np.zeros(n)
    for i, op in enumerate(graph.ops):
        ready = max((fwd[j] + copy(d[j], d[i], graph.ops[j].output_bytes) for j in op.inputs), default=0.0)
        fwd[i] = ready + sim.op_seconds[i, d[i]]
    bwd = np.zeros(n)
    consumers = graph.consumers()
    for i in reversed(range(n)):
        ready = max((bwd[c] + copy(d[c], d[i], graph.ops[i].output_bytes) for c in consumers[i]), default=0.0)
        bwd[i] = max(ready, fwd[i]) + sim.backward_seconds[i, d[i]]
    return float(bwd.max())


@pytest.mark.parametrize("cluster", ["4gpu-pcie", "8gpu-nvlink"])
def test_adding_a_transfer_never_makes_a_step_faster(cluster, small_graphs):
    """Property over random placements: a step is never shorter than its own transfer-laden chain,
    never shorter than the same ops with free links, and moving one op onto its producer's device
    of a chain graph never makes it slower."""
    rng = np.random.default_rng(1)
    for graph in small_graphs.values():
        sim = Simulator(graph, get_cluster(cluster))
        free_links = Simulator(graph, _free_links(get_cluster(cluster)))
        devices = len(sim.cluster)
        for placement in rng.integers(0, devices, size=(40, len(graph))):
            step = sim.step_time(placement)
            assert step >= _placed_floor(sim, placement) * (1 - 1e-9)
            assert step >= lower_bound(graph, sim.cluster) * (1 - 1e-9)
            one_device_work = [
                (sim.op_seconds[placement == k, k] + sim.backward_seconds[placement == k, k]).sum()
                for k in range(devices)
            ]
            assert step >= max(one_device_work) * (1 - 1e-9)
            assert free_links.step_time(placement) <= step * (1 + 1e-9)
    chain = OpGraph(
        "chain",
        tuple(Op(f"o{i}", 1e9, 10 * MB, (i - 1,) if i else (), MB, layer=f"l{i // 2}") for i in range(12)),
    )
    sim = Simulator(chain, get_cluster(cluster))
    single = sim.step_time(np.zeros(12, int))
    for placement in rng.integers(0, 4, size=(60, 12)):
        assert sim.step_time(placement) >= single * (1 - 1e-9)


def _free_links(cluster: Cluster) -> Cluster:
    links = tuple(Link(k.name, 1e30, 0.0) for k in cluster.links)
    return Cluster(cluster.name, cluster.devices, links, cluster.routes)


def test_gpus_share_one_pcie_port_and_switch_uplinks():
    cluster = get_cluster("4gpu-pcie")
    # one x16 port each way per GPU: two copies out of GPU 0 at once queue behind each other
    graph = OpGraph("fan", (Op("a", 0, 100 * MB), Op("b", 1, 0, (0,)), Op("c", 1, 0, (0,))))
    sim = Simulator(graph, cluster)
    copies = sorted((t.start, t.end) for t in sim.simulate([0, 1, 2]).transfers if t.kind == "activation")
    assert copies[1][0] >= copies[0][1]
    # GPUs 0 and 1 sit behind one switch: 0 -> 2 and 1 -> 3 share the switch's uplink
    assert set(cluster.routes[(0, 2)]) & set(cluster.routes[(1, 3)])
    assert not set(cluster.routes[(0, 1)]) & set(cluster.routes[(2, 3)])


def test_ready_made_topologies_are_data_and_round_trip():
    for name in ("4gpu-pcie", "8gpu-nvlink", "8gpu-nvswitch", "1gpu+cpu"):
        cluster = PRESETS[name]
        again = Cluster.from_dict(cluster.to_dict())
        assert again.routes == cluster.routes and again.links == cluster.links
    mesh = get_cluster("8gpu-nvlink")
    assert mesh.bandwidth[0, 3] == 50e9 and mesh.bandwidth[0, 1] == 25e9  # 2 and 1 NVLinks
    assert mesh.bandwidth[0, 5] == 10e9  # no NVLink: PCIe, the CPUs and QPI
    switch = get_cluster("8gpu-nvswitch")
    assert np.all(switch.bandwidth[~np.eye(8, dtype=bool)] == 150e9)
    assert [d.kind for d in get_cluster("1gpu+cpu").devices] == ["p100", "cpu"]
