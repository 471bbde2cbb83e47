"""Alembic environment: runs on the connection :func:`l2l.store.Store.migrate` hands it."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from l2l.store.tables import Base

config = context.config
connection = config.attributes.get("connection")


def run(connection_to_use) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection_to_use,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection_to_use.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:  # plain `alembic` command line with sqlalchemy.url set
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as own_connection:
        run(own_connection)
