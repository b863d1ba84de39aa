"""Tests of the seven scorers on synthetic scenes with their true classes as labels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from loco_ad.analysis import ImageAnalysis
from loco_ad.config import MAP_SCORERS, PATCH_SCORERS
from loco_ad.errors import ConfigError, DataError
from loco_ad.features import SCORERS, make_scorer
from loco_ad.features.composition import ColourScorer, LocationScorer
from loco_ad.stages.align import patch_grid_labels
from tests.analyses import analysis_from_scene
from tests.scenes import make_scene

REFERENCE_SEEDS = (0, 1, 2, 3)
GOOD_SEEDS = (10, 11, 12, 13, 14)
ANOMALY_SEEDS = (20, 21)


@pytest.fixture(scope="module")
def references() -> list[ImageAnalysis]:
    return [analysis_from_scene(make_scene(seed=s)) for s in REFERENCE_SEEDS]


@pytest.fixture(scope="module")
def goods() -> list[ImageAnalysis]:
    return [analysis_from_scene(make_scene(seed=s)) for s in GOOD_SEEDS]


def _relabelled(seeds, relabel, anomaly: str = "good") -> list[ImageAnalysis]:
    """Analyses of scenes whose true class map is changed by ``relabel``."""
    scenes = [make_scene(anomaly, seed=s) for s in seeds]
    return [analysis_from_scene(scene, labels=relabel(scene.class_map)) for scene in scenes]


def test_registry_matches_config() -> None:
    from loco_ad.config import KNOWN_SCORERS

    assert tuple(SCORERS) == KNOWN_SCORERS
    for name in KNOWN_SCORERS:
        assert make_scorer(name).name == name
    with pytest.raises(ConfigError, match="choose from"):
        make_scorer("nearest_pixel")


def test_map_scorers_are_the_scorers_with_a_map(references) -> None:
    with_map = {name for name in SCORERS if make_scorer(name).fit(references).score(references[0]).map is not None}
    assert with_map == set(MAP_SCORERS)


def test_bad_modes_and_no_references() -> None:
    with pytest.raises(ConfigError):
        ColourScorer(mode="rgb")
    with pytest.raises(ConfigError):
        LocationScorer(mode="polar")
    for name in SCORERS:
        with pytest.raises(DataError):
            make_scorer(name).fit([])


@pytest.mark.parametrize(
    "name, params, anomalies",
    [
        ("histogram", {}, ("missing", "extra")),
        ("colour", {}, ("colour",)),
        ("colour", {"mode": "ab_ratio"}, ("colour",)),
        ("location", {}, ("moved", "swap")),
        ("location", {"mode": "origin_distance"}, ("moved", "swap")),
        ("embedding", {}, ("colour", "missing")),
    ],
)
def test_composition_scorer_ranks_its_anomalies_above_good(references, goods, name, params, anomalies) -> None:
    scorer = make_scorer(name, **params).fit(references)
    good_scores = [scorer.score(g) for g in goods]
    assert all(s.map is None for s in good_scores)
    worst_good = max(s.value for s in good_scores)
    for anomaly in anomalies:
        for seed in ANOMALY_SEEDS:
            value = scorer.score(analysis_from_scene(make_scene(anomaly, seed=seed))).value
            assert value > worst_good, (name, params, anomaly, seed, value, worst_good)


@pytest.mark.parametrize("name", PATCH_SCORERS)
def test_patch_scorer_localises_scratch(references, goods, name) -> None:
    scorer = make_scorer(name).fit(references)
    worst_good = max(scorer.score(g).value for g in goods)
    for seed in ANOMALY_SEEDS:
        scene = make_scene("scratch", seed=seed)
        score = scorer.score(analysis_from_scene(scene))
        assert score.value > 1.5 * worst_good
        assert score.map.shape == scene.rgb.shape[:2] and score.map.dtype == np.float32
        peak = np.unravel_index(np.argmax(score.map), score.map.shape)
        distance_to_scratch = ndimage.distance_transform_edt(~scene.mask)[peak]
        assert distance_to_scratch <= 4, (name, seed, peak)


def test_top_fraction_one_gives_mean_distance(references, goods) -> None:
    image = goods[0]
    mean_score = make_scorer("class_agnostic", top_fraction=1.0).fit(references).score(image)
    top_score = make_scorer("class_agnostic").fit(references).score(image)
    patches = image.patches.reshape(-1, image.patches.shape[-1])
    bank = np.concatenate([r.patches.reshape(-1, patches.shape[1]) for r in references])
    expected = 1.0 - (patches @ bank.T).max(axis=1)
    assert mean_score.value == pytest.approx(np.clip(expected, 0, None).mean(), abs=1e-5)
    top = np.sort(expected)[-int(np.ceil(0.02 * expected.size)) :]
    assert top_score.value == pytest.approx(top.mean(), abs=1e-5)


def test_foreground_map_is_zero_on_background(references) -> None:
    image = analysis_from_scene(make_scene("scratch", seed=20))
    score = make_scorer("foreground").fit(references).score(image)
    assert score.map[:6, :6].max() == 0.0 and score.map[-6:, -6:].max() == 0.0
    assert score.map[image.labels > 0].max() > 0.0


def test_class_aware_class_absent_from_references(references) -> None:
    # references without the yellow disc (class 4 relabelled as tray): the
    # test image's class-4 patches go to the bank of all patches.
    relabelled = _relabelled(REFERENCE_SEEDS, lambda labels: np.where(labels == 4, 1, labels))
    score = make_scorer("class_aware").fit(relabelled).score(analysis_from_scene(make_scene(seed=30)))
    assert np.isfinite(score.value) and np.isfinite(score.map).all()


def test_class_absent_from_test_image_uses_sentinels(references) -> None:
    missing = analysis_from_scene(make_scene("missing", seed=20))  # no class 3
    for name in SCORERS:
        score = make_scorer(name).fit(references).score(missing)
        assert np.isfinite(score.value), name
    good = analysis_from_scene(make_scene(seed=20))
    for name in ("embedding", "location", "histogram"):  # the absent class is a finding
        scorer = make_scorer(name).fit(references)
        assert scorer.score(missing).value > scorer.score(good).value, name


def _label_analysis(labels: np.ndarray) -> ImageAnalysis:
    """An analysis of a black image with the given class map (classes 0..2) and flat patch features."""
    height, width = labels.shape
    grid = (height // 2, width // 2)
    patches = np.full((*grid, 4), 0.5, np.float32)
    rgb, lab = np.zeros((height, width, 3), np.uint8), np.zeros((height, width, 3), np.float32)
    return ImageAnalysis(rgb, lab, labels, labels, patches, patch_grid_labels(labels, grid), n_classes=3)


def test_location_weighs_each_class_by_its_area() -> None:
    reference = np.zeros((10, 10), np.int32)
    reference[:5] = 1  # class 1: 50 pixels, centroid (x, y) = (0.45, 0.2)
    reference[9, 0] = 2  # class 2: one pixel at (0, 0.9)
    scorer = make_scorer("location").fit([_label_analysis(reference)])
    # weights: class 1 (0.5 + 0.5) / 2, class 2 (0.01 + 0.01) / 2, or (0.01 + 0) / 2 when it is absent
    tiny_jumps = reference.copy()
    tiny_jumps[9, 0], tiny_jumps[9, 9] = 0, 2  # class 2 crosses the image: 0.9
    large_shifts = reference.copy()
    large_shifts[0], large_shifts[5] = 0, 1  # class 1 one row down: 0.1
    tiny_vanishes = np.where(reference == 2, 0, reference)  # class 2 at the sentinel (-1, -1)
    assert scorer.score(_label_analysis(tiny_jumps)).value == pytest.approx(0.01 * 0.9 / 0.51)
    assert scorer.score(_label_analysis(large_shifts)).value == pytest.approx(0.5 * 0.1 / 0.51)
    assert scorer.score(_label_analysis(tiny_vanishes)).value == pytest.approx(0.005 * np.hypot(1.0, 1.9) / 0.505)
    assert scorer.score(_label_analysis(reference)).value == 0.0


@pytest.mark.parametrize("case", ["no_segment", "one_class"])
def test_degenerate_labels_give_finite_scores(case) -> None:
    relabel = np.zeros_like if case == "no_segment" else (lambda labels: np.minimum(labels, 1))
    refs = _relabelled(REFERENCE_SEEDS, relabel)
    tests = [_relabelled([20], relabel, anomaly)[0] for anomaly in ("good", "scratch", "missing")]
    for name in SCORERS:
        scorer = make_scorer(name).fit(refs)
        for image in tests:
            score = scorer.score(image)
            assert np.isfinite(score.value), (name, case)
            assert score.map is None or np.isfinite(score.map).all()
    if case == "no_segment":
        assert make_scorer("foreground").fit(refs).all_patches_
        assert make_scorer("histogram").fit(refs).score(tests[0]).value == 0.0


def test_test_image_without_foreground_is_scored_on_all_patches(references) -> None:
    image = analysis_from_scene(make_scene(seed=20))
    empty = _relabelled([20], np.zeros_like)[0]
    scorer = make_scorer("foreground").fit(references)
    assert scorer.score(empty).value > scorer.score(image).value


def test_foreground_bank_holds_outline_patches(references) -> None:
    # The same image as test and reference, but with one outline patch that is
    # background by majority in the reference and foreground in the test: the
    # bank must hold it (it touches the foreground), so the image scores 0.
    reference = references[0]
    h, w = reference.patch_labels.shape
    p = reference.labels.shape[0] // h
    share = reference.foreground.reshape(h, p, w, p).mean(axis=(1, 3))
    outline = np.argwhere((share > 0) & (reference.patch_labels == 0))
    assert len(outline), "the scene should have outline patches that are background by majority"
    y, x = outline[0]
    patch_labels = reference.patch_labels.copy()
    patch_labels[y, x] = 1
    test = dataclasses.replace(reference, patch_labels=patch_labels)
    score = make_scorer("foreground").fit([reference]).score(test)
    assert score.value == pytest.approx(0.0, abs=1e-5)


def _parts(columns: list[int]) -> ImageAnalysis:
    """A 4×4-patch image (2-px patches) whose patch columns hold the given classes, one-hot features per class."""
    patch_labels = np.tile(np.array(columns, np.int32), (4, 1))
    labels = np.kron(patch_labels, np.ones((2, 2), np.int32))
    patches = np.eye(5, dtype=np.float32)[patch_labels]
    rgb = np.zeros((8, 8, 3), np.uint8)
    return ImageAnalysis(rgb, rgb.astype(np.float32), labels, labels, patches, patch_labels, n_classes=5)


@pytest.mark.parametrize("name", ["class_agnostic", "foreground"])
def test_reference_penalty_sees_parts_that_never_go_together(name) -> None:
    # classes 1/2: orange/red juice (three columns), 3/4: orange/red icon (one column)
    orange, red, mismatch = _parts([1, 1, 1, 3]), _parts([2, 2, 2, 4]), _parts([1, 1, 1, 4])
    pooled = make_scorer(name, top_fraction=0.25, reference_penalty=0.0).fit([orange, red])
    assert pooled.score(mismatch).value == pytest.approx(0.0)  # every patch exists in some reference
    penalised = make_scorer(name, top_fraction=0.25, reference_penalty=0.5).fit([orange, red])
    # composition gaps (√ shares): to orange √(¼ + ¼), to red √(¾ + ¾); the red icon column is explained only
    # by the red reference, at a penalty of 0.5 × (√1.5 − √0.5); the juice columns match the orange one exactly
    assert penalised.score(mismatch).value == pytest.approx(0.5 * (np.sqrt(1.5) - np.sqrt(0.5)), rel=1e-5)
    assert np.abs(penalised.score(mismatch).map).max() == pytest.approx(0.0, abs=1e-6)  # the map: plain distances
    assert penalised.score(orange).value == pytest.approx(0.0)
    assert make_scorer(name, reference_penalty=0.5).fit([orange]).score(mismatch).value == pytest.approx(
        make_scorer(name, reference_penalty=0.0).fit([orange]).score(mismatch).value
    )  # one reference: nothing to relate


def test_class_aware_reduce_over_patches_does_not_take_the_worst_class() -> None:
    reference = _parts([1, 1, 2, 2])
    test = _parts([1, 1, 2, 2])
    angle = np.deg2rad(60)
    test.patches[:, 3] = np.array([0, 0, np.cos(angle), np.sin(angle), 0], np.float32)  # class 2's last column: distance 0.5
    class_max = make_scorer("class_aware", top_fraction=1.0, reduce="max").fit([reference]).score(test).value
    patches = make_scorer("class_aware", top_fraction=1.0).fit([reference]).score(test).value
    assert class_max == pytest.approx(0.25)  # class 2: half its patches at 0.5
    assert patches == pytest.approx(0.125)  # a quarter of all patches at 0.5
    with pytest.raises(ConfigError):
        make_scorer("class_aware", reduce="mean")
