"""trials numbered from 1; the chance level of a job's data

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-03 13:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None


# Plain ALTER TABLE, not batch mode: SQLite (3.35+) adds and drops a column in place, and a batch
# copy of "jobs" would drop the old table, and with it (ON DELETE CASCADE) every trial.


def upgrade() -> None:
    op.add_column("jobs", sa.Column("chance", sa.JSON(), nullable=True))
    # "trial 1" is the first trial everywhere. Two steps, so that no row ever takes a number
    # another row of its job still has (uq_trials_job_number is checked row by row).
    op.execute("UPDATE trials SET number = -(number + 1)")
    op.execute("UPDATE trials SET number = -number")


def downgrade() -> None:
    op.execute("UPDATE trials SET number = -(number - 1)")
    op.execute("UPDATE trials SET number = -number")
    op.drop_column("jobs", "chance")
