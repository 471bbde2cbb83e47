"""The computational graph a placement places: operations, their costs and the tensors they send.

An :class:`OpGraph` is plain data (no Keras): ops in topological order, each with its
forward compute (FLOPs, or seconds measured per device kind by calibration), its parameter
bytes, the bytes of the one tensor it outputs (sent once to every other device that
consumes it, and kept in memory for the backward pass), and the indices of the ops it
reads. ``param_bytes`` of the ops of one ``layer`` add up to the layer's parameters, which
belong to the layer as a whole (the simulator charges every device that runs part of a layer
for a copy). ``layer`` names the user-visible layer an op belongs to: a Keras LSTM unrolled
over 20 time steps is 20 ops of one layer. Expert placements and the real multi-device
check work on layers; the learned placer works on ops.

Graphs come from Keras models (:mod:`l2l.placement.keras_graph`) or from a JSON file a
user uploads (:meth:`OpGraph.from_json`); both go through the same validation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class GraphError(ValueError):
    """The graph description is invalid; the message says which op and what to fix."""


@dataclass(frozen=True)
class Op:
    name: str
    #: Forward FLOPs of one training step (the whole batch).
    flops: float
    #: Bytes of the op's output tensor (the whole batch).
    output_bytes: int
    #: Indices of the ops this op reads; all smaller than this op's own index.
    inputs: tuple[int, ...] = ()
    #: Bytes of the trainable and non-trainable weights the op owns.
    param_bytes: int = 0
    #: The Keras layer (or user group) the op belongs to; defaults to the op's own name.
    layer: str = ""
    #: The layer class or op type, e.g. "Conv2D" or "LSTM step"; informative.
    kind: str = ""
    #: Measured forward seconds per device kind (from calibration); overrides FLOPs / speed.
    seconds: Mapping[str, float] = field(default_factory=dict)
    #: Measured backward seconds per device kind (gradient and update); where a kind has none,
    #: the backward is the graph's ``backward_factor`` times the forward. Kept per kind because
    #: the ratio differs between devices (a GPU and the host CPU measured in one calibration).
    backward_seconds: Mapping[str, float] = field(default_factory=dict)
    #: Bytes of recurrent state the op hands the next op of its own layer besides its output
    #: (an LSTM step's cell state); copied when the two steps run on different devices.
    state_bytes: int = 0

    def __post_init__(self) -> None:
        if not self.layer:
            object.__setattr__(self, "layer", self.name)


@dataclass(frozen=True)
class OpGraph:
    """Ops in topological order. ``backward_factor``: backward compute as a multiple of forward."""

    name: str
    ops: tuple[Op, ...]
    backward_factor: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(self.ops))
        _validate(self)

    def __len__(self) -> int:
        return len(self.ops)

    @property
    def layers(self) -> list[str]:
        """Layer names in order of their first op."""
        return list(dict.fromkeys(op.layer for op in self.ops))

    def layer_of_ops(self) -> list[int]:
        """For each op, the index of its layer in :attr:`layers`."""
        index = {name: i for i, name in enumerate(self.layers)}
        return [index[op.layer] for op in self.ops]

    def consumers(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in self.ops]
        for i, op in enumerate(self.ops):
            for j in op.inputs:
                out[j].append(i)
        return out

    @property
    def total_flops(self) -> float:
        return sum(op.flops for op in self.ops)

    def to_dict(self) -> dict[str, Any]:
        ops = []
        for op in self.ops:
            entry: dict[str, Any] = {
                "name": op.name,
                "flops": op.flops,
                "output_bytes": op.output_bytes,
                "inputs": [self.ops[i].name for i in op.inputs],
            }
            if op.param_bytes:
                entry["param_bytes"] = op.param_bytes
            if op.layer != op.name:
                entry["layer"] = op.layer
            if op.kind:
                entry["kind"] = op.kind
            if op.seconds:
                entry["seconds"] = dict(op.seconds)
            if op.backward_seconds:
                entry["backward_seconds"] = dict(op.backward_seconds)
            if op.state_bytes:
                entry["state_bytes"] = op.state_bytes
            ops.append(entry)
        return {"name": self.name, "backward_factor": self.backward_factor, "ops": ops}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OpGraph:
        """Build from the JSON shape of :meth:`to_dict`: ops name their inputs by op name.

        Ops may come in any order; they are sorted topologically (stable). Raises
        :class:`GraphError` naming the first problem found.
        """
        if not isinstance(data, Mapping):
            raise GraphError("a graph is a JSON object with 'name' and 'ops'")
        raw_ops = data.get("ops")
        if not isinstance(raw_ops, Sequence) or isinstance(raw_ops, str) or not raw_ops:
            raise GraphError("'ops' must be a non-empty list of {name, flops, output_bytes, inputs}")
        by_name: dict[str, Mapping[str, Any]] = {}
        for position, raw in enumerate(raw_ops):
            if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str) or not raw["name"]:
                raise GraphError(f"op #{position} needs a non-empty string 'name'")
            if raw["name"] in by_name:
                raise GraphError(f"op name {raw['name']!r} appears twice; op names must be unique")
            by_name[raw["name"]] = raw
        order = _topological_names(by_name)
        index = {name: i for i, name in enumerate(order)}
        ops = []
        for name in order:
            raw = by_name[name]
            try:
                ops.append(
                    Op(
                        name=name,
                        flops=float(raw.get("flops", 0.0)),
                        output_bytes=int(raw.get("output_bytes", 0)),
                        inputs=tuple(index[i] for i in raw.get("inputs", [])),
                        param_bytes=int(raw.get("param_bytes", 0)),
                        layer=str(raw.get("layer", "")),
                        kind=str(raw.get("kind", "")),
                        seconds={str(k): float(v) for k, v in dict(raw.get("seconds", {})).items()},
                        backward_seconds={
                            str(k): float(v) for k, v in dict(raw.get("backward_seconds", {})).items()
                        },
                        state_bytes=int(raw.get("state_bytes", 0)),
                    )
                )
            except (TypeError, ValueError) as exc:
                raise GraphError(f"op {name!r}: {exc}") from None
        try:
            backward_factor = float(data.get("backward_factor", 2.0))
        except (TypeError, ValueError):
            raise GraphError("'backward_factor' must be a number") from None
        return cls(str(data.get("name", "uploaded")), tuple(ops), backward_factor)

    @classmethod
    def from_json(cls, text: str | bytes) -> OpGraph:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GraphError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        except UnicodeDecodeError:
            raise GraphError("not valid JSON: the bytes are not UTF-8 text") from None
        except RecursionError:
            raise GraphError("not valid JSON: nested too deeply") from None
        return cls.from_dict(data)


def _topological_names(by_name: Mapping[str, Mapping[str, Any]]) -> list[str]:
    inputs: dict[str, list[str]] = {}
    for name, raw in by_name.items():
        names = raw.get("inputs", [])
        if not isinstance(names, Sequence) or isinstance(names, str):
            raise GraphError(f"op {name!r}: 'inputs' must be a list of op names")
        for other in names:
            if other not in by_name:
                raise GraphError(f"op {name!r} reads {other!r}, which is not an op of the graph")
        inputs[name] = list(names)
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in by_name:
        stack = [(root, 0)]
        while stack:
            name, next_input = stack.pop()
            if next_input == 0:
                if state.get(name) == 2:
                    continue
                state[name] = 1
            if next_input < len(inputs[name]):
                stack.append((name, next_input + 1))
                child = inputs[name][next_input]
                if state.get(child) == 1:
                    raise GraphError(f"the graph has a cycle through {child!r} and {name!r}")
                if state.get(child) != 2:
                    stack.append((child, 0))
            else:
                state[name] = 2
                order.append(name)
    return order


def _validate(graph: OpGraph) -> None:
    if not graph.ops:
        raise GraphError("a graph needs at least one op")
    if not graph.backward_factor >= 0:
        raise GraphError("backward_factor must be >= 0")
    seen: set[str] = set()
    for i, op in enumerate(graph.ops):
        if op.name in seen:
            raise GraphError(f"op name {op.name!r} appears twice; op names must be unique")
        seen.add(op.name)
        if not op.flops >= 0 or op.output_bytes < 0 or op.param_bytes < 0 or op.state_bytes < 0:
            raise GraphError(f"op {op.name!r}: flops, output_bytes, param_bytes and state_bytes must be >= 0")
        for j in op.inputs:
            if not 0 <= j < i:
                raise GraphError(f"op {op.name!r} reads op #{j}; ops must be in topological order")
        for kind, seconds in (*op.seconds.items(), *op.backward_seconds.items()):
            if not seconds >= 0:
                raise GraphError(f"op {op.name!r}: seconds on {kind!r} must be >= 0")
