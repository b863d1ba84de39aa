"""The pipeline: fit/predict on generated scenes, the cache contract, and the SAM + DINOv2 code path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from loco_ad.cache import AnalysisCache
from loco_ad.config import ALL_SCORERS, apply_overrides, get_preset
from loco_ad.errors import DataError, ImageReadError
from loco_ad.pipeline import Pipeline
from tests.scenes import LOGICAL, make_scene

SIZE = (112, 168)


def _references(n: int = 4) -> list[np.ndarray]:
    return [make_scene("good", seed=seed, size=SIZE).rgb for seed in range(n)]


def _tests() -> list[np.ndarray]:
    return [make_scene(kind, seed=100 + i, size=SIZE).rgb for i, kind in enumerate(("good", "good", *LOGICAL))]


def _offline(cache_dir=None, scorers=ALL_SCORERS) -> Pipeline:
    config = get_preset("offline").with_scorers(tuple(scorers))
    return Pipeline(config, cache=AnalysisCache(cache_dir) if cache_dir else None, progress=False)


def test_logical_anomalies_outscore_good_scenes():
    pipeline = _offline(scorers=("class_agnostic", "foreground", "histogram")).fit(_references())
    predictions = pipeline.predict_many(_tests())
    good = [p.score for p in predictions[:2]]
    for kind, prediction in zip(LOGICAL, predictions[2:]):
        assert np.isfinite(prediction.score)
        if kind in ("missing", "extra", "colour"):
            assert prediction.score > max(good), kind
    first = predictions[0]
    assert first.map.shape == first.analysis.rgb.shape[:2]
    assert set(first.scores) == {"class_agnostic", "foreground", "histogram"}
    assert first.score == pytest.approx(sum(first.scores.values()))


def test_second_run_does_no_model_work_and_matches(tmp_path, monkeypatch):
    first = _offline(tmp_path).fit(_references())
    expected = [p.score for p in first.predict_many(_tests())]
    assert first.cache.misses == 4 + 7 and first.cache.hits == 0

    again = _offline(tmp_path, scorers=("histogram", "class_agnostic", "foreground", "embedding", "colour", "location", "class_aware"))
    monkeypatch.setattr(type(again.embedder), "embed", lambda *a, **k: pytest.fail("model work on a warm cache"))
    again.fit(_references())
    assert [p.score for p in again.predict_many(_tests())] == pytest.approx(expected)
    assert again.cache.misses == 0


def test_a_fit_on_one_reference_runs_with_the_few_references_settings(tmp_path):
    config = apply_overrides(
        get_preset("offline"),
        ["ensemble.scorers=foreground", "few_references=embedder.handcrafted.colour_weight=0", "few_references_max=1"],
    )
    pipeline = Pipeline(config, cache=AnalysisCache(tmp_path), progress=False)
    scene = _tests()[0]
    one = pipeline.fit(_references(1)).predict(scene)
    assert pipeline.active_config == config.for_references(1) and pipeline.embedder.colour_weight == 0
    two = pipeline.fit(_references(2)).predict(scene)
    assert pipeline.active_config is config and pipeline.embedder.colour_weight == 1
    assert one.analysis.patches.shape == two.analysis.patches.shape
    assert not np.allclose(one.analysis.patches, two.analysis.patches)  # other descriptors, each cached under its own key
    assert pipeline.cache.misses == 1 + 1 + 2 + 1
    again = pipeline.fit(_references(1)).predict(scene)
    np.testing.assert_array_equal(again.analysis.patches, one.analysis.patches)
    assert again.score == pytest.approx(one.score) and pipeline.cache.misses == 5


def test_images_scored_without_remember_are_not_kept(monkeypatch):
    pipeline = _offline(scorers=("class_agnostic",)).fit(_references())
    embed = type(pipeline.embedder).embed
    calls: list[int] = []
    monkeypatch.setattr(type(pipeline.embedder), "embed", lambda self, images: calls.append(len(images)) or embed(self, images))
    image = _tests()[2]
    first = pipeline.predict(image)
    second = pipeline.predict_many([image], remember=False)[0]
    assert calls == [1, 1]  # not kept in memory (and no disk cache here): analysed again
    assert second.score == first.score
    pipeline.predict_many([image])
    pipeline.predict_many([image])
    assert calls == [1, 1, 1]  # remembered by default, as an evaluation re-scores its images


def test_scores_only_prediction_drops_the_arrays():
    prediction = _offline(scorers=("class_agnostic", "histogram")).fit(_references()).predict(_tests()[0])
    light = prediction.scores_only()
    assert light.map is None and light.analysis is None
    assert (light.score, light.scores, light.raw_scores) == (prediction.score, prediction.scores, prediction.raw_scores)


def test_interrupted_run_resumes_with_identical_results(tmp_path):
    complete = _offline(tmp_path / "a").fit(_references())
    expected = [p.score for p in complete.predict_many(_tests())]
    killed = _offline(tmp_path / "b")
    killed.analyse_references(_references())  # the work done before the kill: the references,
    killed.prepare_many(_tests()[:3])  # then three test images (registered onto the same first reference)
    resumed = _offline(tmp_path / "b").fit(_references())
    assert [p.score for p in resumed.predict_many(_tests())] == expected
    assert resumed.cache.hits == 4 + 3


PAIR = ("class_agnostic", "histogram")  # one feature-based and one segment-based scorer: cheap, and sensitive to both


def test_zero_byte_cache_entries_are_recomputed_with_unchanged_scores(tmp_path, caplog):
    expected = [p.score for p in _offline(tmp_path, scorers=PAIR).fit(_references()).predict_many(_tests())]
    entries = sorted(tmp_path.rglob("*.npz"))
    assert len(entries) == 4 + 7
    for entry in entries:
        entry.write_bytes(b"")  # a full disk, or a crash before the data reached the disk
    again = _offline(tmp_path, scorers=PAIR).fit(_references())
    assert [p.score for p in again.predict_many(_tests())] == expected
    assert (again.cache.hits, again.cache.misses) == (0, 4 + 7)
    assert "damaged cache entry" in caplog.text
    assert all(np.load(entry)["patches"].size for entry in entries)  # stored again, whole


@pytest.mark.parametrize("damage", ["swapped", "flipped"])
def test_swapped_or_flipped_cache_entries_are_recomputed_with_unchanged_scores(tmp_path, caplog, damage):
    expected = [p.score for p in _offline(tmp_path, scorers=PAIR).fit(_references()).predict_many(_tests())]
    first, second = sorted(tmp_path.rglob("*.npz"))[:2]
    if damage == "swapped":  # two whole, valid entries under each other's names
        one, other = first.read_bytes(), second.read_bytes()
        first.write_bytes(other)
        second.write_bytes(one)
    else:  # one array reversed along its rows: same shape, dtype and values
        with np.load(first) as stored:
            arrays = {name: stored[name] for name in stored.files}
        arrays["patches"] = arrays["patches"][::-1].copy()
        with open(first, "wb") as file:
            np.savez(file, **arrays)
    again = _offline(tmp_path, scorers=PAIR).fit(_references())
    assert [p.score for p in again.predict_many(_tests())] == expected
    assert again.cache.misses == (2 if damage == "swapped" else 1)
    assert "damaged cache entry" in caplog.text


def test_input_size_resizes_before_the_model():
    config = dataclasses.replace(get_preset("offline"), input_size=(64, 64))
    pipeline = Pipeline(config, progress=False).fit(_references(2))
    assert pipeline.references[0].rgb.shape == (448, 448, 3)


def test_fit_needs_images_and_predict_needs_fit():
    with pytest.raises(DataError):
        _offline().fit([])
    with pytest.raises(RuntimeError):
        _offline().predict(_references(1)[0])


@pytest.mark.parametrize("single", ["a.png", Path("a.png"), np.zeros((8, 8, 3), np.uint8)], ids=["str", "path", "array"])
def test_one_image_where_a_list_is_expected_is_refused(single):
    with pytest.raises(DataError, match="wrap it in a list"):
        _offline().fit(single)
    fitted = _offline(scorers=("histogram",)).fit(_references(1))
    with pytest.raises(DataError, match="wrap it in a list"):
        fitted.predict_many(single)


def test_missing_file_and_empty_arrays_are_data_errors(tmp_path):
    pipeline = _offline(scorers=("histogram",)).fit(_references(1))
    with pytest.raises(ImageReadError, match="no such file"):
        pipeline.predict(tmp_path / "missing.png")
    for shape in ((0, 0, 3), (0, 12, 3), (12, 0, 3)):
        with pytest.raises(DataError, match="expected an H×W×3"):
            pipeline.predict(np.zeros(shape, np.uint8))


def test_degenerate_inputs_do_not_crash():
    uniform = np.full((*SIZE, 3), 90, np.uint8)
    pipeline = _offline().fit([uniform])
    assert pipeline.used_fallback
    prediction = pipeline.predict(make_scene("good", size=SIZE).rgb)
    assert np.isfinite(prediction.score) and all(np.isfinite(v) for v in prediction.scores.values())
    identical = _offline().fit([make_scene(seed=1, size=SIZE).rgb] * 3)
    assert np.isfinite(identical.predict(uniform).score)


def test_leave_one_out_scores_of_references():
    pipeline = _offline(scorers=("histogram",)).fit(_references(3))
    scores = pipeline.leave_one_out_scores()
    assert len(scores) == 3 and all(np.isfinite(s) for s in scores)
    # histogram alone: its weight is at least its largest leave-one-out score, which thus contributes at most
    # what a normalised score of 1 does (the offline preset sums normalised scores)
    assert pipeline.config.ensemble.combination == "sum" and max(scores) <= 1 + 1e-9
    assert _offline().fit(_references(1)).leave_one_out_scores() == []


def test_sam_and_dinov2_code_path_with_tiny_models(tmp_path):
    from loco_ad.stages.embed import Dinov2Embedder
    from loco_ad.stages.segment import SamSegmenter
    from tests.tiny_models import tiny_dinov2, tiny_sam

    config = apply_overrides(get_preset("fast").with_scorers(ALL_SCORERS), ["embedder.image_size=112"])
    pipeline = Pipeline(
        config,
        segmenter=SamSegmenter(tiny_sam(), points_per_side=4),
        embedder=Dinov2Embedder(tiny_dinov2()),
        cache=AnalysisCache(tmp_path),
        progress=False,
    ).fit(_references(2))
    prediction = pipeline.predict(make_scene("missing", size=SIZE).rgb)
    assert np.isfinite(prediction.score)
    height, width = prediction.analysis.rgb.shape[:2]
    assert (height, width) == config.working_size(*SIZE)
    assert prediction.analysis.patches.shape[:2] == (height // 14, width // 14)
    stored = AnalysisCache(tmp_path)
    key = stored.key(prediction.analysis.rgb, pipeline.model_key)
    assert set(stored.load(key)) == {"patches", "segment_map"}
