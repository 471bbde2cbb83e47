"""Build the FastAPI app: ``uvicorn --factory api.main:create_app``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api import web
from api.report_fast_path import ReportFastPath
from api.routes import charts, datasets, graphs, health, jobs, models, placements, predictions, trials
from l2l import __version__
from l2l.service.step_writer import StepWriter
from l2l.settings import Settings, get_settings
from l2l.store import StorageError, Store


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    """An app on ``store`` (default: the settings' database, migrated on start-up)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_store = store is None
        app.state.store = store or Store(settings.resolved_database_url)
        if own_store:
            app.state.store.migrate()
        # A fresh writer each start, so an app that is started again (tests do) takes reports again.
        app.state.step_writer = StepWriter(app.state.store)
        yield
        # Reports already queued are stored (and answered) before the database goes away.
        app.state.step_writer.close()
        if own_store:
            app.state.store.dispose()

    app = FastAPI(
        title="l2l",
        version=__version__,
        summary="Neural-architecture search as a service: submit a search, watch its trials.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    if store is not None:
        app.state.store = store
        app.state.step_writer = StepWriter(store)
    app.include_router(jobs.router)
    app.include_router(datasets.router)
    app.include_router(graphs.router)
    app.include_router(placements.router)
    app.include_router(models.router)
    app.include_router(predictions.router)
    app.include_router(trials.router)
    app.include_router(charts.router)
    app.include_router(health.router)
    web.install(app)  # the pages at / and their /static files
    # Workers' per-epoch reports are most of the load; this answers them without the router.
    app.add_middleware(ReportFastPath)

    @app.exception_handler(StorageError)
    async def storage_error(_request: Request, error: StorageError) -> JSONResponse:
        return JSONResponse({"detail": f"the database failed: {error}"}, status_code=503)

    return app
