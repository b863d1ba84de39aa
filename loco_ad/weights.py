"""Leave-one-out normalisation of the scorers and their weighted sum, the ``Ensemble``.

Each scorer's raw scores live on their own scale (a cosine distance, an L1
distance of pixel shares, ...). The weight of a scorer is the largest score it
gives a good image it has not seen: fit on k − 1 references, score the one left
out, for each of the k references. A test score divided by this weight is about
1 for an image as unusual as the most unusual reference, so the scorers can be
summed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from loco_ad.analysis import ImageAnalysis, Scorer
from loco_ad.errors import DataError
from loco_ad.features import make_scorer

# Scales used instead of leave-one-out weights when k = 1 (nothing to leave
# out): the median leave-one-out weight at k = 2, rounded to one significant
# figure. Only their ratios matter for ranking images; they are
# order-of-magnitude constants that depend on the preset, so results of a k = 1
# run say they were used (``Ensemble.used_fallback``).
# - class_agnostic, class_aware, foreground, histogram: measured on 6 disjoint
#   pairs of real juice_bottle train/good images at 112×224, labels from 6
#   CIELAB k-means colour clusters, the hand-made patch features of
#   tests/analyses.py.
# - embedding, colour, location: re-measured after their distances became
#   area-weighted means, with `python experiments/fallback_scales.py --data-root
#   ../shared/data/mvtec_loco_subset --category juice_bottle --preset offline`
#   (20 pairs; medians 0.349, 0.0548, 0.496). The same command gives 0.028, 0.57,
#   0.032 and 0.312 for the other four with the offline preset.
FALLBACK_SCALES: dict[str, float] = {
    "class_agnostic": 0.08,
    "class_aware": 0.2,
    "foreground": 0.1,
    "embedding": 0.3,
    "histogram": 0.3,
    "colour": 0.05,
    "location": 0.5,
}

# A leave-one-out weight is at least this fraction of the scorer's fallback
# scale, so that identical references (every left-out score 0) do not make the
# scorer's normalised test scores explode.
WEIGHT_FLOOR_FRACTION = 0.01


def leave_one_out_weight(make: Callable[[], Scorer], references: Sequence[ImageAnalysis]) -> float:
    """The leave-one-out weight of a scorer.

    For each of the k references, fits a fresh scorer on the other k − 1 and
    scores the left-out one; the weight is the largest of the k scores, floored
    at ``WEIGHT_FLOOR_FRACTION`` × the scorer's ``FALLBACK_SCALES`` entry (1 for a
    scorer without one).

    Arguments:
      make: returns a new, unfitted scorer each time it is called.
      references: the k ≥ 2 good reference images.
    Returns:
      the weight, > 0.
    """
    if len(references) < 2:
        raise DataError("leave-one-out weights need at least two reference images; use FALLBACK_SCALES for k = 1")
    scores = []
    for left_out in range(len(references)):
        scorer = make().fit([r for i, r in enumerate(references) if i != left_out])
        scores.append(scorer.score(references[left_out]).value)
    floor = WEIGHT_FLOOR_FRACTION * FALLBACK_SCALES.get(scorer.name, 1.0)
    return max(max(scores), floor)


@dataclass(frozen=True)
class EnsembleScore:
    """The ensemble's verdict on one image.

    Arguments:
      value: sum of the normalised scorer scores.
      map: H×W float32 sum of the patch scorers' maps, each divided by its weight
        and times its multiplier; None when no enabled scorer has a map.
      scores: per scorer, its contribution to ``value`` (raw / weight × multiplier).
      raw_scores: per scorer, the raw score.
    """

    value: float
    map: np.ndarray | None
    scores: dict[str, float]
    raw_scores: dict[str, float]


class Ensemble:
    """The enabled scorers, fitted on the references and summed with leave-one-out weights.

    Arguments:
      scorer_names: scorer ids (see ``loco_ad.features.SCORERS``).
      multipliers: optional per-scorer factor on the normalised score (default 1).
      scorer_params: optional per-scorer constructor keyword arguments.
    """

    def __init__(
        self,
        scorer_names: Sequence[str],
        multipliers: Mapping[str, float] | None = None,
        scorer_params: Mapping[str, Mapping[str, object]] | None = None,
    ) -> None:
        self.scorer_names = tuple(scorer_names)
        self.multipliers = dict(multipliers or {})
        self.scorer_params = {name: dict(params) for name, params in (scorer_params or {}).items()}

    def _make(self, name: str) -> Scorer:
        return make_scorer(name, **self.scorer_params.get(name, {}))

    def fit(self, references: Sequence[ImageAnalysis]) -> "Ensemble":
        """Fit every scorer on all references and compute its weight; returns self.

        With one reference the weights are ``FALLBACK_SCALES`` and
        ``used_fallback`` is True.
        """
        if not references:
            raise DataError("the ensemble needs at least one reference image; give one or more good images")
        self.scorers_ = {name: self._make(name).fit(references) for name in self.scorer_names}
        self.used_fallback = len(references) == 1
        if self.used_fallback:
            self.weights = {name: FALLBACK_SCALES[name] for name in self.scorer_names}
        else:
            self.weights = {
                name: leave_one_out_weight(lambda name=name: self._make(name), references) for name in self.scorer_names
            }
        return self

    def score(self, image: ImageAnalysis) -> EnsembleScore:
        """Score one image with every scorer and sum the normalised scores and maps."""
        raw_scores, scores, anomaly_map = {}, {}, None
        for name, scorer in self.scorers_.items():
            raw = scorer.score(image)
            factor = self.multipliers.get(name, 1.0) / self.weights[name]
            raw_scores[name] = raw.value
            scores[name] = raw.value * factor
            if raw.map is not None:
                anomaly_map = raw.map * factor if anomaly_map is None else anomaly_map + raw.map * factor
        return EnsembleScore(float(sum(scores.values())), anomaly_map, scores, raw_scores)
