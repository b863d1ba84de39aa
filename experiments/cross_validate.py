"""Cross-validated choice of settings: candidates chosen on some folds of the test images, reported on the others.

Example::

    python experiments/cross_validate.py --data-root DATA --category juice_bottle --preset offline \\
        --groups docs/juice_bottle_subset_groups.csv --extra-good ../shared/data/juice_bottle_extra_good/good \\
        --grid ensemble.scorers=class_agnostic+foreground+histogram,class_agnostic+histogram --out runs/cv

Protocol:

1. Candidates. The preset as it is, then every setting of the grid: ``--grid
   KEY=V1,V2`` (several ``--grid`` make a product) and/or ``--grid-file`` (JSON:
   an object KEY → list of values, a product, or a list of such objects, the
   union of their products). KEY is any ``--set`` key of the configuration
   (``python -m loco_ad.run --print-config`` lists them); ``+`` joins the items
   of a list value (``ensemble.scorers=class_agnostic+histogram``) and JSON
   ``null`` is ``none``.
2. Scoring, once. The references of every (seed, k) are drawn from
   ``train/good`` as the VAND protocol draws them. Every candidate scores every
   test image of the category plus the ``--extra-good`` images (more good
   images make false-positive rates far less noisy); candidates with the same
   stages share the analyses, and a scorer setting shared by candidates is
   fitted and weighted once per (seed, k).
3. Folds only partition the test images. Anomalies are split by group
   (``--groups``: CSV with columns ``file``, ``group``; anomalies it does not
   list are groups of one), so a fold's held-out anomalies are kinds never
   used for choosing; good images are split at random. For each fold the
   candidate with the best objective on the other folds (mean over seeds and k
   of the image AUROC, or of the F1-max) is chosen and measured on the fold.
   ``--repeats`` draws other fold partitions.

Reported per k: mean ± standard deviation over (repeat, fold, seed) of the
held-out AUROC, F1-max, and F1-max at the ``--f1-ratio`` good:anomalous ratio
(each held-out good image counts for ratio × anomalies / goods images in the
false positives, since F1 depends on the ratio and AUROC does not); the same
for every candidate held fixed (no choice); per anomaly group the held-out
AUROC against the fold's good images; and each candidate's in-sample figures
on all images (and every candidate's scores in OUT/cv_scores.npz, which
``--reuse`` reads to cross-validate a sub-grid without scoring again). The pooled estimate ranks all images together, each scored by
the candidate chosen without its fold: it has the size of the whole set, so
its F1-max is not inflated by small folds (a maximum over thresholds of few
images is biased upwards). Writes OUT/cv.md, OUT/cv_folds.csv,
OUT/cv_pooled.csv, OUT/cv_candidates.csv, OUT/cv_groups.csv.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import io
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np
from scipy.stats import rankdata
from tqdm.auto import tqdm

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
from loco_ad.config import PipelineConfig, apply_overrides
from loco_ad.data import CategoryData, draw_references, list_images
from loco_ad.errors import ConfigError, DataError
from loco_ad.io import ResultSet, check_output_dir, write_atomic, write_csv
from loco_ad.metrics import auroc_and_f1_max

if TYPE_CHECKING:
    from loco_ad.pipeline import Pipeline

OBJECTIVES = ("auroc", "f1", "both")
SCORES_FILE = "cv_scores.npz"  # every candidate's scores, for --reuse
PRESET = "preset"  # name of the candidate without knobs


# ------------------------------------------------------------------ candidates
def parse_value(text: str) -> object:
    """A grid value: JSON when it parses (numbers, true/false, lists), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def expand_grid(spec: Mapping[str, Sequence[object]] | Sequence[Mapping[str, Sequence[object]]]) -> list[dict]:
    """Every combination of a grid: KEY → values (a product), or a list of such grids (the union of their products)."""
    grids = [spec] if isinstance(spec, Mapping) else list(spec)
    candidates: list[dict] = []
    for grid in grids:
        keys = list(grid)
        values = [v if isinstance(v, list) else [v] for v in grid.values()]
        candidates += [dict(zip(keys, combination)) for combination in itertools.product(*values)]
    return candidates


