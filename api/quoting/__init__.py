"""The quoting core around the pure engine: versions in force, population, snapshot, issuing, storage."""
