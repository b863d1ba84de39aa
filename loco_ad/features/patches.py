"""Patch scorers: cosine nearest neighbours of test patches in a memory bank of reference patches.

Every scorer here compares each test patch feature with a bank of reference
patch features (faiss ``IndexFlatIP`` on L2-normalised features, i.e. cosine
similarity). A patch's distance is 1 − cosine similarity, averaged over its
``n_neighbours`` nearest reference patches. The image score is the mean of the largest ``top_fraction`` of the
patch distances (at least one patch); the map is the h×w grid of patch
distances upsampled bilinearly to the H×W of ``image.rgb``. With ``gpu=True``
the banks are faiss GPU indexes, which must not be searched from several
threads at once (``loco_ad.core.Detector.uses_gpu``).

``reference_penalty`` (class-agnostic and foreground scorers) relates the parts
of an image to each other. With the design's single pooled bank every test
patch may take its nearest neighbour from a different reference, so an image
whose parts each exist in some good image but never together (orange juice
behind a cherry label) looks good. With a penalty λ > 0 each reference keeps
its own bank and a test patch's distance is the smallest, over the references
r, of its distance to r's patches plus λ·(D_r − min D), where D_r is the
distance between the class compositions of the test image and r (Euclidean
distance of the square roots of the class pixel shares, i.e. √2 × the
Hellinger distance). A patch explained only by a reference of another make-up
than the image's nearest one pays for it; the penalty is 0 for the nearest
reference, so λ = 0 or k = 1 gives the pooled scorer. λ = 0.2 (default) was
chosen by ``experiments/cross_validate.py`` among 0, 0.2 and 0.5 (shared
juice_bottle subset + 80 extra good images, offline preset): held out, the
default ensemble's image AUROC rose from 0.844 to 0.867 at k = 4 and from
0.915 to 0.942 at k = 8 (plain sum), the "juice does not match icon" group
from about 0.68 to 0.82 at k = 4 (``experiments/cross_validation_log.md``).
The penalty relates parts, it does not localise them: the anomaly map keeps
the plain distances (to the nearest reference, no penalty). Penalised maps
lowered the default ensemble's pixel AUROC / sPRO at k = 4 on that subset
from 0.906 / 0.431 to 0.893 / 0.411.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from loco_ad.analysis import ImageAnalysis, Score
from loco_ad.errors import ConfigError, DataError
from loco_ad.features.composition import class_shares


class _PatchBank:
    """A cosine kNN memory bank of L2-normalised patch features.

    Arguments:
      features: N×D reference patch features of unit norm (N ≥ 1).
      n_neighbours: number of nearest reference patches averaged per query.
      gpu: put the index on every GPU faiss sees.
    """

    def __init__(self, features: np.ndarray, n_neighbours: int, gpu: bool = False) -> None:
        import faiss  # imported here: the rest of the package can load without it

        features = np.ascontiguousarray(features, dtype=np.float32)
        index = faiss.IndexFlatIP(features.shape[1])
        if gpu:
            index = faiss.index_cpu_to_all_gpus(index)
        index.add(features)
        self.index = index
        self.n_neighbours = min(n_neighbours, len(features))

    def distances(self, queries: np.ndarray) -> np.ndarray:
        """M float32 distances (1 − cosine, mean over the nearest neighbours, ≥ 0) of M×D query features."""
        similarities, _ = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), self.n_neighbours)
        return np.clip(1.0 - similarities.mean(axis=1), 0.0, None).astype(np.float32)


def _composition(image: ImageAnalysis) -> np.ndarray:
    """Square roots of the image's class pixel shares (classes 1..n_classes−1)."""
    return np.sqrt(class_shares(image, image.n_classes))


class _Bank:
    """The bank of a class-agnostic or foreground scorer: pooled, or one per reference with a penalty.

    With ``penalty`` > 0 and several references, each reference keeps its own
    ``_PatchBank`` (a reference with no feature is skipped) and its class
    composition; otherwise every feature goes into one pooled ``_PatchBank``.

    Arguments:
      per_reference: per reference, the N_r×D features that enter the bank.
      references: the reference analyses (their class compositions).
      n_neighbours: nearest reference patches averaged per query, within one bank.
      penalty: λ, the weight of the composition distance (see the module docstring).
      gpu: put the indexes on the GPU.
    """

    def __init__(
        self, per_reference: Sequence[np.ndarray], references: Sequence[ImageAnalysis], n_neighbours: int, penalty: float, gpu: bool
    ) -> None:
        self.penalty = penalty if len(references) > 1 else 0.0
        if self.penalty > 0:
            kept = [i for i, features in enumerate(per_reference) if len(features)]
            self.banks = [_PatchBank(per_reference[i], n_neighbours, gpu) for i in kept]
            self.compositions = np.stack([_composition(references[i]) for i in kept])
        else:
            self.banks = [_PatchBank(np.concatenate(per_reference), n_neighbours, gpu)]

    def distances(self, queries: np.ndarray, image: ImageAnalysis) -> tuple[np.ndarray, np.ndarray]:
        """Distances of M×D queries of ``image``.

        Returns:
          (penalised, plain): M float32 each; plain is the distance to the nearest
          reference without the penalty (the same array when the bank is pooled).
        """
        if self.penalty == 0:
            distances = self.banks[0].distances(queries)
            return distances, distances
        gap = np.linalg.norm(self.compositions - _composition(image), axis=1)
        per_reference = np.stack([bank.distances(queries) for bank in self.banks])
        penalised = (per_reference + self.penalty * (gap - gap.min())[:, None]).min(axis=0)
        return penalised.astype(np.float32), per_reference.min(axis=0)


