"""The worker side of device placement, called from :func:`l2l.worker.trainer.run_trial`.

* :func:`run_placement` is a placement job's one trial: build the op graph, score the
  baselines and the lower bound, run the placement search (its best step time so far
  reported as an epoch every few seconds), send the result document (the placement, the
  graph, the simulated timelines of the learned and the expert placement, the baselines
  and the bound), then the final metrics. The document goes first, so a job that
  completes always has one.
* :func:`placed_step_time` is the hardware-aware search's cost: the simulated step time of
  a trained model placed by a baseline.

Graphs that cannot be built, clusters that cannot be read and searches that find nothing
that fits in memory raise :class:`~l2l.worker.executor.TrialBuildError`: retrying would not help.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from l2l.placement.apply import jax_code, layer_devices, split_layers, tensorflow_code
from l2l.placement.baselines import BASELINES, evaluate_baselines, lower_bound
from l2l.placement.cluster import Cluster, ClusterError, get_cluster
from l2l.placement.graph import GraphError, OpGraph
from l2l.placement.search import PlacementResult, search_placement
from l2l.placement.simulator import Simulation, Simulator
from l2l.worker.executor import DEFAULT_BATCH_SIZE, TrialBuildError, TrialTask

log = logging.getLogger(__name__)

#: Version of the result document's shape (GET /jobs/{id}/placement).
DOCUMENT_VERSION = 2
#: At most this many points of the best-so-far history go into the document.
HISTORY_POINTS = 200

_NOTHING_FITS = (
    "the search found no placement that fits in the devices' memory: place on a cluster with more "
    "or larger devices, use a smaller batch, or give the search more time"
)


class PlacementReporter(Protocol):
    """Where a placement trial reports: :class:`~l2l.worker.reporter.Reporter` or a test's stand-in."""

    def step(self, step: int, metrics: Mapping[str, Any]) -> Any: ...

    def final(self, metrics: Mapping[str, Any], step: int | None = None) -> Any: ...

    def placement(self, document: Mapping[str, Any]) -> Any: ...


def run_placement(task: TrialTask, reporter: PlacementReporter) -> dict[str, Any]:
    """Search a placement as ``task.placement`` says, report it, and return the final metrics."""
    spec = task.placement
    if spec is None:
        raise TrialBuildError("a placement task needs its 'placement' section")
    graph = build_graph(spec["graph"], spec.get("batch_size"))
    cluster = _cluster(spec["cluster"])
    simulator = Simulator(graph, cluster)
    baselines = evaluate_baselines(simulator)
    bound = lower_bound(graph, cluster)
    steps = itertools.count()

    def progress(info: Mapping[str, float]) -> None:
        reporter.step(
            next(steps),
            {
                "best_step_time_ms": _ms(info["best_step_time"]),
                "samples": info["samples"],
                "seconds": info["seconds"],
            },
        )

    strategy = spec["strategy"]
    try:
        result = search_placement(
            graph,
            cluster,
            strategy["name"],
            options=strategy.get("options"),
            seed=task.seed,
            max_seconds=float(spec["max_seconds"]),
            progress=progress,
            progress_every=float(spec.get("progress_seconds", 5.0)),
            simulator=simulator,
        )
    except RuntimeError as error:
        # search_placement's way of saying it kept no placement: none fitted in memory (or none was
        # tried); any other RuntimeError (a strategy's) stays an error the job loop may retry.
        if "before any placement was tried" not in str(error):
            raise
        raise TrialBuildError(f"{_NOTHING_FITS} ({error})") from error
    if not math.isfinite(result.step_time):
        raise TrialBuildError(f"{_NOTHING_FITS} ({result.samples} tried)")
    metrics = placement_metrics(result, baselines, bound)
    reporter.placement(result_document(simulator, result, baselines, bound, strategy))
    reporter.final(metrics)
    return metrics


def build_graph(source: Mapping[str, Any], batch_size: int | None = None) -> OpGraph:
    """The op graph a placement job's ``graph`` source (resolved by the job loop) describes."""
    try:
        if "graph_path" in source:
            return OpGraph.from_json(Path(source["graph_path"]).read_text())
        if "benchmark" in source:
            from l2l.placement.benchmarks import benchmark_graph, check_benchmark_options

            options = dict(source.get("options") or {})
            check_benchmark_options(source["benchmark"], options)  # sizes only, never cache_dir
            return benchmark_graph(source["benchmark"], **options)
        return _model_graph(source, batch_size)
    except TrialBuildError:
        raise
    except (GraphError, ValueError, TypeError, OSError) as error:
        raise TrialBuildError(f"cannot build the graph to place: {error}") from error


