"""Tests of the leave-one-out weights and the ensemble."""

from __future__ import annotations

import numpy as np
import pytest

from loco_ad.analysis import Score
from loco_ad.errors import ConfigError, DataError
from loco_ad.features import make_scorer
from loco_ad.weights import FALLBACK_SCALES, WEIGHT_FLOOR_FRACTION, Ensemble, leave_one_out_weight
from tests.analyses import analysis_from_scene
from tests.scenes import make_scene


class _DistanceToMean:
    """A fake scorer on plain numbers: score = |x − mean of the fitted numbers|."""

    name = "fake"

    def fit(self, references):
        self.mean_ = float(np.mean(references))
        return self

    def score(self, image):
        return Score(abs(image - self.mean_))


def test_leave_one_out_weight_of_known_scores() -> None:
    # leave 1 out: |1 − 3| = 2; leave 2 out: |2 − 2.5| = 0.5; leave 4 out: |4 − 1.5| = 2.5
    assert leave_one_out_weight(_DistanceToMean, [1.0, 2.0, 4.0]) == pytest.approx(2.5)


def test_leave_one_out_weight_of_histogram_by_hand() -> None:
    # the tray (class 1) covers the first 32, 64 and 80 of 128 rows: shares 0.25, 0.5, 0.625
    scene = make_scene(seed=0)
    references = []
    for rows in (32, 64, 80):
        labels = np.zeros_like(scene.class_map)
        labels[:rows] = 1
        references.append(analysis_from_scene(scene, labels=labels))
    # left-out 0.25 -> nearest 0.5: 0.25; 0.5 -> 0.625: 0.125; 0.625 -> 0.5: 0.125
    assert leave_one_out_weight(lambda: make_scorer("histogram"), references) == pytest.approx(0.25)


def test_leave_one_out_needs_two_references() -> None:
    with pytest.raises(DataError):
        leave_one_out_weight(_DistanceToMean, [1.0])


def test_identical_references_get_the_floor() -> None:
    references = [analysis_from_scene(make_scene(seed=0))] * 3
    for name in ("histogram", "class_agnostic"):
        weight = leave_one_out_weight(lambda: make_scorer(name), references)
        assert weight == pytest.approx(WEIGHT_FLOOR_FRACTION * FALLBACK_SCALES[name])
    ensemble = Ensemble(("class_agnostic", "histogram")).fit(references)
    result = ensemble.score(analysis_from_scene(make_scene("missing", seed=5)))
    assert np.isfinite(result.value) and np.isfinite(result.map).all()


@pytest.fixture(scope="module")
def references():
    return [analysis_from_scene(make_scene(seed=s)) for s in (0, 1, 2, 3)]


def test_ensemble_sums_normalised_scores(references) -> None:
    names = ("class_agnostic", "foreground", "histogram", "location")
    ensemble = Ensemble(names, multipliers={"location": 0.5}, combination="sum", cap=None).fit(references)
    assert not ensemble.used_fallback
    for name in names:
        expected = leave_one_out_weight(lambda: make_scorer(name), references)
        assert ensemble.weights[name] == pytest.approx(expected)
    image = analysis_from_scene(make_scene("scratch", seed=20))
    result = ensemble.score(image)
    raw = {name: make_scorer(name).fit(references).score(image) for name in names}
    multiplier = {"class_agnostic": 1.0, "foreground": 1.0, "histogram": 1.0, "location": 0.5}
    for name in names:
        assert result.raw_scores[name] == pytest.approx(raw[name].value)
        assert result.scores[name] == pytest.approx(raw[name].value / ensemble.weights[name] * multiplier[name])
    assert result.value == pytest.approx(sum(result.scores.values()))
    expected_map = sum(raw[n].map / ensemble.weights[n] for n in ("class_agnostic", "foreground"))
    np.testing.assert_allclose(result.map, expected_map, rtol=1e-5)


def test_ensemble_ranks_anomalies_above_good(references) -> None:
    ensemble = Ensemble(("class_agnostic", "foreground", "histogram", "location")).fit(references)
    good = max(ensemble.score(analysis_from_scene(make_scene(seed=s))).value for s in (10, 11, 12))
    for anomaly in ("missing", "extra", "swap", "moved", "scratch"):
        assert ensemble.score(analysis_from_scene(make_scene(anomaly, seed=20))).value > good, anomaly


def test_ensemble_without_patch_scorer_has_no_map(references) -> None:
    result = Ensemble(("histogram", "colour")).fit(references).score(references[0])
    assert result.map is None and set(result.scores) == {"histogram", "colour"}


def test_single_reference_uses_fallback_scales(references) -> None:
    names = ("class_agnostic", "class_aware", "foreground", "embedding", "histogram", "colour", "location")
    ensemble = Ensemble(names).fit(references[:1])
    assert ensemble.used_fallback
    assert ensemble.weights == {name: FALLBACK_SCALES[name] for name in names}
    result = ensemble.score(analysis_from_scene(make_scene("colour", seed=20)))
    assert np.isfinite(result.value) and result.map.shape == references[0].rgb.shape[:2]


def test_ensemble_passes_scorer_params(references) -> None:
    ensemble = Ensemble(("colour",), scorer_params={"colour": {"mode": "ab_ratio"}}).fit(references)
    assert ensemble.scorers_["colour"].mode == "ab_ratio"


def test_ensemble_needs_references() -> None:
    with pytest.raises(DataError):
        Ensemble(("histogram",)).fit([])


def test_log_combination_and_cap_by_hand(references) -> None:
    plain = Ensemble(("histogram",), combination="sum", cap=None)
    assert plain.contribution("histogram", 3.0, 2.0) == pytest.approx(1.5)
    log = Ensemble(("histogram",), multipliers={"histogram": 2.0}, combination="log", log_offset=0.1, cap=1.2)
    assert log.contribution("histogram", 3.0, 2.0) == pytest.approx(2.0 * np.log(1.2 + 0.1))
    assert log.contribution("histogram", 1.0, 2.0) == pytest.approx(2.0 * np.log(0.5 + 0.1))
    fitted = Ensemble(("class_agnostic", "histogram"), combination="log", cap=None).fit(references)
    result = fitted.score(analysis_from_scene(make_scene("missing", seed=5)))
    for name in ("class_agnostic", "histogram"):
        assert result.scores[name] == pytest.approx(np.log(result.raw_scores[name] / fitted.weights[name] + 0.1))
    assert plain.value_at_weights() == 1.0 and Ensemble(("histogram", "colour"), combination="sum").value_at_weights() == 2.0
    assert log.value_at_weights() == pytest.approx(2.0 * np.log(1.1))
    with pytest.raises(ConfigError):
        Ensemble(("histogram",), combination="max")
