"""Service tables: API keys, stored quotes (with their input snapshot), configuration blobs and batch jobs.

The audit log's tables live with it, in `features.store.audit`."""

from __future__ import annotations

import sqlalchemy as sa

from features.store.tables import metadata

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("key_prefix", sa.String(16), nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

quotes = sa.Table(
    "quotes",
    metadata,
    sa.Column("quote_id", sa.String(36), primary_key=True),
    sa.Column("credit_code", sa.String(18), nullable=False, index=True),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("api_key_id", sa.Integer, sa.ForeignKey("api_keys.id"), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("consent_ref", sa.String(128)),
    sa.Column("idempotency_key", sa.String(128)),
    sa.Column("request_json", sa.Text, nullable=False),
    sa.Column("snapshot_json", sa.Text, nullable=False),  # features, provenance and versions used
    sa.Column("response_json", sa.Text, nullable=False),
    sa.Column("response_sha256", sa.String(64), nullable=False),
    sa.UniqueConstraint("api_key_id", "idempotency_key", name="uq_quotes_key_idempotency"),
)

# Content-addressed configuration (product definitions, reference rates) so that any stored quote can be
# replayed under exactly the versions it was computed with.
config_blobs = sa.Table(
    "config_blobs",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("code", sa.String(64), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("body_json", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Batch jobs started over the API (a whole-region pre-credit run, say): who asked, what, how far, the result.
batch_jobs = sa.Table(
    "batch_jobs",
    metadata,
    sa.Column("job_id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),  # queued, running, succeeded, failed
    sa.Column("api_key_id", sa.Integer, sa.ForeignKey("api_keys.id"), nullable=False),
    sa.Column("requested_by", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("request_json", sa.Text, nullable=False),
    sa.Column("partitions_done", sa.Integer, nullable=False, default=0),
    sa.Column("partitions_total", sa.Integer),
    sa.Column("result_path", sa.Text),
    sa.Column("result_sha256", sa.String(64)),
    sa.Column("result_rows", sa.Integer),
    sa.Column("summary_json", sa.Text),
    sa.Column("error", sa.Text),
)

# A key may expire (issue 14); NULL: it does not. Revocation is `revoked_at` above.
api_keys.append_column(sa.Column("expires_at", sa.DateTime(timezone=True)))
