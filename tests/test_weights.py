"""Tests of the leave-one-out weights and of the core ``Detector`` that sums the normalised scorers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from loco_ad.analysis import Score
from loco_ad.build import build_detector, build_scorer
from loco_ad.config import ALL_SCORERS, DEFAULT_SCORERS, PerScorer, apply_overrides, get_preset
from loco_ad.core import Detector
from loco_ad.errors import ConfigError, DataError
from loco_ad.weights import leave_one_out_raw_scores, leave_one_out_weight
from tests.analyses import analysis_from_scene
from tests.scenes import make_scene

CONFIG = get_preset("offline")
FALLBACK = CONFIG.ensemble.fallback_scales.as_dict()
MARGIN = CONFIG.ensemble.single_reference_margin  # the k = 1 threshold: every scorer at MARGIN × its fallback scale


def _combined(normalised):
    """What a normalised score adds to the offline preset's ensemble score (its ``combination``)."""
    if CONFIG.ensemble.combination == "sum":
        return normalised
    return np.log(normalised + CONFIG.ensemble.log_offset)


class _DistanceToMean:
    """A fake scorer on plain numbers: score = |x − mean of the fitted numbers|."""

    name = "fake"

    def fit(self, references):
        self.mean_ = float(np.mean(references))
        return self

    def score(self, image):
        return Score(abs(image - self.mean_))


def _make(name: str):
    return lambda: build_scorer(name, CONFIG)


def _detector(names, **ensemble) -> Detector:
    config = CONFIG.with_scorers(names)
    return build_detector(dataclasses.replace(config, ensemble=dataclasses.replace(config.ensemble, **ensemble)))


def test_leave_one_out_weight_of_known_scores() -> None:
    # leave 1 out: |1 − 3| = 2; leave 2 out: |2 − 2.5| = 0.5; leave 4 out: |4 − 1.5| = 2.5
    raw = leave_one_out_raw_scores(_DistanceToMean, [1.0, 2.0, 4.0])
    assert raw == pytest.approx([2.0, 0.5, 2.5])
    assert leave_one_out_weight(raw, floor=0.1) == pytest.approx(2.5)
    assert leave_one_out_weight([0.0, 0.0], floor=0.1) == 0.1


def test_leave_one_out_weight_of_histogram_by_hand() -> None:
    # the tray (class 1) covers the first 32, 64 and 80 of 128 rows: shares 0.25, 0.5, 0.625
    scene = make_scene(seed=0)
    references = []
    for rows in (32, 64, 80):
        labels = np.zeros_like(scene.class_map)
        labels[:rows] = 1
        references.append(analysis_from_scene(scene, labels=labels))
    # left-out 0.25 -> nearest 0.5: 0.25; 0.5 -> 0.625: 0.125; 0.625 -> 0.5: 0.125
    assert leave_one_out_raw_scores(_make("histogram"), references) == pytest.approx([0.25, 0.125, 0.125])
    assert _detector(("histogram",)).fit(references).weights["histogram"] == pytest.approx(0.25)


def test_leave_one_out_needs_two_references() -> None:
    with pytest.raises(DataError):
        leave_one_out_raw_scores(_DistanceToMean, [1.0])


def test_identical_references_get_the_floor() -> None:
    references = [analysis_from_scene(make_scene(seed=0))] * 3
    detector = _detector(("class_agnostic", "histogram")).fit(references)
    for name in ("histogram", "class_agnostic"):
        assert detector.weights[name] == pytest.approx(CONFIG.ensemble.weight_floor_fraction * FALLBACK[name])
    result = detector.score(analysis_from_scene(make_scene("missing", seed=5)))
    assert np.isfinite(result.score) and np.isfinite(result.map).all()


@pytest.fixture(scope="module")
def references():
    return [analysis_from_scene(make_scene(seed=s)) for s in (0, 1, 2, 3)]


