"""Shared fixtures: the real MVTec LOCO subset (when present), a tiny synthetic LOCO tree, a decompression-bomb PNG and a read-only folder."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest
from PIL import Image

from tests.loco_tree import make_loco_tree

LOCO_SUBSET = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec_loco_subset"


@pytest.fixture
def loco_subset() -> Path:
    """The data root of the shared real subset (``juice_bottle`` only); skips the test when absent."""
    if not (LOCO_SUBSET / "juice_bottle").is_dir():
        pytest.skip(f"real MVTec LOCO subset not found at {LOCO_SUBSET}")
    return LOCO_SUBSET


@pytest.fixture
def tiny_loco_root(tmp_path: Path) -> Path:
    """Data root of a tiny synthetic ``juice_bottle`` category (6 train, 2 validation, 3 good, 3 logical, 2 structural)."""
    return make_loco_tree(tmp_path / "loco")


@pytest.fixture(scope="session")
def bomb_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flat 14000×14000 PNG (196 million pixels, above Pillow's decompression-bomb limit; 24 KB on disk)."""
    path = tmp_path_factory.mktemp("bomb") / "huge.png"
    Image.new("1", (14000, 14000)).save(path)
    return path


@pytest.fixture
def make_read_only() -> Iterator[Callable[[Path], Path]]:
    """Makes an existing folder (and its sub-folders) read-only for everyone until the test ends.

    Mode 0o555, plus the immutable attribute (``chattr +i``) when running as
    root, whom modes do not stop. Skips the test when the folder stays writable.
    """
    done: list[tuple[Path, bool]] = []

    def make(folder: Path) -> Path:
        for path in [folder, *(p for p in folder.rglob("*") if p.is_dir())][::-1]:
            path.chmod(0o555)
            immutable = os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
            done.append((path, immutable))
        try:
            (folder / ".probe").touch()
        except OSError:
            return folder
        (folder / ".probe").unlink()
        pytest.skip("cannot make a folder read-only here (root without chattr +i)")

    yield make
    for path, immutable in done[::-1]:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o755)


@pytest.fixture
def read_only_dir(tmp_path: Path, make_read_only: Callable[[Path], Path]) -> Path:
    """An empty folder nobody can write to (see ``make_read_only``)."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    return make_read_only(folder)
