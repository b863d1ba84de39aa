"""``python -m loco_ad.run`` end to end on generated and real data, and every bad input."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loco_ad import run
from loco_ad.config import ALL_SCORERS, get_preset
from tests.loco_tree import make_loco_tree


def _run(tmp_path: Path, *args: str) -> int:
    return run.main([*args, "--cache-dir", str(tmp_path / "cache"), "--quiet"])


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_offline_run_writes_all_result_files(tmp_path, tiny_loco_root, capsys):
    out = tmp_path / "out"
    code = _run(tmp_path, "--data-root", str(tiny_loco_root), "--category", "juice_bottle", "--shots", "1", "2",
                "--seeds", "42", "0", "--preset", "offline", "--scorers", "class_agnostic,histogram,location", "--out", str(out))
    assert code == 0
    scores = _rows(out / "scores.csv")
    assert len(scores) == 2 * 2 * (3 + 3 + 2)
    assert list(scores[0]) == ["category", "seed", "k_shot", "file", "label", "anomaly_type", "score",
                               "class_agnostic", "histogram", "location"]
    assert {r["anomaly_type"] for r in scores} == {"good", "logical", "structural"}
    for row in scores:
        parts = sum(float(row[name]) for name in ("class_agnostic", "histogram", "location"))
        assert float(row["score"]) == pytest.approx(parts, rel=1e-6)
    metrics = _rows(out / "metrics.csv")
    assert len(metrics) == 4
    assert {"seed", "k_shot", "category", "image_score", "pixel_score", "image_auroc", "logical_auroc",
            "structural_auroc", "pixel_auroc", "logical_spro", "structural_spro", "spro"} <= set(metrics[0])
    for row in metrics:  # spro is the mean of the two types, each against all good images
        assert float(row["spro"]) == pytest.approx((float(row["logical_spro"]) + float(row["structural_spro"])) / 2)
    results = json.loads((out / "results.json").read_text())
    assert {"aufc", "normalized_aufc", "avg_image_score", "config", "references"} <= set(results)
    assert results["config"]["pipeline"]["ensemble"]["scorers"] == ["class_agnostic", "histogram", "location"]
    assert results["config"]["pipeline"]["segmenter"]["sam"]["pred_iou_thresh"] == 0.88  # every knob is recorded
    drawn = results["references"]["juice_bottle"]["42"]["2"]
    assert len(drawn) == 2 and all(Path(p).exists() for p in drawn)
    assert [["juice_bottle", 42, 1], ["juice_bottle", 0, 1]] == results["fallback_weights_used"]
    printed = capsys.readouterr().out
    assert "juice_bottle" in printed and "AUFC" in printed


def test_any_category_in_the_layout_without_defects_config(tmp_path, capsys):
    """A non-LOCO category name with structural anomalies only, no validation split and no defects_config.json:
    evaluated, sPRO as plain PRO (each region saturating at its own area)."""
    root = make_loco_tree(tmp_path / "data", category="tire", n_logical=0, n_validation=0)
    (root / "tire" / "defects_config.json").unlink()
    out = tmp_path / "out"
    assert _run(tmp_path, "--data-root", str(root), "--category", "all", "--shots", "2", "--seeds", "42",
                "--preset", "offline", "--out", str(out)) == 0
    assert json.loads((out / "results.json").read_text())["config"]["categories"] == ["tire"]
    (row,) = _rows(out / "metrics.csv")
    assert row["category"] == "tire" and math.isnan(float(row["logical_spro"]))
    assert 0.0 <= float(row["structural_spro"]) <= 1.0 and row["spro"] == row["structural_spro"]
    assert "tire" in capsys.readouterr().out


def test_second_run_does_no_model_work_and_gives_identical_scores(tmp_path, tiny_loco_root, capsys):
    args = ["--data-root", str(tiny_loco_root), "--shots", "4", "--seeds", "42", "--preset", "offline"]
    assert _run(tmp_path, *args, "--out", str(tmp_path / "a")) == 0
    capsys.readouterr()
    # the preset's own, named (k = 4: --scorers also sums them all at k = 1 and the histogram at k = 2)
    scorers = ",".join(get_preset("offline").ensemble.scorers)
    assert _run(tmp_path, *args, "--scorers", scorers, "--out", str(tmp_path / "b")) == 0
    assert " 0 misses" in capsys.readouterr().out
    assert _rows(tmp_path / "a" / "scores.csv") == _rows(tmp_path / "b" / "scores.csv")


def _error(tmp_path: Path, capsys, *args: str) -> str:
    out = tmp_path / "out"
    code = _run(tmp_path, *args, "--out", str(out), "--preset", "offline")
    assert code == 2
    assert not out.exists(), "no partial result files on error"
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_missing_data_root(tmp_path, capsys):
    assert "nowhere" in _error(tmp_path, capsys, "--data-root", str(tmp_path / "nowhere"))


def test_data_root_from_environment(tmp_path, tiny_loco_root, monkeypatch):
    monkeypatch.setenv("LOCO_AD_DATA", str(tiny_loco_root))
    assert _run(tmp_path, "--shots", "1", "--seeds", "0", "--preset", "offline", "--no-pixel", "--out", str(tmp_path / "o")) == 0


def test_folder_not_in_loco_layout(tmp_path, capsys):
    (tmp_path / "data" / "juice_bottle" / "images").mkdir(parents=True)
    assert "train" in _error(tmp_path, capsys, "--data-root", str(tmp_path / "data"), "--category", "juice_bottle")


def test_unknown_category_and_scorer(tmp_path, tiny_loco_root, capsys):
    message = _error(tmp_path, capsys, "--data-root", str(tiny_loco_root), "--category", "teapot")
    assert "teapot not found" in message and "categories there: juice_bottle" in message
    message = _error(tmp_path, capsys, "--data-root", str(tiny_loco_root), "--scorers", "histogram,sparkle")
    assert "sparkle" in message and all(name in message for name in ALL_SCORERS)


def test_k_larger_than_good_images(tmp_path, tiny_loco_root, capsys):
    message = _error(tmp_path, capsys, "--data-root", str(tiny_loco_root), "--shots", "2", "7")
    assert "7" in message and "6" in message


def test_truncated_image_is_named(tmp_path, tiny_loco_root, capsys):
    broken = tiny_loco_root / "juice_bottle" / "test" / "logical_anomalies" / "001.png"
    broken.write_bytes(broken.read_bytes()[:100])
    assert str(broken) in _error(tmp_path, capsys, "--data-root", str(tiny_loco_root), "--shots", "1", "--seeds", "0")


def test_bundled_sample_without_data_root(tmp_path, loco_sample, capsys, monkeypatch):
    """The main job as the README runs it: no --data-root, no LOCO_AD_DATA, the offline preset on the real sample."""
    monkeypatch.delenv("LOCO_AD_DATA", raising=False)
    out = tmp_path / "out"
    assert _run(tmp_path, "--shots", "1", "2", "--seeds", "42", "--preset", "offline", "--out", str(out)) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines()[0].startswith("no --data-root or $LOCO_AD_DATA: using the bundled sample")
    assert "image_auroc" in captured.out and f"results written to {out}/" in captured.out
    assert json.loads((out / "results.json").read_text())["config"]["data_root"] == str(loco_sample)
    metrics = _rows(out / "metrics.csv")
    assert len(metrics) == 2
    assert all(0.0 <= float(r["pixel_auroc"]) <= 1.0 and 0.0 <= float(r["spro"]) <= 1.0 for r in metrics)
    assert all(0.0 <= float(r["pixel_score"]) <= 1.0 for r in metrics)
    assert float(metrics[1]["image_auroc"]) > 0.6  # k = 2 ranks most of the 10 anomalies above the 6 good images
    scores = _rows(out / "scores.csv")
    assert len(scores) == 2 * 16 and all(math.isfinite(float(r["score"])) for r in scores)
    # a second run without the cache redoes all model work and must give the same files
    again = tmp_path / "again"
    assert run.main(["--shots", "1", "2", "--seeds", "42", "--preset", "offline", "--out", str(again), "--no-cache",
                     "--quiet"]) == 0
    for name in ("scores.csv", "metrics.csv"):
        assert (again / name).read_text() == (out / name).read_text()


def test_missing_weights_fail_at_once_in_one_line(tmp_path, capsys, monkeypatch, no_network):
    """The paper preset with no weights anywhere and no network: exit 2 before any model or hub call."""
    from huggingface_hub import constants
    from transformers import Dinov2Model

    monkeypatch.delenv("LOCO_AD_DATA", raising=False)
    for name in ("LOCO_AD_WEIGHTS", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub must not be asked")

    monkeypatch.setattr(Dinov2Model, "from_pretrained", no_hub)
    out = tmp_path / "out"
    assert _run(tmp_path, "--preset", "paper", "--shots", "1", "--out", str(out)) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("no --data-root") and lines[1].startswith("error: model weights missing")
    assert "sam_vit_h_4b8939.pth" in lines[1] and "facebook/dinov2-giant" in lines[1] and "cannot be reached" in lines[1]
    assert "--weights-dir" in lines[1] and "LOCO_AD_WEIGHTS" in lines[1] and "network access" in lines[1]
    assert not out.exists() and captured.out == ""


def test_report_with_ground_truth_outlines(tmp_path, tiny_loco_root):
    from html.parser import HTMLParser

    import numpy as np
    from PIL import Image

    out = tmp_path / "out"
    assert _run(tmp_path, "--data-root", str(tiny_loco_root), "--shots", "1", "2", "--seeds", "42", "--preset", "offline",
                "--report", "--out", str(out)) == 0
    folder = out / "report" / "juice_bottle"
    sources: list[str] = []

    class Images(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "img":
                sources.append(dict(attrs)["src"])

    Images().feed((folder / "report.html").read_text())
    assert len(sources) == 2 * (3 + 3 + 2)  # heat map + segments for every test image
    assert all((folder / src).exists() for src in sources)
    outlined = [src for src in sources if "logical" in src and src.endswith("_segments.png")]
    plain = [src for src in sources if src.startswith("images/good") and src.endswith("_segments.png")]
    white = lambda src: int((np.asarray(Image.open(folder / src)) == 255).all(-1).sum())  # noqa: E731
    assert outlined and plain
    assert all(white(src) > 0 for src in outlined) and all(white(src) == 0 for src in plain)


def test_pixel_metrics_at_full_resolution(tmp_path, tiny_loco_root):
    """``--set evaluation.pixel_long_side=0`` compares maps and masks at the ground truth's own size."""
    outs = {}
    for side in ("0", "256"):
        outs[side] = tmp_path / f"out{side}"
        assert _run(tmp_path, "--data-root", str(tiny_loco_root), "--shots", "2", "--seeds", "42", "--preset", "offline",
                    "--set", f"evaluation.pixel_long_side={side}", "--out", str(outs[side])) == 0
    full, small = _rows(outs["0"] / "metrics.csv")[0], _rows(outs["256"] / "metrics.csv")[0]
    assert 0.0 <= float(full["spro"]) <= 1.0 and full["image_score"] == small["image_score"]
    assert full["pixel_auroc"] != small["pixel_auroc"]  # the 64×96 ground truth, against maps shrunk to 168×256
    recorded = json.loads((outs["0"] / "results.json").read_text())["config"]["pipeline"]["evaluation"]
    assert recorded["pixel_long_side"] == 0


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err and len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("where", ["a file", "under a file", "read-only"])
def test_unwritable_out_is_refused_before_any_work(tmp_path, tiny_loco_root, capsys, monkeypatch, make_read_only, where):
    monkeypatch.setattr("loco_ad.evaluate.evaluate", lambda *a, **k: pytest.fail("work started"))
    (tmp_path / "file").write_text("")
    out = {"a file": tmp_path / "file", "under a file": tmp_path / "file" / "out", "read-only": tmp_path / "ro" / "out"}[where]
    if where == "read-only":
        (tmp_path / "ro").mkdir()
        make_read_only(tmp_path / "ro")
    assert _run(tmp_path, "--data-root", str(tiny_loco_root), "--preset", "offline", "--out", str(out)) == 2
    assert str(out) in _one_line_error(capsys)
    assert not (tmp_path / "cache").exists() and (tmp_path / "file").read_text() == ""


