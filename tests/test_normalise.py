"""The light normalisation: real images re-lit are brought back to the references' light, a missing part is not."""

from __future__ import annotations

import numpy as np
import pytest

from loco_ad.build import build_normaliser
from loco_ad.config import ConfigError, apply_overrides, get_preset
from loco_ad.data import read_image
from loco_ad.pipeline import Pipeline
from loco_ad.stages.normalise import Normaliser


def relit(rgb: np.ndarray, exposure: float = 1.0, balance=(1.0, 1.0, 1.0), gradient: float = 0.0) -> np.ndarray:
    """``rgb`` under other light: an exposure factor, a gain per channel and a left-to-right ramp of ±``gradient``."""
    ramp = 1.0 + gradient * np.linspace(-1, 1, rgb.shape[1])[None, :, None]
    return np.clip(rgb * exposure * np.asarray(balance) * ramp, 0, 255).astype(np.uint8)


@pytest.fixture
def juice(loco_sample):
    folder = loco_sample / "juice_bottle"
    references = [read_image(p) for p in sorted((folder / "train" / "good").glob("*.png"))[:4]]
    return references, read_image(sorted((folder / "test" / "good").glob("*.png"))[0])


def error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


@pytest.mark.parametrize("method", ["gain", "flat_field"])
def test_exposure_and_colour_cast_are_undone(juice, method):
    references, image = juice
    normaliser = Normaliser(method).fit(references)
    changed = relit(image, exposure=0.6, balance=(1.2, 1.0, 0.8))
    assert error(normaliser(changed), normaliser(image)) < 0.25 * error(changed, image)


def test_only_the_flat_field_undoes_a_gradient(juice):
    references, image = juice
    changed = relit(image, gradient=0.4)
    gain, flat = Normaliser("gain").fit(references), Normaliser("flat_field").fit(references)
    assert error(flat(changed), flat(image)) < 0.5 * error(changed, image)
    assert error(flat(changed), flat(image)) < 0.75 * error(gain(changed), gain(image))


@pytest.mark.parametrize("method", ["gain", "flat_field"])
def test_a_missing_part_still_stands_out(juice, method):
    """A region painted over with the background stays as different as it was: the light model does not absorb it."""
    references, image = juice
    height, width = image.shape[:2]
    box = (slice(height // 3, height // 2), slice(width // 3, 2 * width // 3))
    missing = image.copy()
    missing[box] = np.median(image[:20].reshape(-1, 3), axis=0).astype(np.uint8)
    normaliser = Normaliser(method).fit(references)
    before = error(missing[box], image[box])
    assert error(normaliser(relit(missing, exposure=0.7))[box], normaliser(image)[box]) > 0.7 * before


@pytest.mark.parametrize("method", ["gain", "flat_field"])
def test_light_within_the_tolerance_is_left_alone(juice, method):
    """Under the references' own light the image comes back byte for byte; light that changed is still corrected."""
    references, image = juice
    apparent = float(np.abs(np.log(Normaliser(method).fit(references).gain(image))).max())
    assert apparent > 0.02  # content read as light: what the tolerance is for
    normaliser = Normaliser(method, tolerance=apparent + 0.01).fit(references)
    assert np.array_equal(normaliser(image), image)
    changed = relit(image, exposure=0.5, balance=(1.2, 1.0, 0.8))
    assert error(normaliser(changed), image) < 0.5 * error(changed, image)


def test_the_offline_preset_corrects_light_from_two_references_on():
    """The offline preset's gain (tolerance 0.1) holds from k = 2; one reference is taken as it is."""
    preset = get_preset("offline")
    light = preset.for_references(2).normalisation
    assert (light.method, light.tolerance) == ("gain", 0.1)
    assert preset.for_references(1).normalisation.method == "none"
    assert build_normaliser(preset.for_references(1)) is None


def test_gains_are_clipped(juice):
    references, _ = juice
    black = np.full_like(references[0], 1)
    assert Normaliser("gain", max_gain=2.0).fit(references).gain(black).max() == pytest.approx(2.0)


def test_method_none_builds_nothing_and_bad_values_are_refused():
    assert build_normaliser(apply_overrides(get_preset("offline"), ["normalisation.method=none"])) is None
    assert isinstance(build_normaliser(apply_overrides(get_preset("offline"), ["normalisation.method=flat_field"])), Normaliser)
    with pytest.raises(ConfigError, match="normalisation.max_gain"):
        apply_overrides(get_preset("offline"), ["normalisation.max_gain=0.5"])
    with pytest.raises(ConfigError, match="normalisation.tolerance"):
        apply_overrides(get_preset("offline"), ["normalisation.tolerance=-0.1"])


def test_relit_good_images_score_as_good_with_the_flat_field(loco_sample, tmp_path):
    """Fitted on good images as they are, a re-lit good image scores like a good one with the normalisation, like a defect without."""
    folder = loco_sample / "juice_bottle"
    references = sorted((folder / "train" / "good").glob("*.png"))[:4]
    good = [read_image(p) for p in sorted((folder / "test" / "good").glob("*.png"))[:3]]
    changed = [relit(rgb, exposure=0.65, balance=(1.15, 1.0, 0.85), gradient=0.3) for rgb in good]
    ratios = {}
    for method in ("none", "flat_field"):
        pipeline = Pipeline.from_preset("offline", overrides=[f"normalisation.method={method}"], cache_dir=tmp_path, progress=False)
        pipeline.fit(references)
        plain = np.mean([p.score for p in pipeline.predict_many(good)])
        ratios[method] = np.mean([p.score for p in pipeline.predict_many(changed)]) / plain
    assert ratios["flat_field"] < 1.2 < ratios["none"]


def test_after_registration_the_registered_image_is_normalised(loco_sample, tmp_path):
    """``after_registration`` swaps the order: register, then map the light (fitted on the registered references)."""
    folder = loco_sample / "juice_bottle"
    references = sorted((folder / "train" / "good").glob("*.png"))[:4]
    good = read_image(sorted((folder / "test" / "good").glob("*.png"))[0])
    image = relit(np.roll(good, (6, -4), axis=(0, 1)), exposure=0.7, gradient=0.3)
    prepared = {}
    for after in (False, True):
        overrides = ["normalisation.method=flat_field", f"normalisation.after_registration={after}"]
        pipeline = Pipeline.from_preset("offline", overrides=overrides, cache_dir=tmp_path, progress=False).fit(references)
        working = pipeline._working_rgb(image)
        register, normalise = (lambda rgb: pipeline.registration.register(rgb)[0]), pipeline.normaliser
        expected = normalise(register(working)) if after else register(normalise(working))
        prepared[after] = pipeline.prepare_many([image])[0].rgb
        assert np.array_equal(prepared[after], expected)
    assert not np.array_equal(prepared[False], prepared[True])
