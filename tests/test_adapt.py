"""Settings the references decide: leave-one-out over the references with synthetic defects (``loco_ad.adapt``)."""

from __future__ import annotations

import numpy as np
import pytest

from loco_ad.adapt import choose_settings, colour_spread, layout_agreement
from loco_ad.config import ConfigError, apply_overrides, get_preset
from loco_ad.pipeline import Pipeline
from loco_ad.stages.register import Registration
from loco_ad.synthetic import DEFECTS
from tests.scenes import make_scene

CHOICES = "adapt.choices=registration.motion=euclidean|none,embedder.handcrafted.position_weight=8|0"


def config_with(*overrides: str):
    return apply_overrides(get_preset("offline"), list(overrides))


def test_candidates_are_every_combination_first_values_first() -> None:
    assert config_with(CHOICES).adapt.candidates() == [
        ("registration.motion=euclidean", "embedder.handcrafted.position_weight=8"),
        ("registration.motion=euclidean", "embedder.handcrafted.position_weight=0"),
        ("registration.motion=none", "embedder.handcrafted.position_weight=8"),
        ("registration.motion=none", "embedder.handcrafted.position_weight=0"),
    ]


@pytest.mark.parametrize(
    "choice, message",
    [
        ("registration.motion=euclidean|sideways", "adapt.choices: bad value 'sideways'"),
        ("registration.motoin=none", "unknown setting"),
        ("registration.motion", "must read key=value1"),
        ("adapt.seed=1|2", "cannot choose the adapt settings"),
    ],
)
def test_bad_choices_are_refused(choice: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_with(f"adapt.choices={choice}")


def references(n: int) -> list[np.ndarray]:
    return [make_scene(seed=seed).rgb for seed in range(n)]


def test_the_candidate_that_separates_defects_best_is_chosen_and_recorded() -> None:
    """A stub score function: the candidate without registration scores defects high, the others at random."""
    calls = []

    def score(config, fit_images, tests):
        calls.append((config.registration.motion, len(fit_images), len(tests)))
        if config.registration.motion == "none":
            return [0.0] + [1.0] * (len(tests) - 1)
        return list(np.random.default_rng(len(calls)).random(len(tests)))

    config, record = choose_settings(config_with(CHOICES, "adapt.defects_per_kind=1"), references(3), score)
    assert config.registration.motion == "none" and config.adapt.choices  # the choice applied, the offer kept
    assert record["chosen"]["registration.motion"] == "none" and record["references"] == 3
    assert len(record["auroc"]) == 4 and max(record["auroc"].values()) == 1.0
    assert set(calls) >= {("none", 2, 1 + len(DEFECTS)), ("euclidean", 2, 1 + len(DEFECTS))}
    assert all(c[0] in ("none", "euclidean") for c in calls) and len(calls) == 4 * 3


def test_a_lead_within_the_margin_keeps_the_first_values() -> None:
    def score(config, fit_images, tests):  # defects rank above the good image except one: AUROC 1 - 1/(2·n) without registration
        lead = config.registration.motion == "none"
        return [0.5] + [1.0] * (len(tests) - 2) + [0.6 if lead else 0.4]

    for margin, expected in ((0.0, "none"), (0.5, "euclidean")):
        config, record = choose_settings(config_with("adapt.choices=registration.motion=euclidean|none", f"adapt.margin={margin}"),
                                         references(2), score)
        assert config.registration.motion == expected == record["chosen"]["registration.motion"]


def test_a_tie_keeps_the_first_values_and_too_few_references_try_nothing() -> None:
    constant = lambda config, fit_images, tests: [0.5] * len(tests)  # noqa: E731
    config, record = choose_settings(config_with(CHOICES), references(2), constant)
    assert record["chosen"] == {"registration.motion": "euclidean", "embedder.handcrafted.position_weight": "8"}
    assert config.embedder.handcrafted.position_weight == 8
    never = lambda *args: pytest.fail("nothing is scored with one reference")  # noqa: E731
    config, record = choose_settings(config_with(CHOICES, "registration.motion=none"), references(1), never)
    assert config.registration.motion == "euclidean" and "auroc" not in record and record["references"] == 1


def test_the_pipeline_fits_with_the_chosen_settings_and_exposes_them(tmp_path) -> None:
    pipeline = Pipeline.from_preset("offline", overrides=[CHOICES.replace("8|0", "8|3")], cache_dir=tmp_path, progress=False)
    pipeline.fit(references(3))
    chosen = pipeline.decisions["chosen"]
    assert pipeline.active_config.registration.motion == chosen["registration.motion"]
    assert pipeline.active_config.embedder.handcrafted.position_weight == float(chosen["embedder.handcrafted.position_weight"])
    assert pipeline.embedder.position_weight == pipeline.active_config.embedder.handcrafted.position_weight
    plain = Pipeline.from_preset("offline", overrides=["adapt.layout_free=", "adapt.grey="], cache_dir=tmp_path, progress=False)
    assert plain.fit(references(2)).decisions == {}  # nothing to decide, nothing recorded
    preset = Pipeline.from_preset("offline", cache_dir=tmp_path, progress=False).fit(references(2))
    assert preset.decisions["chosen"] == {} and preset.decisions["layout_agreement"] > 0.9  # the scenes share a layout


LAYOUT_FREE = "adapt.layout_free=registration.motion=none,embedder.handcrafted.position_weight=0"
PRESET_IMAGENET = get_preset("offline").ensemble.multipliers.imagenet  # what references with a layout count it


def gravel_crops(n: int, seed: int = 0) -> list[np.ndarray]:
    """Crops of scikit-image's gravel photograph at random places and sizes: a surface without a layout."""
    from skimage.data import gravel

    texture, rng = gravel(), np.random.default_rng(seed)
    crops = []
    for _ in range(n):
        side = int(rng.integers(160, 320))
        y, x = rng.integers(0, 512 - side, 2)
        crops.append(np.repeat(texture[y : y + side, x : x + side, None], 3, axis=-1))
    return crops


def moved(image: np.ndarray, n: int) -> list[np.ndarray]:
    """``image`` shifted by a few pixels, n times: one layout."""
    rng = np.random.default_rng(0)
    return [np.roll(image, tuple(rng.integers(-4, 5, 2)), axis=(0, 1)) for _ in range(n)]


def test_layout_agreement_tells_one_layout_from_crops_of_a_surface() -> None:
    registration = Registration()
    scene = make_scene(seed=0).rgb
    assert layout_agreement(moved(scene, 4), registration) > 0.9
    assert layout_agreement(moved(scene, 4), None) > 0.7  # unregistered, a few pixels off still agree
    assert abs(layout_agreement(gravel_crops(4), registration)) < 0.3


def test_references_without_a_layout_get_the_layout_free_settings_and_the_record_says_why() -> None:
    never = lambda *args: pytest.fail("no choice to score")  # noqa: E731
    config = config_with(LAYOUT_FREE, "adapt.grey=")
    free, record = choose_settings(config, gravel_crops(3), never, Registration())
    assert free.registration.motion == "none" and free.embedder.handcrafted.position_weight == 0
    assert record["chosen"] == {"registration.motion": "none", "embedder.handcrafted.position_weight": "0"}
    assert record["layout_agreement"] < config.adapt.layout_threshold and record["references"] == 3
    kept, record = choose_settings(config, moved(make_scene(seed=0).rgb, 3), never, Registration())
    assert kept == config and record["chosen"] == {} and record["layout_agreement"] > config.adapt.layout_threshold
    kept, record = choose_settings(config, gravel_crops(1), never, Registration())  # one reference: nothing to compare
    assert kept == config and record["chosen"] == {} and "layout_agreement" not in record


def test_the_preset_counts_no_pixel_thumbnail_where_the_references_share_no_layout(tmp_path) -> None:
    crops = Pipeline.from_preset("offline", cache_dir=tmp_path, progress=False).fit(gravel_crops(2))
    assert crops.decisions["chosen"]["ensemble.multipliers.pixel"] == "0"
    assert crops.detector.multipliers["pixel"] == 0 and crops.detector.multipliers["imagenet"] == 8
    scene = Pipeline.from_preset("offline", cache_dir=tmp_path, progress=False).fit(moved(make_scene(seed=0).rgb, 2))
    assert scene.detector.multipliers["pixel"] == 1 and scene.detector.multipliers["imagenet"] == PRESET_IMAGENET
    listed = Pipeline.from_preset("offline", scorers=("pixel",), cache_dir=tmp_path, progress=False).fit(gravel_crops(2))
    chosen = listed.decisions["chosen"]
    assert chosen["registration.motion"] == "none" and "ensemble.multipliers.pixel" not in chosen and "ensemble.scorers" not in chosen
    assert listed.detector.multipliers["pixel"] == 1  # --scorers: the listed scorers count whatever the layout


def test_a_cached_fit_takes_the_layout_free_weights_of_the_settings_in_force(tmp_path) -> None:
    preset = Pipeline.from_preset("offline", cache_dir=tmp_path, progress=False)
    named = Pipeline.from_preset("offline", scorers=get_preset("offline").ensemble.scorers, cache_dir=tmp_path, progress=False)
    crops = gravel_crops(3)
    assert preset.fit_cached(crops) == named.fit_cached(crops)  # the ensemble's weights are not part of a fit
    assert named.detector.multipliers["pixel"] == 1 and named.detector.multipliers["imagenet"] == PRESET_IMAGENET
    again = Pipeline.from_preset("offline", cache_dir=tmp_path, progress=False)
    again.fit_cached(crops)
    assert again.detector.multipliers["pixel"] == 0 and again.detector.multipliers["imagenet"] == 8
    assert again.active_config.registration.motion == "none" == named.active_config.registration.motion


def test_the_choices_are_judged_on_top_of_the_layout_decision() -> None:
    seen = []

    def score(config, fit_images, tests):
        seen.append(config.embedder.handcrafted.position_weight)
        return [0.5] * len(tests)

    config, record = choose_settings(config_with(LAYOUT_FREE, "adapt.choices=embedder.handcrafted.colour_weight=1|0.5"),
                                     gravel_crops(2), score)
    assert set(seen) == {0} and config.embedder.handcrafted.position_weight == 0
    assert record["chosen"]["embedder.handcrafted.colour_weight"] == "1" and len(record["auroc"]) == 2


@pytest.mark.parametrize(
    "override, message",
    [
        ("adapt.layout_free=registration.motion=sideways", "adapt.layout_free: bad value 'sideways'"),
        ("adapt.layout_free=adapt.seed=3", "cannot set the adapt settings"),
        ("adapt.layout_threshold=2", "must lie in"),
        ("adapt.grey=ensemble.scorers=sharpness", "adapt.grey: unknown scorer"),
        ("adapt.grey=adapt.seed=3", "adapt.grey override .* cannot set the adapt settings"),
        ("adapt.grey_threshold=-1", "must be >= 0"),
    ],
)
def test_bad_layout_settings_are_refused(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_with(override)


def test_a_fit_on_crops_of_a_surface_runs_without_a_layout_and_the_cache_restores_the_decision(tmp_path) -> None:
    crops = gravel_crops(3)
    pipeline = Pipeline.from_preset("offline", overrides=[LAYOUT_FREE], cache_dir=tmp_path, progress=False)
    pipeline.fit_cached(crops)
    assert pipeline.active_config.registration.motion == "none" and pipeline.embedder.position_weight == 0
    restored = Pipeline.from_preset("offline", overrides=[LAYOUT_FREE], cache_dir=tmp_path, progress=False)
    restored.fit_cached(crops)
    assert restored.decisions == pipeline.decisions and restored.active_config == pipeline.active_config


def test_colour_spread_tells_grey_references_from_coloured_ones_whatever_the_cast_of_the_light() -> None:
    crops = gravel_crops(3)
    assert colour_spread(crops) < 1
    tinted = [np.clip(crop * np.array([1.15, 1.0, 0.8]), 0, 255).astype(np.uint8) for crop in crops]  # a warm lamp
    assert colour_spread(tinted) < get_preset("offline").adapt.grey_threshold
    assert colour_spread([make_scene(seed=0).rgb]) > 2 * get_preset("offline").adapt.grey_threshold


def test_grey_references_get_the_grey_settings_from_one_reference_on_and_the_record_says_why() -> None:
    never = lambda *args: pytest.fail("no choice to score")  # noqa: E731
    config = config_with("adapt.grey=ensemble.scorers=imagenet,ensemble.multipliers.imagenet=3")
    for crops in (gravel_crops(1), gravel_crops(3)):
        grey, record = choose_settings(config, crops, never, Registration())
        assert grey.ensemble.scorers == ("imagenet",) and grey.ensemble.multipliers.imagenet == 3
        assert record["colour_spread"] < config.adapt.grey_threshold
        assert record["chosen"]["ensemble.scorers"] == "imagenet"
    kept, record = choose_settings(config, moved(make_scene(seed=0).rgb, 2), never, Registration())
    assert kept == config and record["chosen"] == {} and record["colour_spread"] > config.adapt.grey_threshold


def test_the_preset_scores_grey_references_by_the_imagenet_features_alone(tmp_path) -> None:
    one = Pipeline.from_preset("offline", cache_dir=tmp_path, progress=False).fit(gravel_crops(1))
    assert one.detector.scorer_names == ("imagenet",) and one.decisions["chosen"]["ensemble.scorers"] == "imagenet"
    assert one.detector.weights["imagenet"] == 50  # the grey products' k = 1 scale, not juice_bottle's 70
    scene = Pipeline.from_preset("offline", cache_dir=tmp_path, progress=False).fit([make_scene(seed=0).rgb])
    assert scene.detector.scorer_names == ("foreground",)  # coloured: the preset's one-reference scorer
    listed = Pipeline.from_preset("offline", scorers=("pixel",), cache_dir=tmp_path, progress=False).fit(gravel_crops(1))
    assert listed.detector.scorer_names == ("pixel",)  # --scorers: the listed scorers count whatever the colour


def test_a_cached_fit_that_measured_nothing_is_not_restored_for_a_config_that_reads_the_colour(tmp_path) -> None:
    crops = gravel_crops(2)
    bare = Pipeline.from_preset("offline", overrides=["adapt.layout_free=", "adapt.grey="], cache_dir=tmp_path, progress=False)
    bare.fit_cached(crops)
    assert bare.decisions == {}
    grey = Pipeline.from_preset("offline", overrides=["adapt.layout_free=", "adapt.grey=ensemble.scorers=imagenet"],
                                cache_dir=tmp_path, progress=False)
    grey.fit_cached(crops)
    assert grey.detector.scorer_names == ("imagenet",)
