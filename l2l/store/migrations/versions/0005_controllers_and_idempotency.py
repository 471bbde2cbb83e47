"""controller heartbeats, job idempotency keys, unfinished starts (quarantine)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 13:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "controllers",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("controllers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_controllers_heartbeat_at"), ["heartbeat_at"], unique=False)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("request_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("unfinished_starts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_unique_constraint("uq_jobs_team_idempotency_key", ["team_id", "idempotency_key"])


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint("uq_jobs_team_idempotency_key", type_="unique")
        batch_op.drop_column("unfinished_starts")
        batch_op.drop_column("request_hash")
        batch_op.drop_column("idempotency_key")
    with op.batch_alter_table("controllers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_controllers_heartbeat_at"))
    op.drop_table("controllers")
