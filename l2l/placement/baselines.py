"""Placements people make without learning, and a lower bound no placement can beat.

A learned placer is worth something only if it beats what an engineer would do by hand, so
the search reports its result next to these (each returns one device index per op; only
accelerators are used, the CPU of a mixed cluster is left to the searches):

* ``single_device``: the whole model on the fastest accelerator (step time ``inf`` when it
  does not fit, which is the point of placing at all);
* ``round_robin``: layers dealt to the accelerators in turn;
* ``contiguous``: the pipeline split, contiguous layers cut into one part per accelerator
  with the compute balanced (the optimal contiguous cut, not a greedy one);
* ``expert``: the layout of Mirhoseini et al.'s expert (GNMT's, Wu et al. 2016) on graphs with
  recurrent stacks: layer ``i`` of each stack (encoder, decoder) on accelerator ``i``, the
  embeddings and merges that feed a layer with it, attention and the softmax with the top
  layers; the contiguous cut on graphs without recurrent layers;
* ``expert_split_softmax``: the expert with the output layer's time steps cut in contiguous
  runs over the accelerators no recurrent layer uses (over all of them if none is free);
* ``op_mod_k``: op ``i`` on accelerator ``i mod k``, the trivial placement that looked good
  while splitting a layer was free;
* ``metis``: a balanced minimum cut of the op graph (METIS), the classic graph-partitioning
  answer that ignores the order in which ops run.

Searches with a budget of simulator calls (random search, local search) are in
:mod:`l2l.placement.local_search`. :func:`lower_bound` is a floor on
:meth:`Simulator.step_time` of *any* placement, weight traffic included, so a search can say
how far from optimal it may still be.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np
import pymetis

from l2l.placement.cluster import Cluster
from l2l.placement.families import op_family
from l2l.placement.graph import OpGraph
from l2l.placement.simulator import Simulator

Baseline = Callable[[OpGraph, Cluster], np.ndarray]

# METIS takes integer weights; totals are kept well inside 32-bit indices whatever its build.
_VERTEX_WEIGHT_TOTAL = 10_000_000
_EDGE_WEIGHT_MAX = 1_000_000
_EDGE_WEIGHT_TOTAL = 100_000_000


def _step_seconds(graph: OpGraph, cluster: Cluster) -> np.ndarray:
    """Forward plus backward seconds of each op on each device, (n_ops, n_devices).

    Taken from the simulator so that the baselines balance exactly the costs it charges.
    """
    simulator = Simulator(graph, cluster)
    return simulator.op_seconds + simulator.backward_seconds


def single_device(graph: OpGraph, cluster: Cluster) -> np.ndarray:
    """Every op on the accelerator that runs the whole step fastest (the first of equals)."""
    accelerators = cluster.accelerators()
    totals = _step_seconds(graph, cluster)[:, accelerators].sum(axis=0)
    return np.full(len(graph), accelerators[int(np.argmin(totals))], dtype=np.int64)


def round_robin(graph: OpGraph, cluster: Cluster) -> np.ndarray:
    """Layer ``k`` (in order of first op) on accelerator ``k mod A``; a layer's ops stay together."""
    accelerators = np.array(cluster.accelerators(), dtype=np.int64)
    layers = np.array(graph.layer_of_ops(), dtype=np.int64)
    return accelerators[layers % len(accelerators)]


def contiguous(graph: OpGraph, cluster: Cluster) -> np.ndarray:
    """Contiguous runs of layers, one per accelerator in cluster order, minimising the largest load.

    A part's load is its layers' forward+backward seconds on the accelerator it goes to, so
    mixed kinds are balanced by their real speed. Parts may be empty when there are fewer
    layers than accelerators. Whole layers only: no weight traffic.
    """
    accelerators = cluster.accelerators()
    layer_of_op = np.array(graph.layer_of_ops(), dtype=np.int64)
    n_layers = int(layer_of_op.max()) + 1
    seconds = _step_seconds(graph, cluster)[:, accelerators]
    layer_seconds = np.zeros((n_layers, len(accelerators)))
    np.add.at(layer_seconds, layer_of_op, seconds)
    part_of_layer = contiguous_partition(layer_seconds)
    return np.array(accelerators, dtype=np.int64)[part_of_layer[layer_of_op]]


