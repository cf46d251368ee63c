"""Watching the live service: population and feature stability (PSI), data-feed health, the challenger model
in shadow, and loan officers' overrides (issue 12)."""