def _top_mean(distances: np.ndarray, fraction: float) -> float:
    """Mean of the largest ``fraction`` of ``distances`` (at least one value)."""
    count = max(1, math.ceil(fraction * distances.size))
    return float(np.partition(distances.ravel(), distances.size - count)[-count:].mean())


def _upsample(grid: np.ndarray, image: ImageAnalysis) -> np.ndarray:
    """The h×w patch grid resized bilinearly to the H×W of ``image.rgb`` (float32)."""
    height, width = image.rgb.shape[:2]
    return cv2.resize(grid.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def _stack_patches(references: Sequence[ImageAnalysis]) -> tuple[np.ndarray, np.ndarray]:
    """All reference patches as (N×D features, N class ids); ``DataError`` if there is no reference."""
    if not references:
        raise DataError("a scorer needs at least one reference image; give one or more good images")
    dim = references[0].patches.shape[-1]
    features = np.concatenate([r.patches.reshape(-1, dim) for r in references])
    return features, np.concatenate([r.patch_labels.ravel() for r in references])


def _touches_foreground(image: ImageAnalysis) -> np.ndarray:
    """h×w bool: patches of ``image``'s grid with at least one foreground pixel."""
    h, w = image.patch_labels.shape
    share = cv2.resize(image.foreground.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    return share > 0


class ClassAgnosticScorer:
    """kNN of every test patch among all patches of all references.

    Arguments:
      n_neighbours: nearest reference patches averaged per test patch.
      top_fraction: share of the largest patch distances averaged into the image score.
      reference_penalty: λ of the composition penalty (module docstring); 0 pools all
        references in one bank (the design's definition).
      gpu: keep the bank on the GPU.
    """

    name = "class_agnostic"

    def __init__(
        self, n_neighbours: int = 1, top_fraction: float = 0.02, reference_penalty: float = 0.2, gpu: bool = False
    ) -> None:
        self.n_neighbours = n_neighbours
        self.top_fraction = top_fraction
        self.reference_penalty = reference_penalty
        self.gpu = gpu

    def fit(self, references: Sequence[ImageAnalysis]) -> "ClassAgnosticScorer":
        """Build the bank from every patch of ``references`` (one per reference with a penalty); returns self."""
        features, _ = _stack_patches(references)
        per_reference = [r.patches.reshape(-1, features.shape[1]) for r in references]
        self.bank_ = _Bank(per_reference, references, self.n_neighbours, self.reference_penalty, self.gpu)
        return self

    def score(self, image: ImageAnalysis) -> Score:
        """Top-fraction mean of the (penalised) patch distances, and the upsampled map of the plain ones."""
        penalised, plain = self.bank_.distances(image.patches.reshape(-1, image.patches.shape[-1]), image)
        return Score(_top_mean(penalised, self.top_fraction), _upsample(plain.reshape(image.patches.shape[:2]), image))


class ClassAwareScorer:
    """kNN of each test patch among the reference patches of its own class (``patch_labels``).

    One bank per class id found in the references, background (0) included. A
    test patch whose class no reference has (possible with labels from an
    aligner that is not the propagation default) is compared with the bank of
    all reference patches instead.

    ``reduce="patches"`` (default): the top-fraction mean over all patches of
    the image, each scored against its own class's bank, as the class-agnostic
    scorer does with one bank. ``reduce="max"`` (the design's definition): the
    largest, over the classes of the test image, of the top-fraction mean of
    that class's patch distances, so that a small class is not drowned by a
    large one; but then the score is that of the noisiest class, since a class
    of a few flickering patches has a handful of poor matches in every image.
    Held-out folds of ``experiments/cross_validate.py`` (shared juice_bottle
    subset + 80 extra good images, offline preset, class_aware alone): image
    AUROC at k = 4 0.647 with "max", 0.721 with "patches" (k = 8: 0.752 and
    0.815; k = 1: 0.554 and 0.540).

    Arguments:
      n_neighbours: nearest reference patches averaged per test patch.
      top_fraction: share of the largest patch distances (of the image, or of a class) averaged into the score.
      reduce: ``"patches"`` or ``"max"``.
      gpu: keep the banks on the GPU.
    """

    name = "class_aware"

    def __init__(self, n_neighbours: int = 1, top_fraction: float = 0.02, reduce: str = "patches", gpu: bool = False) -> None:
        if reduce not in ("patches", "max"):
            raise ConfigError(f"unknown class_aware reduce {reduce!r}; choose patches or max")
        self.n_neighbours = n_neighbours
        self.top_fraction = top_fraction
        self.reduce = reduce
        self.gpu = gpu

    def fit(self, references: Sequence[ImageAnalysis]) -> "ClassAwareScorer":
        """Build one bank per class and a bank of all patches; returns self."""
        features, labels = _stack_patches(references)
        self.all_bank_ = _PatchBank(features, self.n_neighbours, self.gpu)
        self.banks_ = {int(c): _PatchBank(features[labels == c], self.n_neighbours, self.gpu) for c in np.unique(labels)}
        return self

    def score(self, image: ImageAnalysis) -> Score:
        """The patch distances reduced to one value (see ``reduce``), and the upsampled distance map."""
        features = image.patches.reshape(-1, image.patches.shape[-1])
        labels = image.patch_labels.ravel()
        distances = np.zeros(len(labels), np.float32)
        class_scores = []
        for cls in np.unique(labels):
            selected = labels == cls
            distances[selected] = self.banks_.get(int(cls), self.all_bank_).distances(features[selected])
            class_scores.append(_top_mean(distances[selected], self.top_fraction))
        value = max(class_scores) if self.reduce == "max" else _top_mean(distances, self.top_fraction)
        return Score(value, _upsample(distances.reshape(image.patch_labels.shape), image))


class ForegroundScorer:
    """kNN of the foreground test patches among the reference patches that touch the foreground.

    A test patch is scored when it is foreground (``patch_labels`` > 0, the
    majority of its pixels); the bank is more generous and holds every
    reference patch with at least one foreground pixel. A patch on the
    object's outline is foreground by majority in one image and background in
    the next, so a bank of majority-foreground patches alone would lack the
    twin of many outline patches of a good test image and score them as
    anomalous (on the shared juice_bottle subset, k = 4, this raised the
    scorer's image AUROC from 0.80 to 0.85).

    Background test patches get distance 0 in the map and do not enter the
    image score. Two fallbacks keep the scorer defined: if no reference has a
    foreground pixel, the bank holds all reference patches and every test patch
    is scored (``all_patches_`` is True after ``fit``); if the test image has no
    foreground patch (nothing found on the object, itself a strong anomaly), all
    of its patches are scored against the foreground bank.

    Arguments:
      n_neighbours: nearest reference patches averaged per test patch.
      top_fraction: share of the largest foreground patch distances averaged into the image score.
      reference_penalty: λ of the composition penalty (module docstring); 0 pools all
        references in one bank (the design's definition).
      gpu: keep the bank on the GPU.
    """

    name = "foreground"

    def __init__(
        self, n_neighbours: int = 1, top_fraction: float = 0.02, reference_penalty: float = 0.2, gpu: bool = False
    ) -> None:
        self.n_neighbours = n_neighbours
        self.top_fraction = top_fraction
        self.reference_penalty = reference_penalty
        self.gpu = gpu

    def fit(self, references: Sequence[ImageAnalysis]) -> "ForegroundScorer":
        """Build the bank of reference patches touching the foreground (all patches if none does); returns self."""
        features, _ = _stack_patches(references)
        touching = [_touches_foreground(r).ravel() for r in references]
        self.all_patches_ = not np.concatenate(touching).any()
        per_reference = [r.patches.reshape(-1, features.shape[1]) for r in references]
        if not self.all_patches_:
            per_reference = [f[t] for f, t in zip(per_reference, touching)]
        self.bank_ = _Bank(per_reference, references, self.n_neighbours, self.reference_penalty, self.gpu)
        return self

    def score(self, image: ImageAnalysis) -> Score:
        """Top-fraction mean of the (penalised) foreground patch distances, and the upsampled map of the plain ones."""
        features = image.patches.reshape(-1, image.patches.shape[-1])
        selected = image.patch_labels.ravel() > 0
        if self.all_patches_ or not selected.any():
            selected[:] = True
        penalised, plain = self.bank_.distances(features[selected], image)
        distances = np.zeros(len(selected), np.float32)
        distances[selected] = plain
        return Score(_top_mean(penalised, self.top_fraction), _upsample(distances.reshape(image.patch_labels.shape), image))
