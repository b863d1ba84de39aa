"""End-to-end tests of ``python -m loco_ad.predict`` on generated folders, with the weight-free ``offline`` preset."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

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
        assert row["error"] == "" and math.isfinite(float(row["score"]))
        assert row["verdict"] == ("anomalous" if float(row["score"]) > meta["threshold"] else "good")
        assert float(row["score"]) == pytest.approx(sum(float(row[s]) for s in meta["scorers"]), rel=1e-5)
    assert meta["k"] == 3 and meta["preset"] == "offline" and meta["used_fallback"] is False
    assert meta["threshold_rule"].startswith("auto")
    assert set(meta["weights"]) == set(meta["scorers"]) == set(get_preset("offline").ensemble.scorers)


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


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "high"])
def test_threshold_must_be_a_finite_number(value: str, folders: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(_args(folders, tmp_path / "out", f"--threshold={value}"))
    assert exit_info.value.code == 2 and "finite number" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_decompression_bomb_is_listed_and_the_rest_scored(folders: Path, bomb_png: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    _save(images / "a.png", "good", 3)
    shutil.copy(bomb_png, images / "huge.png")
    _save(images / "z.png", "missing", 4)
    out = tmp_path / "out"
    argv = ["--good", str(folders / "good"), "--images", str(images), "--out", str(out), "--preset", "offline",
            "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert main(argv) == 1
    rows = _rows(out)
    assert rows["huge.png"]["verdict"] == "error" and "too large to decode safely" in rows["huge.png"]["error"]
    assert rows["a.png"]["score"] and rows["z.png"]["score"]
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{s}_{k}.png" for s in "az" for k in ("heatmap", "segments")]


@pytest.mark.parametrize("where", ["under a file", "read-only"])
def test_unwritable_out_is_refused_before_any_work(
    where: str, folders: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, make_read_only
) -> None:
    monkeypatch.setattr(Pipeline, "fit", lambda *a, **k: pytest.fail("work started"))
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "out"
    if where == "read-only":
        (tmp_path / "ro").mkdir()
        out = make_read_only(tmp_path / "ro") / "out"
    assert main(_args(folders, out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(out) in err and "\n" not in err


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _copy_inputs(folders: Path, tmp_path: Path) -> tuple[Path, Path]:
    shutil.copytree(folders / "good", tmp_path / "good")
    shutil.copytree(folders / "images", tmp_path / "images", ignore=shutil.ignore_patterns("corrupt.png"))
    return tmp_path / "good", tmp_path / "images"


@pytest.mark.parametrize("where", ["the images folder", "inside the images folder", "inside the good folder",
                                   "above both", "a link to the good folder"])
def test_out_over_an_input_folder_is_refused_and_a_rerun_reads_no_result(
    where: str, folders: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    good, images = _copy_inputs(folders, tmp_path)
    (tmp_path / "link").symlink_to(good)
    out = {"the images folder": images, "inside the images folder": images / "out", "inside the good folder": good / "out",
           "above both": tmp_path, "a link to the good folder": tmp_path / "link" / "out"}[where]
    before = _files(tmp_path)
    argv = ["--good", str(good), "--images", str(images), "--out", str(out), "--preset", "offline", "--no-cache", "--quiet"]
    assert main(argv) == 2
    assert str(out) in _one_line(capsys) and _files(tmp_path) == before


def test_listings_skip_result_folders(folders: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An earlier result set inside an image folder (written there before --out was checked) is never read as input."""
    good, images = _copy_inputs(folders, tmp_path)
    assert main(["--good", str(good), "--images", str(good), "--out", str(tmp_path / "out"), "--preset", "offline",
                 "--no-cache", "--quiet"]) == 0
    shutil.move(tmp_path / "out", images / "old_results")
    assert main(["--good", str(good), "--images", str(images), "--out", str(tmp_path / "out"), "--preset", "offline",
                 "--no-cache", "--quiet"]) == 0
    assert not any(name.startswith("old_results") for name in _rows(tmp_path / "out"))
    assert f"skipping {images / 'old_results'}: a loco_ad result folder" in caplog.text


