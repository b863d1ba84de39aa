"""The VAND 2025 few-shot protocol on MVTec LOCO AD, and the challenge submission in a fork of its repository.

Example::

    python experiments/vand2025.py --data-root DATA --preset offline --out runs/vand2025
    python experiments/vand2025.py --package FORK --preset paper

The protocol is the challenge's evaluator (``src/eval/evaluate.py`` of
``cvpr-vand/challenge``, commit 6e42e42, pinned unmodified in
``shared/vand2025_challenge/``):

- the five categories, seeds 42, 0, 1234 and k ∈ {1, 2, 4, 8};
- references: ``torch.manual_seed(seed); torch.randperm(len(train))[:k]`` over
  the ``train/good`` images sorted by path (``loco_ad.data.draw_references``);
- images: anomalib's ``MVTecLOCODataset`` with
  ``torchvision.transforms.v2.Resize((256, 256))``: PIL → RGB → float32 / 255
  → bilinear antialiased resize to 256×256;
- ``metrics.csv`` (the evaluator's columns ``seed,k_shot,category,image_score``):
  F1-max of the image scores of each (category, seed, k);
- ``results.json``: F1-max averaged over seeds, then categories, for each k;
  ``aufc = sklearn.metrics.auc(k, f1)``, ``normalized_aufc`` the same over k
  rescaled to [0, 1], ``avg_image_score`` the mean over k.

The evaluator reads only the image scores. This script also writes
``pixel_metrics.csv`` (``seed,k_shot,category,pixel_score``): the F1-max over all
pixels of all test images (anomalib ``F1Max``; the optional pixel metric of the
challenge's rules), the maps resized bilinearly to 256×256 and the ground truth
as the datamodule gives it (the union of an image's defect files, > 0, resized
nearest-neighbour).

Identical pixels: each image is resized as above and rounded to uint8 by
``loco_ad.data.tensor_to_rgb``, the conversion the submission's ``Model``
applies to the evaluator's tensors; the rounded images are written as PNG
(lossless) under ``OUT/images_256`` in the MVTec LOCO layout and evaluated from
there, so both give the pipeline the same arrays.

``--package FORK`` turns FORK, a checkout of a fork of the challenge repository,
into this pipeline's submission (the evaluator imports
``src/eval/submission/model.py``; the rules let a participant change only the
``src/eval/submission/`` folder and add dependencies to ``pyproject.toml``):

- ``src/eval/submission/model.py``: the ``Model`` of
  ``experiments/submission_template/model.py`` with the chosen preset;
- ``src/eval/submission/loco_ad/``: this checkout's ``loco_ad`` package with a
  ``pyproject.toml`` of its own (name, version and dependencies of this
  repository's), so the fork carries the code it runs;
- ``pyproject.toml``: ``loco_ad`` added to ``[project] dependencies`` and
  ``loco_ad = { path = "src/eval/submission/loco_ad" }`` to
  ``[tool.uv.sources]``, so that the challenge's ``uv sync`` installs it and its
  dependencies; the rest of the file is kept byte for byte.

``src/eval/evaluate.py`` is never written. Running ``--package`` again refreshes
``model.py`` and the carried code and leaves an edited ``pyproject.toml`` as it is.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2 import Resize
from torchvision.transforms.v2.functional import to_dtype, to_image

from loco_ad.analysis import Prediction
from loco_ad.cli import (
    ArgumentParser,
    Unique,
    add_pipeline_arguments,
    config_from_args,
    data_inputs,
    data_root_or_sample,
    output_folder,
    pipeline_from_args,
    print_summary,
    printed_config,
    run_main,
    seed,
)
from loco_ad.data import (
    CATEGORIES,
    DATA_ENV,
    SAMPLE_ROOT,
    CategoryData,
    Sample,
    load_category,
    resolve_categories,
    tensor_to_rgb,
)
from loco_ad.errors import ConfigError, DataError
from loco_ad.evaluate import Evaluation, check_datasets, evaluate
from loco_ad.io import ResultSet, check_output_dir, write_atomic, write_csv, write_json
from loco_ad.metrics import pixel_metrics
from loco_ad.pipeline import Pipeline

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

VAND_SEEDS: tuple[int, ...] = (42, 0, 1234)
VAND_SHOTS: tuple[int, ...] = (1, 2, 4, 8)
VAND_SIZE: tuple[int, int] = (256, 256)
METRICS_COLUMNS = ["seed", "k_shot", "category", "image_score"]  # the evaluator's metrics.csv
PIXEL_COLUMNS = ["seed", "k_shot", "category", "pixel_score"]
DEFAULT_OUT = Path("runs/vand2025")

REPOSITORY = Path(__file__).resolve().parents[1]
MODEL_TEMPLATE = REPOSITORY / "experiments" / "submission_template" / "model.py"
EVALUATOR = Path("src/eval/evaluate.py")  # in the fork; never written
EVALUATOR_IMPORT = "from eval.submission.model import Model"
SUBMISSION = Path("src/eval/submission")
CARRIED = SUBMISSION / "loco_ad"  # the carried loco_ad project, relative to the fork
SOURCE_LINE = f'loco_ad = {{ path = "{CARRIED.as_posix()}" }}'


def challenge_tensor(path: str | Path) -> torch.Tensor:
    """An image as the challenge's datamodule passes it: 3×256×256 float32 in [0, 1].

    Arguments:
      path: the image file.
    Returns:
      the tensor (anomalib ``read_image(as_tensor=True)``, then ``Resize((256, 256))``).
    """
    with Image.open(path) as image:
        tensor = to_dtype(to_image(image.convert("RGB")), torch.float32, scale=True)
    return Resize(VAND_SIZE)(tensor)


def challenge_mask(sample: Sample) -> np.ndarray:
    """A test sample's ground truth as the challenge's datamodule passes it: 256×256 bool.

    Arguments:
      sample: the test sample (good images give all False).
    Returns:
      the union of its defect files (> 0), resized nearest-neighbour.
    """
    if not sample.mask_paths:
        return np.zeros(VAND_SIZE, bool)
    channels = [np.asarray(Image.open(path).convert("L")) > 0 for path in sample.mask_paths]
    union = tv_tensors.Mask(torch.from_numpy(np.any(channels, axis=0))[None])
    return Resize(VAND_SIZE)(union)[0].numpy().astype(bool)


def write_challenge_images(data: CategoryData, root: Path) -> CategoryData:
    """Write a category's images as the challenge's ``Model`` sees them, in the MVTec LOCO layout.

    Existing files are kept (they depend only on the source image), so a re-run
    writes nothing. Only ``train/good`` and ``test`` images are written: the
    protocol needs no validation images and computes its masks from the originals.

    Arguments:
      data: the category at its original resolution.
      root: the data root to write to (``root/<category>/...``).
    Returns:
      the written category, from ``load_category``.
    """
    for path in [*data.train, *(sample.path for sample in data.test)]:
        target = root / data.name / path.relative_to(data.root)
        if not target.exists():
            buffer = io.BytesIO()
            Image.fromarray(tensor_to_rgb(challenge_tensor(path)[None])[0]).save(buffer, format="PNG")
            write_atomic(target, buffer.getvalue())
    return load_category(root, data.name)


def protocol_categories(root: Path, names: Sequence[str] | None) -> list[str]:
    """The categories to run: all five (each must be present) unless ``names`` narrows the run."""
    if names:
        return resolve_categories(root, names)
    missing = [name for name in CATEGORIES if not (root / name).is_dir()]
    if missing:
        raise DataError(
            f"the VAND 2025 protocol needs all five MVTec LOCO categories; {', '.join(missing)} not found under {root}; "
            "pass --category to run only some"
        )
    return list(CATEGORIES)


def run_protocol(
    pipeline: Pipeline,
    datasets: Sequence[CategoryData],
    image_root: Path,
    seeds: Sequence[int] = VAND_SEEDS,
    shots: Sequence[int] = VAND_SHOTS,
    pixel: bool = True,
) -> tuple[list[dict], list[dict], Evaluation]:
    """Run the VAND 2025 protocol.

    Arguments:
      pipeline: the ``Pipeline``; its config's ``input_size`` should be ``VAND_SIZE``.
      datasets: the categories at their original resolution.
      image_root: where the challenge's 256×256 images are written (see ``write_challenge_images``).
      seeds, shots: the protocol's seeds and k values.
      pixel: compute ``pixel_score``.
    Returns:
      (rows with ``METRICS_COLUMNS``, rows with ``PIXEL_COLUMNS`` (empty without ``pixel``),
      the ``loco_ad.evaluate.Evaluation``), rows in the evaluator's order: category, seed, k.
    """
    if min(shots) < 1:
        raise ConfigError(f"k must be at least 1, got {min(shots)}")
    check_datasets(datasets, shots)
    resized = [write_challenge_images(data, image_root) for data in datasets]
    masks = {data.name: [challenge_mask(s) for s in data.test] for data in datasets} if pixel else {}
    pixel_rows: list[dict] = []

    def challenge_map(seed: int, k: int, prediction: Prediction) -> Prediction:
        """The scores and the map at the challenge's size: all ``pixel_f1`` needs, held for every test image of a fit."""
        small = prediction.map
        if small is not None:
            small = cv2.resize(small.astype(np.float32), VAND_SIZE[::-1], interpolation=cv2.INTER_LINEAR)
        return dataclasses.replace(prediction.scores_only(), map=small)

    def pixel_f1(data: CategoryData, seed: int, k: int, predictions: list[Prediction], detector) -> None:
        if pixel and predictions[0].map is not None:
            score = pixel_metrics(masks[data.name], [p.map for p in predictions])[1]
            pixel_rows.append({"seed": seed, "k_shot": k, "category": data.name, "pixel_score": score})

    result = evaluate(pipeline, resized, seeds, shots, pixel=False, on_predictions=pixel_f1, keep=challenge_map)
    rows = [{column: row[column] for column in METRICS_COLUMNS} for row in result.metrics]
    return rows, pixel_rows, result


