"""Result writers: atomic writes with the user's umask, the output-folder check done before any work, and
all-or-nothing result sets."""

from __future__ import annotations

import errno
import importlib
import os
import stat

import pytest

from loco_ad import io as io_module
from loco_ad.errors import OutputError, WriteError
from loco_ad.io import RESULT_MARKER, ResultSet, check_output_dir, write_atomic


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        path = write_atomic(tmp_path / "sub" / "a.txt", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert path.read_text() == "x" and os.listdir(path.parent) == ["a.txt"]


def test_writable_folders_pass_and_nothing_is_created(tmp_path):
    check_output_dir(tmp_path)
    check_output_dir(tmp_path / "new" / "deeper")
    assert os.listdir(tmp_path) == []


def test_a_file_or_a_folder_under_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="is a file"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(OutputError, match=f"{tmp_path / 'file'} is a file"):
        check_output_dir(tmp_path / "file" / "out")


def test_a_read_only_folder_is_refused(read_only_dir):
    with pytest.raises(OutputError, match="cannot write"):
        check_output_dir(read_only_dir, "--out folder")
    with pytest.raises(OutputError, match=f"created in {read_only_dir}"):
        check_output_dir(read_only_dir / "out")


@pytest.mark.parametrize(
    "script, folder_option",
    [("ablation", "--out"), ("fallback_scales", "--out"), ("threshold_rules", "--out"), ("vand2025", "--out"),
     ("vand2025", "--package"), ("benchmark", "--out")],
)
def test_experiments_refuse_an_unwritable_output_folder_first(script, folder_option, tmp_path, capsys):
    main = importlib.import_module(f"experiments.{script}").main
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "out"
    # the data root does not exist either: the output folder is checked first
    options = ["--data-root", str(tmp_path / "no_data"), "--preset", "offline", "--no-cache"]
    if script == "benchmark":
        options = ["--presets", "offline"]
    elif folder_option == "--package":  # --package takes no evaluation option
        options = ["--preset", "offline"]
    assert main([*options, folder_option, str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and f"{folder_option} folder {out}" in err


# ------------------------------------------------------------------ result sets
def _files(folder) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path → content)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _write_set(out, files: dict[str, str]) -> None:
    with ResultSet(out) as staging:
        for name, text in files.items():
            write_atomic(staging / name, text)


@pytest.mark.parametrize("relation", ["is", "lies inside", "contains"])
def test_an_output_folder_over_an_input_is_refused(tmp_path, relation):
    data = tmp_path / "data" / "images"
    data.mkdir(parents=True)
    out = {"is": data, "lies inside": data / "out", "contains": tmp_path / "data"}[relation]
    with pytest.raises(OutputError, match=f"{relation} the --images folder {data}"):
        check_output_dir(out, "--out folder", {"--images folder": data, "--good folder": None})
    assert [p.name for p in tmp_path.rglob("*")] == ["data", "images"]


def test_inputs_are_compared_by_real_path(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OutputError, match="lies inside the data root"):
        check_output_dir(tmp_path / "link" / "out", "--out folder", {"data root": tmp_path / "real"})
    with pytest.raises(OutputError, match="is the --good folder"):
        ResultSet(tmp_path / "real", inputs={"--good folder": tmp_path / "link"}).__enter__()
    check_output_dir(tmp_path / "elsewhere", "--out folder", {"data root": tmp_path / "link"})


def test_a_result_set_replaces_the_previous_one_whole(tmp_path):
    out = tmp_path / "runs" / "out"
    _write_set(out, {"results.csv": "old", "images/a.png": "a", "images/b.png": "b"})
    assert set(_files(out)) == {RESULT_MARKER, "results.csv", "images/a.png", "images/b.png"}
    _write_set(out, {"results.csv": "new", "images/c.png": "c"})
    assert _files(out) == {RESULT_MARKER: _files(out)[RESULT_MARKER], "results.csv": b"new", "images/c.png": b"c"}
    assert os.listdir(tmp_path / "runs") == ["out"]  # no staging folder, no lock file left


@pytest.mark.parametrize("failure", ["full disk", "interrupted"])
def test_a_failed_set_leaves_the_previous_one_byte_identical(tmp_path, monkeypatch, failure):
    out = tmp_path / "out"
    _write_set(out, {"results.csv": "old", "images/a.png": "a"})
    before = _files(out)
    real_new_temporary = io_module._new_temporary

    def full_disk(path):
        if path.name == "results.json":  # a real ENOSPC from the kernel: writes to /dev/full fail
            return os.open("/dev/full", os.O_WRONLY), path.with_name(".never")
        return real_new_temporary(path)

    monkeypatch.setattr(io_module, "_new_temporary", full_disk)
    with pytest.raises(WriteError if failure == "full disk" else KeyboardInterrupt) as caught:
        with ResultSet(out) as staging:
            write_atomic(staging / "results.csv", "new")
            write_atomic(staging / "images" / "b.png", "b")
            if failure == "interrupted":
                raise KeyboardInterrupt
            write_atomic(staging / "results.json", "{}")
    if failure == "full disk":
        assert isinstance(caught.value, OSError) and caught.value.errno == errno.ENOSPC
        assert str(caught.value) == f"cannot write {staging / 'results.json'}: No space left on device"
    assert _files(out) == before and os.listdir(tmp_path) == ["out"]


def test_a_failed_first_set_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with ResultSet(tmp_path / "new" / "deeper" / "out") as staging:
            write_atomic(staging / "a.csv", "x")
            raise RuntimeError("model failed")
    assert os.listdir(tmp_path) == []


def test_a_second_writer_is_refused_while_the_first_writes(tmp_path):
    out = tmp_path / "out"
    _write_set(out, {"a.csv": "first"})
    with ResultSet(out) as staging:
        write_atomic(staging / "a.csv", "second")
        with pytest.raises(OutputError, match="another loco_ad command is writing to --out folder"):
            ResultSet(out).__enter__()
    assert (out / "a.csv").read_text() == "second"
    _write_set(out, {"a.csv": "third"})  # the lock is free again
    assert (out / "a.csv").read_text() == "third"


def test_what_a_killed_run_left_is_cleared_by_the_next(tmp_path):
    out = tmp_path / "out"
    _write_set(out, {"a.csv": "first"})
    killed = tmp_path / ".out.0123456789ab.partial"  # a staging folder and a lock file, as kill -9 leaves them
    (killed / "images").mkdir(parents=True)
    (killed / "images" / "x.png").write_text("half")
    (tmp_path / ".out.lock").write_text("")
    neighbour = tmp_path / ".out.b.0123456789ab.partial"  # a run writing to out.b right now: not ours to clear
    neighbour.mkdir()
    _write_set(out, {"b.csv": "second"})
    neighbour.rmdir()
    assert sorted(os.listdir(tmp_path)) == ["out"] and set(_files(out)) == {RESULT_MARKER, "b.csv"}
    # killed between its two renames: the previous set is put back, then replaced as usual
    os.rename(out, tmp_path / ".out.0123456789ab.old")
    _write_set(out, {"c.csv": "third"})
    assert sorted(os.listdir(tmp_path)) == ["out"] and set(_files(out)) == {RESULT_MARKER, "c.csv"}


def test_a_folder_of_other_files_is_not_replaced(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(OutputError, match="holds files that are not a loco_ad result set"):
        _write_set(tmp_path, {"a.csv": "x"})
    assert os.listdir(tmp_path) == ["mine.txt"]


def test_carried_entries_are_hard_links_and_the_old_set_is_untouched_until_replaced(tmp_path):
    out = tmp_path / "out"
    _write_set(out, {"images_256/a.png": "a", "metrics.csv": "old"})
    results = ResultSet(out)
    with results as staging:
        assert results.carry("images_256") and not results.carry("nothing")
        assert os.path.samefile(staging / "images_256" / "a.png", out / "images_256" / "a.png")
        assert results.final_path(staging / "images_256" / "a.png") == out / "images_256" / "a.png"
        write_atomic(staging / "metrics.csv", "new")
    assert _files(out)["images_256/a.png"] == b"a" and _files(out)["metrics.csv"] == b"new"
