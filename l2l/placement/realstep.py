"""The real check: time training steps of a placed Keras model and compare with the simulator.

A placement search is worth what the simulator's step times are worth. This module runs real
forward + backward + SGD steps of a small Keras model with every layer on the virtual CPU
device a per-layer placement names (JAX, ``--xla_force_host_platform_device_count=N``), and
compares the median step with :class:`~l2l.placement.simulator.Simulator`'s prediction from a
graph (``graph_from_keras(unroll=False)``) and a cluster calibrated in the same process: layer
times measured alone on device 0, the link fitted to hops timed the way a step makes them.

The two environment variables must be set before JAX and Keras are imported, so the check runs
in a subprocess: :func:`check_placements` (parent side, imports neither) launches
``python -m l2l.placement.realstep --model NAME --devices N --json`` and parses its report.

How a placed step runs (:class:`PlacedModel`, :class:`DataflowRunner`): the task graph the
simulator simulates, with one thread per device and one per link. A device runs one task at a
time, the ready one earliest in step order; a link copies one tensor at a time. One thread per
device matters: dispatched from a single thread, this JAX build ran the computations of
different virtual CPU devices one after another (measured: no speed-up from 4 devices), and
in-order queues would add waits that the simulator's ready-first scheduling does not have.

What the simulator does not model: virtual devices share the host's cores (and, on a shared
machine, other people's jobs). :func:`measure_parallelism` measures how many devices' worth of
work the host does at once; each result carries ``contended_s``, the prediction capped by it,
so a report shows how much of an error is host contention. On a shared host the load of other
jobs comes and goes: the steps of all placements are taken in turns, and :data:`ROUNDS`
calibrations alternate with them (the median is used), so that a busy spell slows the
calibration and every placement alike rather than one of them.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

#: Placement strategies over a model's layers (topological order), resolved in the subprocess.
STRATEGIES = ("single", "round_robin", "contiguous")
#: What the devices are: ``cpu`` is N virtual CPU devices of the host; ``gpu+cpu`` is the first
#: GPU (device 0) and the host CPU (device 1), a real heterogeneous pair.
HARDWARE = ("cpu", "gpu+cpu")
_REPORT_PREFIX = "REALSTEP_REPORT "
#: Calibrations taken in the real check, alternating with its steps (see run_in_this_process).
ROUNDS = 4


@dataclass(frozen=True)
class CheckResult:
    """One placement: the simulator's step time, the measured median and ``|pred - meas| / meas``."""

    name: str
    predicted_s: float
    measured_s: float
    error: float
    #: The simulated step with nothing overlapping (every op run and transfer back to back):
    #: ``serial_s / measured_s`` is the overlap the host delivered, ``serial_s / predicted_s``
    #: the overlap the simulator assumed.
    serial_s: float = math.nan
    #: ``max(predicted_s, serial_s / parallelism)``: the prediction capped by what the host's
    #: cores deliver at once (see ``CheckReport.parallelism``); a diagnosis, not what a placer sees.
    contended_s: float = math.nan
    #: Interquartile range of the measured steps over their median: the host's noise.
    spread: float = math.nan
    #: Device of each layer (the placement that ran).
    placement: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckReport:
    model: str
    devices: int
    batch_size: int
    #: Fitted link from device 0 to device 1 (both directions alike on virtual CPU devices).
    latency_s: float
    bandwidth_bytes_per_s: float
    #: Measured backward / forward seconds over the whole model.
    backward_factor: float
    #: Devices' worth of work the host did at once (:func:`~l2l.placement.calibration.measure_parallelism`).
    parallelism: float
    #: Layer name -> (forward, backward) seconds measured alone on one device, in the graph's
    #: topological order (the order of a placement given as a list).
    layer_seconds: dict[str, tuple[float, float]]
    results: list[CheckResult]
    #: One of :data:`HARDWARE`.
    hardware: str = "cpu"
    #: Per device kind, layer -> (forward, backward) seconds (``gpu+cpu`` measures both kinds).
    layer_seconds_by_kind: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    #: Fitted link from device 1 back to device 0.
    reverse_latency_s: float = 0.0
    reverse_bandwidth_bytes_per_s: float = float("inf")


# ---------------------------------------------------------------- parent side


def check_placements(
    model_name: str,
    placements_by_name: Mapping[str, str | Sequence[int] | Mapping[str, int]] | None = None,
    devices: int = 4,
    batch_size: int | None = None,
    *,
    steps: int = 20,
    timeout: float = 900.0,
    hardware: str = "cpu",
) -> list[CheckResult]:
    """Predicted and measured step times of each placement of a check model (see :func:`run_check`)."""
    return run_check(
        model_name, placements_by_name, devices, batch_size, steps=steps, timeout=timeout, hardware=hardware
    ).results


