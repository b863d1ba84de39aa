"""On-disk cache of the per-image model outputs, keyed by image content and model identity.

Entries are ``.npz`` files of plain arrays (loaded with ``allow_pickle=False``),
written to a temporary file and renamed into place (``io.write_atomic``), so a
killed run leaves either a whole entry or none, and a re-run resumes from what
is there. The key hashes the cache format's version (``FORMAT_VERSION``), the
image's pixels and a settings string that names everything the outputs depend
on (``loco_ad.identity.model_key``: settings, stage classes, their versions and
parameters, the weights' identity).

Each entry proves what it holds: beside its arrays it stores its own key
(``__key__``) and a SHA-256 of its arrays' names, dtypes, shapes and bytes
(``__checksum__``), both checked on every load. An entry found under another
key (two files swapped or copied) or whose arrays changed since they were
written (an array flipped, a bit rotted) is damaged.

What can go wrong, and what happens:

- An entry that is damaged, cannot be read or is incomplete (the above, a
  zero-byte or truncated file from a full disk, a valid ``.npz`` without its
  key and checksum or without the expected arrays, or with arrays of the wrong
  dtype or shape, a folder in the entry's place) is removed with a warning and
  counts as a miss, so its image is analysed again.
- An entry that cannot be stored because of what lies in its place (a folder
  that could not be removed, a file where its sub-folder should be): a warning,
  and the run goes on storing the other entries.
- Temporary files older than ``stale_after`` seconds (left by a ``kill -9``
  between write and rename) are removed when the cache is opened.
- A cache folder that cannot be created or written (read-only, under a file,
  a full disk): a warning, then the run goes on with the entries already
  there and stores no new ones. The results are the same either way (the cache
  only saves time), so this is not an error; the CLIs' result folders, which
  a user needs, are checked strictly (``io.check_output_dir``).

The cache is opened (folder created, stale files removed, writability tried)
on the first ``load`` or ``save``, i.e. before the first model runs.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

from loco_ad.io import write_atomic

logger = logging.getLogger(__name__)

# What an entry must hold: array name -> (dtype, shape), None in the shape for any length.
ArraySpec = tuple[type, tuple[int | None, ...]]

# Version of the entry format, part of every key: 2 added the key and the checksum stored in each entry.
FORMAT_VERSION = 2
KEY_ARRAY, CHECKSUM_ARRAY = "__key__", "__checksum__"
# Errors of one entry's path (what lies in its place), not of the cache folder: the others are still stored.
_ENTRY_ERRORS = (errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ENOTEMPTY)


def default_cache_dir() -> Path:
    """``$LOCO_AD_CACHE`` if set, else ``$XDG_CACHE_HOME/loco_ad`` (``~/.cache/loco_ad``)."""
    if os.environ.get("LOCO_AD_CACHE"):
        return Path(os.environ["LOCO_AD_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "loco_ad"


class AnalysisCache:
    """A folder of cached stage outputs, one file per (settings, image).

    Arguments:
      root: the cache folder; created when the cache is first used.
      stale_after: age in seconds above which a leftover temporary file is removed.
    Attributes:
      hits, misses: counts of ``load`` calls that found / did not find a usable entry.
      writable: whether new entries are stored; None until the cache is first used.
    """

    def __init__(self, root: Path, stale_after: float = 3600.0) -> None:
        self.root = Path(root)
        self.stale_after = stale_after
        self.hits = 0
        self.misses = 0
        self.writable: bool | None = None

    @staticmethod
    def key(rgb: np.ndarray, settings: str) -> str:
        """Hex digest of the format version, the image pixels (with their shape and dtype) and the settings string."""
        digest = hashlib.sha256(f"loco_ad cache format {FORMAT_VERSION}\n".encode())
        digest.update(settings.encode())
        digest.update(repr((rgb.shape, str(rgb.dtype))).encode())
        digest.update(np.ascontiguousarray(rgb).tobytes())
        return digest.hexdigest()

    @staticmethod
    def text_key(text: str) -> str:
        """Hex digest of the format version and ``text``: the key of an entry that no image's pixels name."""
        return hashlib.sha256(f"loco_ad cache format {FORMAT_VERSION}\n{text}".encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def _open(self) -> None:
        """Create the folder, remove stale temporary files and find out whether entries can be stored."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                pass
            self.writable = True
        except OSError as error:
            self._stop_writing(f"cache folder {self.root} cannot be written ({error.strerror or error})")
            return
        cutoff = time.time() - self.stale_after
        for temporary in self.root.glob("*/*.tmp"):
            try:
                if temporary.stat().st_mtime < cutoff:
                    temporary.unlink()
                    logger.info("removed stale temporary file %s", temporary)
            except OSError:  # removed meanwhile by another run, or not ours to remove
                pass

    def _stop_writing(self, reason: str) -> None:
        logger.warning("%s; going on without storing new analyses (results are unchanged, only slower to redo)", reason)
        self.writable = False

    def load(self, key: str, expected: Mapping[str, ArraySpec] | None = None) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key``, or None.

        Arguments:
          key: from ``AnalysisCache.key``.
          expected: arrays the entry must hold, with their dtype and shape; an
            entry that lacks one or holds it with another dtype or shape is damaged.
        Returns:
          the arrays; None when there is no entry or it is damaged (it is then
          removed, with a warning, and the call counts as a miss).
        """
        if self.writable is None:
            self._open()
        path = self._path(key)
        if path.is_dir():
            problem = "a folder in its place"
        elif path.exists():
            try:
                with np.load(path, allow_pickle=False) as stored:
                    arrays = {name: stored[name] for name in stored.files}
                problem = _identity_problem(arrays, key) or _mismatch(arrays, expected or {})
            except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
                problem = str(error) or type(error).__name__
            if problem is None:
                self.hits += 1
                return arrays
        else:
            problem = None
        if problem is not None:
            logger.warning("removing damaged cache entry %s (%s); its image is analysed again", path, problem)
            _remove(path)
        self.misses += 1
        return None

    def save(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Store ``arrays`` under ``key`` atomically (nothing, with one warning, if the cache cannot be written)."""
        if self.writable is None:
            self._open()
        if not self.writable:
            return
        if KEY_ARRAY in arrays or CHECKSUM_ARRAY in arrays:
            raise ValueError(f"array names {KEY_ARRAY} and {CHECKSUM_ARRAY} are the cache's own")
        buffer = io.BytesIO()
        np.savez(buffer, **arrays, **{KEY_ARRAY: np.array(key), CHECKSUM_ARRAY: np.array(checksum(arrays))})
        path = self._path(key)
        try:
            write_atomic(path, buffer.getvalue())
        except OSError as error:
            if error.errno not in _ENTRY_ERRORS:
                self._stop_writing(f"cannot write to cache folder {self.root} ({error.strerror or error})")
                return
            logger.warning("cannot store cache entry %s (%s); storing the others", path, error.strerror or error)
            _remove(path)  # a folder in its place: gone for the next run


def checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 hex digest of the arrays' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(repr((name, array.dtype.str, array.shape)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _identity_problem(arrays: dict[str, np.ndarray], key: str) -> str | None:
    """What is wrong with a loaded entry's stored key and checksum (popped from ``arrays``), or None."""
    stored_key, stored_sum = arrays.pop(KEY_ARRAY, None), arrays.pop(CHECKSUM_ARRAY, None)
    if stored_key is None or stored_sum is None:
        return "no stored key and checksum (another cache format)"
    if stored_key.shape != () or str(stored_key) != key:
        return "it holds the entry of another key"
    if stored_sum.shape != () or str(stored_sum) != checksum(arrays):
        return "its arrays do not match their checksum"
    return None


def _remove(path: Path) -> None:
    """Remove a damaged entry (a file, or a folder in its place); a read-only cache keeps it."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError:  # a read-only cache: the entry stays, and is recomputed each time
        pass


def _mismatch(arrays: Mapping[str, np.ndarray], expected: Mapping[str, ArraySpec]) -> str | None:
    """What is wrong with ``arrays`` against ``expected``, or None."""
    for name, (dtype, shape) in expected.items():
        if name not in arrays:
            return f"no array {name!r}"
        array = arrays[name]
        if array.dtype != dtype or array.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, array.shape)):
            return f"array {name!r} is {array.dtype} {array.shape}, expected {np.dtype(dtype)} {shape}"
    return None
