"""The service layer of device placement: uploaded op graphs, placement jobs' checks against
the store, and the result document a placement worker sends.

Like :mod:`l2l.service.jobs`, every function takes the store explicitly. Nothing here imports
the simulator (numba) or Keras: the API validates graphs with the plain-data
:mod:`l2l.placement.graph` and serves result documents as the worker wrote them.
"""

from __future__ import annotations

import json
import secrets
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from l2l.placement.graph import GraphError, OpGraph
from l2l.service.jobs import NotRunning, best_trial, check_report_token, job_kind, placeable_job
from l2l.service.uploads import chunks_up_to
from l2l.settings import Settings
from l2l.store import Store, TrialFinished
from l2l.store.records import ArtifactRecord, GraphRecord, JobRecord
from l2l.store.states import TrialState

#: The artifact name of a placement job's result document.
RESULT = "placement"


class GraphTooLarge(GraphError):
    """The upload is over the service's size or op limit."""


# ------------------------------------------------------------------ uploaded graphs


def graph_summary(graph: OpGraph) -> dict[str, Any]:
    return {
        "name": graph.name,
        "ops": len(graph),
        "layers": len(graph.layers),
        "flops": graph.total_flops,
        "param_bytes": sum(op.param_bytes for op in graph.ops),
        "output_bytes": sum(op.output_bytes for op in graph.ops),
        "backward_factor": graph.backward_factor,
    }


def save_graph(
    store: Store,
    settings: Settings,
    team_id: int,
    stream: BinaryIO,
    name: str | None = None,
    *,
    batch_size: int = 32,
) -> GraphRecord:
    """Check an uploaded graph and keep it for the team: an op graph's JSON
    (:meth:`OpGraph.from_json`), or a ``.keras`` model, read into a layer-level graph at
    ``batch_size`` by a child process (:mod:`l2l.placement.keras_file`; this process never
    imports Keras) and kept beside it, so that a placement of it maps onto its layers.

    Raises :class:`GraphError` (:class:`GraphTooLarge` over the limits) naming the problem;
    a graph that fails leaves no file and no row behind.
    """
    from l2l.placement.keras_file import graph_from_keras_file, looks_like_keras

    limits = settings.placement
    raw = _read_limited(stream, limits.max_graph_mb)
    folder = settings.data_dir.resolve() / "graphs" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    try:
        source = "graph"
        if looks_like_keras(raw):
            source = "keras"
            model = folder / "model.keras"
            model.write_bytes(raw)
            graph = graph_from_keras_file(model, batch_size)
        else:
            graph = OpGraph.from_json(raw)
        if len(graph) > limits.max_graph_ops:
            raise GraphTooLarge(
                f"the graph has {len(graph)} ops; this service places at most {limits.max_graph_ops}"
            )
        path = folder / "graph.json"
        path.write_text(graph.to_json())  # normalised: topological order, every field checked
        title = (name or "").strip() or graph.name
        summary = {**graph_summary(graph), "source": source}
        if source == "keras":
            summary["batch_size"] = batch_size
        return store.create_graph(team_id, title[:200], str(path), summary)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _read_limited(stream: BinaryIO, limit_mb: float) -> bytes:
    raw = b"".join(chunks_up_to(stream, limit_mb, GraphTooLarge, "the graph"))
    if not raw:
        raise GraphError("the uploaded graph is empty; send the JSON of {name, ops: [...]}")
    return raw


# ------------------------------------------------------------------ placement jobs


def resolve_graph_source(store: Store, job: JobRecord) -> dict[str, Any]:
    """What a placement worker builds its graph from, read now (a job's model may be newer).

    ``{"benchmark", "options"}``, ``{"graph_path"}``, or for an earlier job's model
    ``{"space", "params", "dataset", "model_path"?}``: the final model's file when it has
    one, else the best trial's architecture to rebuild. Raises NotFound or InvalidJob if
    the source went away since the job was submitted.
    """
    source = job.spec["placement"]["graph"]
    if "benchmark" in source:
        return {"benchmark": source["benchmark"], "options": dict(source.get("options") or {})}
    if "graph_id" in source:
        return {"graph_path": store.get_graph(source["graph_id"], job.team_id).path}
    earlier = placeable_job(store, source["job_id"], job.team_id)
    final = store.get_final_model(earlier.id)
    resolved: dict[str, Any] = {
        "dataset": earlier.spec["dataset"],
        "space": earlier.space or earlier.spec["space"],
    }
    if final is not None and final.state is TrialState.COMPLETED and "keras" in final.files:
        return {**resolved, "params": final.params, "model_path": final.files["keras"]}
    best = best_trial(store, earlier)
    assert best is not None  # placeable_job checked it
    return {**resolved, "params": best.params}


# ------------------------------------------------------------------ result documents


def report_placement(
    store: Store, settings: Settings, trial_id: int, token: str | None, document: Mapping[str, Any]
) -> tuple[ArtifactRecord | None, bool]:
    """Keep a placement worker's result document for its job (the trial's own token).

    Returns the stored record and whether this call changed it. Sent before the final
    report, so the document exists when the job completes; a retried attempt replaces an
    earlier one's; once the trial finished, a late document changes nothing.
    """
    check_report_token(store, trial_id, token)
    trial = store.get_trial(trial_id)
    if trial.state.is_finished():
        return store.get_artifact(trial.job_id, RESULT), False
    if trial.state is not TrialState.RUNNING:
        raise NotRunning(f"trial {trial_id} is {trial.state.value}, not running; it cannot take reports")
    if job_kind(store.get_job(trial.job_id)) != "placement":
        raise ValueError(f"trial {trial_id} belongs to a search job; only placement jobs send placements")
    missing = sorted({"placement", "step_time", "graph", "devices"} - set(document))
    if missing:
        raise ValueError(f"a placement document needs {missing}")
    folder = settings.data_dir.resolve() / "placements" / f"job-{trial.job_id}"
    folder.mkdir(parents=True, exist_ok=True)
    # One file per attempt, renamed into place whole: a reader never sees half a document,
    # and a late attempt's file never replaces the one the store points at.
    path = folder / f"trial-{trial_id}-attempt-{trial.attempts}.json"
    staging = folder / f".{path.name}.{secrets.token_hex(4)}.partial"
    try:
        staging.write_text(json.dumps(document, allow_nan=False))
        staging.replace(path)
        return store.save_artifact(trial_id, RESULT, str(path)), True
    except TrialFinished:
        path.unlink(missing_ok=True)
        return store.get_artifact(trial.job_id, RESULT), False
    except ValueError as error:  # NaN or infinity: the worker must send null
        raise ValueError(f"the placement document is not standard JSON: {error}") from None
    finally:
        staging.unlink(missing_ok=True)


def placement_result(store: Store, job: JobRecord) -> Path | None:
    """The file of the job's result document, or None while it has none."""
    artifact = store.get_artifact(job.id, RESULT)
    if artifact is None or not Path(artifact.path).is_file():
        return None
    return Path(artifact.path)
