"""Evaluation on MVTec LOCO: draw references, fit, score every test image, compute metrics.

Every image's model work is done once (``Pipeline.prepare_for_fits`` before the
loop over seeds and k); each (seed, k) then fits the pipeline on its draw, and
only aligns and scores. With registration, an image moved onto a draw's first
reference is a new image to the models, so that work is done per draw. The
fitted ``Detector`` of each draw is handed to the ``on_predictions`` hook with
its predictions, so a hook never reads the pipeline's state, which the next
draw replaces.

Memory is bounded by the references and a batch, not by the test set: test
images stream through each fit ``BATCH`` at a time (their model outputs come
from the disk cache, not from memory), and of each prediction only its scores
and its anomaly map at the pixel metrics' size (``EvaluationConfig.pixel_long_side``)
are kept until the fit's metrics are computed; a hook gets what its ``keep``
function keeps (by default the scores alone, ``Prediction.scores_only``).

With a cache, each fit goes through ``Pipeline.fit_cached`` and
``Pipeline.raw_scores_many`` (``loco_ad.fitcache``): a fit, a test image's raw
scores and maps, a fit's pixel metrics and the reference draws computed before
are read back, and the detector only combines raw scores (``Detector.combine``),
so a re-run, or one with another ensemble, fits and scores nothing.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from loco_ad import fitcache
from loco_ad.analysis import Prediction
from loco_ad.cache import AnalysisCache
from loco_ad.core import Detector
from loco_ad.data import CategoryData, DefectConfig, image_size, read_mask_channels, saturation_scale
from loco_ad.errors import ConfigError, DataError
from loco_ad.metrics import IMAGE_TYPES, aufc, image_metrics, normalized_aufc, pixel_metrics, spro_auc
from loco_ad.pipeline import Pipeline

logger = logging.getLogger(__name__)

# Called with (category, seed, k, predictions, the fitted detector) after each fit: used to write reports.
PredictionHook = Callable[[CategoryData, int, int, list[Prediction], Detector], None]
# What a hook is handed of each prediction of (seed, k), decided as the prediction is made.
KeepForHook = Callable[[int, int, Prediction], Prediction]
# What pixel_row computes, in its order.
PIXEL_COLUMNS = ("pixel_auroc", "pixel_score", *(f"{kind}_spro" for kind in IMAGE_TYPES), "spro")
# Test images scored at once: what is held of them (images, analyses, full-size maps) is bounded by this.
BATCH = 16


@dataclass
class Evaluation:
    """What an evaluation produced.

    Attributes:
      scores: one row per (category, seed, k_shot, test image) for scores.csv.
      metrics: one row per (category, seed, k_shot) for metrics.csv.
      references: category → seed → k → the reference files drawn.
      fallback: (category, seed, k) runs whose weights used the k = 1 fallback scales.
      decisions: per (category, seed, k) what the references decided (``loco_ad.adapt``), when anything was.
    """

    scores: list[dict] = field(default_factory=list)
    metrics: list[dict] = field(default_factory=list)
    references: dict[str, dict[str, dict[str, list[str]]]] = field(default_factory=dict)
    fallback: list[tuple[str, int, int]] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """``aufc``, ``normalized_aufc`` and ``avg_image_score`` over all categories and seeds.

        F1-max is averaged over categories and seeds for each k, then the area
        under that curve over k is taken (see ``loco_ad.metrics.aufc``).
        """
        by_k: dict[int, list[float]] = {}
        for row in self.metrics:
            by_k.setdefault(row["k_shot"], []).append(row["image_score"])
        mean_by_k = {k: float(np.mean(v)) for k, v in sorted(by_k.items())}
        return {
            "aufc": aufc(mean_by_k),
            "normalized_aufc": normalized_aufc(mean_by_k),
            "avg_image_score": float(np.mean([row["image_score"] for row in self.metrics])),
        }


def pixel_eval_size(map_size: tuple[int, int], full_size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """(height, width) at which pixel metrics are computed.

    Arguments:
      map_size: (height, width) of the anomaly maps (the working resolution).
      full_size: (height, width) of the test images, i.e. of their ground truth.
      long_side: 0 for the ground truth's full resolution; else the maps' size
        shrunk to this long side at most. The maps come from a patch grid (16×32
        to 37×37 patches), so 256 px loses none of their detail and keeps pixel
        AUROC over a whole category to about a second; sPRO's absolute
        saturations are scaled to it.
    Returns:
      the size.
    """
    if long_side == 0:
        return full_size
    scale = min(1.0, long_side / max(map_size))
    return max(1, round(map_size[0] * scale)), max(1, round(map_size[1] * scale))


def saturation_defects(data: CategoryData, masks: Sequence[np.ndarray]) -> Sequence[DefectConfig] | None:
    """The defect list sPRO should look saturations up in, or None for plain PRO.

    Official masks carry each defect's grey value. When every region of a
    category is 255 although its defects_config.json lists several defects
    (binary masks, as in the shared downscaled subset), the grey value does not
    identify the defect, so no saturation is applied: the result is plain PRO
    (each region counts by its overlap fraction), and a warning says so.
    """
    values = set(np.unique(np.concatenate([m.ravel() for m in masks]))) - {0}
    if values == {255} and len(data.defects) > 1:
        logger.warning("%s: ground-truth masks are binary; sPRO is computed as plain PRO (no saturation)", data.name)
        return None
    return data.defects


def check_datasets(datasets: Sequence[CategoryData], shots: Sequence[int]) -> None:
    """Raise ``DataError`` before any work if a category cannot be evaluated.

    That is: a k exceeds its good training images, or its test split lacks good
    or anomalous images (every image metric would be undefined). A k below 1 is a ``ConfigError``.
    """
    if min(shots, default=1) < 1:
        raise ConfigError(f"k must be at least 1, got {min(shots)}")
    for data in datasets:
        kinds = {sample.label for sample in data.test}
        if kinds != {0, 1}:
            missing = "anomalous" if 1 not in kinds else "good"
            raise DataError(
                f"the test split of {data.name} ({data.root / 'test'}) has no {missing} images; "
                "evaluation needs both good and anomalous test images"
            )
        too_many = [k for k in shots if k > len(data.train)]
        if too_many:
            raise DataError(
                f"k = {max(too_many)} exceeds the {len(data.train)} good training images of {data.name}; "
                f"use --shots up to {len(data.train)}"
            )


def evaluate(
    pipeline: Pipeline,
    datasets: Sequence[CategoryData],
    seeds: Sequence[int],
    shots: Sequence[int],
    pixel: bool = True,
    on_predictions: PredictionHook | None = None,
    keep: KeepForHook | None = None,
    whole_fits: Callable[[int, int], bool] | None = None,
) -> Evaluation:
    """Run the few-shot protocol on each category.

    Arguments:
      pipeline: the pipeline to evaluate (its scorers decide the score columns).
      datasets: the categories, from ``loco_ad.data.load_category``.
      seeds: seeds of the reference draws.
      shots: the k values.
      pixel: compute the pixel metrics (needs a patch scorer for a map) at the
        resolution and FPR limit of ``pipeline.config.evaluation``.
      on_predictions: called after scoring each (category, seed, k) with the fitted detector
        and, per test image, what ``keep`` kept of its prediction.
      keep: what of each prediction to hand the hook; None: its scores only
        (``Prediction.scores_only``). Whole predictions hold the image's
        analysis, several MB: keep them for one (seed, k) at most.
      whole_fits: the (seed, k) whose predictions ``keep`` is handed whole (scored
        afresh, with their analyses); the others' come from the cache when it
        holds them, and the hook gets their scores only. None: every fit when
        ``keep`` is given, else none.
    Returns:
      the ``Evaluation``.
    """
    check_datasets(datasets, shots)
    result = Evaluation()
    for data in datasets:
        draws = {(seed, k): fitcache.draw_references(pipeline.cache, data.train, k, seed) for seed in seeds for k in shots}
        drawn = sorted({path for paths in draws.values() for path in paths})
        test_paths = [sample.path for sample in data.test]
        pipeline.prepare_for_fits(drawn, test_paths)
        labels = np.array([sample.label for sample in data.test])
        types = [sample.anomaly_type for sample in data.test]
        masks: list[np.ndarray] | None = None  # per test image its defect channels, read at the first map
        union: list[np.ndarray] | None = None  # per test image all its defects in one mask
        defects: Sequence[DefectConfig] | None = data.defects
        settings = pipeline.config.evaluation
        stored_size = image_size(data.test[0].path)  # of the stored test images (and their ground truth)
        result.references[data.name] = {str(seed): {} for seed in seeds}
        runs = tqdm(draws.items(), desc=f"{data.name}: seeds × k", unit="fit", disable=not pipeline.progress)
        size: tuple[int, int] | None = None  # of the pixel metrics
        for (seed, k), references in runs:
            whole = keep is not None if whole_fits is None else whole_fits(seed, k)
            pipeline.fit_cached(references, scorers=whole)
            detector = pipeline.detector
            result.references[data.name][str(seed)][str(k)] = [str(p) for p in references]
            if detector.used_fallback:
                result.fallback.append((data.name, seed, k))
            if pipeline.decisions:
                result.decisions.append({"category": data.name, "seed": seed, "k": k, **pipeline.decisions})
            size = size or pixel_eval_size(pipeline.working_shape(test_paths[0]), stored_size, settings.pixel_long_side)
            scores, maps, kept = [], [], []
            for start in range(0, len(test_paths), BATCH):
                batch = test_paths[start : start + BATCH]
                raw = pipeline.raw_scores_many(batch, size, whole)
                for sample, (arrays, whole_prediction) in zip(data.test[start : start + BATCH], raw):
                    values = {name: float(arrays[f"value.{name}"]) for name in detector.scorer_names}
                    patch_maps = {name: arrays[f"map.{name}"] for name in detector.scorer_names if f"map.{name}" in arrays}
                    score, contributions, anomaly_map = detector.combine(values, patch_maps)
                    scores.append(score)
                    if pixel and anomaly_map is not None:
                        maps.append(anomaly_map)
                    if on_predictions is not None:
                        prediction = Prediction(score, None, contributions, values, None)
                        kept.append(keep(seed, k, whole_prediction) if keep and whole_prediction else prediction)
                    result.scores.append(
                        {
                            "category": data.name,
                            "seed": seed,
                            "k_shot": k,
                            "file": _file_name(sample.path, data.root),
                            "label": sample.label,
                            "anomaly_type": sample.anomaly_type,
                            "score": score,
                            **contributions,
                        }
                    )
                del raw  # maps and analyses of the batch, before the next batch is made
            row = {"seed": seed, "k_shot": k, "category": data.name, **image_metrics(labels, np.array(scores), types)}
            if maps:
                if masks is None:
                    masks = [read_mask_channels(sample, size) for sample in data.test]
                    union = [m.max(axis=0, initial=0) for m in masks]
                    defects = saturation_defects(data, masks)
                scale = saturation_scale(data.name, size, stored_size)
                row.update(pixel_row(pipeline.cache, union, masks, maps, types, defects, scale, settings.spro_fpr_limit))
            del maps
            result.metrics.append(row)
            if on_predictions is not None:
                on_predictions(data, seed, k, kept, detector)
    return result


def _file_name(path: Path, root: Path) -> str:
    """A test image's name in scores.csv: its path under the category folder, else the path as given."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def pixel_row(
    cache: AnalysisCache | None,
    union: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    types: Sequence[str],
    defects: Sequence[DefectConfig] | None,
    scale: float,
    fpr_limit: float,
) -> dict[str, float]:
    """A fit's pixel metrics: ``pixel_auroc`` and ``pixel_score`` (``pixel_metrics``) and ``spro_by_type``'s.

    With a cache they are stored under the hash of the code, the maps, the masks
    and the other arguments (``fitcache.pixel_metrics_key``) and read back when
    the same maps are evaluated again (a warm re-run).

    Arguments:
      cache: the pipeline's cache, or None.
      union: per test image all its defects in one mask; masks: its defect channels.
      maps, types, defects, scale, fpr_limit: as for ``spro_by_type``.
    """
    key = fitcache.pixel_metrics_key(maps, masks, repr((list(types), defects, scale, fpr_limit))) if cache is not None else None
    stored = cache.load(key) if cache is not None else None
    if stored is not None and all(column in stored for column in PIXEL_COLUMNS):
        return {column: float(stored[column]) for column in PIXEL_COLUMNS}
    row = dict(zip(("pixel_auroc", "pixel_score"), pixel_metrics(union, maps)))
    row.update(spro_by_type(masks, maps, types, defects, scale, fpr_limit))
    if cache is not None:
        cache.save(key, {column: np.asarray(row[column], dtype=np.float64) for column in PIXEL_COLUMNS})
    return row


