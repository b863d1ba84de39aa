"""Tests of experiments/pose_sensitivity.py: generated poses and defects of a real photograph, AUROC per candidate."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from experiments.pose_sensitivity import DEFECTS, draw_set, main, photograph, posed, with_defect


def test_defects_change_only_their_square_and_draws_repeat() -> None:
    image = photograph("coffee")
    assert image.shape[1] == 320 and image.dtype == np.uint8
    for kind in DEFECTS:
        changed = np.any(with_defect(image, kind, np.random.default_rng(0)) != image, axis=-1)
        ys, xs = np.nonzero(changed)
        side = image.shape[0] // 6
        assert changed.any() and np.ptp(ys) <= side + 4 and np.ptp(xs) <= side + 4, kind  # one square (a 3-px scratch overhangs)
    first, second = draw_set(image, 10, 2, 1, 4, seed=3), draw_set(image, 10, 2, 1, 4, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(first[0] + first[1], second[0] + second[1]))
    assert first[2].tolist() == [0, 1, 1, 1, 1]
    still = posed(image, 0, np.random.default_rng(0)).astype(int) - image
    assert 0 < np.abs(still).mean() < 10  # no move at shift 0: only brightness and noise


def test_auroc_per_candidate_and_a_bad_image_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    argv = ["--images", "coffee", "--shifts", "2", "--grid", "embedder.handcrafted.position_weight=1", "--good", "2",
            "--test-good", "3", "--defects", "4", "--out", str(out), "--no-cache", "--quiet"]
    assert main(argv) == 0
    with (out / "pose_sensitivity.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [row["candidate"] for row in rows] == ["preset", "embedder.handcrafted.position_weight=1"]
    assert all(0.5 < float(row["auroc"]) <= 1.0 for row in rows)  # the defects rank above most good draws
    for row in rows:  # one defect of each kind against 3 good images; with as many of each kind, the AUROC is their mean
        by_kind = [float(row[f"auroc_{kind}"]) for kind in DEFECTS]
        assert all(3 * v == pytest.approx(round(3 * v)) for v in by_kind)
        assert float(row["auroc"]) == pytest.approx(np.mean(by_kind))
    for row in rows:  # each rule flags a share of the 3 good and the 4 defective images; a higher threshold flags fewer
        fpr = [float(row[f"fpr_{rule}"]) for rule in ("max", "mean_std", "mean")]
        tpr = [float(row[f"tpr_{rule}"]) for rule in ("max", "mean_std", "mean")]
        assert all(3 * v == round(3 * v) for v in fpr) and all(4 * v == round(4 * v) for v in tpr)
        assert fpr == sorted(fpr) and tpr == sorted(tpr)  # two references: max = mean + std >= mean
    printed = capsys.readouterr().out
    assert "position_weight=1" in printed and "AUROC of each kind of defect" in printed and "recoloured " in printed
    bad = tmp_path / "bad"
    assert main(["--images", "no_such_photo", "--out", str(bad), "--quiet"]) == 2
    assert "no sample image 'no_such_photo'" in capsys.readouterr().err and not bad.exists()