def test_decompression_bomb_is_a_one_line_error(tmp_path, tiny_loco_root, bomb_png, capsys):
    huge = tiny_loco_root / "juice_bottle" / "test" / "good" / "003.png"
    shutil.copy(bomb_png, huge)
    out = tmp_path / "out"
    assert _run(tmp_path, "--data-root", str(tiny_loco_root), "--shots", "1", "--seeds", "0", "--preset", "offline",
                "--out", str(out)) == 2
    message = _one_line_error(capsys)
    assert str(huge) in message and "too large to decode safely" in message
    assert not out.exists()


def test_repeated_category_is_evaluated_once(tmp_path, tiny_loco_root):
    out = tmp_path / "out"
    assert _run(tmp_path, "--data-root", str(tiny_loco_root), "--category", "juice_bottle", "juice_bottle,juice_bottle",
                "--shots", "1", "--seeds", "0", "--preset", "offline", "--no-pixel", "--out", str(out)) == 0
    assert len(_rows(out / "metrics.csv")) == 1
    assert json.loads((out / "results.json").read_text())["config"]["categories"] == ["juice_bottle"]


def test_test_split_without_anomalies_is_an_error(tmp_path, capsys):
    from tests.loco_tree import make_loco_tree

    root = make_loco_tree(tmp_path / "loco", n_logical=0, n_structural=0)
    assert "has no anomalous images" in _error(tmp_path, capsys, "--data-root", str(root))


