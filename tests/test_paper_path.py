"""The SAM path of the pipeline (presets paper / fast) on real partitions.

A random-weight SAM finds no segments, so its tests never reach alignment or
the composition scorers with more than one class. Here a stand-in for SAM's
automatic mask generator returns SAM-like masks of the generated scenes
(overlapping proposals, a background mask touching the borders, tiny specks),
and everything after it is the real code: ``SamSegmenter``'s
post-processing, propagation and Hungarian alignment, all seven scorers.
Alignment is also run on real juice_bottle images with the offline stages'
segments and features.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from loco_ad.config import ALL_SCORERS, apply_overrides, get_preset
from loco_ad.pipeline import Pipeline
from loco_ad.stages.handcrafted import HandcraftedEmbedder
from loco_ad.stages.segment import SamSegmenter
from tests import scenes
from tests.tiny_models import tiny_sam

SIZE = (224, 336)
PALETTE = np.array([scenes.BACKGROUND, scenes.TRAY, scenes.RED, scenes.BLUE, scenes.YELLOW, scenes.GREEN], np.float32)


class SceneMaskGenerator:
    """Stand-in for ``SamAutomaticMaskGenerator`` on ``tests.scenes`` images: SAM-like masks found from the pixels.

    Each pixel takes its nearest palette colour; the proposals, in a shuffled
    order, are the background (it reaches every border), the whole tray with
    its parts (so it overlaps every part), each coloured part (one per
    connected region) and a few specks of a couple of pixels. Near-duplicate
    proposals are not made: SAM's own box NMS removes them before they leave
    the generator.
    """

    def generate(self, rgb: np.ndarray) -> list[dict]:
        distances = np.linalg.norm(rgb[..., None, :].astype(np.float32) - PALETTE, axis=-1)
        colour = distances.argmin(axis=-1)
        background = colour == 0
        masks = [background, ndimage.binary_fill_holes(~background)]
        for index in range(2, len(PALETTE)):
            regions, count = ndimage.label(colour == index)
            for region in range(1, count + 1):
                part = regions == region
                if part.sum() > 20:
                    masks.append(part)
        for y, x in ((5, 5), (120, 180), (200, 300)):
            speck = np.zeros(rgb.shape[:2], bool)
            speck[y : y + 2, x : x + 2] = True
            masks.append(speck)
        order = np.random.default_rng(int(rgb.sum()) % 1000).permutation(len(masks))
        return [{"segmentation": masks[i], "area": int(masks[i].sum())} for i in order]


def _sam_pipeline(method: str) -> Pipeline:
    config = apply_overrides(
        get_preset("fast").with_scorers(ALL_SCORERS),
        [f"alignment.method={method}", "embedder.kind=handcrafted", "embedder.image_size=336", "segmenter.min_area=0.002"],
    )
    segmenter = SamSegmenter(tiny_sam(), points_per_side=2, min_area=config.segmenter.min_area)
    segmenter.generator = SceneMaskGenerator()
    embedder = HandcraftedEmbedder(patch_size=config.embedder.patch_size, position_weight=2.0)
    return Pipeline(config, segmenter=segmenter, embedder=embedder, progress=False)


def _class_at(labels: np.ndarray, truth: np.ndarray, true_class: int) -> set[int]:
    """The aligned class ids found on the pixels of one true class (eroded, away from its outline)."""
    inside = ndimage.binary_erosion(truth == true_class, iterations=3)
    return set(np.unique(labels[inside]).tolist())


@pytest.mark.parametrize("method", ["propagation", "hungarian"])
def test_sam_path_aligns_real_partitions_and_scores_logical_anomalies(method: str) -> None:
    good = [scenes.make_scene("good", seed=seed, size=SIZE, shift=(seed - 2, 2 - seed)) for seed in range(4)]
    pipeline = _sam_pipeline(method).fit([scene.rgb for scene in good])

    # the partition went through the real post-processing: background, specks and duplicates gone
    canonical = pipeline.references[0]
    assert canonical.n_classes == 5  # background + tray + three parts
    assert not canonical.labels[:3].any() and not canonical.labels[:, :3].any()
    # one class per part, the same in every reference
    for true_class in range(1, 5):
        found = [_class_at(reference.labels, scene.class_map, true_class) for reference, scene in zip(pipeline.references, good)]
        assert all(len(ids) == 1 and ids == found[0] and 0 not in ids for ids in found), (true_class, found)
    assert len({next(iter(_class_at(canonical.labels, good[0].class_map, c))) for c in range(1, 5)}) == 4

    tests = {kind: scenes.make_scene(kind, seed=50 + i, size=SIZE) for i, kind in enumerate(("good", *scenes.LOGICAL))}
    predictions = dict(zip(tests, pipeline.predict_many([scene.rgb for scene in tests.values()])))
    for kind in ("missing", "extra", "colour"):
        assert predictions[kind].score > predictions["good"].score, kind
    # the composition scorers see the parts: a missing part moves the histogram, an extra one the histogram too
    assert predictions["missing"].raw_scores["histogram"] > 3 * predictions["good"].raw_scores["histogram"]
    assert predictions["extra"].raw_scores["histogram"] > 3 * predictions["good"].raw_scores["histogram"]
    assert predictions["colour"].raw_scores["colour"] > 3 * predictions["good"].raw_scores["colour"]


def _juice_band_classes(root, method: str, indices: tuple[int, ...]) -> list[dict[int, int]]:
    """Class ids (with pixel counts) of the juice between the two labels in each aligned reference of data root ``root``."""
    train = root / "juice_bottle" / "train" / "good"
    config = apply_overrides(get_preset("offline"), [f"alignment.method={method}"])
    pipeline = Pipeline(config, progress=False).fit([train / f"{index:03d}.png" for index in indices])
    bands = []
    for reference in pipeline.references:
        height, width = reference.labels.shape
        assert not reference.labels[: height // 20].any()  # the black background above the bottle is class 0
        band = reference.labels[round(0.64 * height) : round(0.72 * height), round(0.34 * width) : round(0.48 * width)]
        ids, counts = np.unique(band, return_counts=True)
        bands.append(dict(zip(ids.tolist(), counts.tolist())))
    return bands


def test_propagation_gives_the_juice_one_class_in_every_variant(loco_sample) -> None:
    """Real juice_bottle images, the offline stages' segments and features, aligned by propagation.

    Orange, banana and cherry juice differ in colour, and the colour segments
    of the juice differ from image to image (the canonical reference's own
    juice may be two segments, hence two classes); aligned to the canonical,
    the juice between the two labels gets one of the canonical's juice classes,
    the same one, on at least 95 % of its pixels (glare can leave a few
    unsegmented) in every other good image.
    """
    # the bundled sample's orange, banana, cherry, orange, banana; then a banana canonical (its juice two classes)
    for indices in ((1, 2, 5, 3, 6), (2, 5, 1, 4)):
        canonical, *aligned = _juice_band_classes(loco_sample, "propagation", indices)
        juice = max(aligned[0], key=aligned[0].get)
        assert juice in canonical and juice != 0, (indices, canonical, aligned)
        assert all(band.get(juice, 0) >= 0.95 * sum(band.values()) for band in aligned), (indices, aligned)


@pytest.mark.xfail(strict=True, reason="known limitation of one-to-one matching, measured: see the docstring")
def test_hungarian_gives_the_juice_one_class_in_every_variant(loco_subset) -> None:
    """Hungarian matching cannot follow a part whose segments differ in number between images.

    In orange 000 (the canonical reference) the labels cut the juice into an
    upper and a lower segment, hence two classes; banana 002's juice is one
    connected colour segment, which one-to-one matching can give only one of
    them: 966 of the 1,152 juice-band pixels get the upper-juice class. Label
    propagation works per patch and has no such limit (the test above). This
    strict xfail starts failing when Hungarian alignment learns to split or
    merge segments, which is the time to make it a plain test.
    """
    canonical, *aligned = _juice_band_classes(loco_subset, "hungarian", (0, 2, 8, 1, 3))
    juice = max(canonical, key=canonical.get)
    assert all(band.get(juice, 0) >= 0.95 * sum(band.values()) for band in aligned), (canonical, aligned)
