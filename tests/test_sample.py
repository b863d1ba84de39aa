"""The sample bundled with the package: every file accounted for, its licence beside it, rebuilt by its script."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from scripts.make_sample import make_sample


def _provenance(folder: Path) -> list[dict[str, str]]:
    with open(folder / "provenance.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_provenance_names_every_file_and_the_licence_is_beside_it(loco_sample: Path) -> None:
    folder = loco_sample / "juice_bottle"
    rows = _provenance(folder)
    present = {str(path.relative_to(folder)) for path in folder.rglob("*.png")}
    assert {row["file"] for row in rows} == present and len(rows) == len(present)
    assert all(row["source_in_mvtec_loco_juice_bottle"] and row["shows"] for row in rows)
    assert "Attribution-NonCommercial-ShareAlike 4.0 International" in (folder / "license.txt").read_text()
    assert "Bergmann" in (folder / "readme.txt").read_text()
    assert "CC BY-NC-SA 4.0" in (loco_sample / "README.md").read_text()
    assert sum(path.stat().st_size for path in loco_sample.rglob("*")) < 3_000_000


def test_script_rebuilds_the_sample_from_the_subset(loco_subset: Path, loco_sample: Path, tmp_path: Path) -> None:
    rows = make_sample(loco_subset / "juice_bottle", tmp_path / "juice_bottle")
    bundled = loco_sample / "juice_bottle"
    assert rows == _provenance(bundled)
    for name in ("license.txt", "readme.txt", "defects_config.json"):
        assert (tmp_path / "juice_bottle" / name).read_bytes() == (bundled / name).read_bytes()
    for row in rows:
        rebuilt = np.asarray(Image.open(tmp_path / "juice_bottle" / row["file"]))
        assert np.array_equal(rebuilt, np.asarray(Image.open(bundled / row["file"]))), row["file"]