def test_detector_sums_normalised_scores(references) -> None:
    names = ("class_agnostic", "foreground", "histogram", "location")
    config = CONFIG.with_scorers(names)
    multipliers = dataclasses.replace(config.ensemble.multipliers, location=0.5)
    detector = _detector(names, multipliers=multipliers, combination="sum", cap=None).fit(references)
    assert not detector.used_fallback
    for name in names:
        floor = CONFIG.ensemble.weight_floor_fraction * FALLBACK[name]
        expected = leave_one_out_weight(leave_one_out_raw_scores(_make(name), references), floor)
        assert detector.weights[name] == pytest.approx(expected)
    image = analysis_from_scene(make_scene("scratch", seed=20))
    result = detector.score(image)
    raw = {name: build_scorer(name, CONFIG).fit(references).score(image) for name in names}
    multiplier = {"class_agnostic": 1.0, "foreground": 1.0, "histogram": 1.0, "location": 0.5}
    for name in names:
        assert result.raw_scores[name] == pytest.approx(raw[name].value)
        assert result.scores[name] == pytest.approx(raw[name].value / detector.weights[name] * multiplier[name])
    assert result.score == pytest.approx(sum(result.scores.values()))
    assert result.analysis is image
    expected_map = sum(raw[n].map / detector.weights[n] for n in ("class_agnostic", "foreground"))
    np.testing.assert_allclose(result.map, expected_map, rtol=1e-5)


@pytest.mark.parametrize("combination", ["sum", "log"])
def test_leave_one_out_scores_are_in_the_units_of_test_scores(references, combination) -> None:
    """A reference's leave-one-out score is the score it gets from the others' scorers, divided by the FULL weights."""
    names = ("class_agnostic", "histogram", "colour")
    config = CONFIG.with_scorers(names)
    multipliers = dataclasses.replace(config.ensemble.multipliers, colour=2.0)
    detector = _detector(names, multipliers=multipliers, combination=combination, cap=None).fit(references)
    scores = detector.leave_one_out_scores()
    assert len(scores) == len(references)
    multiplier = {name: 2.0 if name == "colour" else 1.0 for name in names}
    combine = (lambda x: x) if combination == "sum" else (lambda x: np.log(x + CONFIG.ensemble.log_offset))
    for index, held_out in enumerate(references):
        others = _detector(names).fit(references[:index] + references[index + 1 :])
        raw = others.score(held_out).raw_scores  # the others' own weights do not matter: raw scores only
        expected = sum(multiplier[name] * combine(raw[name] / detector.weights[name]) for name in names)
        assert scores[index] == pytest.approx(expected)
    # each scorer's largest normalised leave-one-out score is 1, as its weight is that maximum
    alone = _detector(("class_agnostic",), combination=combination).fit(references)
    assert max(alone.leave_one_out_scores()) == pytest.approx(combine(1.0))
    assert alone.single_reference_threshold() == pytest.approx(combine(MARGIN))


def test_log_combination_and_cap_by_hand(references) -> None:
    plain = _detector(("histogram",), combination="sum", cap=None)
    assert plain.contribution("histogram", 3.0, 2.0) == pytest.approx(1.5)
    multipliers = dataclasses.replace(CONFIG.ensemble.multipliers, histogram=2.0)
    log = _detector(("histogram",), multipliers=multipliers, combination="log", log_offset=0.1, cap=1.2)
    assert log.contribution("histogram", 3.0, 2.0) == pytest.approx(2.0 * np.log(1.2 + 0.1))  # capped at 1.2
    assert log.contribution("histogram", 1.0, 2.0) == pytest.approx(2.0 * np.log(0.5 + 0.1))
    assert log.contribution("histogram", 3.0, 2.0, alone=True) == pytest.approx(2.0 * np.log(1.5 + 0.1))  # alone: no cap
    np.testing.assert_allclose(log.contribution("histogram", np.array([1.0, 3.0]), 2.0), 2.0 * np.log([0.6, 1.3]))
    fitted = _detector(("class_agnostic", "histogram"), combination="log", cap=None).fit(references)
    result = fitted.score(analysis_from_scene(make_scene("missing", seed=5)))
    for name in ("class_agnostic", "histogram"):
        assert result.scores[name] == pytest.approx(np.log(result.raw_scores[name] / fitted.weights[name] + 0.1))
    assert plain.fit(references).single_reference_threshold() == pytest.approx(MARGIN) and MARGIN > 1
    level = _detector(("histogram",), combination="sum", cap=None, single_reference_margin=1.0)
    assert level.fit(references).single_reference_threshold() == 1.0  # margin 1: every scorer at its weight
    with pytest.raises(ConfigError, match="single_reference_margin"):
        apply_overrides(CONFIG, ["ensemble.single_reference_margin=0"])
    # a fallback scale far below the raw scores caps each scorer of a sum, never a lone scorer (which would tie every image)
    tiny = dataclasses.replace(CONFIG.ensemble.fallback_scales, class_agnostic=1e-6, histogram=1e-6)
    scenes = [analysis_from_scene(make_scene(kind, seed=6)) for kind in ("missing", "good")]
    lone = _detector(("class_agnostic",), combination="sum", cap=2.0, fallback_scales=tiny).fit(references[:1])
    first, second = (lone.score(scene) for scene in scenes)
    assert first.score == pytest.approx(first.raw_scores["class_agnostic"] / 1e-6) and first.score != second.score
    pair = _detector(("class_agnostic", "histogram"), combination="sum", cap=2.0, fallback_scales=tiny).fit(references[:1])
    result = pair.score(scenes[0])
    assert result.raw_scores["class_agnostic"] > 0 and result.scores["class_agnostic"] == 2.0
    preset = CONFIG.ensemble.multipliers  # the offline preset weighs colour down (0.05)
    summed = _detector(("histogram", "colour"), combination="sum").fit(references).single_reference_threshold()
    assert summed == pytest.approx(MARGIN * (preset.histogram + preset.colour)) and preset.colour < 1
    assert log.fit(references).single_reference_threshold() == pytest.approx(2.0 * np.log(MARGIN + 0.1))  # alone: no cap
    with pytest.raises(ConfigError):
        Detector({"histogram": _make("histogram")}, combination="max")


