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


class WriteError(OutputError, OSError):
    """A result file could not be written (a full disk, no permission): one line and exit 2 like any
    ``LocoAdError``, and still an ``OSError`` for callers that treat a failed write as one (the cache does).

    Arguments:
      path: the file or folder being written.
      error: the ``OSError`` that stopped the write.
    """

    def __init__(self, path: object, error: OSError) -> None:
        super().__init__(error.errno, error.strerror, str(path))
        self.message = f"cannot write {path}: {error.strerror or error}"

    def __str__(self) -> str:
        return self.message
