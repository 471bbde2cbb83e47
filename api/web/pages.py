"""The web pages' routes.

``/login`` sets the team key as an HttpOnly, SameSite=Strict cookie; every other page
needs it and sends the browser to the login page without it. The pages call the
service layer as the JSON routes do; the job page's script polls the JSON API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api.deps import KEY_COOKIE, SettingsDep, StoreDep
from api.web import forms
from l2l.service import jobs as service
from l2l.service.datasets import DatasetError
from l2l.service.jobspec import InvalidJob
from l2l.service.uploads import UploadTooLarge, save_upload
from l2l.store import NotFound, Store
from l2l.store.records import TeamRecord
from l2l.store.states import TrialState

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")

router = APIRouter(include_in_schema=False)

#: How long the login cookie lasts; the key itself does not expire.
COOKIE_SECONDS = 7 * 24 * 3600

JOBS_PER_PAGE = 25


def _login_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/login?next={quote(target, safe='')}"


def page_team(request: Request, store: StoreDep) -> TeamRecord:
    """The logged-in team; without a valid cookie, a redirect to the login page."""
    try:
        return service.authenticate(store, request.cookies.get(KEY_COOKIE))
    except service.Unauthorized:
        raise HTTPException(
            status.HTTP_303_SEE_OTHER, "log in first", headers={"Location": _login_url(request)}
        ) from None


PageTeam = Annotated[TeamRecord, Depends(page_team)]


def _render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def _safe_next(target: str | None) -> str:
    # Only a path on this site: never "//host" or "https://host" (an open redirect).
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


# ------------------------------------------------------------------ login


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None) -> HTMLResponse:
    return _render(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, store: StoreDep) -> Response:
    values = forms.parse_form(await request.body())
    key = values.get("key", "").strip()
    target = _safe_next(values.get("next"))
    try:
        service.authenticate(store, key)
    except service.Unauthorized as error:
        message = "Enter your team's API key." if not key else str(error)
        return _render(request, "login.html", status.HTTP_401_UNAUTHORIZED, next=target, error=message)
    response = RedirectResponse(target, status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        KEY_COOKIE,
        key,
        max_age=COOKIE_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(KEY_COOKIE, httponly=True, samesite="strict")
    return response


# ------------------------------------------------------------------ jobs


@router.get("/", response_class=HTMLResponse)
def jobs_page(
    request: Request, store: StoreDep, team: PageTeam, offset: Annotated[int, Query(ge=0)] = 0
) -> HTMLResponse:
    jobs, total = store.list_jobs(offset=offset, limit=JOBS_PER_PAGE, team_id=team.id)
    rows = []
    for job in jobs:
        progress = service.job_progress(store, job)
        counts = progress["counts"]
        rows.append(
            {
                "job": job,
                "completed": counts[TrialState.COMPLETED],
                "failed": counts[TrialState.FAILED] + counts[TrialState.TIMED_OUT],
                "running": counts[TrialState.RUNNING],
                "best": progress["best"],
            }
        )
    return _render(
        request,
        "jobs.html",
        team=team,
        rows=rows,
        total=total,
        offset=offset,
        per_page=JOBS_PER_PAGE,
    )


#: How many of the team's latest jobs the form offers as models to place.
PLACEABLE_JOBS = 100


def _new_job_page(
    request: Request,
    store: Store,
    team: TeamRecord,
    values: dict[str, str],
    error: str | None,
    status_code: int = 200,
) -> HTMLResponse:
    settings = request.app.state.settings
    recent, _ = store.list_jobs(limit=PLACEABLE_JOBS, team_id=team.id)
    return _render(
        request,
        "new_job.html",
        status_code,
        team=team,
        values={**forms.DEFAULTS, **values},
        error=error,
        datasets=forms.dataset_options(store.list_datasets(team.id)),
        spaces=forms.SPACES,
        strategies=forms.strategy_options(),
        max_trials=settings.api.max_trials_per_job,
        benchmarks=forms.benchmark_options(),
        clusters=forms.cluster_options(),
        placers=forms.placer_options(),
        placeable_jobs=forms.placeable_job_options(recent),
        graphs=forms.graph_options(store.list_graphs(team.id)),
        max_seconds=settings.placement.max_seconds,
    )


@router.get("/new", response_class=HTMLResponse)
def new_job_page(
    request: Request, store: StoreDep, team: PageTeam, dataset: str | None = None
) -> HTMLResponse:
    """The new-job form; ``?dataset=upload:N`` picks an upload (where the upload page sends you)."""
    return _new_job_page(request, store, team, {"dataset": dataset} if dataset else {}, None)


@router.post("/new", response_class=HTMLResponse)
async def submit_job(request: Request, store: StoreDep, settings: SettingsDep, team: PageTeam) -> Response:
    values = forms.parse_form(await request.body())
    try:
        job = service.submit_job(store, forms.job_spec(values), settings, team)
    except (forms.FormError, InvalidJob) as error:
        return _new_job_page(request, store, team, values, str(error), status.HTTP_422_UNPROCESSABLE_CONTENT)
    except service.OverLimit as error:
        return _new_job_page(request, store, team, values, str(error), status.HTTP_429_TOO_MANY_REQUESTS)
    return RedirectResponse(f"/job/{job.id}", status.HTTP_303_SEE_OTHER)


# ------------------------------------------------------------------ uploads


def _upload_page(
    request: Request, team: TeamRecord, values: dict[str, str], error: str | None, status_code: int = 200
) -> HTMLResponse:
    limit = request.app.state.settings.api.max_upload_mb
    return _render(request, "upload.html", status_code, team=team, values=values, error=error, max_mb=limit)


@router.get("/upload", response_class=HTMLResponse)
def upload_page(request: Request, team: PageTeam) -> HTMLResponse:
    return _upload_page(request, team, {}, None)


@router.post("/upload", response_class=HTMLResponse)
def upload_dataset(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    team: PageTeam,
    file: Annotated[UploadFile | None, File()] = None,
    name: Annotated[str, Form(max_length=200)] = "",
    target: Annotated[str, Form(max_length=200)] = "",
    task: Annotated[str, Form(pattern="^(|classification|regression)$")] = "",
) -> Response:
    """The same checks as ``POST /datasets``; a good upload goes on to the new-job form, picked.

    A plain ``def``: the check reads and decodes the whole file, off the event loop.
    """
    values = {"name": name, "target": target, "task": task}
    if file is None or not file.filename:
        return _upload_page(
            request, team, values, "Choose a file to upload.", status.HTTP_422_UNPROCESSABLE_CONTENT
        )
    try:
        dataset = save_upload(
            store,
            settings,
            team.id,
            file.filename,
            file.file,
            name=name.strip() or None,
            target=target.strip() or None,
            task=task or None,
        )
    except UploadTooLarge as error:
        return _upload_page(request, team, values, str(error), status.HTTP_413_CONTENT_TOO_LARGE)
    except DatasetError as error:
        return _upload_page(request, team, values, str(error), status.HTTP_422_UNPROCESSABLE_CONTENT)
    return RedirectResponse(f"/new?dataset=upload:{dataset.id}", status.HTTP_303_SEE_OTHER)


@router.get("/job/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: int, store: StoreDep, team: PageTeam) -> HTMLResponse:
    try:
        job = store.get_job(job_id, team_id=team.id)
    except NotFound:
        # Another team's job looks exactly like a missing one.
        return _render(request, "not_found.html", status.HTTP_404_NOT_FOUND, team=team, job_id=job_id)
    return _render(request, "job.html", team=team, job=job)
