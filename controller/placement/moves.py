"""Neighbour moves of a placement, shared by local search and the planner's polishing phase.

Pure Python and NumPy (no simulator): a move takes a placement (one device per op) and
returns a copy with one of

* a whole layer moved to another device (40%),
* a contiguous run of one layer's ops moved, e.g. a block of an LSTM's or a softmax's time
  steps (40%; only layers of more than one op),
* one op moved (20%).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np


class Neighbourhood:
    """Random moves over ``devices`` for a graph whose op ``i`` belongs to layer ``layer_of_op[i]``."""

    def __init__(self, layer_of_op: Sequence[int], devices: Sequence[int]) -> None:
        layers = np.asarray(layer_of_op, dtype=np.int64)
        self.devices = np.asarray(devices, dtype=np.int64)
        self.ops_of_layer = [np.flatnonzero(layers == k) for k in range(int(layers.max()) + 1)]
        self.ops_of_layer = [ops for ops in self.ops_of_layer if len(ops)]
        self.split_layers = [ops for ops in self.ops_of_layer if len(ops) > 1]

    def propose(self, placement: np.ndarray, rng: random.Random) -> np.ndarray:
        moved = np.array(placement, dtype=np.int64, copy=True)
        device = self.devices[rng.randrange(len(self.devices))]
        kind = rng.random()
        if kind < 0.4 or not self.split_layers:
            moved[self.ops_of_layer[rng.randrange(len(self.ops_of_layer))]] = device
        elif kind < 0.8:
            ops = self.split_layers[rng.randrange(len(self.split_layers))]
            a, b = sorted((rng.randrange(len(ops) + 1), rng.randrange(len(ops) + 1)))
            moved[ops[a : max(b, a + 1)]] = device
        else:
            moved[rng.randrange(len(moved))] = device
        return moved


def accept(candidate: float, current: float, temperature: float, rng: random.Random) -> bool:
    """Simulated annealing on step times: always if faster, else with ``exp(-relative loss / T)``."""
    if candidate < current:
        return True
    if not (np.isfinite(candidate) and np.isfinite(current)) or temperature <= 0 or current <= 0:
        return False
    return rng.random() < float(np.exp(-(candidate - current) / (temperature * current)))
