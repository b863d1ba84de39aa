"""Build the bundled sample ``loco_ad/sample_data/juice_bottle`` from the shared juice_bottle subset.

Example::

    python scripts/make_sample.py ../shared/data/mvtec_loco_subset/juice_bottle loco_ad/sample_data/juice_bottle

Takes the files listed in ``SELECTION`` from the subset (400×800, official
MVTec LOCO layout), halves them again (each output pixel the mean of a 2×2
block: 200×400; a mask pixel is 255 where at least half of its block was),
numbers them afresh in the official layout and writes ``provenance.csv``
(sample file → file of the official dataset, what it shows), next to copies of
the dataset's ``license.txt``, ``readme.txt`` and ``defects_config.json``.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

# (sample folder, subset file stem, what it shows). Order within a folder gives the new
# numbering. train/good mixes the three juices so that the VAND draws (seeds 42, 0, 1234)
# at k = 4 each hold all three; test/logical_anomalies has one image of each group of
# docs/juice_bottle_subset_groups.csv, two of the largest (wrong fill level).
SELECTION: tuple[tuple[str, str, str], ...] = (
    ("train/good", "004", "cherry juice"),
    ("train/good", "000", "orange juice"),
    ("train/good", "002", "banana juice"),
    ("train/good", "001", "orange juice"),
    ("train/good", "005", "orange juice"),
    ("train/good", "008", "cherry juice"),
    ("train/good", "003", "banana juice"),
    ("train/good", "006", "banana juice"),
    ("test/good", "000", "banana juice"),
    ("test/good", "001", "cherry juice"),
    ("test/good", "002", "cherry juice"),
    ("test/good", "004", "orange juice"),
    ("test/good", "005", "banana juice"),
    ("test/good", "006", "orange juice"),
    ("test/logical_anomalies", "002", "both labels missing"),
    ("test/logical_anomalies", "007", "bottom label missing"),
    ("test/logical_anomalies", "012", "empty bottle"),
    ("test/logical_anomalies", "022", "altered fruit icon"),
    ("test/logical_anomalies", "028", "misplaced label"),
    ("test/logical_anomalies", "031", "swapped labels"),
    ("test/logical_anomalies", "037", "top label missing"),
    ("test/logical_anomalies", "042", "wrong fill level"),
    ("test/logical_anomalies", "044", "wrong fill level"),
    ("test/logical_anomalies", "066", "juice does not match icon"),
)
COPIED = ("license.txt", "readme.txt", "defects_config.json")


def halve(image: Image.Image, mask: bool = False) -> Image.Image:
    """Halve both sides by 2×2 block means; a mask is thresholded back to 0/255 at half its block."""
    if not mask:
        return image.convert("RGB").reduce(2)
    small = np.asarray(image.convert("L").reduce(2))
    return Image.fromarray(np.where(small >= 128, 255, 0).astype(np.uint8))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_sample(source: Path, target: Path) -> list[dict[str, str]]:
    """Write the sample under ``target`` from the subset category folder ``source``.

    Arguments:
      source: the subset's ``juice_bottle`` folder (with its ``provenance.csv``).
      target: the sample's ``juice_bottle`` folder; replaced if present.
    Returns:
      the ``provenance.csv`` rows written.
    """
    with open(source / "provenance.csv", newline="") as file:
        official = {row["file"]: row["source_in_mvtec_loco_juice_bottle"] for row in csv.DictReader(file)}
    if target.exists():
        shutil.rmtree(target)
    rows: list[dict[str, str]] = []
    counts: dict[str, int] = {}
    for folder, stem, content in SELECTION:
        name = f"{counts.get(folder, 0):03d}"
        counts[folder] = counts.get(folder, 0) + 1
        subset_file = f"{folder}/{stem}.png"
        (target / folder).mkdir(parents=True, exist_ok=True)
        (target / folder / f"{name}.png").write_bytes(png_bytes(halve(Image.open(source / subset_file))))
        rows.append({"file": f"{folder}/{name}.png", "source_in_mvtec_loco_juice_bottle": official[subset_file],
                     "shows": content})
        if folder.startswith("test/") and folder != "test/good":
            kind = folder.split("/")[1]
            mask_folder = target / "ground_truth" / kind / name
            mask_folder.mkdir(parents=True)
            (mask_folder / "000.png").write_bytes(png_bytes(halve(Image.open(source / "ground_truth" / kind / stem / "000.png"), mask=True)))
            official_stem = Path(official[subset_file]).stem
            rows.append({"file": f"ground_truth/{kind}/{name}/000.png",
                         "source_in_mvtec_loco_juice_bottle": f"ground_truth/{kind}/{official_stem}/",
                         "shows": content})
    for name in COPIED:
        shutil.copyfile(source / name, target / name)
    with open(target / "provenance.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, ["file", "source_in_mvtec_loco_juice_bottle", "shows"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="the subset's juice_bottle folder")
    parser.add_argument("target", type=Path, help="the sample's juice_bottle folder (replaced)")
    args = parser.parse_args(argv)
    rows = make_sample(args.source, args.target)
    print(f"{len(rows)} files written to {args.target}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
