"""Pieces of the evaluation: sPRO per anomaly type as the official MVTec LOCO tool reports it, and the pixel resolution."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loco_ad.evaluate import pixel_eval_size, spro_by_type
from loco_ad.metrics import spro_auc


def _case(seed: int = 0):
    rng = np.random.default_rng(seed)
    types = ["good", "good", "logical", "logical", "structural"]
    masks, maps = [], []
    for kind in types:
        channels = np.zeros((0 if kind == "good" else 1, 16, 16), np.uint8)
        if kind != "good":
            channels[0, 4:10, 3:9] = 255
        masks.append(channels)
        noisy = rng.random((16, 16)).astype(np.float32)
        maps.append(noisy + (2.0 * (channels.max(axis=0) > 0) if kind == "logical" else 0.0))
    return masks, maps, types


def test_each_type_is_scored_against_all_good_images_and_spro_is_their_mean() -> None:
    masks, maps, types = _case()
    row = spro_by_type(masks, maps, types, None, scale=1.0, fpr_limit=0.05)
    logical = spro_auc([masks[i] for i in (0, 1, 2, 3)], [maps[i] for i in (0, 1, 2, 3)], None, 0.05)
    structural = spro_auc([masks[i] for i in (0, 1, 4)], [maps[i] for i in (0, 1, 4)], None, 0.05)
    assert row["logical_spro"] == pytest.approx(logical) and row["structural_spro"] == pytest.approx(structural)
    assert row["spro"] == pytest.approx((logical + structural) / 2)
    assert row["logical_spro"] > 0.9 > row["structural_spro"]  # the maps find the logical defects only
    # pooling both types in one curve, as before, is a different number
    assert spro_auc(masks, maps, None, 0.05) != pytest.approx(row["spro"])


def test_a_missing_type_is_nan_and_left_out_of_the_mean() -> None:
    masks, maps, types = _case()
    keep = [0, 1, 2, 3]
    row = spro_by_type([masks[i] for i in keep], [maps[i] for i in keep], [types[i] for i in keep], None, 1.0, 0.05)
    assert math.isnan(row["structural_spro"]) and row["spro"] == row["logical_spro"]


def test_pixel_evaluation_size() -> None:
    assert pixel_eval_size((448, 224), (800, 400), 256) == (256, 128)
    assert pixel_eval_size((448, 224), (800, 400), 0) == (800, 400)  # full resolution of the ground truth
    assert pixel_eval_size((112, 56), (800, 400), 256) == (112, 56)  # never enlarged