def test_data_root_that_is_a_file(tmp_path, capsys):
    (tmp_path / "data").write_text("")
    assert "is a file, not a folder" in _error(tmp_path, capsys, "--data-root", str(tmp_path / "data"))


def test_mask_of_the_wrong_size_is_named(tmp_path, tiny_loco_root, capsys):
    from PIL import Image

    mask = next((tiny_loco_root / "juice_bottle" / "ground_truth" / "logical_anomalies" / "000").iterdir())
    Image.new("L", (10, 10)).save(mask)
    assert str(mask) in _error(tmp_path, capsys, "--data-root", str(tiny_loco_root), "--shots", "1", "--seeds", "0")


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_rerun_replaces_the_whole_result_set(tmp_path, tiny_loco_root):
    out = tmp_path / "out"
    args = ["--data-root", str(tiny_loco_root), "--shots", "1", "--seeds", "0", "--preset", "offline", "--no-pixel",
            "--out", str(out)]
    assert _run(tmp_path, *args, "--report") == 0
    assert (out / "report" / "juice_bottle" / "report.html").stat().st_size > 100
    assert _run(tmp_path, *args) == 0  # without --report, no report of the earlier run stays beside the new results
    assert sorted(p.name for p in out.iterdir()) == [".loco_ad-result-set", "metrics.csv", "results.json", "scores.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "loco", "out"]  # no staging folder or lock left
    (out / "notes.txt").write_text("mine")  # a result set is replaced whole: what a user adds goes with it
    assert _run(tmp_path, *args) == 0 and not (out / "notes.txt").exists()


def test_a_folder_of_other_files_is_refused(tmp_path, tiny_loco_root, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "todo.txt").write_text("keep")
    assert _run(tmp_path, "--data-root", str(tiny_loco_root), "--preset", "offline", "--out", str(out)) == 2
    assert "holds files that are not a loco_ad result set" in _one_line_error(capsys)
    assert _files(out) == {"todo.txt": b"keep"}


@pytest.mark.parametrize("where", ["the data root", "inside the data root", "a category folder", "above the data root",
                                   "a linked category"])
def test_out_over_the_data_is_refused_with_nothing_written(tmp_path, tiny_loco_root, capsys, monkeypatch, where):
    monkeypatch.setattr("loco_ad.evaluate.evaluate", lambda *a, **k: pytest.fail("work started"))
    category = tiny_loco_root / "juice_bottle"
    if where == "a linked category":  # the category folder is a link to a folder outside the data root
        shutil.move(category, tmp_path / "elsewhere")
        category.symlink_to(tmp_path / "elsewhere")
    out = {"the data root": tiny_loco_root, "inside the data root": tiny_loco_root / "runs",
           "a category folder": category / "train" / "good", "above the data root": tmp_path,
           "a linked category": tmp_path / "elsewhere" / "out"}[where]
    before = _files(tmp_path)
    assert _run(tmp_path, "--data-root", str(tiny_loco_root), "--preset", "offline", "--out", str(out)) == 2
    message = _one_line_error(capsys)
    assert str(out) in message and ("data root" in message or "category folder juice_bottle" in message)
    assert _files(tmp_path) == before


def test_a_full_disk_leaves_the_previous_results_byte_identical(tmp_path, tiny_loco_root, capsys, monkeypatch):
    from loco_ad import io as io_module

    out = tmp_path / "out"
    args = ["--data-root", str(tiny_loco_root), "--shots", "1", "--seeds", "0", "--preset", "offline", "--no-pixel",
            "--out", str(out)]
    assert _run(tmp_path, *args, "--report") == 0
    before = _files(out)
    real_new_temporary = io_module._new_temporary

    def full_disk(path: Path):
        if path.name == "results.json":  # a real ENOSPC: writes to /dev/full fail as on a full disk
            return os.open("/dev/full", os.O_WRONLY), path.with_name(".never")
        return real_new_temporary(path)

    monkeypatch.setattr(io_module, "_new_temporary", full_disk)
    capsys.readouterr()
    assert _run(tmp_path, *args) == 2
    message = _one_line_error(capsys)
    assert message.startswith("error: cannot write ") and message.endswith("results.json: No space left on device")
    assert _files(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["cache", "loco", "out"]


def test_repeated_shots_and_seeds_run_once_and_are_recorded_as_run(tmp_path, tiny_loco_root, capsys):
    out = tmp_path / "out"
    assert _run(tmp_path, "--data-root", str(tiny_loco_root), "--shots", "2", "2", "--seeds", "42", "42", "--preset",
                "offline", "--no-pixel", "--out", str(out)) == 0
    config = json.loads((out / "results.json").read_text())["config"]
    assert config["shots"] == [2] and config["seeds"] == [42] and len(_rows(out / "metrics.csv")) == 1
    printed = capsys.readouterr().out
    assert "AUFC n/a (one k)" in printed and "nan" not in printed.lower()


def test_help_names_presets_scorers_and_the_report_path():
    text = run.build_parser().format_help()
    assert all(name in text for name in ("paper", "fast", "offline", "SAM vit_h", "dinov2-giant", *ALL_SCORERS))
    assert "OUT/report/<category>/report.html" in text


def test_argument_errors_come_before_any_heavy_import(tmp_path):
    """Every bad argument is reported without importing torch, faiss, transformers or segment_anything."""
    (tmp_path / "file").write_text("")
    cases = [["--preset", "bogus"], ["--scorers", "sparkle"], ["--data-root", str(tmp_path / "nowhere")],
             ["--category", "teapot"], ["--shots", "0"], ["--shots", "9"], ["--out", str(tmp_path / "file" / "out")]]
    script = (
        "import sys\n"
        "from loco_ad import run\n"
        f"codes = [run.main(args + ['--preset', 'offline'] if args[0] != '--preset' else args) for args in {cases!r}]\n"
        "print(codes, [m for m in ('torch', 'faiss', 'transformers', 'segment_anything') if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1], env={**os.environ, "LOCO_AD_DATA": ""})
    assert result.stdout.strip() == f"{[2] * len(cases)} []", result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(cases) and "Traceback" not in result.stderr


def test_reference_decisions_are_recorded_per_fit(tmp_path, tiny_loco_root):
    """With ``adapt.choices`` every fit on enough references records what they chose; a fit on one records the first values."""
    out = tmp_path / "out"
    code = _run(tmp_path, "--data-root", str(tiny_loco_root), "--category", "juice_bottle", "--shots", "1", "2", "--seeds", "42",
                "--preset", "offline", "--no-pixel", "--set", "adapt.choices=registration.motion=euclidean|none", "--out", str(out))
    assert code == 0
    decisions = json.loads((out / "results.json").read_text())["reference_decisions"]
    assert [(d["category"], d["seed"], d["k"], d["references"]) for d in decisions] == [("juice_bottle", 42, 1, 1), ("juice_bottle", 42, 2, 2)]
    assert decisions[0]["chosen"] == {"registration.motion": "euclidean"} and "auroc" not in decisions[0]
    assert set(decisions[1]["auroc"]) == {"registration.motion=euclidean", "registration.motion=none"}
    assert decisions[1]["chosen"]["registration.motion"] in ("euclidean", "none")
    plain = tmp_path / "plain"
    assert _run(tmp_path, "--data-root", str(tiny_loco_root), "--category", "juice_bottle", "--shots", "2", "--seeds", "42",
                "--preset", "offline", "--no-pixel", "--out", str(plain)) == 0
    (layout,) = json.loads((plain / "results.json").read_text())["reference_decisions"]  # the preset's layout check alone
    assert layout["k"] == 2 and layout["chosen"] == {} and layout["layout_agreement"] > 0.5 and "auroc" not in layout
