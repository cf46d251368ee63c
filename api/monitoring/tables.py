"""Monitoring tables: the challenger's PD beside each live quote, and loan officers' overrides.

Both are keyed by quote id and never touch the quote row, its body or its hash."""

from __future__ import annotations

import sqlalchemy as sa

from features.store.tables import metadata

# One row per quote and challenger model, written in the background after the quote (no foreign key: the
# shadow writer never waits for, nor blocks, the quote's transaction; reports join on `quotes`).
shadow_scores = sa.Table(
    "shadow_scores",
    metadata,
    sa.Column("quote_id", sa.String(36), primary_key=True),
    sa.Column("model_id", sa.String(64), primary_key=True),  # the challenger
    sa.Column("champion_model", sa.String(64)),
    sa.Column("champion_pd", sa.Float),
    sa.Column("pd", sa.Float, nullable=False),
    # per product: {"champion": [eligible, limit_cny, rate_bp], "challenger": [...]}
    sa.Column("decisions_json", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
)

quote_overrides = sa.Table(
    "quote_overrides",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("quote_id", sa.String(36), sa.ForeignKey("quotes.quote_id"), nullable=False, index=True),
    sa.Column("product", sa.String(64), nullable=False),
    sa.Column("officer", sa.String(128), nullable=False),
    sa.Column("api_key_id", sa.Integer, sa.ForeignKey("api_keys.id"), nullable=False),
    sa.Column("quoted_limit_cny", sa.Float),
    sa.Column("amount_cny", sa.Float),  # None: the amount is not overridden
    sa.Column("quoted_rate", sa.Float),  # annual %
    sa.Column("rate", sa.Float),  # None: the rate is not overridden
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
