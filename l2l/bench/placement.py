"""``l2l bench placement``: learned placements against the baselines and the lower bound.

For each benchmark graph on one cluster: every baseline's simulated step time, the lower
bound, the placement the learned planner found in ``seconds`` of search, and the ratios.
With ``generalise``, a planner trained on one member of a family (an NMT, an RNNLM) places
a bigger, unseen member without retraining, next to a fresh search on it.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from l2l.placement.baselines import evaluate_baselines, lower_bound
from l2l.placement.benchmarks import benchmark_graph
from l2l.placement.cluster import Cluster
from l2l.placement.graph import OpGraph
from l2l.placement.search import PlacementResult, search_placement
from l2l.placement.simulator import Simulator

DEFAULT_GRAPHS = ("inception_v3", "resnet50", "nasnet", "rnnlm", "nmt")

#: Trained on the first, placed without retraining on the second: bigger members of the family.
GENERALISATION = (
    (("nmt", {}), ("nmt", {"layers": 6, "seq_len": 50})),
    (("rnnlm", {}), ("rnnlm", {"seq_len": 60})),
)

Log = Callable[[str], None]


def _ms(seconds: float) -> float | None:
    return round(seconds * 1000, 3) if math.isfinite(seconds) else None


def _time_to_reach(result: PlacementResult, target: float) -> float | None:
    """Seconds the search needed to first reach a step time <= ``target``."""
    return next((round(s, 2) for _, s, best in result.history if best <= target * (1 + 1e-9)), None)


def bench_graph(
    graph: OpGraph,
    cluster: Cluster,
    *,
    strategy: str,
    options: Mapping[str, Any],
    seconds: float,
    seed: int,
    log: Log,
) -> dict[str, Any]:
    simulator = Simulator(graph, cluster)
    baselines = {name: step for name, (_, step) in evaluate_baselines(simulator).items()}
    bound = lower_bound(graph, cluster)
    result = search_placement(
        graph,
        cluster,
        strategy,
        options=options,
        seed=seed,
        max_seconds=seconds,
        simulator=simulator,
        progress=lambda p: log(
            f"  {graph.name}: {p['samples']:.0f} placements in {p['seconds']:.0f} s, "
            f"best {p['best_step_time'] * 1000:.1f} ms"
        ),
        progress_every=30,
    )
    finite = {name: step for name, step in baselines.items() if math.isfinite(step)}
    best_name = min(finite, key=finite.__getitem__) if finite else None
    learned = result.step_time

    def ratio(other: float) -> float | None:
        return round(learned / other, 4) if math.isfinite(other) and math.isfinite(learned) else None

    return {
        "graph": graph.name,
        "ops": len(graph),
        "layers": len(graph.layers),
        "baselines_ms": {name: _ms(step) for name, step in baselines.items()},
        "best_baseline": best_name,
        "learned_ms": _ms(learned),
        "lower_bound_ms": _ms(bound),
        "learned_vs_expert": ratio(baselines["expert"]),
        "learned_vs_best_baseline": ratio(finite[best_name]) if best_name else None,
        "learned_vs_lower_bound": ratio(bound),
        "search_seconds": round(result.seconds, 1),
        "placements_tried": result.samples,
        "seconds_to_beat_expert": _time_to_reach(result, baselines["expert"] * (1 - 1e-6)),
        "placement": result.placement.tolist(),
    }


def bench_generalisation(
    cluster: Cluster,
    *,
    strategy: str,
    options: Mapping[str, Any],
    seconds: float,
    zero_shot_samples: int,
    seed: int,
    log: Log,
) -> list[dict[str, Any]]:
    """Train on a family member, place the unseen one from the trained policy (no updates)."""
    from controller.placement import create_placement_strategy
    from l2l.placement.space import PlacementSpace

    rows = []
    for (train_name, train_sizes), (test_name, test_sizes) in GENERALISATION:
        train_graph = benchmark_graph(train_name, **train_sizes)
        test_graph = benchmark_graph(test_name, **test_sizes)
        log(f"generalisation: training on {train_graph.name}, placing {test_graph.name}")
        trained = search_placement(
            train_graph, cluster, strategy, options=options, seed=seed, max_seconds=seconds
        )
        # No retraining: learning rate 0, no hints, no fitting to a baseline; the trained policy's samples
        frozen = {**options, "learning_rate": 0.0, "start_from_baseline": False, "try_hints": False}
        placer = create_placement_strategy(
            strategy, PlacementSpace(test_graph, cluster), seed=seed, options=frozen
        )
        placer.warm_start(trained.strategy_state or {})
        started = time.perf_counter()
        zero_shot = search_placement(test_graph, cluster, placer, max_samples=zero_shot_samples)
        zero_shot_seconds = time.perf_counter() - started
        fresh = search_placement(
            test_graph, cluster, strategy, options=options, seed=seed, max_seconds=seconds
        )
        simulator = Simulator(test_graph, cluster)
        expert_ms = evaluate_baselines(simulator)["expert"][1]
        reach = _time_to_reach(fresh, zero_shot.step_time)
        rows.append(
            {
                "trained_on": train_graph.name,
                "placed": test_graph.name,
                "ops": len(test_graph),
                "expert_ms": _ms(expert_ms),
                "zero_shot_ms": _ms(zero_shot.step_time),
                "zero_shot_seconds": round(zero_shot_seconds, 1),
                "zero_shot_samples": zero_shot.samples,
                "fresh_search_ms": _ms(fresh.step_time),
                "fresh_search_seconds": round(fresh.seconds, 1),
                "zero_shot_vs_fresh": round(zero_shot.step_time / fresh.step_time, 4),
                "fresh_search_seconds_to_match_zero_shot": reach,
            }
        )
    return rows


def run_placement_benchmark(
    graphs: Sequence[str],
    cluster: Cluster,
    *,
    strategy: str = "hierarchical",
    options: Mapping[str, Any] | None = None,
    seconds: float = 300.0,
    seed: int = 0,
    generalise: bool = False,
    zero_shot_samples: int = 2000,
    log: Log = print,
) -> dict[str, Any]:
    options = dict(options or {})
    rows = []
    for name in graphs:
        graph = benchmark_graph(name)
        log(f"{graph.name}: {len(graph)} ops on {cluster.name}, searching for {seconds:.0f} s")
        rows.append(
            bench_graph(
                graph, cluster, strategy=strategy, options=options, seconds=seconds, seed=seed, log=log
            )
        )
    document: dict[str, Any] = {
        "cluster": cluster.to_dict(),
        "strategy": strategy,
        "options": options,
        "seconds": seconds,
        "seed": seed,
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "graphs": rows,
    }
    if generalise:
        document["generalisation"] = bench_generalisation(
            cluster,
            strategy=strategy,
            options=options,
            seconds=seconds,
            zero_shot_samples=zero_shot_samples,
            seed=seed,
            log=log,
        )
    return document


def format_table(document: Mapping[str, Any]) -> str:
    names = list(document["graphs"][0]["baselines_ms"]) if document["graphs"] else []

    def cell(value: float | None) -> str:
        return "n/f" if value is None else f"{value:.1f}"

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = [
        "| graph | ops | " + " | ".join(names) + " | learned | lower bound | learned/expert | "
        "learned/best baseline | learned/bound | search s |",
        "|---" * (len(names) + 8) + "|",
    ]
    for row in document["graphs"]:
        lines.append(
            f"| {row['graph']} | {row['ops']} | "
            + " | ".join(cell(row["baselines_ms"][n]) for n in names)
            + f" | {cell(row['learned_ms'])} | {cell(row['lower_bound_ms'])} | "
            f"{ratio(row['learned_vs_expert'])} | "
            f"{ratio(row['learned_vs_best_baseline'])} ({row['best_baseline']}) | "
            f"{ratio(row['learned_vs_lower_bound'])} | {row['search_seconds']:.0f} |"
        )
    generalisation = document.get("generalisation")
    if generalisation:
        lines += [
            "",
            "| trained on | placed (unseen) | expert | zero-shot (s) | fresh search (s) | zero-shot/fresh | "
            "fresh search s to match zero-shot |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in generalisation:
            lines.append(
                f"| {row['trained_on']} | {row['placed']} | {cell(row['expert_ms'])} | "
                f"{cell(row['zero_shot_ms'])} ({row['zero_shot_seconds']:.0f}) | "
                f"{cell(row['fresh_search_ms'])} ({row['fresh_search_seconds']:.0f}) | "
                f"{row['zero_shot_vs_fresh']:.3f} | {row['fresh_search_seconds_to_match_zero_shot']} |"
            )
    return "\n".join(lines)


def placement_of(row: Mapping[str, Any]) -> np.ndarray:
    return np.asarray(row["placement"], np.int64)
