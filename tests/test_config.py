"""The configuration tree, its overrides, the builder that turns it into components, and the CLI's --set / --print-config."""

from __future__ import annotations

import dataclasses
import json

import pytest

from loco_ad import build, models
from loco_ad.config import (
    KNOWN_SCORERS,
    PRESETS,
    AlignmentConfig,
    PipelineConfig,
    apply_overrides,
    get_preset,
    knobs,
)
from loco_ad.errors import ConfigError
from loco_ad.run import main as run_main
from tests.tiny_models import tiny_dinov2, tiny_sam


def test_every_preset_has_the_knobs_the_design_ablates() -> None:
    for config in PRESETS.values():
        keys = knobs(config)
        assert len(keys) >= 30
        assert {
            "segmenter.sam.pred_iou_thresh",
            "segmenter.sam.stability_score_thresh",
            "alignment.propagation.temperature",
            "alignment.propagation.top_k",
            "scorers.class_agnostic.top_fraction",
            "scorers.colour.mode",
            "scorers.location.mode",
            "ensemble.multipliers.histogram",
            "ensemble.fallback_scales.colour",
            "evaluation.pixel_long_side",
        } <= set(keys)


def test_overrides_parse_each_type() -> None:
    config = apply_overrides(
        get_preset("fast"),
        [
            "segmenter.sam.pred_iou_thresh=0.8",
            "segmenter.sam.points_per_side=16",
            "scorers.colour.mode=ab_ratio",
            "ensemble.scorers=histogram, colour",
            "embedder.handcrafted.colour_scales=20,8",
            "input_size=256,256",
            "alignment.hungarian.area=0",
        ],
    )
    assert config.segmenter.sam.pred_iou_thresh == 0.8 and config.segmenter.sam.points_per_side == 16
    assert config.scorers.colour.mode == "ab_ratio"
    assert config.ensemble.scorers == ("histogram", "colour")
    assert config.embedder.handcrafted.colour_scales == (20.0, 8.0)
    assert config.input_size == (256, 256)
    assert apply_overrides(config, ["input_size=none"]).input_size is None
    assert config.alignment.hungarian.area == 0.0
    before, after = knobs(get_preset("fast")), knobs(config)
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {
        "segmenter.sam.pred_iou_thresh", "segmenter.sam.points_per_side", "scorers.colour.mode", "ensemble.scorers",
        "embedder.handcrafted.colour_scales", "input_size", "alignment.hungarian.area",
    }


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("segmenter.sam.iou=0.9", "valid keys under segmenter.sam: model, points_per_side"),
        ("nothing=1", "valid keys at the top level: name, segmenter"),
        ("scorers.colour=hue", "is a group of settings"),
        ("scorers.colour.mode.x=1", "is a single value"),
        ("scorers.colour.mode=lab", "choose from hue, ab_ratio"),
        ("segmenter.sam.points_per_side=many", "expected an integer"),
        ("scorers.class_agnostic.top_fraction=nan", "finite"),
        ("scorers.class_agnostic.top_fraction=2", "(0, 1]"),
        ("ensemble.scorers=histogram,nearest", "choose from class_agnostic"),
        ("embedder.image_size=100", "multiple of embedder.patch_size"),
        ("alignment.method=segmenter", "needs the colour_clusters segmenter"),
        ("segmenter.sam.model=vit_x", "choose from vit_h, vit_l, vit_b"),
        ("scorers.colour.mode", "expects key=value"),
        ("few_references=name=other", "must set one of segmenter, embedder"),
        ("few_references=embedder.handcrafted.colour_weight=-1", "block weights must be >= 0"),
        ("few_references=embedder.handcrafted.colour=1", "few_references: unknown setting 'embedder.handcrafted.colour'"),
    ],
)
def test_bad_overrides_are_config_errors_naming_the_choices(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        apply_overrides(get_preset("paper"), [override])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_invalid_values_are_refused_from_python_too() -> None:
    with pytest.raises(ConfigError):
        AlignmentConfig(method="deaot")
    with pytest.raises(ConfigError):
        dataclasses.replace(get_preset("paper"), alignment=AlignmentConfig(method="segmenter"))
    with pytest.raises(ConfigError):
        get_preset("offline").with_scorers(("histogram", "histogram"))


def test_the_builder_hands_every_knob_to_its_component(monkeypatch) -> None:
    config = apply_overrides(
        PipelineConfig(name="test"),
        [
            "scorers.class_agnostic.top_fraction=0.1",
            "scorers.class_aware.n_neighbours=3",
            "scorers.colour.chroma_scale=50",
            "scorers.location.mode=origin_distance",
            "scorers.pixel.size=16",
            "scorers.pixel.colour=false",
            "segmenter.colour_clusters.n_colours=5",
            "segmenter.colour_clusters.merge_distance=3",
            "segmenter.min_area=0.01",
            "embedder.handcrafted.orientations=6",
            "embedder.handcrafted.position_weight=2",
            "segmenter.sam.pred_iou_thresh=0.7",
            "segmenter.sam.box_nms_thresh=0.5",
            "embedder.dinov2.batch_size=3",
            "ensemble.multipliers.location=0.25",
            "ensemble.fallback_scales.histogram=0.7",
        ],
    )
    for name in KNOWN_SCORERS:
        scorer = build.build_scorer(name, config)
        for key, value in dataclasses.asdict(getattr(config.scorers, name)).items():
            assert getattr(scorer, key) == value, (name, key)
    offline = dataclasses.replace(config, segmenter=dataclasses.replace(config.segmenter, kind="colour_clusters"),
                                  embedder=dataclasses.replace(config.embedder, kind="handcrafted"))
    segmenter = build.build_segmenter(offline)
    assert segmenter.min_area == 0.01
    for key, value in dataclasses.asdict(config.segmenter.colour_clusters).items():
        assert getattr(segmenter, key) == value, key
    embedder = build.build_embedder(offline)
    for key, value in dataclasses.asdict(config.embedder.handcrafted).items():
        assert getattr(embedder, key) == value, key

    monkeypatch.setattr(models, "load_sam", lambda *args, **kwargs: tiny_sam())
    monkeypatch.setattr(models, "load_dinov2", lambda *args, **kwargs: tiny_dinov2())
    sam = build.build_segmenter(config, device="cpu")
    assert sam.generator.pred_iou_thresh == 0.7 and sam.generator.box_nms_thresh == 0.5 and sam.min_area == 0.01
    assert build.build_embedder(config, device="cpu").batch_size == 3
    detector = build.build_detector(config.with_scorers(("histogram", "location")))
    assert detector.multipliers["location"] == 0.25 and detector.fallback_scales["histogram"] == 0.7


def test_cli_prints_the_resolved_configuration(capsys) -> None:
    assert run_main(["--preset", "fast", "--set", "alignment.propagation.temperature=0.1", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["alignment"]["propagation"]["temperature"] == 0.1
    assert printed["segmenter"]["sam"]["stability_score_thresh"] == 0.95


def test_cli_unknown_key_is_one_line_and_exit_2(capsys, tmp_path) -> None:
    assert run_main(["--set", "scorers.colour.hue=1", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown setting 'scorers.colour.hue'") and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_few_references_settings_hold_only_for_fits_on_few_references() -> None:
    base = get_preset("fast")
    config = apply_overrides(base, ["few_references=embedder.handcrafted.colour_weight=0.5,scorers.foreground.top_fraction=0.1"])
    assert config.few_references == ("embedder.handcrafted.colour_weight=0.5", "scorers.foreground.top_fraction=0.1")
    assert config.for_references(2) is config and config.for_references(8) is config
    one = config.for_references(1)
    assert one.few_references == () and one.embedder.handcrafted.colour_weight == 0.5
    assert one.scorers.foreground.top_fraction == 0.1
    changed = {key for key, value in knobs(one).items() if knobs(base)[key] != value}
    assert changed == {"embedder.handcrafted.colour_weight", "scorers.foreground.top_fraction"}
    assert base.for_references(1) is base
    up_to_two = apply_overrides(config, ["few_references_max=2"])
    assert up_to_two.for_references(2) == dataclasses.replace(one, few_references_max=2)
    assert up_to_two.for_references(3) is up_to_two
    listed = apply_overrides(base, ["few_references=ensemble.scorers=class_agnostic,foreground,scorers.foreground.top_fraction=0.1"])
    assert listed.few_references == ("ensemble.scorers=class_agnostic,foreground", "scorers.foreground.top_fraction=0.1")
    assert listed.for_references(1).ensemble.scorers == ("class_agnostic", "foreground")
    # --scorers enables its scorers at every k: a scorer choice for few references goes, the rest stays
    chosen = listed.with_scorers(("histogram",))
    assert chosen.few_references == ("scorers.foreground.top_fraction=0.1",)
    assert chosen.for_references(1).ensemble.scorers == ("histogram",)
    with pytest.raises(ConfigError, match="few_references_max must be >= 1"):
        apply_overrides(config, ["few_references_max=0"])
