"""op graphs and job artifacts (device placement)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 15:47:51.132187
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "op_graphs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("op_graphs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_op_graphs_team_id"), ["team_id"], unique=False)

    op.create_table(
        "job_artifacts",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "name"),
    )


def downgrade() -> None:
    op.drop_table("job_artifacts")
    with op.batch_alter_table("op_graphs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_op_graphs_team_id"))

    op.drop_table("op_graphs")
