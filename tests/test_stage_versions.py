"""Golden fingerprints of the weight-free stages: a stage's output may change only with its ``version``.

The cache key of an image's model outputs holds each stage's ``version``
(``loco_ad.identity``); a change of a stage's output that keeps its version
would let old cached outputs be served as new ones. These tests run each
weight-free stage, as the ``offline`` preset builds it, on one generated scene
and compare summary statistics of its output with ``golden_stages.json``, which
records them with the version they belong to. After a deliberate change of a
stage's output, bump its ``version`` and regenerate the file::

    python -m tests.test_stage_versions
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from loco_ad.build import build_embedder, build_segmenter
from loco_ad.config import get_preset
from loco_ad.stages.colour_segment import ColourClusterSegmenter
from loco_ad.stages.handcrafted import HandcraftedEmbedder
from tests.scenes import make_scene

GOLDEN = Path(__file__).with_name("golden_stages.json")
SIZE = (112, 168)  # a multiple of the patch size: the embedder sees the scene as drawn


def fingerprints() -> dict[str, dict]:
    """Per stage class: its version and rounded statistics of its output on fixed generated scenes."""
    segmenter, embedder = build_segmenter(get_preset("offline")), build_embedder(get_preset("offline"))
    assert isinstance(segmenter, ColourClusterSegmenter) and isinstance(embedder, HandcraftedEmbedder)
    segmenter.fit([make_scene("good", seed=seed, size=SIZE).rgb for seed in range(2)])
    image = make_scene("missing", seed=7, size=SIZE).rgb
    partition, classes = segmenter.segment_classes(image)
    features = embedder.embed([image])[0]
    return {
        "ColourClusterSegmenter": {
            "version": ColourClusterSegmenter.version,
            "colours": np.round(segmenter.colours_.astype(np.float64), 2).tolist(),
            "segment_areas": np.bincount(partition.ravel()).tolist(),
            "class_areas": np.bincount(classes.ravel()).tolist(),
        },
        "HandcraftedEmbedder": {
            "version": HandcraftedEmbedder.version,
            "shape": list(features.shape),
            "mean": np.round(features.mean(axis=(0, 1), dtype=np.float64), 5).tolist(),
            "std": np.round(features.std(axis=(0, 1), dtype=np.float64), 5).tolist(),
            "corner_patches": np.round(features[[0, -1], [0, -1]].astype(np.float64), 5).tolist(),
        },
    }


@pytest.mark.parametrize("stage", ["ColourClusterSegmenter", "HandcraftedEmbedder"])
def test_output_changes_only_with_the_version(stage):
    golden = json.loads(GOLDEN.read_text())[stage]
    current = fingerprints()[stage]
    assert current["version"] == golden["version"], (
        f"{stage}.version is {current['version']} but {GOLDEN.name} was made with {golden['version']}: "
        "regenerate it with `python -m tests.test_stage_versions`"
    )
    for name, expected in golden.items():
        np.testing.assert_allclose(
            current[name], expected, rtol=0, atol=2e-4 if stage == "HandcraftedEmbedder" else 0.011,
            err_msg=f"{stage} output changed ({name}) but its version did not: bump {stage}.version, then "
            "regenerate the fingerprints with `python -m tests.test_stage_versions`",
        )


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(fingerprints(), indent=1) + "\n")
    print(f"wrote {GOLDEN}", file=sys.stderr)