_STACK_SUFFIX = re.compile(r"_?\d+$")
#: Layer families that go with the recurrent layer they feed (inputs, embeddings, merges).
_FEEDERS = ("input", "embedding", "merge", "activation", "other")


def expert(graph: OpGraph, cluster: Cluster) -> np.ndarray:
    """The GNMT layout on graphs with recurrent layers, else :func:`contiguous` (see the module doc).

    Stacks are recurrent layers whose names differ only in a trailing number ("encoder_1",
    "encoder_2"); the ``i``-th layer of a stack (in graph order) goes on accelerator ``i mod A``.
    """
    return _gnmt_layout(graph, cluster, split_output=False)


def expert_split_softmax(graph: OpGraph, cluster: Cluster) -> np.ndarray:
    """:func:`expert` with the output layer's ops (its time steps) cut over the free accelerators."""
    return _gnmt_layout(graph, cluster, split_output=True)


def _gnmt_layout(graph: OpGraph, cluster: Cluster, *, split_output: bool) -> np.ndarray:
    accelerators = np.array(cluster.accelerators(), dtype=np.int64)
    layers = graph.layers
    layer_of_op = np.array(graph.layer_of_ops(), dtype=np.int64)
    first_op = {layer_of_op[i]: i for i in range(len(graph) - 1, -1, -1)}
    family = [op_family(graph.ops[first_op[k]].kind) for k in range(len(layers))]
    recurrent = [k for k in range(len(layers)) if family[k] == "recurrent"]
    if not recurrent:
        return contiguous(graph, cluster)
    producers: list[set[int]] = [set() for _ in layers]
    consumers: list[set[int]] = [set() for _ in layers]
    for i, op in enumerate(graph.ops):
        for j in op.inputs:
            a, b = int(layer_of_op[j]), int(layer_of_op[i])
            if a != b:
                producers[b].add(a)
                consumers[a].add(b)
    slot: dict[int, int] = {}
    stacks: dict[str, int] = {}
    for k in recurrent:
        stack = _STACK_SUFFIX.sub("", layers[k])
        slot[k] = stacks.get(stack, 0) % len(accelerators)
        stacks[stack] = stacks.get(stack, 0) + 1
    # feeders (inputs, embeddings, merges) go with the first layer they feed, nearest first
    for k in reversed(range(len(layers))):
        if k not in slot and family[k] in _FEEDERS:
            fed = [slot[c] for c in sorted(consumers[k]) if c in slot]
            if fed:
                slot[k] = min(fed)
    # everything else (attention, the softmax) with the highest of the layers it reads
    for k in range(len(layers)):
        if k not in slot:
            read = [slot[p] for p in producers[k] if p in slot]
            slot[k] = max(read) if read else 0
    placement = accelerators[np.array([slot[int(k)] for k in layer_of_op], dtype=np.int64)]
    if split_output:
        sinks = [k for k in range(len(layers)) if not consumers[k] and k not in recurrent]
        if sinks:
            output = max(
                sinks, key=lambda k: sum(graph.ops[i].flops for i in np.flatnonzero(layer_of_op == k))
            )
            used = {slot[k] for k in recurrent}
            free = [a for a in range(len(accelerators)) if a not in used] or list(range(len(accelerators)))
            ops = np.flatnonzero(layer_of_op == output)
            chunks = np.array_split(ops, len(free))
            for chunk, a in zip(chunks, free, strict=True):
                placement[chunk] = accelerators[a]
    return placement


def op_mod_k(graph: OpGraph, cluster: Cluster) -> np.ndarray:
    """Op ``i`` on accelerator ``i mod k`` (k accelerators): splits every layer it can."""
    accelerators = np.array(cluster.accelerators(), dtype=np.int64)
    return accelerators[np.arange(len(graph)) % len(accelerators)]


