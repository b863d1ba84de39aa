"""Atomic writers for result files (a temporary file in the same folder, then a rename) and the check of
an output folder before any work.

Files are created with the permissions the user's umask gives (``0o666 & ~umask``,
as ``open`` does), not the ``0o600`` of ``tempfile.mkstemp``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

from loco_ad.errors import OutputError


def _new_temporary(path: Path) -> tuple[int, Path]:
    """A new empty file ``.<name>.<random>.tmp`` beside ``path``, open for writing, mode ``0o666 & ~umask``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one.

    Arguments:
      path: the file to write; its folder is created if missing.
      data: the content (``str`` is written as UTF-8).
    Returns:
      ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = _new_temporary(path)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data.encode() if isinstance(data, str) else data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def check_output_dir(path: str | os.PathLike, role: str = "output folder") -> None:
    """Make sure files can be written in folder ``path``, creating nothing; call it before any work.

    The folder may be missing (writers create it): then its nearest existing
    parent must be a writable folder. Writability is tried, not guessed from
    permission bits (which do not bind root or ACLs): a temporary file is
    created in the folder (or that parent) and removed at once.

    Arguments:
      path: the folder results will be written to.
      role: how the folder is named in the message, e.g. ``"--out folder"``.
    Raises:
      OutputError: ``path`` is a file, lies under a file, or cannot be written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{role} {path} is a file; give a folder")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot create {role} {path}: {existing} is a file")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        where = "" if existing == path else f" (it would be created in {existing})"
        raise OutputError(f"cannot write to {role} {path}{where}: {error.strerror or error}") from None


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], columns: list[str] | None = None) -> Path:
    """Write dict rows as CSV; columns default to the union of keys in first-seen order."""
    rows = list(rows)
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_atomic(path, text.getvalue())


def _finite(value: Any) -> Any:
    """JSON has no NaN: undefined numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as indented JSON (NaN and infinities as null)."""
    return write_atomic(path, json.dumps(_finite(payload), indent=2, default=str) + "\n")
