"""How well each automatic threshold rule separates good from anomalous images, across reference draws.

Example::

    python experiments/threshold_rules.py --data-root DATA --category juice_bottle --shots 2 4 8 \\
        --preset offline --extra-good ../shared/data/juice_bottle_extra_good/good --out runs/threshold_rules

For each (seed, k) the references are drawn as the VAND 2025 protocol draws
them, the pipeline is fitted, and every rule of ``loco_ad.threshold.RULES``
turns the references' leave-one-out scores (on the scale of test scores) into a
threshold. At that threshold the test images (and the ``--extra-good`` images,
counted as good test images) give a true-positive rate, a false-positive rate,
their difference (Youden's J) and F1; F1-max (the best threshold in hindsight)
is shown beside them. Prints means over seeds, and the worst seed's J, per
(rule, k); writes OUT/threshold_rules.csv (one row per rule, seed and k).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from loco_ad.cli import (
    ArgumentParser,
    add_evaluation_arguments,
    add_pipeline_arguments,
    config_from_args,
    data_inputs,
    datasets_from_args,
    pipeline_from_args,
    printed_config,
    run_main,
)
from loco_ad.data import Sample, list_images
from loco_ad.io import ResultSet, check_output_dir, write_csv
from loco_ad.metrics import f1_max
from loco_ad.threshold import RULES, threshold_from

COLUMNS = ["rule", "category", "seed", "k_shot", "threshold", "tpr", "fpr", "youden_j", "f1", "f1_max"]


def verdict_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """TPR, FPR, J = TPR − FPR and F1 of the verdicts ``score > threshold``."""
    flagged = scores > threshold
    true_positives = int(np.sum(flagged & (labels == 1)))
    positives, negatives = int(labels.sum()), int((labels == 0).sum())
    tpr = true_positives / positives
    fpr = int(np.sum(flagged & (labels == 0))) / negatives
    f1 = 2 * true_positives / (flagged.sum() + positives)
    return {"tpr": tpr, "fpr": fpr, "youden_j": tpr - fpr, "f1": f1}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python experiments/threshold_rules.py", description=__doc__.split("\n\n")[0])
    add_evaluation_arguments(parser, default_out="runs/threshold_rules")
    parser.add_argument("--extra-good", type=Path, help="folder of more good images, scored as good test images")
    add_pipeline_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        config = config_from_args(args)
        if printed_config(args, config):
            return 0
        check_output_dir(args.out, "--out folder")
        from loco_ad.evaluate import evaluate

        root, datasets = datasets_from_args(args)
        inputs = {**data_inputs(root, datasets), "--extra-good folder": args.extra_good}
        extra = [Sample(path, 0, "good") for path in list_images(args.extra_good)] if args.extra_good else []
        datasets = [dataclasses.replace(data, test=data.test + extra) for data in datasets]
        rows: list[dict] = []

        def judge(data, seed, k, predictions, detector) -> None:
            labels = np.array([sample.label for sample in data.test])
            scores = np.array([prediction.score for prediction in predictions])
            loo, at_weights = detector.leave_one_out_scores(), detector.value_at_weights()
            for rule in RULES:
                threshold = threshold_from(loo, at_weights, rule)
                rows.append({"rule": rule, "category": data.name, "seed": seed, "k_shot": k, "threshold": threshold,
                             **verdict_metrics(labels, scores, threshold), "f1_max": f1_max(labels, scores)})

        with ResultSet(args.out, inputs=inputs) as staging:
            evaluate(pipeline_from_args(args, config), datasets, args.seeds, args.shots, pixel=False, on_predictions=judge)
            write_csv(staging / "threshold_rules.csv", rows, COLUMNS)
        groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
        for row in rows:
            groups[(row["rule"], row["k_shot"])].append(row)
        print(f"{'rule':<12}{'k':>3}{'TPR':>8}{'FPR':>8}{'J':>8}{'worst J':>9}{'F1':>8}{'F1-max':>8}   (means over seeds)")
        for (rule, k), group in groups.items():
            mean = {c: np.mean([r[c] for r in group]) for c in ("tpr", "fpr", "youden_j", "f1", "f1_max")}
            worst = min(r["youden_j"] for r in group)
            print(f"{rule:<12}{k:>3}{mean['tpr']:>8.3f}{mean['fpr']:>8.3f}{mean['youden_j']:>8.3f}{worst:>9.3f}"
                  f"{mean['f1']:>8.3f}{mean['f1_max']:>8.3f}")
        print(f"results written to {args.out}/")
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
