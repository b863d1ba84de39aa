"""Evaluation metrics: image F1-max / AUROC / AP, pixel AUROC and F1-max, sPRO, and the VAND 2025 AUFC.

Two kinds of bad input, two answers:

- Input that cannot be scored raises ``ValueError``, as scikit-learn's metrics
  do: a NaN or infinite score or map value, image labels other than 0 and 1,
  inputs of different lengths or shapes. Any number computed from them would
  look like a result (a NaN sorts anywhere, so F1-max could be 1.0).
- Valid input on which a metric is undefined gives ``NaN``, never an
  exception: empty input, one class only, no defect pixel, fewer than two k.
  Every key of ``image_metrics`` is always present.

The errors are plain ``ValueError``, not ``LocoAdError``: the metrics see the
pipeline's outputs and the data layer's labels, never a user's typing, so bad
input here is a bug upstream, and its traceback is what is needed to find it.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from sklearn.metrics import auc, average_precision_score

from loco_ad.data import DefectConfig

IMAGE_TYPES: tuple[str, ...] = ("logical", "structural")


def _two_classes(labels: np.ndarray) -> bool:
    return labels.size > 0 and 0 < int(labels.sum()) < labels.size


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    """``values`` as float64, or ``ValueError`` if any is NaN or infinite."""
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise ValueError(f"{bad} of {values.size} {what} are NaN or infinite; they cannot be ranked")
    return values


def _binary(labels: Sequence[int] | np.ndarray, count: int) -> np.ndarray:
    """Image labels as a bool array, or ``ValueError`` unless there are ``count`` of them, each 0 or 1."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size != count:
        raise ValueError(f"got {labels.size} labels of shape {labels.shape} for {count} scores")
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must be 0 (good) or 1 (anomalous); got {sorted(set(labels.tolist()) - {0, 1})[:5]}")
    return labels.astype(bool)


