"""Settings the references decide: leave-one-out over the references with synthetic defects (``loco_ad.adapt``)."""

from __future__ import annotations

import numpy as np
import pytest

from loco_ad.adapt import choose_settings
from loco_ad.config import ConfigError, apply_overrides, get_preset
from loco_ad.pipeline import Pipeline
from loco_ad.synthetic import DEFECTS
from tests.scenes import make_scene

CHOICES = "adapt.choices=registration.motion=euclidean|none,embedder.handcrafted.position_weight=8|0"


def config_with(*overrides: str):
    return apply_overrides(get_preset("offline"), list(overrides))


def test_candidates_are_every_combination_first_values_first() -> None:
    assert config_with(CHOICES).adapt.candidates() == [
        ("registration.motion=euclidean", "embedder.handcrafted.position_weight=8"),
        ("registration.motion=euclidean", "embedder.handcrafted.position_weight=0"),
        ("registration.motion=none", "embedder.handcrafted.position_weight=8"),
        ("registration.motion=none", "embedder.handcrafted.position_weight=0"),
    ]


@pytest.mark.parametrize(
    "choice, message",
    [
        ("registration.motion=euclidean|sideways", "adapt.choices: bad value 'sideways'"),
        ("registration.motoin=none", "unknown setting"),
        ("registration.motion", "must read key=value1"),
        ("adapt.seed=1|2", "cannot choose the adapt settings"),
    ],
)
def test_bad_choices_are_refused(choice: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_with(f"adapt.choices={choice}")


def references(n: int) -> list[np.ndarray]:
    return [make_scene(seed=seed).rgb for seed in range(n)]


def test_the_candidate_that_separates_defects_best_is_chosen_and_recorded() -> None:
    """A stub score function: the candidate without registration scores defects high, the others at random."""
    calls = []

    def score(config, fit_images, tests):
        calls.append((config.registration.motion, len(fit_images), len(tests)))
        if config.registration.motion == "none":
            return [0.0] + [1.0] * (len(tests) - 1)
        return list(np.random.default_rng(len(calls)).random(len(tests)))

    config, record = choose_settings(config_with(CHOICES, "adapt.defects_per_kind=1"), references(3), score)
    assert config.registration.motion == "none" and config.adapt.choices  # the choice applied, the offer kept
    assert record["chosen"]["registration.motion"] == "none" and record["references"] == 3
    assert len(record["auroc"]) == 4 and max(record["auroc"].values()) == 1.0
    assert set(calls) >= {("none", 2, 1 + len(DEFECTS)), ("euclidean", 2, 1 + len(DEFECTS))}
    assert all(c[0] in ("none", "euclidean") for c in calls) and len(calls) == 4 * 3


def test_a_lead_within_the_margin_keeps_the_first_values() -> None:
    def score(config, fit_images, tests):  # defects rank above the good image except one: AUROC 1 - 1/(2·n) without registration
        lead = config.registration.motion == "none"
        return [0.5] + [1.0] * (len(tests) - 2) + [0.6 if lead else 0.4]

    for margin, expected in ((0.0, "none"), (0.5, "euclidean")):
        config, record = choose_settings(config_with("adapt.choices=registration.motion=euclidean|none", f"adapt.margin={margin}"),
                                         references(2), score)
        assert config.registration.motion == expected == record["chosen"]["registration.motion"]


def test_a_tie_keeps_the_first_values_and_too_few_references_try_nothing() -> None:
    constant = lambda config, fit_images, tests: [0.5] * len(tests)  # noqa: E731
    config, record = choose_settings(config_with(CHOICES), references(2), constant)
    assert record["chosen"] == {"registration.motion": "euclidean", "embedder.handcrafted.position_weight": "8"}
    assert config.embedder.handcrafted.position_weight == 8
    never = lambda *args: pytest.fail("nothing is scored with one reference")  # noqa: E731
    config, record = choose_settings(config_with(CHOICES, "registration.motion=none"), references(1), never)
    assert config.registration.motion == "euclidean" and record == {"chosen": record["chosen"], "references": 1}


def test_the_pipeline_fits_with_the_chosen_settings_and_exposes_them(tmp_path) -> None:
    pipeline = Pipeline.from_preset("offline", overrides=[CHOICES.replace("8|0", "8|3")], cache_dir=tmp_path, progress=False)
    pipeline.fit(references(3))
    chosen = pipeline.decisions["chosen"]
    assert pipeline.active_config.registration.motion == chosen["registration.motion"]
    assert pipeline.active_config.embedder.handcrafted.position_weight == float(chosen["embedder.handcrafted.position_weight"])
    assert pipeline.embedder.position_weight == pipeline.active_config.embedder.handcrafted.position_weight
    assert Pipeline.from_preset("offline", cache_dir=tmp_path, progress=False).fit(references(2)).decisions == {}