def read_grid(pairs: Sequence[str], grid_file: Path | None) -> list[dict]:
    """The candidates: the preset itself first, then those of ``--grid`` and ``--grid-file``, without repeats."""
    spec: list[dict] = []
    if pairs:
        grid = {}
        for pair in pairs:
            key, sep, values = pair.partition("=")
            if not sep or not key or not values:
                raise ConfigError(f"--grid takes KEY=V1,V2,...; got {pair!r}")
            grid[key.strip()] = [parse_value(v) for v in values.split(",")]
        spec.append(grid)
    if grid_file is not None:
        try:
            loaded = json.loads(grid_file.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(f"cannot read the grid file {grid_file}: {error}") from None
        spec += [loaded] if isinstance(loaded, dict) else loaded
    candidates, seen = [], set()
    for knobs in [{}, *expand_grid(spec)]:
        key = json.dumps(knobs, sort_keys=True)
        if key not in seen:
            seen.add(key)
            candidates.append(knobs)
    return candidates


def candidate_name(knobs: Mapping[str, object]) -> str:
    """``KEY=VALUE ...`` of a candidate, or ``preset`` for none."""
    return " ".join(f"{key}={_text(value)}" for key, value in knobs.items()) or PRESET


def _text(value: object) -> str:
    return "+".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _override_text(value: object) -> str:
    """A grid value as the text of a ``--set`` value."""
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value).replace("+", ",")


def candidate_config(base: PipelineConfig, knobs: Mapping[str, object]) -> PipelineConfig:
    """The configuration of a candidate: ``base`` with its knobs applied as ``--set`` overrides (``ConfigError`` if bad)."""
    return apply_overrides(base, [f"{key}={_override_text(value)}" for key, value in knobs.items()])


# ----------------------------------------------------------------- test images
@dataclass(frozen=True)
class ImageSet:
    """The images every candidate scores.

    Arguments:
      paths: image files.
      labels: 0 good / 1 anomalous per image.
      groups: per image its group: the anomaly group, or ``good`` / ``extra good``.
      files: per image its name in the outputs (relative to the category folder, or ``extra/NAME``).
    """

    paths: list[Path]
    labels: np.ndarray
    groups: list[str]
    files: list[str]


def load_image_set(data: CategoryData, groups_csv: Path | None, extra_good: Path | None) -> ImageSet:
    """The category's test images, grouped, plus the extra good images (``DataError`` if that folder is missing or empty)."""
    groups: dict[str, str] = {}
    if groups_csv is not None:
        import csv

        try:
            with groups_csv.open(newline="") as handle:
                groups = {row["file"]: row["group"] for row in csv.DictReader(handle)}
        except (OSError, KeyError) as error:
            raise DataError(f"cannot read the groups file {groups_csv} (columns file, group): {error}") from None
    paths, labels, names, files = [], [], [], []
    for sample in data.test:
        file = str(sample.path.relative_to(data.root))
        paths.append(sample.path)
        labels.append(sample.label)
        names.append("good" if sample.label == 0 else groups.get(file, file))
        files.append(file)
    if extra_good is not None:
        if not extra_good.is_dir():
            raise DataError(f"--extra-good folder {extra_good} does not exist")
        extra = list_images(extra_good)
        if not extra:
            raise DataError(f"--extra-good folder {extra_good} holds no images")
        paths += extra
        labels += [0] * len(extra)
        names += ["extra good"] * len(extra)
        files += [f"extra/{path.relative_to(extra_good)}" for path in extra]
    return ImageSet(paths, np.array(labels), names, files)


# --------------------------------------------------------------------- scoring
def _stages(config: PipelineConfig) -> str:
    """What decides a configuration's analyses at every k (not its scorers, ensemble or evaluation), as a key."""
    return json.dumps([{key: value for key, value in settings.to_dict().items()
                        if key not in ("name", "scorers", "ensemble", "evaluation", "few_references")}
                       for settings in (config, config.for_references(1))], sort_keys=True)


