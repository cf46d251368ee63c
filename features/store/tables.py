"""Table definitions, generated from the source catalogue (one table per source)."""

from __future__ import annotations

import sqlalchemy as sa

from features.sources import SOURCES, FieldSpec

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# One row per ingested file: the provenance every data row points to.
batches = sa.Table(
    "ingestion_batches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("file_name", sa.String(512), nullable=False),
    sa.Column("file_sha256", sa.String(64), nullable=False),
    sa.Column("rows_read", sa.Integer, nullable=False),
    sa.Column("rows_accepted", sa.Integer, nullable=False),
    sa.Column("rows_rejected", sa.Integer, nullable=False),
    sa.Column("rows_already_stored", sa.Integer, nullable=False),
    sa.Column("quarantine_file", sa.String(512)),
    sa.Column("operator", sa.String(64), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("source", "file_sha256", name="uq_ingestion_batches_source_sha"),
)

_COLUMN_TYPES = {
    "str": sa.String(256),
    "enum": sa.String(32),
    "int": sa.BigInteger(),
    "float": sa.Float(precision=53),
    "bool": sa.Boolean(),
    "date": sa.Date(),
}


def _column(spec: FieldSpec) -> sa.Column:
    return sa.Column(spec.name, _COLUMN_TYPES[spec.kind], nullable=not spec.required, comment=spec.doc[:200])


def table_name(source_name: str) -> str:
    return f"src_{source_name}"


SOURCE_TABLES: dict[str, sa.Table] = {
    name: sa.Table(
        table_name(name),
        metadata,
        sa.Column("credit_code", sa.String(18), nullable=False),
        sa.Column("as_of", sa.Date, nullable=False),
        *(_column(f) for f in spec.fields),
        sa.Column("consent_ref", sa.String(128)),
        sa.Column("batch_id", sa.Integer, sa.ForeignKey("ingestion_batches.id"), nullable=False),
        sa.PrimaryKeyConstraint("credit_code", "as_of", name=f"pk_{table_name(name)}"),
        comment=f"{spec.doc}; provider {spec.provider} ({spec.provider_zh})",
    )
    for name, spec in SOURCES.items()
}


def source_table(source_name: str) -> sa.Table:
    return SOURCE_TABLES[source_name]
