"""Random search: every proposal is an independent draw from the space."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.base import Ask, Result, Strategy
from controller.config import RandomConfig
from search_spaces.spec import SearchSpace


class RandomSearch(Strategy):
    """Samples ``space.sample(self.rng)``, so float and wide integer ranges are drawn
    from their full range, not only the discrete levels. Never waits, never finishes;
    results are checked (the id must be pending) and otherwise ignored."""

    name = "random"

    def __init__(
        self, space: SearchSpace, seed: int | None = None, config: RandomConfig | None = None
    ) -> None:
        super().__init__(space, seed)
        self.config = config or RandomConfig()

    def ask(self) -> Ask:
        return self._propose(self.space.sample(self.rng))

    def tell(self, proposal_id: int, result: Result) -> None:
        self._settle(proposal_id)

    def extend_space(self, space: SearchSpace, fill: Mapping[str, Any] | None = None) -> None:
        self._grow(space, fill)
