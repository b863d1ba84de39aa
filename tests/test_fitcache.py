"""Fitted state and raw scores in the cache: a warm re-run fits and scores nothing, ensemble changes re-combine,
other settings miss, results are those of a cold run, and a killed run leaves nothing served wrongly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loco_ad import evaluate as evaluation
from loco_ad.cache import AnalysisCache
from loco_ad.config import apply_overrides, get_preset
from loco_ad.core import Detector
from loco_ad.data import load_category
from loco_ad.pipeline import Pipeline

SHOTS = [1, 2, 3]


def _evaluate(root: Path, overrides=(), cache: Path | None = None, shots=SHOTS):
    config = apply_overrides(get_preset("offline"), list(overrides))
    pipeline = Pipeline(config, cache=AnalysisCache(cache) if cache else None, progress=False)
    return evaluation.evaluate(pipeline, [load_category(root, "juice_bottle")], seeds=[0, 1], shots=shots)


def _same(a, b) -> bool:
    return a.scores == b.scores and repr(a.metrics) == repr(b.metrics) and a.fallback == b.fallback


@pytest.fixture
def no_work(monkeypatch):
    """Counts scorer fits, scorings and model runs (a warm re-run does none of them)."""
    counts = {"fit": 0, "raw": 0, "models": 0}

    def counting(name, original):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(Detector, "fit", counting("fit", Detector.fit))
    monkeypatch.setattr(Detector, "raw", counting("raw", Detector.raw))
    monkeypatch.setattr(Pipeline, "_run_models", counting("models", Pipeline._run_models))
    return counts


def test_a_warm_re_run_fits_and_scores_nothing_and_matches_the_cold_run(tiny_loco_root, tmp_path, no_work):
    cold = _evaluate(tiny_loco_root, cache=tmp_path / "cache")
    assert no_work["fit"] and no_work["raw"] and no_work["models"]
    no_work.update(fit=0, raw=0, models=0)
    warm = _evaluate(tiny_loco_root, cache=tmp_path / "cache")
    assert no_work == {"fit": 0, "raw": 0, "models": 0}
    assert _same(warm, cold)
    assert _same(_evaluate(tiny_loco_root), cold)  # --no-cache: the same numbers


@pytest.mark.parametrize(
    "overrides",
    [
        ["ensemble.cap=3", "ensemble.combination=log"],
        ["ensemble.multipliers.histogram=0.5", "ensemble.weight_floor_fraction=0.2", "ensemble.threshold_rule=fpr"],
        ["ensemble.scorers=class_agnostic,foreground", "ensemble.single_reference_scorers=foreground"],
    ],
)
def test_an_ensemble_change_re_combines_cached_raw_scores(tiny_loco_root, tmp_path, no_work, overrides):
    _evaluate(tiny_loco_root, cache=tmp_path / "cache")
    no_work.update(fit=0, raw=0, models=0)
    changed = _evaluate(tiny_loco_root, overrides, cache=tmp_path / "cache")
    assert no_work == {"fit": 0, "raw": 0, "models": 0}
    assert _same(changed, _evaluate(tiny_loco_root, overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        ["scorers.class_agnostic.top_fraction=0.1"],  # a scorer's setting
        ["embedder.handcrafted.position_weight=4"],  # the analyses
        ["registration.motion=none"],
        ["few_references=embedder.handcrafted.colour_weight=0.5"],  # the settings of k = 1 only
        ["ensemble.scorers=class_agnostic,foreground,histogram,colour"],  # a scorer not computed before
    ],
)
def test_a_change_of_what_raw_scores_depend_on_refits(tiny_loco_root, tmp_path, no_work, overrides):
    _evaluate(tiny_loco_root, cache=tmp_path / "cache")
    no_work.update(fit=0, raw=0)
    changed = _evaluate(tiny_loco_root, overrides, cache=tmp_path / "cache")
    assert no_work["fit"] and no_work["raw"]
    assert _same(changed, _evaluate(tiny_loco_root, overrides))


def test_other_references_are_another_fit(tiny_loco_root, tmp_path, no_work):
    _evaluate(tiny_loco_root, cache=tmp_path / "cache", shots=[2])
    no_work.update(fit=0, raw=0)
    config = get_preset("offline")
    pipeline = Pipeline(config, cache=AnalysisCache(tmp_path / "cache"), progress=False)
    data = load_category(tiny_loco_root, "juice_bottle")
    other = evaluation.evaluate(pipeline, [data], seeds=[7], shots=[2])
    assert no_work["fit"] == 1 and no_work["raw"] == len(data.test)
    fresh = evaluation.evaluate(Pipeline(config, progress=False), [data], seeds=[7], shots=[2])
    assert _same(other, fresh)


def _run(root: Path, cache: Path, out: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "loco_ad.run", "--data-root", str(root), "--category", "juice_bottle",
               "--shots", "1", "2", "3", "--seeds", "0", "1", "--preset", "offline", "--quiet",
               "--cache-dir", str(cache), "--out", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_a_run_killed_mid_way_leaves_nothing_served_wrongly(tiny_loco_root, tmp_path):
    cache = tmp_path / "cache"
    killed = _run(tiny_loco_root, cache, tmp_path / "killed")
    deadline = time.monotonic() + 120
    while len(list(cache.glob("*/*.npz"))) < 40 and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert killed.poll() is None, "the run ended before it could be killed"
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    resumed = _run(tiny_loco_root, cache, tmp_path / "resumed")
    assert resumed.wait() == 0, resumed.stderr.read()
    cold = _run(tiny_loco_root, tmp_path / "cold_cache", tmp_path / "cold")
    assert cold.wait() == 0, cold.stderr.read()
    for name in ("scores.csv", "metrics.csv"):
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "cold" / name).read_bytes()
    assert not (tmp_path / "killed").exists()


def test_reference_draws_are_stored_so_that_a_warm_run_needs_no_torch(tmp_path, monkeypatch):
    from loco_ad import data, fitcache

    train = [tmp_path / f"{i:03d}.png" for i in range(10)]
    cache = AnalysisCache(tmp_path / "cache")
    expected = {(k, seed): data.draw_references(train, k, seed) for k in (1, 4, 8) for seed in (0, 42)}
    assert {(k, seed): fitcache.draw_references(cache, train, k, seed) for k, seed in expected} == expected
    monkeypatch.setattr(data, "draw_references", lambda *args: pytest.fail("drawn again"))
    assert {(k, seed): fitcache.draw_references(cache, train, k, seed) for k, seed in expected} == expected


def test_what_the_references_decided_is_stored_with_the_fit(tiny_loco_root, tmp_path, no_work, monkeypatch):
    from loco_ad import pipeline as pipeline_module

    choices = ["adapt.choices=registration.motion=euclidean|none"]
    cold = _evaluate(tiny_loco_root, choices, cache=tmp_path / "cache")
    assert cold.decisions and {row["k"] for row in cold.decisions} == set(SHOTS)
    no_work.update(fit=0, raw=0, models=0)
    with monkeypatch.context() as patch:
        patch.setattr(pipeline_module, "choose_settings", lambda *args: pytest.fail("decided again"))
        warm = _evaluate(tiny_loco_root, choices, cache=tmp_path / "cache")
    assert no_work == {"fit": 0, "raw": 0, "models": 0}
    assert _same(warm, cold) and warm.decisions == cold.decisions
    no_work.update(fit=0)  # decisions score with the ensemble: another cap is another fit
    _evaluate(tiny_loco_root, [*choices, "ensemble.cap=3"], cache=tmp_path / "cache", shots=[2])
    assert no_work["fit"]
