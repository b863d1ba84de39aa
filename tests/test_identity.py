"""The settings part of the cache key: stage classes, versions, parameters and weights, and what it buys a user."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import pytest
import torch

from loco_ad import models
from loco_ad.cache import AnalysisCache
from loco_ad.config import apply_overrides, get_preset
from loco_ad.identity import model_key, stage_identity
from loco_ad.pipeline import Pipeline
from loco_ad.stages.colour_segment import ColourClusterSegmenter
from loco_ad.stages.embed import Dinov2Embedder
from loco_ad.stages.handcrafted import HandcraftedEmbedder
from loco_ad.stages.segment import SamSegmenter
from tests.scenes import make_scene
from tests.tiny_models import tiny_dinov2, tiny_sam

SIZE = (112, 168)


def _stages() -> list[object]:
    return [ColourClusterSegmenter(), HandcraftedEmbedder(), SamSegmenter(tiny_sam(), points_per_side=4), Dinov2Embedder(tiny_dinov2())]


@pytest.mark.parametrize("stage", _stages(), ids=lambda stage: type(stage).__name__)
def test_every_stage_has_a_version_and_exposes_its_parameters(stage):
    assert isinstance(type(stage).version, int)
    parameters = [name for name in inspect.signature(type(stage).__init__).parameters if name != "self"]
    identity = stage_identity(stage)
    assert list(identity["params"]) == parameters  # nothing that could change the output is left out of the key
    json.dumps(identity)


def test_parameters_versions_and_weights_change_the_key():
    config = get_preset("offline")
    base = model_key(config, ColourClusterSegmenter(), HandcraftedEmbedder())
    assert model_key(config, ColourClusterSegmenter(), HandcraftedEmbedder()) == base
    assert model_key(config, ColourClusterSegmenter(blur=3), HandcraftedEmbedder()) != base
    assert model_key(config, ColourClusterSegmenter(), HandcraftedEmbedder(context=5)) != base

    class Changed(HandcraftedEmbedder):
        version = HandcraftedEmbedder.version + 1

    assert model_key(config, ColourClusterSegmenter(), Changed()) != base
    sam = model_key(config, SamSegmenter(tiny_sam(seed=0)), HandcraftedEmbedder())
    assert model_key(config, SamSegmenter(tiny_sam(seed=0)), HandcraftedEmbedder()) == sam
    assert model_key(config, SamSegmenter(tiny_sam(seed=1)), HandcraftedEmbedder()) != sam  # other weights in memory


def test_a_version_bump_turns_cached_outputs_into_misses(tmp_path, monkeypatch):
    images = [make_scene(seed=seed, size=SIZE).rgb for seed in range(2)]
    config = get_preset("offline")
    Pipeline(config, cache=AnalysisCache(tmp_path), progress=False).fit(images)
    assert Pipeline(config, cache=AnalysisCache(tmp_path), progress=False).fit(images).cache.misses == 0
    monkeypatch.setattr(HandcraftedEmbedder, "version", HandcraftedEmbedder.version + 1)
    assert Pipeline(config, cache=AnalysisCache(tmp_path), progress=False).fit(images).cache.misses == 2


@pytest.fixture
def fast_weights(tmp_path, monkeypatch) -> Path:
    """A weights folder with a tiny SAM (standing in for ViT-B) and a tiny DINOv2 (for dinov2-small)."""
    monkeypatch.setitem(models.sam_model_registry, "vit_b", lambda checkpoint=None: tiny_sam(seed=9))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "weights"
    folder.mkdir()
    torch.save(tiny_sam(seed=0).state_dict(), folder / models.SAM_CHECKPOINTS["vit_b"])
    tiny_dinov2(seed=0).save_pretrained(folder / "dinov2-small")
    return folder


def _fast_pipeline(cache: Path, weights: Path) -> Pipeline:
    config = apply_overrides(get_preset("fast"), ["segmenter.sam.points_per_side=4", "embedder.image_size=112"])
    return Pipeline(config, cache=AnalysisCache(cache), weights_dir=weights, device="cpu", progress=False)


class ModelLoaded(Exception):
    """Raised instead of loading a model."""


def test_a_fully_cached_run_loads_no_model_and_new_weights_are_misses(tmp_path, fast_weights, monkeypatch):
    images = [make_scene(seed=seed, size=SIZE).rgb for seed in range(2)]
    test = make_scene("missing", size=SIZE).rgb
    first = _fast_pipeline(tmp_path / "cache", fast_weights).fit(images)
    expected = first.predict(test).score
    assert first.cache.misses == 3

    def refuse(*args, **kwargs):
        raise ModelLoaded

    monkeypatch.setattr(models, "load_sam", refuse)
    monkeypatch.setattr(models, "load_dinov2", refuse)
    warm = _fast_pipeline(tmp_path / "cache", fast_weights).fit(images)
    assert warm.predict(test).score == pytest.approx(expected)
    assert (warm.cache.hits, warm.cache.misses) == (3, 0)

    checkpoint = fast_weights / models.SAM_CHECKPOINTS["vit_b"]
    torch.save(tiny_sam(seed=5).state_dict(), checkpoint)  # other weights, same file size
    os.utime(checkpoint, (1_000_000, 1_000_000))
    replaced = _fast_pipeline(tmp_path / "cache", fast_weights)
    assert replaced.model_key != warm.model_key
    with pytest.raises(ModelLoaded):  # every image is a miss, so the models are needed again
        replaced.fit(images)
    assert replaced.cache.misses == 2
