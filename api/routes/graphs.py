"""/graphs: op graphs a team uploads to place (a placement job's ``{"graph_id": N}``)."""

from __future__ import annotations

import io
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.deps import SettingsDep, StoreDep, TeamDep
from api.routes.jobs import UNAUTHORIZED
from api.schemas import GraphPublic, GraphsPublic, Problem
from l2l.placement.graph import GraphError
from l2l.service import placement_jobs
from l2l.store import NotFound

router = APIRouter(prefix="/graphs", tags=["graphs"], responses=UNAUTHORIZED)

_GRAPH_EXAMPLE = {
    "name": "two-towers",
    "ops": [
        {"name": "input", "flops": 0, "output_bytes": 4096},
        {"name": "left", "flops": 2e9, "output_bytes": 65536, "inputs": ["input"], "param_bytes": 1048576},
        {"name": "right", "flops": 2e9, "output_bytes": 65536, "inputs": ["input"], "layer": "towers"},
        {"name": "join", "flops": 1e6, "output_bytes": 4096, "inputs": ["left", "right"]},
    ],
}

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}, "example": _GRAPH_EXAMPLE},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "The graph's JSON, or a Keras model saved as .keras.",
                        },
                        "name": {"type": "string", "maxLength": 200},
                        "batch_size": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 65536,
                            "description": "The training batch of a .keras model (default 32).",
                        },
                    },
                }
            },
        },
    }
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_UPLOAD_BODY,
    responses={
        413: {"model": Problem, "description": "The graph is over the service's size or op limit."},
        422: {"model": Problem, "description": "The graph is not valid; the detail names the op."},
    },
)
async def upload_graph(
    request: Request, store: StoreDep, settings: SettingsDep, team: TeamDep
) -> GraphPublic:
    """Upload an op graph as JSON: ``{name, backward_factor?, ops: [{name, flops, output_bytes,
    inputs: [op names], param_bytes?, layer?, kind?}]}``, as the body or as a multipart ``file``;
    or a Keras model saved as ``.keras`` (multipart ``file``, with ``batch_size``), read by a
    child process into one op per layer, so that its placement is a ``{layer: device}`` map.

    It is checked (unique names, known inputs, no cycle, sizes >= 0) and kept only if it passes.
    """
    content_type = request.headers.get("content-type", "")
    name: str | None = None
    batch_size = 32
    limit = int(settings.placement.max_graph_mb * (1 << 20))
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, "send the graph's JSON as the 'file' field"
            )
        given = form.get("name")
        name = given if isinstance(given, str) else None
        raw_batch = form.get("batch_size")
        if raw_batch is not None:
            try:
                batch_size = int(str(raw_batch))
            except ValueError:
                batch_size = 0
            if not 1 <= batch_size <= 65536:
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT, "batch_size must be a whole number from 1 to 65536"
                )
        stream: Any = upload.file
    else:
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:  # refuse before the whole of an oversized body is in memory
                raise HTTPException(
                    status.HTTP_413_CONTENT_TOO_LARGE,
                    f"the graph is larger than {settings.placement.max_graph_mb:g} MB, this service's limit",
                )
        stream = io.BytesIO(bytes(body))
    try:
        graph = await run_in_threadpool(
            placement_jobs.save_graph, store, settings, team.id, stream, name, batch_size=batch_size
        )
    except placement_jobs.GraphTooLarge as error:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(error)) from None
    except GraphError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"graph: {error}") from None
    return GraphPublic.of(graph)


@router.get("")
def list_graphs(store: StoreDep, team: TeamDep) -> GraphsPublic:
    """The team's uploaded graphs, newest first."""
    return GraphsPublic(items=[GraphPublic.of(g) for g in store.list_graphs(team.id)])


@router.get("/{graph_id}", responses={404: {"model": Problem}})
def get_graph(graph_id: int, store: StoreDep, team: TeamDep) -> GraphPublic:
    try:
        return GraphPublic.of(store.get_graph(graph_id, team.id))
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"graph {graph_id} not found") from None
