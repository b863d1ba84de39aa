"""Evaluation metrics: image F1-max / AUROC / AP, pixel AUROC and F1-max, sPRO, and the VAND 2025 AUFC.

Undefined values (one class only, no defect pixel, fewer than two shots) are
``NaN``, never an exception, and every key of ``image_metrics`` is always present.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from scipy.integrate import trapezoid
from sklearn.metrics import auc, average_precision_score

from loco_ad.data import DefectConfig

IMAGE_TYPES: tuple[str, ...] = ("logical", "structural")


def _two_classes(labels: np.ndarray) -> bool:
    return labels.size > 0 and 0 < int(labels.sum()) < labels.size


def f1_max(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, negative_weight: float = 1.0
) -> float:
    """The best F1 score over all thresholds (the VAND 2025 image metric).

    Arguments:
      labels: 0 (good) or 1 (anomalous) per image.
      scores: anomaly score per image, higher = more anomalous.
      negative_weight: how many images each good image stands for in the false
        positives, e.g. to read the F1-max of a test set with another
        good:anomalous ratio (F1 depends on the ratio, AUROC does not).
    Returns:
      max F1 over all thresholds (equal to the maximum along scikit-learn's
      precision-recall curve); NaN unless both classes occur.
    """
    return auroc_and_f1_max(np.asarray(labels) > 0, np.asarray(scores, dtype=np.float64), negative_weight)[1]


def auroc_and_f1_max(labels: np.ndarray, scores: np.ndarray, negative_weight: float = 1.0) -> tuple[float, float]:
    """AUROC and F1-max of 1-d bool ``labels`` against ``scores``, from one sort of the scores.

    Every distinct score is a threshold and a sample is flagged when its score
    is at or above it, as in scikit-learn's ``roc_curve`` and
    ``precision_recall_curve``, whose results these equal (without their input
    checks, which dominate the time of the many small image-level calls of an
    ablation). Each negative counts ``negative_weight`` times in the F1's false
    positives. Both are NaN unless positive and negative samples occur.
    """
    if not _two_classes(labels):
        return math.nan, math.nan
    order = np.argsort(scores)[::-1]
    scores, labels = scores[order], labels[order]
    last_of_each_score = np.append(np.flatnonzero(np.diff(scores)), scores.size - 1)
    true_positives = np.cumsum(labels)[last_of_each_score]
    false_positives = last_of_each_score + 1 - true_positives
    positives, negatives = true_positives[-1], false_positives[-1]
    auroc = trapezoid(np.append(0, true_positives / positives), np.append(0, false_positives / negatives))
    f1 = 2 * true_positives / (true_positives + negative_weight * false_positives + positives)
    return float(auroc), float(f1.max())


def _ap(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(average_precision_score(labels, scores)) if _two_classes(labels) else math.nan


def image_metrics(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    anomaly_types: Sequence[str],
    detailed: bool = True,
) -> dict[str, float]:
    """Image-level metrics, overall and per anomaly type.

    As in the official MVTec LOCO evaluation, the per-type metrics compare the
    images of that type with all good images (good images count in both).

    Arguments:
      labels: 0 (good) or 1 (anomalous) per image.
      scores: anomaly score per image.
      anomaly_types: ``"good"``, ``"logical"`` or ``"structural"`` per image.
      detailed: False leaves out the average precisions and the per-type F1-max
        (half the work, for ablations that score many subsets).
    Returns:
      ``image_score`` (F1-max), ``image_auroc``, ``image_ap`` and, for t in
      ``logical``, ``structural``: ``t_auroc``, ``t_ap``, ``t_f1max``. A value
      that is undefined (e.g. no structural images) is NaN.
    """
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    types = np.asarray(anomaly_types)
    if not len(labels) == len(scores) == len(types):
        raise ValueError(f"got {len(labels)} labels, {len(scores)} scores and {len(types)} anomaly types")
    result = dict(zip(("image_auroc", "image_score"), auroc_and_f1_max(labels > 0, scores)))
    if detailed:
        result["image_ap"] = _ap(labels, scores)
    for kind in IMAGE_TYPES:
        keep = (types == "good") | (types == kind)
        auroc, f1 = auroc_and_f1_max(labels[keep] > 0, scores[keep])
        result[f"{kind}_auroc"] = auroc
        if detailed:
            result[f"{kind}_ap"] = _ap(labels[keep], scores[keep])
            result[f"{kind}_f1max"] = f1
    return result


def pixel_metrics(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> tuple[float, float]:
    """AUROC and F1-max over all pixels of all images (a pixel is positive where its mask is non-zero).

    F1-max over pixels is the VAND 2025 ``pixel_score`` (anomalib ``F1Max`` on
    the maps). Both come from one sort of the pixel scores (millions of pixels
    per category), as ``f1_max`` does for images.

    Arguments:
      masks: per image an H×W mask (grey values or bool); good images are all zero.
      maps: per image an H×W anomaly map of the same size.
    Returns:
      (AUROC, F1-max); both NaN unless positive and negative pixels occur.
    """
    _check_sizes(masks, maps)
    labels = np.concatenate([np.asarray(m).ravel() > 0 for m in masks])
    scores = np.concatenate([np.asarray(a).ravel() for a in maps])
    return auroc_and_f1_max(labels, scores)


def _check_sizes(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> None:
    if len(masks) != len(maps):
        raise ValueError(f"got {len(masks)} masks and {len(maps)} anomaly maps")
    for i, (mask, amap) in enumerate(zip(masks, maps)):
        if np.shape(mask)[-2:] != np.shape(amap):
            raise ValueError(f"image {i}: mask of shape {np.shape(mask)} does not match map of shape {np.shape(amap)}")


def _channels(mask: np.ndarray) -> list[np.ndarray]:
    """Split one image's ground truth into defect channels (one grey value each)."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        return [channel for channel in mask if channel.any()]
    return [np.where(mask == value, value, 0) for value in np.unique(mask) if value != 0]


