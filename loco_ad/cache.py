"""On-disk cache of the per-image model outputs, keyed by image content and model settings.

Entries are ``.npz`` files of plain arrays (loaded with ``allow_pickle=False``),
written to a temporary file and renamed into place, so a killed run leaves
either a whole entry or none, and a re-run resumes from what is there.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$LOCO_AD_CACHE`` if set, else ``$XDG_CACHE_HOME/loco_ad`` (``~/.cache/loco_ad``)."""
    if os.environ.get("LOCO_AD_CACHE"):
        return Path(os.environ["LOCO_AD_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "loco_ad"


class AnalysisCache:
    """A folder of cached stage outputs, one file per (settings, image).

    Arguments:
      root: the cache folder; created on first write.
    Attributes:
      hits, misses: counts of ``load`` calls that found / did not find an entry.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(rgb: np.ndarray, settings: str) -> str:
        """Hex digest of the image pixels (with their shape) and the settings string."""
        digest = hashlib.sha256(settings.encode())
        digest.update(repr(rgb.shape).encode())
        digest.update(np.ascontiguousarray(rgb).tobytes())
        return digest.hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key``, or None (a damaged entry is removed and counts as a miss)."""
        path = self._path(key)
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as stored:
                    arrays = {name: stored[name] for name in stored.files}
                self.hits += 1
                return arrays
            except (OSError, ValueError, zipfile.BadZipFile) as error:
                logger.warning("removing damaged cache entry %s (%s)", path, error)
                path.unlink(missing_ok=True)
        self.misses += 1
        return None

    def save(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Store ``arrays`` under ``key`` atomically."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                np.savez(file, **arrays)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
