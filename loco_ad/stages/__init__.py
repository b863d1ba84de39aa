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


class ClassSegmenter(Segmenter, Protocol):
    """A segmenter whose segments carry class ids consistent across images (alignment ``"segmenter"``).

    ``n_classes`` counts the class ids ``segment_classes`` can give, background (0) included.
    """

    n_classes: int

    def segment_classes(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H×W int32 partition as from ``segment``, H×W int32 class ids in [0, n_classes))."""
        ...


class Embedder(Protocol):
    """Computes a grid of L2-normalised patch features."""

    patch_size: int
    version: int

    def embed(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One (H/patch)×(W/patch)×D float32 array per image, each feature of unit L2 norm."""
        ...
