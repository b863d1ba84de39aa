"""HandcraftedEmbedder: grid contract, norms, determinism, sensitivity to scratches and parts."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from loco_ad.stages.cielab import rgb_to_lab
from loco_ad.stages.handcrafted import HandcraftedEmbedder
from tests.scenes import make_scene

PATCH = 14
SIZE = (252, 392)  # 18×28 patches


def patch_fraction(mask: np.ndarray, patch: int = PATCH) -> np.ndarray:
    """Fraction of each patch's pixels inside ``mask`` (h×w)."""
    h, w = mask.shape[0] // patch, mask.shape[1] // patch
    return mask.reshape(h, patch, w, patch).mean(axis=(1, 3))


def test_grid_shape_and_unit_norm() -> None:
    embedder = HandcraftedEmbedder(patch_size=PATCH)
    images = [make_scene(seed=0, size=SIZE).rgb, make_scene(seed=1, size=(126, 84)).rgb]
    features = embedder.embed(images)
    assert [f.shape[:2] for f in features] == [(18, 28), (9, 6)]
    assert features[0].shape[2] == features[1].shape[2] == 2 * 7 + 2 * (embedder.orientations + 1)
    for f in features:
        assert f.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(f, axis=-1), 1.0, atol=1e-5)


def test_size_not_multiple_of_patch_raises() -> None:
    with pytest.raises(ValueError, match="multiple of the patch size"):
        HandcraftedEmbedder(patch_size=PATCH).embed([np.zeros((100, 98, 3), np.uint8)])


def test_deterministic() -> None:
    image = make_scene("extra", seed=3, size=SIZE).rgb
    first, second = HandcraftedEmbedder().embed([image, image])
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, HandcraftedEmbedder().embed([image])[0])


def test_scratch_changes_the_patches_it_crosses() -> None:
    good = make_scene(seed=4, size=SIZE)
    scratched = make_scene("scratch", seed=4, size=SIZE)
    before, after = HandcraftedEmbedder(patch_size=PATCH).embed([good.rgb, scratched.rgb])
    distance = 1.0 - (before * after).sum(-1)
    crossed = patch_fraction(scratched.mask) >= 0.05
    near = binary_dilation(patch_fraction(scratched.mask) > 0, iterations=1)  # context blocks reach one patch out
    assert crossed.sum() >= 4
    assert distance[crossed].min() > 5 * distance[~near].max()
    assert distance[crossed].mean() > 0.1


def test_parts_have_distinct_descriptors() -> None:
    embedder = HandcraftedEmbedder(patch_size=PATCH)
    scenes = [make_scene(seed=s, size=SIZE) for s in (5, 6)]
    bank, query = embedder.embed([s.rgb for s in scenes])
    # patches lying wholly inside one class (0 background, 1 tray, 2..4 parts)
    pure = [{c: patch_fraction(s.class_map == c) == 1.0 for c in range(5)} for s in scenes]
    bank_classes = np.concatenate([np.full(pure[0][c].sum(), c) for c in range(5)])
    bank_features = np.concatenate([bank[pure[0][c]] for c in range(5)])
    for c in range(5):
        assert pure[1][c].sum() >= 4, f"class {c} has too few whole patches for the test"
        nearest = (query[pure[1][c]] @ bank_features.T).argmax(1)
        np.testing.assert_array_equal(bank_classes[nearest], c)
    part_means = np.stack([bank[pure[0][c]].mean(0) for c in (2, 3, 4)])
    part_means /= np.linalg.norm(part_means, axis=1, keepdims=True)
    similarity = part_means @ part_means.T
    assert similarity[~np.eye(3, dtype=bool)].max() < 0.9


def test_real_image_timing(loco_sample: Path) -> None:
    rgb = cv2.cvtColor(cv2.imread(str(loco_sample / "juice_bottle" / "train" / "good" / "000.png")), cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, (224, 448), interpolation=cv2.INTER_AREA)
    embedder = HandcraftedEmbedder(patch_size=PATCH)
    embedder.embed([rgb])
    start = time.perf_counter()
    (features,) = embedder.embed([rgb])
    print(f"handcrafted embed 448x224: {(time.perf_counter() - start) * 1000:.0f} ms")
    assert features.shape[:2] == (32, 16)


def test_position_block_similarity_depends_only_on_the_offset() -> None:
    # a flat image: the four appearance blocks are equal in every patch, so the
    # cosine of two patches is (4 + w² (cos πΔy + cos πΔx) / 2) / (4 + w²)
    weight, (h, w) = 2.0, (6, 10)
    flat = np.full((h * PATCH, w * PATCH, 3), 120, np.uint8)
    plain = HandcraftedEmbedder(patch_size=PATCH).embed([flat])[0]
    placed = HandcraftedEmbedder(patch_size=PATCH, position_weight=weight).embed([flat])[0]
    assert placed.shape == (h, w, plain.shape[-1] + 4)
    np.testing.assert_allclose(np.linalg.norm(placed, axis=-1), 1.0, atol=1e-5)
    for (y1, x1), (y2, x2) in [((0, 0), (0, 0)), ((0, 0), (5, 9)), ((2, 3), (4, 8)), ((1, 1), (3, 6))]:
        dy, dx = (y2 - y1) / h, (x2 - x1) / w
        expected = (4 + weight**2 * (np.cos(np.pi * dy) + np.cos(np.pi * dx)) / 2) / (4 + weight**2)
        assert float(placed[y1, x1] @ placed[y2, x2]) == pytest.approx(expected, abs=1e-5)
    # shifting both patches by the same offset keeps their similarity
    assert float(placed[0, 0] @ placed[2, 3]) == pytest.approx(float(placed[3, 6] @ placed[5, 9]), abs=1e-5)