def test_a_killed_run_then_a_rerun_leaves_exactly_one_runs_files(folders: Path, tmp_path: Path) -> None:
    images = tmp_path / "many"
    for seed in range(48):  # six batches: the run is killed once the first batch's overlays are written
        _save(images / f"{seed:02d}.png", "good" if seed % 2 else "missing", 100 + seed)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "loco_ad.predict", "--good", str(folders / "good"), "--images", str(images),
               "--out", str(out), "--preset", "offline", "--no-cache", "--quiet"]
    process = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".out.*.partial/images/*.png")):
            assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
            time.sleep(0.02)
    finally:
        process.kill()
        process.wait()
    assert not out.exists() and list(tmp_path.glob(".out.*.partial"))  # killed half-way: nothing in --out
    few = tmp_path / "few"
    _save(few / "a.png", "good", 3)
    _save(few / "b.png", "missing", 4)
    assert main(["--good", str(folders / "good"), "--images", str(few), "--out", str(out), "--preset", "offline",
                 "--no-cache", "--quiet"]) == 0
    pictures = {f"images/{stem}_{kind}.png" for stem in "ab" for kind in ("heatmap", "segments")}
    assert set(_files(out)) == {".loco_ad-result-set", "results.csv", "results.json", "report.html", *pictures}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["few", "many", "out"]


def test_a_rerun_with_other_images_leaves_no_stale_picture(folders: Path, tmp_path: Path) -> None:
    good, images = _copy_inputs(folders, tmp_path)
    out = tmp_path / "out"
    assert main(["--good", str(good), "--images", str(images), "--out", str(out), "--preset", "offline", "--no-cache", "--quiet"]) == 0
    assert len(list((out / "images").iterdir())) == 2 * 7
    assert main(["--good", str(good), "--images", str(good), "--out", str(out), "--preset", "offline", "--no-cache", "--quiet"]) == 0
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(
        f"good_{i}_{kind}.png" for i in range(3) for kind in ("heatmap", "segments"))


def test_a_second_run_into_the_same_folder_is_refused(folders: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from loco_ad.io import ResultSet

    out = tmp_path / "out"
    with ResultSet(out) as staging:  # a first run is writing
        (staging / "results.csv").write_text("first run")
        assert main(_args(folders, out)) == 2
        assert "another loco_ad command is writing to --out folder" in _one_line(capsys)
    assert _files(out)["results.csv"] == b"first run"


def test_a_full_disk_is_one_line_and_keeps_the_previous_results(
    folders: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loco_ad import io as io_module

    out = tmp_path / "out"
    assert main(_args(folders, out)) == 1
    before = _files(out)
    real_new_temporary = io_module._new_temporary

    def full_disk(path: Path):
        if path.name.endswith("_heatmap.png"):  # a real ENOSPC: writes to /dev/full fail as on a full disk
            return os.open("/dev/full", os.O_WRONLY), path.with_name(".never")
        return real_new_temporary(path)

    monkeypatch.setattr(io_module, "_new_temporary", full_disk)
    capsys.readouterr()
    assert main(_args(folders, out)) == 2
    assert _one_line(capsys).endswith("_heatmap.png: No space left on device")
    assert _files(out) == before and not list(tmp_path.glob(".out*"))


def test_good_that_is_a_file_is_named_as_such(folders: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["--good", str(folders / "good" / "good_0.png"), "--images", str(folders / "images"),
            "--out", str(tmp_path / "out"), "--preset", "offline", "--no-cache", "--quiet"]
    assert main(argv) == 2
    assert f"{folders / 'good' / 'good_0.png'} is not a folder" in _one_line(capsys)
    assert not (tmp_path / "out").exists()


def test_dangling_links_are_listed_as_skipped(folders: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good, images = _copy_inputs(folders, tmp_path)
    (images / "gone.png").symlink_to(tmp_path / "nothing.png")
    assert main(["--good", str(good), "--images", str(images), "--out", str(tmp_path / "out"), "--preset", "offline",
                 "--no-cache", "--quiet"]) == 0
    expected = f"skipped 1 image path(s) in {images} that are not readable files (dangling links?): {images / 'gone.png'}"
    assert expected in caplog.text


def test_reference_decisions_are_in_results_json(folders: Path, predicted: tuple[Path, int], tmp_path: Path) -> None:
    out = tmp_path / "out"
    main(_args(folders, out, "--set", "adapt.choices=embedder.handcrafted.position_weight=8|0"))
    meta = json.loads((out / "results.json").read_text())["meta"]
    decided = meta["extra"]["reference decisions"]
    assert decided["references"] == 3 and set(decided["auroc"]) == {"embedder.handcrafted.position_weight=8", "embedder.handcrafted.position_weight=0"}
    assert decided["chosen"]["embedder.handcrafted.position_weight"] in ("8", "0")
    default = json.loads((predicted[0] / "results.json").read_text())["meta"]["extra"]["reference decisions"]
    assert set(default) == {"chosen", "references", "layout_agreement", "colour_spread"}  # the preset's layout and colour checks alone
