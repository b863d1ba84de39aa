"""The pure core: fit scorers on analysed good images, weigh them, score analysed images.

``Detector`` plays the part of an anomalib ``torch_model``: it sees only
``ImageAnalysis`` objects and does no I/O, runs no model and touches no cache.
``loco_ad.pipeline.Pipeline`` is the shell around it that reads images, runs
the models (with the cache) and aligns segments into analyses.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from loco_ad.analysis import ImageAnalysis, Prediction, Score, Scorer
from loco_ad.errors import ConfigError, DataError
from loco_ad.threshold import RULES, auto_threshold
from loco_ad.weights import leave_one_out_raw_scores, leave_one_out_weight


class Detector:
    """The enabled scorers, fitted on the references, normalised by leave-one-out weights and combined.

    A scorer's contribution to the image score is its raw score divided by its
    weight (``loco_ad.weights``), capped at ``cap``, then with ``combination="log"``
    (default) the log of that plus ``log_offset`` (the ensemble score is the log
    of a product of the normalised scores), with ``"sum"`` (the design's) the
    capped value itself; times the scorer's multiplier. The cap and the log keep
    one scorer that explodes on an image (a composition scorer on a good image
    of a variant no reference shows) from outweighing the others; a real
    defect shows in several. Chosen by ``experiments/cross_validate.py`` (shared
    juice_bottle subset + 80 extra good images, offline preset) over the plain
    sum with no cap: held out, the default ensemble's image AUROC at k = 4 rose
    from 0.844 to 0.879 (0.867 to 0.900 with the patch scorers'
    ``reference_penalty``), mostly on the draw whose references lack one of the
    three juice variants. Maps are always the plain sum of the patch scorers'
    maps divided by their weights (times the multipliers); the maps of
    ``coarse_maps`` scorers enter only when no other scorer gives a map.

    Scikit-learn style: parameters in ``__init__``, learning in ``fit`` (a new
    fit replaces everything learnt), fitted attributes end in ``_``. Build one
    from a configuration with ``loco_ad.build.build_detector``.

    Arguments:
      factories: scorer id → a function returning a new, unfitted scorer (in sum order).
      multipliers: per-scorer factor on the normalised score (missing ids: 1).
      fallback_scales: per-scorer divisor when k = 1, where nothing can be left out.
      weight_floor_fraction: a leave-one-out weight is at least this fraction of
        the scorer's fallback scale.
      combination: ``"log"`` or ``"sum"`` (see above).
      log_offset: added to a normalised score before its log.
      cap: largest normalised score (None: no cap); a scorer summed alone is not capped.
      single_reference_scorers: with one reference, only those of the enabled
        scorers that are in this list are fitted and summed (none in it, or an
        empty list: all of them).
      single_reference_margin: with one reference, the auto threshold is the score of an image on
        which every scorer scores this many times its weight (its fallback scale).
      min_references: scorer id → the fewest references it is fitted and summed with (missing ids: 1;
        where no enabled scorer has that many, all of them are).
      threshold_rule: how ``auto_threshold`` turns the references' leave-one-out
        scores into a verdict threshold (a key of ``loco_ad.threshold.RULES``).
      target_fpr: the false-positive rate the ``fpr`` rule aims at, in (0, 1).
      coarse_maps: scorers whose map is too coarse to localise with others (the pixel
        baseline's thumbnail difference): summed only when no other scorer gives a map.
      uses_gpu: True when the scorers' patch banks live on a GPU (faiss GPU
        indexes must not be searched from several threads at once).
    """

    def __init__(
        self,
        factories: Mapping[str, Callable[[], Scorer]],
        multipliers: Mapping[str, float] | None = None,
        fallback_scales: Mapping[str, float] | None = None,
        weight_floor_fraction: float = 0.01,
        combination: str = "log",
        log_offset: float = 0.1,
        cap: float | None = 2.0,
        single_reference_scorers: Sequence[str] = (),
        single_reference_margin: float = 1.0,
        min_references: Mapping[str, float] | None = None,
        threshold_rule: str = "mean",
        target_fpr: float = 0.05,
        coarse_maps: Sequence[str] = (),
        uses_gpu: bool = False,
    ) -> None:
        if combination not in ("log", "sum"):
            raise ConfigError(f"unknown combination {combination!r}; choose log or sum")
        if threshold_rule not in RULES:
            raise ConfigError(f"unknown threshold rule {threshold_rule!r}; choose from {', '.join(RULES)}")
        self.factories = dict(factories)
        self.multipliers = dict(multipliers or {})
        self.fallback_scales = dict(fallback_scales or {})
        self.weight_floor_fraction = weight_floor_fraction
        self.combination = combination
        self.log_offset = log_offset
        self.cap = cap
        self.single_reference_scorers = tuple(single_reference_scorers)
        self.single_reference_margin = single_reference_margin
        self.min_references = dict(min_references or {})
        if not 0.0 < target_fpr < 1.0:
            raise ConfigError(f"target_fpr must lie in (0, 1), got {target_fpr}")
        self.threshold_rule = threshold_rule
        self.target_fpr = target_fpr
        self.coarse_maps = tuple(coarse_maps)
        self.uses_gpu = uses_gpu

    def names_for(self, k: int) -> tuple[str, ...]:
        """The ids of the scorers fitted and summed with ``k`` references, in sum order."""
        entered = tuple(name for name in self.factories if k >= self.min_references.get(name, 1)) or tuple(self.factories)
        if k == 1:
            chosen = tuple(name for name in entered if name in self.single_reference_scorers)
            if chosen:
                return chosen
        return entered

    @property
    def scorer_names(self) -> tuple[str, ...]:
        """The ids of the scorers summed, in sum order: after ``fit``, those of the fit (see ``names_for``)."""
        return self.names_ if hasattr(self, "names_") else tuple(self.factories)

    def fit(
        self, references: Sequence[ImageAnalysis], leave_one_out_raw: Mapping[str, Sequence[float]] | None = None
    ) -> "Detector":
        """Fit every scorer on all references and compute its weight; returns self.

        With k ≥ 2 references the weight of a scorer is its leave-one-out weight
        (``loco_ad.weights``), and the raw score each left-out reference got is
        kept for ``leave_one_out_scores``. With one reference the weights are the
        fallback scales, ``used_fallback_`` is True, and only the scorers of
        ``names_for(1)`` are fitted.

        Arguments:
          references: the analysed good images (at least one).
          leave_one_out_raw: the leave-one-out raw scores of an earlier fit on the
            same references (``restore``), which are then not computed again.
        Returns:
          self, with ``names_``, ``scorers_``, ``weights_``, ``used_fallback_`` and ``leave_one_out_raw_``.
        """
        if not references:
            raise DataError("the detector needs at least one reference image; give one or more good images")
        names = self.names_for(len(references))
        scorers = {name: self.factories[name]().fit(references) for name in names}
        if leave_one_out_raw is None:
            leave_one_out_raw = {
                name: [] if len(references) == 1 else leave_one_out_raw_scores(self.factories[name], references) for name in names
            }
        self.restore(len(references), leave_one_out_raw)
        self.scorers_ = scorers
        return self

    def restore(self, k: int, leave_one_out_raw: Mapping[str, Sequence[float]]) -> "Detector":
        """The weights of a fit on ``k`` references from its scorers' leave-one-out raw scores, fitting no scorer.

        What ``fit`` learns apart from the fitted scorers: enough to combine raw
        scores (``combine``, ``leave_one_out_scores``, ``auto_threshold``), not to
        ``score`` an image. Returns self.
        """
        names = self.names_for(k)
        self.names_ = names
        self.scorers_: dict[str, Scorer] = {}
        self.used_fallback_ = k == 1
        self.leave_one_out_raw_: dict[str, list[float]] = {name: [float(v) for v in leave_one_out_raw[name]] for name in names}
        self.weights_ = {name: self.weight_from(name, raw) for name, raw in self.leave_one_out_raw_.items()}
        return self

    def weight_from(self, name: str, leave_one_out_raw: Sequence[float]) -> float:
        """The weight of scorer ``name`` given its leave-one-out raw scores (empty: k = 1, its fallback scale)."""
        scale = self.fallback_scales.get(name, 1.0)
        if len(leave_one_out_raw) == 0:
            return scale
        return leave_one_out_weight(leave_one_out_raw, self.weight_floor_fraction * scale)

    def contribution(self, name: str, raw: float | np.ndarray, weight: float, alone: bool = False) -> np.ndarray:
        """What scorer ``name`` adds to the image score for a raw score (or an array of them) and its weight.

        ``alone``: it is the only scorer summed, and is not capped (the cap limits
        one scorer's share of a sum; alone it would only tie the images above it).
        """
        normalised = np.asarray(raw, dtype=np.float64) / weight
        if self.cap is not None and not alone:
            normalised = np.minimum(normalised, self.cap)
        if self.combination == "log":
            normalised = np.log(normalised + self.log_offset)
        return self.multipliers.get(name, 1.0) * normalised

    def single_reference_threshold(self) -> float:
        """The k = 1 threshold: the score of an image on which every fitted scorer scores ``single_reference_margin`` × its weight."""
        self._fitted()
        return float(sum(self.contribution(name, self.single_reference_margin, 1.0, self._alone) for name in self.names_))

    def auto_threshold(self) -> tuple[float, str]:
        """The automatic verdict threshold of this fit, and a sentence saying how it was chosen (``threshold_rule``)."""
        return auto_threshold(self.leave_one_out_scores(), self.single_reference_threshold(), self.threshold_rule, self.target_fpr)

    def _fitted(self) -> None:
        if not hasattr(self, "names_"):
            raise RuntimeError("call fit with good reference images before scoring")

    @property
    def _alone(self) -> bool:
        return len(self.names_) == 1

    def _map_factor(self, name: str) -> float:
        return self.multipliers.get(name, 1.0) / self.weights_[name]

    def raw(self, image: ImageAnalysis) -> dict[str, Score]:
        """Each fitted scorer's raw score (and map) of one analysed image, in sum order."""
        self._fitted()
        if not self.scorers_:
            raise RuntimeError("this detector was restored from leave-one-out scores; fit it to score images")
        return {name: scorer.score(image) for name, scorer in self.scorers_.items()}

    def combine(
        self, raw_scores: Mapping[str, float], raw_maps: Mapping[str, np.ndarray]
    ) -> tuple[float, dict[str, float], np.ndarray | None]:
        """The image score, each scorer's contribution and the summed map from the scorers' raw scores and maps.

        Arguments:
          raw_scores: scorer id → raw score, for every scorer of the fit.
          raw_maps: scorer id → raw map (the patch scorers'), all of one size.
        Returns:
          the sum of the contributions, the contributions, and the sum of the
          maps divided by their weights times the multipliers (None without maps).
        """
        self._fitted()
        scores = {name: float(self.contribution(name, raw_scores[name], self.weights_[name], self._alone)) for name in self.names_}
        mapped = [name for name in self.names_ if name in raw_maps]
        fine = [name for name in mapped if name not in self.coarse_maps]
        anomaly_map = None
        for name in fine or mapped:
            weighted = raw_maps[name] * self._map_factor(name)
            anomaly_map = weighted if anomaly_map is None else anomaly_map + weighted
        return float(sum(scores.values())), scores, anomaly_map

    def score(self, image: ImageAnalysis) -> Prediction:
        """Score one analysed image with every scorer and sum their contributions and normalised maps.

        Arguments:
          image: the analysed image (aligned to the same canonical reference as the references).
        Returns:
          the ``Prediction``: the sum, the summed maps of the patch scorers, each
          scorer's contribution and raw score, and ``image`` itself.
        """
        return self.prediction(self.raw(image), image)

    def prediction(self, raw: Mapping[str, Score], image: ImageAnalysis | None) -> Prediction:
        """The ``Prediction`` of an image from its scorers' raw scores and maps (``raw``, as ``raw`` returns them)."""
        values = {name: value.value for name, value in raw.items()}
        score, scores, anomaly_map = self.combine(values, {name: v.map for name, v in raw.items() if v.map is not None})
        return Prediction(score, anomaly_map, scores, values, image)

    def leave_one_out_scores(self) -> list[float]:
        """The score of each reference when left out of the fit, on the scale of test scores.

        Each scorer's leave-one-out raw score contributes as a test image's raw
        score does (the same weight, cap, combination and multiplier), so these
        scores and ``score(...).score`` are in the same units (empty for k = 1).
        """
        self._fitted()
        if self.used_fallback_:
            return []
        per_scorer = [self.contribution(name, raw, self.weights_[name], self._alone) for name, raw in self.leave_one_out_raw_.items()]
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