def check_fork(fork: Path) -> None:
    """Raise ``DataError`` unless ``fork`` is a checkout of the challenge repository (or a fork of it)."""
    evaluator = fork / EVALUATOR
    if not (fork / "pyproject.toml").is_file() or not evaluator.is_file() or EVALUATOR_IMPORT not in evaluator.read_text():
        raise DataError(
            f"{fork} is not a checkout of the VAND 2025 challenge repository (a fork of cvpr-vand/challenge): "
            f"expected pyproject.toml and {EVALUATOR.as_posix()} with '{EVALUATOR_IMPORT}'"
        )


def _name(requirement: str) -> str:
    """The normalised project name of a requirement string (``loco_ad>=0.1`` → ``loco-ad``)."""
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9._-]*)", requirement).group(1)).lower()


def _dependencies_opening(text: str) -> int | None:
    """The offset just after the ``[`` of ``dependencies = [`` in the ``[project]`` table of ``text``, or None."""
    project = re.search(r"^\[project\][ \t]*(#.*)?$", text, re.MULTILINE)
    if project is None:
        return None
    table_end = re.compile(r"^\[", re.MULTILINE).search(text, project.end())
    opening = re.compile(r"^dependencies\s*=\s*\[", re.MULTILINE).search(
        text, project.end(), table_end.start() if table_end else len(text)
    )
    return opening.end() if opening else None


