"""Dinov2Embedder with a tiny random-weight DINOv2."""

from __future__ import annotations

import numpy as np
import pytest

from loco_ad.stages.embed import Dinov2Embedder
from tests.scenes import make_scene
from tests.tiny_models import TINY_DINOV2_DIM, tiny_dinov2


def images(sizes, seeds=(0, 1, 2, 3)):
    return [make_scene(size=size, seed=seed).rgb for size, seed in zip(sizes, seeds)]


def test_non_square_grid_and_unit_norm():
    (grid,) = Dinov2Embedder(tiny_dinov2()).embed(images([(42, 70)]))
    assert grid.shape == (3, 5, TINY_DINOV2_DIM) and grid.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(grid, axis=-1), 1.0, atol=1e-5)
    assert np.ptp(grid.reshape(-1, TINY_DINOV2_DIM), axis=0).max() > 0.1  # patches differ


def test_batched_equals_one_by_one_and_keeps_order():
    batch = images([(42, 56), (56, 42), (42, 56), (42, 56)])
    embedder = Dinov2Embedder(tiny_dinov2(), batch_size=2)
    together = embedder.embed(batch)
    alone = [embedder.embed([rgb])[0] for rgb in batch]
    assert [g.shape[:2] for g in together] == [(3, 4), (4, 3), (3, 4), (3, 4)]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert not np.allclose(together[0], together[2])  # different scenes, different features


def test_deterministic():
    batch = images([(56, 56)])
    first = Dinov2Embedder(tiny_dinov2(seed=5)).embed(batch)[0]
    second = Dinov2Embedder(tiny_dinov2(seed=5)).embed(batch)[0]
    np.testing.assert_array_equal(first, second)


def test_register_tokens_are_dropped():
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    model = Dinov2WithRegistersModel(
        Dinov2WithRegistersConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2, image_size=56, patch_size=14, num_register_tokens=4
        )
    ).eval()
    (grid,) = Dinov2Embedder(model).embed(images([(28, 42)]))
    assert grid.shape == (2, 3, 32)


@pytest.mark.parametrize(
    "rgb, message",
    [
        (np.zeros((43, 56, 3), np.uint8), "multiple of the patch size"),
        (np.zeros((42, 56, 3), np.float32), "uint8"),
        (np.zeros((42, 56), np.uint8), "H×W×3"),
    ],
)
def test_bad_input(rgb, message):
    with pytest.raises(ValueError, match=message):
        Dinov2Embedder(tiny_dinov2()).embed([rgb])


def test_patch_size_must_match_model():
    with pytest.raises(ValueError, match="patch_size"):
        Dinov2Embedder(tiny_dinov2(), patch_size=16)
