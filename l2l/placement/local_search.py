"""Searches without learning, given a budget of simulator calls: the bars a learned planner must clear.

* :func:`random_search`: ``budget`` uniformly random placements (op by op, or layer by layer
  with ``by_layer``), the best kept.
* :func:`local_search`: simulated annealing from a start placement (the best hand-made one).
  Each round proposes ``batch`` neighbours of the current placement (move a whole layer, a
  contiguous run of a layer's ops such as a block of time steps, or one op to another
  accelerator), simulates them together, takes the best; it is accepted if faster, or with
  probability ``exp(-(worse - current) / (T * current))``, the temperature ``T`` falling
  linearly to zero over the budget (so the end is plain hill climbing).

Every simulated placement counts against the budget, so results compare at equal cost with
the learned planner's (whose every proposal is one simulator call). Same seed, same result.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np

from controller.placement.moves import Neighbourhood, accept
from l2l.placement.simulator import Simulator


@dataclass
class SearchOutcome:
    placement: np.ndarray
    step_time: float
    #: Simulator calls spent.
    calls: int
    #: (calls so far, best step time so far) each time the best improved.
    history: list[tuple[int, float]] = field(default_factory=list)


def random_search(
    simulator: Simulator, budget: int, *, seed: int = 0, by_layer: bool = False, batch: int = 64
) -> SearchOutcome:
    """The fastest of ``budget`` random placements over the accelerators."""
    rng = np.random.default_rng(seed)
    accelerators = np.array(simulator.cluster.accelerators(), dtype=np.int64)
    layer_of_op = np.array(simulator.graph.layer_of_ops(), dtype=np.int64)
    n_layers = int(layer_of_op.max()) + 1
    best, best_time, calls, history = None, math.inf, 0, []
    while calls < budget:
        size = min(batch, budget - calls)
        if by_layer:
            placements = accelerators[rng.integers(0, len(accelerators), (size, n_layers))][:, layer_of_op]
        else:
            placements = accelerators[rng.integers(0, len(accelerators), (size, len(layer_of_op)))]
        times = simulator.step_times(placements)
        calls += size
        k = int(np.argmin(times))
        if times[k] < best_time:
            best, best_time = placements[k].copy(), float(times[k])
            history.append((calls, best_time))
    if best is None:
        raise ValueError("a random search needs a budget of at least one placement")
    return SearchOutcome(best, best_time, calls, history)


def local_search(
    simulator: Simulator,
    start: np.ndarray,
    budget: int,
    *,
    seed: int = 0,
    batch: int = 16,
    temperature: float = 0.02,
) -> SearchOutcome:
    """Simulated annealing from ``start`` for ``budget`` simulator calls (the start is one of them)."""
    rng = random.Random(seed)
    neighbours = Neighbourhood(simulator.graph.layer_of_ops(), simulator.cluster.accelerators())
    current = simulator.check(start).copy()
    current_time = simulator.step_time(current)
    best, best_time, calls = current.copy(), current_time, 1
    history = [(calls, best_time)]
    while calls < budget:
        size = min(batch, budget - calls)
        candidates = np.stack([neighbours.propose(current, rng) for _ in range(size)])
        times = simulator.step_times(candidates)
        calls += size
        k = int(np.argmin(times))
        chosen = float(times[k])
        if accept(chosen, current_time, temperature * max(0.0, 1.0 - calls / budget), rng):
            current, current_time = candidates[k], chosen
        if chosen < best_time:
            best, best_time = candidates[k].copy(), chosen
            history.append((calls, best_time))
    return SearchOutcome(best, best_time, calls, history)