def declare_loco_ad(text: str, where: Path) -> str:
    """A fork's ``pyproject.toml`` with ``loco_ad`` declared as a dependency from the carried folder.

    Adds ``"loco_ad"`` at the head of ``[project] dependencies`` and
    ``SOURCE_LINE`` under ``[tool.uv.sources]`` (appending that table when
    absent), each only when missing; all other bytes are kept. The result is
    parsed again and must equal the input plus exactly these two entries.

    Arguments:
      text: the file's content.
      where: its path, for messages.
    Returns:
      the new content (``text`` itself when both entries are there).
    Raises:
      DataError: the file is not valid TOML, gives loco_ad another source, or
        is laid out so that the entries cannot be added here (add them by hand).
    """
    by_hand = f"add '\"loco_ad\"' to [project] dependencies and '{SOURCE_LINE}' under [tool.uv.sources] by hand"
    try:
        expected = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise DataError(f"{where} is not valid TOML: {error}") from None
    dependencies = expected.get("project", {}).get("dependencies")
    if not isinstance(dependencies, list):
        raise DataError(f"{where} has no [project] dependencies list; {by_hand}")
    sources = expected.setdefault("tool", {}).setdefault("uv", {}).setdefault("sources", {})
    wanted = {"path": CARRIED.as_posix()}
    given = [value for key, value in sources.items() if _name(key) == "loco-ad"]
    others = [value for value in given if value != wanted]
    if others:
        raise DataError(f"{where} gives loco_ad another source ({others[0]}); remove it to use the code --package carries")
    if not given:
        sources["loco_ad"] = wanted
        header = re.search(r"^\[tool\.uv\.sources\][ \t]*(#.*)?$", text, re.MULTILINE)
        if header:
            text = f"{text[: header.end()]}\n{SOURCE_LINE}{text[header.end() :]}"
        else:
            text = f"{text.rstrip()}\n\n[tool.uv.sources]\n{SOURCE_LINE}\n"
    if not any(_name(requirement) == "loco-ad" for requirement in dependencies):
        dependencies.insert(0, "loco_ad")
        opening = _dependencies_opening(text)
        if opening is None:
            raise DataError(f"cannot find the dependencies list of [project] in {where}; {by_hand}")
        text = f'{text[:opening]}\n    "loco_ad",  # carried in {CARRIED.as_posix()}{text[opening:]}'
    try:
        if tomllib.loads(text) == expected:
            return text
    except tomllib.TOMLDecodeError:
        pass
    raise DataError(f"cannot edit {where} safely; {by_hand}")


