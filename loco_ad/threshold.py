"""The automatic verdict threshold: a score above which an image is called anomalous, from the good images alone.

The references' leave-one-out scores (``loco_ad.core.Detector.leave_one_out_scores``)
are what the detector gives a good image it has not seen, on the scale of test
scores; a rule turns them into a threshold. Each rule is measured across
reference draws by ``experiments/threshold_rules.py``.

The rules ``mean``, ``median``, ``mean_std`` and ``max`` are statistics of the k
scores. ``fpr`` targets a false-positive rate ``target_fpr``: the upper
prediction bound of a normal sample, mean + t(1 − target_fpr, k − 1) · s · √(1 + 1/k)
(s the standard deviation with k − 1 degrees of freedom, t Student's quantile):
were the leave-one-out scores and a new good image's score drawn from one normal
distribution, the new score would lie above it with probability ``target_fpr``.
The k scores are too few for an order statistic (with k = 4 the largest is
exceeded by one new good image in five), so the bound extrapolates the tail
with the normal's shape; ``experiments/threshold_rules.py`` measures what it
achieves on unseen good images.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def _prediction_bound(loo: np.ndarray, target_fpr: float) -> float:
    """mean + t(1 − target_fpr, k − 1) · s · √(1 + 1/k) of the k ≥ 2 scores (see the module's docstring)."""
    from scipy.stats import t as student_t  # imported here: the other rules do not need scipy.stats

    k = loo.size
    return float(loo.mean() + student_t.ppf(1.0 - target_fpr, k - 1) * loo.std(ddof=1) * np.sqrt(1.0 + 1.0 / k))


# rule -> threshold from the k >= 2 leave-one-out scores and the target false-positive rate (used by ``fpr`` only)
RULES: dict[str, Callable[[np.ndarray, float], float]] = {
    "max": lambda loo, target_fpr: float(loo.max()),
    "mean_std": lambda loo, target_fpr: float(loo.mean() + loo.std()),
    "mean": lambda loo, target_fpr: float(loo.mean()),
    "median": lambda loo, target_fpr: float(np.median(loo)),
    "fpr": _prediction_bound,
}
RULE_WORDS: dict[str, str] = {
    "max": "the largest leave-one-out score",
    "mean_std": "the mean plus one standard deviation of the leave-one-out scores",
    "mean": "the mean leave-one-out score",
    "median": "the median leave-one-out score",
    "fpr": "the normal prediction bound for a false-positive rate of {target_fpr:g} (mean + t·s·√(1 + 1/k))"
    " of the leave-one-out scores",
}


def threshold_from(loo_scores: Sequence[float], single_reference: float, rule: str, target_fpr: float = 0.05) -> float:
    """The threshold ``rule`` gives for these leave-one-out scores.

    Arguments:
      loo_scores: the references' leave-one-out scores (empty for k = 1).
      single_reference: the threshold when there is no leave-one-out score (k = 1):
        ``Detector.single_reference_threshold``, the score of an image on which every
        scorer scores a margin times its fallback scale.
      rule: a key of ``RULES``.
      target_fpr: the false-positive rate the ``fpr`` rule aims at, in (0, 1).
    Returns:
      the threshold.
    """
    if len(loo_scores) == 0:
        return float(single_reference)
    return RULES[rule](np.asarray(loo_scores, dtype=np.float64), target_fpr)


def auto_threshold(loo_scores: Sequence[float], single_reference: float, rule: str, target_fpr: float = 0.05) -> tuple[float, str]:
    """``threshold_from`` and a sentence saying how the threshold was chosen, for reports."""
    value = threshold_from(loo_scores, single_reference, rule, target_fpr)
    if len(loo_scores) == 0:
        return value, f"auto: k = 1, no leave-one-out scores; every scorer at its fallback scale times the margin ({value:.4g})"
    return value, f"auto: {RULE_WORDS[rule].format(target_fpr=target_fpr)} of the {len(loo_scores)} good references"
