"""Turn a built Keras 3 model into an :class:`~l2l.placement.graph.OpGraph` for the placer.

What a caller may rely on:

* Every call of a layer (a Keras node) becomes one op named after the layer, in
  topological order; a shared layer's later calls are ``<layer>/call1``, ``/call2``...
  and carry no parameters (the weights live with the first call). Non-layer operations
  (``keras.ops.add`` on symbolic tensors, ...) become ops named after the operation.
* A nested model (a Functional or Sequential used as a layer) is one op whose FLOPs are
  the sum of its own layers' estimates; a custom layer that holds other layers is one op.
* With ``unroll=True`` a recurrent layer (LSTM, GRU, SimpleRNN, any ``keras.layers.RNN``
  and ``Bidirectional``) with a known sequence length T becomes T ops ``<layer>/t{k}``
  (``Bidirectional``: ``<layer>/fwd/t{k}`` and ``<layer>/bwd/t{k}``); step k reads step
  k-1 and step k of its input, step 0 also reads the initial states. Layers that act on
  each time step of a split ``(batch, time, ...)`` tensor (Embedding, Dense, dropout,
  activations, LayerNormalization over features, merges, Concatenate off the time axis,
  TimeDistributed) are split the same way, and attention whose query is split reads query
  step k and every step of value and key. Anything else reads all steps of a split input.
  This is what lets a placer see pipelines across time steps (Mirhoseini et al., 2017).
* An Input is split per step when a consumer wants it split (a recurrent layer, or a chain
  of per-step layers that reaches one); otherwise it is one zero-FLOP op.
* FLOPs are forward estimates for the whole batch by layer type; a layer we do not know
  costs one FLOP per output element (or two per weight and example if that is larger), and
  estimation never raises. A split op carries 1/T of its layer's FLOPs.
* ``output_bytes`` is the sum over an op's outputs (per time step for split ops; an RNN
  step outputs its hidden state ``h``, the LSTM cell state stays with the layer); floating
  tensors count ``dtype_bytes`` per element, integer tensors their own size.
  ``param_bytes`` counts every weight at ``dtype_bytes`` and sits on the layer's first op,
  so a graph's parameters add up to the model's (they belong to the whole layer: see the
  simulator). An unrolled LSTM step's ``state_bytes`` is its cell state (the size of ``h``).
* Unknown dimensions other than the batch count as 1, so a layer over a sequence of
  unknown length is not unrolled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from l2l.placement.graph import GraphError, Op, OpGraph

Shape = tuple[int, ...]
#: (id of the operation, node index, tensor index): where a Keras tensor comes from.
TensorKey = tuple[int, int, int]
#: (id of the operation, node index): one call of an operation.
NodeKey = tuple[int, int]

L = keras.layers

try:  # the symbolic ops behind keras.ops.matmul / einsum; private, so optional
    from keras.src.ops.numpy import Einsum as _Einsum
    from keras.src.ops.numpy import Matmul as _Matmul
except ImportError:  # pragma: no cover - a Keras that moved them costs them 1 FLOP per element
    _Einsum = _Matmul = None  # type: ignore[assignment,misc]

# Cost per output element of the cheap layers (rough counts of the arithmetic per element).
_NORMALIZATION_FLOPS = 5.0  # mean, variance, subtract, scale, shift
_SOFTMAX_FLOPS = 5.0  # max, subtract, exp, sum, divide
#: Elementwise work per unit and step of a recurrent cell after its matmuls (gates, cell update).
_RNN_ELEMENTWISE = {"LSTM": 10.0, "GRU": 9.0, "SimpleRNN": 2.0}
_RNN_GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}

_ELEMENTWISE_LAYERS: tuple[type, ...] = (
    L.Activation,
    L.ReLU,
    L.LeakyReLU,
    L.PReLU,
    L.ELU,
    L.Dropout,
    L.SpatialDropout1D,
    L.GaussianNoise,
    L.GaussianDropout,
    L.AlphaDropout,
    L.Masking,
    L.Rescaling,
)
_NORMALIZATION_LAYERS: tuple[type, ...] = tuple(
    getattr(L, name)
    for name in ("LayerNormalization", "GroupNormalization", "UnitNormalization", "RMSNormalization")
    if hasattr(L, name)
)
_MERGE_LAYERS: tuple[type, ...] = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
_CONV_TRANSPOSE: tuple[type, ...] = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
_CONV: tuple[type, ...] = (L.Conv1D, L.Conv2D, L.Conv3D)
_DEPTHWISE: tuple[type, ...] = (L.DepthwiseConv1D, L.DepthwiseConv2D)
_SEPARABLE: tuple[type, ...] = (L.SeparableConv1D, L.SeparableConv2D)
_POOLING: tuple[type, ...] = (
    L.MaxPooling1D,
    L.MaxPooling2D,
    L.MaxPooling3D,
    L.AveragePooling1D,
    L.AveragePooling2D,
    L.AveragePooling3D,
)
_GLOBAL_POOLING: tuple[type, ...] = (
    L.GlobalMaxPooling1D,
    L.GlobalMaxPooling2D,
    L.GlobalMaxPooling3D,
    L.GlobalAveragePooling1D,
    L.GlobalAveragePooling2D,
    L.GlobalAveragePooling3D,
)
_VIEWS: tuple[type, ...] = (L.Reshape, L.Flatten, L.InputLayer)
_ATTENTION: tuple[type, ...] = (L.Attention, L.AdditiveAttention, L.MultiHeadAttention)
_RECURRENT: tuple[type, ...] = (L.RNN, L.Bidirectional)


def graph_from_keras(
    model: keras.Model,
    batch_size: int,
    *,
    name: str | None = None,
    unroll: bool = True,
    dtype_bytes: int = 4,
) -> OpGraph:
    """The op graph of one training step of ``model`` at ``batch_size`` (see the module doc).

    Raises :class:`GraphError` for a model without a symbolic graph (an unbuilt Sequential,
    a subclassed model): build it on ``keras.Input`` first.
    """
    if batch_size < 1 or dtype_bytes < 1:
        raise ValueError("batch_size and dtype_bytes must be >= 1")
    builder = _Builder(batch_size, unroll=unroll, dtype_bytes=dtype_bytes)
    builder.add_model(model)
    return OpGraph(name or model.name, tuple(builder.ops))


def _model_io(model: keras.Model) -> tuple[list[Any], list[Any]]:
    """The model's symbolic inputs and outputs, flattened."""
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not outputs:
        raise GraphError(
            f"model {model.name!r} has no symbolic graph: build a functional or Sequential model "
            "on keras.Input (subclassed models cannot be walked)"
        )
    return list(keras.tree.flatten(inputs or [])), list(keras.tree.flatten(outputs))


