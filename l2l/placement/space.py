"""What a placement strategy searches: one device for each op of a graph on a cluster.

A :class:`PlacementSpace` plays the part a :class:`~search_spaces.spec.SearchSpace` plays
for architecture strategies: strategies built on it propose ``{"devices": [d0, d1, ...]}``
(device indices, one per op) through the same :class:`~controller.base.Strategy` protocol.
It also gives learned placers what they may know about the graph without running anything:
per-op features that do not depend on the graph's size, so a placer trained on one graph
can place another.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from l2l.placement.cluster import Cluster
from l2l.placement.families import OP_FAMILIES, op_family
from l2l.placement.graph import OpGraph
from search_spaces.spec import SpaceError

_STEP = re.compile(r"/t(\d+)$")


@dataclass(frozen=True)
class PlacementSpace:
    graph: OpGraph
    cluster: Cluster
    #: Devices the strategy may use (indices into the cluster); default: its accelerators.
    allowed: tuple[int, ...] = ()
    features: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        allowed = tuple(self.allowed) or tuple(self.cluster.accelerators())
        if not allowed or any(not 0 <= d < len(self.cluster) for d in allowed):
            raise SpaceError(
                f"allowed devices must be indices into the cluster's {len(self.cluster)} devices"
            )
        object.__setattr__(self, "allowed", allowed)
        object.__setattr__(self, "features", op_features(self.graph))

    @property
    def n_ops(self) -> int:
        return len(self.graph)

    @property
    def n_devices(self) -> int:
        return len(self.allowed)

    def validate(self, params: Mapping[str, Any]) -> dict[str, list[int]]:
        devices = params.get("devices") if isinstance(params, Mapping) else None
        if not isinstance(devices, (list, tuple, np.ndarray)) or len(devices) != self.n_ops:
            raise SpaceError(
                f"a placement is {{'devices': [one device index per op]}} with {self.n_ops} entries"
            )
        allowed = set(self.allowed)
        checked = [int(d) for d in devices]
        bad = next((d for d in checked if d not in allowed), None)
        if bad is not None:
            raise SpaceError(f"device {bad} is not one this search may use ({sorted(allowed)})")
        return {"devices": checked}

    def hints(self) -> list[np.ndarray]:
        """Placements anyone would try first: every hand-made baseline, best or not."""
        from l2l.placement.baselines import HAND_MADE

        allowed = set(self.allowed)
        found = [place(self.graph, self.cluster) for place in HAND_MADE.values()]
        return [p for p in found if set(p.tolist()) <= allowed]

    def sample(self, rng: random.Random) -> dict[str, list[int]]:
        return {"devices": [rng.choice(self.allowed) for _ in range(self.n_ops)]}


def op_features(graph: OpGraph) -> np.ndarray:
    """One row per op, graph-size independent: cost shares, tensor sizes, position, family."""
    n = len(graph)
    flops = np.array([op.flops for op in graph.ops])
    out_bytes = np.array([op.output_bytes for op in graph.ops], dtype=float)
    params = np.array([op.param_bytes for op in graph.ops], dtype=float)
    layer_index = np.array(graph.layer_of_ops(), dtype=float)
    consumers = graph.consumers()
    depth = np.zeros(n)
    for i, op in enumerate(graph.ops):
        depth[i] = max((depth[j] + 1 for j in op.inputs), default=0.0)
    steps = np.array([float(m.group(1)) if (m := _STEP.search(op.name)) else -1.0 for op in graph.ops])
    max_step = max(steps.max(), 1.0)

    def log_share(values: np.ndarray) -> np.ndarray:
        # log of each op's share of the total, scaled to about [0, 1]: size-free magnitudes
        total = values.sum()
        if total <= 0:
            return np.zeros(n)
        return np.clip(1 + np.log10(np.maximum(values / total, 1e-12)) / 12, 0, 1)

    families = np.zeros((n, len(OP_FAMILIES)))
    for i, op in enumerate(graph.ops):
        families[i, OP_FAMILIES.index(op_family(op.kind))] = 1.0
    columns = [
        log_share(flops),
        log_share(out_bytes),
        log_share(params),
        np.arange(n) / max(n - 1, 1),  # topological position
        depth / max(depth.max(), 1.0),
        layer_index / max(layer_index.max(), 1.0),
        np.where(steps >= 0, steps / max_step, 0.0),
        (steps >= 0).astype(float),
        np.array([math.log1p(len(op.inputs)) for op in graph.ops]) / 3,
        np.array([math.log1p(len(c)) for c in consumers]) / 3,
    ]
    return np.concatenate([np.stack(columns, axis=1), families], axis=1).astype(np.float32)