def contiguous_partition(costs: np.ndarray) -> np.ndarray:
    """Optimal cut of items ``0..L-1`` into ``P`` consecutive (possibly empty) runs.

    ``costs[l, p]`` (>= 0) is item ``l``'s cost in part ``p``; run ``p`` holds the items
    between cut ``p`` and cut ``p+1``, and the cuts minimise the largest run total exactly.
    Returns the part of each item, non-decreasing.

    Dynamic programme over prefixes: ``best[p][b]``, the least largest load of items
    ``< b`` in parts ``<= p``, is nondecreasing in ``b`` while the last run's cost
    ``prefix[b] - prefix[a]`` falls as its start ``a`` rises, so the best start is where
    they cross: a binary search per ``b``, all ``b`` at once. O(P L log L).
    """
    n_items, n_parts = costs.shape
    prefix = np.zeros((n_items + 1, n_parts))
    prefix[1:] = np.cumsum(costs, axis=0)
    ends = np.arange(n_items + 1)
    best = prefix[:, 0].copy()
    starts = np.zeros((n_parts, n_items + 1), dtype=np.int64)  # starts[p][b]: where run p begins
    for p in range(1, n_parts):
        run_prefix = prefix[:, p]
        crossing = np.searchsorted(best + run_prefix, run_prefix, side="left")
        # floating-point rounding can move the crossing by one: look on both sides of it
        candidates = np.clip(crossing[None, :] + np.array([-1, 0, 1])[:, None], 0, ends[None, :])
        loads = np.maximum(best[candidates], run_prefix[None, :] - run_prefix[candidates])
        choice = np.argmin(loads, axis=0)
        starts[p] = candidates[choice, ends]
        best = loads[choice, ends]
    part_of_item = np.zeros(n_items, dtype=np.int64)
    end = n_items
    for p in range(n_parts - 1, 0, -1):
        start = int(starts[p][end])
        part_of_item[start:end] = p
        end = start
    return part_of_item


def metis(graph: OpGraph, cluster: Cluster, seed: int = 0) -> np.ndarray:
    """A minimum-bytes cut of the op graph into one part per accelerator, balanced by compute.

    Vertices weigh their cheapest forward+backward seconds; edges weigh the producer's
    output bytes (undirected, once per pair of ops). On mixed kinds each part's target share
    of the work is proportional to its accelerator's speed on this graph. The same seed gives
    the same placement.
    """
    accelerators = cluster.accelerators()
    n = len(graph)
    if len(accelerators) == 1:
        return np.full(n, accelerators[0], dtype=np.int64)
    if n <= len(accelerators):
        # fewer ops than parts: METIS cannot balance this, and one op per device is its answer
        return np.array(accelerators[:n], dtype=np.int64)
    seconds = _step_seconds(graph, cluster)[:, accelerators]
    work = seconds.min(axis=1)
    vertex_weights = np.maximum(1, np.round(_scaled(work, _VERTEX_WEIGHT_TOTAL))).astype(np.int64)

    pairs: dict[tuple[int, int], float] = {}
    for i, op in enumerate(graph.ops):
        for j in set(op.inputs):
            pairs[(j, i)] = float(graph.ops[j].output_bytes)
    adjacency: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    for (j, i), nbytes in pairs.items():
        adjacency[j].append((i, nbytes))
        adjacency[i].append((j, nbytes))
    starts = np.zeros(n + 1, dtype=np.int64)
    starts[1:] = np.cumsum([len(neighbours) for neighbours in adjacency])
    adjacent = np.array([k for neighbours in adjacency for k, _ in neighbours], dtype=np.int64)
    edge_bytes = np.array([b for neighbours in adjacency for _, b in neighbours], dtype=np.float64)
    scale = _EDGE_WEIGHT_MAX / edge_bytes.max() if edge_bytes.size and edge_bytes.max() > 0 else 1.0
    if edge_bytes.sum() * scale > _EDGE_WEIGHT_TOTAL:
        scale = _EDGE_WEIGHT_TOTAL / edge_bytes.sum()
    # METIS wants positive edge weights; an empty tensor still ties its ops a little
    edge_weights = np.maximum(1, np.round(edge_bytes * scale)).astype(np.int64)

    speed = 1.0 / np.maximum(seconds.sum(axis=0), np.finfo(float).tiny)
    shares = None if np.allclose(speed, speed[0]) else list(speed / speed.sum())
    _, parts = pymetis.part_graph(
        len(accelerators),
        pymetis.CSRAdjacency(starts.tolist(), adjacent.tolist()),
        vweights=vertex_weights.tolist(),
        eweights=edge_weights.tolist(),
        tpwgts=shares,
        options=pymetis.Options(seed=seed),
    )
    return np.array(accelerators, dtype=np.int64)[np.asarray(parts, dtype=np.int64)]


