"""Tests of the VAND 2025 submission: the ``Model``'s contract, ``vand2025.py --package`` on a fork, and the
official evaluator (pinned in ``shared/vand2025_challenge``) run on a generated fork."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import tomllib
import torch

from experiments.vand2025 import CARRIED, REPOSITORY, SOURCE_LINE, challenge_tensor, declare_loco_ad, main
from loco_ad.data import load_category
from loco_ad.errors import DataError
from tests.loco_tree import make_loco_tree

CHALLENGE = Path(__file__).resolve().parents[2] / "shared" / "vand2025_challenge"

# A fork's root pyproject.toml laid out as the challenge's (comments, a git source, other tables).
FORK_PYPROJECT = """[project]
name = "vand2025_eval"
version = "0.1.0"
dependencies = [
    "anomalib[full]",  # a ] inside a string
    "scikit-learn",
    # participants add their dependencies here
]

[tool.uv.sources]
anomalib = { git = "https://example.org/anomalib.git", branch = "main" }

[tool.hatch.build.targets.wheel]
packages = ["src/eval"]
"""


def make_fork(folder: Path, pyproject: str = FORK_PYPROJECT) -> Path:
    """A minimal checkout of a fork of the challenge: pyproject.toml, the evaluator's import, the template."""
    (folder / "src" / "eval" / "submission").mkdir(parents=True)
    (folder / "pyproject.toml").write_text(pyproject)
    (folder / "src" / "eval" / "evaluate.py").write_text("from eval.submission.model import Model\n")
    (folder / "src" / "eval" / "submission" / "model.py").write_text("class Model: ...\n")
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- --package


def test_package_makes_the_fork_a_submission(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fork = make_fork(tmp_path / "fork")
    evaluator = (fork / "src/eval/evaluate.py").read_bytes()
    assert main(["--package", str(fork), "--preset", "offline"]) == 0
    model = (fork / "src/eval/submission/model.py").read_text()
    assert "PRESET = 'offline'" in model and "class Model(nn.Module)" in model
    assert (fork / "src/eval/evaluate.py").read_bytes() == evaluator
    # the carried loco_ad: this repository's package and dependencies, no bytecode
    carried = fork / CARRIED
    assert (carried / "loco_ad" / "data.py").read_bytes() == (REPOSITORY / "loco_ad" / "data.py").read_bytes()
    assert not list(carried.rglob("__pycache__")) and not (carried / "loco_ad" / "sample_data").exists()
    own = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]
    assert tomllib.loads((carried / "pyproject.toml").read_text())["project"]["dependencies"] == own["dependencies"]
    # the fork's pyproject.toml: the two entries added, every original line kept
    text = (fork / "pyproject.toml").read_text()
    before, after = tomllib.loads(FORK_PYPROJECT), tomllib.loads(text)
    assert after["project"]["dependencies"] == ["loco_ad", *before["project"]["dependencies"]]
    assert after["tool"]["uv"]["sources"] == {**before["tool"]["uv"]["sources"], "loco_ad": {"path": CARRIED.as_posix()}}
    assert after["tool"]["hatch"] == before["tool"]["hatch"]
    assert [line for line in text.splitlines() if "loco_ad" not in line] == FORK_PYPROJECT.splitlines()
    assert "submission written" in capsys.readouterr().out

    first = snapshot(fork)
    (carried / "loco_ad" / "stale.py").write_text("")  # a file this checkout no longer has
    assert main(["--package", str(fork), "--preset", "offline"]) == 0
    assert snapshot(fork) == first  # running twice changes nothing


def test_declare_loco_ad_adds_only_what_is_missing(tmp_path: Path) -> None:
    where = tmp_path / "pyproject.toml"
    no_sources = '[project]\nname = "x"\ndependencies = ["loco-ad>=0.1"]\n'
    text = declare_loco_ad(no_sources, where)
    assert text.startswith(no_sources) and text.endswith(f"[tool.uv.sources]\n{SOURCE_LINE}\n")
    assert tomllib.loads(text)["project"]["dependencies"] == ["loco-ad>=0.1"]
    assert declare_loco_ad(text, where) == text
    with pytest.raises(DataError, match="another source"):
        declare_loco_ad(FORK_PYPROJECT.replace("[tool.uv.sources]\n", '[tool.uv.sources]\nloco_ad = { git = "u" }\n'), where)
    inline = '[project]\nname = "x"\ndependencies = []\n\n[tool.uv]\nsources = { anomalib = { path = "a" } }\n'
    with pytest.raises(DataError, match="by hand"):  # a second definition of the sources table would be invalid
        declare_loco_ad(inline, where)
    with pytest.raises(DataError, match="not valid TOML"):
        declare_loco_ad("[project\n", where)


