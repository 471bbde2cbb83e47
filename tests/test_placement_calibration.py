"""Calibration (measured layer times and links) and the real multi-device check of the simulator."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from l2l.placement.calibration import LinkEstimate, calibrated_cluster, calibrated_graph, fit_link
from l2l.placement.graph import Op, OpGraph
from l2l.placement.realstep import (
    CHECK_MODELS,
    _check_cluster,
    check_placements,
    layer_placement,
    op_placement,
    recorded_simulator,
    report_from_dict,
)
from l2l.placement.simulator import Simulator

RECORDED = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "results"


def _small_model(keras):
    x = inputs = keras.Input((64,), name="features")
    x = keras.layers.Dense(32, activation="relu", name="hidden")(x)
    x = keras.layers.Dropout(0.1, name="drop")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="out")(x))


def test_measured_layer_times_cover_every_layer() -> None:
    # What a measurement returns, not how long anything took: a loaded machine can make a
    # tiny layer's time (a difference of two noisy times for a backward) anything >= 0.
    keras = pytest.importorskip("keras")
    from l2l.placement.calibration import measure_layer_seconds

    seconds = measure_layer_seconds(_small_model(keras), batch_size=16, repeats=2, warmup=1)

    assert list(seconds) == ["hidden", "drop", "out"]  # the input layer is not timed
    for forward, backward in seconds.values():
        assert math.isfinite(forward) and math.isfinite(backward)
        assert forward >= 0 and backward >= 0


def _hand_graph() -> OpGraph:
    ops = [
        Op("tokens", 0.0, 80, layer="tokens"),
        Op("lstm/t0", 1.0, 40, (0,), param_bytes=100, layer="lstm"),
        Op("lstm/t1", 1.0, 40, (0, 1), layer="lstm"),
        Op("lstm/t2", 2.0, 40, (0, 2), layer="lstm"),
        Op("head", 5.0, 8, (3,), param_bytes=20, layer="head"),
    ]
    return OpGraph("hand", tuple(ops))


def test_calibrated_graph_divides_a_layer_time_among_its_ops_by_flops() -> None:
    graph = calibrated_graph(_hand_graph(), {"lstm": (0.4, 0.8), "head": (0.1, 0.3)}, "cpu")

    seconds = [op.seconds.get("cpu") for op in graph.ops]
    assert seconds[0] is None  # an unmeasured op (the input) keeps what it had
    assert seconds[1:4] == pytest.approx([0.1, 0.1, 0.2])
    assert sum(seconds[1:4]) == pytest.approx(0.4)
    assert seconds[4] == pytest.approx(0.1)
    assert graph.backward_factor == pytest.approx((0.8 + 0.3) / (0.4 + 0.1))
    backward = [op.backward_seconds.get("cpu") for op in graph.ops]
    assert backward[1:4] == pytest.approx([0.2, 0.2, 0.4]) and backward[4] == pytest.approx(0.3)


def test_each_device_kind_keeps_its_own_backward_time() -> None:
    # A GPU and the host CPU differ in backward/forward ratio: one factor per graph would
    # charge one of them the other's ratio.
    graph = calibrated_graph(_hand_graph(), {"lstm": (0.4, 0.4), "head": (0.1, 0.1)}, "gpu")
    graph = calibrated_graph(graph, {"lstm": (4.0, 12.0), "head": (1.0, 3.0)}, "cpu")
    cluster = _check_cluster(
        ["gpu", "cpu"], {"gpu": 1e12, "cpu": 1e10}, LinkEstimate(0, 1e15), LinkEstimate(0, 1e15)
    )
    simulator = Simulator(graph, cluster)

    on_gpu = simulator.simulate(np.zeros(len(graph), dtype=np.int64)).step_time
    on_cpu = simulator.simulate(np.ones(len(graph), dtype=np.int64)).step_time
    assert on_gpu == pytest.approx(0.4 + 0.1 + 0.4 + 0.1)
    assert on_cpu == pytest.approx(4.0 + 1.0 + 12.0 + 3.0)
    assert OpGraph.from_json(graph.to_json()).ops[1].backward_seconds == graph.ops[1].backward_seconds


def test_calibrated_graph_sums_to_the_layer_time_on_an_unrolled_keras_graph() -> None:
    keras = pytest.importorskip("keras")
    from l2l.placement.keras_graph import graph_from_keras

    inputs = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(50, 8, name="embedding")(inputs)
    x = keras.layers.LSTM(16, return_sequences=True, name="lstm")(x)
    model = keras.Model(inputs, keras.layers.Dense(50, name="softmax")(x))
    graph = graph_from_keras(model, 4, unroll=True)
    measured = {"embedding": (0.01, 0.02), "lstm": (0.06, 0.12), "softmax": (0.03, 0.09)}

    calibrated = calibrated_graph(graph, measured, "cpu")

    for layer, (forward, _) in measured.items():
        ops = [op for op in calibrated.ops if op.layer == layer]
        assert len(ops) == 6  # split per time step
        assert sum(op.seconds["cpu"] for op in ops) == pytest.approx(forward)
    assert calibrated.backward_factor == pytest.approx(0.23 / 0.10)


def test_fit_link_recovers_latency_and_bandwidth() -> None:
    sizes = np.array([1e3, 1e4, 1e5, 1e6, 1e7])
    link = fit_link(sizes, 50e-6 + sizes / 2e9)

    assert link.latency == pytest.approx(50e-6, rel=1e-6)
    assert link.bandwidth == pytest.approx(2e9, rel=1e-6)
    assert fit_link([1e3, 1e6], [1e-4, 5e-5]).latency >= 0  # noise never gives a negative latency


def test_calibrated_cluster_is_uniform() -> None:
    cluster = calibrated_cluster(3, "cpu", LinkEstimate(1e-4, 1e9), flops=5e9, memory_bytes=2**30)

    assert [d.name for d in cluster.devices] == ["cpu:0", "cpu:1", "cpu:2"]
    assert {d.kind for d in cluster.devices} == {"cpu"}
    assert cluster.bandwidth[0, 1] == 1e9 and cluster.latency[2, 0] == 1e-4


def test_layer_placements() -> None:
    layers = ["a", "b", "c", "d"]
    seconds = {"a": (3.0, 0.0), "b": (1.0, 0.0), "c": (1.0, 0.0), "d": (1.0, 0.0)}

    assert layer_placement("single", layers, 2, seconds) == dict.fromkeys(layers, 0)
    assert list(layer_placement("round_robin", layers, 3, seconds).values()) == [0, 1, 2, 0]
    assert list(layer_placement("contiguous", layers, 2, seconds).values()) == [0, 1, 1, 1]  # by time
    assert layer_placement([1, 0, 1, 0], layers, 2, seconds)["c"] == 1
    assert layer_placement("all:1", layers, 2, seconds) == dict.fromkeys(layers, 1)
    with pytest.raises(ValueError, match="one device per layer"):
        layer_placement([0, 1], layers, 2, seconds)
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        layer_placement({"a": 0, "b": 5, "c": 0, "d": 0}, layers, 2, seconds)


def test_an_input_op_goes_to_its_first_consumers_device() -> None:
    placement = op_placement(_hand_graph(), {"lstm": 1, "head": 0})

    assert placement.tolist() == [1, 1, 1, 1, 0]


def test_real_steps_on_two_virtual_devices() -> None:
    """The whole check in a subprocess: JAX with 2 virtual CPU devices, no accelerator needed."""
    pytest.importorskip("jax")
    assert "tiny" in CHECK_MODELS

    results = check_placements(
        "tiny", {"one": "single", "split": "contiguous"}, devices=2, steps=3, timeout=300
    )

    assert [r.name for r in results] == ["one", "split"]
    for result in results:
        # finite numbers of the right meaning; their sizes depend on how busy the machine is
        assert math.isfinite(result.predicted_s) and result.predicted_s >= 0
        assert math.isfinite(result.measured_s) and result.measured_s >= 0
        if result.measured_s > 0:
            assert result.error == pytest.approx(
                abs(result.predicted_s - result.measured_s) / result.measured_s
            )
    assert set(results[0].placement.values()) == {0}
    assert set(results[1].placement.values()) == {0, 1}


def _recorded_reports(name: str) -> list:
    return [report_from_dict(json.loads(line)) for line in (RECORDED / name).read_text().splitlines()]


@pytest.mark.parametrize("name", ["placement_check_h200_gpu_cpu.jsonl", "placement_check_h200_cpu4.jsonl"])
def test_the_recorded_gpu_machine_measurements_are_predicted_again_from_their_calibration(name) -> None:
    """The measurements taken on the GPU machine (docs/benchmarks/placement.md), re-predicted
    here from their recorded calibration: the simulator still gives what the table quotes."""
    pytest.importorskip("keras")

    reports = _recorded_reports(name)
    assert {r.model for r in reports} == {"mlp", "cnn", "lstm", "nmt", "towers"}
    for report in reports:
        graph, simulator = recorded_simulator(report)
        for result in report.results:
            predicted = simulator.simulate(op_placement(graph, result.placement)).step_time
            assert predicted == pytest.approx(result.predicted_s, rel=1e-6), (report.model, result.name)


def test_the_fitted_task_cost_is_fitted_on_single_device_steps_and_tested_on_the_others() -> None:
    pytest.importorskip("keras")
    from l2l.placement.check_refit import held_out, ordered_pairs, task_overheads

    for report in _recorded_reports("placement_check_h200_gpu_cpu.jsonl")[:2]:
        overheads = task_overheads(report)
        assert set(overheads) == {"gpu", "cpu"} and min(overheads.values()) >= 0
        rows = held_out(report)
        assert {row.placement for row in rows} == {"round_robin", "contiguous"}  # never fitted on
        for row in rows:
            assert row.refit_s >= row.predicted_s  # a cost added to every task never speeds a step
        assert len(ordered_pairs(report)) == 6  # 4 placements
