"""``python -m loco_ad.run`` end to end on generated and real data, and every bad input."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from loco_ad import run
from loco_ad.config import ALL_SCORERS


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
            "structural_auroc", "pixel_auroc", "spro"} <= set(metrics[0])
    results = json.loads((out / "results.json").read_text())
    assert {"aufc", "normalized_aufc", "avg_image_score", "config", "references"} <= set(results)
    assert results["config"]["pipeline"]["scorers"] == ["class_agnostic", "histogram", "location"]
    drawn = results["references"]["juice_bottle"]["42"]["2"]
    assert len(drawn) == 2 and all(Path(p).exists() for p in drawn)
    assert [["juice_bottle", 42, 1], ["juice_bottle", 0, 1]] == results["fallback_weights_used"]
    printed = capsys.readouterr().out
    assert "juice_bottle" in printed and "AUFC" in printed


def test_second_run_does_no_model_work_and_gives_identical_scores(tmp_path, tiny_loco_root, capsys):
    args = ["--data-root", str(tiny_loco_root), "--shots", "2", "--seeds", "42", "--preset", "offline"]
    assert _run(tmp_path, *args, "--out", str(tmp_path / "a")) == 0
    capsys.readouterr()
    assert _run(tmp_path, *args, "--scorers", "class_agnostic,foreground,histogram", "--out", str(tmp_path / "b")) == 0
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


def test_missing_data_root(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LOCO_AD_DATA", raising=False)
    assert "LOCO_AD_DATA" in _error(tmp_path, capsys)
    assert "nowhere" in _error(tmp_path, capsys, "--data-root", str(tmp_path / "nowhere"))


def test_data_root_from_environment(tmp_path, tiny_loco_root, monkeypatch):
    monkeypatch.setenv("LOCO_AD_DATA", str(tiny_loco_root))
    assert _run(tmp_path, "--shots", "1", "--seeds", "0", "--preset", "offline", "--no-pixel", "--out", str(tmp_path / "o")) == 0


def test_folder_not_in_loco_layout(tmp_path, capsys):
    (tmp_path / "data" / "juice_bottle" / "images").mkdir(parents=True)
    assert "train" in _error(tmp_path, capsys, "--data-root", str(tmp_path / "data"), "--category", "juice_bottle")


def test_unknown_category_and_scorer(tmp_path, tiny_loco_root, capsys):
    assert "choose from" in _error(tmp_path, capsys, "--data-root", str(tiny_loco_root), "--category", "teapot")
    message = _error(tmp_path, capsys, "--data-root", str(tiny_loco_root), "--scorers", "histogram,sparkle")
    assert "sparkle" in message and all(name in message for name in ALL_SCORERS)


def test_k_larger_than_good_images(tmp_path, tiny_loco_root, capsys):
    message = _error(tmp_path, capsys, "--data-root", str(tiny_loco_root), "--shots", "2", "7")
    assert "7" in message and "6" in message


def test_truncated_image_is_named(tmp_path, tiny_loco_root, capsys):
    broken = tiny_loco_root / "juice_bottle" / "test" / "logical_anomalies" / "001.png"
    broken.write_bytes(broken.read_bytes()[:100])
    assert str(broken) in _error(tmp_path, capsys, "--data-root", str(tiny_loco_root), "--shots", "1", "--seeds", "0")


def test_real_subset_few_images(tmp_path, loco_subset):
    """The offline preset end to end on a handful of real juice_bottle images."""
    source = loco_subset / "juice_bottle"
    root = tmp_path / "data"
    target = root / "juice_bottle"
    for split, count in (("train/good", 3), ("test/good", 2), ("test/logical_anomalies", 2)):
        (target / split).mkdir(parents=True)
        for path in sorted((source / split).glob("*.png"))[:count]:
            shutil.copy(path, target / split / path.name)
    for path in sorted((source / "test" / "logical_anomalies").glob("*.png"))[:2]:
        shutil.copytree(source / "ground_truth" / "logical_anomalies" / path.stem,
                        target / "ground_truth" / "logical_anomalies" / path.stem)
    shutil.copy(source / "defects_config.json", target)
    out = tmp_path / "out"
    assert _run(tmp_path, "--data-root", str(root), "--shots", "1", "2", "--seeds", "42", "--preset", "offline",
                "--out", str(out)) == 0
    metrics = _rows(out / "metrics.csv")
    assert len(metrics) == 2
    assert all(0.0 <= float(r["pixel_auroc"]) <= 1.0 and 0.0 <= float(r["spro"]) <= 1.0 for r in metrics)
    assert all(0.0 <= float(r["pixel_score"]) <= 1.0 for r in metrics)
    scores = _rows(out / "scores.csv")
    assert len(scores) == 2 * 4 and all(np.isfinite(float(r["score"])) for r in scores)
    # a second run without the cache redoes all model work and must give the same files
    again = tmp_path / "again"
    assert run.main(["--data-root", str(root), "--shots", "1", "2", "--seeds", "42", "--preset", "offline",
                     "--out", str(again), "--no-cache", "--quiet"]) == 0
    for name in ("scores.csv", "metrics.csv"):
        assert (again / name).read_text() == (out / name).read_text()


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
