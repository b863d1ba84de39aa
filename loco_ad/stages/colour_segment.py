"""Weight-free segmentation: CIELAB colour clusters fitted on the reference images."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from skimage.measure import label
from sklearn.cluster import KMeans
from sklearn.exceptions import NotFittedError
from threadpoolctl import threadpool_limits

from loco_ad.errors import DataError
from loco_ad.stages.cielab import rgb_to_lab
from loco_ad.stages.masks import regions_to_partition


class ColourClusterSegmenter:
    """Cuts an image into connected regions of one reference colour.

    ``fit`` learns up to ``n_colours`` CIELAB colours by k-means on a seeded
    pixel sample of the references, merging near-identical centres.
    ``segment`` gives every pixel the colour of its nearest centre, cleans the
    colour map, cuts it into connected regions of one colour and passes them
    to ``masks.regions_to_partition`` (the same background, small-segment and
    ordering rules as the SAM path). Colours are numbered by lightness and
    come from the references only, so the same part gets the same colour id
    in every image (``colour_map``, ``segment_classes``).

    Cleaning: a median blur of the RGB image before clustering and assignment
    (removes sensor noise, keeps edges sharp), then a majority (mode) filter of
    the colour ids, computed as a box filter of their one-hot planes (removes
    the one-pixel fringes that blurred edges leave between two other colours,
    which would become spurious thin segments). This is chosen over SLIC
    superpixels voting on colours because it is an order of magnitude faster
    (a few ms at 448×224) and needs no per-size tuning of the superpixel count.

    Arguments:
      n_colours: number of k-means clusters, the most colours there can be.
      min_area: segments smaller than this fraction of the image are dropped.
      seed: seed of the pixel sample and of k-means.
      blur: side of the median blur of the image in pixels (odd; 1 disables it).
      majority_size: side of the square window of the majority filter on the
        colour ids in pixels (1 disables it).
      n_samples: number of reference pixels k-means is fitted on.
      lightness_weight: factor on L* in the colour distance; below 1 it makes
        hue and chroma count more than shading, so that a part under uneven
        light stays one colour (dark red juice vs dark glass, say).
      merge_distance: k-means centres closer than this in the weighted CIELAB
        distance become one colour (see ``merge_linkage``), so that a flat colour is
        not split by noise into interleaved clusters when ``n_colours`` is
        larger than the number of colours in the scene.
      merge_linkage: ``"complete"`` (default): a group of centres becomes one
        colour only if every two of them are closer than ``merge_distance``.
        ``"single"`` (the first version) merges chains of close centres, and a
        shading spreads k-means centres into such a chain: on grey products
        the background swallowed the parts (scikit-image's ``coins``: one
        colour, no segment; ``camera``: 1.5 % foreground, 9 % with complete
        linkage). On juice_bottle no two centres are that close, so both give
        the same segments (every score of the 12 (seed, k) runs on the shared
        subset is unchanged).
    """

    reference_dependent = True
    version = 1

    def __init__(
        self,
        n_colours: int = 8,
        min_area: float = 0.001,
        seed: int = 0,
        blur: int = 5,
        majority_size: int = 7,
        n_samples: int = 20_000,
        lightness_weight: float = 0.5,
        merge_distance: float = 8.0,
        merge_linkage: str = "complete",
    ) -> None:
        self.n_colours = n_colours
        self.min_area = min_area
        self.seed = seed
        self.blur = blur
        self.majority_size = majority_size
        self.n_samples = n_samples
        self.lightness_weight = lightness_weight
        self.merge_distance = merge_distance
        self.merge_linkage = merge_linkage
        self.kmeans_: KMeans | None = None
        self.centre_colours_: np.ndarray | None = None
        self.colours_: np.ndarray | None = None

    def fit(self, references: Sequence[np.ndarray]) -> "ColourClusterSegmenter":
        """Learn the colours from the reference images.

        Arguments:
          references: H×W×3 uint8 RGB images (sizes may differ).
        Returns:
          self, with ``kmeans_`` (k-means on weighted CIELAB pixels),
          ``centre_colours_`` (the colour id of each k-means centre) and
          ``colours_`` (n×3 mean CIELAB of each colour, n ≤ n_colours, darkest first).
        """
        if not references:
            raise DataError("ColourClusterSegmenter.fit needs at least one reference image")
        pixels = np.concatenate([self._lab(rgb).reshape(-1, 3) for rgb in references])
        if len(pixels) > self.n_samples:
            pixels = pixels[np.random.default_rng(self.seed).choice(len(pixels), self.n_samples, replace=False)]
        # k-means sums its float32 centres in per-thread chunks: one OpenMP thread makes the centres, and so every
        # score, the same on any machine and thread count (on the subset's juice_bottle, 1 and 2 threads gave 381 of
        # 1,116 scores different, and run image AUROCs up to 0.0045 apart; tests/test_threads.py)
        with threadpool_limits(limits=1, user_api="openmp"):
            kmeans = KMeans(self.n_colours, n_init=3, random_state=self.seed).fit(pixels)
        centres = kmeans.cluster_centers_
        if len(centres) > 1:
            groups = fcluster(linkage(centres, self.merge_linkage), self.merge_distance, "distance") - 1
        else:
            groups = np.zeros(1, int)
        sizes = np.bincount(kmeans.labels_, minlength=len(centres))
        colours = np.stack(
            [np.average(centres[groups == g], axis=0, weights=sizes[groups == g]) for g in range(groups.max() + 1)]
        ) / self._weights
        order = np.lexsort((colours[:, 2], colours[:, 1], colours[:, 0]))
        self.kmeans_ = kmeans
        self.centre_colours_ = np.argsort(order)[groups].astype(np.int32)
        self.colours_ = colours[order].astype(np.float32)
        return self

    def colour_map(self, rgb: np.ndarray) -> np.ndarray:
        """The cleaned colour id (index into ``colours_``) of every pixel.

        Arguments:
          rgb: H×W×3 uint8 RGB image.
        Returns:
          H×W int32 colour ids.
        """
        if self.kmeans_ is None:
            raise NotFittedError("ColourClusterSegmenter is not fitted: call fit(references) before segment()")
        lab = self._lab(rgb)
        nearest = self.kmeans_.predict(lab.reshape(-1, 3)).reshape(lab.shape[:2])
        ids = self.centre_colours_[nearest]
        if self.majority_size > 1:
            onehot = (ids[..., None] == np.arange(len(self.colours_))).astype(np.uint8)
            window = (self.majority_size, self.majority_size)
            votes = cv2.boxFilter(onehot, cv2.CV_16U, window, normalize=False).reshape(onehot.shape)
            ids = votes.argmax(-1)
        return ids.astype(np.int32)

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        """Cut an image into segments.

        Arguments:
          rgb: H×W×3 uint8 RGB image.
        Returns:
          H×W int32 partition: 0 = background or no segment, 1..n segments
          (see ``masks.regions_to_partition``).
        """
        return self._partition(self.colour_map(rgb))

    def segment_classes(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Segments and per-pixel class ids from one colour assignment.

        Every segment is a connected region of one colour, so its class is that
        colour's id + 1; pixels outside the segments are class 0 (background).

        Arguments:
          rgb: H×W×3 uint8 RGB image.
        Returns:
          (partition as from ``segment``, H×W int32 class ids in [0, n_classes)).
        """
        ids = self.colour_map(rgb)
        partition = self._partition(ids)
        return partition, np.where(partition > 0, ids + 1, 0).astype(np.int32)

    def _partition(self, ids: np.ndarray) -> np.ndarray:
        """Connected regions of one colour id, through ``masks.regions_to_partition``."""
        return regions_to_partition(label(ids, background=-1, connectivity=1), self.min_area)

    @property
    def _weights(self) -> np.ndarray:
        """Factors of the colour distance on (L*, a*, b*)."""
        return np.array([self.lightness_weight, 1.0, 1.0], np.float32)

    def _lab(self, rgb: np.ndarray) -> np.ndarray:
        """Weighted CIELAB (float32, L* times ``lightness_weight``) of the median-blurred image."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        smooth = cv2.medianBlur(rgb, self.blur) if self.blur > 1 else rgb
        return rgb_to_lab(smooth) * self._weights

    @property
    def n_classes(self) -> int:
        """Number of class ids ``segment_classes`` can give, background (0) included."""
        if self.kmeans_ is None:
            raise NotFittedError("ColourClusterSegmenter is not fitted: call fit(references) first")
        return len(self.colours_) + 1
