"""Dev harness: drive a strategy's ask/tell loop directly on the NAS-Bench-201 12-epoch table.

The protocol of NAS-Bench-201's scripts: the search sees only the validation accuracy;
after ``budget`` queries it picks the best-validation architecture it saw and is scored
by that architecture's test accuracy. Prints the mean +- std over seeds per dataset,
the queries needed to reach the top 1% (by validation), the first query at which a run
has tried one of the 10 best cells and the best one, and the ask+tell time.

    .venv/bin/python l2l/bench/studies/strong_controller.py model_based --seeds 30 --datasets c10 c100
    .venv/bin/python l2l/bench/studies/strong_controller.py model_based --options '{"train_steps": 10}'

With ``--warm-from c10`` each seed also searches c10 cold first and then each dataset
warm-started from that search (``warm_start`` with its ``get_state()``, as a job does);
the mean best-so-far *validation* curves of cold and warm runs are compared against the
cold runs' final mean, as ``l2l bench nb201 --warm-start-from`` does.

    .venv/bin/python l2l/bench/studies/strong_controller.py model_based --seeds 30 \
        --datasets c100 --warm-from c10
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from controller import Proposal, Result, create_strategy  # noqa: E402
from search_spaces.nb201 import NB201_CELL, params_from_arch_str  # noqa: E402

DATA = Path("/work/shared/data/nb201/nb201_12ep.csv")
SPACE = NB201_CELL.space()
#: Optuna TPE multivariate's mean test accuracy at 100 queries: as the issue quotes it, and as
#: measured by ``l2l bench nb201`` (100 runs; docs/benchmarks/results/nb201_*_model_based_vs_optuna.json).
#: "match" is the first query at which the mean curve reaches the higher of the two.
OPTUNA_MV_ISSUE = {"c10": 88.72, "c100": 60.36, "in16": 36.81}
OPTUNA_MV_BENCH = {"c10": 88.73, "c100": 60.46, "in16": 36.75}
OPTUNA_MV = {ds: max(OPTUNA_MV_ISSUE[ds], OPTUNA_MV_BENCH[ds]) for ds in OPTUNA_MV_ISSUE}
#: Queries at which the mean curve is printed too.
CHECKPOINTS = (30, 40, 50, 60)


def load_table() -> dict[str, tuple[dict[tuple[int, ...], tuple[float, float]], float]]:
    """Per dataset: index tuple -> (valid, test), and the top-1% validation threshold."""
    rows = list(csv.DictReader(DATA.open()))
    keys = [tuple(SPACE.to_indices(params_from_arch_str(r["arch_str"]))) for r in rows]
    tables = {}
    for ds in ("c10", "c100", "in16"):
        valid = [float(r[f"{ds}_valid_12ep"]) for r in rows]
        test = [float(r[f"{ds}_test_12ep"]) for r in rows]
        threshold = sorted(valid, reverse=True)[len(valid) // 100 - 1]
        tables[ds] = (dict(zip(keys, zip(valid, test, strict=True), strict=True)), threshold, max(valid))
    return tables


def run_one(
    name: str, options: dict, seed: int, table: dict, threshold: float, budget: int, warm: dict | None = None
):
    strategy = create_strategy(name, SPACE, seed=seed, options=options)
    if warm is not None:
        strategy.warm_start(warm)
    best_valid, pick_test, curve, hit = -1.0, 0.0, [], None
    valid_curve = []
    seen = set()
    elapsed, last = 0.0, []
    for query in range(1, budget + 1):
        start, cpu = time.perf_counter(), time.process_time()
        proposal = strategy.ask()
        assert isinstance(proposal, Proposal), proposal
        key = tuple(SPACE.to_indices(proposal.params))
        valid, test = table[key]
        strategy.tell(proposal.id, Result(valid))
        elapsed += time.perf_counter() - start
        if query > budget - 100:
            last.append(time.process_time() - cpu)
        seen.add(key)
        if valid > best_valid:
            best_valid, pick_test = valid, test
        if hit is None and valid >= threshold:
            hit = query
        curve.append(pick_test)
        valid_curve.append(best_valid)
    per_query = (elapsed / budget, statistics.mean(last), max(last), sum(t > 0.020 for t in last), len(last))
    return curve, hit, per_query, len(seen), best_valid, valid_curve, strategy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("strategy")
    parser.add_argument("--options", default="{}")
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--datasets", nargs="+", default=["c10", "c100", "in16"])
    parser.add_argument("--warm-from", choices=["c10", "c100", "in16"])
    args = parser.parse_args()
    options = json.loads(args.options)
    tables = load_table()
    print(f"{args.strategy} {options} seeds={args.seeds} budget={args.budget}")
    if args.warm_from:
        compare_warm_start(args, options, tables)
        return
    for ds in args.datasets:
        table, threshold, top = tables[ds]
        curves, hits, times, uniques, found = [], [], [], [], 0
        tenth = sorted((valid for valid, _ in table.values()), reverse=True)[9]
        to_top10, to_best = [], []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            curve, hit, per_query, unique, best, valid_curve, _ = run_one(
                args.strategy, options, seed, table, threshold, args.budget
            )
            to_top10.append(_first_query(valid_curve, tenth, args.budget))
            to_best.append(_first_query(valid_curve, top, args.budget))
            curves.append(curve)
            hits.append(hit)
            times.append(per_query)
            uniques.append(unique)
            found += best == top
        curves_a = np.array(curves)
        final = curves_a[:, 99 if args.budget >= 100 else -1]
        mean_curve = curves_a.mean(axis=0)
        match = next((q + 1 for q, v in enumerate(mean_curve) if v >= OPTUNA_MV[ds]), None)
        reached = [h for h in hits if h is not None]
        median_hit = statistics.median(h if h is not None else args.budget + 1 for h in hits)
        print(
            f"  {ds:5s} test@100 {final.mean():.2f} +- {final.std():.2f}"
            f"  (@{args.budget}: {curves_a[:, -1].mean():.2f})"
            f"  found best {found}/{len(hits)}"
            f"  top1%: reached {len(reached)}/{len(hits)}, median query {median_hit}"
            f"  match optuna-mv({OPTUNA_MV[ds]}) at {match}"
            f"  mean@{'/'.join(map(str, CHECKPOINTS))} "
            + "/".join(f"{mean_curve[q - 1]:.2f}" for q in CHECKPOINTS if q <= len(mean_curve))
            + "  first query at a top-10 cell / the best cell, median (quartiles): "
            + f"{_median_quartiles(to_top10)} / {_median_quartiles(to_best)}"
            + f"  ask+tell {1000 * statistics.mean(t[0] for t in times):.2f} ms"
            f" (last 100, CPU: {1000 * statistics.mean(t[1] for t in times):.2f} ms mean,"
            f" {1000 * max(t[2] for t in times):.2f} ms max,"
            f" {sum(t[3] for t in times)} of {sum(t[4] for t in times)} over 20 ms)"
            f"  dup-free {min(uniques) == args.budget}",
            flush=True,
        )


def _first_query(best_so_far: list[float], value: float, budget: int) -> int:
    """The first query whose best-so-far reaches ``value``; ``budget + 1`` if none does."""
    return next((q + 1 for q, best in enumerate(best_so_far) if best >= value), budget + 1)


def _median_quartiles(queries: list[int]) -> str:
    low, median, high = np.percentile(queries, [25, 50, 75])
    return f"{median:g} ({low:g}-{high:g})"


def compare_warm_start(args: argparse.Namespace, options: dict, tables: dict) -> None:
    """Cold vs warm-started (from ``--warm-from``) mean best validation curves per dataset."""
    source_table, source_threshold, _ = tables[args.warm_from]
    states = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        *_, source = run_one(args.strategy, options, seed, source_table, source_threshold, args.budget)
        states.append(json.loads(json.dumps(source.get_state())))  # as the store keeps it
    for ds in args.datasets:
        table, threshold, _ = tables[ds]
        curves: dict[str, list] = {"cold": [], "warm": []}
        tests: dict[str, list] = {"cold": [], "warm": []}
        for n, seed in enumerate(range(args.first_seed, args.first_seed + args.seeds)):
            for kind, warm in (("cold", None), ("warm", states[n])):
                test_curve, *_, valid_curve, _ = run_one(
                    args.strategy, options, seed, table, threshold, args.budget, warm
                )
                curves[kind].append(valid_curve)
                tests[kind].append(test_curve[-1])
        means = {kind: np.array(c).mean(axis=0) for kind, c in curves.items()}
        target = means["cold"][-1]
        for kind, mean in means.items():
            reach = next((q + 1 for q, v in enumerate(mean) if v >= target - 1e-9), None)
            print(
                f"  {ds:5s} {kind} from {args.warm_from}: best valid @1/10/50/100 "
                + "/".join(f"{mean[q - 1]:.2f}" for q in (1, 10, 50, 100))
                + f"  reaches cold final {target:.2f} at {reach}"
                + f"  test@100 {statistics.mean(tests[kind]):.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
