"""SamSegmenter with a tiny random-weight SAM: the real automatic-mask-generator code path, fast."""

from __future__ import annotations

import numpy as np
import pytest

from loco_ad.stages.masks import masks_to_partition, regions_to_partition, touches_two_borders
from loco_ad.stages.segment import SamSegmenter
from tests.scenes import make_scene
from tests.tiny_models import tiny_sam

SIZE = (48, 64)


@pytest.fixture(scope="module")
def scene():
    return make_scene(size=SIZE)


def assert_partition(partition: np.ndarray, shape: tuple[int, int]) -> None:
    assert partition.shape == shape and partition.dtype == np.int32
    ids = np.unique(partition[partition > 0])
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
    assert not any(touches_two_borders(partition == i) for i in ids)


@pytest.mark.parametrize("thresh", [0.0, 0.88])
def test_tiny_sam_partition_contract(scene, thresh):
    # thresh 0 keeps every mask the random SAM proposes, so the non-empty path runs too
    segmenter = SamSegmenter(tiny_sam(), points_per_side=4, pred_iou_thresh=thresh, stability_score_thresh=thresh)
    assert segmenter.fit([scene.rgb]) is segmenter and not segmenter.reference_dependent
    partition = segmenter.segment(scene.rgb)
    assert_partition(partition, SIZE)
    np.testing.assert_array_equal(partition, segmenter.segment(scene.rgb))


def test_generated_masks_go_through_masks_to_partition(scene, monkeypatch):
    segmenter = SamSegmenter(tiny_sam(), points_per_side=4, min_area=0.01)
    tray = scene.segment_map > 0  # the whole tray, parts included, as SAM would propose it
    parts = [scene.segment_map == i for i in range(2, scene.segment_map.max() + 1)]
    background = np.zeros(SIZE, bool)
    background[:, :5] = True  # touches top, bottom and left borders
    speck = np.zeros(SIZE, bool)
    speck[20, 30] = True  # under min_area
    masks = [background, speck, *parts, tray]
    monkeypatch.setattr(segmenter.generator, "generate", lambda rgb: [{"segmentation": m} for m in masks])
    partition = segmenter.segment(scene.rgb)
    np.testing.assert_array_equal(partition, masks_to_partition(masks, 0.01))
    assert_partition(partition, SIZE)
    # the true objects come back one id each, parts on top of the tray, nothing else
    np.testing.assert_array_equal(partition > 0, tray)
    assert partition.max() == 1 + len(parts)
    for true_id in range(1, scene.segment_map.max() + 1):
        assert len(np.unique(partition[scene.segment_map == true_id])) == 1


def test_no_masks_gives_empty_partition(scene, monkeypatch):
    segmenter = SamSegmenter(tiny_sam(), points_per_side=4)
    monkeypatch.setattr(segmenter.generator, "generate", lambda rgb: [])
    partition = segmenter.segment(scene.rgb)
    assert partition.shape == SIZE and partition.dtype == np.int32 and not partition.any()


def test_rejects_non_rgb(scene):
    segmenter = SamSegmenter(tiny_sam(), points_per_side=4)
    with pytest.raises(ValueError, match="uint8"):
        segmenter.segment(scene.rgb.astype(np.float32))
    with pytest.raises(ValueError, match="H×W×3"):
        segmenter.segment(scene.rgb[..., 0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regions_to_partition_equals_masks_to_partition(seed):
    # a random label image: blocks of random ids, some reaching two borders, some tiny, id 0 = no region
    rng = np.random.default_rng(seed)
    regions = np.kron(rng.integers(0, 12, (6, 8)), np.ones((8, 8), int))
    regions[rng.random(regions.shape) < 0.01] = 12  # scattered single pixels of one more region
    masks = [regions == i for i in range(1, regions.max() + 1) if (regions == i).any()]
    np.testing.assert_array_equal(regions_to_partition(regions, 0.01), masks_to_partition(masks, 0.01))