def _model_graph(source: Mapping[str, Any], batch_size: int | None) -> OpGraph:
    """An earlier job's model: its final model's file, or its best architecture rebuilt."""
    from l2l.placement.keras_graph import graph_from_keras
    from search_spaces import batch_size_for, get_space

    space = get_space(source["space"])
    model = None
    if "model_path" in source:
        import keras

        try:
            model = keras.saving.load_model(source["model_path"], compile=False)
        except Exception as error:  # e.g. a custom layer Keras cannot load: rebuild it instead
            log.warning("cannot load %s (%s); rebuilding the architecture", source["model_path"], error)
    if model is None:
        from l2l.service.datasets import load_dataset

        dataset = source["dataset"]
        data = load_dataset(dataset, seed=dataset.get("split_seed", 0))
        try:
            model = space.load_builder()(source["params"], data.info, space.settings)
        except Exception as error:
            raise TrialBuildError(f"cannot build a model from {source['params']}: {error!r}") from error
    batch = batch_size or batch_size_for(space, source["params"], DEFAULT_BATCH_SIZE)
    return graph_from_keras(model, int(batch))


def _cluster(given: str | Mapping[str, Any]) -> Cluster:
    try:
        return get_cluster(given)
    except ClusterError as error:
        raise TrialBuildError(str(error)) from error


# ------------------------------------------------------------------ hardware-aware search


def placed_step_time(model: Any, batch_size: int, hardware: Mapping[str, Any]) -> float:
    """Seconds of one simulated training step of ``model`` placed on ``hardware["cluster"]``
    by ``hardware["placer"]`` (``inf`` if that placement does not fit in memory)."""
    from l2l.placement.keras_graph import graph_from_keras

    try:
        graph = graph_from_keras(model, batch_size)
    except GraphError as error:
        raise TrialBuildError(f"the model cannot be placed: {error}") from error
    return hardware_step_time(Simulator(graph, _cluster(hardware["cluster"])), hardware["placer"])


def hardware_step_time(simulator: Simulator, placer: str) -> float:
    """The step time of ``placer``'s placement: a baseline's, or the fastest (``best_baseline``)."""
    if placer == "best_baseline":
        return min(step_time for _, step_time in evaluate_baselines(simulator).values())
    if placer not in BASELINES:
        raise TrialBuildError(f"unknown placer {placer!r}; use best_baseline or one of {sorted(BASELINES)}")
    return simulator.step_time(BASELINES[placer](simulator.graph, simulator.cluster))


# ------------------------------------------------------------------ what is reported


def placement_metrics(
    result: PlacementResult, baselines: Mapping[str, tuple[np.ndarray, float]], bound: float
) -> dict[str, Any]:
    """The final report: the learned step time (seconds: the reward's metric, and ms), each
    baseline's ms, the lower bound, the speed-ups over the expert and the best baseline."""
    learned = result.step_time
    metrics: dict[str, Any] = {"step_time": learned, "step_time_ms": _ms(learned)}
    for name, (_, step_time) in baselines.items():
        metrics[f"{name}_ms"] = _ms(step_time)
    best = _best_baseline(baselines)
    metrics["best_baseline_ms"] = _ms(baselines[best][1]) if best else None
    metrics["lower_bound_ms"] = _ms(bound)
    metrics["speedup_vs_expert"] = _ratio(baselines["expert"][1], learned) if "expert" in baselines else None
    metrics["speedup_vs_best_baseline"] = _ratio(baselines[best][1], learned) if best else None
    metrics["samples"] = result.samples
    metrics["search_seconds"] = result.seconds
    return metrics


