"""/jobs/{id}/predict: answers from the job's final model, served by a Ray Serve deployment."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any

from fastapi import APIRouter, File, HTTPException, UploadFile, status
from pydantic import BaseModel, Field

from api.deps import JobDep, SettingsDep, StoreDep
from api.schemas import Problem
from l2l.service import jobs as service
from l2l.service.datasets import DatasetError, decode_text
from l2l.service.uploads import IMAGE_SUFFIXES, image_rows
from l2l.settings import Settings
from l2l.store import Store
from l2l.store.records import JobRecord

router = APIRouter(prefix="/jobs/{job_id}/predict", tags=["predictions"])

ERRORS = {
    401: {"model": Problem},
    404: {"model": Problem},
    409: {"model": Problem, "description": "No final model yet, or the prediction service is down."},
    422: {"model": Problem, "description": "The rows do not fit the model; the detail says how."},
}


class PredictRequest(BaseModel):
    rows: list[Any] = Field(
        description="Raw examples as the dataset had them: objects of CSV columns (the target left out), "
        "lists of numbers, or images as nested lists of pixels.",
        min_length=1,
    )


class PredictResponse(BaseModel):
    predictions: list[dict[str, Any]] = Field(
        description='Per row: {"label", "probabilities"} for classification, {"value"} for regression.'
    )
    seconds: float = Field(description="Time the model took.")
    names: list[str] | None = Field(
        default=None, description="For uploaded images: the file each prediction is of, in order."
    )


def _answer(store: Store, settings: Settings, job: JobRecord, rows: list[Any]) -> PredictResponse:
    try:
        return PredictResponse(**service.predict(store, settings, job, rows))
    except service.NotReady as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None


@router.post("", responses=ERRORS)
def predict(body: PredictRequest, job: JobDep, store: StoreDep, settings: SettingsDep) -> PredictResponse:
    """Predictions for JSON rows."""
    return _answer(store, settings, job, body.rows)


@router.post("/file", responses=ERRORS)
def predict_file(
    job: JobDep,
    store: StoreDep,
    settings: SettingsDep,
    file: Annotated[
        UploadFile,
        File(
            description="A CSV with the dataset's columns, an .npz with x, or for an image model an image "
            "(.png, .jpg, ...) or a .zip of images."
        ),
    ],
) -> PredictResponse:
    """Predictions for every row of an uploaded CSV (its target column, if present, is ignored), every
    row of an .npz's x, or an image model's image(s): one picture, or every picture in a zip (in the
    order of their sorted names, given back as ``names``), resized as the training images were."""
    content = file.file.read()
    name = (file.filename or "").lower()
    if name.endswith(IMAGE_SUFFIXES) or name.endswith(".zip"):
        try:
            preprocessing = service.model_preprocessing(store, job)
        except service.NotReady as error:
            raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
        if preprocessing["kind"] != "image":
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"job {job.id}'s model takes {preprocessing['kind']} rows, not images; upload a .csv or .npz",
            )
        try:
            names, rows = image_rows(name, content, preprocessing["input_shape"])
        except DatasetError as error:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
        answer = _answer(store, settings, job, rows)
        return answer.model_copy(update={"names": names})
    if name.endswith(".npz"):
        import numpy as np

        try:
            with np.load(io.BytesIO(content), allow_pickle=False) as arrays:
                rows = arrays["x"].tolist()
        except Exception as error:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"cannot read x from the .npz: {error}"
            ) from None
    elif name.endswith(".csv"):
        try:
            reader = csv.DictReader(io.StringIO(decode_text(content, "the file"), newline=""))
            rows = [dict(row) for row in reader]
        except DatasetError as error:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
        except csv.Error as error:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"the file is not a readable CSV: {error}"
            ) from None
        target = job.spec["dataset"].get("target")
        for row in rows:
            row.pop(target, None)
    else:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "upload a .csv, an .npz (array x), or for an image model an image or a .zip of images",
        )
    return _answer(store, settings, job, rows)
