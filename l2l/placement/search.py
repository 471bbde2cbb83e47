"""Run a placement strategy against the simulator: the search behind jobs and the benchmark.

The driver is the placement counterpart of the job loop, without a database: every
proposal is simulated at once (a fraction of a millisecond), so a search tries hundreds
of thousands of placements in minutes. The strategy sees only rewards: ``-sqrt(step
time)`` as in Mirhoseini et al., and for a placement that does not fit in memory the
reward of a step ``oom_penalty`` times as long as running everything on one device.
The result is the fastest placement the strategy proposed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from controller.base import FINISHED, WAIT, Result, Strategy
from controller.placement import create_placement_strategy
from l2l.placement.cluster import Cluster
from l2l.placement.graph import OpGraph
from l2l.placement.simulator import Simulator
from l2l.placement.space import PlacementSpace

Progress = Callable[[dict[str, float]], None]


@dataclass
class PlacementResult:
    placement: np.ndarray
    step_time: float
    samples: int
    seconds: float
    #: (samples so far, seconds so far, best step time so far) each time the best improved.
    history: list[tuple[int, float, float]] = field(default_factory=list)
    strategy_state: dict[str, Any] | None = None


def reward_for(step_time: float, penalty_step_time: float) -> float:
    return -math.sqrt(step_time if math.isfinite(step_time) else penalty_step_time)


def search_placement(
    graph: OpGraph,
    cluster: Cluster,
    strategy: str | Strategy = "hierarchical",
    *,
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    max_seconds: float = 600.0,
    max_samples: int | None = None,
    oom_penalty: float = 3.0,
    progress: Progress | None = None,
    progress_every: float = 5.0,
    simulator: Simulator | None = None,
) -> PlacementResult:
    """Search until ``max_seconds`` or ``max_samples`` (or the strategy finishes).

    ``strategy`` is a registered placement strategy name (built with ``options`` and
    ``seed``) or a ready instance over a :class:`PlacementSpace` of this graph and cluster.
    ``progress`` gets ``{"samples", "seconds", "best_step_time"}`` every ``progress_every``
    seconds.
    """
    simulator = simulator or Simulator(graph, cluster)
    if isinstance(strategy, str):
        strategy = create_placement_strategy(
            strategy, PlacementSpace(graph, cluster), seed=seed, options=options
        )
    serial = float(simulator.op_seconds.min(axis=1).sum() + simulator.backward_seconds.min(axis=1).sum())
    penalty = oom_penalty * serial
    best_time, best = math.inf, None
    history: list[tuple[int, float, float]] = []
    samples = 0
    started = time.perf_counter()
    last_progress = started
    while max_samples is None or samples < max_samples:
        now = time.perf_counter()
        if now - started >= max_seconds:
            break
        if progress is not None and now - last_progress >= progress_every:
            progress({"samples": samples, "seconds": now - started, "best_step_time": best_time})
            last_progress = now
        proposal = strategy.ask()
        if proposal is FINISHED:
            break
        if proposal is WAIT:  # every proposal is told at once, so a strategy has nothing to wait for
            raise RuntimeError(f"{type(strategy).__name__} waited with no proposal outstanding")
        placement = np.asarray(proposal.params["devices"], dtype=np.int64)
        step_time = simulator.step_time(placement)
        samples += 1
        metrics = {"step_time": step_time} if math.isfinite(step_time) else {"out_of_memory": 1.0}
        strategy.tell(proposal.id, Result(reward_for(step_time, penalty), metrics))
        if step_time < best_time:
            best_time, best = step_time, placement
            history.append((samples, time.perf_counter() - started, step_time))
    if best is None:
        raise RuntimeError("the search ended before any placement was tried; give it more time or samples")
    elapsed = time.perf_counter() - started
    if progress is not None:
        progress({"samples": samples, "seconds": elapsed, "best_step_time": best_time})
    return PlacementResult(best, best_time, samples, elapsed, history, strategy.get_state())
