"""The canonical form of NAS-Bench-201 cells: equivalent cells, and only those, share a form.

"Equivalent" is checked against the cell's own definition (node ``j`` is the sum of
``op(node i)`` over ``i < j``), evaluated with one random function per operation: cells
with one form must compute exactly the same output. (The converse cannot be checked this
way: with one function per operation, more cells than the paper's 6,466 unique networks
coincide.)
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from search_spaces import check_space_spec, get_space
from search_spaces.nb201 import EDGE_NAMES, NB201_CELL, OPS, params_from_arch_str
from search_spaces.nb201_canonical import canonical_cell
from search_spaces.spec import Choice, SearchSpace, SpaceError

ALL_CELLS = [
    dict(zip(EDGE_NAMES, ops, strict=True)) for ops in itertools.product(OPS, repeat=len(EDGE_NAMES))
]


def cell_output(cell: dict[str, str], functions: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The cell as the builder wires it, with op ``o`` as ``tanh(W_o v)`` (``none`` is 0)."""
    nodes = [x]
    for j in range(1, 4):
        total = np.zeros_like(x)
        for i in range(j):
            op = cell[f"edge_{j}_{i}"]
            if op == "skip_connect":
                total = total + nodes[i]
            elif op != "none":
                total = total + np.tanh(functions[op] @ nodes[i])
        nodes.append(total)
    return nodes[3]


def test_cells_with_one_form_compute_the_same_function() -> None:
    rng = np.random.default_rng(0)
    functions = {op: rng.standard_normal((8, 8)) for op in OPS}
    x = rng.standard_normal(8)
    outputs: dict[tuple[str, ...], np.ndarray] = {}
    for cell in ALL_CELLS:
        form = tuple(canonical_cell(cell).values())
        out = cell_output(cell, functions, x)
        if form in outputs:
            np.testing.assert_allclose(out, outputs[form], atol=1e-12)
        else:
            outputs[form] = out
    assert len(outputs) == 8765  # of 15,625 cells


def test_the_form_is_its_own_form() -> None:
    for cell in ALL_CELLS[::7]:
        form = canonical_cell(cell)
        assert canonical_cell(form) == form


def test_dead_edges_become_none_and_middle_nodes_are_ordered() -> None:
    # node 1 gets nothing from the input: its outgoing edges do nothing
    cell = params_from_arch_str(
        "|none~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    )
    assert canonical_cell(cell) == params_from_arch_str(
        "|none~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    )
    # no edge 1 -> 2: the middle nodes swap into OPS order (skip_connect before nor_conv_3x3)
    assert canonical_cell(
        params_from_arch_str(
            "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|nor_conv_1x1~1|avg_pool_3x3~2|"
        )
    ) == params_from_arch_str(
        "|skip_connect~0|+|nor_conv_3x3~0|none~1|+|none~0|avg_pool_3x3~1|nor_conv_1x1~2|"
    )
    # an output cut off from the input: every cell like it is the all-none cell
    cut = params_from_arch_str("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|none~2|")
    assert set(canonical_cell(cut).values()) == {"none"}


def test_a_custom_space_keeps_its_fixed_edges_and_falls_back_where_a_form_is_not_an_option() -> None:
    # edge_2_1 fixed at nor_conv_3x3 (the default cell); edge_1_0 = none kills edge_3_1
    space = NB201_CELL.custom_space(
        "two-edges",
        (Choice("edge_1_0", ("none", "nor_conv_3x3")), Choice("edge_3_1", ("none", "nor_conv_3x3"))),
    )
    forms = {space.canonical_indices(row) for row in itertools.product(range(2), repeat=2)}
    assert forms == {(0, 0), (1, 0), (1, 1)}
    # here a dead edge_3_1 cannot be written none, so no configuration is merged
    no_none = NB201_CELL.custom_space(
        "no-none",
        (Choice("edge_1_0", ("none", "skip_connect")), Choice("edge_3_1", ("skip_connect", "nor_conv_3x3"))),
    )
    assert {no_none.canonical_indices(row) for row in itertools.product(range(2), repeat=2)} == {
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
    }
    # fixed middle-node edges: the nodes never swap, so the fixed values never move
    one_edge_free = NB201_CELL.custom_space("one", (Choice("edge_2_1", tuple(OPS)),))
    assert canonical_cell({"edge_2_1": "none"}, one_edge_free.settings) == {"edge_2_1": "none"}


def test_the_canonical_form_travels_with_a_stored_space() -> None:
    space = get_space("nb201_cell")
    assert space.canonical == "search_spaces.nb201_canonical:canonical_cell"
    assert SearchSpace.from_dict(space.to_dict()) == space
    assert "canonical" not in get_space("mlp").to_dict()  # written only when there is one
    stored = {**space.to_dict(), "canonical": "no_such_module:form"}
    with pytest.raises(SpaceError, match="canonical 'no_such_module:form' is not registered on this service"):
        check_space_spec(stored)
    with pytest.raises(SpaceError, match="must look like 'module:function'"):
        SearchSpace.from_dict({**space.to_dict(), "canonical": "no colon"})
