"""Product versions under maker-checker and simulation jobs (issue 12)

Revision ID: 0007_product_versions
Revises: 0006_key_expiry
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_product_versions"
down_revision = "0006_key_expiry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "product_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("effective_date", sa.Date(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False,
                  comment="draft, submitted, approved or rejected (approved ones are scheduled, active or "
                          "superseded by date)"),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_by", sa.String(length=128), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("approval_no", sa.Integer(), nullable=True,
                  comment="1, 2, ... in the order of approval: the epoch every quoting process watches"),
        sa.ForeignKeyConstraint(["sha256"], ["config_blobs.sha256"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("approval_no"),
        comment="product definition versions: draft -> submitted -> approved by another person (maker-checker)",
    )
    with op.batch_alter_table("product_versions") as batch:
        batch.create_index(batch.f("ix_product_versions_code"), ["code"], unique=False)
        batch.create_index(batch.f("ix_product_versions_status"), ["status"], unique=False)
    op.create_table(
        "simulation_jobs",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False, comment="queued, running, succeeded, failed"),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("request_json", sa.Text(), nullable=False),
        sa.Column("rows_done", sa.Integer(), nullable=False),
        sa.Column("rows_total", sa.Integer(), nullable=True),
        sa.Column("summary_json", sa.Text(), nullable=True),
        sa.Column("report_path", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("job_id"),
        comment="what-if simulations started over the API (POST /v1/products/simulations)",
    )
    with op.batch_alter_table("simulation_jobs") as batch:
        batch.create_index(batch.f("ix_simulation_jobs_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("simulation_jobs") as batch:
        batch.drop_index(batch.f("ix_simulation_jobs_status"))
    op.drop_table("simulation_jobs")
    with op.batch_alter_table("product_versions") as batch:
        batch.drop_index(batch.f("ix_product_versions_status"))
        batch.drop_index(batch.f("ix_product_versions_code"))
    op.drop_table("product_versions")
