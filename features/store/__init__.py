"""The government-data store: tables per source with provenance, through SQLAlchemy."""

from features.store.db import connect
from features.store.load import load_features, load_source_frames
from features.store.tables import batches, metadata, source_table

__all__ = ["batches", "connect", "load_features", "load_source_frames", "metadata", "source_table"]
