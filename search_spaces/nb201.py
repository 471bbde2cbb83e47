"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020), shrunk to train in seconds.

A cell has four nodes; node ``j`` is the sum of ``op(node i)`` over ``i < j``, so
there are six edges, one decision each, named ``edge_<j>_<i>`` so that sorting the
names gives the edge order of the benchmark's arch strings
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``. The same cell is repeated in every stage
of the macro network built by :mod:`search_spaces.nb201_builder`. Pure Python.

With the setting ``{"tabular": "cifar10"}`` (or ``"cifar100"``, ``"imagenet16"``) a trial
is not trained: the worker looks the cell's validation accuracy up in the NAS-Bench-201
table (:mod:`search_spaces.nb201_table`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from search_spaces.spec import Choice, SpaceError
from search_spaces.template import (
    FIXED_PARAMS,
    POSITIVE_INT,
    POSITIVE_NUMBER,
    Template,
    ValueRule,
    one_of,
)

#: The benchmark's operation names, in its own order.
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

NUM_NODES = 4

#: (to_node, from_node) for every edge, in arch-string order.
EDGES = tuple((j, i) for j in range(1, NUM_NODES) for i in range(j))


def edge_name(to_node: int, from_node: int) -> str:
    return f"edge_{to_node}_{from_node}"


EDGE_NAMES = tuple(edge_name(j, i) for j, i in EDGES)

#: Fixed edges of a custom space default to the benchmark's best CIFAR-10 cell.
DEFAULT_ARCH = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)


def arch_str(params: Mapping[str, Any], settings: Mapping[str, Any] | None = None) -> str:
    """The benchmark's arch string for a cell; fixed edges of a custom space come from ``settings``."""
    values = {**(settings or {}).get(FIXED_PARAMS, {}), **params}
    missing = [n for n in EDGE_NAMES if n not in values]
    if missing:
        raise SpaceError(f"a NAS-Bench-201 cell needs every edge; missing {missing}")
    nodes = []
    for j in range(1, NUM_NODES):
        ops = []
        for i in range(j):
            op = values[edge_name(j, i)]
            if op not in OPS:
                raise SpaceError(f"{edge_name(j, i)}={op!r} is not one of {list(OPS)}")
            ops.append(f"{op}~{i}")
        nodes.append("|" + "|".join(ops) + "|")
    return "+".join(nodes)


def params_from_arch_str(arch: str) -> dict[str, str]:
    """The six edge decisions of an arch string such as ``|nor_conv_3x3~0|+|...``."""
    nodes = arch.strip().split("+")
    if len(nodes) != NUM_NODES - 1:
        raise SpaceError(f"arch string {arch!r} must have {NUM_NODES - 1} nodes separated by '+'")
    params = {}
    for j, node in enumerate(nodes, start=1):
        tokens = node.strip().strip("|").split("|")
        if len(tokens) != j:
            raise SpaceError(f"node {j} of {arch!r} must have {j} edges like 'op~i', got {node!r}")
        for i, token in enumerate(tokens):
            op, _, source = token.partition("~")
            if op not in OPS or source != str(i):
                raise SpaceError(f"edge {token!r} of {arch!r} must be '<op>~{i}' with op in {list(OPS)}")
            params[edge_name(j, i)] = op
    return params


DEFAULT_PARAMS = params_from_arch_str(DEFAULT_ARCH)

#: Datasets of the NAS-Bench-201 table that the ``tabular`` setting may name.
TABULAR_DATASETS = ("cifar10", "cifar100", "imagenet16")

#: ``tabular``: None trains the cell; a dataset name looks its validation accuracy up in the
#: NAS-Bench-201 table instead (see :mod:`search_spaces.nb201_table`).
TABULAR_RULE = ValueRule(
    f"null or one of {list(TABULAR_DATASETS)}", lambda v: v is None or v in TABULAR_DATASETS
)

NB201_CELL = Template(
    name="nb201_cell",
    builder="search_spaces.nb201_builder:build",
    decisions=tuple(Choice(name, OPS) for name in EDGE_NAMES),
    default_params=DEFAULT_PARAMS,
    default_settings={
        "channels": 8,
        "cells_per_stage": 1,
        "learning_rate": 3e-3,
        "batch_size": 32,
        "tabular": None,
    },
    decision_rules={name: one_of(OPS) for name in EDGE_NAMES},
    setting_rules={
        "channels": POSITIVE_INT,
        "cells_per_stage": POSITIVE_INT,
        "learning_rate": POSITIVE_NUMBER,
        "batch_size": POSITIVE_INT,
        "tabular": TABULAR_RULE,
    },
    input_kinds=frozenset({"image"}),
    canonical="search_spaces.nb201_canonical:canonical_cell",
)
