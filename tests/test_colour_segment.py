"""ColourClusterSegmenter on synthetic scenes (known parts) and on real juice_bottle images."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from loco_ad.errors import DataError
from loco_ad.stages.colour_segment import ColourClusterSegmenter
from tests.scenes import make_scene


@pytest.fixture(scope="module")
def segmenter() -> ColourClusterSegmenter:
    return ColourClusterSegmenter().fit([make_scene(seed=s).rgb for s in range(3)])


def class_colours(segmenter: ColourClusterSegmenter, scene) -> dict[int, int]:
    """Map each true class to the colour of the segment that covers it, checking the segment matches it."""
    partition, classes = segmenter.segment_classes(scene.rgb)
    np.testing.assert_array_equal(partition, segmenter.segment(scene.rgb))
    found = {}
    for segment_id in range(1, partition.max() + 1):
        mask = partition == segment_id
        true_class = int(np.bincount(scene.class_map[mask]).argmax())
        truth = scene.class_map == true_class
        iou = (mask & truth).sum() / (mask | truth).sum()
        assert iou > 0.9, f"segment {segment_id} matches class {true_class} with IoU {iou:.2f}"
        assert true_class not in found, f"class {true_class} is split into several segments"
        segment_classes = np.unique(classes[mask])
        assert len(segment_classes) == 1 and segment_classes[0] > 0, "a segment must have one object class"
        found[true_class] = int(segment_classes[0]) - 1
    return found


def test_finds_tray_and_parts_with_the_same_colours_in_every_scene(segmenter: ColourClusterSegmenter) -> None:
    # 5 scene colours, 8 k-means clusters: the near-duplicate centres must have been merged
    assert len(segmenter.colours_) == 5
    reference = class_colours(segmenter, make_scene(seed=10))
    assert sorted(reference) == [1, 2, 3, 4]  # tray + three parts; background removed
    assert len(set(reference.values())) == 4
    for seed, shift in [(11, (3, -4)), (12, (-2, 5)), (13, (0, 0))]:
        scene = make_scene(seed=seed, shift=shift)
        assert class_colours(segmenter, scene) == reference
        partition = segmenter.segment(scene.rgb)
        assert (partition[scene.class_map == 0] == 0).mean() > 0.99


def test_missing_part_gives_one_fewer_segment(segmenter: ColourClusterSegmenter) -> None:
    good = segmenter.segment(make_scene(seed=20).rgb)
    missing = make_scene("missing", seed=20)
    assert segmenter.segment(missing.rgb).max() == good.max() - 1
    assert sorted(class_colours(segmenter, missing)) == [1, 2, 4]


def test_recoloured_part_gets_another_colour(segmenter: ColourClusterSegmenter) -> None:
    good = class_colours(segmenter, make_scene(seed=21))
    recoloured = class_colours(segmenter, make_scene("colour", seed=21))
    assert recoloured[2] != good[2]
    assert {c: recoloured[c] for c in (1, 3, 4)} == {c: good[c] for c in (1, 3, 4)}


def test_deterministic() -> None:
    references = [make_scene(seed=s, noise=8.0).rgb for s in range(2)]
    image = make_scene("extra", seed=5, noise=8.0).rgb
    first = ColourClusterSegmenter(seed=3).fit(references)
    second = ColourClusterSegmenter(seed=3).fit(references)
    np.testing.assert_array_equal(first.colours_, second.colours_)
    np.testing.assert_array_equal(first.segment(image), second.segment(image))
    np.testing.assert_array_equal(first.segment(image), first.segment(image))


def test_uniform_image_has_no_segment(segmenter: ColourClusterSegmenter) -> None:
    uniform = np.full((64, 96, 3), 128, np.uint8)
    partition = segmenter.segment(uniform)
    assert partition.shape == (64, 96) and partition.dtype == np.int32
    assert partition.max() == 0
    assert segmenter.segment_classes(uniform)[1].max() == 0


def test_segment_before_fit_and_fit_without_references_raise() -> None:
    with pytest.raises(NotFittedError, match="fit"):
        ColourClusterSegmenter().segment(make_scene().rgb)
    with pytest.raises(DataError, match="reference"):
        ColourClusterSegmenter().fit([])


def load(path: Path) -> np.ndarray:
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return cv2.resize(rgb, (224, 448), interpolation=cv2.INTER_AREA)


def test_real_juice_bottle(loco_sample: Path) -> None:
    references = [load(path) for path in sorted((loco_sample / "juice_bottle" / "train" / "good").glob("*.png"))]
    segmenter = ColourClusterSegmenter().fit(references)
    for index in (0, 1, 3):  # banana, cherry, orange juice
        image = load(loco_sample / "juice_bottle" / "test" / "good" / f"{index:03d}.png")
        start = time.perf_counter()
        partition = segmenter.segment(image)
        elapsed = time.perf_counter() - start
        print(f"juice_bottle {index:03d} 448x224: {partition.max()} segments in {elapsed * 1000:.0f} ms")
        assert 3 <= partition.max() <= 30
        assert partition[:20].max() == 0 and partition[:, :30].max() == 0  # black background
        assert partition[250, 112] > 0  # the juice in the middle of the bottle



def _grey_product(seed: int) -> np.ndarray:
    """A shaded grey part and a bright part on a shaded grey background (light from the right)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, 240)[None, :]
    image = np.repeat(50 + 60 * x, 160, axis=0)  # background, grey 50 to 110
    image[40:120, 50:130] = 130 + 40 * x[:, 50:130]  # the shaded part, grey 142 to 155
    image[60:100, 160:210] = 215  # the bright part
    noisy = np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
    return np.repeat(noisy[..., None], 3, axis=-1)


def test_shaded_grey_part_is_not_merged_into_the_background() -> None:
    """Single linkage chains the k-means centres along a shading into one colour; complete linkage does not.

    With ``merge_linkage="single"`` the background's and the shaded part's
    centres, each within ``merge_distance`` of the next, became one colour, so
    the part touched the borders as background and was lost (a grey product
    had no foreground at all: scikit-image's ``coins`` gave 1 colour, 0 segments).
    """
    references = [_grey_product(seed) for seed in range(2)]
    image = _grey_product(5)
    chained = ColourClusterSegmenter(merge_linkage="single").fit(references)
    assert chained.segment(image)[80, 90] == 0  # the shaded part is background
    segmenter = ColourClusterSegmenter().fit(references)  # complete linkage, the default
    partition, classes = segmenter.segment_classes(image)
    assert partition[0, 0] == 0 and partition[0, -1] == 0  # the background is still background
    assert partition[80, 90] > 0 and partition[80, 185] > 0 and partition[80, 90] != partition[80, 185]
    assert classes[80, 55] == classes[80, 125]  # one part, one colour across its shading
