"""Calibration: measured layer times and link speeds in place of FLOP counts and datasheets.

The simulator is only as honest as its costs. This module measures them on the machine at
hand and writes them into the plain data the simulator reads:

* :func:`measure_layer_seconds` times every layer of a Keras model: its forward call
  and its backward (the gradient of its inputs and weights, plus the SGD update of its
  weights) on a random input of the layer's own input shape, as the median of ``repeats``
  runs after warm-up. Under JAX the functions timed are :func:`jax_layer_step`'s, the very
  functions :mod:`l2l.placement.realstep` runs, so calibration and the real check agree on
  what a layer costs. Under TensorFlow the backward is timed as "forward with a gradient
  tape, then the gradient" minus the plain forward.
* :func:`calibrated_graph` writes those times into ``Op.seconds[kind]`` and
  ``Op.backward_seconds[kind]``, per device kind (a GPU and the host CPU differ in their
  backward/forward ratio as well as in speed).
* :func:`measure_link` fits ``latency + bytes / bandwidth`` to timed copies between two
  JAX devices; :func:`calibrated_cluster` builds a uniform cluster from it.
* :func:`measure_parallelism` measures how many virtual devices a host runs at once: the
  simulator treats devices as independent, and virtual CPU devices share the host's cores.

Keras and the backend are imported inside the functions: importing this module is cheap and
does not choose a backend.
"""

from __future__ import annotations

import math
import os
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from l2l.placement.cluster import Cluster, Device, uniform_cluster
from l2l.placement.graph import OpGraph


class CalibrationError(RuntimeError):
    """A model or device that cannot be calibrated; the message says why."""


class LayerSeconds(NamedTuple):
    """Median seconds of one layer's forward and backward on the whole batch."""

    forward: float
    backward: float


@dataclass(frozen=True)
class LinkEstimate:
    """One link's cost model, fitted to timed copies: ``latency + bytes / bandwidth``."""

    latency: float
    #: Bytes per second.
    bandwidth: float

    def seconds(self, nbytes: float) -> float:
        return self.latency + nbytes / self.bandwidth


# ---------------------------------------------------------------- layers


def measure_layer_seconds(
    model: Any,
    batch_size: int,
    *,
    repeats: int = 7,
    warmup: int = 2,
    device: Any = None,
    seed: int = 0,
) -> dict[str, LayerSeconds]:
    """Forward and backward seconds of every layer of ``model`` (input layers excluded), as
    the median of ``repeats`` runs after ``warmup``.

    Each layer runs on random inputs shaped like its real ones (batch ``batch_size``), so the
    times include one dispatch per call but no transfer and no overlap with other layers.
    Under JAX (``device``: default the first one) the layers run as in a step: every forward
    in order, then every backward in reverse, each timed on its own, so a layer finds the
    caches the way the previous layer left them. (A layer timed over and over alone keeps its
    weights in cache: on the "mlp" check model, whose layers hold 4 MB each, such times summed
    to 10-15% less than a step.) Under TensorFlow each layer is timed alone. Layers called
    more than once (shared layers) are timed on their first call's shapes.
    """
    import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    rng = np.random.default_rng(seed)
    inputs = [random_layer_inputs(layer, batch_size, rng) for layer in layers]
    backend = keras.backend.backend()
    if backend == "jax":
        return _jax_layer_seconds(layers, inputs, repeats, warmup, device)
    if backend == "tensorflow":
        return {
            layer.name: _tensorflow_measure(layer, arrays, repeats, warmup)
            for layer, arrays in zip(layers, inputs, strict=True)
        }
    raise CalibrationError(f"calibration supports the jax and tensorflow backends, not {backend!r}")


def layer_input_specs(layer: Any) -> list[tuple[tuple[int | None, ...], str]]:
    """(shape, dtype) of each input of the layer's first call; the batch dimension is None."""
    try:
        tensors = layer.input
    except (AttributeError, ValueError) as exc:
        raise CalibrationError(f"layer {layer.name!r} has not been called on an input: {exc}") from None
    tensors = tensors if isinstance(tensors, list | tuple) else [tensors]
    return [(tuple(t.shape), str(t.dtype)) for t in tensors]


