"""The data every stage produces and every scorer reads: ``ImageAnalysis``, ``Score``, ``Scorer``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, Sequence

import numpy as np


@dataclass(frozen=True)
class ImageAnalysis:
    """One image after segmentation, alignment and embedding (numpy, float32 unless stated).

    Arguments:
      rgb: H×W×3 uint8 image at working resolution.
      lab: H×W×3 CIELAB of ``rgb`` (L in [0, 100]).
      segment_map: H×W int32 partition from the segmenter: 0 = background or no
        segment, 1..n = the image's own segments.
      labels: H×W int32 aligned class id per pixel: 0 = background, 1..n_classes-1
        = the class ids of the canonical reference image.
      patches: h×w×D L2-normalised patch features.
      patch_labels: h×w int32 class id per patch (majority of ``labels`` in the patch).
      n_classes: number of class ids including background; every id lies in [0, n_classes).
      covered: H×W bool, False where registration filled the border of the moved image (no pixel of the
        input lies there), or None when the image was not moved.
    """

    rgb: np.ndarray
    lab: np.ndarray
    segment_map: np.ndarray
    labels: np.ndarray
    patches: np.ndarray
    patch_labels: np.ndarray
    n_classes: int
    covered: np.ndarray | None = None

    @property
    def segments(self) -> list[np.ndarray]:
        """The segments as boolean H×W masks, in id order."""
        return [self.segment_map == i for i in range(1, int(self.segment_map.max()) + 1)]

    @property
    def foreground(self) -> np.ndarray:
        """H×W bool: pixels of any non-background class."""
        return self.labels > 0


@dataclass(frozen=True)
class Score:
    """What a scorer says of one image.

    Arguments:
      value: the anomaly score; larger is more anomalous.
      map: H×W float32 anomaly map at working resolution, or None for scorers without one.
    """

    value: float
    map: np.ndarray | None = None


class Scorer(Protocol):
    """A scorer: parameters in ``__init__``, learning in ``fit``, no model and no I/O."""

    name: str

    def fit(self, references: Sequence[ImageAnalysis]) -> "Scorer": ...

    def score(self, image: ImageAnalysis) -> Score: ...


@dataclass(frozen=True)
class Prediction:
    """The pipeline's verdict on one image.

    Arguments:
      score: the ensemble's image score (sum of the weighted scorer scores).
      map: H×W float32 anomaly map at working resolution (weighted sum of the
        patch scorers' maps), or None when no patch scorer is enabled.
      scores: per-scorer contribution to ``score`` (raw score / leave-one-out weight × multiplier).
      raw_scores: per-scorer raw score before weighting.
      analysis: the analysed image (segments, aligned labels, features), or
        None in a ``scores_only`` copy.
    """

    score: float
    map: np.ndarray | None
    scores: dict[str, float]
    raw_scores: dict[str, float]
    analysis: ImageAnalysis | None

    def scores_only(self) -> "Prediction":
        """A copy without the map and the analysis: a few numbers, for keeping many predictions in memory."""
        return replace(self, map=None, analysis=None)
