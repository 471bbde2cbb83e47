"""Shared fixtures: a real database of every kind this machine has, a live API server, and a
headless browser (with its helpers) for the tests of the web pages."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from l2l.settings import Settings
from l2l.store import Store
from l2l.store.scratch import scratch_postgres_database
from l2l.store.tables import Base

#: Where browser tests leave their screenshots (ignored by git).
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

#: What an admin of the test service registered (search_spaces.registry): the test build(hp)
#: functions. Set before any settings are read, so Ray workers and subprocesses inherit it.
TEST_BUILDERS = (
    '["kt_example=tests.kt_build_example:build", "tests.kt_build_example:build_uncompiled", '
    '"tests.kt_build_example:missing"]'
)
os.environ.setdefault("L2L_SECURITY__BUILDERS", TEST_BUILDERS)

POSTGRES_ADMIN_URL = os.environ.get(
    "L2L_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _postgres_reachable() -> bool:
    try:
        import psycopg

        url = POSTGRES_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url, connect_timeout=3):
            return True
    except Exception:
        return False


POSTGRES = _postgres_reachable()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    if not POSTGRES:
        pytest.skip(f"no PostgreSQL server answers at {POSTGRES_ADMIN_URL}")
    with scratch_postgres_database(POSTGRES_ADMIN_URL, "l2l_test") as fresh:
        yield fresh


def _fresh_postgres_store(url: str) -> Store:
    store = Store(url)
    store.migrate()
    tables = ", ".join(Base.metadata.tables)
    with store._write_engine.begin() as connection:  # empty tables, same schema
        connection.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    return store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated, empty store on SQLite and, where a server answers, on PostgreSQL."""
    if request.param == "sqlite":
        store = Store(f"sqlite:///{tmp_path / 'l2l.db'}")
        store.migrate()
    else:
        store = _fresh_postgres_store(request.getfixturevalue("postgres_url"))
    yield store
    store.dispose()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'l2l.db'}")
    store.migrate()
    yield store
    store.dispose()


#: How long a test waits for what should happen before it calls it stuck. Long on purpose: on a
#: machine loaded 10x, a 12-trial job can take minutes, and a wait is a guard against a hang, never
#: a check of speed. pytest-timeout (600 s a test, pyproject.toml) is the outer limit.
HANG_SECONDS = 420.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_settings(tmp_path: Path, port: int = 8000, **controller: float) -> Settings:
    return Settings(
        data_dir=tmp_path,
        api={"host": "127.0.0.1", "port": port},
        controller={"poll_seconds": 0.05, "lease_seconds": 30, **controller},
    )


class LiveServer:
    """The real FastAPI app under uvicorn in a thread, on a free port."""

    def __init__(self, store: Store, settings: Settings) -> None:
        import uvicorn

        from api.main import create_app

        self.settings = settings
        config = uvicorn.Config(
            create_app(settings, store),
            host="127.0.0.1",
            port=settings.api.port,
            log_level="warning",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return self.settings.report_url

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + HANG_SECONDS
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


# ------------------------------------------------------------------ Ray for Tune's tests


def start_local_ray() -> None:
    """``ray.init`` as a Tune user calls it, through the benchmarks' start-up (it retries: a loaded
    machine can miss Ray's 30 s deadline), with workers at the test's own priority. Ray starts its
    workers at niceness 15; beside four busy loops a six-trial Tune run took 4-5 minutes."""
    from l2l.bench.overhead import start_ray

    start_ray(2, env={"RAY_worker_niceness": "0"})


# ------------------------------------------------------------------ a headless browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium through chromedriver; skipped, saying why, where either is missing."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(
            f"no browser test: {' and '.join(missing)} missing (apt-get install chromium chromium-driver)"
        )
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install -e .[dev])"
    )
    from selenium.webdriver.chrome.service import Service

    profile = Path(tempfile.mkdtemp(prefix="l2l-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(what: str, check: Callable[[], Any], seconds: float = HANG_SECONDS) -> Any:
    """``check()``'s first truthy result, polled every 0.1 s; an AssertionError naming ``what``
    (and the last result or error) once ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as error:  # the page is mid-redraw: an element went stale
            last = error
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting until {what} (last: {last!r})")


def screenshot(driver: Any, name: str) -> Path:
    """The whole page, top to bottom (up to 4000 px), saved as ``artifacts/<name>``."""
    ARTIFACTS.mkdir(exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(int(height) + 40, 4000))
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)
    return path
