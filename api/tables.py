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

# Batch jobs bounded (issue 14, migration 0010): a running job's lease and the worker holding it, how often it
# was taken over after its worker vanished, a cancel request (status "cancelled" once honoured).
batch_jobs.append_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True)))
batch_jobs.append_column(sa.Column("worker", sa.String(128)))
batch_jobs.append_column(sa.Column("retries", sa.Integer, nullable=False, server_default=sa.text("0")))
batch_jobs.append_column(sa.Column("cancel_requested_by", sa.String(128)))
batch_jobs.append_column(sa.Column("cancel_requested_at", sa.DateTime(timezone=True)))
sa.Index("ix_batch_jobs_api_key_id_created_at", batch_jobs.c.api_key_id, batch_jobs.c.created_at)

# A key may expire (issue 14); NULL: it does not. Revocation is `revoked_at` above.
api_keys.append_column(sa.Column("expires_at", sa.DateTime(timezone=True)))

# Pre-credit whitelists (issue 17): a finished pre-credit run proposed by a risk analyst as the whitelist of
# some products for its as-of date, published by a different person (maker-checker), pulled by the platform.
# `api.precredit.whitelists` owns them. Status: importing -> proposed -> published | rejected.
whitelists = sa.Table(
    "whitelists",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("job_id", sa.String(36)),  # the API batch job it came from (None: a run file from the CLI)
    sa.Column("source_path", sa.Text, nullable=False),
    sa.Column("source_sha256", sa.String(64), nullable=False),
    sa.Column("versions_json", sa.Text, nullable=False),  # the run's versions (definitions, rates, model)
    sa.Column("proposed_by", sa.String(128), nullable=False),
    sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("rows", sa.Integer),
    sa.Column("summary_json", sa.Text),  # rows and total limits per product and grade
    sa.Column("decided_by", sa.String(128)),
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    sa.Column("decision_note", sa.Text),
    sa.Column("publication_no", sa.Integer, unique=True),  # 1, 2, ... in the order of publication
)

# One row per product of a whitelist: the definition the run used, what the platform may see of it, and the
# change set against the whitelist it replaces (`base_id`; None = the product's first, every row entered).
whitelist_products = sa.Table(
    "whitelist_products",
    metadata,
    sa.Column("whitelist_id", sa.Integer, sa.ForeignKey("whitelists.id"), primary_key=True),
    sa.Column("product", sa.String(64), primary_key=True),
    sa.Column("product_version", sa.String(64), nullable=False),
    sa.Column("definition_sha256", sa.String(64), nullable=False),
    sa.Column("fields_json", sa.Text, nullable=False),  # the row fields the platform may see
    sa.Column("expiry_days", sa.Integer, nullable=False),
    sa.Column("expires_on", sa.Date),  # set at publication: publication date + expiry_days
    sa.Column("rows", sa.Integer, nullable=False, default=0),
    sa.Column("base_id", sa.Integer),
    sa.Column("changes_json", sa.Text),  # counts of the change set, per kind and grade
    sa.Column("superseded_by", sa.Integer),
)

# The rows: one per eligible enterprise and product, in credit-code order by the primary key. Rates and fees
# in integer basis points (the engine's own unit), money in whole CNY. No foreign key: loaded in bulk.
whitelist_rows = sa.Table(
    "whitelist_rows",
    metadata,
    sa.Column("whitelist_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("product", sa.String(64), primary_key=True),
    sa.Column("credit_code", sa.String(18), primary_key=True),
    sa.Column("grade", sa.String(16), nullable=False),
    sa.Column("tier", sa.String(64), nullable=False),
    sa.Column("limit_cny", sa.BigInteger, nullable=False),
    sa.Column("rate_lo_bp", sa.Integer),
    sa.Column("rate_hi_bp", sa.Integer),
    sa.Column("rate_bp", sa.Integer),
    sa.Column("fee_bp", sa.Integer),
    sa.Column("subsidy_bp", sa.Integer),
    sa.Column("reasons", sa.Text),
    sa.Column("reasons_zh", sa.Text),
    sa.Column("reasons_en", sa.Text),
)

# A whitelist's change set per product against its base: entered, left, or changed (`fields`: a bit mask of
# the platform-visible fields that differ, see api.precredit.whitelists.CHANGE_FIELDS).
whitelist_changes = sa.Table(
    "whitelist_changes",
    metadata,
    sa.Column("whitelist_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("product", sa.String(64), primary_key=True),
    sa.Column("credit_code", sa.String(18), primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("fields", sa.Integer, nullable=False, default=0),
)

# Downloadable files of a published whitelist, written once and kept content-addressed (`<sha256>.<format>`).
whitelist_files = sa.Table(
    "whitelist_files",
    metadata,
    sa.Column("whitelist_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("product", sa.String(64), primary_key=True),
    sa.Column("format", sa.String(8), primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