def run_check(
    model_name: str,
    placements_by_name: Mapping[str, str | Sequence[int] | Mapping[str, int]] | None = None,
    devices: int = 4,
    batch_size: int | None = None,
    *,
    steps: int = 20,
    timeout: float = 900.0,
    hardware: str = "cpu",
) -> CheckReport:
    """Run the check in a fresh Python (``sys.executable``) with ``devices`` virtual CPU devices
    (``hardware="gpu+cpu"``: the first GPU and the host CPU; ``devices`` is then 2).

    A placement is a strategy name (one of :data:`STRATEGIES`), a device per layer in the
    order of the report's ``layer_seconds`` (the graph's topological order, input layers
    excluded), or ``{layer name: device}``. The default checks every strategy. Steps are timed
    ``steps`` times per placement, in turns. Raises ``RuntimeError`` with the subprocess's
    output if it fails.
    """
    if model_name not in CHECK_MODELS:
        raise ValueError(f"unknown check model {model_name!r}; known: {', '.join(CHECK_MODELS)}")
    placements = dict(placements_by_name) if placements_by_name is not None else {s: s for s in STRATEGIES}
    devices = len(hardware_kinds(hardware, devices))  # also refuses an unknown hardware
    flags = f"--model {model_name} --devices {devices} --steps {steps} --hardware {hardware} --json".split()
    command = [sys.executable, "-m", "l2l.placement.realstep", *flags, "--placements", json.dumps(placements)]
    if batch_size is not None:
        command += ["--batch-size", str(batch_size)]
    completed = subprocess.run(
        command,
        env=subprocess_environment(devices, hardware),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith(_REPORT_PREFIX)]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"the placement check exited with {completed.returncode}:\n"
            f"{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
        )
    return report_from_dict(json.loads(lines[-1][len(_REPORT_PREFIX) :]))


def subprocess_environment(devices: int, hardware: str = "cpu") -> dict[str, str]:
    """This process's environment with JAX on ``devices`` virtual CPU devices (or, for
    ``gpu+cpu``, the GPU and one host CPU device) and Keras on JAX."""
    env = dict(os.environ)
    flags = [
        f
        for f in env.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    cpu_devices = 1 if hardware == "gpu+cpu" else devices
    env["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={cpu_devices}"])
    env["KERAS_BACKEND"] = "jax"
    env["JAX_PLATFORMS"] = "cuda,cpu" if hardware == "gpu+cpu" else "cpu"
    if hardware == "gpu+cpu":  # the GPU's memory on demand: the step's arrays are small
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    env["TF_CPP_MIN_LOG_LEVEL"] = env.get("TF_CPP_MIN_LOG_LEVEL", "2")
    root = str(Path(__file__).resolve().parents[2])  # the checkout, in case l2l is not installed
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def report_from_dict(data: Mapping[str, Any]) -> CheckReport:
    def pairs(seconds: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
        return {k: (float(v[0]), float(v[1])) for k, v in seconds.items()}

    results = [CheckResult(**r) for r in data["results"]]
    by_kind = {kind: pairs(seconds) for kind, seconds in data.get("layer_seconds_by_kind", {}).items()}
    return CheckReport(
        **{
            **data,
            "results": results,
            "layer_seconds": pairs(data["layer_seconds"]),
            "layer_seconds_by_kind": by_kind,
        }
    )


# ---------------------------------------------------------------- check models


@dataclass(frozen=True)
class CheckModel:
    build: Callable[[], Any]
    batch_size: int
    description: str


def _dense_stack(name: str, features: int, width: int, depth: int, classes: int) -> Any:
    import keras

    x = inputs = keras.Input((features,), name="features")
    for i in range(depth):
        x = keras.layers.Dense(width, activation="relu", name=f"dense{i}")(x)
    return keras.Model(inputs, keras.layers.Dense(classes, name="logits")(x), name=name)


def _cnn() -> Any:
    import keras

    L = keras.layers
    x = inputs = keras.Input((32, 32, 3), name="image")
    for i, filters in enumerate((32, 64)):
        x = L.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}a")(x)
        x = L.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}b")(x)
        x = L.MaxPooling2D(name=f"pool{i}")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(256, activation="relu", name="fc")(x)
    return keras.Model(inputs, L.Dense(10, name="logits")(x), name="cnn")


# The LSTMs do not use cuDNN: under JAX with a GPU present Keras would pick the cuDNN kernel,
# which has no CPU implementation, so a layer placed on the host CPU could not run.
def _lstm() -> Any:
    import keras

    L = keras.layers
    inputs = keras.Input((20,), dtype="int32", name="tokens")
    x = L.Embedding(1000, 128, name="embedding")(inputs)
    x = L.LSTM(256, return_sequences=True, use_cudnn=False, name="lstm0")(x)
    x = L.LSTM(256, return_sequences=True, use_cudnn=False, name="lstm1")(x)
    return keras.Model(inputs, L.Dense(1000, name="softmax")(x), name="lstm")


