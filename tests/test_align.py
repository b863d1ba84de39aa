"""Tests of the alignment stage on synthetic scenes with known parts."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from skimage.color import rgb2lab

from loco_ad.analysis import ImageAnalysis
from loco_ad.config import AlignmentConfig, HungarianConfig
from loco_ad.errors import ConfigError
from loco_ad.stages.align import (
    _describe,
    _matching_cost,
    align,
    align_hungarian,
    patch_grid_labels,
    propagate_labels,
    reference_labels,
    snap_to_segments,
)
from tests.scenes import make_scene

PATCH = 8
METHODS = ("propagation", "hungarian")


def _patch_features(rgb: np.ndarray) -> np.ndarray:
    """Per-patch mean CIELAB and RGB, centred, L2-normalised: h×w×6 float32."""
    lab = rgb2lab(rgb).astype(np.float32)
    pixels = np.concatenate([lab / 100.0 - [0.5, 0.0, 0.0], rgb / 255.0 - 0.5], axis=2)
    height, width = rgb.shape[:2]
    means = pixels.reshape(height // PATCH, PATCH, width // PATCH, PATCH, 6).mean(axis=(1, 3))
    return (means / np.linalg.norm(means, axis=2, keepdims=True)).astype(np.float32)


def _reference(rgb: np.ndarray, segment_map: np.ndarray) -> ImageAnalysis:
    """An analysed canonical reference built from a scene."""
    labels = reference_labels(segment_map)
    patches = _patch_features(rgb)
    return ImageAnalysis(
        rgb=rgb,
        lab=rgb2lab(rgb).astype(np.float32),
        segment_map=segment_map,
        labels=labels,
        patches=patches,
        patch_labels=patch_grid_labels(labels, patches.shape[:2]),
        n_classes=int(labels.max()) + 1,
    )


def _align_scene(reference: ImageAnalysis, rgb: np.ndarray, segment_map: np.ndarray, method: str) -> np.ndarray:
    return align(reference, segment_map, _patch_features(rgb), rgb2lab(rgb).astype(np.float32), AlignmentConfig(method=method))


def _permuted(segment_map: np.ndarray, seed: int) -> np.ndarray:
    """The partition with its segment ids shuffled (0 stays 0)."""
    n = int(segment_map.max())
    lookup = np.concatenate([[0], np.random.default_rng(seed).permutation(n) + 1]).astype(np.int32)
    return lookup[segment_map]


@pytest.fixture(scope="module")
def reference() -> ImageAnalysis:
    scene = make_scene(seed=0)
    return _reference(scene.rgb, scene.segment_map)


def test_reference_labels_are_the_segment_ids() -> None:
    scene = make_scene(seed=0)
    labels = reference_labels(scene.segment_map.astype(np.int64))
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, scene.class_map)


def test_patch_grid_labels_takes_the_majority() -> None:
    labels = np.zeros((4, 6), np.int32)
    labels[0, 0:2] = 2  # patch (0, 0): two of four pixels class 2, two class 0 -> tie -> 0
    labels[2:4, 2:4] = 1
    labels[3, 3] = 3  # patch (1, 1): three class 1, one class 3 -> 1
    labels[0:2, 4:6] = 3
    labels[1, 5] = 2  # patch (0, 2): three class 3, one class 2 -> 3
    expected = np.array([[0, 0, 3], [0, 1, 0]], np.int32)
    grid = patch_grid_labels(labels, (2, 3))
    assert grid.dtype == np.int32
    np.testing.assert_array_equal(grid, expected)
    with pytest.raises(ValueError):
        patch_grid_labels(labels, (3, 3))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("anomaly", ["good", "swap", "moved"])
def test_alignment_recovers_the_parts_of_a_shifted_relabelled_scene(
    reference: ImageAnalysis, method: str, anomaly: str
) -> None:
    scene = make_scene(anomaly, seed=3, shift=(6, -10))
    segment_map = _permuted(scene.segment_map, seed=7)
    assert not np.array_equal(segment_map, scene.segment_map)
    labels = _align_scene(reference, scene.rgb, segment_map, method)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, scene.class_map)


@pytest.mark.parametrize("method", METHODS)
def test_a_duplicated_part_gets_its_class_twice(reference: ImageAnalysis, method: str) -> None:
    scene = make_scene("extra", seed=1, shift=(-4, 5))
    segment_map = _permuted(scene.segment_map, seed=2)
    labels = _align_scene(reference, scene.rgb, segment_map, method)
    np.testing.assert_array_equal(labels, scene.class_map)
    red_segments = np.unique(segment_map[labels == 2])
    assert len(red_segments) == 2


def test_hungarian_matches_one_to_one_where_nearest_would_not(reference: ImageAnalysis) -> None:
    """A recoloured part is nearest to another class, but one-to-one matching leaves it only its own."""
    scene = make_scene("colour", seed=6, shift=(-3, 4))
    segment_map = _permuted(scene.segment_map, seed=1)
    patches, lab = _patch_features(scene.rgb), rgb2lab(scene.rgb).astype(np.float32)
    labels = align_hungarian(reference, segment_map, patches, lab)
    np.testing.assert_array_equal(labels, scene.class_map)
    green = segment_map[scene.class_map == 2][0]
    test, classes = _describe(segment_map, patches, lab), _describe(reference.labels, reference.patches, reference.lab)
    cheapest = classes.ids[_matching_cost(test, classes, HungarianConfig()).argmin(axis=1)]
    assert cheapest[test.ids == green][0] != 2


@pytest.mark.parametrize("method", METHODS)
def test_a_missing_part_class_is_absent(reference: ImageAnalysis, method: str) -> None:
    scene = make_scene("missing", seed=2, shift=(3, 3))
    labels = _align_scene(reference, scene.rgb, _permuted(scene.segment_map, seed=5), method)
    np.testing.assert_array_equal(labels, scene.class_map)
    assert set(np.unique(labels).tolist()) == {0, 1, 2, 4}


@pytest.mark.parametrize("method", METHODS)
def test_an_image_without_segments_is_all_background(reference: ImageAnalysis, method: str) -> None:
    scene = make_scene(seed=4)
    labels = _align_scene(reference, scene.rgb, np.zeros_like(scene.segment_map), method)
    assert labels.shape == scene.segment_map.shape
    assert not labels.any()


@pytest.mark.parametrize("method", METHODS)
def test_a_one_class_reference_labels_every_part_as_that_class(method: str) -> None:
    ref_scene = make_scene(seed=0)
    reference = _reference(ref_scene.rgb, (ref_scene.segment_map > 0).astype(np.int32))
    assert reference.n_classes == 2
    scene = make_scene("extra", seed=1, shift=(2, -3))
    labels = _align_scene(reference, scene.rgb, scene.segment_map, method)
    np.testing.assert_array_equal(labels, (scene.class_map > 0).astype(np.int32))


def test_propagation_with_top_k_above_the_reference_size_is_a_full_softmax() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2, 2, 8)).astype(np.float32)
    ref /= np.linalg.norm(ref, axis=2, keepdims=True)
    ref_labels = np.array([[0, 2], [2, 1]], np.int32)
    query = rng.normal(size=(3, 5, 8)).astype(np.float32)
    query /= np.linalg.norm(query, axis=2, keepdims=True)
    probabilities = propagate_labels(ref, ref_labels, 4, query, top_k=10, temperature=0.5)
    assert probabilities.shape == (3, 5, 4)
    for y in range(3):
        for x in range(5):
            similarities = ref.reshape(4, 8) @ query[y, x]
            weights = np.exp(similarities / 0.5) / np.exp(similarities / 0.5).sum()
            expected = [weights[ref_labels.ravel() == c].sum() for c in range(4)]
            np.testing.assert_allclose(probabilities[y, x], expected, rtol=1e-5, atol=1e-6)


def test_propagation_keeps_only_the_top_k_neighbours() -> None:
    ref = np.eye(4, dtype=np.float32).reshape(2, 2, 4)
    ref_labels = np.array([[1, 2], [3, 3]], np.int32)
    query = np.array([0.8, 0.6, 0.0, 0.0], np.float32).reshape(1, 1, 4)
    probabilities = propagate_labels(ref, ref_labels, 4, query, top_k=2, temperature=0.1)[0, 0]
    weight_1 = 1.0 / (1.0 + np.exp(-2.0))  # softmax of (0.8, 0.6) / 0.1
    np.testing.assert_allclose(probabilities, [0.0, weight_1, 1.0 - weight_1, 0.0], rtol=1e-5)
    with pytest.raises(ConfigError):
        propagate_labels(ref, ref_labels, 4, query, top_k=0)
    with pytest.raises(ValueError):
        propagate_labels(ref, ref_labels, 3, query)


def test_snap_gives_each_segment_its_majority_class_and_background_wins_too() -> None:
    probabilities = np.zeros((2, 2, 3), np.float32)
    probabilities[0, :] = [0.1, 0.6, 0.3]  # top half: class 1
    probabilities[1, :] = [0.7, 0.1, 0.2]  # bottom half: background
    segment_map = np.zeros((8, 8), np.int32)
    segment_map[0:5, 1:7] = 4  # mostly top half -> class 1
    segment_map[6:8, 2:6] = 2  # bottom half -> background
    labels = snap_to_segments(probabilities, segment_map)
    assert labels.dtype == np.int32
    expected = np.zeros((8, 8), np.int32)
    expected[segment_map == 4] = 1
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize("n_classes", [1, 600])
def test_snap_matches_torch_bilinear_upsampling_for_any_number_of_classes(n_classes: int) -> None:
    rng = np.random.default_rng(n_classes)
    probabilities = rng.random((5, 7, n_classes)).astype(np.float32)
    segment_map = rng.integers(0, 9, size=(20, 28)).astype(np.int32)
    upsampled = torch.nn.functional.interpolate(
        torch.from_numpy(probabilities).permute(2, 0, 1)[None], size=(20, 28), mode="bilinear", align_corners=False
    )[0].numpy()
    sums = np.stack([upsampled[:, segment_map == s].sum(axis=1) for s in range(9)])
    expected = sums.argmax(axis=1)
    expected[0] = 0
    np.testing.assert_array_equal(snap_to_segments(probabilities, segment_map), expected[segment_map])


def test_unknown_method_is_a_config_error(reference: ImageAnalysis) -> None:
    with pytest.raises(ConfigError, match="propagation"):
        AlignmentConfig(method="deaot")
    scene = make_scene(seed=1)
    with pytest.raises(ConfigError, match="segmenter"):
        _align_scene(reference, scene.rgb, scene.segment_map, "segmenter")


def test_propagation_of_a_37x37_grid_is_fast() -> None:
    """Under 50 ms of CPU time on one thread (CPU time, so that other processes on the machine do not count)."""
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(37, 37, 384)).astype(np.float32)
    ref /= np.linalg.norm(ref, axis=2, keepdims=True)
    ref_labels = rng.integers(0, 12, size=(37, 37)).astype(np.int32)
    query = rng.normal(size=(37, 37, 384)).astype(np.float32)
    query /= np.linalg.norm(query, axis=2, keepdims=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        timings = []
        for _ in range(10):
            start = time.process_time()
            probabilities = propagate_labels(ref, ref_labels, 12, query)
            timings.append(time.process_time() - start)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(probabilities.sum(axis=2), 1.0, rtol=1e-5)
    assert min(timings) < 0.05, f"propagation took {min(timings) * 1000:.1f} ms of CPU time"
