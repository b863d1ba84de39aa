"""rgb_to_lab: OpenCV's conversion agrees with scikit-image's CIELAB."""

from __future__ import annotations

import numpy as np
from skimage.color import rgb2lab

from loco_ad.stages.cielab import rgb_to_lab


def test_matches_scikit_image_within_half_a_unit() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3)).astype(np.uint8)
    rgb[0, :3] = [(255, 255, 255), (0, 0, 0), (255, 0, 0)]
    lab = rgb_to_lab(rgb)
    assert lab.dtype == np.float32 and lab.shape == rgb.shape
    assert np.abs(lab - rgb2lab(rgb)).max() < 0.5
    np.testing.assert_allclose(lab[0, 0], [100, 0, 0], atol=0.5)  # white
    np.testing.assert_allclose(lab[0, 1], [0, 0, 0], atol=0.5)  # black
    assert lab[0, 2, 1] > 70 and lab[0, 2, 2] > 60  # red: strongly positive a* and b* (RGB order, not BGR)
