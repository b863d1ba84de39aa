"""Tests of experiments/cross_validate.py: candidates, folds, choice on training folds only, metrics, the CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from experiments.cross_validate import (
    ImageSet,
    candidate_config,
    choose,
    cross_validate,
    load_image_set,
    main,
    make_folds,
    on_good_scale,
    read_grid,
    row_metrics,
    score_candidates,
)
from loco_ad.cache import AnalysisCache
from loco_ad.config import get_preset
from loco_ad.data import load_category
from loco_ad.errors import ConfigError
from loco_ad.evaluate import evaluate
from loco_ad.metrics import auroc_and_f1_max
from loco_ad.pipeline import Pipeline

GROUPS = ["good"] * 12 + ["a"] * 4 + ["b"] * 3 + ["c"] * 3 + ["d"] * 2
LABELS = np.array([0 if g == "good" else 1 for g in GROUPS])


def test_folds_keep_anomaly_groups_whole_and_split_goods() -> None:
    for seed in range(4):
        folds = make_folds(LABELS, GROUPS, 3, seed)
        assert set(folds) == {0, 1, 2}
        for name in "abcd":
            assert len(set(folds[np.array(GROUPS) == name])) == 1  # a group never straddles two folds
        for fold in range(3):
            held = folds == fold
            assert LABELS[held].min() == 0 and LABELS[held].max() == 1  # each fold holds goods and anomalies
            assert (held & (LABELS == 0)).sum() == 4  # 12 goods, 3 folds
    assert not np.array_equal(make_folds(LABELS, GROUPS, 3, 0), make_folds(LABELS, GROUPS, 3, 1))
    with pytest.raises(ConfigError):
        make_folds(LABELS, GROUPS, 5, 0)  # only four anomaly groups


def test_choice_looks_only_at_training_folds() -> None:
    folds = make_folds(LABELS, GROUPS, 3, 0)
    held = folds == 0
    rng = np.random.default_rng(0)
    noise = rng.random(len(LABELS))
    # candidate 0 ranks every training anomaly above every good, but not the held-out ones;
    # candidate 1 is perfect on the held-out fold only, and the best over all images
    good_on_train = np.where(~held, LABELS + noise * 0.5, noise)
    good_on_held = np.where(held, LABELS * 10 + noise, LABELS * 0.6 + noise)
    scores = np.stack([good_on_train, good_on_held])[:, None, :]  # (candidate, run, image)
    assert auroc_and_f1_max(LABELS > 0, good_on_held)[0] > auroc_and_f1_max(LABELS > 0, good_on_train)[0]
    assert choose(scores, LABELS, ~held, "auroc", 1.0) == 0
    assert choose(scores, LABELS, held, "auroc", 1.0) == 1
    result = cross_validate(scores, ImageSet([], LABELS, GROUPS, []), [(0, 1)], 3, 1, "auroc", 1.0)
    fold_zero = [row for row in result.chosen if row["fold"] == 0]
    assert [row["candidate"] for row in fold_zero] == [0]
    assert result.fixed.shape == (1, 3, 2, 1, 3)
    assert result.fixed[0, 0, 1, 0, 0] == pytest.approx(1.0)  # candidate 1 held fixed is perfect on fold 0


def test_row_metrics_equal_the_library_metrics_with_ties_and_weights() -> None:
    rng = np.random.default_rng(1)
    scores = np.round(rng.random((5, len(LABELS))), 1)  # many ties
    metrics = row_metrics(LABELS, scores, ratio=0.5)
    weight = 0.5 * LABELS.sum() / (LABELS == 0).sum()
    for row, values in zip(scores, metrics):
        auroc, f1 = auroc_and_f1_max(LABELS > 0, row)
        assert values[:2] == pytest.approx([auroc, f1])
        assert values[2] == pytest.approx(auroc_and_f1_max(LABELS > 0, row, weight)[1])


def test_good_scale_keeps_the_order_within_a_fold() -> None:
    scores = np.array([[3.0, 1.0, 2.0, 10.0, 5.0]])
    goods = np.array([True, True, True, False, False])
    rescaled = on_good_scale(scores, np.ones(5, bool), goods)
    assert np.array_equal(np.argsort(rescaled[0]), np.argsort(scores[0]))
    assert rescaled[0, 2] == pytest.approx(0.0)  # the goods' median


def test_grid_and_knobs() -> None:
    candidates = read_grid(["ensemble.scorers=class_agnostic+histogram,foreground", "scorers.class_agnostic.top_fraction=0.01"], None)
    assert candidates[0] == {}  # the preset itself comes first
    assert len(candidates) == 3
    base = get_preset("offline")
    config = candidate_config(base, {"ensemble.scorers": "class_agnostic+histogram", "scorers.class_agnostic.top_fraction": 0.01,
                                     "ensemble.combination": "sum", "ensemble.cap": None, "ensemble.multipliers.histogram": 2,
                                     "embedder.handcrafted.position_weight": 4.0, "alignment.method": "hungarian"})
    assert config.ensemble.scorers == ("class_agnostic", "histogram")
    assert config.scorers.class_agnostic.top_fraction == 0.01
    assert config.ensemble.combination == "sum" and config.ensemble.cap is None
    assert config.ensemble.multipliers.histogram == 2.0
    assert config.embedder.handcrafted.position_weight == 4.0 and config.alignment.method == "hungarian"
    assert candidate_config(base, {"ensemble.scorers": ["histogram", "colour"]}).ensemble.scorers == ("histogram", "colour")
    assert candidate_config(base, {}) == base
    for bad in ({"nonsense": 1}, {"embedder.no_such_field": 1}, {"ensemble.scorers": "nobody"}, {"ensemble.cap": "high"}):
        with pytest.raises(ConfigError):
            candidate_config(base, bad)


def test_preset_scores_equal_a_pipeline_run(tiny_loco_root: Path, tmp_path: Path) -> None:
    data = load_category(tiny_loco_root, "juice_bottle")
    cache = AnalysisCache(tmp_path / "cache")
    images = load_image_set(data, None, None)
    base = get_preset("offline")
    single = candidate_config(base, {"few_references": "embedder.handcrafted.colour_weight=0.1"})
    configs = [base, candidate_config(base, {"ensemble.combination": "sum", "ensemble.cap": 1.5}), single]
    runs = [(0, 1), (0, 3)]
    scores = score_candidates(configs, data, images, runs, lambda config: Pipeline(config, cache=cache, progress=False))
    for index in (0, 2):
        expected = evaluate(Pipeline(configs[index], cache=cache, progress=False), [data], seeds=[0], shots=[1, 3], pixel=False)
        for run, (_, k) in enumerate(runs):
            rows = {row["file"]: row["score"] for row in expected.scores if row["k_shot"] == k}
            np.testing.assert_allclose(scores[index, run], [rows[file] for file in images.files], rtol=1e-9)
    assert not np.allclose(scores[0], scores[1])
    # the single-reference settings change the k = 1 run only
    assert not np.allclose(scores[0, 0], scores[2, 0]) and np.array_equal(scores[0, 1], scores[2, 1])


def test_cli_writes_the_report(tiny_loco_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    for path in sorted((tiny_loco_root / "juice_bottle" / "validation" / "good").iterdir()):
        (extra / path.name).write_bytes(path.read_bytes())
    argv = ["--data-root", str(tiny_loco_root), "--category", "juice_bottle", "--shots", "1", "2", "--seeds", "0",
            "--folds", "2", "--repeats", "2", "--extra-good", str(extra), "--grid", "ensemble.scorers=histogram",
            "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert main(argv) == 0
    report = (tmp_path / "out" / "cv.md").read_text()
    assert "5 good / 5 anomalous images" in report and "| 1 | ensemble.scorers=histogram |" in report
    with open(tmp_path / "out" / "cv_folds.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 2 * 2 * 2  # repeats × folds × runs
    reused = argv + ["--reuse", str(tmp_path / "out")]
    reused[reused.index("--grid") + 1] = "ensemble.scorers=histogram"
    reused[reused.index("--out") + 1] = str(tmp_path / "again")
    assert main(reused) == 0
    assert (tmp_path / "again" / "cv.md").read_text() == report  # same candidates, no scoring
    reused[reused.index("--grid") + 1] = "ensemble.scorers=colour"
    capsys.readouterr()
    assert main(reused) == 2
    assert "has no candidate" in capsys.readouterr().err
    missing = argv[:argv.index("--extra-good") + 1] + [str(tmp_path / "nowhere")] + argv[argv.index("--extra-good") + 2:]
    missing[missing.index("--out") + 1] = str(tmp_path / "out2")
    assert main(missing) == 2
    assert capsys.readouterr().err.startswith("error: --extra-good folder")
    assert not (tmp_path / "out2").exists()
