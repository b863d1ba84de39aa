"""``python -m loco_ad.predict``: fit on a folder of good images, score every image of another folder.

Example::

    python -m loco_ad.predict --good good/ --images incoming/ --out results/ --preset offline

writes ``results/results.csv``, ``results/results.json``, ``results/report.html``
and the overlays in ``results/images/`` (drawn at the pipeline's working
resolution). Both folders are listed recursively (PNG, JPEG, BMP, TIFF).

Exit codes: 0 when every image was scored; 1 when some images of ``--images``
could not be read (they are listed in results.csv with their error, the others
are scored); 2 on a usage error (missing or empty folder, unreadable good image,
unknown preset or scorer, missing model weights), reported on one line with no
result files written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from loco_ad.cli import add_pipeline_arguments, pipeline_from_args, run_main
from loco_ad.data import list_images, read_image
from loco_ad.errors import DataError, ImageReadError
from loco_ad.report import (
    ReportItem,
    ReportMeta,
    auto_threshold,
    map_colour_range,
    overlay_stems,
    write_html_report,
    write_overlays,
    write_results,
)

BATCH = 8  # images read and handed to the pipeline at once
TOP = 5  # anomalies listed in the printed summary


def _threshold(text: str) -> float | None:
    """``auto`` → None; otherwise a number."""
    if text == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``python -m loco_ad.predict``."""
    parser = argparse.ArgumentParser(
        prog="python -m loco_ad.predict",
        description="Fit on a folder of good images and score every image of another folder.",
    )
    parser.add_argument("--good", required=True, type=Path, help="folder of good reference images (k >= 1, searched recursively)")
    parser.add_argument("--images", required=True, type=Path, help="folder of images to score (searched recursively)")
    parser.add_argument("--out", required=True, type=Path, help="output folder for results.csv/json, report.html and images/")
    parser.add_argument("--threshold", type=_threshold, default=None, help="'auto' (default, from leave-one-out scores of the good images) or a score")
    add_pipeline_arguments(parser, default_preset="fast")
    return parser


def _list(folder: Path, role: str) -> list[Path]:
    files = list_images(folder)
    if not files:
        raise DataError(f"no images (PNG, JPEG, BMP, TIFF) in {role} folder {folder}; check the path")
    return files


def _score(
    pipeline, paths: Sequence[Path], root: Path, threshold: float, out: Path
) -> tuple[list[ReportItem], dict[str, dict[str, str]]]:
    """Score ``paths`` in batches, writing each image's overlays to ``out`` as soon as it is scored.

    Only the scores are kept of a scored image (``Prediction.scores_only``), so
    memory does not grow with the number of images; an unreadable file becomes
    an item with its error.

    Returns:
      the items in the order of ``paths``, and the overlay files of each scored item (see ``write_overlays``).
    """
    names = [path.relative_to(root).as_posix() for path in paths]
    stems = dict(zip(names, overlay_stems(names)))
    colour_range = map_colour_range(pipeline.config.scorers)
    items: list[ReportItem] = []
    pictures: dict[str, dict[str, str]] = {}
    with tqdm(total=len(paths), desc="scoring", unit="img", disable=not pipeline.progress) as bar:
        for start in range(0, len(paths), BATCH):
            readable, arrays = [], []
            for path, name in zip(paths[start : start + BATCH], names[start : start + BATCH]):
                try:
                    arrays.append(read_image(path))
                    readable.append(name)
                except ImageReadError as error:
                    items.append(ReportItem(name, None, "error", error=error.reason))
            predictions = pipeline.predict_many(arrays, progress=False, remember=False) if arrays else []
            for name, prediction in zip(readable, predictions):
                verdict = "anomalous" if prediction.score > threshold else "good"
                pictures[name] = write_overlays(out, ReportItem(name, prediction, verdict), stems[name], colour_range)
                items.append(ReportItem(name, prediction.scores_only(), verdict))
            bar.update(len(paths[start : start + BATCH]))
    order = {name: i for i, name in enumerate(names)}
    return sorted(items, key=lambda item: order[item.name]), pictures


def _summary(items: Sequence[ReportItem], meta: ReportMeta, out: Path) -> str:
    scored = sorted((i for i in items if i.prediction is not None), key=lambda i: -i.prediction.score)
    anomalous = [i for i in scored if i.verdict == "anomalous"]
    lines = [
        f"preset {meta.preset}, k = {meta.k}, scorers {', '.join(meta.scorers)}" + (" (k = 1 fallback scales)" if meta.used_fallback else ""),
        f"threshold {meta.threshold:.4g} — {meta.threshold_rule}",
        f"{'images':<12}{len(items):>6}",
        f"{'anomalous':<12}{len(anomalous):>6}",
        f"{'good':<12}{len(scored) - len(anomalous):>6}",
        f"{'unreadable':<12}{len(items) - len(scored):>6}",
    ]
    if scored:
        width = max(len(i.name) for i in scored[:TOP])
        lines += ["", f"top {min(TOP, len(scored))} by score:"]
        lines += [f"  {i.name:<{width}}  {i.prediction.score:9.4g}  {i.verdict}" for i in scored[:TOP]]
    lines += ["", f"results in {out}: results.csv, results.json, report.html"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Fit, score, write the results and print the summary; return the exit code (0 or 1).

    Arguments:
      args: parsed arguments of ``build_parser``.
    Returns:
      0 when every image was scored, 1 when some could not be read.
    Raises:
      LocoAdError: a usage error, raised before any result file is written.
    """
    if args.out.exists() and not args.out.is_dir():
        raise DataError(f"output path {args.out} is a file; give a folder with --out")
    good = _list(args.good, "good")
    images = _list(args.images, "images")
    pipeline = pipeline_from_args(args)
    try:
        pipeline.fit(good)
    except ImageReadError as error:
        raise DataError(f"good image {error.path} cannot be read ({error.reason}); fix or remove it") from None
    scorers = pipeline.config.scorers
    if args.threshold is None:
        threshold, rule = auto_threshold(pipeline.leave_one_out_scores(), pipeline.ensemble.value_at_weights())
    else:
        threshold, rule = args.threshold, "given with --threshold"
    items, pictures = _score(pipeline, images, args.images, threshold, args.out)
    meta = ReportMeta(
        preset=pipeline.config.name,
        k=len(good),
        scorers=scorers,
        weights=pipeline.weights,
        used_fallback=pipeline.used_fallback,
        threshold=threshold,
        threshold_rule=rule,
        title=f"loco_ad predict: {args.images}",
        extra={"good folder": str(args.good)},
    )
    write_results(args.out, items, meta)
    write_html_report(args.out, items, meta, pictures)
    print(_summary(items, meta, args.out))
    failed = sum(item.prediction is None for item in items)
    if failed:
        print(f"{failed} of {len(items)} image(s) could not be read; see the error column of results.csv", file=sys.stderr)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m loco_ad.predict``.

    Arguments:
      argv: command-line arguments (default ``sys.argv[1:]``).
    Returns:
      the exit code: 0 all scored, 1 some images unreadable, 2 usage error.
    """
    args = build_parser().parse_args(argv)
    return run_main(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
