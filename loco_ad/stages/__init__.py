"""Per-image stages: segmentation, patch embedding, alignment to the reference.

Every stage works on RGB images at working resolution (see
``PipelineConfig.working_size``): H×W×3 uint8 with H and W multiples of the
patch size.

Every stage class carries ``version``, an integer that is part of the cache key
of its outputs (``loco_ad.identity``): bump it in any change that alters what
the stage returns for the same image and parameters (the golden fingerprints of
``tests/test_stage_versions.py`` fail until you do).
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np


class Segmenter(Protocol):
    """Cuts an image into segments.

    ``reference_dependent`` is False when ``segment`` depends on the image alone
    (SAM), so its output may be cached per image; True when ``fit`` on the
    reference images must come first (colour clusters).
    """

    reference_dependent: bool
    version: int

    def fit(self, references: Sequence[np.ndarray]) -> "Segmenter": ...

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        """H×W int32 partition: 0 = background, 1..n segments (see ``masks.masks_to_partition``)."""
        ...


class Embedder(Protocol):
    """Computes a grid of L2-normalised patch features."""

    patch_size: int
    version: int

    def embed(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One (H/patch)×(W/patch)×D float32 array per image, each feature of unit L2 norm."""
        ...


def segmenter_class(kind: str) -> type:
    """The segmenter class of ``SegmenterConfig.kind`` (imported only when asked for: SAM's needs torch)."""
    if kind == "sam":
        from loco_ad.stages.segment import SamSegmenter

        return SamSegmenter
    from loco_ad.stages.colour_segment import ColourClusterSegmenter

    return ColourClusterSegmenter


def embedder_class(kind: str) -> type:
    """The embedder class of ``EmbedderConfig.kind`` (imported only when asked for: DINOv2's needs torch)."""
    if kind == "dinov2":
        from loco_ad.stages.embed import Dinov2Embedder

        return Dinov2Embedder
    from loco_ad.stages.handcrafted import HandcraftedEmbedder

    return HandcraftedEmbedder
