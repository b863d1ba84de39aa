"""Tests of experiments/anomaly_groups.py: AUROC per group of anomalies by hand, and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.anomaly_groups import group_aurocs, main
from loco_ad.io import write_csv


def scores_rows() -> list[dict]:
    """Two runs (seeds); good images score 0.2 and 0.4; group 'a' images score 0.3 and 0.9."""
    rows = []
    for seed in (0, 1):
        for file, label, value in [("g1", 0, 0.2), ("g2", 0, 0.4), ("a1", 1, 0.3), ("a2", 1, 0.9), ("b1", 1, 0.1)]:
            score = value if seed == 0 else 1.0 - value  # seed 1 ranks everything the other way
            rows.append({"category": "c", "seed": seed, "k_shot": 2, "file": file, "label": label,
                         "histogram": score, "score": value})
    return rows


def test_group_aurocs_by_hand() -> None:
    table = group_aurocs(scores_rows(), {"a1": "a", "a2": "a", "b1": "b"}, ["histogram", "score"])
    # group a vs good, seed 0: pairs (0.3>0.2, 0.3<0.4, 0.9>0.2, 0.9>0.4) -> 3/4; seed 1 reversed -> 1/4
    assert table["a"]["histogram"] == pytest.approx(0.5)
    assert table["a"]["score"] == pytest.approx(0.75)
    assert table["b"]["score"] == pytest.approx(0.0)  # 0.1 is below both good images


def test_cli_prints_table_and_rejects_missing_file(tmp_path: Path, capsys) -> None:
    scores, groups = write_csv(tmp_path / "scores.csv", scores_rows()), tmp_path / "groups.csv"
    groups.write_text("file,group\na1,a\na2,a\n")
    assert main(["--scores", str(scores), "--groups", str(groups)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| group | histogram | score |"
    assert lines[2] == "| a | 0.50 | 0.75 |"
    assert main(["--scores", str(tmp_path / "missing.csv"), "--groups", str(groups)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_a_column_left_blank_in_a_run_is_averaged_over_the_other_runs() -> None:
    rows = scores_rows()
    for row in rows:
        if row["seed"] == 1:
            row["histogram"] = ""  # not summed in that run (k = 1 with single_reference_scorers)
    table = group_aurocs(rows, {"a1": "a", "a2": "a"}, ["histogram", "score"])
    assert table["a"]["histogram"] == pytest.approx(0.75)  # seed 0 alone
    assert table["a"]["score"] == pytest.approx(0.75)


def test_good_images_listed_in_the_groups_file_stay_good(tmp_path: Path, capsys) -> None:
    scores, groups = write_csv(tmp_path / "scores.csv", scores_rows()), tmp_path / "groups.csv"
    groups.write_text("file,shows\ng1,orange\ng2,orange\na1,a\na2,a\n")  # a provenance-like file naming goods too
    assert main(["--scores", str(scores), "--groups", str(groups), "--group-column", "shows"]) == 0
    out = capsys.readouterr().out
    assert "| a | 0.50 | 0.75 |" in out and "orange" not in out
    assert main(["--scores", str(scores), "--groups", str(groups)]) == 2
    assert "no column group" in capsys.readouterr().err
