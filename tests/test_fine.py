"""The fine-structure scorer: small contrast-normalised grey windows matched anywhere in the references."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from loco_ad.analysis import ImageAnalysis
from loco_ad.errors import ConfigError, DataError
from loco_ad.features.fine import FineStructureScorer
from tests.analyses import analysis_from_scene
from tests.scenes import make_scene

SIZE = (96, 128)


@pytest.fixture(scope="module")
def blank() -> ImageAnalysis:
    return analysis_from_scene(make_scene(seed=0, size=SIZE))


def _tread(blank: ImageAnalysis, shift: int = 0, noise: float = 0.0, seed: int = 0) -> ImageAnalysis:
    """A tyre-like pattern: dark rubber with lighter 10-pixel blocks every 16 pixels, moved right by ``shift``."""
    height, width = SIZE
    columns = (np.arange(width) + shift) % 16 < 10
    rows = np.arange(height) % 16 < 10
    grey = np.where(rows[:, None] & columns[None, :], 120.0, 40.0)
    grey = grey + np.random.default_rng(seed).normal(0.0, noise, grey.shape)
    rgb = np.repeat(np.clip(grey, 0, 255)[..., None], 3, axis=-1).astype(np.uint8)
    return dataclasses.replace(blank, rgb=rgb)


def _with_cut(image: ImageAnalysis, row: int, column: int) -> ImageAnalysis:
    """``image`` with a thin bright diagonal cut, 6 pixels long, starting at (row, column)."""
    rgb = image.rgb.copy()
    for step in range(6):
        rgb[row + step, column + step] = 230
    return dataclasses.replace(image, rgb=rgb)


def test_the_pattern_moved_is_good_a_cut_is_not_and_the_map_finds_it(blank) -> None:
    scorer = FineStructureScorer(stride=2).fit([_tread(blank)])
    moved = scorer.score(_tread(blank, shift=6))
    assert moved.value < 0.05  # the same windows, at other places
    cut = scorer.score(_with_cut(_tread(blank, shift=6), 40, 70))
    assert cut.value > 5 * moved.value + 0.1
    assert cut.map.shape == SIZE
    peak = np.unravel_index(np.argmax(cut.map), cut.map.shape)
    assert abs(peak[0] - 43) <= 5 and abs(peak[1] - 73) <= 5


def _noisy_dark(blank: ImageAnalysis, seed: int) -> ImageAnalysis:
    """A flat dark surface (grey 30) with sensor noise of 2 grey levels."""
    grey = 30.0 + np.random.default_rng(seed).normal(0.0, 2.0, SIZE)
    return dataclasses.replace(blank, rgb=np.repeat(np.clip(grey, 0, 255)[..., None], 3, axis=-1).astype(np.uint8))


def test_the_contrast_floor_lets_a_cut_stand_out_of_sensor_noise(blank) -> None:
    references = [_noisy_dark(blank, 1), _noisy_dark(blank, 2)]
    good, cut = _noisy_dark(blank, 3), _with_cut(_noisy_dark(blank, 3), 40, 70)
    floored = FineStructureScorer(contrast_floor=20.0).fit(references)
    assert floored.score(cut).value > floored.score(good).value + 0.05
    unfloored = FineStructureScorer(contrast_floor=0.01).fit(references)  # every noise window blown up to unit norm
    assert unfloored.score(cut).value < unfloored.score(good).value + 0.01


def _flickering(blank: ImageAnalysis, seed: int) -> ImageAnalysis:
    """The tread with a highlight at one place that no two good photos share: bright random speckle."""
    rgb = _tread(blank).rgb.copy()
    speckle = np.random.default_rng(seed).uniform(0, 255, (16, 24))
    rgb[8:24, 8:32] = speckle.astype(np.uint8)[..., None]
    return dataclasses.replace(blank, rgb=rgb)


def test_a_place_where_good_images_differ_is_taken_out_with_three_references(blank) -> None:
    references = [_flickering(blank, seed) for seed in (1, 2, 3)]
    good, cut = _flickering(blank, 4), _with_cut(_flickering(blank, 5), 60, 90)
    plain = FineStructureScorer(stride=2, subtract_expected=False).fit(references)
    hidden = plain.score(cut)  # the speckle outscores the cut: both images score alike, the peak is the speckle's
    assert hidden.value < plain.score(good).value + 0.05
    speckle_peak = np.unravel_index(np.argmax(hidden.map), hidden.map.shape)
    assert speckle_peak[0] < 24 + 4 and speckle_peak[1] < 32 + 4
    subtracted = FineStructureScorer(stride=2, subtract_expected=True).fit(references)
    assert subtracted.expected_.shape == plain.windows(good)[1]
    good_score, cut_score = subtracted.score(good), subtracted.score(cut)
    assert cut_score.value > good_score.value + 0.1
    peak = np.unravel_index(np.argmax(cut_score.map), cut_score.map.shape)
    assert abs(peak[0] - 63) <= 5 and abs(peak[1] - 93) <= 5
    # with two references a leave-one-out fit would have one and nothing to subtract: the plain grid
    two = FineStructureScorer(stride=2, subtract_expected=True).fit(references[:2])
    assert two.expected_ is None
    assert two.score(cut).value == FineStructureScorer(stride=2, subtract_expected=False).fit(references[:2]).score(cut).value


def test_the_bank_keeps_at_most_max_bank_windows(blank) -> None:
    references = [_tread(blank, shift=s) for s in range(3)]
    windows = len(FineStructureScorer().windows(references[0])[0])
    assert FineStructureScorer(max_bank=10**6).fit(references).index_.ntotal == 3 * windows
    assert FineStructureScorer(max_bank=50).fit(references).index_.ntotal == 50


def test_bad_settings_no_references_and_images_smaller_than_a_window(blank) -> None:
    for settings in ({"patch": 1}, {"stride": 0}, {"contrast_floor": 0.0}, {"smoothing": -1.0}, {"max_bank": 0}):
        with pytest.raises(ConfigError, match="fine scorer"):
            FineStructureScorer(**settings)
    with pytest.raises(DataError):
        FineStructureScorer().fit([])
    tiny = dataclasses.replace(blank, rgb=np.zeros((6, 40, 3), np.uint8))
    with pytest.raises(DataError, match="do not fit"):
        FineStructureScorer().fit([tiny])
