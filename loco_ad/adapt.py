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

Before the choices, one setting is read off the references directly: whether
they share a layout (``layout_agreement``). Where they do not, a patch's place
in the image means nothing, and ``adapt.layout_free`` (the offline preset: no
registration, no position block) holds. And whether they carry colour
(``colour_spread``): where they do not (tyre rubber, metal, stone), ``adapt.grey``
holds (the offline preset: the ImageNet features alone).

Nothing here knows a product: the choice comes from the k images of the fit.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import cv2
import numpy as np

from loco_ad.config import PipelineConfig, apply_overrides
from loco_ad.metrics import auroc_and_f1_max
from loco_ad.stages.register import Registration
from loco_ad.synthetic import DEFECTS, with_defect

ScoreFunction = Callable[[PipelineConfig, Sequence[np.ndarray], Sequence[np.ndarray]], list[float]]


def choose_settings(
    config: PipelineConfig, references: Sequence[np.ndarray], score: ScoreFunction, registration: Registration | None = None
) -> tuple[PipelineConfig, dict]:
    """The settings in force for a fit on ``references``, and a record of the choice.

    First the layout (measured from ``adapt.min_references`` references on): references whose
    ``layout_agreement`` is below ``adapt.layout_threshold`` get the
    ``layout_free`` overrides; then the colour: references whose
    ``colour_spread`` is below ``adapt.grey_threshold`` get the ``grey`` overrides. Then the
    ``adapt.choices``, judged on top of them.

    Arguments:
      config: the settings for this number of references (``PipelineConfig.for_references``),
        whose ``adapt`` block says what to choose.
      references: the good images, H×W×3 uint8.
      score: ``score(candidate_config, fit_images, test_images)`` fits a pipeline with
        ``candidate_config`` on ``fit_images`` and returns the image scores of ``test_images``.
      registration: the preset's registration, for the layout agreement (None: the images as they are).
    Returns:
      (``config`` with the chosen values applied, a plain-JSON record: ``chosen``
      (key → value), ``references``, ``colour_spread``, ``layout_agreement`` when measured and
      ``auroc`` (per candidate of the choices, its overrides joined by spaces) when they were tried).
    """
    settings = config.adapt
    record: dict = {"references": len(references)}
    # both measured whatever this config applies: a fit restored from the cache serves every config whose
    # overrides differ only in the ensemble's settings (loco_ad.fitcache.fit_id)
    if len(references) >= settings.min_references:
        record["layout_agreement"] = round(layout_agreement(references, registration), 4)
    record["colour_spread"] = round(colour_spread(references), 2)
    read_off = _read_off_overrides(config, record)
    options = [(*read_off, *option) for option in settings.candidates()]
    if len(references) < settings.min_references or not settings.choices:
        chosen = options[0]
        return apply_overrides(config, chosen), {"chosen": _as_dict(chosen), **record}
    base = dataclasses.replace(config, few_references=(), adapt=dataclasses.replace(settings, choices=(), layout_free=(), grey=()))
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
    record["auroc"] = {" ".join(o): round(float(v), 4) for o, v in results.items()}
    return apply_overrides(config, chosen), {"chosen": _as_dict(chosen), **record}


def layout_agreement(references: Sequence[np.ndarray], registration: Registration | None, side: int = 16) -> float:
    """How much the references share one layout: the mean Pearson correlation over pairs of their side×side grey copies.

    Each reference is first brought to the first's size and laid onto it by ``registration`` (when given). Photographs of
    one part placed alike agree closely (the shared juice_bottle, tire and posed images: 0.90–1.00
    for 2 to 8 references); crops of a surface taken anywhere and at any size do not (crops of
    scikit-image's gravel photograph: −0.05 to 0.06). Needs two references at least.
    """
    height, width = references[0].shape[:2]
    references = [image if image.shape[:2] == (height, width) else cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
                  for image in references]
    if registration is not None:
        registration.fit(references[0])
        references = [references[0], *(registration.register(image)[0] for image in references[1:])]
    copies = []
    for image in references:
        grey = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (side, side), interpolation=cv2.INTER_AREA).astype(np.float64).ravel()
        copies.append((grey - grey.mean()) / max(float(grey.std()), 1e-6))
    pairs = [float(a @ b) / a.size for i, a in enumerate(copies) for b in copies[i + 1 :]]
    return float(np.mean(pairs))


def colour_spread(references: Sequence[np.ndarray], side: int = 128) -> float:
    """How much colour the references carry: the 95th percentile, over their pixels, of the CIELAB chroma
    distance of each pixel from its image's median colour (so a colour cast of the light does not count).

    Each image is first brought to side×side. MVTec 3D-AD's tyres: 5–6; crops of scikit-image's gravel
    photograph: 0; the shared juice_bottle images: 40–58; the posed coffee photographs: 37–40 (one image each).
    """
    distances = []
    for image in references:
        small = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
        chroma = cv2.cvtColor(small, cv2.COLOR_RGB2LAB)[..., 1:].reshape(-1, 2).astype(np.float64)  # a*, b* + 128
        distances.append(np.hypot(*(chroma - np.median(chroma, axis=0)).T))
    return float(np.percentile(np.concatenate(distances), 95))


def apply_decisions(config: PipelineConfig, record: dict) -> PipelineConfig:
    """What ``choose_settings`` returned with ``record``: ``config`` with its ``adapt.layout_free`` and
    ``adapt.grey`` overrides where the record's measures are below their thresholds, and the record's chosen
    values of ``adapt.choices``.

    Those overrides are ``config``'s own, not the record's: a fit restored from the cache may have been made
    under layout overrides that differ in the ensemble's settings, which do not change a fit
    (``loco_ad.fitcache.fit_id``; ``--scorers`` drops them).
    """
    choices = {choice.partition("=")[0].strip() for choice in config.adapt.choices}
    chosen = [f"{key}={value}" for key, value in record["chosen"].items() if key in choices]
    return apply_overrides(config, [*_read_off_overrides(config, record), *chosen])


def _read_off_overrides(config: PipelineConfig, record: dict) -> tuple[str, ...]:
    """``config``'s ``adapt.layout_free`` where the record's (rounded) layout agreement is below its threshold,
    then its ``adapt.grey`` where the record's colour spread is below its threshold."""
    settings = config.adapt
    layout = tuple(settings.layout_free) if record.get("layout_agreement", np.inf) < settings.layout_threshold else ()
    grey = tuple(settings.grey) if record.get("colour_spread", np.inf) < settings.grey_threshold else ()
    return (*layout, *grey)


def _as_dict(overrides: Sequence[str]) -> dict[str, str]:
    return dict(o.split("=", 1) for o in overrides)
