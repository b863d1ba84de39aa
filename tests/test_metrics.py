"""Metrics against hand-worked cases and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import auc, average_precision_score, f1_score, roc_auc_score

from loco_ad.data import DefectConfig, load_category, read_mask, read_mask_channels, saturation_scale
from loco_ad.metrics import aufc, f1_max, image_metrics, normalized_aufc, pixel_metrics, spro_auc, spro_curve

# ---------------------------------------------------------------- image level


def test_f1_max_hand_case() -> None:
    # threshold 0.8 flags exactly the two anomalies -> F1 = 1
    assert f1_max([0, 0, 1, 1], [0.1, 0.6, 0.8, 0.9]) == pytest.approx(1.0)
    # a good image scores highest; F1 at 0.9: 0, at 0.5: 0.5, at 0.4: P 2/3, R 1 -> 0.8, at 0.1: 2/3
    assert f1_max([0, 1, 1, 0], [0.9, 0.5, 0.4, 0.1]) == pytest.approx(0.8)


def test_f1_max_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    scores = rng.normal(size=60) + labels
    brute = max(f1_score(labels, scores >= t) for t in np.unique(scores))
    assert f1_max(labels, scores) == pytest.approx(brute)


def test_image_metrics_split_by_type() -> None:
    rng = np.random.default_rng(1)
    types = np.array(["good"] * 20 + ["logical"] * 15 + ["structural"] * 10)
    labels = (types != "good").astype(int)
    scores = rng.normal(size=types.size) + labels * np.where(types == "structural", 2.0, 0.5)
    result = image_metrics(labels, scores, types)
    assert result["image_auroc"] == pytest.approx(roc_auc_score(labels, scores))
    assert result["image_ap"] == pytest.approx(average_precision_score(labels, scores))
    assert result["image_score"] == pytest.approx(f1_max(labels, scores))
    for kind in ("logical", "structural"):
        keep = (types == "good") | (types == kind)
        assert result[f"{kind}_auroc"] == pytest.approx(roc_auc_score(labels[keep], scores[keep]))
        assert result[f"{kind}_ap"] == pytest.approx(average_precision_score(labels[keep], scores[keep]))
        assert result[f"{kind}_f1max"] == pytest.approx(f1_max(labels[keep], scores[keep]))
    assert result["structural_auroc"] > result["logical_auroc"]
    short = image_metrics(labels, scores, types, detailed=False)
    assert short == {k: result[k] for k in ("image_score", "image_auroc", "logical_auroc", "structural_auroc")}


def test_undefined_values_are_nan_and_keys_stable() -> None:
    full = image_metrics([0, 1, 1], [0.1, 0.5, 0.9], ["good", "logical", "structural"])
    no_structural = image_metrics([0, 1], [0.1, 0.5], ["good", "logical"])
    only_good = image_metrics([0, 0], [0.1, 0.5], ["good", "good"])
    assert set(full) == set(no_structural) == set(only_good)
    assert not math.isnan(no_structural["logical_auroc"])
    assert all(math.isnan(no_structural[f"structural_{m}"]) for m in ("auroc", "ap", "f1max"))
    assert all(math.isnan(v) for v in only_good.values())
    assert math.isnan(f1_max([], []))


# ---------------------------------------------------------------- pixel AUROC


def test_pixel_metrics_against_sklearn() -> None:
    rng = np.random.default_rng(2)
    masks = [np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8)]
    masks[1][2:5, 2:5] = 255
    # rounded scores: many ties, which both metrics must treat as one threshold
    maps = [np.round(rng.random((8, 8)), 1), np.round(rng.random((8, 8)) + 0.5 * (masks[1] > 0), 1)]
    labels = np.concatenate([m.ravel() > 0 for m in masks])
    scores = np.concatenate([a.ravel() for a in maps])
    auroc, f1 = pixel_metrics(masks, maps)
    assert auroc == pytest.approx(roc_auc_score(labels, scores))
    assert f1 == pytest.approx(max(f1_score(labels, scores >= t) for t in np.unique(scores)))
    assert all(math.isnan(v) for v in pixel_metrics([np.zeros((4, 4))], [rng.random((4, 4))]))
    with pytest.raises(ValueError, match="shape"):
        pixel_metrics([np.zeros((4, 4))], [np.zeros((4, 5))])


def test_pixel_f1_max_hand_case() -> None:
    # 4 defect pixels in image 2; the map finds 3 of them above every other pixel, and one good pixel ties them
    masks = [np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8)]
    masks[1][0, :4] = 255
    maps = [np.zeros((4, 4)), np.zeros((4, 4))]
    maps[1][0, :3] = 1.0
    maps[0][3, 3] = 1.0
    # threshold 1: TP 3, FP 1, FN 1 -> P 3/4, R 3/4, F1 3/4; threshold 0: P 4/32 -> F1 2/9
    # AUROC: positives 3 at the top (tie with 1 of 28 negatives), 1 at the bottom tied with 27 negatives
    auroc, f1 = pixel_metrics(masks, maps)
    assert f1 == pytest.approx(0.75)
    assert auroc == pytest.approx(0.75 * (27 / 28 + 0.5 / 28) + 0.25 * 0.5 * 27 / 28)


# ---------------------------------------------------------------- sPRO


def _two_region_case() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A good image and an anomalous one with region A (value 200, 100 px) and region B (value 100, 40 px)."""
    mask = np.zeros((20, 20), np.uint8)
    mask[0:10, 0:10] = 200
    mask[15:19, 10:20] = 100
    return [np.zeros((20, 20), np.uint8), mask], [np.zeros((20, 20)), np.zeros((20, 20))]


