"""Pure helpers that turn a set of overlapping masks into one segment partition."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def background_ids(regions: np.ndarray) -> np.ndarray:
    """The background rule for every id of a label image at once: which ids reach two or more of the four borders.

    Arguments:
      regions: H×W non-negative int label image.
    Returns:
      bool array of length ``regions.max() + 1``; entry i is True if id i reaches at least two image borders.
    """
    borders = (regions[0], regions[-1], regions[:, 0], regions[:, -1])
    touched = np.concatenate([np.unique(border) for border in borders])
    return np.bincount(touched, minlength=int(regions.max()) + 1) >= 2


def touches_two_borders(mask: np.ndarray) -> bool:
    """True if ``mask`` reaches at least two of the four image borders (the background rule)."""
    background = background_ids(np.asarray(mask, dtype=np.int64))
    return len(background) > 1 and bool(background[1])


def masks_to_partition(masks: Sequence[np.ndarray], min_area: float) -> np.ndarray:
    """Post-process candidate masks into one label partition.

    Drops background masks (``touches_two_borders``) and masks smaller than
    ``min_area`` (a fraction of the image), paints the rest largest first so that
    a smaller mask lies on top of a larger one, drops masks left smaller than
    ``min_area`` after that, and numbers the survivors 1..n in a deterministic
    order: by area, largest first, ties broken by the first pixel in raster order.

    Arguments:
      masks: boolean H×W masks, any order, may overlap.
      min_area: smallest kept segment as a fraction of H×W.
    Returns:
      H×W int32 partition; 0 = background or no segment.
    """
    if not masks:
        raise ValueError("masks_to_partition needs at least one mask to know the image size")
    height, width = masks[0].shape
    min_pixels = max(1, int(round(min_area * height * width)))
    kept = [m for m in masks if m.sum() >= min_pixels and not touches_two_borders(m)]
    kept.sort(key=lambda m: (-int(m.sum()), int(np.flatnonzero(m)[0])))
    painted = np.zeros((height, width), np.int32)
    for index, mask in enumerate(kept, start=1):
        painted[mask] = index
    return renumber_partition(painted, min_pixels)


def regions_to_partition(regions: np.ndarray, min_area: float) -> np.ndarray:
    """``masks_to_partition`` for disjoint regions given as one label image, without a mask per region.

    Arguments:
      regions: H×W non-negative int label image; each id > 0 is one region (0 is no region).
      min_area: smallest kept segment as a fraction of H×W.
    Returns:
      the H×W int32 partition ``masks_to_partition([regions == i for i in ids], min_area)`` gives.
    """
    background = background_ids(regions)
    background[0] = True
    min_pixels = max(1, int(round(min_area * regions.size)))
    return renumber_partition(np.where(background[regions], 0, regions), min_pixels)


def renumber_partition(partition: np.ndarray, min_pixels: int = 1) -> np.ndarray:
    """Renumber a partition 1..n by area (largest first, ties by first pixel), dropping segments under ``min_pixels``."""
    ids, first, counts = np.unique(partition.ravel(), return_index=True, return_counts=True)
    order = sorted(
        ((int(c), int(f), int(i)) for i, f, c in zip(ids, first, counts) if i != 0 and c >= min_pixels),
        key=lambda t: (-t[0], t[1]),
    )
    lookup = np.zeros(int(partition.max()) + 1, np.int32)
    for new_id, (_, _, old_id) in enumerate(order, start=1):
        lookup[old_id] = new_id
    return lookup[partition]