def score_candidates(
    configs: Sequence[PipelineConfig],
    data: CategoryData,
    images: ImageSet,
    runs: Sequence[tuple[int, int]],
    make_pipeline: Callable[[PipelineConfig], "Pipeline"],
    progress: bool = False,
    decisions: dict[tuple[int, int], dict] | None = None,
) -> np.ndarray:
    """Score of every candidate on every image for every (seed, k), as each candidate's ``Detector`` gives it.

    Candidates with the same stages share the image analyses; a scorer setting
    shared by several candidates is fitted, and its leave-one-out scores
    computed, once per (seed, k). Each candidate's score of an image is the
    sum, over ``Detector.names_for(k)``, of its ``Detector.contribution`` of each raw score with
    ``Detector.weight_from`` of the leave-one-out scores: what
    ``Detector.score`` computes (each with the settings for k references,
    ``PipelineConfig.for_references``).

    Arguments:
      configs: the candidates.
      data: the category (its ``train`` images are drawn from).
      images: the images to score.
      runs: (seed, k) of each run.
      make_pipeline: a new ``Pipeline`` for the given configuration.
      progress: show a progress bar.
      decisions: when given, filled with what the references decided in each fit
        (``Pipeline.decisions``), keyed by (candidate, run).
    Returns:
      float64 array (candidate, run, image).
    """
    from loco_ad.build import build_detector
    from loco_ad.weights import leave_one_out_raw_scores

    scores = np.zeros((len(configs), len(runs), len(images.paths)))
    by_stages: dict[str, list[int]] = defaultdict(list)
    for index, config in enumerate(configs):
        by_stages[_stages(config)].append(index)
    bar = tqdm(total=len(by_stages) * len(runs), desc="scoring", unit="fit", disable=not progress)
    for members in by_stages.values():
        pipeline = make_pipeline(configs[members[0]])
        draws = [draw_references(data.train, k, seed) for seed, k in runs]
        pipeline.prepare_for_fits(sorted({p for draw in draws for p in draw}) + images.paths)
        for run, references in enumerate(draws):
            fitted = pipeline.analyse_references(references)
            analyses = pipeline.analyse_many(images.paths, progress=False)
            raw: dict[str, tuple[np.ndarray, list[float]]] = {}
            for index in members:
                if decisions is not None:
                    decisions[index, run] = pipeline.decisions
                # with config.adapt, the values the references chose (pipeline.decisions) hold for every member
                chosen = [f"{key}={value}" for key, value in pipeline.decisions.get("chosen", {}).items()]
                config = apply_overrides(configs[index].for_references(len(fitted)), chosen)
                detector = build_detector(config)
                names = detector.names_for(len(fitted))
                for name in names:
                    make = detector.factories[name]
                    key = json.dumps([name, dataclasses.asdict(getattr(config.scorers, name))], sort_keys=True)
                    if key not in raw:
                        scorer = make().fit(fitted)
                        loo = leave_one_out_raw_scores(make, fitted) if len(fitted) > 1 else []
                        raw[key] = (np.array([scorer.score(a).value for a in analyses]), loo)
                    values, loo = raw[key]
                    scores[index, run] += detector.contribution(name, values, detector.weight_from(name, loo), len(names) == 1)
            bar.update()
    bar.close()
    return scores


def reused_scores(folder: Path, names: Sequence[str], images: ImageSet, runs: Sequence[tuple[int, int]]) -> np.ndarray:
    """The scores of the named candidates from an earlier run's ``SCORES_FILE`` (same images and runs).

    Lets a sub-grid (an idea against the preset, say) be cross-validated without scoring again.
    """
    path = Path(folder) / SCORES_FILE
    try:
        stored = np.load(path)
        stored_names, files, stored_runs = list(stored["names"]), list(stored["files"]), stored["runs"].tolist()
    except (OSError, KeyError, ValueError) as error:
        raise DataError(f"cannot read the scores of an earlier run from {path}: {error}") from None
    if files != images.files or [tuple(r) for r in stored_runs] != list(runs):
        raise DataError(f"{path} was scored on other images, seeds or k; run without --reuse")
    missing = [name for name in names if name not in stored_names]
    if missing:
        raise DataError(f"{path} has no candidate {missing[0]!r}; run without --reuse")
    return stored["scores"][[stored_names.index(name) for name in names]]


