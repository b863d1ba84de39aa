"""Atomic writers for result files (a temporary file in the same folder, then a rename), the check of
an output folder before any work, and all-or-nothing result sets.

Files are created with the permissions the user's umask gives (``0o666 & ~umask``,
as ``open`` does), not the ``0o600`` of ``tempfile.mkstemp``.

A command writes its results through ``ResultSet``: into a hidden staging
folder beside ``--out``, moved into place only when every file is written, so
``--out`` holds the previous run's whole set or the new run's whole set, never
a mix; a second command writing to the same ``--out`` meanwhile is refused.
Each set carries a marker file (``RESULT_MARKER``), by which a re-run knows
the folder is one it may replace and image listings know to skip it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Iterable, Mapping

from loco_ad.errors import OutputError, WriteError

RESULT_MARKER = ".loco_ad-result-set"  # in every result set: a re-run may replace the folder, listings skip it


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
    Raises:
      WriteError: the folder or file cannot be written (a full disk, no permission); ``path`` is unchanged.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = _new_temporary(path)
    except OSError as error:
        raise WriteError(path, error) from None
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data.encode() if isinstance(data, str) else data)
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise WriteError(path, error) from None
        raise
    return path


def check_output_dir(
    path: str | os.PathLike, role: str = "output folder", inputs: Mapping[str, str | os.PathLike | None] | None = None
) -> None:
    """Make sure files can be written in folder ``path``, creating nothing; call it before any work.

    The folder may be missing (writers create it): then its nearest existing
    parent must be a writable folder. Writability is tried, not guessed from
    permission bits (which do not bind root or ACLs): a temporary file is
    created in the folder (or that parent) and removed at once. It must not
    be, contain or lie inside an input, compared by real path (symbolic
    links resolved), so that no run reads its own results as input.

    Arguments:
      path: the folder results will be written to.
      role: how the folder is named in the message, e.g. ``"--out folder"``.
      inputs: what the command reads, by the name the message gives it (e.g.
        ``{"--good folder": ...}``); None values are skipped.
    Raises:
      OutputError: ``path`` is a file, lies under a file, cannot be written, or overlaps an input.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{role} {path} is a file; give a folder")
    _check_apart(path, role, inputs or {})
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


def _check_apart(path: Path, role: str, inputs: Mapping[str, str | os.PathLike | None]) -> None:
    """``OutputError`` when ``path`` is, contains or lies inside one of ``inputs`` (real paths compared)."""
    out = Path(os.path.realpath(path))
    for name, value in inputs.items():
        if value is None:
            continue
        source = Path(os.path.realpath(value))
        if out == source:
            relation = "is"
        elif source in out.parents:
            relation = "lies inside"
        elif out in source.parents:
            relation = "contains"
        else:
            continue
        raise OutputError(f"{role} {path} {relation} the {name} {value}; write results outside every input "
                          "(a later run would read them as input)")


