"""The web pages: log in with the team key, list and submit jobs, watch one live.

Server-rendered Jinja2 pages plus one small script per page (no build step, no CDN);
the script reads the same JSON API as any client, authenticated by the login cookie.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.web.pages import STATIC_DIR, router

__all__ = ["install", "router"]


def install(app: FastAPI) -> None:
    """Add the pages and their static files (``/static``) to ``app``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