def carried_pyproject() -> str:
    """The ``pyproject.toml`` of the carried loco_ad: this repository's name, version, dependencies and build."""
    own = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())
    project = {key: own["project"][key] for key in ("name", "version", "description", "requires-python", "license", "dependencies")}
    tables = {
        "project": project,
        "build-system": own["build-system"],
        "tool.setuptools.packages.find": own["tool"]["setuptools"]["packages"]["find"],
    }
    # JSON strings and lists of strings are valid TOML values.
    body = "\n\n".join(
        f"[{table}]\n" + "\n".join(f"{key} = {json.dumps(value)}" for key, value in values.items())
        for table, values in tables.items()
    )
    return f"# loco_ad as carried by experiments/vand2025.py --package; installed by uv from [tool.uv.sources]\n{body}\n"


def write_package(fork: Path, preset: str) -> Path:
    """Make ``fork`` (a checkout of a fork of the challenge repository) a submission of this pipeline.

    Everything is checked before anything is written: the fork, the preset and
    the edit of its ``pyproject.toml``.

    Arguments:
      fork: the fork's root folder.
      preset: the loco_ad preset the ``Model`` runs.
    Returns:
      the path of the written ``model.py``.
    Raises:
      DataError: ``fork`` is not a checkout of the challenge, or its pyproject.toml cannot be edited.
      ConfigError: unknown preset.
    """
    from loco_ad.config import get_preset

    check_fork(fork)
    get_preset(preset)
    template = MODEL_TEMPLATE.read_text()
    marker = 'PRESET = "paper"'
    if template.count(marker) != 1:
        raise RuntimeError(f"{MODEL_TEMPLATE} must define {marker} exactly once")
    pyproject = fork / "pyproject.toml"
    text = pyproject.read_text()
    declared = declare_loco_ad(text, pyproject)

    carried = fork / CARRIED
    staging = carried.with_name(f".{carried.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    # no bytecode, and not the bundled sample (MVTec LOCO images under CC BY-NC-SA 4.0, which a submission does not use)
    ignored = shutil.ignore_patterns("__pycache__", "*.pyc", "sample_data")
    shutil.copytree(REPOSITORY / "loco_ad", staging / "loco_ad", ignore=ignored)
    write_atomic(staging / "pyproject.toml", carried_pyproject())
    shutil.rmtree(carried, ignore_errors=True)
    staging.rename(carried)
    if not (fork / SUBMISSION / "__init__.py").exists():
        write_atomic(fork / SUBMISSION / "__init__.py", '"""VAND 2025 submission: loco_ad."""\n')
    if declared != text:
        write_atomic(pyproject, declared)
    return write_atomic(fork / SUBMISSION / "model.py", template.replace(marker, f"PRESET = {preset!r}"))


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python experiments/vand2025.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", help=f"MVTec LOCO AD root folder (default: ${DATA_ENV}, else the bundled sample)")
    parser.add_argument("--category", nargs="+", help="run only these categories (default: all five, all required; the bundled sample's one)")
    parser.add_argument("--seeds", nargs="+", type=seed, action=Unique, default=list(VAND_SEEDS), help="draw seeds (default 42 0 1234)")
    parser.add_argument("--shots", nargs="+", type=int, action=Unique, default=list(VAND_SHOTS), help="k values (default 1 2 4 8)")
    parser.add_argument("--out", type=output_folder, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--no-pixel", action="store_true", help="skip pixel_metrics.csv")
    parser.add_argument(
        "--package", type=Path, metavar="FORK",
        help="make FORK, a checkout of a fork of the challenge repository, a submission of --preset, and exit "
             "(takes no other option)",
    )
    add_pipeline_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    def body() -> int:
        if args.package is not None:
            defaults = vars(parser.parse_args([]))
            given = [f"--{key.replace('_', '-')}" for key, value in vars(args).items()
                     if key not in ("package", "preset", "quiet") and value != defaults[key]]
            if given:
                raise ConfigError(f"--package writes the submission only and takes no {', '.join(given)}; "
                                  "run the protocol as a separate command")
            check_output_dir(args.package, "--package folder")
            model_file = write_package(args.package, args.preset)
            print(f"submission written to {args.package} (model {model_file}, preset {args.preset}); "
                  f"loco_ad carried in {args.package / CARRIED}")
            return 0
        config = config_from_args(args, input_size=VAND_SIZE)
        if printed_config(args, config):
            return 0
        out = args.out or DEFAULT_OUT
        check_output_dir(out, "--out folder")
        root = data_root_or_sample(args.data_root)
        names = args.category or (["all"] if root == SAMPLE_ROOT else None)  # the sample holds one category
        datasets = [load_category(root, name) for name in protocol_categories(root, names)]
        pipeline = pipeline_from_args(args, config)
        results = ResultSet(out, inputs=data_inputs(root, datasets))
        with results as staging:
            results.carry("images_256")  # the resized images depend on their source only: a re-run reuses them
            rows, pixel_rows, result = run_protocol(
                pipeline, datasets, staging / "images_256", args.seeds, args.shots, pixel=not args.no_pixel
            )
            summary = result.summary()
            write_csv(staging / "metrics.csv", rows, METRICS_COLUMNS)
            if pixel_rows:
                write_csv(staging / "pixel_metrics.csv", pixel_rows, PIXEL_COLUMNS)
            write_json(staging / "results.json", summary)
            write_json(staging / "references.json", {  # the resized images' paths once the set is in place
                category: {draw: {k: [str(results.final_path(path)) for path in paths] for k, paths in by_k.items()}
                           for draw, by_k in by_seed.items()}
                for category, by_seed in result.references.items()
            })
        pixel_by_run = {(r["category"], r["seed"], r["k_shot"]): r["pixel_score"] for r in pixel_rows}
        for row in rows:
            pixel_score = pixel_by_run.get((row["category"], row["seed"], row["k_shot"]), float("nan"))
            print(f"{row['category']:<22} seed {row['seed']:>5}  k {row['k_shot']}  "
                  f"image F1-max {row['image_score']:.4f}  pixel F1-max {pixel_score:.4f}")
        print_summary(summary, pipeline)
        print(f"results written to {out}/")
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
