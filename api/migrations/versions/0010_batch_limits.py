"""Batch jobs bounded (issue 14): a lease per running job, take-overs counted, cancel requests; an index for
the per-key quota.

Revision ID: 0010_batch_limits
Revises: 0009_ui_sessions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_batch_limits"
down_revision = "0009_ui_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batch_jobs") as batch:
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("worker", sa.String(128), nullable=True))
        batch.add_column(sa.Column("retries", sa.Integer, nullable=False, server_default=sa.text("0")))
        batch.add_column(sa.Column("cancel_requested_by", sa.String(128), nullable=True))
        batch.add_column(sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_batch_jobs_api_key_id_created_at", "batch_jobs", ["api_key_id", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_batch_jobs_api_key_id_created_at", table_name="batch_jobs")
    with op.batch_alter_table("batch_jobs") as batch:
        for column in ("cancel_requested_at", "cancel_requested_by", "retries", "worker", "lease_expires_at"):
            batch.drop_column(column)
