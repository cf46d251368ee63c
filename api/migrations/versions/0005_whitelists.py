"""Pre-credit whitelists (issue 17): proposals, publications, their rows, change sets and files

Revision ID: 0005_whitelists
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_whitelists"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "whitelists",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("source_sha256", sa.String(length=64), nullable=False),
        sa.Column("versions_json", sa.Text(), nullable=False),
        sa.Column("proposed_by", sa.String(length=128), nullable=False),
        sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("summary_json", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.Column("publication_no", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_whitelists")),
        sa.UniqueConstraint("publication_no", name=op.f("uq_whitelists_publication_no")),
    )
    op.create_index(op.f("ix_whitelists_status"), "whitelists", ["status"], unique=False)
    op.create_table(
        "whitelist_products",
        sa.Column("whitelist_id", sa.Integer(), nullable=False),
        sa.Column("product", sa.String(length=64), nullable=False),
        sa.Column("product_version", sa.String(length=64), nullable=False),
        sa.Column("definition_sha256", sa.String(length=64), nullable=False),
        sa.Column("fields_json", sa.Text(), nullable=False),
        sa.Column("expiry_days", sa.Integer(), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("base_id", sa.Integer(), nullable=True),
        sa.Column("changes_json", sa.Text(), nullable=True),
        sa.Column("superseded_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["whitelist_id"], ["whitelists.id"],
                                name=op.f("fk_whitelist_products_whitelist_id_whitelists")),
        sa.PrimaryKeyConstraint("whitelist_id", "product", name=op.f("pk_whitelist_products")),
    )
    op.create_table(
        "whitelist_rows",
        sa.Column("whitelist_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("product", sa.String(length=64), nullable=False),
        sa.Column("credit_code", sa.String(length=18), nullable=False),
        sa.Column("grade", sa.String(length=16), nullable=False),
        sa.Column("tier", sa.String(length=64), nullable=False),
        sa.Column("limit_cny", sa.BigInteger(), nullable=False),
        sa.Column("rate_lo_bp", sa.Integer(), nullable=True),
        sa.Column("rate_hi_bp", sa.Integer(), nullable=True),
        sa.Column("rate_bp", sa.Integer(), nullable=True),
        sa.Column("fee_bp", sa.Integer(), nullable=True),
        sa.Column("subsidy_bp", sa.Integer(), nullable=True),
        sa.Column("reasons", sa.Text(), nullable=True),
        sa.Column("reasons_zh", sa.Text(), nullable=True),
        sa.Column("reasons_en", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("whitelist_id", "product", "credit_code", name=op.f("pk_whitelist_rows")),
    )
    op.create_table(
        "whitelist_changes",
        sa.Column("whitelist_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("product", sa.String(length=64), nullable=False),
        sa.Column("credit_code", sa.String(length=18), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("fields", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("whitelist_id", "product", "credit_code", name=op.f("pk_whitelist_changes")),
    )
    op.create_table(
        "whitelist_files",
        sa.Column("whitelist_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("product", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("whitelist_id", "product", "format", name=op.f("pk_whitelist_files")),
    )


def downgrade() -> None:
    op.drop_table("whitelist_files")
    op.drop_table("whitelist_changes")
    op.drop_table("whitelist_rows")
    op.drop_table("whitelist_products")
    op.drop_index(op.f("ix_whitelists_status"), table_name="whitelists")
    op.drop_table("whitelists")
