"""The VAND 2025 few-shot protocol on MVTec LOCO AD, and the challenge's submission package.

Example::

    python experiments/vand2025.py --data-root DATA --preset offline --out runs/vand2025
    python experiments/vand2025.py --package runs/vand2025/submission --preset paper

Follows the challenge's evaluation script (``eval/src/eval/evaluate.py`` of the
VAND 2025 challenge repository, read through its public copy
``liuzhen19/cvpr-vand-challenge``):

- the five categories, seeds 42, 0, 1234 and k ∈ {1, 2, 4, 8};
- references: ``torch.manual_seed(seed); torch.randperm(len(train))[:k]`` over
  the ``train/good`` images sorted by path (``loco_ad.data.draw_references``);
- images: anomalib's ``MVTecLOCO`` datamodule with ``Resize((256, 256))``:
  PIL → RGB → float32 / 255 → bilinear antialiased resize to 256×256; ground
  truth: the union of an image's defect files (> 0), resized nearest-neighbour;
- ``image_score``: F1-max of the image scores; ``pixel_score``: F1-max over all
  pixels of all test images (anomalib ``F1Max`` on ``anomaly_map`` / ``gt_mask``);
- ``results.json``: F1-max averaged over seeds, then categories, for each k;
  ``aufc = sklearn.metrics.auc(k, f1)``, ``normalized_aufc`` the same over k
  rescaled to [0, 1], ``avg_image_score`` the mean over k.

The script imports ``torchvision.transforms.Resize`` (v1), which anomalib 2.7's
``MVTecLOCODataset`` calls as ``augmentations(image, mask)``, a call only the v2
transform accepts; this module reproduces the v2 transform (bilinear with
antialias for images, nearest for masks), the one that runs.

Identical pixels: each image is resized as above and rounded to uint8 by the
submission's ``tensor_to_rgb``; the rounded images are written as PNG (lossless)
under ``OUT/images_256`` in the MVTec LOCO layout and evaluated from there, so
this script and the submission's ``Model`` give the pipeline the same arrays.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2 import Resize
from torchvision.transforms.v2.functional import to_dtype, to_image

from loco_ad.analysis import Prediction
from loco_ad.cli import add_pipeline_arguments, config_from_args, pipeline_from_args, print_summary, printed_config, run_main
from loco_ad.data import CATEGORIES, DATA_ENV, CategoryData, Sample, data_root, load_category, resolve_categories
from loco_ad.errors import DataError
from loco_ad.io import check_output_dir, write_atomic, write_csv, write_json
from loco_ad.metrics import pixel_metrics

VAND_SEEDS: tuple[int, ...] = (42, 0, 1234)
VAND_SHOTS: tuple[int, ...] = (1, 2, 4, 8)
VAND_SIZE: tuple[int, int] = (256, 256)
METRICS_COLUMNS = ["seed", "k_shot", "category", "image_score", "pixel_score"]
TEMPLATE_DIR = Path(__file__).resolve().parent / "submission_template"


def submission_module() -> ModuleType:
    """The submission template's ``model.py`` as a module (its ``tensor_to_rgb``, ``map_to_image``, ``Model``)."""
    spec = importlib.util.spec_from_file_location("loco_ad_vand2025_submission", TEMPLATE_DIR / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def write_challenge_images(data: CategoryData, root: Path, to_rgb) -> CategoryData:
    """Write a category's images as the challenge sees them, in the MVTec LOCO layout.

    Existing files are kept (they depend only on the source image), so a re-run
    writes nothing. Only ``train/good`` and ``test`` images are written: the
    protocol needs no validation images and computes its masks from the originals.

    Arguments:
      data: the category at its original resolution.
      root: the data root to write to (``root/<category>/...``).
      to_rgb: the tensor → uint8 conversion of the submission (``tensor_to_rgb``).
    Returns:
      the written category, from ``load_category``.
    """
    for path in [*data.train, *(sample.path for sample in data.test)]:
        target = root / data.name / path.relative_to(data.root)
        if not target.exists():
            buffer = io.BytesIO()
            Image.fromarray(to_rgb(challenge_tensor(path))).save(buffer, format="PNG")
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


def run_protocol(pipeline, datasets: Sequence[CategoryData], image_root: Path, pixel: bool = True):
    """Run the VAND 2025 protocol.

    Arguments:
      pipeline: the ``Pipeline``; its config's ``input_size`` should be ``VAND_SIZE``.
      datasets: the categories at their original resolution.
      image_root: where the challenge's 256×256 images are written (see ``write_challenge_images``).
      pixel: compute ``pixel_score`` (NaN otherwise).
    Returns:
      (metrics rows with ``METRICS_COLUMNS``, the ``loco_ad.evaluate.Evaluation``).
    """
    from loco_ad.evaluate import check_datasets, evaluate

    check_datasets(datasets, VAND_SHOTS)
    submission = submission_module()
    resized = [write_challenge_images(data, image_root, submission.tensor_to_rgb) for data in datasets]
    masks = {data.name: [challenge_mask(s) for s in data.test] for data in datasets} if pixel else {}
    pixel_scores: dict[tuple[str, int, int], float] = {}

    def pixel_f1(data: CategoryData, seed: int, k: int, predictions: list[Prediction], detector) -> None:
        if pixel and predictions[0].map is not None:
            maps = [submission.map_to_image(p.map, VAND_SIZE) for p in predictions]
            pixel_scores[(data.name, seed, k)] = pixel_metrics(masks[data.name], maps)[1]

    result = evaluate(pipeline, resized, VAND_SEEDS, VAND_SHOTS, pixel=False, on_predictions=pixel_f1)
    rows = [
        {
            "seed": row["seed"],
            "k_shot": row["k_shot"],
            "category": row["category"],
            "image_score": row["image_score"],
            "pixel_score": pixel_scores.get((row["category"], row["seed"], row["k_shot"]), float("nan")),
        }
        for row in result.metrics
    ]
    return rows, result


PYPROJECT = """[project]
name = "submission_template"
version = "0.1.0"
description = "VAND 2025 few-shot submission: loco_ad (preset {preset})"
readme = "README.md"
requires-python = ">=3.10"
# loco_ad is not on PyPI: install it from its repository first (pip install -e /path/to/loco_ad).
dependencies = ["loco_ad", "anomalib>=2.0"]

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[tool.hatch.build.targets.wheel]
packages = ["src/submission_template"]
"""

README = """# VAND 2025 submission: loco_ad

Training-free few-shot anomaly detection (loco_ad, preset `{preset}`).
`src/submission_template/model.py` holds the challenge's `Model`: `setup` fits
loco_ad's pipeline on the few-shot images, `forward` returns an anomalib
`ImageBatch` with `pred_score` and `anomaly_map`. Install loco_ad from its
repository, then this folder (`pip install .`), and run the challenge's
evaluation script. Model outputs are cached in `$LOCO_AD_CACHE`
(default `~/.cache/loco_ad`).
"""


def write_package(folder: Path, preset: str) -> Path:
    """Write the challenge's submission package.

    Arguments:
      folder: the package folder to create (``pyproject.toml``, ``README.md``,
        ``src/submission_template/{__init__,model}.py``).
      preset: the loco_ad preset the ``Model`` runs.
    Returns:
      the path of the written ``model.py``.
    """
    from loco_ad.config import get_preset

    get_preset(preset)  # ConfigError for an unknown name, before anything is written
    template = (TEMPLATE_DIR / "model.py").read_text()
    marker = 'PRESET = "paper"'
    if template.count(marker) != 1:
        raise RuntimeError(f"{TEMPLATE_DIR / 'model.py'} must define {marker} exactly once")
    write_atomic(folder / "pyproject.toml", PYPROJECT.format(preset=preset))
    write_atomic(folder / "README.md", README.format(preset=preset))
    write_atomic(folder / "src" / "submission_template" / "__init__.py", '"""VAND 2025 submission: loco_ad."""\n')
    return write_atomic(folder / "src" / "submission_template" / "model.py", template.replace(marker, f"PRESET = {preset!r}"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python experiments/vand2025.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", help=f"MVTec LOCO AD root folder (default: ${DATA_ENV})")
    parser.add_argument("--category", nargs="+", help="run only these categories (default: all five, all required)")
    parser.add_argument("--out", type=Path, default=Path("runs/vand2025"), help="output folder (default runs/vand2025)")
    parser.add_argument("--no-pixel", action="store_true", help="skip pixel_score (NaN)")
    parser.add_argument("--package", type=Path, metavar="FOLDER", help="write the submission package to FOLDER and exit")
    add_pipeline_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        if args.package is not None:
            check_output_dir(args.package, "--package folder")
            model_file = write_package(args.package, args.preset)
            print(f"submission package written to {args.package}/ (model: {model_file}, preset {args.preset})")
            return 0
        config = config_from_args(args, input_size=VAND_SIZE)
        if printed_config(args, config):
            return 0
        check_output_dir(args.out, "--out folder")
        root = data_root(args.data_root)
        datasets = [load_category(root, name) for name in protocol_categories(root, args.category)]
        pipeline = pipeline_from_args(args, config)
        rows, result = run_protocol(pipeline, datasets, args.out / "images_256", pixel=not args.no_pixel)
        summary = result.summary()
        write_csv(args.out / "metrics.csv", rows, METRICS_COLUMNS)
        write_json(args.out / "results.json", summary)
        write_json(args.out / "references.json", result.references)
        for row in rows:
            print(f"{row['category']:<22} seed {row['seed']:>5}  k {row['k_shot']}  "
                  f"image F1-max {row['image_score']:.4f}  pixel F1-max {row['pixel_score']:.4f}")
        print_summary(summary, pipeline)
        print(f"results written to {args.out}/")
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
