"""Alignment: give the segments of an image the class ids of the canonical reference's segments.

The canonical reference image defines the classes: class id = its segment id
(1..n), background 0, ``n_classes = n + 1``. Every other image gets labels by
alignment to it, with one of two strategies:

- ``"propagation"`` (default): the reference's per-patch class ids are
  propagated to the image's patches by feature affinity (top-k softmax over
  cosine similarities, as in VOS label propagation), upsampled, and each
  segment of the image takes the class with the largest summed probability
  over its pixels (``propagate_labels`` + ``snap_to_segments``).
- ``"hungarian"`` (ablations): segment descriptors (mean patch feature, mean
  CIELAB colour, area share, centroid) matched one-to-one to the reference
  segments by ``scipy.optimize.linear_sum_assignment`` (``align_hungarian``).

Their knobs are ``loco_ad.config.AlignmentConfig``. Torch is imported only
when propagation runs.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from loco_ad.analysis import ImageAnalysis
from loco_ad.config import AlignmentConfig, HungarianConfig
from loco_ad.errors import ConfigError


def reference_labels(segment_map: np.ndarray) -> np.ndarray:
    """Labels of the canonical reference: its segment ids are the class ids.

    Arguments:
      segment_map: H×W partition of the reference (0 = background, 1..n segments).
    Returns:
      H×W int32 labels, equal to ``segment_map``; ``n_classes`` is ``labels.max() + 1``.
    """
    return np.asarray(segment_map, dtype=np.int32).copy()


def patch_grid_labels(labels: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Majority class of the pixels of each patch.

    Ties go to the smallest class id.

    Arguments:
      labels: H×W int class ids (non-negative).
      grid: (h, w) patches; H and W must be multiples of h and w.
    Returns:
      h×w int32 class id per patch.
    """
    height, width = labels.shape
    h, w = grid
    if height % h or width % w:
        raise ValueError(f"labels of size {height}x{width} do not tile into a {h}x{w} patch grid")
    n_classes = int(labels.max()) + 1
    blocks = labels.reshape(h, height // h, w, width // w).transpose(0, 2, 1, 3).reshape(h * w, -1)
    patch_index = np.repeat(np.arange(h * w), blocks.shape[1])
    counts = np.bincount(patch_index * n_classes + blocks.ravel(), minlength=h * w * n_classes)
    return counts.reshape(h, w, n_classes).argmax(axis=2).astype(np.int32)


def propagate_labels(
    ref_patches: np.ndarray,
    ref_patch_labels: np.ndarray,
    n_classes: int,
    patches: np.ndarray,
    top_k: int = 5,
    temperature: float = 0.05,
) -> np.ndarray:
    """Class probabilities of the patches of an image, propagated from the reference's patches.

    As in VOS label propagation (e.g. DINO's video segmentation evaluation):
    each patch keeps its ``top_k`` most cosine-similar reference patches,
    weights them by a softmax of similarity / ``temperature``, and sums the
    weights per reference class. There is no spatial restriction: the object
    may move between the two images.

    Arguments:
      ref_patches: h'×w'×D L2-normalised reference patch features.
      ref_patch_labels: h'×w' int class id per reference patch, in [0, n_classes).
      n_classes: number of class ids including background.
      patches: h×w×D L2-normalised patch features of the image.
      top_k: neighbours kept per patch; capped at the number of reference patches.
      temperature: softmax temperature over cosine similarities (smaller = sharper).
    Returns:
      h×w×n_classes float32 class probabilities (each patch sums to 1).
    """
    import torch

    if top_k < 1 or temperature <= 0:
        raise ConfigError(f"propagation needs top_k >= 1 and temperature > 0, got top_k={top_k}, temperature={temperature}")
    if ref_patch_labels.shape != ref_patches.shape[:2] or ref_patches.shape[2] != patches.shape[2]:
        raise ValueError(
            f"reference patches {ref_patches.shape}, reference labels {ref_patch_labels.shape} "
            f"and patches {patches.shape} do not fit together"
        )
    if ref_patch_labels.min() < 0 or ref_patch_labels.max() >= n_classes:
        raise ValueError(f"reference patch labels must lie in [0, {n_classes})")
    h, w, dim = patches.shape
    reference = torch.from_numpy(np.ascontiguousarray(ref_patches, dtype=np.float32).reshape(-1, dim))
    queries = torch.from_numpy(np.ascontiguousarray(patches, dtype=np.float32).reshape(-1, dim))
    ref_labels = torch.from_numpy(ref_patch_labels.reshape(-1).astype(np.int64))
    similarity = queries @ reference.T
    values, neighbours = similarity.topk(min(top_k, reference.shape[0]), dim=1)
    weights = torch.softmax(values / temperature, dim=1)
    probabilities = torch.zeros(queries.shape[0], n_classes).scatter_add_(1, ref_labels[neighbours], weights)
    return probabilities.reshape(h, w, n_classes).numpy()


def snap_to_segments(probabilities: np.ndarray, segment_map: np.ndarray) -> np.ndarray:
    """Labels of an image: each segment takes its majority class of the propagated probabilities.

    The probabilities are upsampled bilinearly to H×W; each segment takes the
    class with the largest probability summed over its pixels (ties: smallest
    id). A segment whose best class is background (0) becomes background: the
    reference says it looks like background, so it is not part of the object.
    Pixels outside any segment (``segment_map`` 0) are background.

    Arguments:
      probabilities: h×w×n_classes class probabilities (``propagate_labels``).
      segment_map: H×W int partition of the image (0 = no segment, 1..n segments).
    Returns:
      H×W int32 class ids.
    """
    import torch

    height, width = segment_map.shape
    n_classes = probabilities.shape[2]
    grid = torch.from_numpy(np.ascontiguousarray(probabilities.transpose(2, 0, 1), dtype=np.float32))
    upsampled = torch.nn.functional.interpolate(grid[None], size=(height, width), mode="bilinear", align_corners=False)
    segments = torch.from_numpy(segment_map.reshape(-1).astype(np.int64))
    sums = torch.zeros(n_classes, int(segment_map.max()) + 1).index_add_(1, segments, upsampled.reshape(n_classes, -1))
    best = sums.argmax(dim=0).numpy().astype(np.int32)
    best[0] = 0
    return best[segment_map]


class _Descriptors(NamedTuple):
    """Per-segment descriptors, one row per segment id in ``ids``."""

    ids: np.ndarray  # (n,) segment ids
    features: np.ndarray  # n×D unit-norm mean patch features
    colours: np.ndarray  # n×3 mean CIELAB
    areas: np.ndarray  # (n,) share of the image
    centroids: np.ndarray  # n×2 (y/H, x/W)


def _describe(segment_map: np.ndarray, patches: np.ndarray, lab: np.ndarray) -> _Descriptors:
    """Descriptors of the non-zero segments of ``segment_map`` (patch grid must tile the image)."""
    height, width = segment_map.shape
    h, w, dim = patches.shape
    ids = np.unique(segment_map)
    ids = ids[ids > 0]
    # pixel count of every (segment, patch) pair -> mean patch feature weighted by overlap
    patch_of_pixel = (np.arange(height)[:, None] // (height // h)) * w + np.arange(width)[None, :] // (width // w)
    overlap = np.bincount(
        (segment_map * (h * w) + patch_of_pixel).ravel(), minlength=(int(segment_map.max()) + 1) * h * w
    ).reshape(-1, h * w)[ids]
    features = overlap.astype(np.float32) @ patches.reshape(-1, dim)
    features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    colours = np.stack([ndimage.mean(lab[..., c], segment_map, ids) for c in range(3)], axis=1).reshape(-1, 3)
    areas = overlap.sum(axis=1) / (height * width)
    centroids = np.asarray(ndimage.center_of_mass(np.ones_like(segment_map), segment_map, ids)).reshape(-1, 2)
    return _Descriptors(ids, features, colours, areas, centroids / [height, width])


def _matching_cost(test: _Descriptors, reference: _Descriptors, weights: HungarianConfig) -> np.ndarray:
    """n_test × n_ref cost matrix: the weighted sum of the terms of ``HungarianConfig``.

    Each term lies roughly in [0, 1] (feature in [0, 2]): 1 − cosine similarity of
    the mean patch features; Euclidean distance of the mean CIELAB colours / 100;
    |difference of the area shares| / the larger share; Euclidean distance of the
    centroids (y/H, x/W).
    """
    feature = 1.0 - test.features @ reference.features.T
    colour = np.linalg.norm(test.colours[:, None] - reference.colours[None], axis=2) / 100.0
    area = np.abs(test.areas[:, None] - reference.areas[None]) / np.maximum(test.areas[:, None], reference.areas[None])
    centroid = np.linalg.norm(test.centroids[:, None] - reference.centroids[None], axis=2)
    return weights.feature * feature + weights.colour * colour + weights.area * area + weights.centroid * centroid


def align_hungarian(
    reference: ImageAnalysis,
    segment_map: np.ndarray,
    patches: np.ndarray,
    lab: np.ndarray,
    weights: HungarianConfig = HungarianConfig(),
) -> np.ndarray:
    """Labels of an image by one-to-one matching of segment descriptors to the reference's classes.

    Every class present in ``reference.labels`` and every segment of the image
    gets a descriptor (mean patch feature, mean CIELAB colour, area share,
    centroid); ``linear_sum_assignment`` matches them at the least total cost
    (see ``_matching_cost``). Segments left unmatched (more segments than
    reference classes) take the class of their cheapest reference class, so a
    duplicated part is labelled as that part twice; classes left unmatched are
    absent (a missing part). A segment is never labelled background; with no
    reference class at all every pixel is background.

    Arguments:
      reference: the analysed reference (its ``labels``, ``patches`` and ``lab`` are read).
      segment_map: H×W int partition of the image (0 = no segment).
      patches: h×w×D L2-normalised patch features of the image (the grid must tile H×W).
      lab: H×W×3 CIELAB of the image.
      weights: multipliers of the cost terms.
    Returns:
      H×W int32 class ids.
    """
    test = _describe(segment_map, patches, lab)
    classes = _describe(reference.labels, reference.patches, reference.lab)
    lookup = np.zeros(int(segment_map.max()) + 1, np.int32)
    if len(test.ids) == 0 or len(classes.ids) == 0:
        return lookup[segment_map]
    cost = _matching_cost(test, classes, weights)
    matched = cost.argmin(axis=1)
    rows, cols = linear_sum_assignment(cost)
    matched[rows] = cols
    lookup[test.ids] = classes.ids[matched]
    return lookup[segment_map]


def align(
    reference: ImageAnalysis,
    segment_map: np.ndarray,
    patches: np.ndarray,
    lab: np.ndarray,
    settings: AlignmentConfig = AlignmentConfig(),
) -> np.ndarray:
    """Labels of an image aligned to the canonical reference.

    Arguments:
      reference: the analysed canonical reference.
      segment_map: H×W int partition of the image (0 = no segment).
      patches: h×w×D L2-normalised patch features of the image.
      lab: H×W×3 CIELAB of the image (used by ``"hungarian"``).
      settings: ``settings.method`` is ``"propagation"`` (``propagate_labels`` +
        ``snap_to_segments``) or ``"hungarian"`` (``align_hungarian``), with their knobs.
    Returns:
      H×W int32 class ids in [0, reference.n_classes).
    """
    if settings.method == "propagation":
        knobs = settings.propagation
        probabilities = propagate_labels(
            reference.patches, reference.patch_labels, reference.n_classes, patches, knobs.top_k, knobs.temperature
        )
        return snap_to_segments(probabilities, segment_map)
    if settings.method == "hungarian":
        return align_hungarian(reference, segment_map, patches, lab, settings.hungarian)
    raise ConfigError(f"alignment {settings.method!r} takes class ids from the segmenter; align() compares segments only")
