"""Batch jobs (whole-region pre-credit runs started over the API)

Revision ID: 0004
Revises: 0003
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
        "batch_jobs",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("request_json", sa.Text(), nullable=False),
        sa.Column("partitions_done", sa.Integer(), nullable=False),
        sa.Column("partitions_total", sa.Integer(), nullable=True),
        sa.Column("result_path", sa.Text(), nullable=True),
        sa.Column("result_sha256", sa.String(length=64), nullable=True),
        sa.Column("result_rows", sa.Integer(), nullable=True),
        sa.Column("summary_json", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], name=op.f("fk_batch_jobs_api_key_id_api_keys")),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_batch_jobs")),
    )
    op.create_index(op.f("ix_batch_jobs_status"), "batch_jobs", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_batch_jobs_status"), table_name="batch_jobs")
    op.drop_table("batch_jobs")
