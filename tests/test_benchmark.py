"""experiments/benchmark.py: the imagenet scorer's network is a stage of its own, counted in the projection."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.benchmark import bench_models, projection
from loco_ad.config import apply_overrides, get_preset


def _noise_images(config, count: int) -> list[np.ndarray]:
    height, width = config.working_size(400, 800)
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)
    return [np.ascontiguousarray(np.roll(rgb, 3 * shift, axis=1)) for shift in range(count)]


@pytest.mark.parametrize("scorers, timed", [("class_agnostic,foreground,pixel,imagenet", True), ("class_agnostic,foreground", False)])
def test_the_imagenet_network_is_timed_per_image_when_the_preset_sums_it(scorers: str, timed: bool) -> None:
    config = apply_overrides(get_preset("offline"), [f"ensemble.scorers={scorers}"])
    rows, _ = bench_models(config, _noise_images(config, 2), "cpu", random_weights=False)
    imagenet = [row for row in rows if row["stage"] == "imagenet"]
    assert len(imagenet) == (2 if timed else 0)
    assert all(row["s_per_image"] > 0 for row in imagenet)
    slower = [dict(row, s_per_image=row["s_per_image"] + 1.0) if row["stage"] == "imagenet" else row for row in rows]
    detector = [dict(k=4, fit_s=0.0, score_s_per_image=0.0)]
    added = projection(config, slower, detector)["model_min"] - projection(config, rows, detector)["model_min"]
    assert added == pytest.approx((1568 + 120) / 60 if timed else 0.0)  # once per test image and reference
