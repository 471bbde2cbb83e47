"""trials numbered from 1; the chance level of a job's data

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-03 13:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chance", sa.JSON(), nullable=True))
    # "trial 1" is the first trial everywhere. Two steps, so that no row ever takes a number
    # another row of its job still has (uq_trials_job_number is checked row by row).
    op.execute("UPDATE trials SET number = -(number + 1)")
    op.execute("UPDATE trials SET number = -number")


def downgrade() -> None:
    op.execute("UPDATE trials SET number = -(number - 1)")
    op.execute("UPDATE trials SET number = -number")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("chance")
