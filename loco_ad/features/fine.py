"""The fine-structure scorer: small contrast-normalised grey patches, matched anywhere in the references.

The patch scorers compare descriptors of 14-pixel cells that carry their
position, colour and coarse texture: they see a part missing or moved, but a
cut or a hole a few pixels wide barely changes a cell, and on a product whose
pattern turns between photos (a tyre's tread) the position block matches the
wrong reference content. This scorer looks at the raw pixels instead: every
``patch``×``patch`` window of the grey working image, taken every ``stride``
pixels, minus its mean and divided by its norm plus ``contrast_floor`` (grey
levels: windows flatter than this, sensor noise on a dark background, shrink
towards 0 instead of being blown up), is matched to its nearest window of any
reference at any place (faiss, L2). The map is the grid of those distances,
smoothed by a Gaussian of ``smoothing`` grid cells and upsampled to the working
resolution; the image score is the map's maximum.

Optionally (``subtract_expected``), with three or more references, the grid first loses
what the good images score at each place: the mean of the references' own
grids, each reference matched against the others (leave-one-out). Not with
two: the leave-one-out fits that weigh the scorer (``loco_ad.weights``) would
then have one reference and no such mean, and score on another scale than the
test images. A highlight or an edge that shifts between good photos scores
high in every image and is taken out; a cut where good images agree stands out
(figures: ``docs/results.md``, "Fine structure").

With many references the bank keeps at most ``max_bank`` windows, drawn at
random (seeded) from all of them, so a search costs the same at k = 8 as at
k = 2.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from loco_ad.analysis import ImageAnalysis, Score
from loco_ad.errors import ConfigError, DataError


class FineStructureScorer:
    """Nearest reference window of contrast-normalised grey pixels, at any place.

    Arguments:
      patch: side in pixels of a window.
      stride: pixels between neighbouring windows.
      contrast_floor: grey levels added to a window's norm before dividing by it.
      smoothing: standard deviation, in grid cells, of the Gaussian on the distance grid (0: none).
      max_bank: most reference windows kept (a seeded random draw when there are more).
      seed: seed of that draw.
      subtract_expected: with three or more references, subtract the mean of their
        leave-one-out grids from an image's grid (False: the plain grid).
    """

    name = "fine"

    def __init__(
        self,
        patch: int = 8,
        stride: int = 4,
        contrast_floor: float = 20.0,
        smoothing: float = 2.0,
        max_bank: int = 12000,
        seed: int = 0,
        subtract_expected: bool = False,
    ) -> None:
        if patch < 2 or stride < 1 or contrast_floor <= 0 or smoothing < 0 or max_bank < 1:
            raise ConfigError(
                "the fine scorer needs patch >= 2, stride >= 1, contrast_floor > 0, smoothing >= 0 and max_bank >= 1"
            )
        self.patch = patch
        self.stride = stride
        self.contrast_floor = contrast_floor
        self.smoothing = smoothing
        self.max_bank = max_bank
        self.seed = seed
        self.subtract_expected = subtract_expected

    def windows(self, image: ImageAnalysis) -> tuple[np.ndarray, tuple[int, int]]:
        """The image's normalised windows (N×patch², float32) and the shape of their grid."""
        grey = cv2.cvtColor(image.rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
        if min(grey.shape) < self.patch:
            raise DataError(f"the fine scorer's {self.patch}-pixel windows do not fit a {grey.shape[1]}×{grey.shape[0]} image")
        view = np.lib.stride_tricks.sliding_window_view(grey, (self.patch, self.patch))[:: self.stride, :: self.stride]
        shape = view.shape[:2]
        windows = view.reshape(shape[0] * shape[1], -1)
        windows = windows - windows.mean(axis=1, keepdims=True)
        windows /= np.linalg.norm(windows, axis=1, keepdims=True) + self.contrast_floor
        return np.ascontiguousarray(windows, dtype=np.float32), shape

    def fit(self, references: Sequence[ImageAnalysis]) -> "FineStructureScorer":
        """Keep the windows of every reference (at most ``max_bank``) in a faiss index, and the expected grid; returns self."""
        if not references:
            raise DataError("a scorer needs at least one reference image; give one or more good images")
        windows = [self.windows(r) for r in references]
        self.index_ = self._index([w for w, _ in windows])
        self.expected_ = None
        if self.subtract_expected and len(references) >= 3:
            grids = [
                self._grid(self._index([w for j, (w, _) in enumerate(windows) if j != i]), *windows[i]) for i in range(len(windows))
            ]
            self.expected_ = np.mean([_resized(g, grids[0].shape) for g in grids], axis=0)
        return self

    def score(self, image: ImageAnalysis) -> Score:
        """The largest smoothed nearest-window distance (less the expected grid), and that map at the working resolution."""
        grid = self._grid(self.index_, *self.windows(image))
        if self.expected_ is not None:
            grid = grid - _resized(self.expected_, grid.shape)
        return Score(float(grid.max()), self._upsample(grid, image.rgb.shape[:2]))

    def _index(self, windows: Sequence[np.ndarray]):
        """A faiss index of the given windows, at most ``max_bank`` of them (a seeded draw)."""
        return drawn_l2_index(windows, self.max_bank, self.seed)[1]

    def _grid(self, index, windows: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """The smoothed grid of each window's distance to its nearest window in ``index``."""
        squared, _ = index.search(windows, 1)
        grid = np.sqrt(np.maximum(squared[:, 0], 0.0)).reshape(shape)
        if self.smoothing > 0:
            grid = cv2.GaussianBlur(grid, (0, 0), self.smoothing)
        return grid

    def _upsample(self, grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The h×w grid as an H×W map: each cell's value at the centre of its window, the edges repeated."""
        rows, columns = grid.shape
        cells = cv2.resize(grid, (columns * self.stride, rows * self.stride), interpolation=cv2.INTER_LINEAR)
        offset = (self.patch - self.stride) // 2
        height, width = size
        padded = cv2.copyMakeBorder(
            cells, offset, max(0, height - offset - cells.shape[0]), offset, max(0, width - offset - cells.shape[1]), cv2.BORDER_REPLICATE
        )
        return np.ascontiguousarray(padded[:height, :width])


def drawn_l2_index(vectors: Sequence[np.ndarray], max_bank: int, seed: int) -> tuple[np.ndarray, object, np.ndarray]:
    """The rows of ``vectors`` concatenated, at most ``max_bank`` of them (a seeded draw, in order), a faiss L2 index
    of them, and which rows of the concatenation they are."""
    bank = np.concatenate(vectors)
    rows = np.arange(len(bank))
    if len(bank) > max_bank:
        rows = np.sort(np.random.default_rng(seed).choice(len(bank), max_bank, replace=False))
        bank = bank[rows]
    return bank, l2_index(bank), rows


def l2_index(vectors: np.ndarray):
    """A faiss exact L2 index of the rows of ``vectors``."""
    import faiss  # imported here: the rest of the package can load without it

    index = faiss.IndexFlatL2(vectors.shape[1])
    index.add(vectors)
    return index


def _resized(grid: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``grid`` at ``shape`` (rows, columns), bilinear; itself when it already has it."""
    if grid.shape == shape:
        return grid
    return cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
