"""/jobs/{id}/model: the trained model a team takes away, and the worker's upload of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Header, HTTPException, Query, UploadFile, status
from fastapi.responses import FileResponse

from api.deps import JobDep, SettingsDep, StoreDep
from api.routes.trials import bearer_token
from api.schemas import FinalModelPublic, Problem
from l2l.service import jobs as service

router = APIRouter(prefix="/jobs/{job_id}/model", tags=["models"])

MEDIA_TYPES = {
    "keras": "application/zip",
    "savedmodel": "application/zip",
    "preprocessing": "application/json",
}
SUFFIXES = {"keras": ".keras", "savedmodel": "-savedmodel.zip", "preprocessing": "-preprocessing.json"}


@router.get(
    "",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The model file."},
        401: {"model": Problem},
        404: {"model": Problem, "description": "No such job, or no model in that format (yet)."},
    },
)
def download_model(
    job: JobDep,
    store: StoreDep,
    format: Annotated[str, Query(pattern="^(keras|savedmodel|preprocessing)$")] = "keras",
) -> FileResponse:
    """The final model as a `.keras` file or a zipped TensorFlow SavedModel, or the JSON that
    says how raw rows become its inputs (column encodings, scaling, class names)."""
    model = store.get_final_model(job.id)
    path = model.files.get(format) if model is not None else None
    if path is None or not Path(path).is_file():
        state = "is not trained yet" if model is None or not model.state.is_finished() else "has no such file"
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job.id}'s final model {state} ({format})")
    filename = f"l2l-job-{job.id}{SUFFIXES[format]}"
    return FileResponse(path, media_type=MEDIA_TYPES[format], filename=filename)


@router.post(
    "/report",
    tags=["workers"],
    responses={403: {"model": Problem}, 422: {"model": Problem}},
)
def report_final_model(
    job_id: int,
    store: StoreDep,
    settings: SettingsDep,
    metrics: Annotated[str, Form(description="JSON object of the test metrics.")],
    keras: Annotated[UploadFile, File(description="The model as a .keras file.")],
    preprocessing: Annotated[UploadFile | None, File(description="preprocessing.json")] = None,
    savedmodel: Annotated[UploadFile | None, File(description="A zipped SavedModel.")] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> FinalModelPublic:
    """A worker uploads the final model with the final model's own token."""
    try:
        scores = json.loads(metrics)
        if not isinstance(scores, dict):
            raise ValueError("metrics must be a JSON object")
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"metrics: {error}") from None
    extras = {"preprocessing": preprocessing, "savedmodel": savedmodel}
    files = {"keras": keras.file} | {
        name: upload.file for name, upload in extras.items() if upload is not None
    }
    try:
        model = service.report_final_model(
            store, settings, job_id, bearer_token(authorization), scores, files
        )
    except service.Forbidden as error:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(error)) from None
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    return FinalModelPublic.of(model)
