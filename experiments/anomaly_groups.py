"""Image AUROC of every scorer on each group of anomalies (e.g. defect types), from a run's scores.csv.

Example (the bundled sample, whose provenance.csv says what each image shows)::

    python -m loco_ad.run --preset offline --shots 4 --scorers class_agnostic,class_aware,foreground,embedding,histogram,colour,location --out runs/all7
    python experiments/anomaly_groups.py --scores runs/all7/scores.csv \
        --groups loco_ad/sample_data/juice_bottle/provenance.csv --group-column shows

``--groups`` is a CSV with columns ``file`` (as in scores.csv) and ``group``
(or the column ``--group-column`` names); anomalous images it does not list
are left out, and so are the good images it lists. For each group, every
scorer's column (and the ensemble ``score``) is ranked against the good images
of the same (category, seed, k) and the AUROC is averaged over those runs; a
scorer column ranks images as that scorer alone would, since it is an
increasing function of the raw score (up to the ensemble's cap, where it ties).
Prints a markdown table (groups as rows).
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from loco_ad.cli import ArgumentParser, run_main
from loco_ad.config import KNOWN_SCORERS
from loco_ad.errors import DataError


def group_aurocs(rows: list[dict], groups: dict[str, str], columns: list[str]) -> dict[str, dict[str, float]]:
    """group → column → AUROC of that group against the good images, averaged over the (category, seed, k) that have the column.

    Arguments:
      rows: scores.csv rows (``label`` 0 good / 1 anomalous, ``file`` and the score columns).
      groups: file → group name for anomalous images.
      columns: score columns to evaluate.
    """
    runs: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        runs[(row["category"], row["seed"], row["k_shot"])].append(row)
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs.values():
        good = [row for row in run if int(row["label"]) == 0]
        for name in dict.fromkeys(groups.values()):
            members = [row for row in run if int(row["label"]) == 1 and groups.get(row["file"]) == name]
            if not good or not members:
                continue
            labels = [0] * len(good) + [1] * len(members)
            for column in columns:
                cells = [row[column] for row in good + members]
                if "" in cells:  # a scorer not summed in this run (ensemble.single_reference_scorers, min_references)
                    continue
                values[name][column].append(roc_auc_score(labels, [float(cell) for cell in cells]))
    return {name: {c: float(np.mean(v)) for c, v in by_column.items()} for name, by_column in values.items()}


def read_rows(path: Path) -> list[dict]:
    """The rows of a CSV file; ``DataError`` if it cannot be read."""
    try:
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None


def build_parser() -> ArgumentParser:
    """The command-line interface (the manual shows its --help)."""
    parser = ArgumentParser(prog="python experiments/anomaly_groups.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scores", type=Path, required=True, help="scores.csv of loco_ad.run")
    parser.add_argument("--groups", type=Path, required=True, help="CSV with columns file and --group-column")
    parser.add_argument("--group-column", default="group", help="the CSV column naming each file's group (default group)")
    parser.add_argument("--shots", nargs="+", type=int, help="only these k (default: all in the file)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        rows = [r for r in read_rows(args.scores) if args.shots is None or int(r["k_shot"]) in args.shots]
        try:
            groups = {r["file"]: r[args.group_column] for r in read_rows(args.groups)}
        except KeyError as error:
            raise DataError(f"{args.groups} has no column {error.args[0]}; it needs file and {args.group_column}") from None
        columns = [c for c in KNOWN_SCORERS if rows and c in rows[0]] + ["score"]
        table = group_aurocs(rows, groups, columns)
        if not table:
            raise DataError(f"no group of {args.groups} has both anomalous and good images in {args.scores}")
        print("| group | " + " | ".join(columns) + " |")
        print("|---|" + "---|" * len(columns))
        for name, by_column in table.items():
            print(f"| {name} | " + " | ".join(f"{by_column[c]:.2f}" for c in columns) + " |")
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
