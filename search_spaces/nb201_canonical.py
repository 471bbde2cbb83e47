"""Which NAS-Bench-201 cells build the same network: the canonical form of a cell.

Training a cell that computes what a cell already tried computes is a wasted trial (its
result differs only by training noise), and a reward model that sees two names for one
network learns slower. Two rules find such cells; the form applies both, so equivalent
cells have equal forms:

* an edge that no path from the cell's input to its output goes through (its source is
  cut off from the input, or its target from the output, by ``none`` edges) adds
  nothing: the form writes it as ``none``. A cell whose output is cut off entirely
  becomes all ``none``;
* with no edge from node 1 to node 2 the two middle nodes are interchangeable: swapping
  ``edge_1_0``/``edge_3_1`` with ``edge_2_0``/``edge_3_2`` gives the same network, and
  the form keeps whichever of the two reads smaller in :data:`OPS` order.

Of the 15,625 cells these rules leave 8,765 forms (the NAS-Bench-201 paper counts 6,466
unique networks with a finer test of graph isomorphism); the rules are cheap and exact.
Pure Python, like the rest of the space's spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from search_spaces.nb201 import EDGE_NAMES, EDGES, NUM_NODES, OPS, edge_name
from search_spaces.template import FIXED_PARAMS

_OUTPUT = NUM_NODES - 1
#: (edge_1_0, edge_3_1) <-> (edge_2_0, edge_3_2): the swap of the middle nodes.
_SWAP = {
    edge_name(1, 0): edge_name(2, 0),
    edge_name(2, 0): edge_name(1, 0),
    edge_name(3, 1): edge_name(3, 2),
    edge_name(3, 2): edge_name(3, 1),
}


def canonical_cell(params: Mapping[str, Any], settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The searched edges of ``params`` written in the canonical form (see the module).

    A custom space's fixed edges (in ``settings``) shape which edges are live but are
    never rewritten, and the middle nodes swap only if none of their four edges is fixed.
    """
    fixed = dict((settings or {}).get(FIXED_PARAMS, {}))
    ops = {**fixed, **params}
    live = _live_edges(ops)
    form = {name: (op if name in live else "none") for name, op in ops.items()}
    if form[edge_name(2, 1)] == "none" and not set(_SWAP) & set(fixed):
        swapped = {name: form[_SWAP.get(name, name)] for name in EDGE_NAMES}
        if _order(swapped) < _order(form):
            form = swapped
    return {name: form[name] for name in params}


def _live_edges(ops: Mapping[str, Any]) -> set[str]:
    """The edges some input-to-output path of non-``none`` edges goes through."""
    reaches_input = {0}
    for j in range(1, NUM_NODES):
        if any(i in reaches_input and ops[edge_name(j, i)] != "none" for i in range(j)):
            reaches_input.add(j)
    reaches_output = {_OUTPUT}
    for i in reversed(range(_OUTPUT)):
        if any(j in reaches_output and ops[edge_name(j, i)] != "none" for j in range(i + 1, NUM_NODES)):
            reaches_output.add(i)
    return {
        edge_name(j, i)
        for j, i in EDGES
        if ops[edge_name(j, i)] != "none" and i in reaches_input and j in reaches_output
    }


def _order(form: Mapping[str, Any]) -> tuple[int, ...]:
    return tuple(OPS.index(form[name]) for name in EDGE_NAMES)
