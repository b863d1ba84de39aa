"""Tests of experiments/fallback_scales.py: the leave-one-out weights of disjoint pairs and their medians."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from experiments.fallback_scales import main
from loco_ad.cache import AnalysisCache
from loco_ad.config import ALL_SCORERS, PRESETS
from loco_ad.data import load_category
from loco_ad.pipeline import Pipeline


def test_weights_of_disjoint_pairs_and_their_medians(tiny_loco_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    argv = ["--data-root", str(tiny_loco_root), "--preset", "offline", "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert main(argv) == 0
    with (out / "fallback_scales.csv").open() as file:
        rows = list(csv.DictReader(file))
    train = load_category(tiny_loco_root, "juice_bottle").train  # 6 images: pairs 0+1, 2+3, 4+5
    assert len(rows) == 3 * len(ALL_SCORERS)
    assert {row["pair"] for row in rows} == {f"{a.name}+{b.name}" for a, b in (train[0:2], train[2:4], train[4:6])}
    one_reference_settings = PRESETS["offline"].for_references(1).with_scorers(ALL_SCORERS)  # what k = 1 runs with
    assert one_reference_settings != PRESETS["offline"].with_scorers(ALL_SCORERS)
    second = Pipeline(one_reference_settings, cache=AnalysisCache(tmp_path / "cache"), progress=False).fit(train[2:4])
    for row in rows:
        if row["pair"] == f"{train[2].name}+{train[3].name}":
            assert float(row["weight"]) == pytest.approx(second.weights[row["scorer"]])
    printed = {line.split()[0]: float(line.split()[1]) for line in capsys.readouterr().out.splitlines() if line.split()[0] in ALL_SCORERS}
    for name in ALL_SCORERS:
        assert printed[name] == pytest.approx(np.median([float(r["weight"]) for r in rows if r["scorer"] == name]), rel=1e-2)
