"""A throw-away PostgreSQL database, for benchmarks and tests that need one nobody else uses."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def scratch_postgres_database(admin_url: str, prefix: str = "l2l_scratch") -> Iterator[str]:
    """Create a fresh database beside ``admin_url`` (a SQLAlchemy psycopg URL), yield its URL, drop
    it afterwards (connections still open to it are closed by force)."""
    import psycopg

    admin = admin_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
