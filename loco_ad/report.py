"""Result files and pictures: results.csv / results.json, heat-map and segment overlays, report.html.

Pure writers: nothing here parses arguments or runs a model. ``loco_ad.run
--report`` builds a list of ``ReportItem`` and a ``ReportMeta`` and calls
``write_image_report``; ``loco_ad.predict`` writes each image's overlays as soon
as it is scored (``write_overlays``) and ends with ``write_results`` and
``write_html_report``.

Overlays are drawn at the pipeline's working resolution (the resolution of
``Prediction.analysis.rgb`` and ``Prediction.map``), not at the original image
size; a ground-truth mask of another size is resized to it (nearest neighbour).
Every file is written atomically (temporary file + rename).

``report.html`` links its pictures (``images/*.png``) by relative path rather
than embedding them: a report of a few hundred images would otherwise be tens
of megabytes of base64 in one page, and ``predict`` writes each image's
overlays as soon as it is scored, before the page exists. The page needs no
network; keep it next to its ``images`` folder when moving it.
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

import cv2
import numpy as np
from matplotlib import colormaps
from PIL import Image
from skimage.segmentation import find_boundaries

from loco_ad.analysis import Prediction
from loco_ad.config import MAP_SCORERS
from loco_ad.io import write_atomic, write_csv, write_json

# Fixed colours of the aligned class ids 1, 2, ... (class id i takes PALETTE[(i - 1) % len]),
# so the same class has the same colour in every image; background (0) keeps the image colour.
# tab20's strong colours first, then its light ones, so neighbouring ids differ clearly.
_TAB20 = np.array(colormaps["tab20"].colors)
PALETTE: np.ndarray = (np.concatenate([_TAB20[::2], _TAB20[1::2]]) * 255).round().astype(np.uint8)
SEGMENT_BORDER = (0, 0, 0)
GT_OUTLINE = (255, 255, 255)
VERDICT_COLOURS = {"good": "#2e7d32", "anomalous": "#c62828", "error": "#6d6d6d"}


@dataclass(frozen=True)
class ReportItem:
    """One image of a report.

    Arguments:
      name: how the image is named in the report, usually its path relative to
        the scored folder (``sub/0001.png``); unique within a report.
      prediction: the pipeline's prediction, or None when the image could not be scored.
      verdict: ``"good"``, ``"anomalous"`` or ``"error"``.
      error: why the image could not be scored, or None.
      gt_mask: H×W bool ground-truth anomaly mask (any resolution), or None.
      label: the true label when known (``"good"``, ``"logical_anomalies"``, ...), or None.
    """

    name: str
    prediction: Prediction | None
    verdict: str
    error: str | None = None
    gt_mask: np.ndarray | None = None
    label: str | None = None


@dataclass(frozen=True)
class ReportMeta:
    """What a report states about the run that produced it.

    Arguments:
      preset: the preset name.
      k: number of good reference images.
      scorers: ids of the enabled scorers, in column order.
      weights: leave-one-out weight of each scorer (a raw score is divided by it).
      used_fallback: True when k = 1 and the documented fallback scales replaced the weights.
      threshold: score above which an image is called anomalous.
      threshold_rule: how ``threshold`` was chosen, in words.
      title: heading of the HTML report.
      extra: further plain-JSON facts (category, seed, ...), shown in the header and saved in results.json.
    """

    preset: str
    k: int
    scorers: tuple[str, ...]
    weights: dict[str, float]
    used_fallback: bool
    threshold: float
    threshold_rule: str
    title: str = "loco_ad report"
    extra: dict = field(default_factory=dict)


def save_png(path: Path, rgb: np.ndarray) -> None:
    """Save an H×W×3 uint8 image as PNG, atomically.

    Arguments:
      path: destination ``.png`` file.
      rgb: the image.
    """
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    write_atomic(path, buffer.getvalue())


def heatmap_overlay(
    rgb: np.ndarray, anomaly_map: np.ndarray, vmin: float | None = None, vmax: float | None = None, alpha: float = 0.5
) -> np.ndarray:
    """Blend an anomaly map, coloured with the ``jet`` colormap, over an image.

    Arguments:
      rgb: H×W×3 uint8 image.
      anomaly_map: anomaly map of any size (resized bilinearly to H×W).
      vmin: map value drawn blue; the map's minimum when None.
      vmax: map value drawn red (larger values saturate); the map's maximum when None.
      alpha: weight of the colours against the image.
    Returns:
      H×W×3 uint8 overlay.
    """
    height, width = rgb.shape[:2]
    values = cv2.resize(anomaly_map.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    low = float(values.min()) if vmin is None else vmin
    high = float(values.max()) if vmax is None else vmax
    scaled = np.clip((values - low) / max(high - low, 1e-12), 0.0, 1.0)
    colours = colormaps["jet"](scaled)[..., :3] * 255
    return np.clip((1 - alpha) * rgb + alpha * colours, 0, 255).round().astype(np.uint8)


def segmentation_overlay(
    rgb: np.ndarray, labels: np.ndarray, segment_map: np.ndarray, gt_mask: np.ndarray | None = None, alpha: float = 0.55
) -> np.ndarray:
    """Colour pixels by aligned class id, draw segment borders and, optionally, the ground-truth outline.

    Arguments:
      rgb: H×W×3 uint8 image.
      labels: H×W int aligned class ids (0 = background, left uncoloured); colours from ``PALETTE``.
      segment_map: H×W int segment ids; their borders are drawn in black.
      gt_mask: ground-truth anomaly mask of any size (resized to H×W, nearest
        neighbour), outlined in white; None for no outline.
      alpha: weight of the class colours against the image.
    Returns:
      H×W×3 uint8 overlay.
    """
    out = rgb.astype(np.float32)
    foreground = labels > 0
    colours = PALETTE[(labels[foreground] - 1) % len(PALETTE)]
    out[foreground] = (1 - alpha) * out[foreground] + alpha * colours
    out[find_boundaries(segment_map, mode="inner")] = SEGMENT_BORDER
    if gt_mask is not None:
        height, width = rgb.shape[:2]
        mask = cv2.resize(gt_mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
        outline = cv2.dilate(find_boundaries(mask, mode="inner").astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        out[outline] = GT_OUTLINE
    return out.round().astype(np.uint8)


def write_results(out_dir: Path, items: Sequence[ReportItem], meta: ReportMeta) -> tuple[Path, Path]:
    """Write ``results.csv`` (one row per image) and ``results.json`` (the rows and ``meta``).

    CSV columns: ``file, score, verdict``, then ``label`` when any item has one,
    one column per scorer (its normalised contribution to the score), ``error``.
    Rows keep the order of ``items``; unscored images have empty scores.

    Arguments:
      out_dir: output folder (created if missing).
      items: the images.
      meta: facts about the run.
    Returns:
      the paths of results.csv and results.json.
    """
    out_dir = Path(out_dir)
    with_label = any(item.label is not None for item in items)
    rows = [_result_row(item, meta.scorers, with_label) for item in items]
    columns = ["file", "score", "verdict", *(["label"] if with_label else []), *meta.scorers, "error"]
    csv_path = write_csv(out_dir / "results.csv", rows, columns)
    json_path = write_json(out_dir / "results.json", {"meta": asdict(meta), "rows": rows})
    return csv_path, json_path


def _result_row(item: ReportItem, scorers: Sequence[str], with_label: bool) -> dict:
    prediction = item.prediction
    row: dict = {"file": item.name, "score": None if prediction is None else prediction.score, "verdict": item.verdict}
    if with_label:
        row["label"] = item.label
    for name in scorers:
        row[name] = None if prediction is None else prediction.scores.get(name)
    row["error"] = item.error
    return row


def overlay_stems(names: Sequence[str]) -> list[str]:
    """File stems for the overlays of images called ``names``, unique and safe in a file name.

    ``sub/a.png`` becomes ``sub__a``; characters other than letters, digits,
    ``-``, ``_`` and ``.`` become ``_``; a stem already taken gets ``_2``, ``_3``, ...

    Arguments:
      names: image names (relative paths).
    Returns:
      one stem per name, in the same order.
    """
    stems: list[str] = []
    taken: set[str] = set()
    for name in names:
        base = re.sub(r"[^A-Za-z0-9._-]", "_", "__".join(Path(name).with_suffix("").parts)) or "image"
        stem, count = base, 1
        while stem in taken:
            count += 1
            stem = f"{base}_{count}"
        taken.add(stem)
        stems.append(stem)
    return stems


def map_colour_range(scorers: Sequence[str]) -> tuple[float, float]:
    """The map values drawn blue and red in every heat map: 0 and 2 per enabled scorer with a map.

    Each patch scorer adds its patch distances divided by its leave-one-out
    weight to the map, and that weight is the mean of the top 2 % patch
    distances of the least typical good reference when left out. So about 1
    per patch scorer is where a good image's worst patches lie: the middle of
    the scale (green) is the good images' worst, red is twice that. One fixed
    scale lets colours compare across images and reports, and lets overlays
    be drawn while later images are still being scored. The pixel baseline's
    map (per-pixel difference over its leave-one-out weight, an RMS) counts the same.

    Arguments:
      scorers: ids of the enabled scorers.
    Returns:
      (vmin, vmax) for ``heatmap_overlay``.
    """
    return 0.0, 2.0 * max(1, sum(name in MAP_SCORERS for name in scorers))


def write_overlays(out_dir: Path, item: ReportItem, stem: str, colour_range: tuple[float, float]) -> dict[str, str]:
    """Write the overlays of one scored image to ``out_dir/images``.

    ``images/<stem>_segments.png`` always, ``images/<stem>_heatmap.png`` when
    the prediction has a map (coloured over ``colour_range``, see ``map_colour_range``).

    Arguments:
      out_dir: output folder (created if missing).
      item: a scored image whose prediction still has its analysis.
      stem: file stem (see ``overlay_stems``).
      colour_range: (vmin, vmax) of the heat map.
    Returns:
      the written files relative to ``out_dir``, keyed ``segments`` and ``heatmap``.
    """
    analysis = item.prediction.analysis
    files = {"segments": f"images/{stem}_segments.png"}
    save_png(Path(out_dir) / files["segments"], segmentation_overlay(analysis.rgb, analysis.labels, analysis.segment_map, item.gt_mask))
    if item.prediction.map is not None:
        files["heatmap"] = f"images/{stem}_heatmap.png"
        save_png(Path(out_dir) / files["heatmap"], heatmap_overlay(analysis.rgb, item.prediction.map, *colour_range))
    return files


def write_image_report(out_dir: Path, items: Sequence[ReportItem], meta: ReportMeta) -> Path:
    """Write the overlays of every scored image (``write_overlays``) and ``out_dir/report.html``.

    Arguments:
      out_dir: output folder (created if missing).
      items: the images.
      meta: facts about the run.
    Returns:
      the path of report.html.
    """
    colour_range = map_colour_range(meta.scorers)
    pictures = {
        item.name: write_overlays(out_dir, item, stem, colour_range)
        for item, stem in zip(items, overlay_stems([item.name for item in items]))
        if item.prediction is not None
    }
    return write_html_report(out_dir, items, meta, pictures)


def write_html_report(out_dir: Path, items: Sequence[ReportItem], meta: ReportMeta, pictures: dict[str, dict[str, str]]) -> Path:
    """Write ``report.html``: a header on the run, then the images by descending score, then the unreadable files.

    The page needs no network: it links the overlay PNGs by relative path (see
    the module docstring for why), so it opens from disk as long as it stays
    next to its ``images`` folder.

    Arguments:
      out_dir: output folder (created if missing).
      items: the images.
      meta: facts about the run.
      pictures: for each item name, the overlay files relative to ``out_dir``
        (keys ``heatmap`` and ``segments``; a missing key is shown as "no map").
    Returns:
      the path of report.html.
    """
    scored = sorted((item for item in items if item.prediction is not None), key=lambda item: -item.prediction.score)
    failed = [item for item in items if item.prediction is None]
    n_anomalous = sum(item.verdict == "anomalous" for item in scored)
    weights = ", ".join(f"{name} {meta.weights.get(name, float('nan')):.4g}" for name in meta.scorers)
    vmax = map_colour_range(meta.scorers)[1]
    facts = [
        ("threshold", f"{meta.threshold:.4g} ({meta.threshold_rule})"),
        ("preset", meta.preset),
        ("k (good references)", str(meta.k)),
        ("scorers and weights", weights + (" — k = 1 fallback scales" if meta.used_fallback else "")),
        ("images", f"{len(scored)} scored, {n_anomalous} anomalous, {len(failed)} unreadable"),
        ("heat-map colours", f"blue 0, green {vmax / 2:g} (the worst patches of a left-out good reference), red {vmax:g}"),
        *((str(key), str(value)) for key, value in meta.extra.items()),
    ]
    header = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
    cards = "".join(_html_card(item, meta, pictures.get(item.name, {})) for item in scored)
    errors = "".join(f"<li><b>{html.escape(item.name)}</b>: {html.escape(item.error or 'not scored')}</li>" for item in failed)
    body = (
        f"<h1>{html.escape(meta.title)}</h1><table class='meta'>{header}</table>"
        + (f"<h2>Unreadable files</h2><ul class='errors'>{errors}</ul>" if failed else "")
        + f"<h2>Images by score</h2>{cards}"
    )
    page = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(meta.title)}</title><style>{_CSS}</style></head><body>{body}</body></html>"
    path = Path(out_dir) / "report.html"
    write_atomic(path, page)
    return path


def _html_card(item: ReportItem, meta: ReportMeta, files: dict[str, str]) -> str:
    prediction = item.prediction
    colour = VERDICT_COLOURS.get(item.verdict, "#444")
    largest = max([abs(v) for v in prediction.scores.values()] + [1e-12])
    bars = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{prediction.scores.get(name, float('nan')):.3f}</td>"
        f"<td><div class='bar' style='width:{100 * abs(prediction.scores.get(name, 0.0)) / largest:.0f}px'></div></td></tr>"
        for name in meta.scorers
    )
    figures = "".join(
        f"<figure><img src='{quote(files[kind])}' alt='{kind}'><figcaption>{caption}</figcaption></figure>"
        if kind in files
        else f"<figure><div class='none'>no map</div><figcaption>{caption}</figcaption></figure>"
        for kind, caption in (("heatmap", "anomaly map"), ("segments", "aligned classes"))
    )
    label = f" · label {html.escape(item.label)}" if item.label is not None else ""
    return (
        f"<div class='card' style='border-left-color:{colour}'>"
        f"<h3>{html.escape(item.name)}</h3>"
        f"<p><span class='verdict' style='background:{colour}'>{html.escape(item.verdict)}</span> "
        f"score {prediction.score:.4g}{label}</p>"
        f"<div class='row'>{figures}<table class='scores'><tr><th>scorer</th><th>contribution</th><th></th></tr>{bars}</table></div></div>"
    )


_CSS = """
body{font-family:sans-serif;margin:1.5em;color:#222}
table.meta th{text-align:left;padding-right:1em}
.card{border-left:8px solid;padding:.3em 1em;margin:1em 0;background:#f6f6f6}
.card h3{margin:.3em 0}
.verdict{color:#fff;padding:.1em .5em;border-radius:3px}
.row{display:flex;gap:1em;align-items:flex-start;flex-wrap:wrap}
figure{margin:0}
figure img{max-width:360px;height:auto}
.none{width:200px;height:100px;background:#ddd;display:flex;align-items:center;justify-content:center}
table.scores td{padding:0 .4em}
.bar{height:10px;background:#1565c0}
.errors{color:#a00}
"""
