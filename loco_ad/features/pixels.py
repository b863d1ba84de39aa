"""The pixel baseline: distance of a small thumbnail of the image to the nearest reference thumbnail.

The floor every other scorer must beat: no segments, no classes, no patch
features, only the image (``ImageAnalysis.rgb``, so after the pipeline's
registration when the preset registers) shrunk to ``size``×``size`` pixels
(area averaging), grey or colour, optionally standardised per image (minus its
mean, divided by its standard deviation, over all its values), which removes
a global change of exposure and contrast. The image score is the root mean
square difference to the nearest reference thumbnail; the map is the absolute
per-pixel difference to that thumbnail (mean over the channels), upsampled
bilinearly to the H×W of ``rgb``.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from loco_ad.analysis import ImageAnalysis, Score
from loco_ad.errors import ConfigError, DataError


class PixelScorer:
    """Nearest reference thumbnail (the pixel baseline).

    Its map, one value per thumbnail pixel, is too coarse to localise beside the
    patch scorers' (``localises``): in an ensemble with them it adds to the image
    score only (on the shared juice_bottle subset, k = 8, summing it into the map
    lowered sPRO from 0.591 to 0.538).

    Arguments:
      size: side in pixels of the square thumbnail.
      colour: compare the three RGB channels (else the grey image).
      standardise: give each thumbnail mean 0 and standard deviation 1 before comparing.
    """

    name = "pixel"
    localises = False

    def __init__(self, size: int = 32, colour: bool = True, standardise: bool = False) -> None:
        if size < 1:
            raise ConfigError(f"the pixel scorer's size must be >= 1, got {size}")
        self.size = size
        self.colour = colour
        self.standardise = standardise

    def thumbnail(self, image: ImageAnalysis) -> np.ndarray:
        """The image as a size×size×C float32 thumbnail (C = 3 in colour, else 1), values in [0, 1] or standardised."""
        rgb = image.rgb if self.colour else cv2.cvtColor(image.rgb, cv2.COLOR_RGB2GRAY)[..., None]
        small = cv2.resize(rgb.astype(np.float32) / 255.0, (self.size, self.size), interpolation=cv2.INTER_AREA)
        small = small.reshape(self.size, self.size, -1)
        if self.standardise:
            small = (small - small.mean()) / max(float(small.std()), 1e-6)
        return small

    def fit(self, references: Sequence[ImageAnalysis]) -> "PixelScorer":
        """Keep the thumbnail of every reference; returns self."""
        if not references:
            raise DataError("a scorer needs at least one reference image; give one or more good images")
        self.references_ = np.stack([self.thumbnail(r) for r in references])
        return self

    def score(self, image: ImageAnalysis) -> Score:
        """RMS difference to the nearest reference thumbnail, and the upsampled map of the per-pixel difference."""
        differences = self.references_ - self.thumbnail(image)
        rms = np.sqrt((differences**2).mean(axis=(1, 2, 3)))
        nearest = int(rms.argmin())
        grid = np.abs(differences[nearest]).mean(axis=-1)
        height, width = image.rgb.shape[:2]
        return Score(float(rms[nearest]), cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR))
