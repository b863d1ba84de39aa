"""``python -m loco_ad.run``: evaluate the pipeline on MVTec LOCO AD, or any product laid out as it is.

Example::

    python -m loco_ad.run --data-root DATA --category juice_bottle --shots 1 2 4 8 --preset offline --out runs/jb
    python -m loco_ad.run --data-root ../shared/data/mvtec_3d_ad --category tire --preset offline --out runs/tire

A category is any folder of the data root holding ``train/good`` and ``test``
(``--category all``: every such folder); see ``loco_ad.data`` for what may be
absent (without ``defects_config.json``, sPRO is plain PRO).

Writes OUT/scores.csv, OUT/metrics.csv and OUT/results.json (and OUT/report/
with --report), prints a table of the metrics averaged over seeds. OUT is
checked before any work (a file, under a file, read-only, holding other
files, or overlapping the data root or a category folder: one line
``error: ...``, exit 2, nothing written). The results are written beside OUT
and replace its previous set whole once all are written (``io.ResultSet``),
so OUT never mixes two runs and a failed run leaves the previous set as it
was. Without --data-root or LOCO_AD_DATA it runs on the sample bundled with
the package (``loco_ad/sample_data``: a few juice_bottle images).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from loco_ad.analysis import Prediction
from loco_ad.cli import (
    ArgumentParser,
    add_evaluation_arguments,
    add_pipeline_arguments,
    config_from_args,
    data_inputs,
    datasets_from_args,
    pipeline_from_args,
    print_summary,
    printed_config,
    run_main,
)
from loco_ad.config import PipelineConfig
from loco_ad.core import Detector
from loco_ad.data import CategoryData, read_mask
from loco_ad.io import ResultSet, check_output_dir, write_csv, write_json
from loco_ad.report import ReportItem, ReportMeta, write_image_report

TABLE_COLUMNS = ("image_score", "image_auroc", "logical_auroc", "structural_auroc", "pixel_score", "pixel_auroc", "spro")
METRIC_COLUMNS = ["seed", "k_shot", "category", "image_score", "pixel_score", "image_auroc", "image_ap",
                  "logical_auroc", "logical_ap", "logical_f1max", "structural_auroc", "structural_ap",
                  "structural_f1max", "pixel_auroc", "logical_spro", "structural_spro", "spro"]


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m loco_ad.run", description=__doc__.split("\n\n")[0])
    add_evaluation_arguments(parser, default_out="runs/latest")
    parser.add_argument("--no-pixel", action="store_true", help="skip the pixel metrics (pixel F1-max, pixel AUROC, sPRO)")
    parser.add_argument("--report", action="store_true", help="write heat maps and OUT/report/<category>/report.html for the first seed and largest k")
    add_pipeline_arguments(parser)
    return parser


class EvaluationReport:
    """Keeps the predictions of one (seed, k) per category and writes their pictures and report.html.

    The verdicts use ``Detector.auto_threshold`` on the leave-one-out scores of
    that fit's references; anomalous images get their ground-truth outline.
    Nothing is written until ``write``, so a failed run leaves no partial report.

    Arguments:
      config: the evaluated configuration (its name).
      seed, k: the run to report.
    """

    def __init__(self, config: PipelineConfig, seed: int, k: int) -> None:
        self.config, self.seed, self.k = config, seed, k
        self.pending: list[tuple[str, list, object]] = []

    def keep(self, seed: int, k: int, prediction: Prediction) -> Prediction:
        """What ``evaluate`` keeps of a prediction for this report: all of it for the reported (seed, k), else its scores."""
        return prediction if (seed, k) == (self.seed, self.k) else prediction.scores_only()

    def whole(self, seed: int, k: int) -> bool:
        """Whether ``evaluate`` hands this report the whole predictions of (seed, k)."""
        return (seed, k) == (self.seed, self.k)

    def __call__(self, data: CategoryData, seed: int, k: int, predictions: list[Prediction], detector: Detector) -> None:
        if (seed, k) != (self.seed, self.k):
            return
        threshold, rule = detector.auto_threshold()
        items = [
            ReportItem(
                name=str(sample.path.relative_to(data.root / "test")),
                prediction=prediction,
                verdict="anomalous" if prediction.score > threshold else "good",
                gt_mask=read_mask(sample, prediction.analysis.rgb.shape[:2]) if sample.label else None,
                label=sample.anomaly_type,
            )
            for sample, prediction in zip(data.test, predictions)
        ]
        meta = ReportMeta(
            preset=self.config.name, k=k, scorers=detector.scorer_names, weights=detector.weights,
            used_fallback=detector.used_fallback, threshold=threshold, threshold_rule=rule,
            title=f"loco_ad evaluation: {data.name}", extra={"category": data.name, "seed": seed},
        )
        self.pending.append((data.name, items, meta))

    def write(self, out_dir: Path) -> list[Path]:
        """Write one report folder per category under ``out_dir``; returns the report.html paths."""
        return [write_image_report(out_dir / name, items, meta) for name, items, meta in self.pending]


def format_table(metrics: list[dict]) -> str:
    """Metrics averaged over seeds, one line per (category, k)."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for row in metrics:
        groups.setdefault((row["category"], row["k_shot"]), []).append(row)
    header = f"{'category':<22}{'k':>3}" + "".join(f"{c:>{len(c) + 2}}" for c in TABLE_COLUMNS)
    lines = [header, "-" * len(header)]
    for (category, k), rows in sorted(groups.items()):
        cells = []
        for column in TABLE_COLUMNS:
            values = [r[column] for r in rows if column in r and not math.isnan(r[column])]
            width = len(column) + 2
            cells.append(f"{np.mean(values):>{width}.3f}" if values else f"{'-':>{width}}")
        lines.append(f"{category:<22}{k:>3}" + "".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        config = config_from_args(args)
        if printed_config(args, config):
            return 0
        check_output_dir(args.out, "--out folder")
        from loco_ad.evaluate import evaluate

        root, datasets = datasets_from_args(args)
        with ResultSet(args.out, inputs=data_inputs(root, datasets)) as staging:
            pipeline = pipeline_from_args(args, config)
            report = EvaluationReport(config, seed=args.seeds[0], k=max(args.shots)) if args.report else None
            result = evaluate(pipeline, datasets, args.seeds, args.shots, pixel=not args.no_pixel, on_predictions=report,
                              keep=report.keep if report else None, whole_fits=report.whole if report else None)
            scorer_columns = list(config.ensemble.scorers)
            write_csv(staging / "scores.csv", result.scores,
                      ["category", "seed", "k_shot", "file", "label", "anomaly_type", "score", *scorer_columns])
            write_csv(staging / "metrics.csv", result.metrics,
                      [c for c in METRIC_COLUMNS if any(c in r for r in result.metrics)])
            summary = result.summary()
            write_json(
                staging / "results.json",
                {
                    **summary,
                    "config": {
                        "pipeline": config.to_dict(),
                        "data_root": str(root),
                        "categories": [d.name for d in datasets],
                        "shots": args.shots,
                        "seeds": args.seeds,
                    },
                    "fallback_weights_used": [list(run) for run in result.fallback],
                    "reference_decisions": result.decisions,
                    "references": result.references,
                },
            )
            reports = report.write(staging / "report") if report is not None else []
        print(format_table(result.metrics))
        print_summary(summary, pipeline)
        for path in reports:
            print(f"report: {args.out / path.relative_to(staging)}")
        print(f"results written to {args.out}/")
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
