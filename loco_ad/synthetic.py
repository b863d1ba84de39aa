"""Synthetic defects made from a good image: what a setting is judged on when no defective image is at hand.

Used by ``loco_ad.adapt`` (settings the references decide, by leave-one-out
over the references with defects made from the left-out one) and by
``experiments/pose_sensitivity.py``.
"""

from __future__ import annotations

import cv2
import numpy as np

DEFECTS = ("missing", "recoloured", "copied", "scratch")


def with_defect(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A copy of H×W×3 uint8 ``image`` with one defect of ``kind`` (``DEFECTS``) in a random square of a sixth of its height.

    ``missing``: the square blurred away (a part missing); ``recoloured``: its hue
    turned by 120° (a wrong colour); ``copied``: it is copied elsewhere (a part
    doubled or misplaced); ``scratch``: a dark line across it.
    """
    height, width = image.shape[:2]
    side = height // 6
    y, x = int(rng.integers(height // 5, 3 * height // 5)), int(rng.integers(width // 5, 3 * width // 5))
    result = image.copy()
    if kind == "missing":
        result[y : y + side, x : x + side] = cv2.blur(image, (61, 61))[y : y + side, x : x + side]
    elif kind == "recoloured":
        hsv = cv2.cvtColor(np.ascontiguousarray(image[y : y + side, x : x + side]), cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0].astype(int) + 60) % 180
        result[y : y + side, x : x + side] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    elif kind == "copied":
        y2, x2 = int(rng.integers(0, height - side)), int(rng.integers(0, width - side))
        result[y2 : y2 + side, x2 : x2 + side] = image[y : y + side, x : x + side]
    else:
        cv2.line(result, (x, y), (x + side, y + side // 2), (20, 20, 20), 3)
    return result
