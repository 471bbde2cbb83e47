"""Step-time simulator: how long one training step of a placed graph takes on a cluster.

The step is the forward pass of every op followed by its backward pass (``backward_factor``
times the forward compute, on the same device, reading the gradients of its consumers).
Each device runs one op at a time and, whenever it is free, starts the ready op that comes
first in the step's order (forward in topological order, then backward in reverse), the way
a framework's executor runs an op as soon as its inputs are there. An op's output is sent
once to every other device that consumes it (a gradient once per consumer); each link
(ordered pair of devices) carries one transfer at a time, first come first served, taking
``latency + bytes / bandwidth``. A device must hold its ops' parameters times
``param_copies`` (weights, gradients, two Adam moments), their activations and the tensors it
receives (kept for the backward pass); a placement that does not fit has step time ``inf``.

The event loop is compiled with numba: thousands of placements a second on graphs of a
thousand ops, so that a search can try hundreds of thousands.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from l2l.placement.cluster import Cluster
from l2l.placement.graph import OpGraph


class PlacementError(ValueError):
    """A placement that is not one device index per op; the message says what is wrong."""


@dataclass(frozen=True)
class Span:
    """One op run or one transfer on the simulated timeline (seconds from the step's start)."""

    op: int
    backward: bool
    device: int
    start: float
    end: float
    #: For transfers: the receiving device (``device`` is the sender); -1 for op runs.
    to_device: int = -1


@dataclass(frozen=True)
class Simulation:
    step_time: float
    fits: bool
    #: Bytes each device needs.
    memory: np.ndarray
    runs: list[Span]
    transfers: list[Span]


class Simulator:
    """Simulates training steps of ``graph`` on ``cluster``; cheap to call many times."""

    def __init__(self, graph: OpGraph, cluster: Cluster, *, param_copies: float = 4.0) -> None:
        self.graph = graph
        self.cluster = cluster
        self.param_copies = param_copies
        n, devices = len(graph), len(cluster)
        self.op_seconds, self.backward_seconds = _compute_seconds(graph, cluster)
        consumers = graph.consumers()

        # Nodes 0..n-1 are the forward ops in topological order; node 2n-1-i is op i's backward,
        # so the node index is also the order a free device prefers among ready nodes.
        self._node_op = np.concatenate([np.arange(n), np.arange(n)[::-1]]).astype(np.int64)
        self._node_seconds = np.concatenate([self.op_seconds, self.backward_seconds[::-1]])
        self._shared_output = np.concatenate([np.ones(n), np.zeros(n)]).astype(np.bool_)
        succ: list[list[tuple[int, int]]] = [[] for _ in range(2 * n)]  # (successor, bytes)
        for i, op in enumerate(graph.ops):
            backward = 2 * n - 1 - i
            succ[i].append((backward, 0))  # the backward reads the op's own activations: same device
            for j in op.inputs:
                succ[j].append((i, graph.ops[j].output_bytes))
            for c in consumers[i]:
                # the gradient of op i's output flows from each consumer's backward to op i's backward
                succ[2 * n - 1 - c].append((backward, op.output_bytes))
        counts = np.zeros(2 * n, dtype=np.int64)
        self._succ_ptr = np.zeros(2 * n + 1, dtype=np.int64)
        self._succ_node = np.zeros(sum(len(s) for s in succ), dtype=np.int64)
        self._succ_bytes = np.zeros(len(self._succ_node), dtype=np.float64)
        edge = 0
        for k, targets in enumerate(succ):
            for target, nbytes in targets:
                self._succ_node[edge] = target
                self._succ_bytes[edge] = nbytes
                counts[target] += 1
                edge += 1
            self._succ_ptr[k + 1] = edge
        self._pred_count = counts
        self._inverse_bandwidth = 1.0 / cluster.bandwidth
        self._latency = cluster.latency.astype(np.float64)

        self._param_bytes = np.array([op.param_bytes for op in graph.ops], dtype=np.float64)
        self._output_bytes = np.array([op.output_bytes for op in graph.ops], dtype=np.float64)
        self._capacity = np.array([d.memory_bytes for d in cluster.devices], dtype=np.float64)
        inputs_ptr = np.zeros(n + 1, dtype=np.int64)
        inputs_ptr[1:] = np.cumsum([len(op.inputs) for op in graph.ops])
        self._inputs_ptr = inputs_ptr
        self._inputs = np.array([j for op in graph.ops for j in op.inputs], dtype=np.int64)
        self._devices = devices

    def check(self, placement: Sequence[int] | np.ndarray) -> np.ndarray:
        """``placement`` as an int64 array; raises :class:`PlacementError` if it is not one."""
        array = np.asarray(placement)
        if array.shape != (len(self.graph),):
            raise PlacementError(
                f"a placement has one device per op: {len(self.graph)} entries, got {array.shape}"
            )
        if array.size and (
            not np.issubdtype(array.dtype, np.integer) or array.min() < 0 or array.max() >= self._devices
        ):
            raise PlacementError(f"device indices must be integers in [0, {self._devices})")
        return array.astype(np.int64, copy=False)

    def memory(self, placement: Sequence[int] | np.ndarray) -> np.ndarray:
        return _memory(
            self.check(placement),
            self._param_bytes,
            self._output_bytes,
            self._inputs_ptr,
            self._inputs,
            self.param_copies,
            self._devices,
        )

    def step_time(self, placement: Sequence[int] | np.ndarray) -> float:
        """Seconds of one training step, or ``math.inf`` if the placement does not fit in memory."""
        return float(self.step_times(self.check(placement)[None, :])[0])

    def step_times(self, placements: np.ndarray) -> np.ndarray:
        """Step times of a batch of placements, shape (B, n_ops) -> (B,)."""
        placements = np.ascontiguousarray(placements, dtype=np.int64)
        if placements.ndim != 2 or placements.shape[1] != len(self.graph):
            raise PlacementError(f"placements must have shape (B, {len(self.graph)}), got {placements.shape}")
        if placements.size and (placements.min() < 0 or placements.max() >= self._devices):
            raise PlacementError(f"device indices must be in [0, {self._devices})")
        return _step_times(
            placements,
            self._node_op,
            self._node_seconds,
            self._pred_count,
            self._succ_ptr,
            self._succ_node,
            self._succ_bytes,
            self._shared_output,
            self._inverse_bandwidth,
            self._latency,
            self._param_bytes,
            self._output_bytes,
            self._inputs_ptr,
            self._inputs,
            self.param_copies,
            self._capacity,
        )

    def simulate(self, placement: Sequence[int] | np.ndarray) -> Simulation:
        """The step with its timeline: every op run and every transfer, for display."""
        placement = self.check(placement)
        memory = self.memory(placement)
        n_nodes = len(self._node_op)
        start, end = np.zeros(n_nodes), np.zeros(n_nodes)
        max_transfers = len(self._succ_node)
        x_node, x_dev = np.zeros(max_transfers, np.int64), np.zeros(max_transfers, np.int64)
        x_start, x_end = np.zeros(max_transfers), np.zeros(max_transfers)
        step, count = _run(
            placement,
            self._node_op,
            self._node_seconds,
            self._pred_count,
            self._succ_ptr,
            self._succ_node,
            self._succ_bytes,
            self._shared_output,
            self._inverse_bandwidth,
            self._latency,
            start,
            end,
            x_node,
            x_dev,
            x_start,
            x_end,
        )
        n = len(self.graph)
        runs = [
            Span(
                int(self._node_op[k]),
                k >= n,
                int(placement[self._node_op[k]]),
                float(start[k]),
                float(end[k]),
            )
            for k in range(n_nodes)
        ]
        transfers = [
            Span(
                int(self._node_op[x_node[x]]),
                bool(x_node[x] >= n),
                int(placement[self._node_op[x_node[x]]]),
                float(x_start[x]),
                float(x_end[x]),
                int(x_dev[x]),
            )
            for x in range(count)
        ]
        fits = bool(np.all(memory <= self._capacity))
        return Simulation(step if fits else math.inf, fits, memory, runs, transfers)


def _compute_seconds(graph: OpGraph, cluster: Cluster) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward seconds of each op on each device."""
    forward = np.zeros((len(graph), len(cluster)))
    backward = np.zeros_like(forward)
    for d, device in enumerate(cluster.devices):
        for i, op in enumerate(graph.ops):
            measured = op.seconds.get(device.kind)
            if measured is not None:
                forward[i, d] = measured
                backward[i, d] = graph.backward_factor * measured
            elif op.flops > 0:  # an op with no work (an input) launches nothing
                forward[i, d] = op.flops / device.flops + device.op_overhead
                backward[i, d] = graph.backward_factor * op.flops / device.flops + device.op_overhead
    return forward, backward


# ---------------------------------------------------------------- compiled core


@numba.njit(cache=True)
def _event_push(times, codes, size, t, code):
    # min-heap on (time, code): ties go to the lower code, so runs are deterministic
    pos = size
    while pos > 0:
        parent = (pos - 1) >> 1
        if times[parent] < t or (times[parent] == t and codes[parent] <= code):
            break
        times[pos] = times[parent]
        codes[pos] = codes[parent]
        pos = parent
    times[pos] = t
    codes[pos] = code
    return size + 1


@numba.njit(cache=True)
def _event_pop(times, codes, size):
    t, code = times[0], codes[0]
    size -= 1
    last_t, last_code = times[size], codes[size]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        right = child + 1
        if right < size and (
            times[right] < times[child] or (times[right] == times[child] and codes[right] < codes[child])
        ):
            child = right
        if last_t < times[child] or (last_t == times[child] and last_code <= codes[child]):
            break
        times[pos] = times[child]
        codes[pos] = codes[child]
        pos = child
    if size > 0:
        times[pos] = last_t
        codes[pos] = last_code
    return t, code, size


@numba.njit(cache=True)
def _ready_push(heap, sizes, d, node):
    pos = sizes[d]
    while pos > 0:
        parent = (pos - 1) >> 1
        if heap[d, parent] <= node:
            break
        heap[d, pos] = heap[d, parent]
        pos = parent
    heap[d, pos] = node
    sizes[d] += 1


@numba.njit(cache=True)
def _ready_pop(heap, sizes, d):
    top = heap[d, 0]
    sizes[d] -= 1
    size = sizes[d]
    last = heap[d, size]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        if child + 1 < size and heap[d, child + 1] < heap[d, child]:
            child += 1
        if last <= heap[d, child]:
            break
        heap[d, pos] = heap[d, child]
        pos = child
    if size > 0:
        heap[d, pos] = last
    return top


@numba.njit(cache=True)
def _run(
    placement,
    node_op,
    node_seconds,
    pred_count,
    succ_ptr,
    succ_node,
    succ_bytes,
    shared_output,
    inverse_bandwidth,
    latency,
    start,
    end,
    x_node,
    x_dev,
    x_start,
    x_end,
):
    """One simulated step; fills start/end per node and the transfers; returns (step time, transfers)."""
    n_nodes = node_op.shape[0]
    n_devices = latency.shape[0]
    device = np.empty(n_nodes, np.int64)
    for k in range(n_nodes):
        device[k] = placement[node_op[k]]
    remaining = pred_count.copy()
    ready = np.empty((n_devices, n_nodes), np.int64)
    ready_sizes = np.zeros(n_devices, np.int64)
    busy = np.zeros(n_devices, np.bool_)
    link_free = np.zeros((n_devices, n_devices))
    sent_to = np.full(n_devices, -1, np.int64)  # which node last sent to each device (dedupe)
    capacity = n_nodes + succ_node.shape[0] + 1
    event_times = np.empty(capacity)
    event_codes = np.empty(capacity, np.int64)
    events = 0
    transfers = 0

    for k in range(n_nodes):
        if remaining[k] == 0:
            _ready_push(ready, ready_sizes, device[k], k)
    for d in range(n_devices):
        if ready_sizes[d] > 0:
            k = _ready_pop(ready, ready_sizes, d)
            busy[d] = True
            start[k] = 0.0
            end[k] = node_seconds[k, d]
            events = _event_push(event_times, event_codes, events, end[k], k)

    step = 0.0
    while events > 0:
        t, code, events = _event_pop(event_times, event_codes, events)
        if t > step:
            step = t
        if code < n_nodes:
            k = code
            d = device[k]
            busy[d] = False
            for e in range(succ_ptr[k], succ_ptr[k + 1]):
                s = succ_node[e]
                b = device[s]
                if b == d:
                    remaining[s] -= 1
                    if remaining[s] == 0:
                        _ready_push(ready, ready_sizes, b, s)
                elif not shared_output[k] or sent_to[b] != k:
                    sent_to[b] = k
                    begin = max(t, link_free[d, b])
                    finish = begin + latency[d, b] + succ_bytes[e] * inverse_bandwidth[d, b]
                    link_free[d, b] = finish
                    x_node[transfers] = k
                    x_dev[transfers] = b if shared_output[k] else -1 - s  # -1 - s: for one consumer only
                    x_start[transfers] = begin
                    x_end[transfers] = finish
                    events = _event_push(event_times, event_codes, events, finish, n_nodes + transfers)
                    transfers += 1
        else:
            x = code - n_nodes
            k = x_node[x]
            if x_dev[x] < 0:
                s = -1 - x_dev[x]
                x_dev[x] = device[s]
                remaining[s] -= 1
                if remaining[s] == 0:
                    _ready_push(ready, ready_sizes, device[s], s)
            else:
                b = x_dev[x]
                for e in range(succ_ptr[k], succ_ptr[k + 1]):
                    s = succ_node[e]
                    if device[s] == b:
                        remaining[s] -= 1
                        if remaining[s] == 0:
                            _ready_push(ready, ready_sizes, b, s)
        # start work on every idle device that has a ready node
        for d in range(n_devices):
            if not busy[d] and ready_sizes[d] > 0:
                k = _ready_pop(ready, ready_sizes, d)
                busy[d] = True
                start[k] = t
                end[k] = t + node_seconds[k, d]
                events = _event_push(event_times, event_codes, events, end[k], k)
    return step, transfers


@numba.njit(cache=True)
def _memory(placement, param_bytes, output_bytes, inputs_ptr, inputs, param_copies, n_devices):
    memory = np.zeros(n_devices)
    n = placement.shape[0]
    for i in range(n):
        memory[placement[i]] += param_bytes[i] * param_copies + output_bytes[i]
    received = np.zeros((n, n_devices), np.bool_)  # a tensor is received (and kept) once per device
    for i in range(n):
        d = placement[i]
        for p in range(inputs_ptr[i], inputs_ptr[i + 1]):
            j = inputs[p]
            if placement[j] != d and not received[j, d]:
                received[j, d] = True
                memory[d] += output_bytes[j]
    return memory


@numba.njit(cache=True)
def _step_times(
    placements,
    node_op,
    node_seconds,
    pred_count,
    succ_ptr,
    succ_node,
    succ_bytes,
    shared_output,
    inverse_bandwidth,
    latency,
    param_bytes,
    output_bytes,
    inputs_ptr,
    inputs,
    param_copies,
    capacity,
):
    batch = placements.shape[0]
    out = np.empty(batch)
    n_nodes = node_op.shape[0]
    n_edges = succ_node.shape[0]
    start, end = np.empty(n_nodes), np.empty(n_nodes)
    x_node, x_dev = np.empty(n_edges, np.int64), np.empty(n_edges, np.int64)
    x_start, x_end = np.empty(n_edges), np.empty(n_edges)
    n_devices = latency.shape[0]
    for b in range(batch):
        memory = _memory(
            placements[b], param_bytes, output_bytes, inputs_ptr, inputs, param_copies, n_devices
        )
        fits = True
        for d in range(n_devices):
            if memory[d] > capacity[d]:
                fits = False
        if not fits:
            out[b] = np.inf
            continue
        step, _ = _run(
            placements[b],
            node_op,
            node_seconds,
            pred_count,
            succ_ptr,
            succ_node,
            succ_bytes,
            shared_output,
            inverse_bandwidth,
            latency,
            start,
            end,
            x_node,
            x_dev,
            x_start,
            x_end,
        )
        out[b] = step
    return out
