"""Challenger PDs in shadow and loan officers' overrides (issue 12): shadow_scores, quote_overrides

Revision ID: 0008_shadow_overrides
Revises: 0007_product_versions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_shadow_overrides"
down_revision = "0007_product_versions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shadow_scores",
        sa.Column("quote_id", sa.String(36), primary_key=True),
        sa.Column("model_id", sa.String(64), primary_key=True),
        sa.Column("champion_model", sa.String(64)),
        sa.Column("champion_pd", sa.Float),
        sa.Column("pd", sa.Float, nullable=False),
        sa.Column("decisions_json", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_shadow_scores_created_at", "shadow_scores", ["created_at"])
    op.create_table(
        "quote_overrides",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("quote_id", sa.String(36), sa.ForeignKey("quotes.quote_id"), nullable=False),
        sa.Column("product", sa.String(64), nullable=False),
        sa.Column("officer", sa.String(128), nullable=False),
        sa.Column("api_key_id", sa.Integer, sa.ForeignKey("api_keys.id"), nullable=False),
        sa.Column("quoted_limit_cny", sa.Float),
        sa.Column("amount_cny", sa.Float),
        sa.Column("quoted_rate", sa.Float),
        sa.Column("rate", sa.Float),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_quote_overrides_quote_id", "quote_overrides", ["quote_id"])


def downgrade() -> None:
    op.drop_index("ix_quote_overrides_quote_id", "quote_overrides")
    op.drop_table("quote_overrides")
    op.drop_index("ix_shadow_scores_created_at", "shadow_scores")
    op.drop_table("shadow_scores")
