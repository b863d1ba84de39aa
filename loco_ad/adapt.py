"""Settings the references decide: each candidate judged by leave-one-out over the references with synthetic defects.

A preset's settings are chosen on some products; a user's product is another.
What suits it (register the images or not, how much the patch position and
colour count, whether the parts' make-up may vary) shows in its good images.
``choose_settings`` tries every combination of the values that ``adapt.choices``
offers (``AdaptConfig.candidates``): for each, it fits on all references but one, scores the left-out one
and defects made from it (``loco_ad.synthetic``: a part blurred away,
recoloured, copied elsewhere, a scratch), for each of the first ``adapt.max_held_out`` references in turn, and takes
the image AUROC of those scores, good (the left-out references) against
defective. The combination with the highest AUROC wins if it beats the first values
(the first value of every choice, which should be the preset's) by more than
``adapt.margin``; otherwise the first values hold.
With fewer than ``adapt.min_references`` references there is nothing to leave
out and the first values hold.

Nothing here knows a product: the choice comes from the k images of the fit.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from loco_ad.config import PipelineConfig, apply_overrides
from loco_ad.metrics import auroc_and_f1_max
from loco_ad.synthetic import DEFECTS, with_defect

ScoreFunction = Callable[[PipelineConfig, Sequence[np.ndarray], Sequence[np.ndarray]], list[float]]


def choose_settings(config: PipelineConfig, references: Sequence[np.ndarray], score: ScoreFunction) -> tuple[PipelineConfig, dict]:
    """The settings in force for a fit on ``references``, and a record of the choice.

    Arguments:
      config: the settings for this number of references (``PipelineConfig.for_references``),
        whose ``adapt`` block says what to choose.
      references: the good images, H×W×3 uint8.
      score: ``score(candidate_config, fit_images, test_images)`` fits a pipeline with
        ``candidate_config`` on ``fit_images`` and returns the image scores of ``test_images``.
    Returns:
      (``config`` with the chosen values applied, a plain-JSON record: ``chosen``
      (key → value), ``auroc`` (per candidate, its overrides joined by spaces) and
      ``references``; ``chosen`` alone when nothing was tried).
    """
    settings = config.adapt
    base = dataclasses.replace(config, few_references=(), adapt=dataclasses.replace(settings, choices=()))
    options = settings.candidates()
    if len(references) < settings.min_references:
        chosen = options[0]
        return apply_overrides(config, chosen), {"chosen": _as_dict(chosen), "references": len(references)}
    rng = np.random.default_rng(settings.seed)
    held_out = list(references[: settings.max_held_out])
    defective = [[with_defect(image, kind, rng) for kind in DEFECTS for _ in range(settings.defects_per_kind)] for image in held_out]
    labels = np.array([0] * len(held_out) + [1] * sum(map(len, defective)))
    results: dict[tuple[str, ...], float] = {}
    for overrides in options:
        candidate = apply_overrides(base, overrides)
        good: list[float] = []
        bad: list[float] = []
        for index, image in enumerate(held_out):
            others = [r for i, r in enumerate(references) if i != index]
            scores = score(candidate, others, [image, *defective[index]])
            good.append(scores[0])
            bad.extend(scores[1:])
        results[overrides] = auroc_and_f1_max(labels, np.array(good + bad))[0]
    best = max(options, key=lambda o: (results[o], -options.index(o)))
    chosen = best if results[best] > results[options[0]] + settings.margin else options[0]
    record = {
        "chosen": _as_dict(chosen),
        "auroc": {" ".join(o): round(float(v), 4) for o, v in results.items()},
        "references": len(references),
    }
    return apply_overrides(config, chosen), record


def apply_decisions(config: PipelineConfig, record: dict) -> PipelineConfig:
    """What ``choose_settings`` returned with ``record``: ``config`` with the record's chosen values applied."""
    return apply_overrides(config, [f"{key}={value}" for key, value in record["chosen"].items()])


def _as_dict(overrides: Sequence[str]) -> dict[str, str]:
    return dict(o.split("=", 1) for o in overrides)