def random_layer_inputs(layer: Any, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random numpy inputs for ``layer``; integer inputs are valid indices (for embeddings)."""
    arrays = []
    for shape, dtype in layer_input_specs(layer):
        concrete = tuple(batch_size if d is None else d for d in shape)
        if np.issubdtype(np.dtype(dtype), np.integer):
            high = int(getattr(layer, "input_dim", 2))
            arrays.append(rng.integers(0, high, size=concrete).astype(dtype))
        else:
            arrays.append(rng.standard_normal(concrete).astype(dtype))
    return arrays


def _median_seconds(run: Callable[[], Any], repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


# ---------------------------------------------------------------- JAX


@dataclass(frozen=True)
class JaxLayerStep:
    """A layer's forward and backward as jitted JAX functions, run on their inputs' device.

    ``forward(params, frozen, float_inputs, int_inputs) -> (output, vjp)``: the output and the
    closure over the activations the backward needs (a JAX pytree, so it crosses ``jit``).
    ``backward(params, vjp, output_grad, learning_rate) -> (new_params, float_input_grads)``:
    the gradients of the float inputs and the weights after one plain SGD step. ``frozen``
    are the non-trainable weights, passed through unchanged (their updates, e.g. batch-norm
    statistics, are dropped: they do not change what a step costs).
    """

    forward: Callable[..., tuple[Any, Any]]
    backward: Callable[..., tuple[list[Any], list[Any]]]
    #: Which of the layer's inputs are floating point (differentiated) and which integer.
    float_positions: tuple[int, ...]
    int_positions: tuple[int, ...]

    def split_inputs(self, inputs: Sequence[Any]) -> tuple[list[Any], list[Any]]:
        return [inputs[i] for i in self.float_positions], [inputs[i] for i in self.int_positions]


_LAYER_STEPS: weakref.WeakKeyDictionary[Any, JaxLayerStep] = weakref.WeakKeyDictionary()


def jax_layer_step(layer: Any) -> JaxLayerStep:
    """Jitted forward and backward of one built Keras layer (JAX backend).

    Cached per layer: calibration and every placement of the real check share the compiled
    functions (JAX compiles once per device they run on).
    """
    if layer not in _LAYER_STEPS:
        _LAYER_STEPS[layer] = _new_jax_layer_step(layer)
    return _LAYER_STEPS[layer]


def _new_jax_layer_step(layer: Any) -> JaxLayerStep:
    import jax

    specs = layer_input_specs(layer)
    float_positions = tuple(i for i, (_, dtype) in enumerate(specs) if not _is_integer(dtype))
    int_positions = tuple(i for i, (_, dtype) in enumerate(specs) if _is_integer(dtype))
    several_inputs = isinstance(layer.input, list | tuple)
    kwargs = {"training": True} if getattr(layer, "_call_has_training_arg", False) else {}

    def call(params: list[Any], frozen: list[Any], float_inputs: list[Any], int_inputs: list[Any]) -> Any:
        inputs: list[Any] = [None] * len(specs)
        for position, value in zip(float_positions, float_inputs, strict=True):
            inputs[position] = value
        for position, value in zip(int_positions, int_inputs, strict=True):
            inputs[position] = value
        argument = inputs if several_inputs else inputs[0]
        output, _ = layer.stateless_call(params, frozen, argument, **kwargs)
        return output

    def forward(params: list[Any], frozen: list[Any], float_inputs: list[Any], int_inputs: list[Any]) -> Any:
        return jax.vjp(lambda p, x: call(p, frozen, x, int_inputs), params, float_inputs)

    def backward(params: list[Any], vjp: Any, output_grad: Any, learning_rate: float) -> Any:
        param_grads, input_grads = vjp(output_grad)
        return [p - learning_rate * g for p, g in zip(params, param_grads, strict=True)], input_grads

    return JaxLayerStep(jax.jit(forward), jax.jit(backward), float_positions, int_positions)


def _is_integer(dtype: str) -> bool:
    return bool(np.issubdtype(np.dtype(dtype), np.integer) or dtype == "bool")


def layer_weights_on(layer: Any, device: Any) -> tuple[list[Any], list[Any]]:
    """The layer's trainable and non-trainable weights as JAX arrays on ``device``."""
    import jax

    return (
        [jax.device_put(v.value, device) for v in layer.trainable_variables],
        [jax.device_put(v.value, device) for v in layer.non_trainable_variables],
    )


def _jax_layer_seconds(
    layers: Sequence[Any], inputs: Sequence[list[np.ndarray]], repeats: int, warmup: int, device: Any
) -> dict[str, LayerSeconds]:
    import jax

    device = device if device is not None else jax.devices()[0]
    calls = []
    for layer, arrays in zip(layers, inputs, strict=True):
        step = jax_layer_step(layer)
        params, frozen = layer_weights_on(layer, device)
        float_inputs, int_inputs = step.split_inputs([jax.device_put(x, device) for x in arrays])
        output, _ = step.forward(params, frozen, float_inputs, int_inputs)
        grad = jax.device_put(np.ones(output.shape, output.dtype), device)
        calls.append((step, params, frozen, float_inputs, int_inputs, grad))
    forward_times: list[list[float]] = [[] for _ in layers]
    backward_times: list[list[float]] = [[] for _ in layers]
    for repeat in range(warmup + max(1, repeats)):
        vjps = []
        for i, (step, params, frozen, float_inputs, int_inputs, _) in enumerate(calls):
            start = time.perf_counter()
            output, vjp = step.forward(params, frozen, float_inputs, int_inputs)
            jax.block_until_ready(output)
            vjps.append(vjp)
            if repeat >= warmup:
                forward_times[i].append(time.perf_counter() - start)
        for i in reversed(range(len(calls))):
            step, params, _, _, _, grad = calls[i]
            start = time.perf_counter()
            jax.block_until_ready(step.backward(params, vjps[i], grad, 0.0))  # rate 0: weights stay
            if repeat >= warmup:
                backward_times[i].append(time.perf_counter() - start)
    return {
        layer.name: LayerSeconds(float(np.median(f)), float(np.median(b)))
        for layer, f, b in zip(layers, forward_times, backward_times, strict=True)
    }


def measure_parallelism(model: Any, devices: Sequence[Any], batch_size: int, *, repeats: int = 9) -> float:
    """How many devices' worth of work the host does at once: the forward of every layer of
    ``model`` run on every device at the same time, against one device alone.

    Each device runs in its own thread, as in :class:`~l2l.placement.realstep.PlacedModel`.
    ``len(devices)`` means the virtual devices are independent, 1 that they take turns on the
    host's cores. Every layer is used because kernels differ: a large matmul already uses all
    cores, small ones leave cores to other devices.
    """
    import jax
    import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    rng = np.random.default_rng(0)
    batches = {layer.name: random_layer_inputs(layer, batch_size, rng) for layer in layers}
    work = []
    for device in devices:
        calls = []
        for layer in layers:
            step = jax_layer_step(layer)
            params, frozen = layer_weights_on(layer, device)
            inputs = step.split_inputs([jax.device_put(x, device) for x in batches[layer.name]])
            calls.append(partial(step.forward, params, frozen, *inputs))
        work.append(calls)

    def run(index: int) -> None:
        for call in work[index]:
            jax.block_until_ready(call()[0])

    everyone = list(range(len(devices)))
    with ThreadPoolExecutor(max_workers=len(devices)) as pool:

        def seconds(indices: Sequence[int]) -> float:
            start = time.perf_counter()
            for future in [pool.submit(run, i) for i in indices]:
                future.result()
            return time.perf_counter() - start

        seconds(everyone)  # warm-up: compile on every device
        alone, together = [], []
        for _ in range(repeats):  # in turns, so that the host's other load hits both alike
            alone.append(seconds([0]))
            together.append(seconds(everyone))
    return len(devices) * float(np.median(alone)) / float(np.median(together))


# ---------------------------------------------------------------- TensorFlow


def _tensorflow_measure(layer: Any, inputs: list[np.ndarray], repeats: int, warmup: int) -> LayerSeconds:
    """Forward, and backward as (forward under a tape + gradient) - forward: TF has no vjp to keep."""
    import tensorflow as tf

    tensors = [tf.constant(x) for x in inputs]
    differentiable = [t for t in tensors if t.dtype.is_floating]
    argument = tensors if isinstance(layer.input, list | tuple) else tensors[0]

    @tf.function
    def forward() -> Any:
        return layer(argument, training=True)

    @tf.function
    def forward_and_backward() -> Any:
        with tf.GradientTape() as tape:
            tape.watch(differentiable)
            output = layer(argument, training=True)
        return tape.gradient(output, [*layer.trainable_variables, *differentiable])

    def run(function: Callable[[], Any]) -> Callable[[], None]:
        def wait_for_result() -> None:
            # .numpy() waits: TF may hand back results before the work is done
            for tensor in tf.nest.flatten(function(), expand_composites=True):  # IndexedSlices too
                if tensor is not None:
                    tensor.numpy()

        return wait_for_result

    forward_s = _median_seconds(run(forward), repeats, warmup)
    both_s = _median_seconds(run(forward_and_backward), repeats, warmup)
    return LayerSeconds(forward_s, max(both_s - forward_s, 0.0))


# ---------------------------------------------------------------- graph


def calibrated_graph(
    graph: OpGraph, layer_seconds: Mapping[str, tuple[float, float]], device_kind: str
) -> OpGraph:
    """``graph`` with measured forward and backward seconds for ``device_kind`` on the ops of
    measured layers.

    A layer's times are divided among its ops in proportion to their FLOPs (evenly if they
    have none), so the ops of a layer split per time step sum to the layer's time. Ops of
    layers not in ``layer_seconds`` (e.g. the model's inputs) keep what they had. The graph's
    ``backward_factor`` (used only for ops with no measured backward) becomes total backward /
    total forward seconds over the measured layers of the graph.
    """
    ops_of_layer: dict[str, list[int]] = {}
    for i, op in enumerate(graph.ops):
        ops_of_layer.setdefault(op.layer, []).append(i)
    measured = [layer for layer in ops_of_layer if layer in layer_seconds]
    if not measured:
        raise CalibrationError(
            f"none of the graph's layers were measured (graph layers: {graph.layers[:5]}...)"
        )
    ops = list(graph.ops)
    for layer in measured:
        forward, backward = (float(t) for t in layer_seconds[layer][:2])
        indices = ops_of_layer[layer]
        flops = np.array([graph.ops[i].flops for i in indices], dtype=float)
        shares = flops / flops.sum() if flops.sum() > 0 else np.full(len(indices), 1.0 / len(indices))
        for i, share in zip(indices, shares, strict=True):
            ops[i] = replace(
                ops[i],
                seconds={**ops[i].seconds, device_kind: forward * float(share)},
                backward_seconds={**ops[i].backward_seconds, device_kind: backward * float(share)},
            )
    total_forward = sum(float(layer_seconds[layer][0]) for layer in measured)
    total_backward = sum(float(layer_seconds[layer][1]) for layer in measured)
    factor = total_backward / total_forward if total_forward > 0 else graph.backward_factor
    return OpGraph(graph.name, tuple(ops), factor)


def effective_flops(graph: OpGraph, layer_seconds: Mapping[str, tuple[float, float]]) -> float:
    """FLOP/s the measured layers achieved (forward); a speed for ops that were not measured."""
    flops = sum(op.flops for op in graph.ops if op.layer in layer_seconds)
    seconds = sum(float(layer_seconds[layer][0]) for layer in set(graph.layers) if layer in layer_seconds)
    return flops / seconds if flops > 0 and seconds > 0 else 1e10


# ---------------------------------------------------------------- links and clusters

#: Copy sizes (bytes) a link is timed at: from small activations to large ones.
LINK_SIZES: tuple[int, ...] = (1 << 10, 1 << 13, 1 << 16, 1 << 19, 1 << 21, 1 << 23)


def measure_link(
    source: Any,
    target: Any,
    *,
    sizes: Sequence[int] = LINK_SIZES,
    repeats: int = 9,
    warmup: int = 2,
) -> LinkEstimate:
    """Fit ``latency + bytes / bandwidth`` (:func:`fit_link`) to timed ``jax.device_put``
    copies from ``source`` to ``target`` (JAX devices) of float32 arrays of ``sizes`` bytes."""
    import jax

    if source == target:
        raise CalibrationError("a link needs two different devices")
    nbytes, seconds = [], []
    for size in sizes:
        array = jax.device_put(np.ones(max(1, size // 4), np.float32), source).block_until_ready()

        def copy(array: Any = array) -> None:
            jax.device_put(array, target).block_until_ready()

        seconds.append(_median_seconds(copy, repeats, warmup))
        nbytes.append(float(array.nbytes))
    return fit_link(nbytes, seconds)


def fit_link(nbytes: Sequence[float], seconds: Sequence[float]) -> LinkEstimate:
    """Least-squares ``seconds = latency + bytes / bandwidth`` in relative error.

    Relative, because transfer times span four orders of magnitude: plain least squares would
    fit the largest copies and leave the latency (what small activations pay) to noise. A
    negative latency is clamped to zero; a non-positive slope (copies that do not grow with
    size) gives an effectively infinite bandwidth.
    """
    x = np.asarray(nbytes, dtype=float)
    t = np.asarray(seconds, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0:
        raise CalibrationError("fitting a link needs copies of at least two different sizes")
    weight = 1.0 / np.maximum(t, 1e-9)
    design = np.stack([np.ones_like(x), x], axis=1) * weight[:, None]
    (latency, per_byte), *_ = np.linalg.lstsq(design, t * weight, rcond=None)
    bandwidth = 1.0 / per_byte if per_byte > 0 else 1e15
    return LinkEstimate(max(float(latency), 0.0), float(bandwidth))


def calibrated_cluster(
    n_devices: int,
    kind: str,
    link: LinkEstimate,
    *,
    flops: float = 1e10,
    memory_bytes: int | None = None,
    name: str | None = None,
) -> Cluster:
    """``n_devices`` identical devices of ``kind`` joined by links like ``link``.

    ``flops`` only matters for ops without measured seconds; ``memory_bytes`` defaults to
    this machine's memory shared evenly (virtual CPU devices share the host's RAM).
    """
    if memory_bytes is None:
        memory_bytes = max(1, _host_memory_bytes() // max(1, n_devices))
    devices = [Device(f"{kind}:{i}", kind, flops, memory_bytes, 0.0) for i in range(n_devices)]
    bandwidth = link.bandwidth if math.isfinite(link.bandwidth) else 1e15
    return uniform_cluster(name or f"{kind}-{n_devices}-calibrated", devices, bandwidth, link.latency)


def _host_memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16 * 1024**3
