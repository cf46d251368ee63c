"""Console sign-in sessions (issue 13): ui_sessions

Revision ID: 0009_ui_sessions
Revises: 0008_shadow_overrides
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_ui_sessions"
down_revision = "0008_shadow_overrides"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ui_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], name=op.f("fk_ui_sessions_api_key_id_api_keys")),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_ui_sessions")),
    )
    op.create_index(op.f("ix_ui_sessions_api_key_id"), "ui_sessions", ["api_key_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_ui_sessions_api_key_id"), table_name="ui_sessions")
    op.drop_table("ui_sessions")
