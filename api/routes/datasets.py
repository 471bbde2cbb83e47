"""/datasets: a team's own data, checked on upload before any search can use it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, UploadFile, status

from api.deps import SettingsDep, StoreDep, TeamDep
from api.routes.jobs import UNAUTHORIZED
from api.schemas import DatasetPublic, DatasetsPublic, Problem
from l2l.service.datasets import DatasetError
from l2l.service.uploads import UploadTooLarge, save_upload
from l2l.store import NotFound

router = APIRouter(prefix="/datasets", tags=["datasets"], responses=UNAUTHORIZED)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        413: {"model": Problem, "description": "The file is over the service's upload limit."},
        422: {"model": Problem, "description": "The file cannot be used; the detail says why."},
    },
)
def upload_dataset(
    store: StoreDep,
    settings: SettingsDep,
    team: TeamDep,
    file: Annotated[UploadFile, File(description=".csv, .npz (arrays x, y) or .zip of class folders")],
    name: Annotated[str | None, Form(max_length=200)] = None,
    target: Annotated[str | None, Form(description="A CSV's column to predict.")] = None,
    task: Annotated[str | None, Form(pattern="^(classification|regression)$")] = None,
) -> DatasetPublic:
    """Upload data. It is checked and split once; use its id as a job's dataset: {"id": N}."""
    try:
        dataset = save_upload(
            store, settings, team.id, file.filename or "", file.file, name=name, target=target, task=task
        )
    except UploadTooLarge as error:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(error)) from None
    except DatasetError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    return DatasetPublic.of(dataset)


@router.get("")
def list_datasets(store: StoreDep, team: TeamDep) -> DatasetsPublic:
    return DatasetsPublic(items=[DatasetPublic.of(d) for d in store.list_datasets(team.id)])


@router.get("/{dataset_id}", responses={404: {"model": Problem}})
def get_dataset(dataset_id: int, store: StoreDep, team: TeamDep) -> DatasetPublic:
    try:
        return DatasetPublic.of(store.get_dataset(dataset_id, team.id))
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"dataset {dataset_id} not found") from None
