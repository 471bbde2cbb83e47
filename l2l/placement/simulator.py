"""Step-time simulator: how long one training step of a placed graph takes on a cluster.

What one step costs, and what a caller may rely on:

* **Compute.** The forward pass of every op, then its backward (``backward_factor`` times the
  forward, on the same device, after the gradients of its consumers). Each device runs one
  op at a time and, when free, starts the ready op that comes first in the step's order
  (forward in topological order, then backward in reverse, then optimizer updates).
* **Activations.** An op's output is copied once to every other device that consumes it; the
  gradient goes back once per consumer. Recurrent state that an op hands the next op of its
  own layer beyond its output (``Op.state_bytes``: an LSTM's cell state) is copied too when
  the two steps run on different devices, and so is its gradient.
* **Parameters belong to a layer**, not to an op. The device of a layer's first op owns the
  layer's weights, gradient and optimizer state; every other device that runs an op of the
  layer holds a copy of the weights and a gradient buffer, receives the weights at the start
  of the step (before its first op of the layer can run) and sends its summed gradient back
  after its last backward op of the layer. The owner then adds the gradients and runs the
  optimizer update (Adam: memory-bound, ``7 x`` the parameter bytes over the device's memory
  bandwidth, plus ``3 x`` per received gradient), which the step waits for. Ops that carry
  measured seconds for the device kind already include the update (calibration times it with
  the backward), so their layers' updates cost nothing extra.
* **Links.** Every copy follows its route through the cluster's one-way links and holds each
  link of the route from start to end (first come, first served), taking ``latency + bytes /
  narrowest bandwidth``: copies that share a port or an uplink queue behind each other.
* **Memory.** A device holds its ops' activations, the tensors it receives, the owned layers'
  parameters times ``param_copies`` (weights, gradients, two Adam moments) and two copies of
  every layer it only runs part of; a placement that does not fit has step time ``inf``.

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

#: Bytes an Adam update moves per parameter byte: reads weight, gradient, 2 moments; writes 3.
UPDATE_PASSES = 7.0
#: Bytes moved per parameter byte to add one received gradient into the owner's (read 2, write 1).
REDUCE_PASSES = 3.0
#: Copies of its parameters a device holds for a layer it runs only part of (weights, gradient).
REPLICA_COPIES = 2.0

# transfer kinds (also Span.kind for transfers)
_ACTIVATION, _GRADIENT, _WEIGHTS, _WEIGHT_GRADIENT = 0, 1, 2, 3
TRANSFER_KINDS = ("activation", "gradient", "weights", "weight_gradient")


class PlacementError(ValueError):
    """A placement that is not one device index per op; the message says what is wrong."""


@dataclass(frozen=True)
class Span:
    """One op run or one transfer on the simulated timeline (seconds from the step's start).

    ``kind``: for runs "forward", "backward" or "update" (the optimizer update of the layer
    of ``op``, its first op); for transfers one of :data:`TRANSFER_KINDS`.
    """

    op: int
    backward: bool
    device: int
    start: float
    end: float
    #: For transfers: the receiving device (``device`` is the sender); -1 for op runs.
    to_device: int = -1
    kind: str = ""


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

        # Layers that own parameters, in order of their first op; op -> its index or -1.
        layer_names = graph.layers
        layer_of_op = np.array(graph.layer_of_ops(), dtype=np.int64)
        layer_bytes = np.zeros(len(layer_names))
        np.add.at(layer_bytes, layer_of_op, [op.param_bytes for op in graph.ops])
        param_layers = [k for k in range(len(layer_names)) if layer_bytes[k] > 0]
        param_index = np.full(len(layer_names), -1, dtype=np.int64)
        param_index[param_layers] = np.arange(len(param_layers))
        self._op_layer = param_index[layer_of_op]
        self._layer_bytes = layer_bytes[param_layers].astype(np.float64)
        n_layers = len(param_layers)
        first = np.full(n_layers, -1, dtype=np.int64)
        for i in range(n - 1, -1, -1):
            if self._op_layer[i] >= 0:
                first[self._op_layer[i]] = i
        self._layer_first = first
        ops_of_layer: list[list[int]] = [[] for _ in range(n_layers)]
        for i in range(n):
            if self._op_layer[i] >= 0:
                ops_of_layer[self._op_layer[i]].append(i)
        self._layer_ops_ptr = np.zeros(n_layers + 1, dtype=np.int64)
        self._layer_ops_ptr[1:] = np.cumsum([len(o) for o in ops_of_layer])
        self._layer_ops = np.array([i for o in ops_of_layer for i in o], dtype=np.int64)
        self.update_seconds = _update_seconds(graph, cluster, ops_of_layer, self._layer_bytes)
        self._memory_bandwidth = np.array([d.memory_bandwidth for d in cluster.devices], dtype=np.float64)

        # Nodes 0..n-1 are the forward ops in topological order; node 2n-1-i is op i's backward;
        # node 2n+l is parameter layer l's update: the node index is also a free device's preference.
        self._node_op = np.concatenate([np.arange(n), np.arange(n)[::-1], first]).astype(np.int64)
        self._node_seconds = np.concatenate(
            [self.op_seconds, self.backward_seconds[::-1], self.update_seconds]
        )
        succ: list[list[tuple[int, float, bool]]] = [[] for _ in range(2 * n + n_layers)]
        for i, op in enumerate(graph.ops):
            backward = 2 * n - 1 - i
            succ[i].append((backward, 0.0, False))  # the backward reads the op's own activations
            for j in op.inputs:
                source = graph.ops[j]
                succ[j].append((i, float(source.output_bytes), True))
                if source.state_bytes and source.layer == op.layer:
                    succ[j].append((i, float(source.state_bytes), False))
            for c in consumers[i]:
                # the gradient of op i's output flows from each consumer's backward to op i's backward
                succ[2 * n - 1 - c].append((backward, float(op.output_bytes), False))
                if op.state_bytes and graph.ops[c].layer == op.layer:
                    succ[2 * n - 1 - c].append((backward, float(op.state_bytes), False))
        counts = np.zeros(2 * n + n_layers, dtype=np.int64)
        self._succ_ptr = np.zeros(2 * n + n_layers + 1, dtype=np.int64)
        n_edges = sum(len(s) for s in succ)
        self._succ_node = np.zeros(n_edges, dtype=np.int64)
        self._succ_bytes = np.zeros(n_edges, dtype=np.float64)
        self._succ_shared = np.zeros(n_edges, dtype=np.bool_)
        edge = 0
        for k, targets in enumerate(succ):
            for target, nbytes, shared in targets:
                self._succ_node[edge] = target
                self._succ_bytes[edge] = nbytes
                self._succ_shared[edge] = shared
                counts[target] += 1
                edge += 1
            self._succ_ptr[k + 1] = edge
        self._pred_count = counts
        self._route_ptr, self._route_links = cluster.route_arrays()
        self._route_inverse_bandwidth = 1.0 / cluster.bandwidth
        np.fill_diagonal(self._route_inverse_bandwidth, 0.0)
        self._route_latency = cluster.latency.astype(np.float64)
        self._n_links = len(cluster.links)

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

    def _memory_args(self) -> tuple:
        return (
            self._output_bytes,
            self._inputs_ptr,
            self._inputs,
            self._op_layer,
            self._layer_bytes,
            self._layer_first,
            self.param_copies,
            self._devices,
        )

    def _run_args(self) -> tuple:
        return (
            self._node_op,
            self._node_seconds,
            self._pred_count,
            self._succ_ptr,
            self._succ_node,
            self._succ_bytes,
            self._succ_shared,
            self._route_ptr,
            self._route_links,
            self._route_inverse_bandwidth,
            self._route_latency,
            self._n_links,
            self._op_layer,
            self._layer_bytes,
            self._layer_first,
            self._layer_ops_ptr,
            self._layer_ops,
            self._memory_bandwidth,
        )

    def memory(self, placement: Sequence[int] | np.ndarray) -> np.ndarray:
        return _memory(self.check(placement), *self._memory_args())

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
        return _step_times(placements, self._capacity, self._memory_args(), self._run_args())

    def serial_seconds(self, device: int) -> float:
        """Seconds of the whole step on ``device`` alone: every forward, backward and update."""
        return float(
            self.op_seconds[:, device].sum()
            + self.backward_seconds[:, device].sum()
            + self.update_seconds[:, device].sum()
        )

    def simulate(self, placement: Sequence[int] | np.ndarray) -> Simulation:
        """The step with its timeline: every op run and every transfer, for display."""
        placement = self.check(placement)
        memory = self.memory(placement)
        n_nodes = len(self._node_op)
        start, end = np.zeros(n_nodes), np.zeros(n_nodes)
        device = np.zeros(n_nodes, np.int64)
        max_transfers = len(self._succ_node) + 2 * len(self._layer_bytes) * self._devices + 1
        x_node, x_dev = np.zeros(max_transfers, np.int64), np.zeros(max_transfers, np.int64)
        x_from, x_kind = np.zeros(max_transfers, np.int64), np.zeros(max_transfers, np.int64)
        x_start, x_end = np.zeros(max_transfers), np.zeros(max_transfers)
        step, count = _run(
            placement, *self._run_args(), start, end, device, x_node, x_from, x_dev, x_kind, x_start, x_end
        )
        n = len(self.graph)
        runs = [
            Span(
                int(self._node_op[k]),
                k >= n,
                int(device[k]),
                float(start[k]),
                float(end[k]),
                kind="forward" if k < n else "backward" if k < 2 * n else "update",
            )
            for k in range(n_nodes)
        ]
        transfers = [
            Span(
                int(self._node_op[x_node[x]]),
                bool(x_kind[x] in (_GRADIENT, _WEIGHT_GRADIENT)),
                int(x_from[x]),
                float(x_start[x]),
                float(x_end[x]),
                int(x_dev[x]),
                TRANSFER_KINDS[int(x_kind[x])],
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
                backward[i, d] = op.backward_seconds.get(device.kind, graph.backward_factor * measured)
            elif op.flops > 0:  # an op with no work (an input) launches nothing
                forward[i, d] = op.flops / device.flops + device.op_overhead
                backward[i, d] = graph.backward_factor * op.flops / device.flops + device.op_overhead
    return forward, backward


def _update_seconds(
    graph: OpGraph, cluster: Cluster, ops_of_layer: list[list[int]], layer_bytes: np.ndarray
) -> np.ndarray:
    """Seconds of each parameter layer's optimizer update on each device, (n_layers, n_devices)."""
    seconds = np.zeros((len(ops_of_layer), len(cluster)))
    for d, device in enumerate(cluster.devices):
        for layer, ops in enumerate(ops_of_layer):
            if any(device.kind in graph.ops[i].seconds for i in ops):
                continue  # measured backward seconds include the update
            seconds[layer, d] = (
                UPDATE_PASSES * layer_bytes[layer] / device.memory_bandwidth + device.op_overhead
            )
    return seconds


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
def _send(t, a, b, nbytes, link_free, route_ptr, route_links, route_inverse_bandwidth, route_latency):
    """Reserve the route a -> b for one copy issued at ``t``; returns (start, finish)."""
    n_devices = route_latency.shape[0]
    pair = a * n_devices + b
    begin = t
    for p in range(route_ptr[pair], route_ptr[pair + 1]):
        if link_free[route_links[p]] > begin:
            begin = link_free[route_links[p]]
    finish = begin + route_latency[a, b] + nbytes * route_inverse_bandwidth[a, b]
    for p in range(route_ptr[pair], route_ptr[pair + 1]):
        link_free[route_links[p]] = finish
    return begin, finish


@numba.njit(cache=True)
def _run(
    placement,
    node_op,
    node_seconds,
    pred_count,
    succ_ptr,
    succ_node,
    succ_bytes,
    succ_shared,
    route_ptr,
    route_links,
    route_inverse_bandwidth,
    route_latency,
    n_links,
    op_layer,
    layer_bytes,
    layer_first,
    layer_ops_ptr,
    layer_ops,
    memory_bandwidth,
    start,
    end,
    device,
    x_node,
    x_from,
    x_dev,
    x_kind,
    x_start,
    x_end,
):
    """One simulated step; fills start/end/device per node and the transfers; returns (step time, transfers).

    ``x_dev`` of a transfer is its receiving device; while in flight, a copy for one consumer
    only (a gradient, recurrent state) keeps ``-1 - node`` in ``x_from``'s place until it lands.
    """
    n_nodes = node_op.shape[0]
    n_layers = layer_bytes.shape[0]
    n_ops = (n_nodes - n_layers) // 2
    n_devices = route_latency.shape[0]
    owner = np.empty(n_layers, np.int64)
    for q in range(n_layers):
        owner[q] = placement[layer_first[q]]
    for k in range(n_nodes):
        device[k] = placement[node_op[k]] if k < 2 * n_ops else owner[k - 2 * n_ops]
    remaining = pred_count.copy()
    pieces = np.zeros((n_layers, n_devices), np.int64)  # ops of each layer on each device
    for i in range(n_ops):
        if op_layer[i] >= 0:
            pieces[op_layer[i], placement[i]] += 1
    holders = np.zeros(n_layers, np.int64)
    for q in range(n_layers):
        for d in range(n_devices):
            if pieces[q, d] > 0:
                holders[q] += 1
        remaining[2 * n_ops + q] = holders[q]  # the owner's own backward and each copy's gradient
    for i in range(n_ops):
        if op_layer[i] >= 0 and placement[i] != owner[op_layer[i]]:
            remaining[i] += 1  # waits for the layer's weights
    backward_left = pieces.copy()
    target = np.full(x_node.shape[0], -1, np.int64)

    ready = np.empty((n_devices, n_nodes), np.int64)
    ready_sizes = np.zeros(n_devices, np.int64)
    busy = np.zeros(n_devices, np.bool_)
    link_free = np.zeros(max(n_links, 1))
    sent_to = np.full(n_devices, -1, np.int64)  # which node last sent its output to each device
    capacity = n_nodes + x_node.shape[0] + 1
    event_times = np.empty(capacity)
    event_codes = np.empty(capacity, np.int64)
    events = 0
    transfers = 0

    # weights go from each layer's owner to every other device that runs part of it, at once
    for q in range(n_layers):
        for b in range(n_devices):
            if pieces[q, b] > 0 and b != owner[q]:
                begin, finish = _send(
                    0.0,
                    owner[q],
                    b,
                    layer_bytes[q],
                    link_free,
                    route_ptr,
                    route_links,
                    route_inverse_bandwidth,
                    route_latency,
                )
                x_node[transfers], x_from[transfers], x_dev[transfers] = 2 * n_ops + q, owner[q], b
                x_kind[transfers], x_start[transfers], x_end[transfers] = 2, begin, finish
                events = _event_push(event_times, event_codes, events, finish, n_nodes + transfers)
                transfers += 1

    for k in range(n_nodes):
        if remaining[k] == 0:
            _ready_push(ready, ready_sizes, device[k], k)

    step = 0.0
    t = 0.0
    while True:
        # start work on every idle device that has a ready node
        for d in range(n_devices):
            if not busy[d] and ready_sizes[d] > 0:
                k = _ready_pop(ready, ready_sizes, d)
                busy[d] = True
                start[k] = t
                seconds = node_seconds[k, d]
                if k >= 2 * n_ops and seconds > 0:
                    seconds += (
                        REDUCE_PASSES
                        * (holders[k - 2 * n_ops] - 1)
                        * layer_bytes[k - 2 * n_ops]
                        / memory_bandwidth[d]
                    )
                end[k] = t + seconds
                events = _event_push(event_times, event_codes, events, end[k], k)
        if events == 0:
            break
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
                elif not succ_shared[e] or sent_to[b] != k:
                    begin, finish = _send(
                        t,
                        d,
                        b,
                        succ_bytes[e],
                        link_free,
                        route_ptr,
                        route_links,
                        route_inverse_bandwidth,
                        route_latency,
                    )
                    if succ_shared[e]:
                        sent_to[b] = k
                    else:
                        target[transfers] = s
                    x_node[transfers], x_from[transfers], x_dev[transfers] = k, d, b
                    x_kind[transfers] = 1 if k >= n_ops else 0
                    x_start[transfers], x_end[transfers] = begin, finish
                    events = _event_push(event_times, event_codes, events, finish, n_nodes + transfers)
                    transfers += 1
            if n_ops <= k < 2 * n_ops and op_layer[node_op[k]] >= 0:
                q = op_layer[node_op[k]]
                backward_left[q, d] -= 1
                if backward_left[q, d] == 0:
                    if d == owner[q]:
                        remaining[2 * n_ops + q] -= 1
                        if remaining[2 * n_ops + q] == 0:
                            _ready_push(ready, ready_sizes, d, 2 * n_ops + q)
                    else:
                        begin, finish = _send(
                            t,
                            d,
                            owner[q],
                            layer_bytes[q],
                            link_free,
                            route_ptr,
                            route_links,
                            route_inverse_bandwidth,
                            route_latency,
                        )
                        x_node[transfers], x_from[transfers], x_dev[transfers] = 2 * n_ops + q, d, owner[q]
                        x_kind[transfers], x_start[transfers], x_end[transfers] = 3, begin, finish
                        events = _event_push(event_times, event_codes, events, finish, n_nodes + transfers)
                        transfers += 1
        else:
            x = code - n_nodes
            k, b, kind = x_node[x], x_dev[x], x_kind[x]
            if kind == 2:  # weights landed: the layer's ops on b may run
                q = k - 2 * n_ops
                for p in range(layer_ops_ptr[q], layer_ops_ptr[q + 1]):
                    i = layer_ops[p]
                    if placement[i] == b:
                        remaining[i] -= 1
                        if remaining[i] == 0:
                            _ready_push(ready, ready_sizes, b, i)
            elif kind == 3:  # a gradient reached the owner
                remaining[k] -= 1
                if remaining[k] == 0:
                    _ready_push(ready, ready_sizes, b, k)
            elif target[x] >= 0:
                s = target[x]
                remaining[s] -= 1
                if remaining[s] == 0:
                    _ready_push(ready, ready_sizes, b, s)
            else:
                for e in range(succ_ptr[k], succ_ptr[k + 1]):
                    s = succ_node[e]
                    if succ_shared[e] and device[s] == b:
                        remaining[s] -= 1
                        if remaining[s] == 0:
                            _ready_push(ready, ready_sizes, b, s)
    return step, transfers


@numba.njit(cache=True)
def _memory(
    placement, output_bytes, inputs_ptr, inputs, op_layer, layer_bytes, layer_first, param_copies, n_devices
):
    memory = np.zeros(n_devices)
    n = placement.shape[0]
    n_layers = layer_bytes.shape[0]
    holds = np.zeros((n_layers, n_devices), np.bool_)
    for i in range(n):
        memory[placement[i]] += output_bytes[i]
        if op_layer[i] >= 0:
            holds[op_layer[i], placement[i]] = True
    for q in range(n_layers):
        owner = placement[layer_first[q]]
        for d in range(n_devices):
            if holds[q, d]:
                memory[d] += layer_bytes[q] * (param_copies if d == owner else REPLICA_COPIES)
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
def _step_times(placements, capacity, memory_args, run_args):
    batch = placements.shape[0]
    out = np.empty(batch)
    node_op = run_args[0]
    n_nodes = node_op.shape[0]
    n_layers = run_args[13].shape[0]
    n_devices = capacity.shape[0]
    max_transfers = run_args[4].shape[0] + 2 * n_layers * n_devices + 1
    start, end = np.empty(n_nodes), np.empty(n_nodes)
    device = np.empty(n_nodes, np.int64)
    x_node, x_from = np.empty(max_transfers, np.int64), np.empty(max_transfers, np.int64)
    x_dev, x_kind = np.empty(max_transfers, np.int64), np.empty(max_transfers, np.int64)
    x_start, x_end = np.empty(max_transfers), np.empty(max_transfers)
    for b in range(batch):
        memory = _memory(placements[b], *memory_args)
        fits = True
        for d in range(n_devices):
            if memory[d] > capacity[d]:
                fits = False
        if not fits:
            out[b] = np.inf
            continue
        step, _ = _run(
            placements[b], *run_args, start, end, device, x_node, x_from, x_dev, x_kind, x_start, x_end
        )
        out[b] = step
    return out
