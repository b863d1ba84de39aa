"""Shared fixtures: the real MVTec LOCO subset (when present) and a tiny synthetic LOCO tree."""

from __future__ import annotations

from pathlib import Path

import pytest

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
