"""The seven scorers, the pixel baseline, the fine-structure and ImageNet patch scorers and their registry, keyed by the stable ids of ``loco_ad.config.KNOWN_SCORERS``."""

from __future__ import annotations

from typing import Any

from loco_ad.analysis import Scorer
from loco_ad.errors import ConfigError
from loco_ad.features.cnn import ImagenetPatchScorer
from loco_ad.features.composition import ColourScorer, EmbeddingScorer, HistogramScorer, LocationScorer
from loco_ad.features.fine import FineStructureScorer
from loco_ad.features.patches import ClassAgnosticScorer, ClassAwareScorer, ForegroundScorer
from loco_ad.features.pixels import PixelScorer

SCORERS: dict[str, type] = {
    cls.name: cls
    for cls in (
        ClassAgnosticScorer,
        ClassAwareScorer,
        ForegroundScorer,
        EmbeddingScorer,
        HistogramScorer,
        ColourScorer,
        LocationScorer,
        PixelScorer,
        FineStructureScorer,
        ImagenetPatchScorer,
    )
}


def make_scorer(name: str, **params: Any) -> Scorer:
    """A new, unfitted scorer.

    Arguments:
      name: the scorer id, one of ``loco_ad.config.KNOWN_SCORERS``.
      **params: keyword arguments of the scorer's constructor.
    Returns:
      the scorer; ``ConfigError`` naming the choices if ``name`` is unknown.
    """
    if name not in SCORERS:
        raise ConfigError(f"unknown scorer {name!r}; choose from {', '.join(SCORERS)}")
    return SCORERS[name](**params)