@dataclass
class _Value:
    """The ops that hold a Keras tensor: one part (whole) or one part per time step."""

    parts: list[tuple[int, ...]]

    @property
    def steps(self) -> int:
        return len(self.parts)

    def all_ops(self) -> tuple[int, ...]:
        return tuple(sorted({i for part in self.parts for i in part}))


def _tensor_key(tensor: Any) -> TensorKey:
    history = tensor._keras_history
    return (id(history.operation), history.node_index, history.tensor_index)


def _producer(tensor: Any) -> Any:
    history = getattr(tensor, "_keras_history", None)
    if history is None or history.operation is None:
        return None
    return history.operation._inbound_nodes[history.node_index]


def _node_key(node: Any) -> NodeKey:
    return (id(node.operation), node.operation._inbound_nodes.index(node))


def _ordered_nodes(inputs: Sequence[Any], outputs: Sequence[Any]) -> list[Any]:
    """The nodes that compute ``outputs``, producers first, in program order where it is free.

    Among independent branches the one fed by the earliest graph input comes first, so an
    encoder's ops precede its decoder's (a decoder reads the encoder only via its state).
    """
    plain = _postorder(outputs, lambda parents: parents)
    # id(node) -> position of the earliest model input it depends on
    first_input = {id(_producer(t)): i for i, t in enumerate(inputs) if _producer(t) is not None}
    for node in plain:
        parents = [p for p in map(_producer, node.arguments.keras_tensors) if p is not None]
        if parents:
            first_input[id(node)] = min(first_input[id(p)] for p in parents)
        else:
            first_input.setdefault(id(node), len(inputs))
    return _postorder(outputs, lambda parents: sorted(parents, key=lambda p: first_input[id(p)]))


