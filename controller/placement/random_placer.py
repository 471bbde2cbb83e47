"""Random placement: every op on a device drawn uniformly; the floor any learned placer must clear."""

from __future__ import annotations

from controller.base import Ask, Result, Strategy
from controller.placement.config import RandomPlacementConfig


class RandomPlacement(Strategy):
    name = "random"

    def __init__(self, space, seed: int | None = None, config: RandomPlacementConfig | None = None) -> None:
        super().__init__(space, seed)
        self.config = config or RandomPlacementConfig()

    def ask(self) -> Ask:
        return self._propose(self.space.sample(self.rng))

    def tell(self, proposal_id: int, result: Result) -> None:
        self._settle(proposal_id)
