"""``python -m loco_ad.predict``: fit on a folder of good images, score every image of another folder.

Example::

    python -m loco_ad.predict --good good/ --images incoming/ --out results/ --preset offline

writes ``results/results.csv``, ``results/results.json``, ``results/report.html``
and the overlays in ``results/images/`` (drawn at the pipeline's working
resolution). Both folders are listed recursively (PNG, JPEG, BMP, TIFF;
hidden folders and loco_ad result folders skipped). Everything is written
beside ``--out`` and replaces its previous result set whole once all is
written (``io.ResultSet``): a killed or failed run leaves the previous set
as it was, a re-run leaves no picture of an earlier one, and a second
command writing to the same ``--out`` meanwhile is refused.

Exit codes: 0 when every image was scored; 1 when some images of ``--images``
could not be read (they are listed in results.csv with their error, the others
are scored; an image above Pillow's decompression-bomb limit, about 179
million pixels, is one of them); 2 on a usage error (missing or empty folder,
unreadable good image, ``--out`` a file, under a file, read-only, holding
other files, or overlapping ``--good`` or ``--images``, unknown preset or
scorer, missing model weights, a result file that cannot be written),
reported on one line with no result files written.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from loco_ad.cli import (
    ArgumentParser,
    add_pipeline_arguments,
    config_from_args,
    output_folder,
    pipeline_from_args,
    printed_config,
    run_main,
)
from loco_ad.data import list_images, read_image
from loco_ad.errors import DataError, ImageReadError
from loco_ad.io import ResultSet, check_output_dir
from loco_ad.report import (
    ReportItem,
    ReportMeta,
    map_colour_range,
    overlay_stems,
    write_html_report,
    write_overlays,
    write_results,
)

BATCH = 8  # images read and handed to the pipeline at once
TOP = 5  # anomalies listed in the printed summary


def _threshold(text: str) -> float | None:
    """``auto`` → None; otherwise a finite number."""
    if text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected 'auto' or a finite number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``python -m loco_ad.predict``."""
    parser = ArgumentParser(
        prog="python -m loco_ad.predict",
        description="Fit on a folder of good images and score every image of another folder.",
    )
    # required unless --print-config (checked in ``main``)
    parser.add_argument("--good", type=Path, help="folder of good reference images (k >= 1, searched recursively)")
    parser.add_argument("--images", type=Path, help="folder of images to score (searched recursively)")
    parser.add_argument("--out", type=output_folder, help="output folder for results.csv/json, report.html and images/")
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
    """Score ``paths`` in batches, writing each image's overlays to ``out`` (the staging folder) as soon as it is scored.

    Only the scores are kept of a scored image (``Prediction.scores_only``), so
    memory does not grow with the number of images; an unreadable file becomes
    an item with its error.

    Returns:
      the items in the order of ``paths``, and the overlay files of each scored item (see ``write_overlays``).
    """
    names = [path.relative_to(root).as_posix() for path in paths]
    stems = dict(zip(names, overlay_stems(names)))
    colour_range = map_colour_range(pipeline.detector.scorer_names)
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
    config = config_from_args(args)
    if printed_config(args, config):
        return 0
    check_output_dir(args.out, "--out folder")
    good = _list(args.good, "good")
    images = _list(args.images, "images")
    pipeline = pipeline_from_args(args, config)
    with ResultSet(args.out, inputs={"--good folder": args.good, "--images folder": args.images}) as staging:
        try:
            pipeline.fit(good)
        except ImageReadError as error:
            raise DataError(f"good image {error.path} cannot be read ({error.reason}); fix or remove it") from None
        detector = pipeline.detector
        if args.threshold is None:
            threshold, rule = detector.auto_threshold()
        else:
            threshold, rule = args.threshold, "given with --threshold"
        items, pictures = _score(pipeline, images, args.images, threshold, staging)
        meta = ReportMeta(
            preset=config.name,
            k=len(good),
            scorers=detector.scorer_names,
            weights=detector.weights,
            used_fallback=detector.used_fallback,
            threshold=threshold,
            threshold_rule=rule,
            title=f"loco_ad predict: {args.images}",
            extra={"good folder": str(args.good), **({"reference decisions": pipeline.decisions} if pipeline.decisions else {})},
        )
        write_results(staging, items, meta)
        write_html_report(staging, items, meta, pictures)
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
    parser = build_parser()
    args = parser.parse_args(argv)
    missing = [f"--{name}" for name in ("good", "images", "out") if getattr(args, name) is None]
    if missing and not args.print_config:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    return run_main(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
