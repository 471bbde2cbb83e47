"""``l2l bench nb201 ...`` and ``l2l bench plot ...``: the benchmark's command line.

Kept apart from :mod:`l2l.client.cli` so that the main command line only adds a sub-command
here and imports nothing of the benchmark until it runs.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from search_spaces.nb201 import TABULAR_DATASETS


def add_bench_parser(commands: Any) -> None:
    """Add ``bench`` with its ``nb201`` and ``plot`` sub-commands to ``commands`` (argparse subparsers)."""
    bench = commands.add_parser("bench", help="benchmarks: NAS-Bench-201, placement, report load, training")
    which = bench.add_subparsers(dest="bench_command", required=True)
    nb201 = which.add_parser("nb201", help="run searches on the NAS-Bench-201 table and write results JSON")
    nb201.add_argument("--dataset", choices=TABULAR_DATASETS, default="cifar10")
    nb201.add_argument(
        "--strategy",
        action="append",
        required=True,
        help="a registered strategy (repeat for several); options as NAME='{\"key\": value}'",
    )
    nb201.add_argument("--budget", type=int, default=100, help="queries per run (default 100)")
    nb201.add_argument("--runs", type=int, default=100, help="runs per strategy, seeds 0.. (default 100)")
    nb201.add_argument("--table", help="the nb201_12ep.csv file (default: $L2L_NB201_TABLE or ../shared)")
    nb201.add_argument(
        "--warm-start-from",
        choices=TABULAR_DATASETS,
        help="also run each strategy warm-started from a cold search on this dataset (same seed)",
    )
    nb201.add_argument(
        "--objective",
        type=json.loads,
        help='the jobs\' objective as JSON, e.g. \'{"metric": "val_accuracy", "cost": "parameters", '
        '"target": 500000, "weight": -0.07}\' (MnasNet); default val_accuracy',
    )
    nb201.add_argument("--out", required=True, help="results JSON file")
    lcbench = which.add_parser(
        "lcbench", help="multi-fidelity search on LCBench (YAHPO Gym's surrogate): ours beside the peers"
    )
    lcbench.add_argument(
        "--method",
        action="append",
        help="a peer (random, optuna_tpe_mv, optuna_tpe_hyperband, random_sh, hyperband), ours, or "
        "STRATEGY[+RULE[:key=value,...]] (repeat; default: the five peers and ours)",
    )
    lcbench.add_argument("--task", action="append", help="an OpenML task id (repeat; default: the eight)")
    lcbench.add_argument(
        "--seeds",
        type=int,
        default=30,
        help="seeds 0.. per task (default 30; with --merge, keep seeds below this)",
    )
    lcbench.add_argument("--data", help="the folder with model.onnx (default ../shared/data/lcbench)")
    lcbench.add_argument("--json", help="also write the raw results here")
    lcbench.add_argument(
        "--merge",
        nargs="+",
        help="instead of running, merge these --json files (other tasks, seeds or methods; --method "
        "picks which) into --out",
    )
    lcbench.add_argument("--out", required=True, help="the markdown report, e.g. docs/benchmarks/lcbench.md")
    placement = which.add_parser(
        "placement", help="learned device placement vs baselines and the lower bound on benchmark graphs"
    )
    placement.add_argument(
        "--graph", action="append", help="a benchmark graph (repeat for several; default: rnnlm and nmt)"
    )
    placement.add_argument("--cluster", default="4gpu-pcie", help="a ready-made cluster (default 4gpu-pcie)")
    placement.add_argument(
        "--budget", type=int, default=400, help="simulator calls per searched method and seed (default 400)"
    )
    placement.add_argument("--seeds", type=int, default=5, help="seeds per searched method (default 5)")
    placement.add_argument(
        "--polish-share",
        type=float,
        default=0.3,
        help="share of the learned+local planner's budget spent learning before local search (default 0.3)",
    )
    placement.add_argument(
        "--options", type=json.loads, default=None, help="the hierarchical planner's options as JSON"
    )
    placement.add_argument(
        "--method",
        action="append",
        help="run only this searched method (repeat; default all): random_search, random_layers, "
        "local_search, learned, learned+local",
    )
    placement.add_argument("--out", help="results JSON file")
    check = which.add_parser(
        "placement-check",
        help="real multi-device training steps (JAX, virtual CPU devices) against the simulator's prediction",
    )
    check.add_argument(
        "--model", default="mlp", help="a check model: mlp, cnn, lstm, nmt, towers, tiny (default mlp)"
    )
    check.add_argument("--devices", type=int, default=4, help="virtual CPU devices (default 4)")
    check.add_argument(
        "--hardware",
        default="cpu",
        help="cpu: --devices virtual CPU devices; gpu+cpu: the first GPU and the host CPU",
    )
    check.add_argument("--steps", type=int, default=20, help="timed steps per placement (default 20)")
    match = which.add_parser(
        "match",
        help="queries each strategy of a results file needs to match its strongest peer, "
        "with a bootstrap interval",
    )
    match.add_argument("results", nargs="+", help="results JSON files of `l2l bench nb201`")
    reports = which.add_parser(
        "reports",
        help="POST /trials/{id}/report under load from many concurrent workers (wrk), exactly-once checked",
    )
    reports.add_argument(
        "--database", action="append", choices=["sqlite", "postgresql"], help="repeat for both (default both)"
    )
    reports.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run (default 15)")
    reports.add_argument("--connections", type=int, default=50, help="concurrent clients (default 50)")
    reports.add_argument(
        "--workers", type=int, action="append", help="uvicorn worker processes (repeat to compare; default 1)"
    )
    reports.add_argument("--trials", type=int, default=200, help="running trials reported on (default 200)")
    reports.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (default 2)")
    reports.add_argument(
        "--server-path",
        type=Path,
        help="run the service from this checkout instead (e.g. a worktree of the code before a change)",
    )
    reports.add_argument(
        "--compare-with",
        type=Path,
        help="also run the service from this checkout, just before each run of this one (side by side)",
    )
    reports.add_argument(
        "--postgres-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="an admin URL; a fresh database is made beside it and dropped after",
    )
    reports.add_argument(
        "--rate", type=float, default=0.0,
        help="offered reports/s over all clients (each waits connections/rate s after an answer); "
        "default 0: as fast as the service answers",
    )  # fmt: skip
    reports.add_argument("--out", help="append the results (JSON) to this file")
    overhead = which.add_parser(
        "overhead",
        help="a trial's cost beyond training: l2l vs Ray Tune (with and without actor reuse) vs a plain loop",
    )
    overhead.add_argument("--trials", type=int, default=20)
    overhead.add_argument("--concurrency", type=int, default=2)
    overhead.add_argument("--epochs", type=int, default=2)
    overhead.add_argument("--repeats", type=int, default=3)
    overhead.add_argument("--noop-trials", type=int, default=200, help="tabular no-op trials (0: skip)")
    overhead.add_argument(
        "--contender", action="append", choices=["l2l", "tune_reuse", "tune_no_reuse", "plain", "none"],
        help="run only these (repeat; default all; 'none' with --noop-trials for the no-op part alone)",
    )  # fmt: skip
    overhead.add_argument(
        "--no-reuse-trials", type=int, help="trials of Ray Tune without actor reuse (default --trials)"
    )
    overhead.add_argument("--out", help="results JSON file")
    training = which.add_parser(
        "training",
        help="real training for a wall-clock budget: l2l with and without ASHA, KerasTuner's Hyperband, "
        "Ray Tune's ASHA with Optuna; test accuracy of each budget's pick",
    )
    training.add_argument(
        "--budget-minutes", type=float, action="append",
        help="a budget to report (repeat; default 5, 10 and 20); one search runs for the largest",
    )  # fmt: skip
    training.add_argument("--seeds", type=int, default=3, help="seeds 0.. per contender (default 3)")
    training.add_argument(
        "--contender", action="append",
        choices=["l2l", "l2l_asha", "kt_hyperband", "tune_asha_optuna"],
        help="run only these (repeat; default all)",
    )  # fmt: skip
    training.add_argument("--dataset", choices=["generated", "digits"], default="generated")
    training.add_argument("--epochs", type=int, default=27, help="most epochs of a trial (default 27)")
    training.add_argument("--concurrency", type=int, default=2, help="trials at a time (default 2)")
    training.add_argument("--out", help="results JSON file (rewritten after each run)")
    from l2l.bench.gpu_packing import add_arguments as add_gpu_packing_arguments

    add_gpu_packing_arguments(
        which.add_parser(
            "gpu-packing",
            help="nb201_cell trials on one GPU under JAX: one at a time vs packed side by side",
        )
    )
    plot = which.add_parser("plot", help="draw best-so-far curves of results files into one PNG")
    plot.add_argument("results", nargs="+", help="results JSON files of `l2l bench nb201`")
    plot.add_argument("--out", required=True, help="the PNG to write")
    plot.add_argument("--title")


def run_bench(args: argparse.Namespace) -> int:
    if args.bench_command == "reports":
        return _run_reports(args)
    if args.bench_command == "placement":
        return _run_placement(args)
    if args.bench_command == "placement-check":
        from l2l.placement.realstep import format_report, run_check

        try:
            report = run_check(args.model, devices=args.devices, steps=args.steps, hardware=args.hardware)
        except ValueError as error:
            print(f"l2l: {error}", file=sys.stderr)
            return 2
        print(format_report(report))
        return 0
    if args.bench_command == "lcbench":
        return _run_lcbench(args)
    if args.bench_command == "gpu-packing":
        from l2l.bench.gpu_packing import run as run_gpu_packing

        return run_gpu_packing(args)
    if args.bench_command == "overhead":
        return _run_overhead(args)
    if args.bench_command == "training":
        return _run_training(args)
    if args.bench_command == "match":
        return _print_matches_of_files(args.results)
    if args.bench_command == "plot":
        from l2l.bench.plot import load_results, plot_curves

        print(f"wrote {plot_curves(load_results(args.results), args.out, args.title)}")
        return 0
    from l2l.bench.nb201 import format_table, print_progress, run_benchmark
    from search_spaces.nb201_table import load_table

    strategies = [_strategy(text) for text in args.strategy]
    table = load_table(args.table, with_test=True)
    document = run_benchmark(
        strategies,
        args.dataset,
        budget=args.budget,
        runs=args.runs,
        table=table,
        progress=print_progress,
        warm_start_from=args.warm_start_from,
        objective=args.objective,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print(format_table([document]))
    for label, entry in document["strategies"].items():
        summary = entry["summary"]
        print(
            f"{label}: Pareto front (valid accuracy vs {entry['runs'][0]['cost_metric']}) of "
            f"{summary['pareto_front_size_mean']:.1f} trials, hypervolume {summary['hypervolume_mean']:.4f}"
        )
    _print_matches(document.get("queries_to_match", {}), args.budget)
    for label, effect in document.get("warm_start", {}).items():
        print(
            f"{label}: cold reaches its final mean valid {effect['target_valid_mean']:.2f}% at query "
            f"{effect['cold_queries']}; warm-started from {effect['from']} at query {effect['warm_queries']}"
        )
    print(f"wrote {out}")
    return 0


def _print_matches(matches: dict[str, Any], budget: int) -> None:
    for label, match in matches.items():
        low, high = (query or "never" for query in match["queries_interval"])
        queries = match["queries"]
        reached = f"at query {queries}" if queries else f"within none of the {budget} queries"
        print(
            f"{label}: mean test accuracy of the pick reaches {match['peer']}'s "
            f"{match['peer_test_mean']:.2f}% (after {budget} queries) {reached} "
            f"(90% bootstrap interval over the seeds: {low} to {high})"
        )


def _print_matches_of_files(paths: list[str]) -> int:
    """Recompute "queries to match" from the runs in results files (older files lack the interval)."""
    from l2l.bench.nb201 import matches_from_curves
    from l2l.bench.plot import load_results

    for path in paths:
        try:
            document = load_results([path])[0]
            curves = {
                label: [run["test_so_far"] for run in entry["runs"]]
                for label, entry in document["strategies"].items()
            }
            if len(curves) < 2:
                print(f"l2l: {path} holds one strategy; matching needs two or more", file=sys.stderr)
                return 2
            matches = matches_from_curves(curves)
            header = f"{path} ({document['dataset']}, {document['runs']} runs):"
            budget = document["budget"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            print(f"l2l: {path} is not a results file of `l2l bench nb201` ({error})", file=sys.stderr)
            return 2
        print(header)
        _print_matches(matches, budget)
    return 0


def _run_lcbench(args: argparse.Namespace) -> int:
    from l2l.bench import lcbench

    if args.merge:
        try:
            documents = [json.loads(Path(path).read_text()) for path in args.merge]
            document = lcbench.merge(documents, args.method, args.seeds)
        except (OSError, ValueError, KeyError) as error:
            print(f"l2l: cannot merge these results: {error}", file=sys.stderr)
            return 2
    else:
        try:
            surrogate = lcbench.Surrogate(args.data or lcbench.DEFAULT_DATA)
        except (FileNotFoundError, ImportError) as error:
            print(f"l2l: {error} (onnxruntime comes with the bench extra)", file=sys.stderr)
            return 2
        unknown = sorted(set(args.task or []) - set(surrogate.codes))
        if unknown:
            print(
                f"l2l: LCBench has no task {unknown[0]}; its tasks: {sorted(surrogate.codes)}",
                file=sys.stderr,
            )
            return 2
        document = lcbench.run_benchmark(
            args.method or [*lcbench.PEERS, "ours"],
            args.task or lcbench.TASKS,
            range(args.seeds),
            surrogate,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    if args.json:
        Path(args.json).write_text(json.dumps(document))
    command = "l2l " + shlex.join(sys.argv[1:])
    Path(args.out).write_text(lcbench.format_report(document, command))
    print(Path(args.out).read_text())
    return 0


def _strategy(text: str) -> str | tuple[str, dict[str, Any]]:
    name, _, options = text.partition("=")
    if not options:
        return name
    parsed = json.loads(options)
    if not isinstance(parsed, dict):
        raise SystemExit(f"l2l bench: options of {name} must be a JSON object, got {options!r}")
    return name, parsed


def _run_reports(args: argparse.Namespace) -> int:
    from l2l.bench.report_load import WRK, format_results, main_reports, results_document

    if not Path(WRK).exists():
        print("l2l: the report benchmark needs wrk (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2
    results = main_reports(
        args.database or ["sqlite", "postgresql"],
        seconds=args.seconds,
        connections=args.connections,
        workers=args.workers or [1],
        trials=args.trials,
        wrk_threads=args.wrk_threads,
        server_paths=([args.compare_with] if args.compare_with else []) + [args.server_path],
        postgres_admin_url=args.postgres_url,
        rate=args.rate,
        progress=lambda result: print(format_results([result]).splitlines()[-1], flush=True),
    )
    print(format_results(results))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(results_document(results)) + "\n")
        print(f"appended to {out}")
    return 0 if all(result.exactly_once for result in results) else 1


def _run_placement(args: argparse.Namespace) -> int:
    from controller.placement import check_placement_options
    from l2l.bench.placement import DEFAULT_GRAPHS, SEARCHED, format_table, run_placement_benchmark
    from l2l.placement.benchmarks import BENCHMARK_GRAPHS
    from l2l.placement.cluster import get_cluster

    graphs = args.graph or list(DEFAULT_GRAPHS)
    unknown = [g for g in graphs if g not in BENCHMARK_GRAPHS]
    try:
        if unknown:
            raise ValueError(
                f"unknown benchmark graph(s) {unknown}; choose from {', '.join(BENCHMARK_GRAPHS)}"
            )
        if set(args.method or ()) - set(SEARCHED):
            raise ValueError(f"unknown method(s); choose from {', '.join(SEARCHED)}")
        if args.budget < 10 or args.seeds < 1 or not 0 < args.polish_share < 1:
            raise ValueError("--budget must be >= 10, --seeds >= 1 and --polish-share between 0 and 1")
        cluster = get_cluster(args.cluster)
        if args.options is not None:
            check_placement_options("hierarchical", args.options)
    except ValueError as error:  # ClusterError and StrategyError too: one line, no traceback
        print(f"l2l: {error}", file=sys.stderr)
        return 2
    document = run_placement_benchmark(
        graphs,
        cluster,
        budget=args.budget,
        seeds=args.seeds,
        polish_share=args.polish_share,
        planner_options=args.options,
        methods=args.method or SEARCHED,
        log=lambda line: print(line, flush=True),
    )
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print(format_table(document))
    return 0


def _run_overhead(args: argparse.Namespace) -> int:
    from l2l.bench.overhead import CONTENDERS, format_report, run_overhead

    if args.trials <= args.concurrency:
        print("l2l: --trials must be more than --concurrency (the first trials warm up)", file=sys.stderr)
        return 2
    document = run_overhead(
        trials=args.trials,
        concurrency=args.concurrency,
        epochs=args.epochs,
        repeats=args.repeats,
        noop_trials=args.noop_trials,
        contenders=tuple(name for name in args.contender or CONTENDERS if name != "none"),
        no_reuse_trials=args.no_reuse_trials,
        log=lambda line: print(line, flush=True),
        checkpoint=lambda document: _write_json(args.out, document),
    )
    _write_json(args.out, document)
    print(format_report(document))
    return 0


def _run_training(args: argparse.Namespace) -> int:
    from l2l.bench.training import DEFAULT_BUDGET_MINUTES, format_report, run_training

    budgets = args.budget_minutes or list(DEFAULT_BUDGET_MINUTES)
    if min(budgets) <= 0 or args.seeds < 1 or args.epochs < 2 or args.concurrency < 1:
        print(
            "l2l: --budget-minutes must be positive, --seeds and --concurrency at least 1, "
            "--epochs at least 2 (early stopping's first rung is at 1)",
            file=sys.stderr,
        )
        return 2
    document = run_training(
        contenders=args.contender or ["l2l", "l2l_asha", "kt_hyperband", "tune_asha_optuna"],
        seeds=args.seeds,
        budget_minutes=budgets,
        dataset=args.dataset,
        epochs=args.epochs,
        concurrency=args.concurrency,
        log=lambda line: print(line, flush=True),
        checkpoint=lambda document: _write_json(args.out, document),
    )
    _write_json(args.out, document)
    print(format_report(document))
    return 0 if not any("error" in run for run in document["runs"]) else 1


def _write_json(path: str | None, document: dict[str, Any]) -> None:
    if path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
