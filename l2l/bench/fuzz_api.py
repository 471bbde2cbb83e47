"""Fuzz the REST API with Schemathesis: every operation, every check, real app and database.

    python -m l2l.bench.fuzz_api --examples 200                      # SQLite in a temp folder
    python -m l2l.bench.fuzz_api --examples 200 --database postgresql+psycopg://postgres@127.0.0.1/postgres

The app (``api.main.create_app``) is served by uvicorn on a free port, on a fresh database
with one team whose key every request carries (``Authorization: Bearer ...``); the
Schemathesis command line runs against its ``/openapi.json`` with ``--checks all`` and every
phase (examples, coverage, fuzzing, stateful). Printed: test cases per operation and in all,
failures by check, and how many answers were 5xx. The exit status is Schemathesis's (0: no
failure). ``tests/test_api_fuzz.py`` runs the same thing small, in the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from l2l.store.scratch import scratch_postgres_database

PHASES = "examples,coverage,fuzzing,stateful"
#: The one setting told to Schemathesis: which answers a schema-valid request may get (see the file).
CONFIG = Path(__file__).with_name("schemathesis.toml")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def fresh_database(url: str | None, folder: Path) -> Iterator[str]:
    """A database URL nobody else uses: SQLite in ``folder``, or a new PostgreSQL database."""
    if url is None or url.startswith("sqlite"):
        yield f"sqlite:///{folder / 'fuzz.db'}"
        return
    with scratch_postgres_database(url, "l2l_fuzz") as fresh:
        yield fresh


@contextmanager
def serve(database_url: str, folder: Path) -> Iterator[tuple[str, str]]:
    """The real app under uvicorn in a thread: (base URL, a team's key)."""
    import uvicorn

    from api.main import create_app
    from l2l.service.jobs import create_team
    from l2l.settings import Settings
    from l2l.store import Store

    store = Store(database_url)
    store.migrate()
    team, key = create_team(store, "fuzz")
    _seed(store, team, folder)
    port = free_port()
    settings = Settings(
        data_dir=folder,
        database_url=database_url,
        api={"port": port, "max_upload_mb": 5},
        # The ignored_auth check sends many keyless requests on purpose.
        security={"auth_failures_per_minute": 1_000_000},
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, store), host="127.0.0.1", port=port, log_level="critical")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    # No controller runs here; a heartbeat stands in for one, so that /health answers 200 (its
    # 503 for a stale controller is a real outage, tested in tests/test_health.py).
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            store.beat("fuzz-stand-in", socket.gethostname(), os.getpid())
            stop.wait(1.0)

    beating = threading.Thread(target=beat, daemon=True)
    beating.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", key
    finally:
        stop.set()
        beating.join(timeout=10)
        server.should_exit = True
        thread.join(timeout=10)
        store.dispose()


def _seed(store: Any, team: Any, folder: Path) -> None:
    """Job 1, dataset 1 and graph 1 of the team, so that operations on ids reach past the 404."""
    import io

    from l2l.service import jobs, placement_jobs
    from l2l.service.jobspec import JobSpec
    from l2l.service.uploads import save_upload
    from l2l.settings import Settings

    settings = Settings(data_dir=folder)
    job = {"dataset": "wine", "space": "mlp", "strategy": "random", "budget": {"trials": 2}}
    jobs.submit_job(store, JobSpec.model_validate(job), settings, team)
    rows = "a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(30))
    save_upload(store, settings, team.id, "seed.csv", io.BytesIO(rows.encode()), target="label")
    graph = {"name": "g", "ops": [{"name": "in", "flops": 0, "output_bytes": 8}]}
    placement_jobs.save_graph(store, settings, team.id, io.BytesIO(json.dumps(graph).encode()))


def run_schemathesis(
    base_url: str, key: str, examples: int, seed: int, report: Path, phases: str = PHASES, workers: int = 1
) -> int:
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG),
        "run", f"{base_url}/openapi.json",
        "--checks", "all",
        "--phases", phases,
        "--max-examples", str(examples),
        "--seed", str(seed),
        "--workers", str(workers),
        "--header", f"Authorization: Bearer {key}",
        "--suppress-health-check", "all",
        "--request-timeout", "120",
        "--continue-on-failure",
        "--generation-database", "none",
        "--report", "json",
        "--report-json-path", str(report),
        "--no-color",
    ]  # fmt: skip
    return subprocess.run(command, env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False).returncode


def counts(report: Path) -> dict[str, Any]:
    """Test cases, failures by check and 5xx answers, from Schemathesis's JSON run report."""
    data = json.loads(report.read_text())
    failures: Counter[str] = Counter()
    for failure in data.get("failures") or []:
        name = failure.get("check") or failure.get("code") or failure.get("title") or "?"
        failures[str(name)] += 1
    server_errors = failures.get("ST101", 0)  # not_a_server_error: any 5xx answer
    cases = data.get("test_cases", {})
    return {
        "cases": cases.get("generated", 0),
        "cases_with_failures": cases.get("with_failures", 0),
        "operations": data.get("operations", {}).get("tested", 0),
        "failures": dict(failures),
        "errors": len(data.get("errors") or []),
        "server_errors": server_errors,
        "exit_code": data.get("exit_code"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=200, help="most test cases per operation and phase")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database", help="a PostgreSQL server's URL (default: SQLite in a temp folder)")
    parser.add_argument("--phases", default=PHASES)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="l2l-fuzz-") as tmp:
        folder = Path(tmp)
        report = folder / "events.ndjson"
        started = time.monotonic()
        with fresh_database(args.database, folder) as url, serve(url, folder) as (base_url, key):
            code = run_schemathesis(
                base_url, key, args.examples, args.seed, report, args.phases, args.workers
            )
        found = counts(report)
    kind = "postgresql" if args.database and args.database.startswith("postgresql") else "sqlite"
    print(
        f"\nfuzz ({kind}, {args.examples} examples per operation, seed {args.seed}, phases {args.phases}): "
        f"{found['cases']} test cases over {found['operations']} operations in "
        f"{time.monotonic() - started:.0f} s; cases with failures: {found['cases_with_failures']}; "
        f"5xx: {found['server_errors']}; failures by check: {found['failures'] or 'none'}; "
        f"errors: {found['errors']}; schemathesis exit status {code}"
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
