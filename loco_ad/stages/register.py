"""Registration: every image moved onto the first reference before any model sees it.

A product placed by hand or by a loose fixture stands a little off, or a
little turned, from one image to the next. The patch descriptors compare
places (the offline preset's position block, the class locations), so an
unmoved good image of a moved part looks like a misplaced one. The
``Registration`` estimates, per image, the shift (``translation``) or shift and
turn (``euclidean``) that best lays its grey levels onto the first reference's
(OpenCV's ECC maximisation, ``cv2.findTransformECC``, on small blurred copies),
and warps the image by it; borders uncovered by the warp repeat the edge pixels.

An estimate that fails to converge, that matches the reference no better than
the unmoved image does (ECC's correlation coefficient), or that moves the image
by more than ``max_shift`` of its side or turns it by more than ``max_turn``
degrees, is taken for a failure and the image is left as it is. A shift below a tenth of a
pixel is no shift either, so a product that does not move keeps its images
unchanged (and their cached model outputs valid from one fit to the next).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

MOTIONS = {"translation": cv2.MOTION_TRANSLATION, "euclidean": cv2.MOTION_EUCLIDEAN}
NO_SHIFT = 0.1  # pixels at working resolution
NO_TURN = 0.01  # degrees


class Registration:
    """Estimates and applies the rigid motion from the first reference's frame to an image's.

    Arguments:
      motion: ``"translation"`` or ``"euclidean"`` (translation and rotation).
      side: long side in pixels of the grey copies the motion is estimated on.
      max_shift: largest accepted shift, as a fraction of the image's long side.
      max_turn: largest accepted rotation in degrees.
    """

    def __init__(self, motion: str = "euclidean", side: int = 160, max_shift: float = 0.25, max_turn: float = 30.0) -> None:
        if motion not in MOTIONS:
            raise ValueError(f"unknown registration motion {motion!r}; choose from {', '.join(MOTIONS)}")
        self.motion = motion
        self.side = side
        self.max_shift = max_shift
        self.max_turn = max_turn

    def fit(self, template: np.ndarray) -> "Registration":
        """Remember the H×W×3 uint8 image that every other is laid onto; returns self."""
        self.shape_ = template.shape[:2]
        self.template_ = self._grey(template)
        return self

    def _grey(self, rgb: np.ndarray) -> np.ndarray:
        height, width = rgb.shape[:2]
        scale = self.side / max(height, width)
        size = (max(8, round(width * scale)), max(8, round(height * scale)))
        grey = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(grey.astype(np.float32), (0, 0), 1.0)

    def transform(self, rgb: np.ndarray) -> np.ndarray | None:
        """The 2×3 affine matrix taking a point of the reference's frame to ``rgb``'s, in ``rgb``'s pixels.

        Returns None when there is nothing to do: an image of another size than
        the reference, no shift or turn to speak of, or a failed estimate.
        """
        if rgb.shape[:2] != self.shape_:
            return None
        grey = self._grey(rgb)
        matrix = np.eye(2, 3, dtype=np.float32)
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)
        try:
            _, matrix = cv2.findTransformECC(self.template_, grey, matrix, MOTIONS[self.motion], criteria, None, 1)
            better = cv2.computeECC(self.template_, warp(grey, matrix)) > cv2.computeECC(self.template_, grey)
        except cv2.error:  # did not converge, or a flat image
            return None
        if not better:
            return None
        scale = max(self.shape_) / max(self.template_.shape)
        matrix[:, 2] *= scale
        shift = float(np.hypot(*matrix[:, 2]))
        turn = math.degrees(math.atan2(float(matrix[1, 0]), float(matrix[0, 0])))
        if not np.isfinite(matrix).all() or shift > self.max_shift * max(self.shape_) or abs(turn) > self.max_turn:
            return None
        if shift < NO_SHIFT and abs(turn) < NO_TURN:
            return None
        return matrix

    def register(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``rgb`` moved into the reference's frame, and its matrix (``rgb`` itself and None when ``transform`` gives none)."""
        matrix = self.transform(rgb)
        return (rgb, None) if matrix is None else (warp(rgb, matrix), matrix)


def warp(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``image`` (H×W or H×W×C) moved into the reference's frame by the matrix of ``Registration.transform``."""
    height, width = image.shape[:2]
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def covered(shape: tuple[int, int], matrix: np.ndarray) -> np.ndarray:
    """H×W bool of ``shape``: the pixels that ``warp`` by ``matrix`` takes from the image (False: the filled border)."""
    height, width = shape
    ones = np.ones((height, width), np.uint8)
    inside = cv2.warpAffine(ones, matrix, (width, height), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
    return inside.astype(bool)


def unwarp(image: np.ndarray, matrix: np.ndarray, nearest: bool = False) -> np.ndarray:
    """The inverse of ``warp``: an array in the reference's frame (a map, labels) put back in the image's own.

    Arguments:
      image: H×W or H×W×C array in the reference's frame.
      matrix: the image's matrix from ``Registration.transform``.
      nearest: nearest-neighbour interpolation (for integer labels) instead of bilinear.
    """
    height, width = image.shape[:2]
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    values = image.astype(np.float32) if image.dtype.kind in "iub" else image  # OpenCV warps no int32
    back = cv2.warpAffine(values, matrix, (width, height), flags=interpolation, borderMode=cv2.BORDER_REPLICATE)
    return back.astype(image.dtype)
