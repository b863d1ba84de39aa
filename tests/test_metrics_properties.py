"""Property tests of the metrics (hypothesis): scikit-learn and brute-force definitions on small random
inputs with many ties, and refusal of input that cannot be scored."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from loco_ad.data import DefectConfig
from loco_ad.metrics import f1_max, image_metrics, pixel_metrics, spro_auc, spro_curve

SETTINGS = settings(max_examples=150, deadline=None)

# Labels and scores of 2..30 images; scores from a few values, so that ties are common.
labelled_scores = st.integers(2, 30).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
        st.lists(st.integers(-3, 3).map(float) | st.floats(-1e3, 1e3), min_size=n, max_size=n),
    )
)


def _both_classes(labels: list[int]) -> bool:
    return 0 < sum(labels) < len(labels)


def brute_f1_max(labels: np.ndarray, scores: np.ndarray) -> float:
    """Max over thresholds t of F1 when the images scoring t or more are flagged."""
    best = 0.0
    for threshold in np.unique(scores):
        flagged = scores >= threshold
        tp = np.sum(flagged & labels)
        best = max(best, 2 * tp / (np.sum(flagged) + np.sum(labels)))
    return best


@SETTINGS
@given(labelled_scores)
def test_image_metrics_match_sklearn_and_brute_force(data):
    labels, scores = np.array(data[0]), np.array(data[1])
    assume(_both_classes(data[0]))
    precision, recall, _ = precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore"):
        sklearn_f1 = np.nan_to_num(2 * precision * recall / (precision + recall)).max()
    result = image_metrics(labels, scores, ["logical" if label else "good" for label in labels])
    assert result["image_score"] == pytest.approx(sklearn_f1, abs=1e-12)
    assert result["image_score"] == pytest.approx(brute_f1_max(labels.astype(bool), scores), abs=1e-12)
    assert result["image_auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert result["image_ap"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert result["logical_auroc"] == result["image_auroc"] and math.isnan(result["structural_auroc"])


@SETTINGS
@given(labelled_scores)
def test_f1_max_depends_only_on_the_order_of_the_scores(data):
    labels, scores = data[0], np.array(data[1])
    assume(_both_classes(labels))
    order = np.unique(scores, return_inverse=True)[1]  # ranks 0, 1, ...: any increasing map of the scores
    assert f1_max(labels, scores) == f1_max(labels, order) == f1_max(labels, np.exp(order / 3.0) - 7.0)


@SETTINGS
@given(labelled_scores, st.sampled_from([math.nan, math.inf, -math.inf]), st.data())
def test_non_finite_scores_are_refused(data, bad, draw):
    labels, scores = data
    scores[draw.draw(st.integers(0, len(scores) - 1))] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        f1_max(labels, scores)
    with pytest.raises(ValueError, match="NaN or infinite"):
        image_metrics(labels, scores, ["good"] * len(labels))
    with pytest.raises(ValueError, match="NaN or infinite"):
        pixel_metrics([np.array(labels)[None]], [np.array(scores)[None]])


@SETTINGS
@given(labelled_scores, st.integers(1, 3))
def test_lengths_that_differ_are_refused(data, extra):
    labels, scores = data
    with pytest.raises(ValueError, match="labels"):
        f1_max(labels + [0] * extra, scores)
    with pytest.raises(ValueError, match="labels"):
        f1_max(labels, scores + [0.0] * extra)
    with pytest.raises(ValueError):
        image_metrics(labels, scores, ["good"] * (len(labels) + extra))


def test_labels_other_than_zero_and_one_are_refused():
    with pytest.raises(ValueError, match="0 .good. or 1"):
        f1_max([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="0 .good. or 1"):
        image_metrics([0, math.nan], [0.1, 0.2], ["good", "logical"])


def test_empty_inputs_are_nan():
    assert math.isnan(f1_max([], []))
    assert all(math.isnan(value) for value in image_metrics([], [], []).values())
    assert all(math.isnan(value) for value in pixel_metrics([], []))
    assert math.isnan(spro_auc([], [], None))


# ----------------------------------------------------------------------- sPRO

# 1..3 images of up to 4×4 pixels: a map of small integer scores (ties) and 0..2 defect channels each.
images = st.integers(1, 4).flatmap(
    lambda side: st.lists(
        st.tuples(
            arrays(np.float64, (side, side), elements=st.integers(0, 4).map(float)),
            st.integers(0, 2).flatmap(lambda c: arrays(np.bool_, (c, side, side))),
        ),
        min_size=1,
        max_size=3,
    )
)


def brute_spro(images, saturation: float | None, fpr_limit: float) -> tuple[list[tuple[float, float]], float]:
    """The sPRO curve at every threshold (pixels strictly above it are flagged) and its normalised area up to ``fpr_limit``."""
    negatives = np.concatenate([amap[~channels.any(axis=0)] for amap, channels in images])
    regions = [(amap[channel], channel.sum()) for amap, channels in images for channel in channels if channel.any()]
    saturations = [area if saturation is None else max(1.0, min(saturation, area)) for _, area in regions]
    values = np.unique(np.concatenate([amap.ravel() for amap, _ in images]))
    points = []
    for threshold in [math.inf, *values[::-1], -math.inf]:
        fpr = np.mean(negatives > threshold)
        spro = np.mean([min(np.sum(scores > threshold) / s, 1.0) for (scores, _), s in zip(regions, saturations)])
        points.append((float(fpr), float(spro)))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 >= fpr_limit:
            break
        if x1 > fpr_limit:
            y1, x1 = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0), fpr_limit
        area += (x1 - x0) * (y0 + y1) / 2
    return points, area / fpr_limit


@SETTINGS
@given(images, st.sampled_from([None, 1.0, 2.5, 6.0]), st.sampled_from([0.05, 0.3, 1.0]))
def test_spro_matches_its_definition_at_every_threshold(data, saturation, fpr_limit):
    has_region = any(channels.any() for _, channels in data)
    has_negative = any((~channels.any(axis=0)).any() for _, channels in data)
    maps, masks = [amap for amap, _ in data], [channels.astype(np.uint8) * 255 for _, channels in data]
    defects = None if saturation is None else [DefectConfig("d", 255, saturation, False)]
    if not (has_region and has_negative):
        assert spro_curve(masks, maps, defects)[0].size == 0 and math.isnan(spro_auc(masks, maps, defects))
        return
    points, area = brute_spro(data, saturation, fpr_limit)
    fpr, spro, thresholds = spro_curve(masks, maps, defects, fpr_limit=1.0)
    by_threshold = dict(zip([math.inf, *np.unique(np.concatenate([m.ravel() for m in maps]))[::-1], -math.inf], points))
    for x, y, threshold in zip(fpr, spro, thresholds):
        if threshold in by_threshold:  # thresholds between two scores give the point of the score above
            assert (x, y) == pytest.approx(by_threshold[threshold], abs=1e-12)
    assert spro_auc(masks, maps, defects, fpr_limit=fpr_limit) == pytest.approx(area, abs=1e-9)


@SETTINGS
@given(images, st.sampled_from([math.nan, math.inf]), st.data())
def test_spro_refuses_non_finite_maps(data, bad, draw):
    maps, masks = [amap for amap, _ in data], [channels.astype(np.uint8) for _, channels in data]
    image = draw.draw(st.integers(0, len(maps) - 1))
    maps[image][draw.draw(st.integers(0, maps[image].shape[0] - 1)), 0] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        spro_auc(masks, maps, None)


def test_spro_of_an_all_nan_map_is_an_error_not_a_perfect_score():
    mask = np.zeros((1, 4, 4), np.uint8)
    mask[0, :2] = 1
    with pytest.raises(ValueError, match="16 of 16"):
        spro_auc([mask], [np.full((4, 4), np.nan)], None)
