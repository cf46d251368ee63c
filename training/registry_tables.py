"""Registry tables on the store's shared MetaData (created by migration 0002_model_registry)."""

from __future__ import annotations

import sqlalchemy as sa

from features.store.tables import metadata

models = sa.Table(
    "models",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True, comment="content hash of the four artifacts"),
    sa.Column("stage", sa.String(16), nullable=False, index=True),
    sa.Column("created_by", sa.String(64), nullable=False, comment="who registered the model"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("operator", sa.String(64), nullable=False, comment="who ran the training"),
    sa.Column("training_started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("training_finished_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("data_source", sa.JSON, nullable=False),
    sa.Column("data_checksum", sa.String(64), nullable=False),
    sa.Column("time_window_start", sa.Date),
    sa.Column("time_window_end", sa.Date),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("code_version", sa.String(128), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("model_metadata", sa.JSON, nullable=False),
    sa.Column("artifact_dir", sa.String(1024), nullable=False),
    sa.Column("model_sha256", sa.String(64), nullable=False),
    sa.Column("calibrator_sha256", sa.String(64), nullable=False),
    sa.Column("report_sha256", sa.String(64), nullable=False),
    sa.Column("metadata_sha256", sa.String(64), nullable=False),
    comment="probability-of-default models: artifacts, traceability fields and current stage",
)

promotion_requests = sa.Table(
    "model_promotion_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_id", sa.String(64), sa.ForeignKey("models.id"), nullable=False, index=True),
    sa.Column("to_stage", sa.String(16), nullable=False),
    sa.Column("requested_by", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, comment="pending, approved, rejected or superseded"),
    sa.Column("decided_by", sa.String(64)),
    sa.Column("decision_reason", sa.Text),
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    comment="maker-checker: promotions to champion wait here for a second person",
)

transitions = sa.Table(
    "model_transitions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_id", sa.String(64), sa.ForeignKey("models.id"), nullable=False, index=True),
    sa.Column("action", sa.String(24), nullable=False, comment="registered, promoted, replaced, rolled_back, "
                                                               "restored or retired"),
    sa.Column("from_stage", sa.String(16)),
    sa.Column("to_stage", sa.String(16), nullable=False),
    sa.Column("requested_by", sa.String(64), nullable=False),
    sa.Column("approved_by", sa.String(64)),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("request_id", sa.Integer, sa.ForeignKey("model_promotion_requests.id")),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    comment="every stage change of every model: who, when, why (append-only)",
)
