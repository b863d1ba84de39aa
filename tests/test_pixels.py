"""The pixel baseline scorer: nearest reference thumbnail, its map, its invariances, and (with the fine scorer) its use through the pipeline."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from loco_ad.analysis import ImageAnalysis
from loco_ad.data import load_category
from loco_ad.errors import ConfigError, DataError
from loco_ad.evaluate import evaluate
from loco_ad.features import make_scorer
from loco_ad.features.pixels import PixelScorer
from loco_ad.metrics import image_metrics
from loco_ad.pipeline import Pipeline
from tests.analyses import analysis_from_scene
from tests.scenes import make_scene


def _with_rgb(analysis: ImageAnalysis, rgb: np.ndarray) -> ImageAnalysis:
    return dataclasses.replace(analysis, rgb=np.clip(rgb, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def references() -> list[ImageAnalysis]:
    return [analysis_from_scene(make_scene(seed=s)) for s in (0, 1, 2, 3)]


def test_a_reference_scores_zero_and_the_nearest_reference_gives_the_map(references) -> None:
    scorer = make_scorer("pixel").fit(references)
    assert scorer.score(references[2]).value == pytest.approx(0.0, abs=1e-5)
    blotted = references[2].rgb.copy()
    blotted[90:120, 10:40] = 255  # a white blot on the lower left of the background
    result = scorer.score(_with_rgb(references[2], blotted))
    assert result.value > 0.1 and result.map.shape == references[2].rgb.shape[:2]
    assert result.map[100:110, 20:30].mean() > 10 * result.map[10:40, 120:180].mean()  # the blot, not elsewhere


def test_standardising_forgives_exposure_and_contrast_only(references) -> None:
    relit = _with_rgb(references[0], references[0].rgb.astype(np.float32) * 0.7 + 20)
    plain, standardised = PixelScorer().fit(references), PixelScorer(standardise=True).fit(references)
    assert standardised.score(relit).value < 0.02 < plain.score(relit).value
    missing = analysis_from_scene(make_scene("missing", seed=20))
    assert standardised.score(missing).value > 10 * standardised.score(relit).value


def test_grey_thumbnails_miss_a_change_of_hue_at_equal_brightness_colour_ones_see_it() -> None:
    reference = np.full((64, 64, 3), 128, np.uint8)
    reference[16:48, 16:48] = (200, 0, 0)  # red, grey value 0.299 × 200 = 59.8
    test = reference.copy()
    test[16:48, 16:48] = (0, 102, 0)  # green of the same grey value (0.587 × 102 = 59.9)
    analysis = analysis_from_scene(make_scene(seed=0, size=(64, 64)))
    ref, changed = _with_rgb(analysis, reference), _with_rgb(analysis, test)
    assert PixelScorer(colour=False).fit([ref]).score(changed).value < 0.01
    assert PixelScorer(colour=True).fit([ref]).score(changed).value > 0.1


def test_ranks_missing_and_extra_parts_above_good_scenes(references) -> None:
    scorer = make_scorer("pixel", standardise=True).fit(references)
    goods = [scorer.score(analysis_from_scene(make_scene(seed=s))).value for s in (10, 11, 12, 13)]
    anomalies = [scorer.score(analysis_from_scene(make_scene(kind, seed=20))).value for kind in ("missing", "extra")]
    assert min(anomalies) > max(goods)


def test_bad_size_and_no_references() -> None:
    with pytest.raises(ConfigError, match="size"):
        PixelScorer(size=0)
    with pytest.raises(DataError):
        PixelScorer().fit([])


@pytest.mark.parametrize("name", ["pixel", "fine", "imagenet"])
def test_an_image_scorer_alone_through_the_pipeline_with_pixel_metrics(tiny_loco_root: Path, tmp_path: Path, name: str) -> None:
    data = load_category(tiny_loco_root, "juice_bottle")
    pipeline = Pipeline.from_preset("offline", scorers=(name,), cache_dir=tmp_path / "cache", progress=False)
    result = evaluate(pipeline, [data], seeds=[0], shots=[1, 3])
    for row in result.metrics:
        assert 0.0 <= row["pixel_auroc"] <= 1.0 and 0.0 <= row["spro"] <= 1.0
    k3 = [r for r in result.scores if r["k_shot"] == 3]
    assert all(r["score"] == r[name] for r in k3)  # alone, uncapped: the score is its contribution
    expected = image_metrics([r["label"] for r in k3], [r[name] for r in k3], [r["anomaly_type"] for r in k3])
    assert [m for m in result.metrics if m["k_shot"] == 3][0]["image_auroc"] == pytest.approx(expected["image_auroc"])
