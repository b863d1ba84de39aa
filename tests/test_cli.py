"""Command-line arguments every command and script shares: one-line usage errors, and the values refused at parse time."""

from __future__ import annotations

import importlib
import os

import pytest

COMMANDS = ["loco_ad.run", "loco_ad.predict", *(f"experiments.{name}" for name in (
    "ablation", "anomaly_groups", "benchmark", "cross_validate", "fallback_scales", "pose_sensitivity", "products",
    "threshold_rules", "vand2025", "vand2025_official"))]
WITH_OUT = [name for name in COMMANDS if name != "experiments.anomaly_groups"]
WITH_PIPELINE = ["loco_ad.run", "loco_ad.predict", "experiments.ablation", "experiments.cross_validate",
                 "experiments.fallback_scales", "experiments.pose_sensitivity", "experiments.products",
                 "experiments.threshold_rules", "experiments.vand2025"]
WITH_SEEDS = ["loco_ad.run", "experiments.ablation", "experiments.cross_validate", "experiments.products",
              "experiments.threshold_rules", "experiments.vand2025", "experiments.vand2025_official"]


def _usage_error(module: str, argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """Run ``module``'s main on ``argv``; it must exit 2 with one line ``error: ...`` and no usage block."""
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(module).main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert "usage:" not in err and "--help" in err
    return err


@pytest.mark.parametrize("module", COMMANDS)
def test_usage_errors_are_one_line(module: str, capsys: pytest.CaptureFixture) -> None:
    message = _usage_error(module, ["--bogus"], capsys)  # some first miss their required arguments
    assert "unrecognized arguments: --bogus" in message or "the following arguments are required" in message


@pytest.mark.parametrize("module", WITH_OUT)
def test_an_empty_out_is_refused(module: str, tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)  # an empty path would mean the current folder
    assert "argument --out: expected a folder, got an empty path" in _usage_error(module, ["--out", ""], capsys)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("module", WITH_SEEDS)
@pytest.mark.parametrize("value", ["18446744073709551616", "-1", "x"])
def test_a_seed_torch_cannot_take_is_refused(module: str, value: str, capsys: pytest.CaptureFixture) -> None:
    assert "argument --seeds:" in _usage_error(module, ["--seeds", "42", value], capsys)


@pytest.mark.parametrize("module", [*WITH_PIPELINE, "experiments.benchmark"])
@pytest.mark.parametrize("value", ["tpu", "cuda:", "cuda:x", "CPU"])
def test_an_unknown_device_is_refused(module: str, value: str, capsys: pytest.CaptureFixture) -> None:
    assert "expected auto, cpu, cuda or cuda:N" in _usage_error(module, ["--device", value], capsys)


@pytest.mark.parametrize("value", ["auto", "cpu", "cuda", "cuda:1"])
def test_known_devices_parse(value: str) -> None:
    from loco_ad import run

    assert run.build_parser().parse_args(["--device", value]).device == value


@pytest.mark.parametrize("module", ["loco_ad.run", "experiments.ablation", "experiments.fallback_scales"])
def test_empty_scorers_are_an_error_not_the_default(module: str, tmp_path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert importlib.import_module(module).main(["--scorers", "", "--preset", "offline", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown scorer(s) (none given)") and err.count("\n") == 1 and not out.exists()


def test_all_cannot_be_combined_with_a_category(tmp_path, tiny_loco_root, capsys: pytest.CaptureFixture) -> None:
    from loco_ad import run

    out = tmp_path / "out"
    assert run.main(["--data-root", str(tiny_loco_root), "--category", "all", "juice_bottle", "--preset", "offline",
                     "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --category takes category folder names or 'all' alone") and not out.exists()
