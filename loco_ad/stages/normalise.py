"""Light normalisation: every image brought to the references' light before registration, segments and descriptors.

Good images of one product differ in what the lamp does: exposure, white
balance, a gradient of light across the field. The descriptors and the colour
clusters read absolute CIELAB values, so a good image under other light looks
like a defect everywhere, and a real defect drowns in that. A ``Normaliser``
learns the references' light in ``fit`` and maps every image onto it. It
compares the image with the references' mean image on small blurred copies
(``side`` pixels long), pixel by pixel, as the logarithm of the ratio of each
RGB channel, and takes from those ratios only what light can do:

- ``gain``: one factor per channel, the median ratio (exposure and colour cast,
  the von Kries correction relative to the references rather than to grey);
- ``flat_field``: per channel a plane a + b·x + c·y of the log ratio, fitted
  robustly (Huber loss, ``sklearn.linear_model.HuberRegressor``): a gradient
  of light across the field as well.

The median and the robust fit let a part that is missing, added or recoloured
(a minority of the pixels) stand out instead of being corrected away: a global
mean would shift every colour towards the references' when one juice is of
another colour, and a per-pixel ratio of blurred images would flatten the part
itself. Factors are clipped to [1/``max_gain``, ``max_gain``]. ``method="none"``
is the release before this stage (``loco_ad.build.build_normaliser`` builds none).

The estimate reads content as light too: a good juice_bottle image under the
references' own lamp reads as a few per cent of gain per channel, and its plane
as tens of per cent at a corner, because its bottle, label and fill differ from
the references'. With ``tolerance`` > 0 an image whose largest
factor stays within e^±tolerance is left exactly as it is: only light that
clearly changed is corrected, and a product photographed under one lamp keeps
the images the detector was tuned on.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
from sklearn.linear_model import HuberRegressor

METHODS = ("gain", "flat_field")


class Normaliser:
    """Maps an image's light onto the references' (see the module docstring).

    Arguments:
      method: ``"gain"`` or ``"flat_field"``.
      side: long side in pixels of the blurred copies the light is compared on.
      max_gain: largest factor a channel (or pixel) is multiplied or divided by.
      tolerance: largest |log factor| left uncorrected (0: every image is corrected).
    """

    version = 1

    def __init__(self, method: str = "gain", side: int = 32, max_gain: float = 4.0, tolerance: float = 0.0) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown normalisation {method!r}; choose from {', '.join(METHODS)}")
        self.method = method
        self.side = side
        self.max_gain = max_gain
        self.tolerance = tolerance

    def fit(self, references: Sequence[np.ndarray]) -> "Normaliser":
        """Learn the references' light from H×W×3 uint8 RGB images (resized to the first's size); returns self."""
        height, width = references[0].shape[:2]
        scale = self.side / max(height, width)
        self.size_ = (max(2, round(width * scale)), max(2, round(height * scale)))
        self.log_light_ = np.mean([self._log_light(rgb) for rgb in references], axis=0)
        return self

    def _log_light(self, rgb: np.ndarray) -> np.ndarray:
        small = cv2.resize(rgb.astype(np.float32), self.size_, interpolation=cv2.INTER_AREA)
        return np.log(cv2.GaussianBlur(small, (0, 0), 1.0) + 1.0)

    def gain(self, rgb: np.ndarray) -> np.ndarray:
        """The factor each pixel's channels are multiplied by: 1×1×3 (``gain``) or H×W×3 (``flat_field``); all 1 within ``tolerance``."""
        ratio = self.log_light_ - self._log_light(rgb)  # h×w×3
        if self.method == "gain":
            log_gain = np.median(ratio.reshape(-1, 3), axis=0)[None, None]
        else:
            h, w = ratio.shape[:2]
            grid = np.stack(np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij"), -1).reshape(-1, 2)
            planes = [HuberRegressor(alpha=0.0).fit(grid, ratio[..., c].ravel()) for c in range(3)]
            height, width = rgb.shape[:2]
            yy, xx = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
            log_gain = np.stack([p.intercept_ + p.coef_[0] * yy + p.coef_[1] * xx for p in planes], -1)
        log_gain = np.clip(log_gain, -np.log(self.max_gain), np.log(self.max_gain))
        if np.abs(log_gain).max() <= self.tolerance:
            log_gain = np.zeros_like(log_gain)
        return np.exp(log_gain).astype(np.float32)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """``rgb`` (H×W×3 uint8) under the references' light, H×W×3 uint8."""
        return np.clip(rgb.astype(np.float32) * self.gain(rgb), 0, 255).round().astype(np.uint8)