@pytest.mark.parametrize("case", ["empty", "other_project"])
def test_package_refuses_a_folder_that_is_not_a_fork(tmp_path: Path, capsys: pytest.CaptureFixture, case: str) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    if case == "other_project":
        (folder / "pyproject.toml").write_text('[project]\nname = "other"\ndependencies = []\n')
        (folder / "src" / "eval").mkdir(parents=True)
        (folder / "src" / "eval" / "evaluate.py").write_text("print('not the challenge')\n")
    before = snapshot(folder)
    assert main(["--package", str(folder), "--preset", "offline"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ")
    assert snapshot(folder) == before


def test_package_takes_no_evaluation_arguments(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fork = make_fork(tmp_path / "fork")
    before = snapshot(fork)
    argv = ["--package", str(fork), "--data-root", str(tmp_path), "--out", str(tmp_path / "out"), "--scorers", "colour"]
    assert main(argv) == 2
    message = capsys.readouterr().err
    assert all(option in message for option in ("--data-root", "--out", "--scorers"))
    assert snapshot(fork) == before and not (tmp_path / "out").exists()


def test_package_rejects_an_unknown_preset_before_writing(tmp_path: Path) -> None:
    fork = make_fork(tmp_path / "fork")
    before = snapshot(fork)
    assert main(["--package", str(fork), "--preset", "nope"]) == 2
    assert snapshot(fork) == before


# ---------------------------------------------------------------- the Model


@pytest.fixture(scope="module")
def model_module():
    pytest.importorskip("anomalib")
    from experiments.submission_template import model

    return model


def test_model_honours_the_evaluator_contract(model_module, tmp_path: Path) -> None:
    data = load_category(make_loco_tree(tmp_path / "loco", n_train=5, n_good=2, n_logical=2, n_structural=0), "juice_bottle")
    train = torch.stack([challenge_tensor(path) for path in data.train])
    test = torch.stack([challenge_tensor(sample.path) for sample in data.test])
    model = model_module.Model(preset="offline", cache_dir=tmp_path / "cache", device="cpu")
    assert model.weights_url("juice_bottle") is None
    assert model.eval().to("cpu") is model  # what the evaluator's get_model does

    calls = []
    predict_many = model.pipeline.predict_many

    def counted(images, **kwargs):
        calls.append(len(images))
        return predict_many(images, **kwargs)

    model.pipeline.predict_many = counted

    def scores(fitted, references: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        fitted.setup({"few_shot_samples": references, "dataset_category": "juice_bottle"})
        with torch.no_grad():
            output = fitted(images)
        assert type(output).__name__ == "ImageBatch" and torch.equal(output.image, images)
        assert output.pred_score.dtype == torch.float32 and output.pred_score.device == images.device
        assert output.pred_score.shape == (len(images),)
        return output.pred_score

    first = scores(model, train[:2], test)
    second = scores(model, train[2:], test)  # setup again on the same instance: the new references replace the old
    fresh = model_module.Model(preset="offline", cache_dir=tmp_path / "cache", device="cpu")
    assert torch.equal(second, scores(fresh, train[2:], test))
    assert not torch.equal(first, second)
    assert calls == [len(test), len(test)]  # one batched predict_many per forward

    assert torch.equal(scores(fresh, train[2:], test[1:2]), second[1:2])  # a batch of one scores as in a batch of four


# ------------------------------------------------------- the official evaluator


def test_official_evaluator_scores_the_fork_as_vand2025(loco_subset: Path, tmp_path: Path) -> None:
    """The pinned evaluator, unmodified, on a fork made by --package gives vand2025.py's F1-max per (seed, k)."""
    if not (CHALLENGE / "src" / "eval" / "evaluate.py").is_file():
        pytest.skip(f"the pinned challenge repository is not at {CHALLENGE}")
    pytest.importorskip("anomalib")
    from experiments.vand2025_official import compare

    timing = compare(CHALLENGE, loco_subset, ["juice_bottle"], [42], [1, 2], "offline", tmp_path)
    with open(tmp_path / "comparison.csv") as file:
        rows = list(csv.DictReader(file))
    assert [(int(r["seed"]), int(r["k_shot"])) for r in rows] == [(42, 1), (42, 2)]
    assert all(abs(float(r["vand2025"]) - float(r["official"])) <= 1e-6 for r in rows)
    official = [float(r["official"]) for r in rows]
    test = load_category(loco_subset, "juice_bottle").test
    constant = 2 * sum(s.label for s in test) / (sum(s.label for s in test) + len(test))  # F1-max of tied scores
    assert len(set(official)) == 2 and all(abs(value - constant) > 1e-3 for value in official)  # the model's scores, not the template's zeros
    assert timing["loco_ad"].startswith(str(tmp_path / "fork" / CARRIED))  # it ran the carried code
    assert (tmp_path / "fork/src/eval/evaluate.py").read_bytes() == (CHALLENGE / "src/eval/evaluate.py").read_bytes()


@pytest.mark.parametrize("bad", ["challenge", "data_root", "category", "foreign"])
def test_official_comparison_with_bad_input_is_one_line_and_writes_nothing(
    bad: str, tiny_loco_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from experiments.vand2025_official import main

    challenge = tmp_path / "challenge"
    (challenge / "src" / "eval").mkdir(parents=True)
    (challenge / "src" / "eval" / "evaluate.py").write_text("")
    arguments = {"challenge": challenge, "data_root": tiny_loco_root, "category": "juice_bottle"}
    if bad == "foreign":  # a category in the layout that the official evaluator does not know
        arguments["data_root"] = make_loco_tree(tmp_path / "data", category="tire")
        arguments["category"] = "tire"
    else:
        arguments[bad] = {"challenge": tmp_path / "nowhere", "data_root": tmp_path / "nothing", "category": "breakfast_box"}[bad]
    out = tmp_path / "out"
    code = main(["--challenge", str(arguments["challenge"]), "--data-root", str(arguments["data_root"]),
                 "--category", str(arguments["category"]), "--out", str(out)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ")
    assert not out.exists()
