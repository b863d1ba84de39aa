"""Patch features from a DINOv2 ViT (``transformers``)."""

from __future__ import annotations

import contextlib
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Dinov2Model

from loco_ad.imagenet import IMAGENET_MEAN, IMAGENET_STD


class Dinov2Embedder:
    """Computes a grid of L2-normalised DINOv2 patch features per image.

    Images are ImageNet-normalised and run through the ViT in batches of equal
    size (the position encodings are interpolated to each size by
    ``transformers``); the CLS token and any register tokens are dropped and the
    last hidden states reshaped to the patch grid. On CUDA the model runs under
    bf16 autocast (fp16 where bf16 is unsupported); features come back float32.

    Arguments:
      model: a DINOv2 model (see ``loco_ad.models.load_dinov2``); moved to ``device``.
      patch_size: side of one patch in pixels; must match the model's.
      device: torch device to run on.
      batch_size: images per forward pass.
    """

    version = 1

    def __init__(self, model: Dinov2Model, patch_size: int = 14, device: str = "cpu", batch_size: int = 8) -> None:
        if model.config.patch_size != patch_size:
            raise ValueError(f"patch_size {patch_size} does not match the model's {model.config.patch_size}")
        self.model = model.to(device).eval()
        self.patch_size = patch_size
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.n_prefix_tokens = 1 + getattr(model.config, "num_register_tokens", 0)
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def embed(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Embed images.

        Arguments:
          images: H×W×3 uint8 RGB images at working resolution, H and W multiples of ``patch_size``.
        Returns:
          one (H/patch)×(W/patch)×D float32 array per image, in input order, each feature of unit L2 norm.
        """
        for rgb in images:
            self._check(rgb)
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, rgb in enumerate(images):
            by_size.setdefault(rgb.shape[:2], []).append(index)
        features: list[np.ndarray | None] = [None] * len(images)
        for indices in by_size.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                grids = self._forward(np.stack([images[i] for i in chunk]))
                for index, grid in zip(chunk, grids):
                    features[index] = grid
        return features  # type: ignore[return-value]

    def _check(self, rgb: np.ndarray) -> None:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an H×W×3 uint8 image, got shape {rgb.shape} and dtype {rgb.dtype}")
        if rgb.shape[0] % self.patch_size or rgb.shape[1] % self.patch_size:
            raise ValueError(
                f"image size {rgb.shape[0]}×{rgb.shape[1]} is not a multiple of the patch size {self.patch_size}; "
                "resize to PipelineConfig.working_size first"
            )

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """B×H×W×3 uint8 → B×h×w×D float32 unit-norm features."""
        count, height, width = batch.shape[:3]
        with torch.inference_mode():
            pixels = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float().div_(255)
            pixels = (pixels - self.mean) / self.std
            with self._autocast():
                hidden = self.model(pixel_values=pixels).last_hidden_state
            tokens = hidden[:, self.n_prefix_tokens :].float()
            grid = tokens.reshape(count, height // self.patch_size, width // self.patch_size, -1)
            return F.normalize(grid, dim=-1).cpu().numpy()
