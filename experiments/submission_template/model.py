"""VAND 2025 few-shot challenge submission: loco_ad's training-free pipeline behind the challenge's ``Model``.

``python experiments/vand2025.py --package FORK --preset NAME`` writes this file
to ``FORK/src/eval/submission/model.py`` with ``PRESET`` set to ``NAME``.

The challenge's evaluator (``src/eval/evaluate.py`` of ``cvpr-vand/challenge``,
commit 6e42e42) builds one ``Model()`` per category, asks ``weights_url``, then,
for each seed and k, calls ``setup`` on that same instance (twelve times per
category) with ``{"few_shot_samples": k×3×256×256 float32 in [0, 1],
"dataset_category": str}`` and ``forward`` with the test images in batches of up
to 128 (its ``auto_batch_size`` halves the batch after an out-of-memory error).
All tensors are on its device (CUDA when present). Images are anomalib's
``MVTecLOCODataset`` items resized by ``torchvision.transforms.v2.Resize((256,
256))``. Only ``pred_score`` of the returned ``ImageBatch`` is read (image
F1-max), so no anomaly map is computed here.

Pixels: ``loco_ad.data.tensor_to_rgb`` turns the tensors into uint8 images by
``round(255 × value)``; ``experiments/vand2025.py`` feeds its evaluation images
through the same function, so both give the pipeline identical arrays.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from anomalib.data import ImageBatch
from torch import nn

from loco_ad.cache import AnalysisCache, default_cache_dir
from loco_ad.config import get_preset
from loco_ad.data import tensor_to_rgb
from loco_ad.pipeline import Pipeline

PRESET = "paper"  # written by ``python experiments/vand2025.py --package FORK --preset NAME``
INPUT_SIZE = (256, 256)  # the challenge's image size (height, width)


def build_pipeline(preset: str, cache_dir: str | Path | None = None, device: str = "auto") -> Pipeline:
    """The loco_ad pipeline the submission runs.

    Arguments:
      preset: loco_ad preset name (``paper``, ``fast`` or ``offline``).
      cache_dir: analysis cache folder (default ``loco_ad.cache.default_cache_dir()``).
      device: ``"auto"`` (CUDA when present, as the evaluator chooses), ``"cpu"`` or ``"cuda"``.
    Returns:
      the preset's pipeline with the challenge's input size, without progress bars.
    """
    config = dataclasses.replace(get_preset(preset), input_size=INPUT_SIZE)
    cache = AnalysisCache(Path(cache_dir) if cache_dir else default_cache_dir())
    return Pipeline(config, cache=cache, device=device, progress=False)


class Model(nn.Module):
    """loco_ad's few-shot pipeline with the challenge's ``setup`` / ``forward`` interface.

    The models (SAM, DINOv2 for ``paper`` and ``fast``) run on ``device``; each
    test image's model outputs go to the on-disk analysis cache the first time
    it is seen, so the other eleven (seed, k) runs of a category only align and
    score it. Nothing is kept in memory across ``forward`` calls.

    Arguments:
      preset: loco_ad preset (default: the one this file was written with).
      cache_dir: analysis cache folder (default: ``$LOCO_AD_CACHE``, else ``~/.cache/loco_ad``).
      device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    """

    def __init__(self, preset: str = PRESET, cache_dir: str | Path | None = None, device: str = "auto") -> None:
        super().__init__()
        self.pipeline = build_pipeline(preset, cache_dir, device)

    def setup(self, setup_data: dict) -> None:
        """Fit the pipeline on the few-shot images, replacing the references of any earlier call.

        Arguments:
          setup_data: ``few_shot_samples`` (k×3×H×W float tensor in [0, 1], any
            device) and ``dataset_category`` (unused: nothing is category-specific).
        """
        self.pipeline.fit(list(tensor_to_rgb(setup_data["few_shot_samples"])))

    def weights_url(self, category: str) -> str | None:
        """None: the pipeline is training-free; SAM and DINOv2 load through ``loco_ad.models``."""
        return None

    def forward(self, image: torch.Tensor) -> ImageBatch:
        """Score a batch of images.

        The batch is copied to host memory once, as uint8, and scored with one
        ``Pipeline.predict_many`` call (the models batch it; alignment and
        scoring run on all cores).

        Arguments:
          image: B×3×H×W float tensor in [0, 1], any device.
        Returns:
          ``ImageBatch`` with ``image`` and ``pred_score`` (B float32 anomaly scores, on ``image.device``).
        """
        predictions = self.pipeline.predict_many(list(tensor_to_rgb(image)), progress=False, remember=False)
        scores = torch.tensor([p.score for p in predictions], dtype=torch.float32, device=image.device)
        return ImageBatch(image=image, pred_score=scores)