DEFECTS = [DefectConfig("a", 200, 50, False), DefectConfig("b", 100, 1.0, True)]


def test_spro_perfect_and_constant_maps() -> None:
    masks, _ = _two_region_case()
    perfect = [(m > 0).astype(float) for m in masks]
    assert spro_auc(masks, perfect, DEFECTS) == pytest.approx(1.0)
    constant = [np.full((20, 20), 0.3), np.full((20, 20), 0.3)]
    # curve (0, 0) -> (1, 1): area up to 0.05 is 0.05² / 2, normalised: 0.025
    assert spro_auc(masks, constant, DEFECTS) == pytest.approx(0.025)
    assert spro_auc(masks, constant, DEFECTS, fpr_limit=0.3) == pytest.approx(0.15)


def test_spro_saturation_hand_case() -> None:
    masks, maps = _two_region_case()
    maps[1][0:6, 0:10] = 1.0  # 60 px of A (saturates at 50 -> 1.0)
    maps[1][15:17, 10:20] = 1.0  # 20 of B's 40 px (relative 1.0 -> 0.5)
    fpr, spro, thresholds = spro_curve(masks, maps, DEFECTS)
    # thresholds +inf, 1, 0, -inf; pixels strictly above a threshold are flagged
    np.testing.assert_allclose(fpr, [0, 0, 0, 1])
    np.testing.assert_allclose(spro, [0, 0, 0.75, 1])
    np.testing.assert_array_equal(thresholds, [np.inf, 1.0, 0.0, -np.inf])
    # trapezoid up to 0.05: y(0.05) = 0.75 + 0.25 * 0.05
    assert spro_auc(masks, maps, DEFECTS) == pytest.approx((0.75 + 0.7625) / 2)
    # plain PRO (no defects): A counts 60/100 -> mean 0.55
    np.testing.assert_allclose(spro_curve(masks, maps, None)[1], [0, 0, 0.55, 1])
    # absolute thresholds scale with resolution: at scale 2, A saturates at 100 px -> 0.6
    np.testing.assert_allclose(spro_curve(masks, maps, DEFECTS, scale=2.0)[1], [0, 0, 0.55, 1])
    np.testing.assert_allclose(spro_curve(masks, maps, DEFECTS, scale=0.5)[1], [0, 0, 0.75, 1])


