"""The automatic verdict threshold: its rules by hand, its units, and a lone variant among the references."""

from __future__ import annotations

import typing

import numpy as np
import pytest

from loco_ad.build import build_detector
from loco_ad.config import EnsembleConfig, apply_overrides, get_preset
from loco_ad.core import Detector
from loco_ad.errors import ConfigError
from loco_ad.pipeline import Pipeline
from loco_ad.threshold import RULES, auto_threshold, threshold_from
from tests.scenes import make_scene

SIZE = (112, 168)


def test_rules_by_hand() -> None:
    scores = [1.0, 2.0, 6.0]
    assert threshold_from(scores, 3, "max") == 6.0
    assert threshold_from(scores, 3, "median") == 2.0
    assert threshold_from(scores, 3, "mean") == 3.0
    assert threshold_from(scores, 3, "mean_std") == pytest.approx(3.0 + np.std(scores))
    value, words = auto_threshold(scores, 3, "median")
    assert value == 2.0 and "median" in words and "3 good references" in words
    # k = 1: no leave-one-out scores; each normalised scorer is about 1 on the least typical good image
    value, words = auto_threshold([], 3, "median")
    assert value == 3.0 and "k = 1" in words


def test_every_rule_the_config_offers_exists() -> None:
    offered = typing.get_args(typing.get_type_hints(EnsembleConfig)["threshold_rule"])
    assert set(offered) == set(RULES)


@pytest.fixture(scope="module")
def with_a_lone_variant() -> Pipeline:
    """Four references, one of them a variant (its red part is green): its leave-one-out score is far above the others'."""
    references = [make_scene("good", seed=seed, size=SIZE).rgb for seed in range(3)] + [make_scene("colour", seed=9, size=SIZE).rgb]
    return Pipeline(get_preset("offline"), progress=False).fit(references)


def test_a_lone_variant_does_not_hide_planted_anomalies(with_a_lone_variant: Pipeline) -> None:
    pipeline = with_a_lone_variant
    loo = pipeline.leave_one_out_scores()
    others = sorted(loo)[:-1]
    assert max(loo) - max(others) > 3 * (max(others) - min(others))  # the variant is the least typical reference by far
    rule = pipeline.config.ensemble.threshold_rule
    threshold, _ = auto_threshold(loo, pipeline.detector.single_reference_threshold(), rule)
    good = [pipeline.predict(make_scene("good", seed=seed, size=SIZE).rgb).score for seed in (40, 41)]
    planted = {kind: pipeline.predict(make_scene(kind, seed=50, size=SIZE).rgb).score for kind in ("missing", "extra", "swap", "moved")}
    assert max(good) < threshold, (good, threshold)
    assert all(score > threshold for score in planted.values()), (planted, threshold)
    # the largest leave-one-out score, the variant's, would have let most of them pass as good
    assert sum(score > threshold_from(loo, 0.0, "max") for score in planted.values()) <= 2


def test_threshold_and_test_scores_share_units(with_a_lone_variant: Pipeline) -> None:
    """A multiplier scales test scores and leave-one-out scores alike, so the verdicts do not change."""
    references = [make_scene("good", seed=seed, size=SIZE).rgb for seed in range(3)] + [make_scene("colour", seed=9, size=SIZE).rgb]
    preset = get_preset("offline")
    multipliers = preset.ensemble.multipliers.as_dict()
    scaled = Pipeline(apply_overrides(preset, [f"ensemble.multipliers.{name}={5 * multipliers[name]}" for name in preset.ensemble.scorers]),
                      progress=False)
    scaled.fit(references)
    np.testing.assert_allclose(scaled.leave_one_out_scores(), 5 * np.asarray(with_a_lone_variant.leave_one_out_scores()), rtol=1e-6)
    image = make_scene("moved", seed=50, size=SIZE).rgb
    assert scaled.predict(image).score == pytest.approx(5 * with_a_lone_variant.predict(image).score, rel=1e-6)


def test_the_detector_thresholds_by_the_rule_it_was_built_with(with_a_lone_variant: Pipeline) -> None:
    references = with_a_lone_variant.references
    thresholds = {}
    for rule in RULES:
        detector = build_detector(apply_overrides(get_preset("offline"), [f"ensemble.threshold_rule={rule}"])).fit(references)
        assert detector.threshold_rule == rule
        thresholds[rule] = detector.auto_threshold()
        assert thresholds[rule] == auto_threshold(detector.leave_one_out_scores(), detector.single_reference_threshold(), rule)
    assert thresholds["max"][0] > thresholds["mean"][0]
    with pytest.raises(ConfigError, match="unknown threshold rule 'most'"):
        Detector({}, threshold_rule="most")


def test_fpr_rule_is_the_normal_prediction_bound() -> None:
    from scipy.stats import t as student_t

    scores = [1.0, 2.0, 3.0, 6.0]
    s = np.std(scores, ddof=1)
    for target in (0.05, 0.2):
        expected = np.mean(scores) + student_t.ppf(1 - target, 3) * s * np.sqrt(1 + 1 / 4)
        assert threshold_from(scores, 0.0, "fpr", target) == pytest.approx(expected)
    # a lower false-positive rate asks for a higher threshold; more references, a tighter bound
    assert threshold_from(scores, 0.0, "fpr", 0.01) > threshold_from(scores, 0.0, "fpr", 0.05) > threshold_from(scores, 0.0, "max")
    assert threshold_from(scores * 2, 0.0, "fpr", 0.05) < threshold_from(scores, 0.0, "fpr", 0.05)
    value, words = auto_threshold(scores, 0.0, "fpr", 0.05)
    assert "false-positive rate of 0.05" in words and "4 good references" in words
    assert threshold_from([], 3.0, "fpr", 0.05) == 3.0  # k = 1: the score at the weights, as every rule


def test_fpr_rule_on_normal_scores_flags_about_the_target_share() -> None:
    # scores of good images that are normal: the bound is exceeded by a new good image with probability target_fpr
    rng = np.random.default_rng(0)
    for k in (4, 8):
        draws = rng.normal(1.0, 0.2, (20000, k + 1))
        flagged = [draw[k] > threshold_from(draw[:k], 0.0, "fpr", 0.05) for draw in draws]
        assert np.mean(flagged) == pytest.approx(0.05, abs=0.006)


def test_the_detector_and_the_config_carry_the_target_rate() -> None:
    config = apply_overrides(get_preset("offline"), ["ensemble.threshold_rule=fpr", "ensemble.target_fpr=0.01"])
    detector = build_detector(config)
    assert (detector.threshold_rule, detector.target_fpr) == ("fpr", 0.01)
    for bad in ("0", "1", "-0.1"):
        with pytest.raises(ConfigError, match="target_fpr"):
            apply_overrides(get_preset("offline"), [f"ensemble.target_fpr={bad}"])
    with pytest.raises(ConfigError, match="target_fpr"):
        Detector({}, threshold_rule="fpr", target_fpr=1.5)
