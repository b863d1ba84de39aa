"""VAND 2025 few-shot challenge submission: loco_ad's training-free pipeline behind the challenge's ``Model``.

The challenge's evaluation script (``eval/src/eval/evaluate.py`` of the VAND
2025 challenge repository) builds ``Model()``, calls ``setup`` with
``{"few_shot_samples": k×3×256×256 float tensor in [0, 1], "dataset_category": str}``
and then ``forward`` with each test batch (B×3×256×256, B = 1), reading
``pred_score`` (image F1-max) and ``anomaly_map`` (pixel F1-max) of the
returned ``anomalib.data.ImageBatch``. Its tensors are the PNGs read by
anomalib (``PIL → float32 / 255``) and resized with
``torchvision.transforms.Resize((256, 256))`` (bilinear, antialiased).

Pixels: ``tensor_to_rgb`` turns such a tensor into the H×W×3 uint8 image the
pipeline takes by ``round(255 × value)``; ``experiments/vand2025.py`` feeds
its evaluation images through the same function, so both see identical pixels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from loco_ad.cache import AnalysisCache, default_cache_dir
from loco_ad.config import get_preset
from loco_ad.pipeline import Pipeline

try:
    from anomalib.data import ImageBatch
except ImportError:  # anomalib absent: the same fields, so the package still runs outside the challenge

    @dataclass
    class ImageBatch:  # type: ignore[no-redef]
        """Stand-in for ``anomalib.data.ImageBatch``, used only when anomalib is not installed."""

        image: torch.Tensor
        pred_score: torch.Tensor
        anomaly_map: torch.Tensor


PRESET = "paper"  # written by ``python experiments/vand2025.py --package OUT --preset NAME``
INPUT_SIZE = (256, 256)  # the challenge's image size (height, width)


def tensor_to_rgb(image: torch.Tensor) -> np.ndarray:
    """A 3×H×W float image in [0, 1] as the H×W×3 uint8 array the pipeline takes.

    Arguments:
      image: 3×H×W tensor, values in [0, 1] (clipped otherwise).
    Returns:
      H×W×3 uint8 array, ``round(255 × value)`` (round half to even).
    """
    scaled = (image.detach().to("cpu", torch.float32).clamp(0, 1) * 255).round()
    return scaled.to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def map_to_image(anomaly_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An anomaly map at working resolution resized (bilinear) to the input image's (height, width)."""
    return cv2.resize(anomaly_map.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


class Model(nn.Module):
    """loco_ad's few-shot pipeline with the challenge's ``setup`` / ``forward`` interface.

    Arguments:
      preset: loco_ad preset (default: the one this package was written with).
      cache_dir: analysis cache folder shared by all instances (default:
        ``loco_ad.cache.default_cache_dir()``), so the challenge's new model per
        (seed, category, k) re-runs no model work on images it has seen.
      device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    """

    def __init__(self, preset: str = PRESET, cache_dir: str | None = None, device: str = "auto") -> None:
        super().__init__()
        config = dataclasses.replace(get_preset(preset), input_size=INPUT_SIZE)
        cache = AnalysisCache(cache_dir or default_cache_dir())
        self.pipeline = Pipeline(config, cache=cache, device=device, progress=False)

    def setup(self, setup_data: dict) -> None:
        """Fit the pipeline on the few-shot images.

        Arguments:
          setup_data: ``few_shot_samples`` (k×3×H×W float tensor in [0, 1]) and
            ``dataset_category`` (unused: nothing is category-specific).
        """
        self.pipeline.fit([tensor_to_rgb(image) for image in setup_data["few_shot_samples"]])

    def weights_url(self, category: str) -> str | None:
        """No weights to download: the pipeline is training-free (models load through loco_ad)."""
        return None

    def forward(self, image: torch.Tensor) -> ImageBatch:
        """Score a batch of images.

        Arguments:
          image: B×3×H×W float tensor in [0, 1].
        Returns:
          ``ImageBatch`` with ``pred_score`` (B,) and ``anomaly_map`` (B×H×W; zeros
          when no enabled scorer makes a map).
        """
        size = tuple(image.shape[-2:])
        predictions = [self.pipeline.predict(tensor_to_rgb(one)) for one in image]
        maps = [map_to_image(p.map, size) if p.map is not None else np.zeros(size, np.float32) for p in predictions]
        return ImageBatch(
            image=image,
            pred_score=torch.tensor([p.score for p in predictions], dtype=torch.float32),
            anomaly_map=torch.from_numpy(np.stack(maps)),
        )