def test_detector_ranks_anomalies_above_good(references) -> None:
    detector = _detector(("class_agnostic", "foreground", "histogram", "location")).fit(references)
    good = max(detector.score(analysis_from_scene(make_scene(seed=s))).score for s in (10, 11, 12))
    for anomaly in ("missing", "extra", "swap", "moved", "scratch"):
        assert detector.score(analysis_from_scene(make_scene(anomaly, seed=20))).score > good, anomaly


def test_detector_without_patch_scorer_has_no_map(references) -> None:
    result = _detector(("histogram", "colour")).fit(references).score(references[0])
    assert result.map is None and set(result.scores) == {"histogram", "colour"}


def test_the_pixel_baseline_scores_beside_the_patch_scorers_but_maps_only_alone(references) -> None:
    """Its thumbnail difference adds to the image score; the map is the patch scorers' unless it scores alone."""
    image = analysis_from_scene(make_scene("scratch", seed=20))
    both = _detector(("class_agnostic", "pixel")).fit(references)
    result = both.score(image)
    assert set(result.scores) == {"class_agnostic", "pixel"} and result.scores["pixel"] > 0
    raw = build_scorer("class_agnostic", CONFIG).fit(references).score(image)
    np.testing.assert_allclose(result.map, raw.map / both.weights["class_agnostic"], rtol=1e-5)
    alone = _detector(("pixel",)).fit(references)
    pixel = build_scorer("pixel", CONFIG).fit(references).score(image)
    np.testing.assert_allclose(alone.score(image).map, pixel.map / alone.weights["pixel"], rtol=1e-5)


def test_single_reference_uses_fallback_scales(references) -> None:
    detector = _detector(ALL_SCORERS).fit(references[:1])
    assert detector.used_fallback and detector.leave_one_out_scores() == []
    assert detector.weights == {name: FALLBACK[name] for name in ALL_SCORERS}
    result = detector.score(analysis_from_scene(make_scene("colour", seed=20)))
    assert np.isfinite(result.score) and result.map.shape == references[0].rgb.shape[:2]


def test_detector_builds_scorers_with_their_settings(references) -> None:
    config = dataclasses.replace(CONFIG.with_scorers(("colour",)), scorers=dataclasses.replace(
        CONFIG.scorers, colour=dataclasses.replace(CONFIG.scorers.colour, mode="ab_ratio")))
    assert build_detector(config).fit(references).scorers_["colour"].mode == "ab_ratio"


def test_refit_replaces_what_was_learnt(references) -> None:
    detector = _detector(("histogram",))
    first = detector.fit(references).weights
    assert detector.fit(references[:1]).used_fallback and detector.weights != first


