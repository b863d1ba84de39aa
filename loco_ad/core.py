"""The pure core: fit scorers on analysed good images, weigh them, score analysed images.

``Detector`` plays the part of an anomalib ``torch_model``: it sees only
``ImageAnalysis`` objects and does no I/O, runs no model and touches no cache.
``loco_ad.pipeline.Pipeline`` is the shell around it that reads images, runs
the models (with the cache) and aligns segments into analyses.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from loco_ad.analysis import ImageAnalysis, Prediction, Scorer
from loco_ad.errors import DataError
from loco_ad.weights import leave_one_out_raw_scores, leave_one_out_weight


class Detector:
    """The enabled scorers, fitted on the references and summed with leave-one-out weights.

    Scikit-learn style: parameters in ``__init__``, learning in ``fit`` (a new
    fit replaces everything learnt), fitted attributes end in ``_``. Build one
    from a configuration with ``loco_ad.build.build_detector``.

    Arguments:
      factories: scorer id → a function returning a new, unfitted scorer (in sum order).
      multipliers: per-scorer factor on the normalised score (missing ids: 1).
      fallback_scales: per-scorer divisor when k = 1, where nothing can be left out.
      weight_floor_fraction: a leave-one-out weight is at least this fraction of
        the scorer's fallback scale.
      uses_gpu: True when the scorers' patch banks live on a GPU (faiss GPU
        indexes must not be searched from several threads at once).
    """

    def __init__(
        self,
        factories: Mapping[str, Callable[[], Scorer]],
        multipliers: Mapping[str, float] | None = None,
        fallback_scales: Mapping[str, float] | None = None,
        weight_floor_fraction: float = 0.01,
        uses_gpu: bool = False,
    ) -> None:
        self.factories = dict(factories)
        self.multipliers = dict(multipliers or {})
        self.fallback_scales = dict(fallback_scales or {})
        self.weight_floor_fraction = weight_floor_fraction
        self.uses_gpu = uses_gpu

    @property
    def scorer_names(self) -> tuple[str, ...]:
        """The enabled scorer ids, in sum order."""
        return tuple(self.factories)

    def fit(self, references: Sequence[ImageAnalysis]) -> "Detector":
        """Fit every scorer on all references and compute its weight; returns self.

        With k ≥ 2 references the weight of a scorer is its leave-one-out weight
        (``loco_ad.weights``), and the raw score each left-out reference got is
        kept for ``leave_one_out_scores``. With one reference the weights are the
        fallback scales and ``used_fallback_`` is True.

        Arguments:
          references: the analysed good images (at least one).
        Returns:
          self, with ``scorers_``, ``weights_``, ``used_fallback_`` and ``leave_one_out_raw_``.
        """
        if not references:
            raise DataError("the detector needs at least one reference image; give one or more good images")
        self.scorers_ = {name: make().fit(references) for name, make in self.factories.items()}
        self.used_fallback_ = len(references) == 1
        if self.used_fallback_:
            self.leave_one_out_raw_: dict[str, list[float]] = {}
            self.weights_ = {name: self.fallback_scales.get(name, 1.0) for name in self.factories}
            return self
        self.leave_one_out_raw_ = {name: leave_one_out_raw_scores(make, references) for name, make in self.factories.items()}
        self.weights_ = {
            name: leave_one_out_weight(raw, self.weight_floor_fraction * self.fallback_scales.get(name, 1.0))
            for name, raw in self.leave_one_out_raw_.items()
        }
        return self

    def _fitted(self) -> None:
        if not hasattr(self, "scorers_"):
            raise RuntimeError("call fit with good reference images before scoring")

    def _factor(self, name: str) -> float:
        return self.multipliers.get(name, 1.0) / self.weights_[name]

    def score(self, image: ImageAnalysis) -> Prediction:
        """Score one analysed image with every scorer and sum the normalised scores and maps.

        Arguments:
          image: the analysed image (aligned to the same canonical reference as the references).
        Returns:
          the ``Prediction``: the sum, the summed maps of the patch scorers, each
          scorer's contribution and raw score, and ``image`` itself.
        """
        self._fitted()
        raw_scores, scores, anomaly_map = {}, {}, None
        for name, scorer in self.scorers_.items():
            raw = scorer.score(image)
            factor = self._factor(name)
            raw_scores[name] = raw.value
            scores[name] = raw.value * factor
            if raw.map is not None:
                anomaly_map = raw.map * factor if anomaly_map is None else anomaly_map + raw.map * factor
        return Prediction(float(sum(scores.values())), anomaly_map, scores, raw_scores, image)

    def leave_one_out_scores(self) -> list[float]:
        """The score of each reference when left out of the fit, on the scale of test scores.

        Each scorer's leave-one-out raw score is divided by the same weight and
        multiplied by the same multiplier as a test image's, and summed, so
        these scores and ``score(...).score`` are in the same units (empty for k = 1).
        """
        self._fitted()
        if self.used_fallback_:
            return []
        per_scorer = [np.asarray(raw) * self._factor(name) for name, raw in self.leave_one_out_raw_.items()]
        return [float(value) for value in np.sum(per_scorer, axis=0)]

    @property
    def weights(self) -> dict[str, float]:
        """The weight of each enabled scorer (a raw score is divided by it)."""
        self._fitted()
        return dict(self.weights_)

    @property
    def used_fallback(self) -> bool:
        """True when k = 1 and the fallback scales replaced leave-one-out weights."""
        self._fitted()
        return self.used_fallback_
