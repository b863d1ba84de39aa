"""Scores do not depend on how many threads compute them (k-means, BLAS, torch and faiss thread counts)."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import torch
from threadpoolctl import threadpool_limits

from loco_ad.config import get_preset
from loco_ad.data import draw_references, load_category, read_image
from loco_ad.pipeline import Pipeline
from loco_ad.stages.colour_segment import ColourClusterSegmenter


def _with_threads(count: int, work):
    """``work()`` with ``count`` threads for OpenMP and BLAS (threadpoolctl), torch and faiss."""
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(count)
    faiss.omp_set_num_threads(count)
    try:
        with threadpool_limits(limits=count):
            return work()
    finally:
        torch.set_num_threads(torch_threads)
        faiss.omp_set_num_threads(torch_threads)


def test_colour_clusters_are_the_same_on_one_and_two_threads(loco_sample: Path) -> None:
    """k-means sums float32 centres per thread: with two threads the centres moved and pixels changed colour."""
    data = load_category(loco_sample, "juice_bottle")
    references = [read_image(path, (256, 256)) for path in draw_references(data.train, 2, 42)]
    tests = [read_image(sample.path, (256, 256)) for sample in data.test]

    def colours():
        segmenter = ColourClusterSegmenter().fit(references)
        return segmenter.kmeans_.cluster_centers_, [segmenter.colour_map(rgb) for rgb in tests]

    (centres_1, maps_1), (centres_2, maps_2) = _with_threads(1, colours), _with_threads(2, colours)
    np.testing.assert_array_equal(centres_1, centres_2)
    assert all(np.array_equal(a, b) for a, b in zip(maps_1, maps_2))


def test_offline_scores_are_the_same_on_one_and_two_threads(loco_sample: Path) -> None:
    data = load_category(loco_sample, "juice_bottle")
    references = draw_references(data.train, 2, 42)
    tests = [sample.path for sample in data.test]

    def scores():
        pipeline = Pipeline(get_preset("offline"), cache=None, progress=False).fit(references)
        return [prediction.scores for prediction in pipeline.predict_many(tests, progress=False, remember=False)]

    assert _with_threads(1, scores) == _with_threads(2, scores)
