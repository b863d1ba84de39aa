"""Leave-one-out normalisation: how each scorer's raw scores are put on a common scale.

Each scorer's raw scores live on their own scale (a cosine distance, an L1
distance of pixel shares, ...). The weight of a scorer is the largest score it
gives a good image it has not seen: fit on k − 1 references, score the one left
out, for each of the k references. A test score divided by this weight is about
1 for an image as unusual as the most unusual reference, so the scorers can be
combined (``loco_ad.core.Detector``).
"""

from __future__ import annotations

from typing import Callable, Sequence

from loco_ad.analysis import ImageAnalysis, Scorer
from loco_ad.errors import DataError


def leave_one_out_raw_scores(make: Callable[[], Scorer], references: Sequence[ImageAnalysis]) -> list[float]:
    """The raw score each reference gets from a scorer fitted on the other k − 1.

    Arguments:
      make: returns a new, unfitted scorer each time it is called.
      references: the k ≥ 2 good reference images.
    Returns:
      k raw scores, in the order of ``references``.
    """
    if len(references) < 2:
        raise DataError("leave-one-out scores need at least two reference images; k = 1 uses the fallback scales")
    return [
        make().fit([r for i, r in enumerate(references) if i != left_out]).score(references[left_out]).value
        for left_out in range(len(references))
    ]


def leave_one_out_weight(raw_scores: Sequence[float], floor: float) -> float:
    """A scorer's weight from its leave-one-out raw scores: their maximum, at least ``floor``.

    The floor keeps identical references (every left-out score 0) from making
    the scorer's normalised test scores explode.

    Arguments:
      raw_scores: the scores of ``leave_one_out_raw_scores``.
      floor: the smallest weight, > 0.
    Returns:
      the weight, > 0.
    """
    return max(max(raw_scores), floor)
