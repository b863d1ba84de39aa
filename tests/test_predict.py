"""End-to-end tests of ``python -m loco_ad.predict`` on generated folders, with the weight-free ``offline`` preset."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loco_ad.config import get_preset
from loco_ad.data import list_images
from loco_ad.pipeline import Pipeline
from loco_ad.predict import _score, main
from tests.scenes import make_scene
from tests.test_report import parse_html

SIZE = (96, 144)  # (height, width) of the generated scenes


def _save(path: Path, anomaly: str, seed: int, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_scene(anomaly, seed=seed, size=SIZE).rgb).convert(mode).save(path)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """good/ (3 good scenes) and images/ (good, logical anomalies, a sub-folder, grey, RGBA and a truncated PNG)."""
    root = tmp_path_factory.mktemp("predict")
    for seed in range(3):
        _save(root / "good" / f"good_{seed}.png", "good", seed)
    images = root / "images"
    _save(images / "good_3.png", "good", 3)
    _save(images / "missing.png", "missing", 4)
    _save(images / "colour.jpg", "colour", 5)
    _save(images / "sub" / "missing.png", "missing", 6)  # same name as above, other folder
    _save(images / "sub" / "swap.bmp", "swap", 7)
    _save(images / "grey.png", "good", 8, mode="L")
    _save(images / "rgba.tiff", "extra", 9, mode="RGBA")
    _save(images / "corrupt.png", "good", 10)
    data = (images / "corrupt.png").read_bytes()
    (images / "corrupt.png").write_bytes(data[: len(data) // 2])
    (images / "notes.txt").write_text("not an image")
    return root


def _args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["--good", str(root / "good"), "--images", str(root / "images"), "--out", str(out),
            "--preset", "offline", "--cache-dir", str(root / "cache"), "--quiet", *extra]


@pytest.fixture(scope="module")
def predicted(folders: Path) -> tuple[Path, int]:
    """One run of the CLI on ``folders``: its output folder and exit code."""
    out = folders / "out"
    return out, main(_args(folders, out))


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "results.csv").open() as file:
        return {row["file"]: row for row in csv.DictReader(file)}


def test_scores_all_readable_images_and_lists_the_corrupt_one(predicted: tuple[Path, int]) -> None:
    out, code = predicted
    assert code == 1  # one unreadable file
    rows = _rows(out)
    expected = {"good_3.png", "missing.png", "colour.jpg", "sub/missing.png", "sub/swap.bmp", "grey.png", "rgba.tiff", "corrupt.png"}
    assert set(rows) == expected
    assert rows["corrupt.png"]["verdict"] == "error" and rows["corrupt.png"]["error"] and rows["corrupt.png"]["score"] == ""
    meta = json.loads((out / "results.json").read_text())["meta"]
    for name in expected - {"corrupt.png"}:
        row = rows[name]
        assert row["error"] == "" and np.isfinite(float(row["score"]))
        assert row["verdict"] == ("anomalous" if float(row["score"]) > meta["threshold"] else "good")
        assert float(row["score"]) == pytest.approx(sum(float(row[s]) for s in meta["scorers"]), rel=1e-5)
    assert meta["k"] == 3 and meta["preset"] == "offline" and meta["used_fallback"] is False
    assert meta["threshold_rule"].startswith("auto")
    assert set(meta["weights"]) == set(meta["scorers"]) == set(get_preset("offline").scorers)


def test_overlays_at_working_resolution(predicted: tuple[Path, int]) -> None:
    out, _ = predicted
    height, width = get_preset("offline").working_size(*SIZE)
    pictures = sorted((out / "images").iterdir())
    stems = {"good_3", "missing", "colour", "sub__missing", "sub__swap", "grey", "rgba"}
    assert {p.name for p in pictures} == {f"{s}_{kind}.png" for s in stems for kind in ("heatmap", "segments")}
    for picture in pictures:
        with Image.open(picture) as image:
            assert image.size == (width, height) and image.mode == "RGB"


def test_report_references_every_overlay(predicted: tuple[Path, int]) -> None:
    out, _ = predicted
    page = parse_html(out / "report.html")
    assert all((out / source).is_file() for source in page.sources)
    assert sorted(page.sources) == sorted(f"images/{p.name}" for p in (out / "images").iterdir())
    rows = _rows(out)
    scored = [name for name, row in rows.items() if row["score"]]
    assert page.headings == sorted(scored, key=lambda name: -float(rows[name]["score"]))
    text = " ".join(page.text)
    assert "corrupt.png" in text and rows["corrupt.png"]["error"] in text


def test_scored_images_keep_only_their_scores(folders: Path, tmp_path: Path) -> None:
    pipeline = Pipeline.from_preset("offline", use_cache=False, progress=False).fit(list_images(folders / "good"))
    paths = [p for p in list_images(folders / "images") if p.name != "corrupt.png"]
    items, pictures = _score(pipeline, paths, folders / "images", threshold=1.0, out=tmp_path)
    assert [item.name for item in items] == [p.relative_to(folders / "images").as_posix() for p in paths]
    for item in items:  # memory does not grow with the folder: no map, no analysis kept
        assert item.prediction.analysis is None and item.prediction.map is None
        assert all((tmp_path / file).is_file() for file in pictures[item.name].values())
    assert set(pictures[items[0].name]) == {"heatmap", "segments"}


def test_given_threshold(folders: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(_args(folders, out, "--threshold", "-100")) == 1
    rows = _rows(out)
    assert {row["verdict"] for name, row in rows.items() if name != "corrupt.png"} == {"anomalous"}
    assert json.loads((out / "results.json").read_text())["meta"]["threshold"] == -100
    captured = capsys.readouterr()
    assert "anomalous        7" in captured.out
    assert "1 of 8 image(s) could not be read" in captured.err


@pytest.mark.parametrize(
    "case",
    ["missing good", "empty good", "unreadable good", "unknown preset", "unknown scorer", "missing images"],
)
def test_usage_errors_exit_2_without_files(case: str, folders: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good = tmp_path / "good"
    good.mkdir()
    images = folders / "images"
    extra: list[str] = []
    if case == "missing good":
        good = tmp_path / "nowhere"
    elif case == "unreadable good":
        (good / "bad.png").write_bytes((images / "corrupt.png").read_bytes())
        _save(good / "ok.png", "good", 0)
    elif case != "empty good":
        _save(good / "ok.png", "good", 0)
    if case == "unknown preset":
        extra = ["--preset", "nope"]
    elif case == "unknown scorer":
        extra = ["--scorers", "class_agnostic,nope"]
    elif case == "missing images":
        images = tmp_path / "no_images"
    out = tmp_path / "out"
    argv = ["--good", str(good), "--images", str(images), "--out", str(out), "--preset", "offline",
            "--cache-dir", str(tmp_path / "cache"), "--quiet", *extra]
    # a later --preset wins, so the unknown preset replaces offline
    assert main(argv) == 2
    assert not out.exists()
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