def _scaled(values: np.ndarray, total: float) -> np.ndarray:
    whole = values.sum()
    return values * (total / whole) if whole > 0 else np.ones_like(values)


def lower_bound(graph: OpGraph, cluster: Cluster) -> float:
    """Seconds that no placement's simulated step time goes below (``inf`` for unfit ones included).

    The largest of three floors, each valid in the simulator's model:

    * critical path: the longest chain of the forward+backward graph (forward ``v`` after
      its inputs' forwards; backward ``v`` after forward ``v`` and its consumers' backwards;
      a layer's update after its ops' backwards) with every op at its fastest device's time
      and activation transfers free;
    * work: every device runs one op at a time, so for any device weights ``w >= 0`` with
      ``sum(w) <= 1`` the step lasts at least ``sum_i min_d w_d t_id`` (``t_id`` the op's
      (or update's) seconds on device ``d``), since ``sum_d w_d load_d <= step``.
      Identical devices give ``sum_i t_i / D``; on mixed kinds the best weights (the dual
      of the fractional-assignment LP) come from :func:`_best_device_weights` and the
      bound is then evaluated exactly from them, so solver tolerances cannot make it invalid;
    * weight traffic, per layer with parameters: either the whole layer runs on one device
      (at least its forwards, backwards and update there, back to back), or some device runs
      part of it and then the weights reach it from the owner, it runs at least one op
      forward and backward, its gradient goes back and the owner updates, one after the other.
      The step lasts at least the smaller of the two, for every layer.
    """
    simulator = Simulator(graph, cluster)
    forward = simulator.op_seconds.min(axis=1)
    backward = simulator.backward_seconds.min(axis=1)
    update = simulator.update_seconds.min(axis=1) if simulator.update_seconds.size else np.zeros(0)
    forward_done = np.zeros(len(graph))
    for i, op in enumerate(graph.ops):
        forward_done[i] = forward[i] + max((forward_done[j] for j in op.inputs), default=0.0)
    backward_done = np.zeros(len(graph))
    consumers = graph.consumers()
    for i in reversed(range(len(graph))):
        ready = max((backward_done[c] for c in consumers[i]), default=0.0)
        backward_done[i] = backward[i] + max(forward_done[i], ready)
    critical_path = float(backward_done.max())
    layer_ops = _param_layer_ops(simulator)
    for layer, ops in enumerate(layer_ops):
        critical_path = max(critical_path, float(backward_done[ops].max() + update[layer]))

    seconds = np.concatenate([simulator.op_seconds + simulator.backward_seconds, simulator.update_seconds])
    weights = _best_device_weights(seconds)
    work = float((seconds * weights[None, :]).min(axis=1).sum())
    return max(critical_path, work, _weight_traffic_floor(simulator, layer_ops))


def _param_layer_ops(simulator: Simulator) -> list[np.ndarray]:
    """The ops of each layer that has parameters, in the simulator's layer order."""
    op_layer = simulator._op_layer
    return [np.flatnonzero(op_layer == layer) for layer in range(len(simulator._layer_bytes))]


