"""Product versions and simulation jobs (created by migration 0007_product_versions).

A version's body is a content-addressed row of `config_blobs` (the same store replay reads), so a
version is never copied: `sha256` names it. The lifecycle columns record who did each step and when.
"""

from __future__ import annotations

import sqlalchemy as sa

from features.store.tables import metadata

product_versions = sa.Table(
    "product_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("code", sa.String(64), nullable=False, index=True),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("effective_date", sa.Date, nullable=False),
    sa.Column("sha256", sa.String(64), sa.ForeignKey("config_blobs.sha256"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True,
              comment="draft, submitted, approved or rejected (approved ones are scheduled, active or "
                      "superseded by date)"),
    sa.Column("note", sa.Text),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("submitted_by", sa.String(128)),
    sa.Column("submitted_at", sa.DateTime(timezone=True)),
    sa.Column("decided_by", sa.String(128)),
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    sa.Column("decision_reason", sa.Text),
    sa.Column("approval_no", sa.Integer, unique=True,
              comment="1, 2, ... in the order of approval: the epoch every quoting process watches"),
    comment="product definition versions: draft -> submitted -> approved by another person (maker-checker)",
)

simulation_jobs = sa.Table(
    "simulation_jobs",
    metadata,
    sa.Column("job_id", sa.String(36), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False, index=True, comment="queued, running, succeeded, failed"),
    sa.Column("requested_by", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("request_json", sa.Text, nullable=False),
    sa.Column("rows_done", sa.Integer, nullable=False, default=0),
    sa.Column("rows_total", sa.Integer),
    sa.Column("summary_json", sa.Text),
    sa.Column("report_path", sa.Text),
    sa.Column("error", sa.Text),
    comment="what-if simulations started over the API (POST /v1/products/simulations)",
)
