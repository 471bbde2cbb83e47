"""``l2l bench placement``: every placer at an equal budget of simulator calls, five seeds each.

For each benchmark graph on one cluster, under the simulator's cost model (weight traffic,
recurrent state, optimizer updates, shared links):

* the hand-made placements (:data:`l2l.placement.baselines.BASELINES`): one simulator call
  each, the same whatever the seed;
* random search (op by op, and layer by layer), local search (simulated annealing from the
  best hand-made placement), the learned planner alone (REINFORCE, starting from the best
  hand-made placement), and the learned planner that hands its best placement to local
  search after ``polish_share`` of its budget: each gets ``budget`` simulator calls per seed;
* the lower bound (:func:`l2l.placement.baselines.lower_bound`, weight traffic included).

Each searched method is run with seeds ``0..seeds-1``; the table gives mean ± std (ms).
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from l2l.placement.baselines import BASELINES, HAND_MADE, lower_bound
from l2l.placement.benchmarks import benchmark_graph
from l2l.placement.cluster import Cluster
from l2l.placement.graph import OpGraph
from l2l.placement.local_search import local_search, random_search
from l2l.placement.search import search_placement
from l2l.placement.simulator import Simulator

DEFAULT_GRAPHS = ("rnnlm", "nmt")
#: The planner's options in the benchmark: a smaller policy, a shorter imitation and no XLA (whose
#: compile, once per search, took minutes on a shared 2-core host) keep a run to minutes.
PLANNER_OPTIONS: dict[str, Any] = {"imitation_steps": 10, "groups": 16, "hidden_size": 32, "xla": False}
SEARCHED = ("random_search", "random_layers", "local_search", "learned", "learned+local")

Log = Callable[[str], None]


def _ms(seconds: float) -> float | None:
    return round(seconds * 1000, 3) if math.isfinite(seconds) else None


def bench_graph(
    graph: OpGraph,
    cluster: Cluster,
    *,
    budget: int,
    seeds: int,
    polish_share: float,
    planner_options: Mapping[str, Any],
    log: Log,
    methods_to_run: Sequence[str] = SEARCHED,
) -> dict[str, Any]:
    """One graph: every method's step times (ms) per seed, and the lower bound.

    ``methods_to_run`` picks searched methods (default all; the hand-made ones always run):
    a long run can be split over processes and the rows merged with :func:`merge_documents`."""
    simulator = Simulator(graph, cluster)
    methods: dict[str, dict[str, Any]] = {}
    placements: dict[str, np.ndarray] = {}
    for name, baseline in BASELINES.items():
        placement = baseline(graph, cluster)
        placements[name] = placement
        methods[name] = {"ms": [_ms(simulator.step_time(placement))], "calls": 1, "seconds": 0.0}
    hand_made = {name: methods[name]["ms"][0] for name in HAND_MADE}
    start_name = min((n for n in hand_made if hand_made[n] is not None), key=hand_made.__getitem__)

    def run(name: str, search: Callable[[int], float]) -> None:
        if name not in methods_to_run:
            return
        times, started = [], time.perf_counter()
        for seed in range(seeds):
            times.append(_ms(search(seed)))
            log(f"  {graph.name}: {name} seed {seed}: {times[-1]} ms")
        elapsed = time.perf_counter() - started
        methods[name] = {"ms": times, "calls": budget, "seconds": round(elapsed / seeds, 1)}
        log(f"  {graph.name}: {name} {_format(methods[name])} ms ({elapsed / seeds:.0f} s a seed)")

    run("random_search", lambda seed: random_search(simulator, budget, seed=seed).step_time)
    run("random_layers", lambda seed: random_search(simulator, budget, seed=seed, by_layer=True).step_time)
    run(
        "local_search",
        lambda seed: local_search(simulator, placements[start_name], budget, seed=seed).step_time,
    )
    learned = dict(planner_options)
    run(
        "learned",
        lambda seed: (
            search_placement(
                graph,
                cluster,
                "hierarchical",
                options=learned,
                seed=seed,
                max_samples=budget,
                simulator=simulator,
            ).step_time
        ),
    )
    polished = {**learned, "polish_after": max(1, int(round(polish_share * budget)))}
    run(
        "learned+local",
        lambda seed: (
            search_placement(
                graph,
                cluster,
                "hierarchical",
                options=polished,
                seed=seed,
                max_samples=budget,
                simulator=simulator,
            ).step_time
        ),
    )
    return {
        "graph": graph.name,
        "ops": len(graph),
        "layers": len(graph.layers),
        "lower_bound_ms": _ms(lower_bound(graph, cluster)),
        "local_search_start": start_name,
        "methods": methods,
        "summary": summarise(methods) if set(SEARCHED) <= set(methods) else None,
    }


def merge_documents(documents: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One document from runs of the same settings that each ran some methods or graphs."""
    merged = dict(documents[0])
    rows: dict[str, dict[str, Any]] = {}
    for document in documents:
        for row in document["graphs"]:
            into = rows.setdefault(row["graph"], {**row, "methods": {}})
            into["methods"].update(row["methods"])
    order = list(BASELINES) + list(SEARCHED)
    for row in rows.values():
        row["methods"] = {name: row["methods"][name] for name in order if name in row["methods"]}
        row["summary"] = summarise(row["methods"]) if set(SEARCHED) <= set(row["methods"]) else None
    merged["graphs"] = list(rows.values())
    return merged