def _nmt() -> Any:
    """A small attention translator: an encoder and a decoder LSTM, dot attention, a softmax."""
    import keras

    L = keras.layers
    source = keras.Input((20,), dtype="int32", name="source")
    target = keras.Input((20,), dtype="int32", name="target")
    encoded = L.Embedding(1000, 128, name="source_embedding")(source)
    encoded = L.LSTM(256, return_sequences=True, use_cudnn=False, name="encoder0")(encoded)
    encoded = L.LSTM(256, return_sequences=True, use_cudnn=False, name="encoder1")(encoded)
    decoded = L.Embedding(1000, 128, name="target_embedding")(target)
    decoded = L.LSTM(256, return_sequences=True, use_cudnn=False, name="decoder0")(decoded)
    decoded = L.LSTM(256, return_sequences=True, use_cudnn=False, name="decoder1")(decoded)
    context = L.Attention(name="attention")([decoded, encoded])
    x = L.Concatenate(name="attended")([decoded, context])
    return keras.Model([source, target], L.Dense(1000, name="softmax")(x), name="nmt")


def _towers() -> Any:
    """Four independent towers between a shared stem and head: room for devices to overlap."""
    import keras

    L = keras.layers
    inputs = keras.Input((512,), name="features")
    stem = L.Dense(512, activation="relu", name="stem")(inputs)
    outputs = []
    for t in range(4):
        x = stem
        for j in range(3):
            x = L.Dense(768, activation="relu", name=f"tower{t}_dense{j}")(x)
        outputs.append(x)
    x = L.Concatenate(name="concat")(outputs)
    return keras.Model(inputs, L.Dense(10, name="logits")(x), name="towers")


CHECK_MODELS: dict[str, CheckModel] = {
    "mlp": CheckModel(
        partial(_dense_stack, "mlp", 512, 1024, 6, 10), 128, "7 dense layers, 512 -> 6 x 1024 -> 10"
    ),
    "cnn": CheckModel(_cnn, 32, "4 conv layers on 32x32x3 images, 2 pools, 2 dense"),
    "lstm": CheckModel(_lstm, 32, "language model: embedding, 2 LSTM(256) over 20 steps, softmax over 1000"),
    "nmt": CheckModel(
        _nmt, 32, "translator: 2+2 LSTM(256) layers over 20 steps, attention, softmax over 1000"
    ),
    "towers": CheckModel(_towers, 128, "a dense stem, 4 parallel towers of 3 dense layers, a head"),
    "tiny": CheckModel(partial(_dense_stack, "tiny", 64, 128, 3, 8), 16, "4 small dense layers (tests)"),
}


# ---------------------------------------------------------------- layer placements


def layer_placement(
    spec: str | Sequence[int] | Mapping[str, int],
    layers: Sequence[str],
    n_devices: int,
    layer_seconds: Mapping[str, tuple[float, float]],
) -> dict[str, int]:
    """A device per layer from a strategy name (or ``all:K``, every layer on device K), a list
    (in ``layers`` order) or a mapping."""
    if isinstance(spec, str):
        if spec == "single":
            devices = [0] * len(layers)
        elif spec.startswith("all:") and spec[4:].isdigit():  # every layer on one named device
            devices = [int(spec[4:])] * len(layers)
        elif spec == "round_robin":
            devices = [i % n_devices for i in range(len(layers))]
        elif spec == "contiguous":
            devices = _contiguous(layers, n_devices, layer_seconds)
        else:
            raise ValueError(f"unknown placement strategy {spec!r}; known: {', '.join(STRATEGIES)}")
        placement = dict(zip(layers, devices, strict=True))
    elif isinstance(spec, Mapping):
        missing = [layer for layer in layers if layer not in spec]
        if missing:
            raise ValueError(f"the placement names no device for layers {missing}")
        placement = {layer: int(spec[layer]) for layer in layers}
    else:
        if len(spec) != len(layers):
            raise ValueError(f"a placement list needs one device per layer ({len(layers)}), got {len(spec)}")
        placement = {layer: int(d) for layer, d in zip(layers, spec, strict=True)}
    bad = {layer: d for layer, d in placement.items() if not 0 <= d < n_devices}
    if bad:
        raise ValueError(f"devices must be in [0, {n_devices}): {bad}")
    return placement