def f1_max(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """The best F1 score over all thresholds (the VAND 2025 image metric).

    Arguments:
      labels: 0 (good) or 1 (anomalous) per image.
      scores: anomaly score per image, higher = more anomalous; finite.
    Returns:
      max F1 over all thresholds (equal to the maximum along scikit-learn's
      precision-recall curve); NaN unless both classes occur (so NaN for empty input).
    Raises:
      ValueError: a score is NaN or infinite, a label is not 0 or 1, or the lengths differ.
    """
    return auroc_and_f1_max(labels, scores)[1]


def auroc_and_f1_max(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, negative_weight: float = 1.0
) -> tuple[float, float]:
    """Image AUROC and F1-max together (see ``f1_max``), optionally with good images reweighted.

    Arguments:
      labels: 0 (good) or 1 (anomalous) per image.
      scores: anomaly score per image; finite.
      negative_weight: how many images each good image stands for in the F1's
        false positives, to read the F1-max of a test set with another
        good:anomalous ratio (F1 depends on the ratio, AUROC does not).
    Returns:
      (AUROC, F1-max); NaN unless both classes occur.
    Raises:
      ValueError: as ``f1_max``.
    """
    scores = _finite(np.ravel(scores), "scores")
    return _auroc_and_f1_max(_binary(labels, scores.size), scores, negative_weight)


def _auroc_and_f1_max(labels: np.ndarray, scores: np.ndarray, negative_weight: float = 1.0) -> tuple[float, float]:
    """AUROC and F1-max of 1-d bool ``labels`` against ``scores`` (see ``_ranked_auroc_and_f1_max``)."""
    if not _two_classes(labels):
        return math.nan, math.nan
    return _ranked_auroc_and_f1_max(np.sort(scores[labels]), np.sort(scores[~labels]), negative_weight)


# Distinct thresholds handled at once by _ranked_auroc_and_f1_max: its memory beyond the scores is bounded by this.
THRESHOLD_CHUNK = 1 << 18


def _ranked_auroc_and_f1_max(
    positive: np.ndarray, negative: np.ndarray, negative_weight: float = 1.0
) -> tuple[float, float]:
    """AUROC and F1-max from the sorted (ascending) scores of the positive and the negative samples.

    Every distinct score is a threshold and a sample is flagged when its score
    is at or above it, as in scikit-learn's ``roc_curve`` and
    ``precision_recall_curve``, whose results these equal (without their input
    checks, which dominate the time of the many small image-level calls of an
    ablation). Each negative counts ``negative_weight`` times in the F1's false
    positives. The thresholds are taken ``THRESHOLD_CHUNK`` at a time from the
    highest down, so that millions of pixels need, beyond their sorted scores,
    only the trapezoids' terms (8 bytes per distinct score, the array whose sum
    ``scipy.integrate.trapezoid`` takes: the area is the same to the last bit).

    Arguments:
      positive, negative: the scores of each class, sorted ascending, both non-empty.
      negative_weight: see ``auroc_and_f1_max``.
    Returns:
      (AUROC, F1-max).
    """
    positives, negatives = positive.size, negative.size
    terms = np.empty(positives + negatives)  # pages are only touched up to the number of distinct scores
    count, f1 = 0, -math.inf
    x_before, y_before = np.zeros(1), np.zeros(1)  # the curve starts at (0, 0)
    upper = np.inf
    while True:
        # the next chunk of thresholds: distinct scores below ``upper``, at most THRESHOLD_CHUNK negatives' worth
        end = int(np.searchsorted(negative, upper, side="left"))
        lower = negative[max(0, end - THRESHOLD_CHUNK)] if end > THRESHOLD_CHUNK else -np.inf
        from_positive = np.searchsorted(positive, [lower, upper], side="left")
        chosen = np.union1d(negative[int(np.searchsorted(negative, lower, side="left")) : end], positive[slice(*from_positive)])
        thresholds = chosen[::-1]
        true_positives = positives - np.searchsorted(positive, thresholds, side="left")
        false_positives = negatives - np.searchsorted(negative, thresholds, side="left")
        x = np.concatenate([x_before, false_positives / negatives])
        y = np.concatenate([y_before, true_positives / positives])
        terms[count : count + thresholds.size] = (x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0
        count += thresholds.size
        if thresholds.size:
            f1 = max(f1, float((2 * true_positives / (true_positives + negative_weight * false_positives + positives)).max()))
        x_before, y_before = x[-1:], y[-1:]
        if lower == -np.inf:
            break
        upper = lower
    return float(terms[:count].sum()), f1


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
      scores: anomaly score per image; finite.
      anomaly_types: ``"good"``, ``"logical"`` or ``"structural"`` per image.
      detailed: False leaves out the average precisions and the per-type F1-max
        (half the work, for ablations that score many subsets).
    Returns:
      ``image_score`` (F1-max), ``image_auroc``, ``image_ap`` and, for t in
      ``logical``, ``structural``: ``t_auroc``, ``t_ap``, ``t_f1max``. A value
      that is undefined (e.g. no structural images) is NaN.
    Raises:
      ValueError: as ``f1_max``, or the anomaly types are not one per image.
    """
    scores = _finite(np.ravel(scores), "scores")
    labels = _binary(labels, scores.size).astype(int)
    types = np.asarray(anomaly_types)
    if len(types) != len(scores):
        raise ValueError(f"got {len(labels)} labels, {len(scores)} scores and {len(types)} anomaly types")
    result = dict(zip(("image_auroc", "image_score"), _auroc_and_f1_max(labels > 0, scores)))
    if detailed:
        result["image_ap"] = _ap(labels, scores)
    for kind in IMAGE_TYPES:
        keep = (types == "good") | (types == kind)
        auroc, f1 = _auroc_and_f1_max(labels[keep] > 0, scores[keep])
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
      maps: per image an H×W anomaly map of the same size; finite.
    Returns:
      (AUROC, F1-max); both NaN unless positive and negative pixels occur (so NaN for no images).
    Raises:
      ValueError: the numbers or sizes of masks and maps differ, or a map value is NaN or infinite.
    """
    _check_sizes(masks, maps)
    _check_finite(maps)
    positive, negative = _split(maps, [np.asarray(m) > 0 for m in masks])
    if positive.size == 0 or negative.size == 0:
        return math.nan, math.nan
    positive.sort()
    negative.sort()
    return _ranked_auroc_and_f1_max(positive, negative)


def _check_finite(maps: Sequence[np.ndarray]) -> None:
    """``ValueError`` if any map value is NaN or infinite (as ``_finite``, without a float64 copy of the maps)."""
    bad = sum(int(np.count_nonzero(~np.isfinite(m))) for m in maps)
    if bad:
        raise ValueError(f"{bad} of {sum(np.size(m) for m in maps)} map values are NaN or infinite; they cannot be ranked")


def _map_dtype(maps: Sequence[np.ndarray]) -> np.dtype:
    """The maps' own float type when they share one (float32 maps stay 4 bytes a pixel), else float64."""
    dtypes = {np.asarray(m).dtype for m in maps}
    return dtypes.pop() if len(dtypes) == 1 and np.issubdtype(next(iter(dtypes)), np.floating) else np.dtype(np.float64)


def _split(maps: Sequence[np.ndarray], selected: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The map values where ``selected`` is True and where it is False, each in one array (image order)."""
    dtype = _map_dtype(maps)
    inside = int(sum(np.count_nonzero(s) for s in selected))
    total = int(sum(np.size(m) for m in maps))
    chosen, rest = np.empty(inside, dtype), np.empty(total - inside, dtype)
    at_chosen = at_rest = 0
    for amap, mask in zip(maps, selected):
        amap = np.asarray(amap)
        values, others = amap[mask], amap[~mask]
        chosen[at_chosen : at_chosen + values.size] = values
        rest[at_rest : at_rest + others.size] = others
        at_chosen, at_rest = at_chosen + values.size, at_rest + others.size
    return chosen, rest


def _check_sizes(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> None:
    if len(masks) != len(maps):
        raise ValueError(f"got {len(masks)} masks and {len(maps)} anomaly maps")
    for i, (mask, amap) in enumerate(zip(masks, maps)):
        if np.ndim(amap) != 2 or np.shape(mask)[-2:] != np.shape(amap):
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
      maps: per image an H×W anomaly map of the same size; finite.
      defects: the category's defect types, or ``None`` for plain PRO.
      fpr_limit: the curve is computed up to the first point whose FPR reaches this.
      scale: factor applied to absolute saturation thresholds, for masks evaluated
        at another resolution than the original images (``evaluated pixels /
        original pixels``, see ``data.saturation_scale``).
    Returns:
      (fpr, spro, thresholds), ascending in FPR, starting at (0, 0) with threshold
      +inf; ``thresholds`` are the scores above which pixels count as anomalous.
      Empty arrays when there is no region or no defect-free pixel (or no image).
    Raises:
      ValueError: as ``pixel_metrics``.
    """
    _check_sizes(masks, maps)
    _check_finite(maps)
    lookup = {d.pixel_value: d for d in defects or ()}
    regions: list[tuple[np.ndarray, float]] = []
    in_regions: list[np.ndarray] = []
    for mask, amap in zip(masks, maps):
        channels = _channels(mask)
        in_regions.append(np.any(channels, axis=0) if channels else np.zeros(np.shape(amap), bool))
        regions.extend((np.asarray(amap)[c > 0], _saturation(c, lookup, scale)) for c in channels)
    negative = _split(maps, in_regions)[1] if maps else np.empty(0)  # the maps' own type: 4 bytes a pixel for float32
    del in_regions
    if not regions or negative.size == 0:
        return np.empty(0), np.empty(0), np.empty(0)
    region_scores, region_gains = _region_gains(regions)

    # Only thresholds down to the first one whose FPR exceeds fpr_limit are needed:
    # those at or above the m-th largest defect-free score, and the next score below.
    m = min(negative.size, math.ceil(fpr_limit * negative.size) + 1)
    negative.partition(negative.size - m)  # in place: the m largest last, the others (at most the cut) first
    cut, rest = negative[negative.size - m], negative[: negative.size - m]
    top = np.sort(np.concatenate([negative[negative.size - m :], rest[rest == cut]]))
    below = max(rest.max(initial=-np.inf, where=rest < cut), region_scores[region_scores < cut].max(initial=-np.inf))
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
    Raises:
      ValueError: as ``pixel_metrics``, or ``fpr_limit`` is outside (0, 1].
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
      the area; NaN with fewer than two k or when an F1-max is NaN (undefined).
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
