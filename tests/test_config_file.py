"""--config FILE: the tree --print-config prints, read back from YAML or JSON, with --set's checks and messages."""

from __future__ import annotations

import importlib
import json

import pytest
import yaml

from loco_ad.config import PRESETS, apply_overrides, apply_settings, get_preset
from loco_ad.errors import ConfigError
from loco_ad.run import main as run_main
from scripts.docs_hooks import command_parser, module_name

def _main(program: str):
    """The ``main`` of a program as the manual names it."""
    return importlib.import_module(module_name(program)).main


@pytest.mark.parametrize("source", PRESETS)
@pytest.mark.parametrize("start", PRESETS)
def test_a_printed_configuration_read_back_is_the_same_from_any_preset(source: str, start: str) -> None:
    assert apply_settings(get_preset(start), get_preset(source).to_dict()) == get_preset(source)


def test_print_config_then_config_is_a_round_trip(tmp_path, capsys, loco_sample) -> None:
    common = ["--data-root", str(loco_sample), "--shots", "2", "--seeds", "42", "--no-cache", "--quiet"]
    assert run_main(["--preset", "offline", *common, "--print-config"]) == 0
    (tmp_path / "f.yaml").write_text(capsys.readouterr().out)
    assert run_main(["--preset", "offline", *common, "--out", str(tmp_path / "plain")]) == 0
    # no --preset: the file is complete, so the default preset (paper) under it does not matter
    assert run_main(["--config", str(tmp_path / "f.yaml"), *common, "--out", str(tmp_path / "file")]) == 0
    plain, file = (json.loads((tmp_path / d / "results.json").read_text())["config"] for d in ("plain", "file"))
    assert file == plain and plain["pipeline"]["name"] == "offline"
    assert (tmp_path / "file" / "scores.csv").read_bytes() == (tmp_path / "plain" / "scores.csv").read_bytes()


def test_a_yaml_file_in_part_then_scorers_then_set(tmp_path, capsys) -> None:
    settings = {"ensemble": {"cap": None, "log_offset": 0.5, "scorers": ["histogram"]},
                "embedder": {"image_size": 512, "patch_size": 16}}  # checked together: must change together
    (tmp_path / "part.yaml").write_text(yaml.safe_dump(settings))
    assert run_main(["--preset", "offline", "--config", str(tmp_path / "part.yaml"), "--scorers", "colour",
                     "--set", "ensemble.log_offset=0.2", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["ensemble"]["cap"] is None and printed["ensemble"]["log_offset"] == 0.2
    assert printed["ensemble"]["scorers"] == ["colour"]
    assert (printed["embedder"]["image_size"], printed["embedder"]["patch_size"]) == (512, 16)
    assert printed["segmenter"]["kind"] == "colour_clusters"  # the rest is the preset's


BAD_FILES = {
    "unknown key": ("scorers:\n  nobody:\n    x: 1\n",
                    "unknown setting 'scorers.nobody.x'; valid keys under scorers: class_agnostic, class_aware, foreground"),
    "bad number": ("ensemble: {cap: abc}\n", "bad value 'abc' for ensemble.cap; expected a number"),
    "bad word": ('{"scorers": {"colour": {"mode": "rgb"}}}', "bad value 'rgb' for scorers.colour.mode; choose from hue, ab_ratio"),
    "bad scorer": ("ensemble:\n  scorers: [histogram, nobody]\n", "unknown scorer(s) nobody"),
    "group given a value": ("ensemble: 3\n", "ensemble is a group of settings; set one of ensemble.scorers"),
    "value given a group": ("ensemble:\n  cap:\n    a: 1\n", "unknown setting 'ensemble.cap.a'; ensemble.cap is a single value"),
    "not a mapping": ("- 1\n- 2\n", "must hold a mapping of settings"),
    "not YAML": ("ensemble: [1\n", "is not YAML or JSON at line 2"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_file_is_one_line_exit_2_and_nothing_written(case: str, tmp_path, capsys) -> None:
    text, message = BAD_FILES[case]
    (tmp_path / "bad.yaml").write_text(text)
    assert run_main(["--preset", "offline", "--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: config file {tmp_path / 'bad.yaml'}")
    assert message in err
    assert not (tmp_path / "out").exists()


def test_the_file_and_set_give_the_same_message() -> None:
    with pytest.raises(ConfigError) as from_set:
        apply_overrides(get_preset("offline"), ["scorers.colour.mode=rgb"])
    with pytest.raises(ConfigError) as from_file:
        apply_settings(get_preset("offline"), {"scorers": {"colour": {"mode": "rgb"}}})
    assert str(from_file.value) == str(from_set.value)


def test_a_missing_file_is_one_line(tmp_path, capsys) -> None:
    assert run_main(["--config", str(tmp_path / "none.yaml"), "--print-config"]) == 2
    assert capsys.readouterr().err.strip() == f"error: config file {tmp_path / 'none.yaml'} cannot be read (No such file or directory)"


PROGRAMS = ["loco_ad.predict", "experiments/ablation.py", "experiments/cross_validate.py", "experiments/fallback_scales.py",
            "experiments/pose_sensitivity.py", "experiments/products.py", "experiments/threshold_rules.py", "experiments/vand2025.py",
            "experiments/benchmark.py"]


@pytest.mark.parametrize("program", PROGRAMS)
def test_every_command_with_set_takes_config(program: str, tmp_path, capsys) -> None:
    assert "--config" in command_parser(program).format_help()
    (tmp_path / "bad.yaml").write_text(BAD_FILES["unknown key"][0])
    out = tmp_path / "out"
    extra = ["--good", str(tmp_path), "--images", str(tmp_path)] if program == "loco_ad.predict" else []
    assert _main(program)(["--config", str(tmp_path / "bad.yaml"), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown setting 'scorers.nobody.x'" in err[0]
    assert not out.exists()
