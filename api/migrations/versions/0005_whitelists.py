"""Pre-credit whitelists (issue 17): proposals, publications and their rows

Revision ID: 0005_whitelists
Revises: 0004
"""

from __future__ import annotations

revision = "0005_whitelists"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
