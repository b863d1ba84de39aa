"""Tests of experiments/threshold_rules.py: the fpr rule at several target rates, unseen good images, misses."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from experiments.threshold_rules import main
from loco_ad.threshold import RULES


def test_rates_on_unseen_good_images_and_misses_per_rule(tiny_loco_root: Path, tmp_path: Path, capsys) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    for path in sorted((tiny_loco_root / "juice_bottle" / "validation" / "good").glob("*.png")):
        shutil.copy(path, extra / path.name)
    argv = ["--data-root", str(tiny_loco_root), "--shots", "3", "--seeds", "0", "--preset", "offline", "--quiet",
            "--extra-good", str(extra), "--target-fpr", "0.05", "0.2", "--out", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    with open(tmp_path / "out" / "threshold_rules.csv") as file:
        rows = {row["rule"]: row for row in csv.DictReader(file)}
    assert set(rows) == {rule for rule in RULES if rule != "fpr"} | {"fpr@0.05", "fpr@0.2"}
    for row in rows.values():
        assert float(row["miss"]) == pytest.approx(1 - float(row["tpr"]))
        assert float(row["fpr_extra"]) * 2 in (0.0, 1.0, 2.0)  # a share of the two unseen good images
    assert float(rows["fpr@0.05"]["threshold"]) > float(rows["fpr@0.2"]["threshold"])
    assert "FPR extra" in printed and "fpr@0.05" in printed


def test_a_target_rate_outside_zero_one_is_one_line(tiny_loco_root: Path, tmp_path: Path, capsys) -> None:
    argv = ["--data-root", str(tiny_loco_root), "--preset", "offline", "--target-fpr", "1.5", "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == "error: --target-fpr must lie in (0, 1), got 1.5"
    assert not (tmp_path / "out").exists()
