"""How a setting copes with products whose pose varies: generated good and defective images of real photographs.

Example::

    python experiments/pose_sensitivity.py --preset offline --grid embedder.handcrafted.position_weight=8,4,1

The offline preset's settings were chosen on juice_bottle, whose bottles stand
in the same place in every image; many products do not (parts in a bag, a
part placed by hand). This script measures what a setting costs when the pose
varies, without any dataset: for each photograph bundled with scikit-image
(``--images``) and each pose range (``--shifts``, pixels on a 320-px-wide
copy), it draws good images by a random shift of up to that many pixels in x
and y, a rotation of up to a quarter of it in degrees, ±5 % brightness and
sensor noise, and defective images by the same draws applied to the
photograph with one defect in a random square of a sixth of its height, in
turn: the square blurred away (a part missing), its hue turned by 120° (a
wrong colour), copied elsewhere (a part doubled or misplaced), a dark
scratch. Each candidate (the preset, then every value of ``--grid KEY=V1,V2``)
is fitted on the ``--good`` good draws and scores ``--test-good`` good and
``--defects`` defective draws. Prints the image AUROC per photograph, shift
and candidate, and per candidate and shift the share of good and of defective
images each automatic threshold rule (``loco_ad.threshold.RULES``) flags, and
the AUROC of each kind of defect alone; writes them to OUT/pose_sensitivity.csv.

Generated images are a proxy: one photograph, moved rigidly, is not a product
line. The figures say how fast a setting degrades with pose, not what a real
product scores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from loco_ad.cli import (
    ArgumentParser,
    add_pipeline_arguments,
    config_from_args,
    output_folder,
    pipeline_from_args,
    printed_config,
    run_main,
)
from loco_ad.config import apply_overrides
from loco_ad.errors import ConfigError
from loco_ad.io import ResultSet, write_csv
from loco_ad.metrics import auroc_and_f1_max
from loco_ad.synthetic import DEFECTS, with_defect
from loco_ad.threshold import RULES, threshold_from

WIDTH = 320  # pixels of the photograph's copy that the shifts refer to


def photograph(name: str) -> np.ndarray:
    """A scikit-image sample photograph as H×W×3 uint8 RGB, WIDTH pixels wide (``ConfigError`` if unknown)."""
    from skimage import data

    loader = getattr(data, name, None)
    if loader is None or name.startswith("_"):
        raise ConfigError(f"--images: scikit-image has no sample image {name!r} (try coffee, rocket, chelsea, astronaut)")
    image = np.asarray(loader())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = image[..., :3].astype(np.uint8)
    height = round(image.shape[0] * WIDTH / image.shape[1])
    return cv2.resize(image, (WIDTH, height), interpolation=cv2.INTER_AREA)


def posed(image: np.ndarray, shift: float, rng: np.random.Generator) -> np.ndarray:
    """``image`` moved by up to ``shift`` pixels, turned by up to shift/4 degrees, ±5 % brightness, noise σ 2."""
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), float(rng.uniform(-shift / 4, shift / 4)), 1.0)
    matrix[:, 2] += rng.uniform(-shift, shift, 2)
    moved = cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT).astype(np.float32)
    return np.clip(moved * rng.uniform(0.95, 1.05) + rng.normal(0.0, 2.0, moved.shape), 0, 255).astype(np.uint8)


def draw_set(image: np.ndarray, shift: float, n_good: int, n_test_good: int, n_defects: int, seed: int):
    """(references, test images, labels) for one photograph and pose range, from ``seed``."""
    rng = np.random.default_rng(seed)
    references = [posed(image, shift, rng) for _ in range(n_good)]
    tests = [posed(image, shift, rng) for _ in range(n_test_good)]
    tests += [posed(with_defect(image, DEFECTS[i % len(DEFECTS)], rng), shift, rng) for i in range(n_defects)]
    return references, tests, np.array([0] * n_test_good + [1] * n_defects)


def auroc_by_defect(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """``auroc_<kind>``: the image AUROC of each kind of defect of ``draw_set`` (kinds in turn) against the good images."""
    good, defective = scores[labels == 0], scores[labels == 1]
    result = {}
    for index, kind in enumerate(DEFECTS[: len(defective)]):
        kind_scores = defective[index :: len(DEFECTS)]
        kind_labels = np.r_[np.zeros(len(good)), np.ones(len(kind_scores))]
        result[f"auroc_{kind}"] = auroc_and_f1_max(kind_labels, np.r_[good, kind_scores])[0]
    return result


def parse_grid(pair: str | None) -> list[list[str]]:
    """The candidates' ``--set`` overrides: none (the preset), then KEY=V for each value of ``--grid KEY=V1,V2``."""
    if pair is None:
        return [[]]
    key, sep, values = pair.partition("=")
    if not sep or not key or not values:
        raise ConfigError(f"--grid takes KEY=V1,V2,...; got {pair!r}")
    return [[]] + [[f"{key}={value}"] for value in values.split(",")]


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python experiments/pose_sensitivity.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", nargs="+", default=["coffee", "rocket", "chelsea", "astronaut"],
                        help="scikit-image sample photographs (default: coffee rocket chelsea astronaut)")
    parser.add_argument("--shifts", nargs="+", type=float, default=[3.0, 25.0], help="pose ranges in pixels (default 3 25)")
    parser.add_argument("--grid", help="KEY=V1,V2,...: candidates besides the preset (any --set key)")
    parser.add_argument("--good", type=int, default=4, help="good reference images per set (default 4)")
    parser.add_argument("--test-good", type=int, default=10, help="good test images per set (default 10)")
    parser.add_argument("--defects", type=int, default=12, help="defective test images per set (default 12)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the draws (default 1)")
    parser.add_argument("--out", type=output_folder, default=Path("runs/pose_sensitivity"), help="output folder")
    add_pipeline_arguments(parser, default_preset="offline")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        config = config_from_args(args)
        if printed_config(args, config):
            return 0
        if args.good < 1 or args.test_good < 1 or args.defects < 1:
            raise ConfigError("--good, --test-good and --defects must each be at least 1")
        candidates = [(overrides, apply_overrides(config, overrides)) for overrides in parse_grid(args.grid)]
        photographs = {name: photograph(name) for name in args.images}
        results = ResultSet(args.out)
        results.check()
        rows = []
        for overrides, candidate in candidates:
            pipeline = pipeline_from_args(args, candidate)
            for name, image in photographs.items():
                for shift in args.shifts:
                    references, tests, labels = draw_set(image, shift, args.good, args.test_good, args.defects, args.seed)
                    detector = pipeline.fit(references).detector
                    scores = np.array([p.score for p in pipeline.predict_many(tests, progress=False, remember=False)])
                    row = {"candidate": " ".join(overrides) or "preset", "image": name, "shift": shift,
                           "auroc": auroc_and_f1_max(labels, scores)[0], **auroc_by_defect(labels, scores)}
                    loo, single_reference = detector.leave_one_out_scores(), detector.single_reference_threshold()
                    for rule in RULES:
                        flagged = scores >= threshold_from(loo, single_reference, rule)
                        row[f"fpr_{rule}"], row[f"tpr_{rule}"] = flagged[labels == 0].mean(), flagged[labels == 1].mean()
                    rows.append(row)
        rates = [f"{kind}_{rule}" for rule in RULES for kind in ("fpr", "tpr")]
        by_defect = [f"auroc_{kind}" for kind in DEFECTS if f"auroc_{kind}" in rows[0]]
        with results as staging:
            write_csv(staging / "pose_sensitivity.csv", rows, ["candidate", "image", "shift", "auroc", *by_defect, *rates])
        names = [" ".join(overrides) or "preset" for overrides, _ in candidates]
        print(f"{'candidate':<44}{'shift':>7}" + "".join(f"{name:>11}" for name in args.images) + f"{'mean':>9}")
        for label in names:
            for shift in args.shifts:
                values = [row["auroc"] for row in rows if row["candidate"] == label and row["shift"] == shift]
                print(f"{label:<44}{shift:>7g}" + "".join(f"{value:>11.3f}" for value in values) + f"{np.mean(values):>9.3f}")
        print("\nimage AUROC of each kind of defect against the good images (means over the photographs):")
        for label in names:
            for shift in args.shifts:
                chosen = [row for row in rows if row["candidate"] == label and row["shift"] == shift]
                print(f"{label:<44}{shift:>7g}   " + "   ".join(f"{column[6:]} {np.mean([r[column] for r in chosen]):.3f}"
                                                        for column in by_defect))
        print("\nflagged by each threshold rule, good / defective (means over the photographs):")
        for label in names:
            for shift in args.shifts:
                chosen = [row for row in rows if row["candidate"] == label and row["shift"] == shift]
                cells = [f"{rule} {np.mean([r[f'fpr_{rule}'] for r in chosen]):.2f} / {np.mean([r[f'tpr_{rule}'] for r in chosen]):.2f}"
                         for rule in RULES]
                print(f"{label:<44}{shift:>7g}   " + "   ".join(cells))
        print(f"image AUROC written to {args.out}/pose_sensitivity.csv")
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
