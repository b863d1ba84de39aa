"""Build ``ImageAnalysis`` objects from synthetic scenes, for tests of scorers and weights.

The analysis uses the scene's TRUE classes as aligned labels and simple
deterministic patch features computed from the pixels (no model), so a test can
check a scorer against ground truth without any segmenter, aligner or embedder.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.color import rgb2lab

from loco_ad.analysis import ImageAnalysis
from loco_ad.stages.align import patch_grid_labels
from tests.scenes import Scene

N_CLASSES = 5  # background, tray, red disc, blue square, yellow disc


def patch_features(rgb: np.ndarray, patch_size: int) -> np.ndarray:
    """h×w×7 L2-normalised hand-made patch features of an RGB image.

    Per patch: mean L, a, b (scaled to about [-1, 1]), standard deviation of L,
    mean Sobel gradient magnitude of L, and a constant 0.5 so that the
    normalisation keeps the brightness of the patch.
    """
    lab = rgb2lab(rgb).astype(np.float32) / 100.0
    lightness = lab[..., 0]
    gradient = np.hypot(ndimage.sobel(lightness, axis=0), ndimage.sobel(lightness, axis=1))
    channels = np.dstack([lab, lightness, gradient])
    height, width = lightness.shape
    h, w = height // patch_size, width // patch_size
    blocks = channels[: h * patch_size, : w * patch_size].reshape(h, patch_size, w, patch_size, 5)
    means = blocks.mean(axis=(1, 3))
    features = np.dstack([means[..., :3], blocks[..., 3].std(axis=(1, 3)), means[..., 4], np.full((h, w), 0.5, np.float32)])
    return (features / np.linalg.norm(features, axis=-1, keepdims=True)).astype(np.float32)


def analysis_from_scene(scene: Scene, patch_size: int = 8, labels: np.ndarray | None = None) -> ImageAnalysis:
    """An ``ImageAnalysis`` of a synthetic scene with its true classes as labels.

    Arguments:
      scene: the scene from ``tests.scenes.make_scene``.
      patch_size: side of a feature patch in pixels.
      labels: H×W class ids to use instead of ``scene.class_map`` (to build
        degenerate cases such as no segment found).
    Returns:
      the analysis, with ``n_classes`` = 5.
    """
    labels = (scene.class_map if labels is None else labels).astype(np.int32)
    patches = patch_features(scene.rgb, patch_size)
    return ImageAnalysis(
        rgb=scene.rgb,
        lab=rgb2lab(scene.rgb).astype(np.float32),
        segment_map=scene.segment_map.astype(np.int32),
        labels=labels,
        patches=patches,
        patch_labels=patch_grid_labels(labels, patches.shape[:2]),
        n_classes=N_CLASSES,
    )