def _postorder(outputs: Sequence[Any], arrange: Callable[[list[Any]], list[Any]]) -> list[Any]:
    """Depth-first postorder over producers, visiting each node's parents in ``arrange`` order.

    Iterative, because NASNet is deeper than Python's recursion limit.
    """
    order: list[Any] = []
    done: set[int] = set()
    stack: list[tuple[Any, bool]] = [(_producer(t), False) for t in reversed(outputs)]
    while stack:
        node, expanded = stack.pop()
        if node is None or id(node) in done:
            continue
        if expanded:
            done.add(id(node))
            order.append(node)
            continue
        stack.append((node, True))
        parents = [p for p in map(_producer, node.arguments.keras_tensors) if p is not None]
        for parent in reversed(arrange(parents)):
            if id(parent) not in done:
                stack.append((parent, False))
    return order


class _Builder:
    def __init__(self, batch_size: int, *, unroll: bool, dtype_bytes: int) -> None:
        self.batch = batch_size
        self.unroll = unroll
        self.dtype_bytes = dtype_bytes
        self.ops: list[Op] = []
        self._names: set[str] = set()
        self._values: dict[TensorKey, _Value] = {}
        self._consumers: dict[TensorKey, list[Any]] = {}
        self._calls: dict[int, int] = {}  # id(operation) -> calls seen so far
        self._wants_split_memo: dict[tuple[int, TensorKey], bool] = {}
        self._nested_flops: dict[int, float] = {}

    # -- walking -------------------------------------------------------------------------

    def add_model(self, model: keras.Model) -> None:
        nodes = _ordered_nodes(*_model_io(model))
        for node in nodes:
            for tensor in node.arguments.keras_tensors:
                self._consumers.setdefault(_tensor_key(tensor), []).append(node)
        for node in nodes:
            self._add_node(node)

    def _add_node(self, node: Any) -> None:
        operation = node.operation
        call = self._calls.get(id(operation), 0)
        self._calls[id(operation)] = call + 1
        base = operation.name if call == 0 else f"{operation.name}/call{call}"
        params = self._param_bytes(operation) if call == 0 else 0
        if isinstance(operation, L.InputLayer) or node.is_input:
            self._add_input(node, base)
        elif self.unroll and isinstance(operation, _RECURRENT) and self._sequence_length(node) > 1:
            self._add_recurrent(node, base, params)
        elif self.unroll and (steps := self._per_step_length(node)) > 1:
            self._add_per_step(node, base, params, steps)
        else:
            inputs = self._read_all(node.arguments.keras_tensors)
            flops = self._node_flops(node)
            index = self._add_op(base, flops, self._bytes(node.outputs), inputs, params, operation)
            self._set_outputs(node, [_Value([(index,)]) for _ in node.outputs])

    def _add_op(
        self,
        name: str,
        flops: float,
        output_bytes: int,
        inputs: Iterable[int],
        param_bytes: int,
        operation: Any,
        kind: str = "",
        state_bytes: int = 0,
    ) -> int:
        unique, n = name, 1
        while unique in self._names:
            unique, n = f"{name}_{n}", n + 1
        self._names.add(unique)
        self.ops.append(
            Op(
                name=unique,
                flops=float(flops),
                output_bytes=int(output_bytes),
                inputs=tuple(sorted(set(inputs))),
                param_bytes=int(param_bytes),
                layer=operation.name,
                kind=kind or type(operation).__name__,
                state_bytes=int(state_bytes),
            )
        )
        return len(self.ops) - 1

    def _set_outputs(self, node: Any, values: Sequence[_Value]) -> None:
        operation, node_index = node.operation, _node_key(node)[1]
        for position, value in enumerate(values):
            self._values[(id(operation), node_index, position)] = value

    def _value(self, tensor: Any) -> _Value:
        return self._values[_tensor_key(tensor)]

    def _read_all(self, tensors: Iterable[Any]) -> set[int]:
        return {i for tensor in tensors for i in self._value(tensor).all_ops()}

    # -- inputs --------------------------------------------------------------------------

    def _add_input(self, node: Any, base: str) -> None:
        tensor = node.outputs[0]
        shape = self._shape(tensor)
        steps = shape[1] if len(shape) >= 2 and tensor.shape[1] is not None else 1
        consumers = self._consumers.get(_tensor_key(tensor), [])
        if self.unroll and steps > 1 and any(self._wants_split(c, _tensor_key(tensor)) for c in consumers):
            step_bytes = self._bytes([tensor]) // steps
            parts = [
                (self._add_op(f"{base}/t{k}", 0.0, step_bytes, (), 0, node.operation, "Input step"),)
                for k in range(steps)
            ]
            self._set_outputs(node, [_Value(parts)])
        else:
            index = self._add_op(base, 0.0, self._bytes(node.outputs), (), 0, node.operation, "Input")
            self._set_outputs(node, [_Value([(index,)]) for _ in node.outputs])

    def _wants_split(self, node: Any, key: TensorKey) -> bool:
        """Whether ``node`` would use the tensor ``key`` split per time step, here or downstream."""
        memo_key = (id(node), key)
        if memo_key not in self._wants_split_memo:
            self._wants_split_memo[memo_key] = False  # guards against revisiting
            operation = node.operation
            if isinstance(operation, _RECURRENT):
                sequence = _sequence_argument(node)
                wants = sequence is not None and _tensor_key(sequence) == key
            elif self._splits_along(node, key):
                wants = any(
                    self._wants_split(consumer, _tensor_key(out))
                    for out in node.outputs
                    for consumer in self._consumers.get(_tensor_key(out), [])
                )
            else:
                wants = False
            self._wants_split_memo[memo_key] = wants
        return self._wants_split_memo[memo_key]

    # -- per-step layers -----------------------------------------------------------------

    def _splits_along(self, node: Any, key: TensorKey) -> bool:
        """Whether the node acts on each time step of input ``key`` separately."""
        operation = node.operation
        tensors = node.arguments.keras_tensors
        source = next((t for t in tensors if _tensor_key(t) == key), None)
        out = node.outputs[0] if node.outputs else None
        if source is None or out is None or len(source.shape) < 2 or len(out.shape) < 2:
            return False
        if source.shape[1] is None or source.shape[1] != out.shape[1]:
            return False
        if isinstance(operation, _ATTENTION):
            return _tensor_key(_attention_operands(node)[0]) == key
        if isinstance(operation, L.Embedding):
            return len(source.shape) == 2
        if isinstance(operation, L.Dense | L.TimeDistributed):
            return len(source.shape) >= 3 or isinstance(operation, L.TimeDistributed)
        if isinstance(operation, (L.Softmax, *_NORMALIZATION_LAYERS)):
            axes = operation.axis if isinstance(operation.axis, list | tuple) else [operation.axis]
            return len(source.shape) >= 3 and all(a % len(source.shape) != 1 for a in axes)
        if isinstance(operation, L.Concatenate):
            return len(out.shape) >= 3 and operation.axis % len(out.shape) != 1
        return isinstance(operation, _ELEMENTWISE_LAYERS + _MERGE_LAYERS)

    def _per_step_length(self, node: Any) -> int:
        """T if the node has a split input it acts on step by step, else 1."""
        for tensor in node.arguments.keras_tensors:
            steps = self._value(tensor).steps
            if steps > 1 and steps == tensor.shape[1] and self._splits_along(node, _tensor_key(tensor)):
                return steps
        return 1

    def _add_per_step(self, node: Any, base: str, params: int, steps: int) -> None:
        operation = node.operation
        flops = self._node_flops(node) / steps
        step_bytes = self._bytes(node.outputs) // steps
        tensors = node.arguments.keras_tensors
        stepped = [
            self._value(t).steps == steps and self._splits_along(node, _tensor_key(t)) for t in tensors
        ]
        if isinstance(operation, _ATTENTION):
            # Only the query goes step by step; in self-attention the same tensor is also the
            # value, which each step reads whole.
            query = _attention_operands(node)[0]
            first = next(i for i, t in enumerate(tensors) if t is query)
            stepped = [by_step and i == first for i, by_step in enumerate(stepped)]
        parts = []
        for k in range(steps):
            inputs: set[int] = set()
            for tensor, by_step in zip(tensors, stepped, strict=True):
                value = self._value(tensor)
                inputs.update(value.parts[k] if by_step else value.all_ops())
            name = f"{base}/t{k}"
            parts.append((self._add_op(name, flops, step_bytes, inputs, params if k == 0 else 0, operation),))
        self._set_outputs(node, [_Value(parts) for _ in node.outputs])

    # -- recurrent layers ----------------------------------------------------------------

    def _sequence_length(self, node: Any) -> int:
        sequence = _sequence_argument(node)
        if sequence is None or len(sequence.shape) < 3 or sequence.shape[1] is None:
            return 1
        return int(sequence.shape[1])

    def _add_recurrent(self, node: Any, base: str, params: int) -> None:
        operation = node.operation
        sequence = _sequence_argument(node)
        steps = self._sequence_length(node)
        source = self._value(sequence)
        by_step = source.steps == steps
        extras = self._read_all(t for t in node.arguments.keras_tensors if t is not sequence)
        bidirectional = isinstance(operation, L.Bidirectional)
        directions = (
            [(operation.forward_layer, "fwd/"), (operation.backward_layer, "bwd/")]
            if bidirectional
            else [(operation, "")]
        )
        out_shape = self._shape(node.outputs[0])
        sequences_out = bool(directions[0][0].return_sequences)
        step_shape = out_shape[:1] + out_shape[2:] if sequences_out else out_shape
        if bidirectional and operation.merge_mode == "concat":
            step_shape = step_shape[:-1] + (step_shape[-1] // 2,)
        in_step = self._shape(sequence)
        in_step = in_step[:1] + in_step[2:]
        step_bytes = math.prod(step_shape) * self.dtype_bytes

        # ops[d][j] is the op of direction d that runs j-th (in processing order).
        ops: list[list[int]] = []
        for layer, prefix in directions:
            flops = _rnn_step_flops(layer, in_step, step_shape)
            backwards = bool(layer.go_backwards)
            chain: list[int] = []
            for j in range(steps):
                time = steps - 1 - j if backwards else j
                inputs = set(source.parts[time] if by_step else source.all_ops())
                inputs.update(chain[-1:] if chain else extras)
                label = time if bidirectional else j  # a plain RNN's output k is its k-th step
                name = f"{base}/{prefix}t{label}"
                first = not ops and not chain
                kind = f"{type(layer).__name__} step"
                # an LSTM hands its next step the cell state besides h: as many bytes again
                state = step_bytes if type(layer).__name__ == "LSTM" else 0
                chain.append(
                    self._add_op(
                        name, flops, step_bytes, inputs, params if first else 0, operation, kind, state
                    )
                )
            ops.append(chain)

        last = tuple(chain[-1] for chain in ops)
        if not sequences_out:
            outputs = [_Value([last])]
        elif bidirectional:
            forward, backward = ops[0], ops[1][::-1]  # backward re-ordered by time
            if operation.merge_mode is None:
                outputs = [_Value([(i,) for i in forward]), _Value([(i,) for i in backward])]
            else:
                outputs = [_Value([(f, b) for f, b in zip(forward, backward, strict=True)])]
        else:
            outputs = [_Value([(i,) for i in ops[0]])]
        outputs += [_Value([last])] * (len(node.outputs) - len(outputs))
        self._set_outputs(node, outputs)

    # -- costs ---------------------------------------------------------------------------

    def _shape(self, tensor: Any) -> Shape:
        return _concrete(tensor.shape, self.batch)

    def _bytes(self, tensors: Iterable[Any]) -> int:
        total = 0
        for tensor in tensors:
            size = _itemsize(str(getattr(tensor, "dtype", "float32")), self.dtype_bytes)
            total += math.prod(self._shape(tensor)) * size
        return total

    def _param_bytes(self, operation: Any) -> int:
        weights = getattr(operation, "weights", None) or []
        return sum(math.prod(int(d) for d in w.shape) for w in weights) * self.dtype_bytes

    def _node_flops(self, node: Any) -> float:
        operation = node.operation
        if isinstance(operation, keras.Model):
            return self._model_flops(operation, [self._shape(t) for t in node.outputs])
        tensors = node.arguments.keras_tensors
        if isinstance(operation, _ATTENTION):
            tensors = [t for t in _attention_operands(node) if t is not None]
        elif isinstance(operation, _RECURRENT) and _sequence_argument(node) is not None:
            tensors = [_sequence_argument(node)]
        ins = [self._shape(t) for t in tensors]
        outs = [self._shape(t) for t in node.outputs]
        return _safe_flops(operation, ins, outs, self.batch)

    def _model_flops(self, model: keras.Model, outs: list[Shape]) -> float:
        if id(model) not in self._nested_flops:
            try:
                inner = _Builder(self.batch, unroll=False, dtype_bytes=self.dtype_bytes)
                inner.add_model(model)
                self._nested_flops[id(model)] = sum(op.flops for op in inner.ops)
            except Exception:  # an odd nested model still gets a rough cost, never a crash
                self._nested_flops[id(model)] = _fallback_flops(model, outs, self.batch)
        return self._nested_flops[id(model)]


def _sequence_argument(node: Any) -> Any:
    args, kwargs = node.arguments.args, node.arguments.kwargs
    sequence = args[0] if args else kwargs.get("sequences", kwargs.get("inputs"))
    return sequence if isinstance(sequence, keras.KerasTensor) else None


def _attention_operands(node: Any) -> tuple[Any, Any, Any]:
    """(query, value, key) of an attention call; key may be None."""
    args, kwargs = node.arguments.args, node.arguments.kwargs
    if isinstance(node.operation, L.MultiHeadAttention):
        query = args[0] if args else kwargs.get("query")
        value = args[1] if len(args) > 1 else kwargs.get("value")
        key = args[2] if len(args) > 2 else kwargs.get("key")
    else:
        inputs = list(args[0] if args else kwargs["inputs"])
        query, value = inputs[0], inputs[1]
        key = inputs[2] if len(inputs) > 2 else None
    return query, value, key


def _itemsize(dtype: str, float_bytes: int) -> int:
    if "float" in dtype:
        return float_bytes
    try:
        return np.dtype(dtype).itemsize
    except TypeError:  # e.g. "string": any size will do for a tensor that is rarely sent
        return float_bytes


def _concrete(shape: Sequence[int | None], batch: int) -> Shape:
    dims = [1 if d is None else int(d) for d in shape]
    if dims:
        dims[0] = batch
    return tuple(dims)


# -- FLOPs by layer type (pure functions of the layer and concrete shapes) -----------------


def _safe_flops(operation: Any, ins: list[Shape], outs: list[Shape], batch: int) -> float:
    try:
        flops = _layer_flops(operation, ins, outs, batch)
    except Exception:  # estimation must never stop a graph from being built
        flops = None
    if flops is None or not math.isfinite(flops) or flops < 0:
        return _fallback_flops(operation, outs, batch)
    return float(flops)


def _fallback_flops(operation: Any, outs: list[Shape], batch: int) -> float:
    """One FLOP per output element, or two per weight and example (dense-like custom layers)."""
    weights = getattr(operation, "weights", None) or []
    params = sum(math.prod(int(d) for d in w.shape) for w in weights)
    return float(max(sum(math.prod(s) for s in outs), 2 * params * batch))


def _activation_flops(layer: Any, out: Shape) -> float:
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", "linear")
    if name == "linear":
        return 0.0
    return math.prod(out) * (_SOFTMAX_FLOPS if name == "softmax" else 1.0)


def _channels(layer: Any, shape: Shape) -> int:
    return shape[1] if getattr(layer, "data_format", "channels_last") == "channels_first" else shape[-1]


def _layer_flops(layer: Any, ins: list[Shape], outs: list[Shape], batch: int) -> float | None:
    """Forward FLOPs of one call; None when the layer type is unknown."""
    out = outs[0]
    elements = math.prod(out)
    if isinstance(layer, _VIEWS):
        return 0.0
    if isinstance(layer, L.Dense):
        return 2.0 * elements * ins[0][-1] + elements + _activation_flops(layer, out)
    if isinstance(layer, L.EinsumDense):
        kernel = tuple(int(d) for d in layer.kernel.shape)
        return _einsum_flops(layer.equation, [ins[0], kernel], out) + _activation_flops(layer, out)
    if isinstance(layer, _CONV_TRANSPOSE):
        kernel = math.prod(layer.kernel_size)
        return 2.0 * math.prod(ins[0]) * kernel * layer.filters + _activation_flops(layer, out)
    if isinstance(layer, _SEPARABLE):
        # depthwise: each of the `depth_multiplier` maps per input channel; then a 1x1 conv.
        mid_channels = _channels(layer, ins[0]) * layer.depth_multiplier
        depthwise = 2.0 * (elements // layer.filters) * mid_channels * math.prod(layer.kernel_size)
        return depthwise + 2.0 * elements * mid_channels + _activation_flops(layer, out)
    if isinstance(layer, _DEPTHWISE):
        return 2.0 * elements * math.prod(layer.kernel_size) + _activation_flops(layer, out)
    if isinstance(layer, _CONV):
        per_output = math.prod(layer.kernel_size) * _channels(layer, ins[0]) / layer.groups
        return 2.0 * elements * per_output + elements + _activation_flops(layer, out)
    if isinstance(layer, L.Embedding):
        return float(elements)
    if isinstance(layer, (L.BatchNormalization, *_NORMALIZATION_LAYERS)):
        return _NORMALIZATION_FLOPS * elements
    if isinstance(layer, L.Softmax):
        return _SOFTMAX_FLOPS * elements
    if isinstance(layer, L.Activation):
        return max(_activation_flops(layer, out), float(elements))
    if isinstance(layer, _MERGE_LAYERS):
        return float(max(len(ins) - 1, 1) * elements)
    if isinstance(layer, _POOLING):
        return float(elements * math.prod(layer.pool_size))
    if isinstance(layer, _GLOBAL_POOLING):
        return float(math.prod(ins[0]))
    if isinstance(layer, _RECURRENT):
        return _rnn_flops(layer, ins[0], out)
    if isinstance(layer, L.TimeDistributed):
        fold = [(s[0] * s[1], *s[2:]) for s in ins]
        return _safe_flops(layer.layer, fold, [(s[0] * s[1], *s[2:]) for s in outs], batch * ins[0][1])
    if isinstance(layer, L.MultiHeadAttention):
        return _multi_head_attention_flops(layer, ins, out)
    if isinstance(layer, L.Attention | L.AdditiveAttention):
        return _attention_flops(layer, ins)
    if _Matmul is not None and isinstance(layer, _Matmul):
        return 2.0 * elements * ins[0][-1]
    if _Einsum is not None and isinstance(layer, _Einsum):
        return _einsum_flops(layer.subscripts, ins, out)
    if isinstance(layer, _ELEMENTWISE_LAYERS + (L.Concatenate,)):
        return float(elements)
    return None


def _einsum_flops(equation: str, operands: list[Shape], out: Shape) -> float:
    """2 x the product of every index's size: one multiply-add per term of the sum."""
    lhs, rhs = equation.replace(" ", "").split("->")
    sizes: dict[str, int] = {}
    ellipsis = 1  # the dims "..." stands for (leading), counted once
    for spec, shape in [*zip(lhs.split(","), operands, strict=False), (rhs, out)]:
        letters = spec.replace("...", "")
        if "..." in spec:
            ellipsis = max(ellipsis, math.prod(shape[: len(shape) - len(letters)]))
            shape = shape[len(shape) - len(letters) :]
        for letter, size in zip(letters, shape, strict=False):
            sizes.setdefault(letter, size)
    return 2.0 * ellipsis * math.prod(sizes.values())


def _rnn_step_flops(layer: Any, in_step: Shape, out_step: Shape) -> float:
    """One time step of a recurrent layer for the batch: the gate matmuls plus elementwise work."""
    batch = in_step[0]
    if isinstance(layer, L.LSTM | L.GRU | L.SimpleRNN):
        units = int(layer.units)
        kind = next(k for k in _RNN_GATES if isinstance(layer, getattr(L, k)))
        matmul = 2.0 * batch * _RNN_GATES[kind] * units * (in_step[-1] + units)
        return matmul + batch * units * _RNN_ELEMENTWISE[kind]
    cell = getattr(layer, "cell", None)
    if hasattr(layer, "kernel_size") and hasattr(layer, "filters"):  # ConvLSTM
        per_output = math.prod(layer.kernel_size) * (_channels(layer, in_step) + layer.filters)
        return 2.0 * math.prod(out_step) * 4 * per_output + 10.0 * math.prod(out_step)
    weights = getattr(cell, "weights", None) or getattr(layer, "weights", None) or []
    params = sum(math.prod(int(d) for d in w.shape) for w in weights)
    return 2.0 * batch * params + math.prod(out_step)


def _rnn_flops(layer: Any, sequence: Shape, out: Shape) -> float:
    """A whole (not unrolled) recurrent layer: T steps, twice for Bidirectional."""
    steps = sequence[1] if len(sequence) >= 3 else 1
    in_step = sequence[:1] + sequence[2:]
    directions = (
        [layer.forward_layer, layer.backward_layer] if isinstance(layer, L.Bidirectional) else [layer]
    )
    total = 0.0
    for direction in directions:
        out_step = out[:1] + out[2:] if direction.return_sequences else out
        total += steps * _rnn_step_flops(direction, in_step, out_step)
    return total


def _attention_flops(layer: Any, ins: list[Shape]) -> float:
    query, value = ins[0], ins[1]
    batch, tq, tv = query[0], math.prod(query[1:-1]), math.prod(value[1:-1])
    pairs = batch * tq * tv
    additive = isinstance(layer, L.AdditiveAttention) or getattr(layer, "score_mode", "dot") == "concat"
    scores = (3.0 if additive else 2.0) * pairs * query[-1]
    return scores + _SOFTMAX_FLOPS * pairs + 2.0 * pairs * value[-1]


def _multi_head_attention_flops(layer: Any, ins: list[Shape], out: Shape) -> float:
    query, value = ins[0], ins[1]
    key = ins[2] if len(ins) > 2 else value
    heads, key_dim = int(layer.num_heads), int(layer.key_dim)
    value_dim = int(layer.value_dim or key_dim)
    batch, tq, tv = query[0], math.prod(query[1:-1]), math.prod(value[1:-1])
    projections = (
        2.0 * batch * heads * (tq * query[-1] * key_dim + tv * (key[-1] * key_dim + value[-1] * value_dim))
    )
    pairs = batch * heads * tq * tv
    attention = 2.0 * pairs * (key_dim + value_dim) + _SOFTMAX_FLOPS * pairs
    return projections + attention + 2.0 * batch * tq * heads * value_dim * out[-1]
