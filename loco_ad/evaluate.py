"""Evaluation on MVTec LOCO: draw references, fit, score every test image, compute metrics.

Every image's model work is done once (``Pipeline.prepare_many`` before the
loop over seeds and k); each (seed, k) then only aligns and scores.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

import cv2
import numpy as np
from tqdm.auto import tqdm

from loco_ad.analysis import Prediction
from loco_ad.data import CategoryData, DefectConfig, draw_references, read_mask_channels, saturation_scale
from loco_ad.errors import DataError
from loco_ad.metrics import aufc, image_metrics, normalized_aufc, pixel_metrics, spro_auc
from loco_ad.pipeline import Pipeline

logger = logging.getLogger(__name__)

PIXEL_EVAL_LONG_SIDE = 256

# Called with (category, seed, k, predictions) after each fit: used to write reports.
PredictionHook = Callable[[CategoryData, int, int, list[Prediction]], None]


@dataclass
class Evaluation:
    """What an evaluation produced.

    Attributes:
      scores: one row per (category, seed, k_shot, test image) for scores.csv.
      metrics: one row per (category, seed, k_shot) for metrics.csv.
      references: category → seed → k → the reference files drawn.
      fallback: (category, seed, k) runs whose weights used the k = 1 fallback scales.
    """

    scores: list[dict] = field(default_factory=list)
    metrics: list[dict] = field(default_factory=list)
    references: dict[str, dict[str, dict[str, list[str]]]] = field(default_factory=dict)
    fallback: list[tuple[str, int, int]] = field(default_factory=list)

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


def pixel_eval_size(map_size: tuple[int, int], long_side: int = PIXEL_EVAL_LONG_SIDE) -> tuple[int, int]:
    """(height, width) at which pixel metrics are computed: the map's size, shrunk to ``long_side`` at most.

    The maps come from a patch grid (16×32 to 37×37 patches), so evaluating at
    256 px loses none of their detail and keeps pixel AUROC over a whole
    category to about a second; sPRO's absolute saturations are scaled to it.
    """
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
    or anomalous images (every image metric would be undefined).
    """
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
) -> Evaluation:
    """Run the few-shot protocol on each category.

    Arguments:
      pipeline: the pipeline to evaluate (its scorers decide the score columns).
      datasets: the categories, from ``loco_ad.data.load_category``.
      seeds: seeds of the reference draws.
      shots: the k values.
      pixel: compute pixel AUROC and sPRO (needs a patch scorer for a map).
      on_predictions: called after scoring each (category, seed, k).
    Returns:
      the ``Evaluation``.
    """
    check_datasets(datasets, shots)
    result = Evaluation()
    for data in datasets:
        draws = {(seed, k): draw_references(data.train, k, seed) for seed in seeds for k in shots}
        drawn = sorted({path for paths in draws.values() for path in paths})
        test_paths = [sample.path for sample in data.test]
        pipeline.prepare_many(drawn + test_paths)
        labels = np.array([sample.label for sample in data.test])
        types = [sample.anomaly_type for sample in data.test]
        masks: list[np.ndarray] | None = None  # per test image its defect channels, read at the first map
        union: list[np.ndarray] | None = None  # per test image all its defects in one mask
        defects: Sequence[DefectConfig] | None = data.defects
        result.references[data.name] = {str(seed): {} for seed in seeds}
        runs = tqdm(draws.items(), desc=f"{data.name}: seeds × k", unit="fit", disable=not pipeline.progress)
        for (seed, k), references in runs:
            pipeline.fit(references)
            predictions = pipeline.predict_many(test_paths, progress=False)
            result.references[data.name][str(seed)][str(k)] = [str(p) for p in references]
            if pipeline.used_fallback:
                result.fallback.append((data.name, seed, k))
            scores = np.array([p.score for p in predictions])
            row = {"seed": seed, "k_shot": k, "category": data.name, **image_metrics(labels, scores, types)}
            if pixel and predictions[0].map is not None:
                size = pixel_eval_size(predictions[0].map.shape)
                if masks is None:
                    masks = [read_mask_channels(sample, size) for sample in data.test]
                    union = [m.max(axis=0, initial=0) for m in masks]
                    defects = saturation_defects(data, masks)
                maps = [cv2.resize(p.map, size[::-1], interpolation=cv2.INTER_AREA) for p in predictions]
                row["pixel_auroc"], row["pixel_score"] = pixel_metrics(union, maps)
                row["spro"] = spro_auc(masks, maps, defects, scale=saturation_scale(data.name, size))
            result.metrics.append(row)
            for sample, prediction in zip(data.test, predictions):
                result.scores.append(
                    {
                        "category": data.name,
                        "seed": seed,
                        "k_shot": k,
                        "file": str(sample.path.relative_to(data.root)),
                        "label": sample.label,
                        "anomaly_type": sample.anomaly_type,
                        "score": prediction.score,
                        **prediction.scores,
                    }
                )
            if on_predictions is not None:
                on_predictions(data, seed, k, predictions)
    return result
