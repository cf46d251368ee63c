"""Whole-region pre-credit runs (全覆盖预授信): every enterprise scored on every product, resumable by
partition, in threads or on Dask. See docs/batch.md."""
