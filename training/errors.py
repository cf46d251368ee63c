"""Errors of the training workflow: each carries a message fit to show a risk analyst as is."""

from __future__ import annotations


class TrainingError(Exception):
    """Base class: the CLI prints the message and exits non-zero, never a traceback."""


class DataError(TrainingError):
    """The data cannot train or evaluate a model (missing target, non-binary target, empty sample...)."""


class ConfigError(TrainingError):
    """The model configuration file is invalid."""


class RegistryError(TrainingError):
    """A registry operation is not allowed (wrong stage, same maker and checker, nothing to roll back)."""


class UnknownModelError(RegistryError):
    """No registered model has this id."""


class ArtifactIntegrityError(TrainingError):
    """An artifact is missing or its sha256 differs from the recorded one: it is never loaded."""