def result_document(
    simulator: Simulator,
    result: PlacementResult,
    baselines: Mapping[str, tuple[np.ndarray, float]],
    bound: float,
    strategy: Mapping[str, Any],
) -> dict[str, Any]:
    """What GET /jobs/{id}/placement serves; every time in ms, null where a step does not fit.

    ``timelines`` hold, per device, its op runs ``[op, backward (0/1), start, end]`` and
    the transfers it sends ``[op, backward, to_device, start, end]``. ``layer_devices`` is
    ``{layer: device}`` (a layer on its parameters' device; ``split_layers`` lists those the
    placement spreads) and ``code`` the TensorFlow and JAX scripts that apply it
    (:mod:`l2l.placement.apply`).
    """
    graph, cluster = simulator.graph, simulator.cluster
    names = cluster.device_names
    best = _best_baseline(baselines)
    timelines = {"learned": timeline(simulator.simulate(result.placement), len(names))}
    layer_map = layer_devices(graph, result.placement, names)
    if "expert" in baselines:
        timelines["expert"] = timeline(simulator.simulate(baselines["expert"][0]), len(names))
    return {
        "version": DOCUMENT_VERSION,
        "graph": {
            "name": graph.name,
            "backward_factor": graph.backward_factor,
            "ops": [
                {
                    "name": op.name,
                    "layer": op.layer,
                    "kind": op.kind,
                    "inputs": list(op.inputs),
                    "flops": op.flops,
                    "output_bytes": op.output_bytes,
                }
                for op in graph.ops
            ],
        },
        "cluster": cluster.to_dict(),
        "devices": names,
        "strategy": dict(strategy),
        "placement": _device_names(result.placement, names),
        # what a user applies: each layer on its parameters' device, and code that does it
        "layer_devices": layer_map,
        "split_layers": split_layers(graph, result.placement),
        "code": {"tensorflow": tensorflow_code(layer_map), "jax": jax_code(layer_map)},
        "step_time": result.step_time,
        "step_time_ms": _ms(result.step_time),
        "samples": result.samples,
        "search_seconds": result.seconds,
        "history": [[samples, seconds, _ms(step)] for samples, seconds, step in _thin(result.history)],
        "baselines": {
            name: {"step_time_ms": _ms(step_time), "placement": _device_names(placement, names)}
            for name, (placement, step_time) in baselines.items()
        },
        "best_baseline": best,
        "lower_bound_ms": _ms(bound),
        "speedup": {
            "vs_expert": _ratio(baselines["expert"][1], result.step_time) if "expert" in baselines else None,
            "vs_best_baseline": _ratio(baselines[best][1], result.step_time) if best else None,
        },
        "timelines": timelines,
    }


def timeline(simulation: Simulation, devices: int) -> dict[str, Any]:
    """One simulated step per device, for drawing (see :func:`result_document`)."""
    rows: list[dict[str, list[list[float]]]] = [{"runs": [], "transfers": []} for _ in range(devices)]
    for span in simulation.runs:
        rows[span.device]["runs"].append(
            [span.op, int(span.backward), _round(span.start * 1e3), _round(span.end * 1e3)]
        )
    for span in simulation.transfers:
        rows[span.device]["transfers"].append(
            [span.op, int(span.backward), span.to_device, _round(span.start * 1e3), _round(span.end * 1e3)]
        )
    makespan = max((span.end for span in simulation.runs), default=0.0)
    return {
        "step_time_ms": _ms(simulation.step_time),
        "makespan_ms": _round(makespan * 1e3),
        "fits": simulation.fits,
        "memory_bytes": [float(m) for m in simulation.memory],
        "devices": rows,
    }


def _best_baseline(baselines: Mapping[str, tuple[np.ndarray, float]]) -> str | None:
    finite = {name: t for name, (_, t) in baselines.items() if math.isfinite(t)}
    return min(finite, key=finite.__getitem__) if finite else None


def _device_names(placement: np.ndarray, names: Sequence[str]) -> list[str]:
    return [names[int(d)] for d in placement]


def _thin(history: Sequence[tuple[int, float, float]]) -> list[tuple[int, float, float]]:
    if len(history) <= HISTORY_POINTS:
        return list(history)
    keep = np.unique(np.linspace(0, len(history) - 1, HISTORY_POINTS).round().astype(int))
    return [history[k] for k in keep]


def _ms(seconds: float) -> float | None:
    """Milliseconds; None (JSON null) for a step that does not fit (infinite) or NaN."""
    return _round(seconds * 1e3) if math.isfinite(seconds) else None


def _ratio(baseline: float, learned: float) -> float | None:
    if not (math.isfinite(baseline) and math.isfinite(learned)) or learned <= 0:
        return None
    return baseline / learned


def _round(value: float) -> float:
    return round(float(value), 6)