def spro_by_type(
    masks: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    types: Sequence[str],
    defects: Sequence[DefectConfig] | None,
    scale: float,
    fpr_limit: float,
) -> dict[str, float]:
    """Area under the sPRO curve as the official MVTec LOCO evaluation reports it.

    Each anomaly type is evaluated on its own images together with all good
    images (``logical_spro``, ``structural_spro``; NaN for a type without
    images), and ``spro`` is the mean of the defined ones (NaN if none).

    Arguments:
      masks, maps: per test image its defect channels and its anomaly map, at one size.
      types: per test image ``"good"``, ``"logical"`` or ``"structural"``.
      defects, scale: as for ``loco_ad.metrics.spro_auc``.
      fpr_limit: upper FPR bound of the area.
    Returns:
      ``logical_spro``, ``structural_spro`` and ``spro``.
    """
    row = {}
    for kind in IMAGE_TYPES:
        keep = [i for i, t in enumerate(types) if t in ("good", kind)]
        has_type = any(types[i] == kind for i in keep)
        row[f"{kind}_spro"] = (
            spro_auc([masks[i] for i in keep], [maps[i] for i in keep], defects, fpr_limit, scale) if has_type else math.nan
        )
    defined = [value for value in row.values() if not math.isnan(value)]
    row["spro"] = float(np.mean(defined)) if defined else math.nan
    return row
