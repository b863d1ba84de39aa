"""Tests of experiments/ablation.py: subset enumeration, subset scores from one run, the CLI."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from experiments.ablation import ablation_subsets, main, subset_metrics
from loco_ad.cache import AnalysisCache
from loco_ad.config import ALL_SCORERS, DEFAULT_SCORERS
from loco_ad.data import load_category
from loco_ad.evaluate import evaluate
from loco_ad.metrics import image_metrics
from loco_ad.pipeline import Pipeline


def test_subsets_of_all_seven_are_sixteen_distinct_beside_the_pixel_baseline() -> None:
    subsets = ablation_subsets()
    assert len(subsets) == 17
    assert len({frozenset(m) for m in subsets.values()}) == 17
    assert subsets["pixel"] == ("pixel",) and not any("pixel" in m for n, m in subsets.items() if n != "pixel")
    assert subsets["default"] == DEFAULT_SCORERS
    assert subsets["all"] == ALL_SCORERS
    for name in ALL_SCORERS:
        assert subsets[name] == (name,)
        assert set(subsets[f"all-minus-{name}"]) == set(ALL_SCORERS) - {name}


def test_coinciding_subsets_are_dropped() -> None:
    subsets = ablation_subsets(pool=DEFAULT_SCORERS)
    # "all" equals "default" and is left out: 3 singles + the baseline + default + 3 pairs.
    assert list(subsets) == [*DEFAULT_SCORERS, "pixel", "default", *(f"all-minus-{s}" for s in DEFAULT_SCORERS)]
    in_pool = ablation_subsets(pool=("foreground", "pixel"))  # a baseline in the pool is one of its members
    assert list(in_pool) == ["foreground", "pixel", "all"]


def test_subset_column_sum_equals_a_run_with_only_that_subset(tiny_loco_root: Path, tmp_path: Path) -> None:
    data = [load_category(tiny_loco_root, "juice_bottle")]
    cache = AnalysisCache(tmp_path / "cache")
    full = evaluate(Pipeline.from_preset("offline", scorers=ALL_SCORERS, cache_dir=cache.root, progress=False),
                    data, seeds=[0], shots=[3], pixel=False)
    subset = ("foreground", "histogram", "location")
    alone = evaluate(Pipeline.from_preset("offline", scorers=subset, cache_dir=cache.root, progress=False),
                     data, seeds=[0], shots=[3], pixel=False)
    summed = np.array([sum(row[s] for s in subset) for row in full.scores])
    assert [r["file"] for r in full.scores] == [r["file"] for r in alone.scores]
    np.testing.assert_allclose(summed, [row["score"] for row in alone.scores], rtol=1e-9)
    assert not np.allclose(summed, [row["score"] for row in full.scores])  # the subset really differs from all seven
    (row,) = subset_metrics(full.scores, {"mine": subset})
    expected = image_metrics([r["label"] for r in alone.scores], [r["score"] for r in alone.scores],
                             [r["anomaly_type"] for r in alone.scores])
    for key in ("image_score", "image_auroc", "logical_auroc", "structural_auroc"):
        assert row[key] == pytest.approx(expected[key])


def test_cli_writes_results_and_a_second_run_does_no_model_work(
    tiny_loco_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["--data-root", str(tiny_loco_root), "--shots", "1", "2", "--seeds", "0", "--preset", "offline",
            "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert re.search(r"cache: \d+ hits, [1-9]\d* misses", first) and "no model work" not in first  # cold: model work done
    with open(tmp_path / "out" / "ablation.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 17 * 2  # the sixteen subsets of the seven and the pixel baseline, at two k
    assert {r["subset"] for r in rows} == set(ablation_subsets())
    assert all(f"| {name} |" in (tmp_path / "out" / "ablation.md").read_text() for name in ("all-minus-location", "pixel"))
    assert (tmp_path / "out" / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    assert main(argv) == 0
    assert "0 misses — no model work" in capsys.readouterr().out