def test_detector_needs_references_and_a_fit() -> None:
    with pytest.raises(DataError):
        _detector(("histogram",)).fit([])
    with pytest.raises(RuntimeError):
        _detector(("histogram",)).score(analysis_from_scene(make_scene()))


def test_single_reference_scorers_apply_only_at_k_1(references) -> None:
    names = ("class_agnostic", "foreground", "histogram")
    detector = _detector(names, single_reference_scorers=("foreground", "colour"))
    assert detector.names_for(1) == ("foreground",) and detector.names_for(2) == names
    detector.fit(references[:1])
    assert detector.scorer_names == ("foreground",) and set(detector.weights) == {"foreground"}
    result = detector.score(references[1])
    assert set(result.scores) == {"foreground"} and result.score == pytest.approx(result.scores["foreground"])
    assert detector.single_reference_threshold() == pytest.approx(_combined(MARGIN))
    assert detector.fit(references).scorer_names == names  # k >= 2: every enabled scorer
    # none of the listed scorers enabled: all enabled scorers, as without the list
    assert _detector(("histogram",), single_reference_scorers=("foreground",)).names_for(1) == ("histogram",)
    assert CONFIG.ensemble.single_reference_scorers and not CONFIG.with_scorers(names).ensemble.single_reference_scorers


def test_min_references_keeps_a_scorer_out_until_there_are_enough(references) -> None:
    names = ("class_agnostic", "foreground", "histogram")
    detector = _detector(names, min_references=PerScorer(histogram=3))
    assert [detector.names_for(k) for k in (1, 2, 3, 8)] == [names[:2], names[:2], names, names]
    detector.fit(references[:2])
    assert detector.scorer_names == names[:2] and set(detector.score(references[2]).scores) == set(names[:2])
    assert detector.fit(references[:3]).scorer_names == names
    # with single_reference_scorers, k = 1 still chooses among those that take one reference
    assert _detector(names, min_references=PerScorer(foreground=2), single_reference_scorers=("foreground",)).names_for(1) == (
        "class_agnostic", "histogram")
    # no enabled scorer has enough references: all of them, as without the setting
    alone = build_detector(apply_overrides(CONFIG.with_scorers(("histogram",)), ["ensemble.min_references.histogram=3"]))
    assert alone.names_for(1) == alone.names_for(2) == ("histogram",)
    # the offline preset: foreground alone at k = 1, then without the histogram; added, it enters from three references
    offline = build_detector(CONFIG)
    summed = ("class_agnostic", "foreground", "pixel", "imagenet")
    assert [offline.names_for(k) for k in (1, 2, 4)] == [("foreground",), summed, summed]
    with_histogram = build_detector(apply_overrides(CONFIG, ["ensemble.scorers=class_agnostic,foreground,histogram"]))
    assert [with_histogram.names_for(k) for k in (2, 3)] == [("class_agnostic", "foreground"), ("class_agnostic", "foreground", "histogram")]
    # --scorers means those scorers at every k
    assert CONFIG.with_scorers(("histogram",)).ensemble.min_references == PerScorer()


def test_offline_preset_weighs_the_scorers_outside_its_default_down_when_enabled(references) -> None:
    """All seven enabled (``--scorers``): the default three count fully, the other four at the preset's multipliers."""
    multipliers = CONFIG.ensemble.multipliers.as_dict()
    quiet = set(ALL_SCORERS) - set(DEFAULT_SCORERS)
    assert quiet == {"class_aware", "embedding", "colour", "location"} and "histogram" not in CONFIG.ensemble.scorers
    assert all(multipliers[name] == 0.05 for name in quiet) and all(multipliers[name] == 1 for name in DEFAULT_SCORERS)
    assert multipliers["imagenet"] == 3  # outside the seven, counted three times (loco_ad.config.OFFLINE_MULTIPLIERS)
    detector = build_detector(CONFIG.with_scorers(ALL_SCORERS)).fit(references)
    result = detector.score(analysis_from_scene(make_scene("missing", seed=3)))
    for name in ALL_SCORERS:
        normalised = min(result.raw_scores[name] / detector.weights[name], CONFIG.ensemble.cap)
        expected = multipliers[name] * _combined(normalised)
        assert result.scores[name] == pytest.approx(expected)