def _mean(entry: Mapping[str, Any]) -> float:
    values = [v for v in entry["ms"] if v is not None]
    return statistics.fmean(values) if len(values) == len(entry["ms"]) else math.inf


def summarise(methods: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Ratios of the learned planners' mean step time to the best expert's and the best other method's."""
    experts = {n: _mean(methods[n]) for n in ("expert", "expert_split_softmax")}
    best_expert = min(experts, key=experts.__getitem__)
    out: dict[str, Any] = {"best_expert": best_expert}
    for learned in ("learned", "learned+local"):
        others = {n: _mean(e) for n, e in methods.items() if n not in ("learned", "learned+local")}
        best_other = min(others, key=others.__getitem__)
        mine = _mean(methods[learned])
        out[learned] = {
            "vs_best_expert": round(mine / experts[best_expert], 4),
            "best_other": best_other,
            "vs_best_other": round(mine / others[best_other], 4),
        }
    return out


def run_placement_benchmark(
    graphs: Sequence[str],
    cluster: Cluster,
    *,
    budget: int = 400,
    seeds: int = 5,
    polish_share: float = 0.3,
    planner_options: Mapping[str, Any] | None = None,
    methods: Sequence[str] = SEARCHED,
    log: Log = print,
) -> dict[str, Any]:
    options = dict(PLANNER_OPTIONS if planner_options is None else planner_options)
    rows = []
    for name in graphs:
        graph = benchmark_graph(name)
        log(f"{graph.name}: {len(graph)} ops on {cluster.name}, {budget} simulator calls x {seeds} seeds")
        rows.append(
            bench_graph(
                graph,
                cluster,
                budget=budget,
                seeds=seeds,
                polish_share=polish_share,
                planner_options=options,
                log=log,
                methods_to_run=methods,
            )
        )
    return {
        "cluster": cluster.to_dict(),
        "budget": budget,
        "seeds": seeds,
        "polish_share": polish_share,
        "planner_options": options,
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "graphs": rows,
    }


def _format(entry: Mapping[str, Any]) -> str:
    values = entry["ms"]
    if any(v is None for v in values):
        return "n/f"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.fmean(values):.1f} ± {statistics.pstdev(values):.1f}"


def format_table(document: Mapping[str, Any]) -> str:
    """One row per method, one column per graph (mean ± std ms over seeds), bound and ratios below."""
    rows = document["graphs"]
    names = list(rows[0]["methods"]) if rows else []
    lines = [
        "| method | calls | " + " | ".join(f"{r['graph']} ({r['ops']} ops) ms" for r in rows) + " |",
        "|---|---" + "|---" * len(rows) + "|",
    ]
    for name in names:
        calls = rows[0]["methods"][name]["calls"]
        lines.append(f"| {name} | {calls} | " + " | ".join(_format(r["methods"][name]) for r in rows) + " |")
    lines.append(
        "| lower bound | - | "
        + " | ".join("n/f" if r["lower_bound_ms"] is None else f"{r['lower_bound_ms']:.1f}" for r in rows)
        + " |"
    )
    for learned in ("learned", "learned+local"):
        if any(r["summary"] is None for r in rows):
            break
        lines.append(
            f"| {learned} / best expert | - | "
            + " | ".join(
                f"{r['summary'][learned]['vs_best_expert']:.3f} ({r['summary']['best_expert']})" for r in rows
            )
            + " |"
        )
        lines.append(
            f"| {learned} / best other method | - | "
            + " | ".join(
                f"{r['summary'][learned]['vs_best_other']:.3f} ({r['summary'][learned]['best_other']})"
                for r in rows
            )
            + " |"
        )
    return "\n".join(lines)
