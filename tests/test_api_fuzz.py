"""Schemathesis against the real app on SQLite and PostgreSQL: no 5xx, no answer off its schema.

Every operation, every check (``--checks all``), every phase (examples, coverage, fuzzing,
stateful), a fixed seed and 10 examples per operation: a small run of what
``python -m l2l.bench.fuzz_api --examples 200`` does in full (its counts are in docs/security.md).
The app is ``api.main.create_app`` under uvicorn on a fresh database, with a team's key on
every request.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import POSTGRES, POSTGRES_ADMIN_URL

from l2l.bench import fuzz_api

EXAMPLES = 10
SEED = 1


@pytest.mark.timeout(600)
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_schemathesis_finds_no_server_error_and_no_schema_violation(database: str, tmp_path: Path) -> None:
    if database == "postgresql" and not POSTGRES:
        pytest.skip(f"no PostgreSQL server answers at {POSTGRES_ADMIN_URL}")
    url = POSTGRES_ADMIN_URL if database == "postgresql" else None
    report = tmp_path / "report.json"
    with (
        fuzz_api.fresh_database(url, tmp_path) as database_url,
        fuzz_api.serve(database_url, tmp_path) as (
            base_url,
            key,
        ),
    ):
        code = fuzz_api.run_schemathesis(base_url, key, EXAMPLES, SEED, report)
    found = fuzz_api.counts(report)
    assert found["operations"] >= 20 and found["cases"] > 200, found
    assert found["server_errors"] == 0, found
    assert found["failures"] == {} and found["errors"] == 0, found
    assert code == 0, found
