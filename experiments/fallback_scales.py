"""Measure the k = 1 fallback scales: the median leave-one-out weight of each scorer at k = 2.

Example::

    python experiments/fallback_scales.py --data-root DATA --category juice_bottle --preset offline

For k = 1 there is nothing to leave out, so the detector divides each scorer by
the preset's ``ensemble.fallback_scales`` instead of its leave-one-out weight. This script gives the numbers those constants stand for: the
``train/good`` images of each category, sorted, are cut into disjoint
consecutive pairs; the pipeline, with the settings of a fit on one reference
(the preset's ``few_references``, ``PipelineConfig.for_references(1)``), is
fitted on each pair, and each scorer's leave-one-out weight is noted. It prints, per scorer, the median over all
pairs (with the smallest and largest) next to the constant in use, and writes
every weight to OUT/fallback_scales.csv.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from loco_ad.cli import (
    ArgumentParser,
    add_data_arguments,
    add_pipeline_arguments,
    config_from_args,
    data_inputs,
    data_root_or_sample,
    output_folder,
    pipeline_from_args,
    printed_config,
    run_main,
)
from loco_ad.config import ALL_SCORERS, parse_scorers
from loco_ad.data import load_category, resolve_categories
from loco_ad.io import ResultSet, check_output_dir, write_csv


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python experiments/fallback_scales.py", description=__doc__.split("\n\n")[0])
    add_data_arguments(parser)
    parser.add_argument("--out", type=output_folder, default=Path("runs/fallback_scales"), help="output folder")
    add_pipeline_arguments(parser)  # here --scorers are the scorers to measure (default: all seven)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        scorers = parse_scorers(args.scorers) if args.scorers is not None else ALL_SCORERS
        # the scales divide the scores of fits on one reference: measured with the settings those fits run with
        config = config_from_args(args).for_references(1).with_scorers(scorers)
        if printed_config(args, config):
            return 0
        check_output_dir(args.out, "--out folder")
        in_use = config.ensemble.fallback_scales.as_dict()
        root = data_root_or_sample(args.data_root)
        pipeline = pipeline_from_args(args, config)
        datasets = [load_category(root, category) for category in resolve_categories(root, args.category)]
        rows = []
        with ResultSet(args.out, inputs=data_inputs(root, datasets)) as staging:
            for data in datasets:
                pairs = [data.train[i : i + 2] for i in range(0, len(data.train) - 1, 2)]
                for pair in tqdm(pairs, desc=data.name, unit="pair", disable=args.quiet):
                    weights, files = pipeline.fit(pair).weights, "+".join(path.name for path in pair)
                    rows += [{"category": data.name, "pair": files, "scorer": name, "weight": weights[name]} for name in scorers]
            write_csv(staging / "fallback_scales.csv", rows, ["category", "pair", "scorer", "weight"])
        print(f"{'scorer':<16}{'median':>10}{'min':>10}{'max':>10}{'in use':>10}   ({len(rows) // len(scorers)} pairs)")
        for name in scorers:
            values = [row["weight"] for row in rows if row["scorer"] == name]
            print(f"{name:<16}{np.median(values):>10.3g}{min(values):>10.3g}{max(values):>10.3g}{in_use[name]:>10.3g}")
        print(f"weights written to {args.out}/fallback_scales.csv")
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
