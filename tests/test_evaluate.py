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


# ------------------------------------------------------- streaming evaluation


def _pipeline(registration: str, cache_dir=None):
    from loco_ad.cache import AnalysisCache
    from loco_ad.config import apply_overrides, get_preset
    from loco_ad.pipeline import Pipeline

    config = apply_overrides(get_preset("offline"), [f"registration.motion={registration}", "few_references="])
    return Pipeline(config, cache=AnalysisCache(cache_dir) if cache_dir else None, progress=False)


@pytest.mark.parametrize("registration", ["none", "euclidean"])
def test_test_images_stream_through_each_fit_in_batches(tiny_loco_root, tmp_path, monkeypatch, registration):
    from loco_ad import evaluate as evaluation
    from loco_ad.data import load_category
    from loco_ad.pipeline import Pipeline

    data = load_category(tiny_loco_root, "juice_bottle")
    expected = evaluation.evaluate(_pipeline(registration), [data], seeds=[0], shots=[2, 3])
    monkeypatch.setattr(evaluation, "BATCH", 3)
    calls: list[int] = []
    raw_scores_many = Pipeline.raw_scores_many
    monkeypatch.setattr(Pipeline, "raw_scores_many", lambda self, images, size, whole=False: calls.append(
        len(images)) or raw_scores_many(self, images, size, whole))
    pipeline = _pipeline(registration, tmp_path / "cache")
    handed: list = []
    result = evaluation.evaluate(pipeline, [data], seeds=[0], shots=[2, 3], on_predictions=lambda *a: handed.append(a))
    assert calls and max(calls) <= 3
    test_paths = {str(sample.path.resolve()) for sample in data.test}
    assert not any(path in test_paths for path, _, _ in pipeline._keys_by_path)  # no test image kept in memory
    assert len(pipeline._prepared) <= 3  # the references of the last fit
    assert result.scores == expected.scores and result.metrics == expected.metrics  # batches change no number
    assert [len(predictions) for _, _, _, predictions, _ in handed] == [len(data.test)] * 2
    assert all(p.map is None and p.analysis is None for *_, predictions, _ in handed for p in predictions)


def test_a_hook_keeps_what_its_keep_function_keeps(tiny_loco_root):
    from loco_ad.evaluate import evaluate
    from loco_ad.data import load_category

    data = load_category(tiny_loco_root, "juice_bottle")
    handed: dict = {}
    evaluate(_pipeline("none"), [data], seeds=[0], shots=[2, 3], pixel=False,
             on_predictions=lambda data, seed, k, predictions, detector: handed.update({k: predictions}),
             keep=lambda seed, k, prediction: prediction if k == 3 else prediction.scores_only())
    assert all(p.analysis is None for p in handed[2]) and all(p.analysis is not None for p in handed[3])
