"""early stopping: a promoted trial continues in a row of its own

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-03 13:35:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trials", schema=None) as batch_op:
        # a continuation has no proposal of its own: it trains further a configuration told before
        batch_op.alter_column("proposal_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("resumes_trial_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("start_epoch", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_foreign_key(
            "fk_trials_resumes_trial_id", "trials", ["resumes_trial_id"], ["id"], ondelete="CASCADE"
        )


def downgrade() -> None:
    op.execute("DELETE FROM trials WHERE resumes_trial_id IS NOT NULL")
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.drop_constraint("fk_trials_resumes_trial_id", type_="foreignkey")
        batch_op.drop_column("start_epoch")
        batch_op.drop_column("resumes_trial_id")
        batch_op.alter_column("proposal_id", existing_type=sa.Integer(), nullable=False)
