"""Typed dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from l2l.service import jobs as service
from l2l.service.step_writer import StepWriter
from l2l.settings import Settings
from l2l.store import NotFound, Store
from l2l.store.records import JobRecord, TeamRecord


# async: a plain def dependency costs every request a trip through the thread pool.
async def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def get_step_writer(request: Request) -> StepWriter:
    """The process's group-commit writer of intermediate reports (made with the app's store)."""
    writer: StepWriter = request.app.state.step_writer
    return writer


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
StepWriterDep = Annotated[StepWriter, Depends(get_step_writer)]


team_key = HTTPBearer(auto_error=False, scheme_name="team key", description="Your team's API key.")

#: The cookie the web pages' login sets (HttpOnly, SameSite=Strict) holding the team's key.
KEY_COOKIE = "l2l_key"

team_key_cookie = APIKeyCookie(
    name=KEY_COOKIE,
    auto_error=False,
    scheme_name="web login",
    description="The team key in the cookie the web login sets; used only when no Bearer header is sent.",
)


def get_team(
    store: StoreDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(team_key)],
    cookie_key: Annotated[str | None, Depends(team_key_cookie)] = None,
) -> TeamRecord:
    """The caller's team, from the Bearer header or, failing that, the web login's cookie."""
    key = credentials.credentials if credentials else cookie_key
    try:
        return service.authenticate(store, key)
    except service.Unauthorized as error:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, str(error), headers={"WWW-Authenticate": "Bearer"}
        ) from None


TeamDep = Annotated[TeamRecord, Depends(get_team)]


def get_job_or_404(job_id: int, store: StoreDep, team: TeamDep) -> JobRecord:
    """The team's job; another team's job is a 404 too, so ids reveal nothing."""
    try:
        return store.get_job(job_id, team_id=team.id)
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found") from None


JobDep = Annotated[JobRecord, Depends(get_job_or_404)]