def test_spro_false_positives_interpolated() -> None:
    masks, maps = _two_region_case()
    maps[1][masks[1] > 0] = 2.0  # both regions fully found at threshold 1
    maps[0][0, 0:20] = 1.0  # 20 false positive pixels among 800 - 140 defect-free ones
    fpr, spro, _ = spro_curve(masks, maps, DEFECTS)
    negatives = 800 - 140
    # thresholds +inf, 2, 1, 0, -inf
    np.testing.assert_allclose(fpr, [0, 0, 0, 20 / negatives, 1])
    np.testing.assert_allclose(spro, [0, 0, 1, 1, 1])
    assert spro_auc(masks, maps, DEFECTS) == pytest.approx(1.0)
    # the false positives now come first: (0, 0) -> (x, 0) -> (x, 1) -> (0.05, 1)
    maps[0][0, 0:20] = 3.0
    x = 20 / negatives
    assert spro_auc(masks, maps, DEFECTS) == pytest.approx((0.05 - x) / 0.05)


def test_spro_curve_matches_per_threshold_definition() -> None:
    rng = np.random.default_rng(6)
    masks = []
    for i in range(4):
        mask = np.zeros((12, 12), np.uint8)
        if i:
            mask[i : i + 4, 2:8] = (200, 100, 77)[i - 1]  # 77 is no known defect
        masks.append(mask)
    maps = [np.round(rng.random((12, 12)) + (m > 0) * 0.4, 2) for m in masks]  # rounding makes ties
    fpr, spro, thresholds = spro_curve(masks, maps, DEFECTS)
    negatives = np.concatenate([a[m == 0] for m, a in zip(masks, maps)])
    saturation = {200: 24.0, 100: 24.0, 77: 24.0}  # A: min(50, 24); B and the unknown one: the area
    for t, x, y in zip(thresholds, fpr, spro):
        assert x == pytest.approx(np.mean(negatives > t))
        per_region = [min(np.sum(a[m > 0] > t) / saturation[int(m.max())], 1) for m, a in zip(masks[1:], maps[1:])]
        assert y == pytest.approx(np.mean(per_region))
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(spro) >= 0)


def test_spro_channels_and_grey_values_agree() -> None:
    masks, maps = _two_region_case()
    rng = np.random.default_rng(3)
    maps = [rng.random((20, 20)) for _ in maps]
    stacked = [np.zeros((0, 20, 20), np.uint8), np.stack([np.where(masks[1] == v, v, 0) for v in (200, 100)])]
    assert spro_auc(stacked, maps, DEFECTS) == pytest.approx(spro_auc(masks, maps, DEFECTS))
    # two files of the same defect type are two regions when given as channels, one as grey values
    split = np.zeros((2, 20, 20), np.uint8)
    split[0, 0:10, 0:5] = 100
    split[1, 0:10, 5:10] = 100
    maps[1][0:10, 0:5] = 5.0  # curve point 2 (threshold = the largest random score) flags exactly these
    assert spro_curve([split], maps[1:], DEFECTS)[1][2] == pytest.approx(0.5)
    assert spro_curve([split.max(axis=0)], maps[1:], DEFECTS)[1][2] == pytest.approx(0.5)
    assert spro_curve([split], maps[1:], [DefectConfig("c", 100, 50, False)])[1][2] == pytest.approx(0.5)
    assert spro_curve([split.max(axis=0)], maps[1:], [DefectConfig("c", 100, 50, False)])[1][2] == pytest.approx(1.0)


def test_spro_unknown_grey_value_is_plain_pro() -> None:
    masks, maps = _two_region_case()
    binary = [(m > 0).astype(np.uint8) * 255 for m in masks]
    rng = np.random.default_rng(4)
    maps = [rng.random((20, 20)) for _ in maps]
    assert spro_auc(binary, maps, DEFECTS) == pytest.approx(spro_auc(binary, maps, None))
    assert 0.0 <= spro_auc(binary, maps, None) <= 1.0


