"""The automatic verdict threshold: a score above which an image is called anomalous, from the good images alone.

The references' leave-one-out scores (``loco_ad.core.Detector.leave_one_out_scores``)
are what the detector gives a good image it has not seen, on the scale of test
scores; a rule turns them into a threshold. Each rule is measured across
reference draws by ``experiments/threshold_rules.py``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

RULES: dict[str, Callable[[np.ndarray], float]] = {
    "max": lambda loo: float(loo.max()),
    "mean_std": lambda loo: float(loo.mean() + loo.std()),
    "mean": lambda loo: float(loo.mean()),
    "median": lambda loo: float(np.median(loo)),
}
RULE_WORDS: dict[str, str] = {
    "max": "the largest leave-one-out score",
    "mean_std": "the mean plus one standard deviation of the leave-one-out scores",
    "mean": "the mean leave-one-out score",
    "median": "the median leave-one-out score",
}


def threshold_from(loo_scores: Sequence[float], at_weights: float, rule: str) -> float:
    """The threshold ``rule`` gives for these leave-one-out scores.

    Arguments:
      loo_scores: the references' leave-one-out scores (empty for k = 1).
      at_weights: the score of an image on which every scorer scores its weight
        (``Detector.value_at_weights``; the number of scorers for the plain sum).
        With no leave-one-out score (k = 1) it is the threshold, as each scorer's
        weight (there the fallback scale) is about its score on the least typical
        good image.
      rule: a key of ``RULES``.
    Returns:
      the threshold.
    """
    if len(loo_scores) == 0:
        return float(at_weights)
    return RULES[rule](np.asarray(loo_scores, dtype=np.float64))


def auto_threshold(loo_scores: Sequence[float], at_weights: float, rule: str) -> tuple[float, str]:
    """``threshold_from`` and a sentence saying how the threshold was chosen, for reports."""
    value = threshold_from(loo_scores, at_weights, rule)
    if len(loo_scores) == 0:
        return value, f"auto: k = 1, no leave-one-out scores; every scorer at its fallback scale ({value:.4g})"
    return value, f"auto: {RULE_WORDS[rule]} of the {len(loo_scores)} good references"