def _weight_traffic_floor(simulator: Simulator, layer_ops: list[np.ndarray]) -> float:
    cluster = simulator.cluster
    n = len(cluster)
    op_total = simulator.op_seconds + simulator.backward_seconds
    copy = cluster.latency + simulator._layer_bytes[:, None, None] / cluster.bandwidth[None, :, :]
    floor = 0.0
    for layer, ops in enumerate(layer_ops):
        whole = float((op_total[ops].sum(axis=0) + simulator.update_seconds[layer]).min())
        split = math.inf
        if len(ops) > 1 and n > 1:
            cheapest_piece = op_total[ops].min(axis=0)  # per device
            for owner in range(n):
                for other in range(n):
                    if other != owner:
                        split = min(
                            split,
                            copy[layer, owner, other]
                            + cheapest_piece[other]
                            + copy[layer, other, owner]
                            + simulator.update_seconds[layer, owner],
                        )
        floor = max(floor, min(whole, split))
    return floor


def _best_device_weights(seconds: np.ndarray) -> np.ndarray:
    """Device weights (>= 0, summing to at most 1) that make the work floor as high as possible.

    Devices with identical cost columns share a weight. With one kind the answer is
    uniform; otherwise the LP ``max sum_i u_i  s.t.  u_i <= t_ig w_g,  sum_g m_g w_g <= 1``
    is solved with SciPy (HiGHS). Without SciPy, uniform weights: still a valid floor.
    """
    n_ops, n_devices = seconds.shape
    uniform = np.full(n_devices, 1.0 / n_devices)
    columns, group_of_device, group_sizes = np.unique(
        seconds.T, axis=0, return_inverse=True, return_counts=True
    )
    n_groups = len(columns)
    if n_groups == 1 or n_ops == 0:
        return uniform
    try:
        from scipy.optimize import linprog
        from scipy.sparse import coo_matrix, hstack, vstack
    except ImportError:
        return uniform
    # variables: u_0..u_{n-1}, w_0..w_{G-1}; rows: u_i - t_ig w_g <= 0 for every (i, g), then sum m_g w_g <= 1
    rows = np.arange(n_ops * n_groups)
    op_of_row, group_of_row = np.divmod(rows, n_groups)
    u_part = coo_matrix((np.ones(len(rows)), (rows, op_of_row)), shape=(len(rows), n_ops))
    w_part = coo_matrix((-columns.T.ravel(), (rows, group_of_row)), shape=(len(rows), n_groups))
    capacity = hstack([coo_matrix((1, n_ops)), coo_matrix(group_sizes.astype(float)[None, :])])
    constraints = vstack([hstack([u_part, w_part]), capacity]).tocsr()
    objective = np.concatenate([-np.ones(n_ops), np.zeros(n_groups)])
    limits = np.concatenate([np.zeros(len(rows)), [1.0]])
    result = linprog(objective, A_ub=constraints, b_ub=limits, bounds=(0, None), method="highs")
    if result.status != 0:
        return uniform
    group_weights = np.clip(result.x[n_ops:], 0.0, None)
    total = float(group_weights @ group_sizes)
    if not total > 0:
        return uniform
    weights = group_weights[group_of_device.ravel()] / total
    best, fallback = (seconds * weights).min(axis=1).sum(), (seconds * uniform).min(axis=1).sum()
    return weights if best >= fallback else uniform


#: Placements a person would make by hand (what the learned planner starts from).
HAND_MADE: dict[str, Baseline] = {
    "single_device": single_device,
    "contiguous": contiguous,
    "expert": expert,
    "expert_split_softmax": expert_split_softmax,
    "metis": metis,
}

BASELINES: dict[str, Baseline] = {
    "single_device": single_device,
    "round_robin": round_robin,
    "op_mod_k": op_mod_k,
    "contiguous": contiguous,
    "expert": expert,
    "expert_split_softmax": expert_split_softmax,
    "metis": metis,
}


def evaluate_baselines(simulator: Simulator) -> dict[str, tuple[np.ndarray, float]]:
    """Each baseline's placement and its simulated step time (``inf`` if it does not fit)."""
    results: dict[str, tuple[np.ndarray, float]] = {}
    for name, baseline in BASELINES.items():
        placement = baseline(simulator.graph, simulator.cluster)
        results[name] = (placement, simulator.step_time(placement))
    return results