def _saturation(channel: np.ndarray, defects: Mapping[int, DefectConfig], scale: float) -> float:
    """The saturation area of one defect channel, as the official evaluation defines it."""
    area = int(np.count_nonzero(channel))
    config = defects.get(int(channel.max()))
    if config is None:
        return float(area)
    if config.relative_saturation:
        return float(max(1, int(config.saturation_threshold * area)))
    return float(max(1.0, min(config.saturation_threshold * scale, area)))


def spro_curve(
    masks: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    defects: Sequence[DefectConfig] | None,
    fpr_limit: float = 1.0,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The saturated per-region overlap (sPRO) against the false positive rate.

    Follows the official MVTec LOCO evaluation (``mvtec_loco_ad_evaluation``):
    a pixel is predicted anomalous where its score is strictly above the
    threshold; each defect channel (one ground-truth file) is one region, whose
    sPRO is ``min(TP area / saturation area, 1)``; the curve's y is the mean sPRO
    over all regions of all images, its x the FPR over the pixels that lie in no
    region (all pixels of good images included). The official code samples
    thresholds and refines them; here every distinct score is a threshold, so the
    curve is exact (the limit of the official refinement).

    Saturation areas: the region's grey value is looked up in ``defects``.
    Absolute thresholds are ``min(saturation_threshold * scale, region area)``,
    relative ones ``int(saturation_threshold * region area)`` (at least 1 pixel).
    A grey value that matches no defect (or ``defects=None``) saturates at the
    region's area, i.e. plain per-region overlap (PRO). Note the shared subset's
    binary masks: their value 255 is ``missing_top_label`` in juice_bottle, so
    every region gets that defect's threshold; pass ``defects=None`` for plain PRO.

    Arguments:
      masks: per image, either an H×W grey-value mask (each distinct non-zero
        value is one region) or a C×H×W stack of channels (one per ground-truth
        file, as ``data.read_mask_channels`` returns; C may be 0). Good images
        have no region.
      maps: per image an H×W anomaly map of the same size.
      defects: the category's defect types, or ``None`` for plain PRO.
      fpr_limit: the curve is computed up to the first point whose FPR reaches this.
      scale: factor applied to absolute saturation thresholds, for masks evaluated
        at another resolution than the original images (``evaluated pixels /
        original pixels``, see ``data.saturation_scale``).
    Returns:
      (fpr, spro, thresholds), ascending in FPR, starting at (0, 0) with threshold
      +inf; ``thresholds`` are the scores above which pixels count as anomalous.
      Empty arrays when there is no region or no defect-free pixel.
    """
    _check_sizes(masks, maps)
    lookup = {d.pixel_value: d for d in defects or ()}
    negatives: list[np.ndarray] = []
    regions: list[tuple[np.ndarray, float]] = []
    for mask, amap in zip(masks, maps):
        amap = np.asarray(amap)
        channels = _channels(mask)
        defect_free = ~np.any(channels, axis=0) if channels else np.ones(amap.shape, bool)
        negatives.append(amap[defect_free].ravel())
        regions.extend((amap[c > 0], _saturation(c, lookup, scale)) for c in channels)
    negative = np.concatenate(negatives)
    if not regions or negative.size == 0:
        return np.empty(0), np.empty(0), np.empty(0)
    region_scores, region_gains = _region_gains(regions)

    # Only thresholds down to the first one whose FPR exceeds fpr_limit are needed:
    # those at or above the m-th largest defect-free score, and the next score below.
    m = min(negative.size, math.ceil(fpr_limit * negative.size) + 1)
    cut = np.partition(negative, negative.size - m)[negative.size - m]
    top = np.sort(negative[negative >= cut])
    below = max(negative[negative < cut].max(initial=-np.inf), region_scores[region_scores < cut].max(initial=-np.inf))
    above = np.unique(np.concatenate([top, region_scores[region_scores >= cut]]))[::-1]
    thresholds = np.concatenate(([np.inf], above, [below] if below > -np.inf else [], [-np.inf]))

    fpr = (top.size - np.searchsorted(top, thresholds, side="right")) / negative.size
    fpr[-1] = 1.0
    end = int(np.searchsorted(fpr, fpr_limit, side="left")) + 1
    thresholds, fpr = thresholds[:end], fpr[:end]
    cumulative = np.concatenate(([0.0], np.cumsum(region_gains)))
    spro = (cumulative[-1] - cumulative[np.searchsorted(region_scores, thresholds, side="right")]) / len(regions)
    return fpr, spro, thresholds


def _region_gains(regions: Sequence[tuple[np.ndarray, float]]) -> tuple[np.ndarray, np.ndarray]:
    """All region pixels sorted by score, each with what it adds to its region's sPRO.

    A region with saturation area s reaches ``min(tp / s, 1)`` with tp flagged
    pixels; flagging its pixels from the highest score down, the j-th one
    (j = 0, 1, ...) adds ``clip(s - j, 0, 1) / s``. The summed gains of the pixels
    above a threshold are then the summed sPRO of all regions at that threshold.

    Returns:
      (scores ascending, gains in the same order).
    """
    scores, gains = [], []
    for region, saturation in regions:
        ranks = np.arange(region.size)[::-1]  # rank from the top, for the ascending order below
        scores.append(np.sort(region, axis=None))
        gains.append(np.clip(saturation - ranks, 0.0, 1.0) / saturation)
    scores_all, gains_all = np.concatenate(scores), np.concatenate(gains)
    order = np.argsort(scores_all, kind="stable")
    return scores_all[order], gains_all[order]


def spro_auc(
    masks: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    defects: Sequence[DefectConfig] | None,
    fpr_limit: float = 0.05,
    scale: float = 1.0,
) -> float:
    """Normalised area under the sPRO curve up to ``fpr_limit`` (the official MVTec LOCO pixel metric).

    The curve (see ``spro_curve``) is integrated with the trapezoidal rule up to
    ``fpr_limit``, the value there interpolated linearly, and divided by
    ``fpr_limit``, so a perfect map scores 1 and a constant map ``fpr_limit / 2``.

    Arguments:
      masks, maps, defects, scale: as for ``spro_curve``.
      fpr_limit: upper FPR bound of the integration, in (0, 1].
    Returns:
      the normalised area in [0, 1]; NaN when there is no region or no defect-free pixel.
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    fpr, spro, _ = spro_curve(masks, maps, defects, fpr_limit=fpr_limit, scale=scale)
    if fpr.size == 0:
        return math.nan
    last = fpr.size - 1  # the first point whose FPR reaches the limit; fpr[0] = 0 < fpr_limit
    x0, x1, y0, y1 = fpr[last - 1], fpr[last], spro[last - 1], spro[last]
    y_limit = y1 if x1 == fpr_limit else y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
    area = auc(np.append(fpr[:last], fpr_limit), np.append(spro[:last], y_limit))
    return float(area / fpr_limit)


def aufc(f1_by_k: Mapping[int, float]) -> float:
    """Area under the F1-max-versus-k curve, as the VAND 2025 evaluation script computes it.

    The script averages image F1-max over seeds, then over categories, for each k,
    and takes ``sklearn.metrics.auc(k, f1)`` (trapezoidal rule over the raw k).

    Arguments:
      f1_by_k: the averaged F1-max for each k (e.g. k = 1, 2, 4, 8).
    Returns:
      the area; NaN with fewer than two k.
    """
    if len(f1_by_k) < 2:
        return math.nan
    ks = np.array(sorted(f1_by_k), dtype=np.float64)
    return float(auc(ks, [f1_by_k[int(k)] for k in ks]))


def normalized_aufc(f1_by_k: Mapping[int, float]) -> float:
    """AUFC over k rescaled to [0, 1] (the challenge's ``normalized_aufc``), i.e. ``aufc / (k_max - k_min)``.

    Arguments:
      f1_by_k: the averaged F1-max for each k.
    Returns:
      the normalised area, in the units of F1; NaN with fewer than two k.
    """
    if len(f1_by_k) < 2:
        return math.nan
    return aufc(f1_by_k) / (max(f1_by_k) - min(f1_by_k))