class ResultSet:
    """Write a command's results all or nothing: ``with ResultSet(out) as staging:`` writes into ``staging``.

    On entry ``out`` is checked (``check_output_dir``; an existing folder must
    also be empty or hold an earlier result set, since it is replaced whole), a lock beside it
    (``.<name>.lock``, held with ``fcntl.flock``) refuses a second command
    writing to the same folder, what a killed earlier run left beside it is
    removed, and an empty staging folder ``.<name>.<random>.partial`` is made
    beside ``out`` (same file system, so the final move is a rename). When the
    ``with`` block ends normally the staging folder replaces ``out`` whole (the
    previous set is renamed aside, then removed); when it raises, the staging
    folder is removed and ``out`` is untouched. Folders created to hold ``out``
    are removed again when the run fails before ``out`` exists, so a failed
    run leaves nothing.

    Arguments:
      out: the output folder.
      role: how it is named in messages.
      inputs: the command's inputs, as for ``check_output_dir``.
    Raises (on entry):
      OutputError: see ``check_output_dir``; or another command holds the lock.
    Raises (on exit):
      WriteError: the new set could not be moved into place (``out`` keeps the previous set).
    """

    def __init__(
        self, out: str | os.PathLike, role: str = "--out folder", inputs: Mapping[str, str | os.PathLike | None] | None = None
    ) -> None:
        self.given, self.role, self.inputs = Path(out), role, inputs or {}
        self.out = Path(os.path.realpath(out))
        self.staging: Path | None = None
        self._lock: int | None = None
        self._created: list[Path] = []

    def _beside(self, suffix: str) -> Path:
        return self.out.with_name(f".{self.out.name}.{suffix}")

    def check(self) -> None:
        """The checks of entering, creating nothing: for a command that works long before it writes.

        Raises:
          OutputError: see ``check_output_dir``; or ``out`` holds files that are not an earlier result set.
        """
        check_output_dir(self.given, self.role, self.inputs)
        if self.out.is_dir() and not (self.out / RESULT_MARKER).is_file() and any(self.out.iterdir()):
            raise OutputError(f"{self.role} {self.given} holds files that are not a loco_ad result set; give a new or "
                              "empty folder (a run replaces its output folder whole)")

    def __enter__(self) -> Path:
        self.check()
        try:
            for folder in reversed([self.out.parent, *self.out.parent.parents]):
                if not folder.exists():
                    folder.mkdir()
                    self._created.append(folder)
            self._acquire()
            self._remove_leftovers()
            self.staging = self._beside(f"{secrets.token_hex(6)}.partial")
            self.staging.mkdir()
            (self.staging / RESULT_MARKER).write_text("a loco_ad result set; a re-run of a loco_ad command replaces it whole\n")
        except BaseException as error:
            self._finish(failed=True)
            if isinstance(error, OSError) and not isinstance(error, OutputError):
                raise WriteError(self.staging or self.out.parent, error) from None
            raise
        return self.staging

    def carry(self, name: str) -> bool:
        """Hard-link (or, where links fail, copy) the previous set's ``name``, a file or folder, into the new one.

        For what a re-run may reuse, e.g. resized images. The previous set stays
        intact: files are written by replacing them, never changed in place.
        Returns False when the previous set has no ``name``.
        """
        source = self.out / name
        if not source.exists() or self.staging is None:
            return False
        try:
            if source.is_dir():
                shutil.copytree(source, self.staging / name, copy_function=_link_or_copy)
            else:
                _link_or_copy(source, self.staging / name)
        except OSError as error:
            raise WriteError(self.staging / name, error) from None
        return True

    def final_path(self, path: str | os.PathLike) -> Path:
        """Where ``path``, a file of the staging folder, will be once the set is in place (for paths a result records)."""
        assert self.staging is not None
        return self.given / Path(path).relative_to(self.staging)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        failed = kind is not None
        try:
            if not failed:
                self._commit()
        except BaseException:
            failed = True
            raise
        finally:
            self._finish(failed)

    def _commit(self) -> None:
        assert self.staging is not None
        aside = self._beside(f"{secrets.token_hex(6)}.old") if self.out.exists() else None
        try:
            if aside is not None:
                os.rename(self.out, aside)
            try:
                os.rename(self.staging, self.out)
            except OSError:
                if aside is not None:
                    os.rename(aside, self.out)
                raise
        except OSError as error:
            raise WriteError(self.out, error) from None
        self.staging = None
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)

    def _finish(self, failed: bool) -> None:
        """Remove the staging folder (if still there), release the lock, and after a failure the folders made for ``out``."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None
        if self._lock is not None:
            self._beside("lock").unlink(missing_ok=True)  # while still held: see _acquire
            os.close(self._lock)
            self._lock = None
        if failed and not self.out.exists():
            for folder in reversed(self._created):
                try:
                    folder.rmdir()
                except OSError:
                    break

    def _acquire(self) -> None:
        """Hold ``.<name>.lock`` beside ``out``, or refuse: another command is writing there.

        The lock file is removed while still held when the set is done; a
        command that opened it just before and locks it after is caught by the
        check that the path still names the locked file, and tries again.
        """
        import fcntl  # POSIX; imported here so that a platform without it fails only when writing results

        path = self._beside("lock")
        while True:
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(handle)
                raise OutputError(f"another loco_ad command is writing to {self.role} {self.given} (it holds {path}); "
                                  "wait for it to finish or choose another folder") from None
            try:
                same = os.stat(path).st_ino == os.fstat(handle).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._lock = handle
                return
            os.close(handle)

    def _remove_leftovers(self) -> None:
        """Remove the staging folders of killed runs; put back a previous set a killed run had renamed aside."""
        ours = re.compile(rf"\.{re.escape(self.out.name)}\.[0-9a-f]{{12}}\.(partial|old)")
        for path in self.out.parent.iterdir():
            if not ours.fullmatch(path.name) or not path.is_dir() or path.is_symlink():
                continue
            if path.name.endswith(".old") and not self.out.exists():
                os.rename(path, self.out)
            else:
                shutil.rmtree(path, ignore_errors=True)


def _link_or_copy(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Hard-link ``source`` as ``target``; copy it where the file system has no hard links."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


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
