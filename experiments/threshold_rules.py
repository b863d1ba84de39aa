"""How well each automatic threshold rule separates good from anomalous images, across reference draws.

Example::

    python experiments/threshold_rules.py --data-root DATA --category juice_bottle --shots 2 4 8 \\
        --preset offline --extra-good ../shared/data/juice_bottle_extra_good/good --out runs/threshold_rules

For each (seed, k) the references are drawn as the VAND 2025 protocol draws
them, the pipeline is fitted, and every rule of ``loco_ad.threshold.RULES``
turns the references' leave-one-out scores (on the scale of test scores) into a
threshold; the ``fpr`` rule once for each ``--target-fpr`` (named ``fpr@0.05``
and so on). At that threshold the test images (and the ``--extra-good`` images,
counted as good test images) give a true-positive rate, a false-positive rate,
their difference (Youden's J) and F1; F1-max (the best threshold in hindsight)
is shown beside them, and the share of the ``--extra-good`` images flagged
(``fpr_extra``: good images no part of the fit has seen) and of the anomalies
missed (``miss`` = 1 − TPR). Prints means over seeds, the worst seed's J and
``fpr_extra``, per (rule, k); writes OUT/threshold_rules.csv (one row per rule,
seed and k).
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
from loco_ad.errors import ConfigError
from loco_ad.io import ResultSet, check_output_dir, write_csv
from loco_ad.metrics import f1_max
from loco_ad.threshold import RULES, threshold_from

COLUMNS = ["rule", "category", "seed", "k_shot", "threshold", "tpr", "fpr", "youden_j", "f1", "f1_max", "miss", "fpr_extra"]


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
    parser.add_argument("--target-fpr", type=float, nargs="+", default=None, metavar="RATE",
                        help="false-positive rates the fpr rule is measured at (default: the config's ensemble.target_fpr)")
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

        targets = args.target_fpr or [config.ensemble.target_fpr]
        bad = [rate for rate in targets if not 0 < rate < 1]
        if bad:
            raise ConfigError(f"--target-fpr must lie in (0, 1), got {bad[0]}")
        root, datasets = datasets_from_args(args)
        inputs = {**data_inputs(root, datasets), "--extra-good folder": args.extra_good}
        extra = [Sample(path, 0, "good") for path in list_images(args.extra_good)] if args.extra_good else []
        datasets = [dataclasses.replace(data, test=data.test + extra) for data in datasets]
        rules = [(rule, None) for rule in RULES if rule != "fpr"] + [(f"fpr@{rate:g}", rate) for rate in targets]
        rows: list[dict] = []

        def judge(data, seed, k, predictions, detector) -> None:
            labels = np.array([sample.label for sample in data.test])
            scores = np.array([prediction.score for prediction in predictions])
            is_extra = np.arange(len(data.test)) >= len(data.test) - len(extra)
            loo, single_reference = detector.leave_one_out_scores(), detector.single_reference_threshold()
            for name, rate in rules:
                threshold = threshold_from(loo, single_reference, "fpr" if rate else name, rate or config.ensemble.target_fpr)
                verdicts = verdict_metrics(labels, scores, threshold)
                rows.append({"rule": name, "category": data.name, "seed": seed, "k_shot": k, "threshold": threshold,
                             **verdicts, "f1_max": f1_max(labels, scores), "miss": 1 - verdicts["tpr"],
                             "fpr_extra": float(np.mean(scores[is_extra] > threshold)) if extra else float("nan")})

        with ResultSet(args.out, inputs=inputs) as staging:
            evaluate(pipeline_from_args(args, config), datasets, args.seeds, args.shots, pixel=False, on_predictions=judge)
            write_csv(staging / "threshold_rules.csv", rows, COLUMNS)
        groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
        for row in rows:
            groups[(row["rule"], row["k_shot"])].append(row)
        print(f"{'rule':<12}{'k':>3}{'TPR':>8}{'FPR':>8}{'J':>8}{'worst J':>9}{'F1':>8}{'F1-max':>8}{'miss':>8}"
              f"{'FPR extra':>11}{'worst':>7}   (means over seeds; worst: the largest FPR extra)")
        for (rule, k), group in groups.items():
            mean = {c: np.mean([r[c] for r in group]) for c in ("tpr", "fpr", "youden_j", "f1", "f1_max", "miss", "fpr_extra")}
            worst = min(r["youden_j"] for r in group)
            print(f"{rule:<12}{k:>3}{mean['tpr']:>8.3f}{mean['fpr']:>8.3f}{mean['youden_j']:>8.3f}{worst:>9.3f}"
                  f"{mean['f1']:>8.3f}{mean['f1_max']:>8.3f}{mean['miss']:>8.3f}{mean['fpr_extra']:>11.3f}"
                  f"{max(r['fpr_extra'] for r in group):>7.3f}")
        print(f"results written to {args.out}/")
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
