"""Errors a user can cause. CLIs print their message on one line and exit with code 2."""

from __future__ import annotations


class LocoAdError(Exception):
    """Base class of every error caused by input, configuration or missing weights."""


class DataError(LocoAdError):
    """A data folder is missing, not in the expected layout, or holds too few images."""


class ImageReadError(DataError):
    """An image file cannot be read or decoded.

    Arguments:
      path: the file that failed.
      reason: what went wrong, in a few words.
    """

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


class ConfigError(LocoAdError):
    """An unknown preset, scorer, category or an invalid setting."""


class ModelWeightsError(LocoAdError):
    """Model weights are not available locally and cannot be downloaded."""


class OutputError(LocoAdError):
    """An output folder cannot be created or written (it lies under a file, or is read-only)."""
