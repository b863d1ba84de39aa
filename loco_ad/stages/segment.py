"""Segmentation with SAM's automatic mask generator."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator
from segment_anything.modeling import Sam

from loco_ad.stages.masks import masks_to_partition


class SamSegmenter:
    """Cuts an image into segments with SAM's automatic masks, then post-processes them.

    SAM is prompted with a regular grid of points; the masks it returns go
    through ``masks_to_partition`` (background masks touching two image borders
    and tiny masks dropped, smaller masks painted over larger ones, ids
    numbered 1..n by area). The result depends on the image alone
    (``reference_dependent`` is False), so ``fit`` does nothing.

    Arguments:
      model: a loaded SAM (see ``loco_ad.models.load_sam``), on the device to run on.
      points_per_side: the grid of point prompts has this many points per image side.
      min_area: segments smaller than this fraction of the image are dropped.
      points_per_batch: point prompts run through the mask decoder at once;
        higher is faster and uses more memory.
      pred_iou_thresh: masks whose predicted quality (IoU) is below this are dropped.
      stability_score_thresh: masks less stable than this under a change of the
        binarisation threshold are dropped.
      box_nms_thresh: box IoU above which duplicate masks are suppressed.
      crop_n_layers: if > 0, SAM also runs on crops of the image (2**i crops per
        side in layer i), which finds smaller parts at a large cost in time.
    """

    reference_dependent = False
    version = 1

    def __init__(
        self,
        model: Sam,
        points_per_side: int = 32,
        min_area: float = 0.001,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
    ) -> None:
        self.model = model
        self.points_per_side = points_per_side
        self.min_area = min_area
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.generator = SamAutomaticMaskGenerator(
            model,
            points_per_side=points_per_side,
            points_per_batch=points_per_batch,
            pred_iou_thresh=pred_iou_thresh,
            stability_score_thresh=stability_score_thresh,
            box_nms_thresh=box_nms_thresh,
            crop_n_layers=crop_n_layers,
            output_mode="binary_mask",
        )

    def fit(self, references: Sequence[np.ndarray]) -> "SamSegmenter":
        """Nothing to learn: SAM segments each image on its own. Returns self."""
        return self

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        """Segment one image.

        Arguments:
          rgb: H×W×3 uint8 image.
        Returns:
          H×W int32 partition: 0 = background or no segment, 1..n segments; all
          zero when SAM finds no mask.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an H×W×3 uint8 image, got shape {rgb.shape} and dtype {rgb.dtype}")
        with torch.inference_mode():
            records = self.generator.generate(rgb)
        if not records:
            return np.zeros(rgb.shape[:2], np.int32)
        return masks_to_partition([record["segmentation"] for record in records], self.min_area)