# ----------------------------------------------------------------------- folds
def make_folds(labels: np.ndarray, groups: Sequence[str], n_folds: int, seed: int) -> np.ndarray:
    """Fold id per image: anomaly groups kept whole, good images split at random.

    Good images are shuffled and cut into ``n_folds`` near-equal parts.
    Anomaly groups, in a seeded random order, then largest first, each go to
    the fold with the fewest anomalies so far.

    Arguments:
      labels: 0 good / 1 anomalous per image.
      groups: group name per image (only the anomalies' matter).
      n_folds: number of folds, at most the number of anomaly groups and of good images.
      seed: seed of the shuffles.
    Returns:
      int array of fold ids in [0, n_folds).
    """
    groups = np.asarray(groups)
    good = np.flatnonzero(labels == 0)
    names = list(dict.fromkeys(groups[labels == 1]))
    if n_folds < 2 or n_folds > min(len(names), len(good)):
        raise ConfigError(
            f"--folds must be between 2 and the number of anomaly groups ({len(names)}) and of good images ({len(good)}); "
            f"got {n_folds}"
        )
    rng = np.random.default_rng(seed)
    folds = np.empty(len(labels), int)
    for fold, part in enumerate(np.array_split(rng.permutation(good), n_folds)):
        folds[part] = fold
    order = [names[i] for i in rng.permutation(len(names))]
    load = np.zeros(n_folds)
    for name in sorted(order, key=lambda n: -np.sum((groups == n) & (labels == 1))):
        members = (groups == name) & (labels == 1)
        fold = int(np.argmin(load))
        folds[members] = fold
        load[fold] += members.sum()
    return folds


METRICS = ("auroc", "f1", "f1_ratio")


def row_metrics(labels: np.ndarray, scores: np.ndarray, ratio: float) -> np.ndarray:
    """AUROC, F1-max and F1-max at ``ratio`` goods per anomaly of every row of ``scores``.

    The same values as ``loco_ad.metrics.auroc_and_f1_max`` row by row
    (AUROC from average ranks, which equals the trapezoidal ROC area with
    ties; thresholds only between distinct scores), for many candidates at once.

    Arguments:
      labels: 0/1 per image (both must occur).
      scores: (row, image) scores.
      ratio: goods per anomaly for the reweighted F1-max: each good image
        counts ratio × anomalies / goods times in the false positives.
    Returns:
      (row, 3) array: ``METRICS``.
    """
    anomalous = labels > 0
    positives, negatives = int(anomalous.sum()), int((~anomalous).sum())
    ranks = rankdata(scores, axis=1)
    auroc = (ranks[:, anomalous].sum(axis=1) - positives * (positives + 1) / 2) / (positives * negatives)
    order = np.argsort(-scores, axis=1, kind="stable")
    ordered = np.take_along_axis(scores, order, axis=1)
    true_positives = np.cumsum(anomalous[order], axis=1)
    false_positives = np.arange(1, scores.shape[1] + 1) - true_positives
    threshold = np.ones(ordered.shape, bool)
    threshold[:, :-1] = ordered[:, :-1] != ordered[:, 1:]
    f1 = np.where(threshold, 2 * true_positives / (true_positives + false_positives + positives), 0).max(axis=1)
    weight = ratio * positives / negatives
    f1_ratio = np.where(threshold, 2 * true_positives / (true_positives + weight * false_positives + positives), 0).max(axis=1)
    return np.stack([auroc, f1, f1_ratio], axis=1)


def subset_metrics(scores: np.ndarray, labels: np.ndarray, subset: np.ndarray, ratio: float) -> np.ndarray:
    """``row_metrics`` of every (candidate, run) on the images of ``subset``: a (candidate, run, 3) array."""
    rows = scores[:, :, subset].reshape(-1, int(subset.sum()))
    return row_metrics(labels[subset], rows, ratio).reshape(*scores.shape[:2], len(METRICS))


def on_good_scale(scores: np.ndarray, images: np.ndarray, goods: np.ndarray) -> np.ndarray:
    """Per run, the scores of ``images`` as (score − median) / interquartile range of the scores of ``goods``.

    Candidates chosen on different folds score on different scales (a sum, a
    sum of logs); the held-out images of all folds can be ranked together once
    each fold is put on the scale of its own training good images.

    Arguments:
      scores: (run, image) scores of one candidate.
      images, goods: bool per image: the images to return, the good images that set the scale.
    Returns:
      (run, selected image) rescaled scores.
    """
    low, median, high = np.percentile(scores[:, goods], [25, 50, 75], axis=1)
    spread = np.maximum(high - low, 1e-12)
    return (scores[:, images] - median[:, None]) / spread[:, None]


