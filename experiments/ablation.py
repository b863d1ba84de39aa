"""Scorer ablation: every scorer alone, the pixel baseline, the default ensemble, all seven, and all seven minus each one.

Example::

    python experiments/ablation.py --data-root DATA --category all --shots 1 2 4 8 --preset offline --out runs/ablation

The pipeline is evaluated once with every scorer of the pool enabled, so each
image is analysed and each scorer fitted once per (seed, k). A scorer's column
in the scores is its normalised contribution (raw score / its own leave-one-out
weight), and the weights of different scorers do not depend on each other, so
the ensemble score of any subset is the sum of its members' columns — exactly
what a run with only that subset enabled would give. Every subset is summed at
every k, so at k = 1 the ``default`` row is the default scorers' sum, not a
preset's ``ensemble.single_reference_scorers`` (the offline preset's k = 1
default is the ``foreground`` row), and at k = 2 it holds the histogram, which the
offline preset's ``ensemble.min_references`` sums from three references on. On references that share no layout
the rows keep every scorer's weight (the pool is set as ``--scorers`` sets it), where the offline preset counts
``pixel`` at 0 and ``imagenet`` at 8 (``adapt.layout_free``). The pixel baseline (``BASELINE_SCORERS``)
is evaluated beside the pool and has a row of its own, but enters no subset
unless ``--scorers`` puts it in the pool.

Writes OUT/ablation.csv (one row per subset, category, seed and k),
OUT/ablation.md (means over seeds and categories, subsets as rows, k as
columns) and OUT/ablation.png (F1-max against k per subset).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Mapping, Sequence

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
from loco_ad.config import ALL_SCORERS, BASELINE_SCORERS, DEFAULT_SCORERS, parse_scorers
from loco_ad.io import ResultSet, check_output_dir, write_atomic, write_csv
from loco_ad.metrics import image_metrics

ABLATION_COLUMNS = ["subset", "category", "seed", "k_shot", "image_score", "image_auroc", "logical_auroc", "structural_auroc"]
METRICS = ("image_score", "image_auroc", "logical_auroc", "structural_auroc")


def ablation_subsets(
    pool: Sequence[str] = ALL_SCORERS, default: Sequence[str] = DEFAULT_SCORERS, baselines: Sequence[str] = BASELINE_SCORERS
) -> dict[str, tuple[str, ...]]:
    """The scorer subsets of the ablation, named, without duplicates.

    In order: each scorer alone (named by its id), each baseline outside the
    pool alone, ``default`` (the default ensemble, when all its members are in
    the pool), ``all`` (the whole pool) and ``all-minus-<id>`` for each scorer
    (when the pool has more than one). A subset equal to an earlier one (as a
    set) is left out.

    Arguments:
      pool: the scorer ids to ablate.
      default: the default ensemble.
      baselines: scorer ids reported alone beside the pool.
    Returns:
      subset name → scorer ids in pool order.
    """
    pool = tuple(pool)
    alone = pool + tuple(name for name in baselines if name not in pool)
    candidates: list[tuple[str, tuple[str, ...]]] = [(name, (name,)) for name in alone]
    if set(default) <= set(pool):
        candidates.append(("default", tuple(s for s in pool if s in default)))
    candidates.append(("all", pool))
    if len(pool) > 1:
        candidates += [(f"all-minus-{name}", tuple(s for s in pool if s != name)) for name in pool]
    subsets: dict[str, tuple[str, ...]] = {}
    for name, members in candidates:
        if frozenset(members) not in {frozenset(m) for m in subsets.values()}:
            subsets[name] = members
    return subsets


def subset_metrics(scores: Sequence[Mapping], subsets: Mapping[str, Sequence[str]]) -> list[dict]:
    """Image metrics of each subset's ensemble, per (category, seed, k).

    Arguments:
      scores: ``Evaluation.scores`` rows of a run with every scorer of the
        subsets enabled (one column per scorer).
      subsets: subset name → scorer ids, e.g. from ``ablation_subsets``.
    Returns:
      one row per (subset, category, seed, k_shot) with ``ABLATION_COLUMNS``.
    """
    groups: dict[tuple[str, int, int], list[Mapping]] = defaultdict(list)
    for row in scores:
        groups[(row["category"], row["seed"], row["k_shot"])].append(row)
    result = []
    for name, members in subsets.items():
        for (category, seed, k), rows in groups.items():
            labels = [row["label"] for row in rows]
            types = [row["anomaly_type"] for row in rows]
            ensemble = [sum(row[m] for m in members) for row in rows]
            metrics = image_metrics(labels, ensemble, types, detailed=False)
            result.append({"subset": name, "category": category, "seed": seed, "k_shot": k,
                           **{m: metrics[m] for m in METRICS}})
    return result


def mean_by_subset_and_k(rows: Sequence[Mapping], metric: str) -> dict[str, dict[int, float]]:
    """``metric`` averaged over seeds, then over categories (as the VAND script does), per subset and k.

    Arguments:
      rows: ``subset_metrics`` rows.
      metric: one of ``METRICS``.
    Returns:
      subset → k → mean (NaN where every value is NaN).
    """
    per_category: dict[tuple[str, int, str], list[float]] = defaultdict(list)
    for row in rows:
        per_category[(row["subset"], row["k_shot"], row["category"])].append(row[metric])
    per_k: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (subset, k, _), values in per_category.items():
        per_k[subset][k].append(np.nanmean(values) if not np.all(np.isnan(values)) else np.nan)
    return {
        subset: {k: float(np.nanmean(v)) if not np.all(np.isnan(v)) else float("nan") for k, v in sorted(by_k.items())}
        for subset, by_k in per_k.items()
    }


def markdown_table(rows: Sequence[Mapping], subsets: Mapping[str, Sequence[str]]) -> str:
    """A markdown table: subsets as rows, F1-max and AUROC per k as columns (means over seeds and categories)."""
    f1 = mean_by_subset_and_k(rows, "image_score")
    auroc = mean_by_subset_and_k(rows, "image_auroc")
    shots = sorted({row["k_shot"] for row in rows})
    header = ["subset", "scorers", *(f"F1-max k={k}" for k in shots), *(f"AUROC k={k}" for k in shots)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, members in subsets.items():
        cells = [f"{f1[name][k]:.3f}" for k in shots] + [f"{auroc[name][k]:.3f}" for k in shots]
        lines.append(f"| {name} | {' + '.join(members)} | " + " | ".join(cells) + " |")
    categories = sorted({row["category"] for row in rows})
    seeds = sorted({row["seed"] for row in rows})
    note = f"Means over seeds {', '.join(map(str, seeds))}, then over categories {', '.join(categories)}."
    return "\n".join(["# Scorer ablation", "", note, "", *lines, ""])


def plot(rows: Sequence[Mapping], subsets: Mapping[str, Sequence[str]], path: Path) -> Path:
    """Save a PNG of F1-max against k, one line per subset (means over seeds and categories)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f1 = mean_by_subset_and_k(rows, "image_score")
    figure, axes = plt.subplots(figsize=(9, 5.5))
    colours = plt.cm.tab20(np.linspace(0, 1, max(len(subsets), 2)))
    for colour, name in zip(colours, subsets):
        shots = sorted(f1[name])
        style = "-" if name in ("default", "all") else "--" if name.startswith("all-minus-") else ":"
        axes.plot(shots, [f1[name][k] for k in shots], style, marker="o", color=colour, label=name,
                  linewidth=2.5 if name in ("default", "all") else 1.2)
    axes.set_xscale("log", base=2)
    axes.set_xticks(sorted({row["k_shot"] for row in rows}), labels=[str(k) for k in sorted({row["k_shot"] for row in rows})])
    axes.set_xlabel("k (reference images)")
    axes.set_ylabel("image F1-max")
    axes.set_title("Scorer ablation")
    axes.grid(alpha=0.3)
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    return write_atomic(path, buffer.getvalue())


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python experiments/ablation.py", description=__doc__.split("\n\n")[0])
    add_evaluation_arguments(parser, default_out="runs/ablation")
    add_pipeline_arguments(parser)  # here --scorers is the pool to ablate (default: all seven)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from loco_ad.evaluate import evaluate

        pool = parse_scorers(args.scorers) if args.scorers is not None else ALL_SCORERS
        subsets = ablation_subsets(pool)
        config = config_from_args(args).with_scorers(tuple(dict.fromkeys(s for members in subsets.values() for s in members)))
        if printed_config(args, config):
            return 0
        check_output_dir(args.out, "--out folder")
        root, datasets = datasets_from_args(args)
        with ResultSet(args.out, inputs=data_inputs(root, datasets)) as staging:
            pipeline = pipeline_from_args(args, config)
            start = time.perf_counter()
            result = evaluate(pipeline, datasets, args.seeds, args.shots, pixel=False)
            rows = subset_metrics(result.scores, subsets)
            write_csv(staging / "ablation.csv", rows, ABLATION_COLUMNS)
            table = markdown_table(rows, subsets)
            write_atomic(staging / "ablation.md", table)
            plot(rows, subsets, staging / "ablation.png")
        print(table)
        print(f"{len(subsets)} subsets from one evaluation in {time.perf_counter() - start:.1f} s")
        if pipeline.cache is None:
            print("cache: disabled (--no-cache)")
        else:
            hits, misses = pipeline.cache.hits, pipeline.cache.misses
            print(f"cache: {hits} hits, {misses} misses" + (" — no model work" if misses == 0 else ""))
        print(f"results written to {args.out}/")
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