def test_spro_undefined_is_nan() -> None:
    assert math.isnan(spro_auc([np.zeros((4, 4), np.uint8)], [np.zeros((4, 4))], DEFECTS))
    assert math.isnan(spro_auc([np.full((4, 4), 200, np.uint8)], [np.zeros((4, 4))], DEFECTS))
    with pytest.raises(ValueError):
        spro_auc([np.zeros((4, 4))], [np.zeros((4, 4))], DEFECTS, fpr_limit=0.0)


def test_spro_on_tiny_tree(tiny_loco_root) -> None:
    data = load_category(tiny_loco_root, "juice_bottle")
    size = (32, 48)
    masks = [read_mask_channels(s, size) for s in data.test]
    union = [read_mask(s, size) for s in data.test]
    perfect = [u.astype(float) for u in union]
    scale = saturation_scale(data.name, size, (64, 96))
    assert spro_auc(masks, perfect, data.defects, scale=scale) == pytest.approx(1.0)
    noisy = [p + np.random.default_rng(i).random(size) * 300 for i, p in enumerate(perfect)]
    value = spro_auc(masks, noisy, data.defects, scale=scale)
    assert 0.0 < value < 1.0
    assert pixel_metrics(union, noisy)[0] > 0.5


def test_spro_on_real_masks_runs_fast(loco_sample) -> None:
    data = load_category(loco_sample, "juice_bottle")
    size = (200, 100)
    masks = [read_mask(s, size) for s in data.test]
    rng = np.random.default_rng(5)
    maps = [(m > 0) * 0.5 + rng.random(size) for m in masks]
    scale = saturation_scale(data.name, size, (800, 400))
    with_config = spro_auc(masks, maps, data.defects, scale=scale)
    plain = spro_auc(masks, maps, None)
    assert 0.0 < plain < 1.0 and 0.0 < with_config < 1.0
    assert with_config >= plain  # saturation can only raise each region's overlap


# ---------------------------------------------------------------- AUFC


def test_aufc_hand_case() -> None:
    f1 = {1: 0.6, 2: 0.7, 4: 0.8, 8: 0.8}
    area = 0.5 * (0.6 + 0.7) * 1 + 0.5 * (0.7 + 0.8) * 2 + 0.8 * 4
    assert aufc(f1) == pytest.approx(area)
    assert aufc(f1) == pytest.approx(auc([1, 2, 4, 8], [0.6, 0.7, 0.8, 0.8]))
    assert normalized_aufc(f1) == pytest.approx(area / 7)
    assert aufc({8: 0.8, 1: 0.6, 4: 0.8, 2: 0.7}) == pytest.approx(area)  # order of the mapping is irrelevant
    assert normalized_aufc({k: 0.5 for k in (1, 2, 4, 8)}) == pytest.approx(0.5)
    assert math.isnan(aufc({1: 0.5})) and math.isnan(normalized_aufc({4: 0.5}))


# ------------------------------------------------- bounded memory, same numbers


