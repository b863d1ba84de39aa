"""Result writers: atomic writes with the user's umask, and the output-folder check done before any work."""

from __future__ import annotations

import importlib
import os
import stat

import pytest

from loco_ad.errors import OutputError
from loco_ad.io import check_output_dir, write_atomic


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