def _contiguous(
    layers: Sequence[str], n_devices: int, layer_seconds: Mapping[str, tuple[float, float]]
) -> list[int]:
    """Consecutive layers in ``n_devices`` groups of about equal measured time (a pipeline split)."""
    cost = np.array([sum(layer_seconds.get(layer, (0.0, 0.0))) for layer in layers], dtype=float)
    total = cost.sum()
    if total <= 0:
        return [min(i * n_devices // len(layers), n_devices - 1) for i in range(len(layers))]
    # the device of a layer is the share of the total time done before its midpoint
    midpoints = np.cumsum(cost) - cost / 2
    return [min(int(m / total * n_devices), n_devices - 1) for m in midpoints]


def op_placement(graph: Any, placement: Mapping[str, int]) -> np.ndarray:
    """The per-op placement for the simulator: an op runs on its layer's device; an op of an
    unplaced layer (a model input) on the device of its first placed consumer, where the real
    step puts the input batch."""
    devices = np.full(len(graph), -1, dtype=np.int64)
    for i, op in enumerate(graph.ops):
        if op.layer in placement:
            devices[i] = placement[op.layer]
    consumers = graph.consumers()
    for i in reversed(range(len(graph))):
        if devices[i] < 0:
            placed = [devices[c] for c in consumers[i] if devices[c] >= 0]
            devices[i] = placed[0] if placed else 0
    return devices


# ---------------------------------------------------------------- the placed step (JAX)


@dataclass
class Task:
    """One unit of a step: a layer's forward or backward on a device, or a copy on a link."""

    #: ``("device", d)`` or ``("link", a, b)``: the thread that runs it.
    resource: tuple[int | str, ...]
    #: Lower runs first among a device's ready tasks (the simulator's step order); links are FIFO.
    priority: int
    run: Callable[[], None]
    successors: list[int] = field(default_factory=list)
    dependencies: int = 0


class DataflowRunner:
    """Runs a fixed graph of :class:`Task` once per :meth:`run`, the way the simulator schedules.

    Each resource (device or ordered pair of devices) has one thread. A task becomes ready when
    the tasks it depends on are done; a free device thread takes its ready task of lowest
    priority, a link thread its oldest, one at a time. A task waits for its own results before
    it counts as done, so a device runs one layer at a time and devices overlap.
    """

    def __init__(self, tasks: Sequence[Task]) -> None:
        self.tasks = list(tasks)
        self._lock = threading.Lock()
        resources = list(dict.fromkeys(task.resource for task in self.tasks))
        self._ready: dict[tuple[int | str, ...], list[tuple[int, int, int]]] = {r: [] for r in resources}
        self._wakeup = {r: threading.Condition(self._lock) for r in resources}
        self._finished = threading.Event()
        self._closed = False
        self._sequence = 0
        self._remaining: list[int] = []
        self._left = 0
        self._error: BaseException | None = None
        self._threads = [threading.Thread(target=self._work, args=(r,), daemon=True) for r in resources]
        for thread in self._threads:
            thread.start()

    def run(self) -> None:
        """One pass over every task; re-raises the first task's exception (then close the runner:
        other tasks of the failed pass may still be running)."""
        with self._lock:
            self._remaining = [task.dependencies for task in self.tasks]
            self._left, self._error = len(self.tasks), None
            self._finished.clear()
            for index, task in enumerate(self.tasks):
                if task.dependencies == 0:
                    self._push(index)
        self._finished.wait()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for condition in self._wakeup.values():
                condition.notify()
        for thread in self._threads:
            thread.join()

    def _push(self, index: int) -> None:  # with the lock held
        task = self.tasks[index]
        self._sequence += 1
        key = task.priority if task.resource[0] == "device" else self._sequence
        heapq.heappush(self._ready[task.resource], (key, self._sequence, index))
        self._wakeup[task.resource].notify()

    def _work(self, resource: tuple[int | str, ...]) -> None:
        ready, wakeup = self._ready[resource], self._wakeup[resource]
        while True:
            with self._lock:
                while not ready and not self._closed:
                    wakeup.wait()
                if self._closed:
                    return
                _, _, index = heapq.heappop(ready)
            try:
                self.tasks[index].run()
            except BaseException as exc:  # handed to run(): a failed step must not hang
                with self._lock:
                    self._error = self._error or exc
                    self._finished.set()
                continue
            with self._lock:
                for successor in self.tasks[index].successors:
                    self._remaining[successor] -= 1
                    if self._remaining[successor] == 0:
                        self._push(successor)
                self._left -= 1
                if self._left == 0:
                    self._finished.set()


def _copy(array: Any, device: Any) -> Any:
    import jax

    return jax.block_until_ready(jax.device_put(array, device))


@dataclass
class _PlacedLayer:
    layer: Any
    #: Where each input comes from: a layer name or a model input name.
    sources: list[str]
    device: int
    step: Any  # JaxLayerStep
    params: list[Any]
    frozen: list[Any]


class PlacedModel:
    """A Keras model (JAX backend) whose layers run on the devices of ``placement``.

    A step is the task graph the simulator simulates: each layer's forward on its device, its
    output copied once to every other device that reads it, then each layer's backward (vjp and
    SGD update) in reverse, each input gradient copied back to its producer's device. Supports
    functional models whose layers are each called once with one output, and one model output;
    the loss is half the mean square of that output (cheap: a step costs what its layers cost).
    """

    def __init__(
        self,
        model: Any,
        placement: Mapping[str, int],
        devices: Sequence[Any],
        batch_size: int,
        *,
        order: Sequence[str] | None = None,
        learning_rate: float = 1e-3,
        seed: int = 0,
    ) -> None:
        """``order``: the layers in the topological order whose position is a task's priority;
        pass the graph's (:attr:`OpGraph.layers`) to schedule exactly as the simulator does.
        Default: ``model.layers``."""
        import jax
        import keras

        from l2l.placement.calibration import jax_layer_step, layer_weights_on, random_layer_inputs

        if len(model.outputs) != 1:
            raise ValueError("a placed model needs exactly one output")
        self.devices = list(devices)
        self.learning_rate = learning_rate
        self.layers: dict[str, _PlacedLayer] = {}
        by_name = {layer.name: layer for layer in model.layers}
        placeable = [
            name for name, layer in by_name.items() if not isinstance(layer, keras.layers.InputLayer)
        ]
        order = [name for name in order if name in placeable] if order is not None else placeable
        if set(order) != set(placeable):
            raise ValueError(f"order misses layers {sorted(set(placeable) - set(order))}")
        for name in order:
            layer = by_name[name]
            if len(layer._inbound_nodes) != 1 or len(layer._inbound_nodes[0].output_tensors) != 1:
                raise ValueError(
                    f"layer {layer.name!r}: only layers called once with one output can be placed"
                )
            sources = [t._keras_history.operation.name for t in layer._inbound_nodes[0].input_tensors]
            params, frozen = layer_weights_on(layer, self.devices[placement[layer.name]])
            self.layers[layer.name] = _PlacedLayer(
                layer, sources, placement[layer.name], jax_layer_step(layer), params, frozen
            )
        self.output = model.outputs[0]._keras_history.operation.name
        self.consumers: dict[str, list[tuple[str, int]]] = {}  # source -> [(consumer, input position)]
        for name, placed in self.layers.items():
            for position, source in enumerate(placed.sources):
                self.consumers.setdefault(source, []).append((name, position))
        #: Tensors of the running step: ("out", layer, device) and ("grad", consumer, position, device).
        self.values: dict[tuple[Any, ...], Any] = {}
        self._inputs: dict[tuple[Any, ...], Any] = {}
        self.input_devices: dict[str, int] = {}
        rng = np.random.default_rng(seed)
        for tensor in model.inputs:
            name = tensor._keras_history.operation.name
            consumer, position = self.consumers[name][0]
            placed = self.layers[consumer]
            # the batch waits on its first consumer's device, where a prefetching input pipeline leaves it
            array = random_layer_inputs(placed.layer, batch_size, rng)[position]
            self.input_devices[name] = placed.device
            self._inputs[("out", name, placed.device)] = jax.device_put(array, self.devices[placed.device])
        self._loss_grad = jax.jit(lambda y: y / y.size)  # d/dy of mean(y ** 2) / 2
        self._vjps: dict[str, Any] = {}
        self.runner = DataflowRunner(self._tasks())

    def _tasks(self) -> list[Task]:
        names = list(self.layers)
        n = len(names)
        tasks: list[Task] = []
        forward: dict[str, int] = {}
        copies: dict[tuple[Any, ...], int] = {}  # a tensor is copied once per receiving device

        def add(task: Task, after: Sequence[int]) -> int:
            tasks.append(task)
            for before in after:
                tasks[before].successors.append(len(tasks) - 1)
            task.dependencies = len(after)
            return len(tasks) - 1

        def copy_task(key: tuple[Any, ...], source: int, target: int, after: Sequence[int]) -> int:
            to = (*key[:-1], target)
            if to not in copies:
                run = partial(self._copy_value, key, to, self.devices[target])
                copies[to] = add(Task(("link", source, target), 0, run), after)
            return copies[to]

        for i, name in enumerate(names):
            placed = self.layers[name]
            after = []
            for source in placed.sources:
                if source in self.input_devices:
                    origin, produced = self.input_devices[source], []
                else:
                    origin, produced = self.layers[source].device, [forward[source]]
                if origin == placed.device:
                    after += produced
                else:
                    after.append(copy_task(("out", source, origin), origin, placed.device, produced))
            forward[name] = add(Task(("device", placed.device), i, partial(self._forward, name)), after)
        backward: dict[str, int] = {}
        for i in reversed(range(n)):
            name = names[i]
            placed = self.layers[name]
            after = [forward[name]]
            for consumer, position in self.consumers.get(name, []):
                origin = self.layers[consumer].device
                if origin == placed.device:
                    after.append(backward[consumer])
                else:
                    key = ("grad", consumer, position, origin)
                    after.append(copy_task(key, origin, placed.device, [backward[consumer]]))
            backward[name] = add(
                Task(("device", placed.device), 2 * n - 1 - i, partial(self._backward, name)), after
            )
        return tasks

    def _copy_value(self, key: tuple[Any, ...], to: tuple[Any, ...], device: Any) -> None:
        self.values[to] = _copy(self.values[key], device)

    def _forward(self, name: str) -> None:
        import jax

        placed = self.layers[name]
        inputs = [self.values[("out", source, placed.device)] for source in placed.sources]
        float_inputs, int_inputs = placed.step.split_inputs(inputs)
        output, self._vjps[name] = placed.step.forward(placed.params, placed.frozen, float_inputs, int_inputs)
        self.values[("out", name, placed.device)] = jax.block_until_ready(output)

    def _backward(self, name: str) -> None:
        import jax

        placed = self.layers[name]
        if name == self.output:
            grad = self._loss_grad(self.values[("out", name, placed.device)])
        else:
            parts = [self.values[("grad", c, p, placed.device)] for c, p in self.consumers.get(name, [])]
            grad = parts[0]
            for part in parts[1:]:
                grad = grad + part
        params, grads = placed.step.backward(placed.params, self._vjps.pop(name), grad, self.learning_rate)
        placed.params = jax.block_until_ready(params)
        for position, value in zip(placed.step.float_positions, jax.block_until_ready(grads), strict=True):
            self.values[("grad", name, position, placed.device)] = value

    def step(self) -> None:
        """One training step; returns when every layer's weights are updated."""
        self.values = dict(self._inputs)
        self.runner.run()

    def close(self) -> None:
        self.runner.close()


def interleaved_step_seconds(
    models: Mapping[str, PlacedModel], steps: int, warmup: int = 3
) -> dict[str, list[float]]:
    """Seconds of ``steps`` steps of each model, taken in turns (A, B, C, A, B, C, ...) after
    ``warmup`` each: on a shared host a busy spell then slows every placement, not one."""
    for model in models.values():
        for _ in range(warmup):
            model.step()
    seconds: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(steps):
        for name, model in models.items():
            start = time.perf_counter()
            model.step()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def measure_hop_link(devices: Sequence[Any], *, repeats: int = 9) -> Any:
    """The link as a placed step pays it, fitted like :func:`~l2l.placement.calibration.measure_link`.

    A hop is the :class:`DataflowRunner` path of a tensor finished on device 0 and read on
    device 1: two thread wake-ups and the copy on the link's thread. Each size is timed as
    that chain minus the same chain without the hop (both tasks on device 0), so only what
    the hop adds is left.
    """
    import jax

    from l2l.placement.calibration import LINK_SIZES, fit_link

    source, target = devices[0], devices[1]

    def nothing() -> None:
        pass

    def chain(tasks: list[Task]) -> DataflowRunner:
        for before, task in enumerate(tasks[:-1]):
            task.successors.append(before + 1)
            tasks[before + 1].dependencies = 1
        return DataflowRunner(tasks)

    def median_run(runner: DataflowRunner) -> float:
        for _ in range(2):
            runner.run()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            runner.run()
            times.append(time.perf_counter() - start)
        runner.close()
        return float(np.median(times))

    nbytes, seconds = [], []
    for size in LINK_SIZES:
        array = jax.device_put(np.ones(size // 4, np.float32), source).block_until_ready()
        hop = chain(
            [
                Task(("device", 0), 0, nothing),
                Task(("link", 0, 1), 0, partial(_copy, array, target)),
                Task(("device", 1), 0, nothing),
            ]
        )
        local = chain([Task(("device", 0), 0, nothing), Task(("device", 0), 1, nothing)])
        nbytes.append(float(array.nbytes))
        seconds.append(max(median_run(hop) - median_run(local), 1e-7))
    return fit_link(nbytes, seconds)


# ---------------------------------------------------------------- the subprocess


def run_in_this_process(
    model_name: str,
    placements: Mapping[str, Any],
    n_devices: int,
    batch_size: int | None,
    steps: int,
    hardware: str = "cpu",
) -> CheckReport:
    """The check itself; needs Keras on JAX and the devices of ``hardware`` (see :func:`main`)."""
    import keras

    from l2l.placement.calibration import (
        LayerSeconds,
        LinkEstimate,
        measure_layer_seconds,
        measure_parallelism,
    )
    from l2l.placement.keras_graph import graph_from_keras

    if keras.backend.backend() != "jax":
        raise RuntimeError("the real check needs KERAS_BACKEND=jax set before Keras is imported")
    devices, kinds = _check_devices(hardware, n_devices)
    n_devices = len(devices)
    # one device of each kind is calibrated; the others of its kind are assumed alike
    calibrated_on = {kind: devices[kinds.index(kind)] for kind in dict.fromkeys(kinds)}
    recipe = CHECK_MODELS[model_name]
    batch_size = batch_size or recipe.batch_size
    keras.utils.set_random_seed(0)
    model = recipe.build()

    def calibrate() -> dict[str, dict[str, Any]]:
        return {
            kind: measure_layer_seconds(model, batch_size, device=device)
            for kind, device in calibrated_on.items()
        }

    graph = graph_from_keras(model, batch_size, unroll=False)
    first = calibrate()
    layers = [layer for layer in graph.layers if layer in first[kinds[0]]]  # topological order
    placements_by_name = {
        name: layer_placement(spec, layers, n_devices, first[kinds[0]]) for name, spec in placements.items()
    }
    # how many devices' worth of work the host does at once means something only for alike devices;
    # unlike ones (a GPU's upload and download) get a link measured each way
    alike = len(calibrated_on) == 1
    link = measure_hop_link(devices) if n_devices > 1 else None
    reverse = link if alike else measure_hop_link(devices[::-1])
    parallelism = measure_parallelism(model, devices, batch_size) if n_devices > 1 and alike else math.nan

    # Calibration and steps alternate over ROUNDS: other jobs on a shared host come and go, and
    # a calibration taken in a quiet minute would be compared with steps taken in a busy one.
    calibrations = [first]
    step_seconds: dict[str, list[float]] = {name: [] for name in placements_by_name}
    placed_models: dict[str, PlacedModel] = {}
    try:
        for name, placement in placements_by_name.items():
            placed_models[name] = PlacedModel(model, placement, devices, batch_size, order=layers)
        for round_ in range(ROUNDS):
            if round_ > 0:
                calibrations.append(calibrate())
            share = steps // ROUNDS + (round_ < steps % ROUNDS)
            for name, seconds in interleaved_step_seconds(
                placed_models, share, 3 if round_ == 0 else 0
            ).items():
                step_seconds[name] += seconds
    finally:
        for placed in placed_models.values():
            placed.close()
    seconds_by_kind = {
        kind: {
            layer: LayerSeconds(
                *np.median([calibration[kind][layer] for calibration in calibrations], axis=0)
            )
            for layer in layers
        }
        for kind in calibrated_on
    }
    no_link = LinkEstimate(0.0, 1e15)
    graph, simulator = calibrated_simulator(
        graph, seconds_by_kind, kinds, link or no_link, reverse or no_link
    )
    results = []
    for name, placement in placements_by_name.items():
        simulation = simulator.simulate(op_placement(graph, placement))
        serial = sum(span.end - span.start for span in (*simulation.runs, *simulation.transfers))
        times = np.array(step_seconds[name])
        measured = float(np.median(times))
        spread = float(np.subtract(*np.percentile(times, [75, 25])) / measured)
        predicted = simulation.step_time
        error = abs(predicted - measured) / measured
        # below 1 is noise, not a speed; NaN (unlike devices) leaves the prediction as it is
        contended = predicted if math.isnan(parallelism) else max(predicted, serial / max(parallelism, 1.0))
        results.append(CheckResult(name, predicted, measured, error, serial, contended, spread, placement))
    by_kind = {
        kind: {k: (v.forward, v.backward) for k, v in layer_seconds.items()}
        for kind, layer_seconds in seconds_by_kind.items()
    }
    return CheckReport(
        model=model_name,
        devices=n_devices,
        batch_size=batch_size,
        latency_s=link.latency if link else 0.0,
        bandwidth_bytes_per_s=link.bandwidth if link else float("inf"),
        backward_factor=graph.backward_factor,
        parallelism=parallelism,
        layer_seconds=by_kind[kinds[0]],
        results=results,
        hardware=hardware,
        layer_seconds_by_kind=by_kind,
        reverse_latency_s=reverse.latency if reverse else 0.0,
        reverse_bandwidth_bytes_per_s=reverse.bandwidth if reverse else float("inf"),
    )


def _check_devices(hardware: str, n_devices: int) -> tuple[list[Any], list[str]]:
    """The JAX devices of ``hardware`` and the kind of each."""
    import jax

    kinds = hardware_kinds(hardware, n_devices)
    if hardware == "gpu+cpu":
        try:
            gpu = jax.devices("gpu")[0]
        except RuntimeError as exc:
            raise RuntimeError(f"the gpu+cpu check needs a GPU that JAX can see: {exc}") from None
        return [gpu, jax.devices("cpu")[0]], kinds
    devices = jax.devices("cpu")
    if len(devices) < n_devices:
        raise RuntimeError(
            f"JAX sees {len(devices)} CPU devices, not {n_devices}: set "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={n_devices} before JAX is imported"
        )
    return devices[:n_devices], kinds


def calibrated_simulator(
    graph: Any,
    seconds_by_kind: Mapping[str, Mapping[str, tuple[float, float]]],
    kinds: Sequence[str],
    link: Any,
    reverse: Any,
) -> tuple[Any, Any]:
    """The graph with measured seconds for each device kind, and a simulator of devices of
    ``kinds`` joined by the measured links: what the check predicts from, and what a recorded
    report is predicted from again (``tests/test_placement_calibration.py``)."""
    from l2l.placement.calibration import calibrated_graph, effective_flops
    from l2l.placement.simulator import Simulator

    for kind, layer_seconds in seconds_by_kind.items():
        graph = calibrated_graph(graph, layer_seconds, kind)
    flops = {kind: effective_flops(graph, layer_seconds) for kind, layer_seconds in seconds_by_kind.items()}
    return graph, Simulator(graph, _check_cluster(kinds, flops, link, reverse))


def hardware_kinds(hardware: str, n_devices: int) -> list[str]:
    """The device kind of each device of ``hardware`` (``gpu+cpu`` is always two devices)."""
    if hardware == "gpu+cpu":
        return ["gpu", "cpu"]
    if hardware != "cpu":
        raise ValueError(f"unknown hardware {hardware!r}; known: {', '.join(HARDWARE)}")
    return ["cpu"] * n_devices


def recorded_simulator(
    report: CheckReport, seconds_by_kind: Mapping[str, Mapping[str, tuple[float, float]]] | None = None
) -> tuple[Any, Any]:
    """The graph and simulator a recorded report predicted from, rebuilt from its calibration
    (or from ``seconds_by_kind`` in its place): needs Keras, not the report's hardware."""
    import keras

    from l2l.placement.calibration import LinkEstimate
    from l2l.placement.keras_graph import graph_from_keras

    keras.utils.set_random_seed(0)
    graph = graph_from_keras(CHECK_MODELS[report.model].build(), report.batch_size, unroll=False)
    if seconds_by_kind is None:
        seconds_by_kind = report.layer_seconds_by_kind or {"cpu": report.layer_seconds}
    link = LinkEstimate(report.latency_s, report.bandwidth_bytes_per_s)
    reverse = LinkEstimate(report.reverse_latency_s, report.reverse_bandwidth_bytes_per_s)
    kinds = hardware_kinds(report.hardware, report.devices)
    return calibrated_simulator(graph, seconds_by_kind, kinds, link, reverse)


def _check_cluster(kinds: Sequence[str], flops: Mapping[str, float], link: Any, reverse: Any) -> Any:
    """Devices of ``kinds`` joined by the measured links: ``link`` from a lower-numbered device
    to a higher one, ``reverse`` the other way (a GPU's upload and download differ)."""
    from l2l.placement.calibration import calibrated_cluster
    from l2l.placement.cluster import Device, private_links_cluster

    if len(set(kinds)) == 1:
        return calibrated_cluster(len(kinds), kinds[0], link, flops=flops[kinds[0]])
    devices = [Device(f"{kind}:{i}", kind, flops[kind], 2**40) for i, kind in enumerate(kinds)]
    n = len(devices)
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    finite = [min(estimate.bandwidth, 1e15) for estimate in (link, reverse)]
    bandwidth = np.where(upper, finite[0], finite[1])
    latency = np.where(upper, link.latency, reverse.latency)
    return private_links_cluster("-".join(kinds) + "-calibrated", devices, bandwidth, latency)


def format_report(report: CheckReport) -> str:
    lines = [
        f"model {report.model}, batch {report.batch_size}, "
        + (
            "GPU (device 0) + host CPU (device 1); "
            f"link back {report.reverse_latency_s * 1e6:.0f} us + "
            f"{report.reverse_bandwidth_bytes_per_s / 1e9:.2f} GB/s; "
            if report.hardware == "gpu+cpu"
            else f"{report.devices} virtual CPU devices; "
        )
        + f"link {report.latency_s * 1e6:.0f} us + {report.bandwidth_bytes_per_s / 1e9:.2f} GB/s; "
        f"backward/forward {report.backward_factor:.2f}; parallelism {report.parallelism:.2f}",
        f"{'placement':<14}{'predicted ms':>13}{'measured ms':>13}{'error':>8}{'spread':>8}"
        f"{'serial ms':>11}{'contended ms':>14}{'error':>8}",
    ]
    for r in report.results:
        contended_error = abs(r.contended_s - r.measured_s) / r.measured_s
        lines.append(
            f"{r.name:<14}{r.predicted_s * 1e3:>13.2f}{r.measured_s * 1e3:>13.2f}{r.error:>8.1%}"
            f"{r.spread:>8.1%}{r.serial_s * 1e3:>11.2f}{r.contended_s * 1e3:>14.2f}{contended_error:>8.1%}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m l2l.placement.realstep", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", choices=sorted(CHECK_MODELS), required=True)
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--hardware", choices=HARDWARE, default="cpu")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per placement (median)")
    parser.add_argument(
        "--placements",
        default=json.dumps({s: s for s in STRATEGIES}),
        help="JSON {name: strategy | [device per layer] | {layer: device}}",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON line")
    args = parser.parse_args(argv)
    if "jax" not in sys.modules and "keras" not in sys.modules:
        # run directly rather than through check_placements: still in time to choose
        for key, value in subprocess_environment(args.devices, args.hardware).items():
            if key != "PYTHONPATH":
                os.environ[key] = value
    report = run_in_this_process(
        args.model, json.loads(args.placements), args.devices, args.batch_size, args.steps, args.hardware
    )
    if args.json:
        print(_REPORT_PREFIX + json.dumps(asdict(report)), flush=True)
    else:
        print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
