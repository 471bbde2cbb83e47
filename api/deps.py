"""Typed dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from l2l.records import JobRecord
from l2l.settings import Settings
from l2l.store import NotFound, Store


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def get_job_or_404(job_id: int, store: StoreDep) -> JobRecord:
    try:
        return store.get_job(job_id)
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found") from None


JobDep = Annotated[JobRecord, Depends(get_job_or_404)]
