"""Configurations that build the same network, for strategies that work on level indices.

A search space may name a canonical form (:attr:`search_spaces.spec.SearchSpace.canonical`):
configurations that build equal networks have equal forms. :func:`canonical_forms` gives a
strategy the forms of its space's configurations as rows of level indices, remembered
once per process for every strategy on an equal space (the forms are a pure function of
the space, and a benchmark runs a hundred searches on one space).
"""

from __future__ import annotations

import functools
import json

import numpy as np

from search_spaces.spec import SearchSpace

Indices = tuple[int, ...]


class CanonicalForms:
    """The canonical form of each configuration of one space, computed once each."""

    def __init__(self, space: SearchSpace) -> None:
        self._space = space
        self._forms: dict[Indices, Indices] = {}

    def form(self, row: Indices) -> Indices:
        form = self._forms.get(row)
        if form is None:
            form = self._forms[row] = self._space.canonical_indices(row)
        return form

    def forms(self, rows: np.ndarray) -> np.ndarray:
        """The form of every row of ``rows`` (``n x decisions`` level indices), same shape."""
        return np.array([self.form(row) for row in map(tuple, rows.tolist())], dtype=np.int64).reshape(
            rows.shape
        )


def canonical_forms(space: SearchSpace) -> CanonicalForms | None:
    """The forms of ``space``'s configurations, or None if the space names no canonical form."""
    if space.canonical is None:
        return None
    return _shared(json.dumps(space.to_dict(), sort_keys=True))


@functools.lru_cache(maxsize=16)
def _shared(description: str) -> CanonicalForms:
    return CanonicalForms(SearchSpace.from_dict(json.loads(description)))