def choose(scores: np.ndarray, labels: np.ndarray, train: np.ndarray, objective: str, ratio: float) -> int:
    """Index of the candidate with the best mean objective over runs on the ``train`` images (the first on ties).

    Arguments:
      scores: (candidate, run, image) ensemble scores.
      labels: 0/1 per image.
      train: bool per image, the images the choice may look at.
      objective: ``auroc``, ``f1`` (F1-max at ``ratio``) or ``both`` (their mean).
      ratio: goods per anomaly for the F1-max.
    """
    columns = {"auroc": [0], "f1": [2], "both": [0, 2]}[objective]
    return int(np.argmax(subset_metrics(scores, labels, train, ratio)[:, :, columns].mean(axis=(1, 2))))


@dataclass
class CrossValidation:
    """What ``cross_validate`` measured.

    Attributes:
      chosen: per repeat, fold and run, the held-out ``METRICS`` of the candidate chosen without the fold.
      fixed: (repeat, fold, candidate, run, metric) held-out metrics of every candidate held fixed.
      groups: per repeat, fold, run and held-out anomaly group, the chosen candidate's AUROC against the fold's goods.
      pooled: per repeat and run, the ``METRICS`` of all images ranked together, each scored by the
        candidate chosen without its fold on the scale of that fold's training good images
        (``on_good_scale``): a test set of the whole set's size, whose F1-max is not inflated by small folds.
    """

    chosen: list[dict]
    fixed: np.ndarray
    groups: list[dict]
    pooled: list[dict]


def cross_validate(
    scores: np.ndarray,
    images: ImageSet,
    runs: Sequence[tuple[int, int]],
    n_folds: int,
    repeats: int,
    objective: str,
    ratio: float,
) -> CrossValidation:
    """Choose on the training folds, measure on the held-out fold.

    Arguments:
      scores: (candidate, run, image) ensemble scores.
      images: the test images (labels and groups).
      runs: (seed, k) of each run.
      n_folds, repeats: folds per partition and number of partitions (seeds 0..repeats−1).
      objective, ratio: see ``choose``.
    """
    labels, groups = images.labels, np.asarray(images.groups)
    fixed = np.zeros((repeats, n_folds, *scores.shape[:2], len(METRICS)))
    chosen, group_rows, pooled_rows = [], [], []
    for repeat in range(repeats):
        folds = make_folds(labels, groups, n_folds, repeat)
        pooled = np.zeros(scores.shape[1:])
        for fold in range(n_folds):
            held = folds == fold
            best = choose(scores, labels, ~held, objective, ratio)
            fixed[repeat, fold] = subset_metrics(scores, labels, held, ratio)
            pooled[:, held] = on_good_scale(scores[best], held, ~held & (labels == 0))
            for run, (seed, k) in enumerate(runs):
                chosen.append({"repeat": repeat, "fold": fold, "seed": seed, "k_shot": k, "candidate": best,
                               **dict(zip(METRICS, fixed[repeat, fold, best, run]))})
            good = held & (labels == 0)
            for name in dict.fromkeys(groups[held & (labels == 1)]):
                members = good | (held & (groups == name) & (labels == 1))
                for run, (seed, k) in enumerate(runs):
                    auroc = auroc_and_f1_max(labels[members] > 0, scores[best, run, members])[0]
                    group_rows.append({"repeat": repeat, "fold": fold, "seed": seed, "k_shot": k, "group": name,
                                       "candidate": best, "auroc": auroc})
        for run, (seed, k) in enumerate(runs):
            metrics = row_metrics(labels, pooled[run][None], ratio)[0]
            pooled_rows.append({"repeat": repeat, "seed": seed, "k_shot": k, **dict(zip(METRICS, metrics))})
    return CrossValidation(chosen, fixed, group_rows, pooled_rows)