def _argsort_auroc_and_f1_max(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """The pixel metrics as computed before they were chunked: one argsort of every pixel in float64."""
    from scipy.integrate import trapezoid

    order = np.argsort(scores)[::-1]
    scores, labels = scores[order], labels[order]
    last = np.append(np.flatnonzero(np.diff(scores)), scores.size - 1)
    tp = np.cumsum(labels)[last]
    fp = last + 1 - tp
    auroc = trapezoid(np.append(0, tp / tp[-1]), np.append(0, fp / fp[-1]))
    return float(auroc), float((2 * tp / (tp + fp + tp[-1])).max())


def _ties_and_spread(rng, shape, dtype=np.float32):
    """Maps with many tied values (rounded) and a long tail, as upsampled patch maps have."""
    return np.round(rng.gamma(2.0, 1.0, shape), 2).astype(dtype)


@pytest.mark.parametrize("chunk", [3, 64, 1 << 18])
def test_pixel_metrics_equal_the_whole_sort_to_the_last_bit(monkeypatch, chunk) -> None:
    monkeypatch.setattr("loco_ad.metrics.THRESHOLD_CHUNK", chunk)
    rng = np.random.default_rng(3)
    maps = [_ties_and_spread(rng, (40, 30)) for _ in range(12)]
    masks = [np.zeros((40, 30), np.uint8) for _ in range(12)]
    for i, mask in enumerate(masks[4:]):
        mask[5 + i : 20 + i, 3:15] = 255
        maps[4 + i][5 + i : 20 + i, 3:15] += 0.7
    expected = _argsort_auroc_and_f1_max(
        np.concatenate([m.ravel() > 0 for m in masks]), np.concatenate([m.astype(np.float64).ravel() for m in maps])
    )
    assert pixel_metrics(masks, maps) == expected  # exactly, not approximately
    assert pixel_metrics(masks, [m.astype(np.float64) for m in maps]) == expected


def test_pixel_metrics_memory_is_a_few_bytes_per_pixel() -> None:
    import tracemalloc

    rng = np.random.default_rng(0)
    maps = [rng.random((256, 128), dtype=np.float32) for _ in range(60)]  # 2 M pixels, 7.5 MiB of maps
    masks = [np.zeros((256, 128), np.uint8) for _ in range(60)]
    for mask in masks[20:]:
        mask[100:140, 30:70] = 255
    pixels = 60 * 256 * 128
    tracemalloc.start()
    try:
        pixel_metrics(masks, maps)
        spro_curve([m[None] for m in masks], maps, None, fpr_limit=0.05)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # one float32 copy of the pixels, 8 bytes per distinct score for the area, and a chunk's work
    # (the whole float64 argsort took about 75 bytes per pixel)
    assert peak < 16 * pixels + 40 * 2**20


def _spro_reference(masks, maps, fpr_limit):
    """spro_curve's thresholds and FPR as computed before, from float64 copies of every defect-free pixel."""
    negative = np.concatenate([np.asarray(a, np.float64)[m == 0] for m, a in zip(masks, maps)])
    region = np.concatenate([np.asarray(a, np.float64)[m > 0] for m, a in zip(masks, maps)])
    m = min(negative.size, math.ceil(fpr_limit * negative.size) + 1)
    cut = np.partition(negative, negative.size - m)[negative.size - m]
    top = np.sort(negative[negative >= cut])
    below = max(negative[negative < cut].max(initial=-np.inf), region[region < cut].max(initial=-np.inf))
    above = np.unique(np.concatenate([top, region[region >= cut]]))[::-1]
    thresholds = np.concatenate(([np.inf], above, [below], [-np.inf]))
    fpr = (top.size - np.searchsorted(top, thresholds, side="right")) / negative.size
    fpr[-1] = 1.0
    end = int(np.searchsorted(fpr, fpr_limit, side="left")) + 1
    return fpr[:end], thresholds[:end]


@pytest.mark.parametrize("fpr_limit", [0.05, 0.3])
def test_spro_curve_with_ties_at_the_cut_is_unchanged(fpr_limit) -> None:
    rng = np.random.default_rng(5)
    maps = [np.round(rng.random((30, 20)), 1).astype(np.float32) for _ in range(6)]  # 11 values: many ties at the cut
    masks = [np.zeros((30, 20), np.uint8) for _ in range(6)]
    for mask in masks[3:]:
        mask[4:12, 5:11] = 255
    fpr, _, thresholds = spro_curve(masks, maps, None, fpr_limit=fpr_limit)
    expected_fpr, expected_thresholds = _spro_reference(masks, maps, fpr_limit)
    np.testing.assert_array_equal(fpr, expected_fpr)
    np.testing.assert_array_equal(thresholds, expected_thresholds)