def test_neighbour_block_tells_where_a_neighbour_lies() -> None:
    # grey patches and one red patch at (2, 2): its left and right neighbours see the
    # same colours and gradients, mirrored, so only the neighbour layout tells them apart
    h, w = 5, 5
    image = np.full((h * PATCH, w * PATCH, 3), 120, np.uint8)
    image[2 * PATCH : 3 * PATCH, 2 * PATCH : 3 * PATCH] = (200, 40, 40)
    plain = HandcraftedEmbedder(patch_size=PATCH).embed([image])[0]
    laid_out = HandcraftedEmbedder(patch_size=PATCH, neighbour_weight=1.0).embed([image])[0]
    assert laid_out.shape == (h, w, plain.shape[-1] + 3 * 8 + 1)
    np.testing.assert_allclose(np.linalg.norm(laid_out, axis=-1), 1.0, atol=1e-5)
    left, right = (2, 1), (2, 3)
    assert float(plain[left] @ plain[right]) == pytest.approx(1.0, abs=1e-6)
    assert float(laid_out[left] @ laid_out[right]) < 0.9
    # two grey patches with no red neighbour keep identical descriptors
    assert float(laid_out[0, 0] @ laid_out[4, 4]) == pytest.approx(1.0, abs=1e-6)


def test_offline_preset_builds_an_embedder_with_its_position_weight() -> None:
    from loco_ad.build import build_embedder
    from loco_ad.config import get_preset

    config = get_preset("offline")
    embedder = build_embedder(config)
    assert isinstance(embedder, HandcraftedEmbedder)
    assert embedder.position_weight == config.embedder.handcrafted.position_weight > 0
    assert embedder.neighbour_weight == config.embedder.handcrafted.neighbour_weight > 0
    assert embedder.colour_scales == config.embedder.handcrafted.colour_scales


def test_colour_weight_sets_the_colour_blocks_against_the_texture_blocks() -> None:
    # a red and a green field, far from their edge with the black right half: only the colour blocks tell them apart
    red = np.zeros((4 * PATCH, 8 * PATCH, 3), np.uint8)
    red[:, : 4 * PATCH] = (200, 40, 40)
    green = red.copy()
    green[:, : 4 * PATCH] = (40, 160, 40)
    similarity = {}
    for weight in (1.0, 0.25, 0.0):
        embedder = HandcraftedEmbedder(patch_size=PATCH, neighbour_weight=1.0, colour_weight=weight, position_weight=2.0)
        a, b = embedder.embed([red, green])
        np.testing.assert_allclose(np.linalg.norm(a, axis=-1), 1.0, atol=1e-5)
        similarity[weight] = float(a[1, 0] @ b[1, 0])
    assert similarity[1.0] < similarity[0.25] < similarity[0.0]
    assert similarity[0.0] == pytest.approx(1.0, abs=1e-6)
    # weight 1 is the descriptor without the knob
    default = HandcraftedEmbedder(patch_size=PATCH, neighbour_weight=1.0).embed([red])[0]
    np.testing.assert_array_equal(default, HandcraftedEmbedder(patch_size=PATCH, neighbour_weight=1.0, colour_weight=1.0).embed([red])[0])


def test_texture_block_is_left_out_at_weight_zero_and_sees_a_cut(loco_sample: Path) -> None:
    """At weight 0 the descriptor is the one before the block; with it, a thin cut in a real image changes the
    texture block of the patches it crosses, and hardly any other."""
    rgb = cv2.cvtColor(cv2.imread(str(sorted((loco_sample / "juice_bottle" / "train" / "good").glob("*.png"))[0])), cv2.COLOR_BGR2RGB)
    rgb = np.ascontiguousarray(rgb[:392, :196])
    plain, zero = HandcraftedEmbedder(patch_size=PATCH), HandcraftedEmbedder(patch_size=PATCH, texture_weight=0.0)
    np.testing.assert_array_equal(plain.embed([rgb])[0], zero.embed([rgb])[0])
    textured = HandcraftedEmbedder(patch_size=PATCH, texture_weight=1.0)
    assert textured.embed([rgb])[0].shape[-1] == plain.embed([rgb])[0].shape[-1] + 14
    cut = rgb.copy()
    cv2.line(cut, (20, 100), (170, 300), (255, 255, 255), 1)
    lightness = lambda image: rgb_to_lab(image)[..., 0] - 50.0  # noqa: E731  (as the embedder passes it)
    change = np.abs(textured._texture(lightness(cut)) - textured._texture(lightness(rgb))).sum(-1)
    line = cv2.line(np.zeros(rgb.shape[:2], np.uint8), (20, 100), (170, 300), 1, 1) > 0
    crossed = patch_fraction(line) > 0
    near = binary_dilation(crossed, iterations=1)
    assert change[crossed].min() > 0 and change[crossed].mean() > 10 * change[~near].mean()