# --------------------------------------------------------------------- reports
def _mean_std(values: Sequence[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def summary_table(rows: Sequence[Mapping], shots: Sequence[int], title: str) -> list[str]:
    """Markdown lines: per k, mean ± std over the rows of AUROC, F1-max and F1-max at the target ratio."""
    lines = [title, "", "| k | AUROC | F1-max | F1-max at ratio |", "|---|---|---|---|"]
    for k in shots:
        at_k = [r for r in rows if r["k_shot"] == k]
        lines.append(f"| {k} | " + " | ".join(_mean_std([r[m] for r in at_k]) for m in ("auroc", "f1", "f1_ratio")) + " |")
    return lines + [""]


def candidate_rows(
    scores: np.ndarray, images: ImageSet, runs: Sequence[tuple[int, int]], result: CrossValidation, names: Sequence[str],
    ratio: float,
) -> list[dict]:
    """Per candidate and k: in-sample metrics on all images, held-out mean and std when held fixed, times chosen."""
    in_sample = subset_metrics(scores, images.labels, np.ones(len(images.labels), bool), ratio)
    times = np.bincount([row["candidate"] for row in result.chosen], minlength=len(names)) // len(runs)
    rows = []
    for k in sorted({k for _, k in runs}):
        at_k = [r for r, (_, kk) in enumerate(runs) if kk == k]
        held = np.moveaxis(result.fixed[:, :, :, at_k], 2, 0).reshape(len(names), -1, len(METRICS))
        for candidate, name in enumerate(names):
            rows.append({
                "candidate": candidate, "name": name, "k_shot": k,
                **{f"{m}_all": in_sample[candidate, at_k, i].mean() for i, m in enumerate(METRICS)},
                **{f"{m}_folds": held[candidate, :, i].mean() for i, m in enumerate(METRICS)},
                **{f"{m}_folds_std": held[candidate, :, i].std() for i, m in enumerate(METRICS)},
                "times_chosen": int(times[candidate]),
            })
    return sorted(rows, key=lambda row: (row["candidate"], row["k_shot"]))


def markdown_report(result: CrossValidation, candidates: Sequence[Mapping], shots: Sequence[int], header: str) -> str:
    """The report: the cross-validated estimates, some candidates, the groups.

    Candidates listed: the preset, every candidate chosen on some fold, and the
    ten best in-sample (mean over k of AUROC and of F1-max at the ratio).
    """
    chosen, pooled, groups = result.chosen, result.pooled, result.groups
    lines = [header, ""]
    lines += summary_table(chosen, shots, "## Cross-validated per fold (chosen on the other folds; mean ± std over repeats, folds, seeds)")
    lines += summary_table(pooled, shots, "## Cross-validated, pooled (each fold scored by its own choice, all folds ranked together; "
                                          "mean ± std over repeats, seeds)")
    lines += ["## Candidates (in-sample: all images; folds: held fixed, mean ± std of the held-out folds)", "",
              "| # | candidate | chosen | " + " | ".join(f"AUROC k={k} all / folds" for k in shots)
              + " | " + " | ".join(f"F1 ratio k={k} all / folds" for k in shots) + " |",
              "|---|---|---|" + "---|" * 2 * len(shots)]
    by_candidate: dict[int, dict[int, Mapping]] = defaultdict(dict)
    for row in candidates:
        by_candidate[row["candidate"]][row["k_shot"]] = row
    in_sample = {c: np.mean([[r["auroc_all"], r["f1_ratio_all"]] for r in at.values()]) for c, at in by_candidate.items()}
    shown = {0, *(row["candidate"] for row in chosen), *sorted(in_sample, key=in_sample.get, reverse=True)[:10]}
    for index in sorted(shown):
        at = by_candidate[index]
        first = at[shots[0]]
        cells = [f"{at[k]['auroc_all']:.3f} / {at[k]['auroc_folds']:.3f} ± {at[k]['auroc_folds_std']:.3f}" for k in shots]
        cells += [f"{at[k]['f1_ratio_all']:.3f} / {at[k]['f1_ratio_folds']:.3f}" for k in shots]
        lines.append(f"| {index} | {first['name']} | {first['times_chosen']} | " + " | ".join(cells) + " |")
    lines += ["", "## Held-out AUROC per anomaly group (chosen candidate; mean over repeats and seeds)", "",
              "| group | " + " | ".join(f"k={k}" for k in shots) + " |", "|---|" + "---|" * len(shots)]
    for name in dict.fromkeys(row["group"] for row in groups):
        cells = [np.mean([r["auroc"] for r in groups if r["group"] == name and r["k_shot"] == k]) for k in shots]
        lines.append(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------- CLI
def parse_ratio(text: str) -> float:
    """``GOOD:ANOMALOUS`` (e.g. ``57:71``) as goods per anomaly."""
    good, sep, anomalous = text.partition(":")
    try:
        value = float(good) / float(anomalous) if sep else float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected GOOD:ANOMALOUS such as 57:71, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"the ratio must be positive, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python experiments/cross_validate.py", description=__doc__.split("\n\n")[0])
    add_evaluation_arguments(parser, default_out="runs/cross_validate")
    add_pipeline_arguments(parser, default_preset="offline")
    group = parser.add_argument_group("protocol")
    group.add_argument("--grid", nargs="+", default=[], metavar="KEY=V1,V2", help="candidate knobs (a product)")
    group.add_argument("--grid-file", type=Path, help="JSON grid: {KEY: [values]} or a list of them")
    group.add_argument("--groups", type=Path, help="CSV (file, group) of the anomalies; default: each anomaly its own group")
    group.add_argument("--extra-good", type=Path, help="folder of more good images, scored as test images")
    group.add_argument("--folds", type=int, default=3, help="folds per partition (default 3)")
    group.add_argument("--repeats", type=int, default=5, help="fold partitions (default 5)")
    group.add_argument("--objective", choices=OBJECTIVES, default="auroc", help="what the choice maximises (default auroc)")
    group.add_argument("--reuse", type=Path, help=f"take the candidates' scores from OUT/{SCORES_FILE} of an earlier run")
    group.add_argument("--f1-ratio", type=parse_ratio, default=parse_ratio("57:71"),
                       help="good:anomalous ratio of the reweighted F1-max (default 57:71)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        base = config_from_args(args)
        if printed_config(args, base):
            return 0
        check_output_dir(args.out, "--out folder")
        from loco_ad.evaluate import check_datasets

        root, datasets = datasets_from_args(args)
        if len(datasets) != 1:
            raise ConfigError(f"cross-validation runs on one category at a time; got {', '.join(d.name for d in datasets)}")
        data = datasets[0]
        check_datasets([data], args.shots)
        images = load_image_set(data, args.groups, args.extra_good)
        knobs = read_grid(args.grid, args.grid_file)
        configs = [candidate_config(base, k) for k in knobs]
        names = [candidate_name(k) for k in knobs]
        runs = [(seed, k) for seed in args.seeds for k in args.shots]
        make_folds(images.labels, images.groups, args.folds, 0)  # fails before any work when the folds cannot be made
        inputs = {**data_inputs(root, datasets), "--extra-good folder": args.extra_good, "--groups file": args.groups,
                  "--grid-file": args.grid_file}
        with ResultSet(args.out, inputs=inputs) as staging:
            if args.reuse is not None:
                scores = reused_scores(args.reuse, names, images, runs)
            else:
                scores = score_candidates(configs, data, images, runs, lambda config: pipeline_from_args(args, config),
                                          progress=not args.quiet)
            buffer = io.BytesIO()
            np.savez_compressed(buffer, scores=scores, names=np.array(names), files=np.array(images.files), runs=np.array(runs))
            write_atomic(staging / SCORES_FILE, buffer.getvalue())
            result = cross_validate(scores, images, runs, args.folds, args.repeats, args.objective, args.f1_ratio)
            candidates = candidate_rows(scores, images, runs, result, names, args.f1_ratio)
            n_good = int((images.labels == 0).sum())
            header = (f"# Cross-validation: {data.name}, preset {base.name}, {len(knobs)} candidates, "
                      f"{n_good} good / {len(images.labels) - n_good} anomalous images, {args.folds} folds × {args.repeats} "
                      f"repeats, seeds {' '.join(map(str, args.seeds))}, objective {args.objective}, "
                      f"F1 ratio {args.f1_ratio:.3f} goods per anomaly")
            report = markdown_report(result, candidates, args.shots, header)
            write_csv(staging / "cv_folds.csv", [{**r, "name": names[r["candidate"]]} for r in result.chosen])
            write_csv(staging / "cv_candidates.csv", candidates)
            write_csv(staging / "cv_groups.csv", result.groups)
            write_csv(staging / "cv_pooled.csv", result.pooled)
            write_atomic(staging / "cv.md", report)
        print(report)
        print(f"results written to {args.out}/")
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
