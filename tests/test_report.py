"""Tests of the result writers and pictures in ``loco_ad.report``."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loco_ad.analysis import Prediction
from loco_ad.report import (
    GT_OUTLINE,
    PALETTE,
    SEGMENT_BORDER,
    ReportItem,
    ReportMeta,
    heatmap_overlay,
    map_colour_range,
    overlay_stems,
    segmentation_overlay,
    write_image_report,
    write_results,
)
from tests.analyses import analysis_from_scene
from tests.scenes import make_scene

SCORERS = ("class_agnostic", "histogram")


class References(HTMLParser):
    """Collects the ``src`` of every ``<img>``, the image-card headings and the text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.text: list[str] = []
        self.headings: list[str] = []  # the <h3> of each image card, in page order
        self._in_heading = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"])
        self._in_heading = tag == "h3"

    def handle_endtag(self, tag: str) -> None:
        self._in_heading = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_heading:
            self.headings.append(data)


def parse_html(path: Path) -> References:
    parser = References()
    parser.feed(path.read_text())
    return parser


def _prediction(anomaly: str, seed: int, with_map: bool = True) -> Prediction:
    scene = make_scene(anomaly, seed=seed)
    analysis = analysis_from_scene(scene)
    anomaly_map = scene.mask.astype(np.float32) + 0.1 if with_map else None
    scores = {"class_agnostic": 0.5 + scene.mask.mean() * 10, "histogram": 0.4 + seed * 0.01}
    return Prediction(sum(scores.values()), anomaly_map, scores, dict(scores), analysis)


def _meta(threshold: float = 1.0) -> ReportMeta:
    return ReportMeta("offline", 3, SCORERS, {"class_agnostic": 0.2, "histogram": 0.05}, False, threshold, "given")


def test_heatmap_overlay_colours_and_scale() -> None:
    rgb = np.full((20, 30, 3), 128, np.uint8)
    anomaly_map = np.zeros((10, 15), np.float32)
    anomaly_map[:, 8:] = 2.0  # right half hot, upsampled to the image size
    out = heatmap_overlay(rgb, anomaly_map)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert out[10, 25, 0] > out[10, 25, 2]  # hot: red over blue
    assert out[10, 2, 2] > out[10, 2, 0]  # cold: blue over red
    # with an explicit scale whose top is far above the map, the hot half is no longer red
    calm = heatmap_overlay(rgb, anomaly_map, vmin=0.0, vmax=100.0)
    assert calm[10, 25, 0] < out[10, 25, 0]


def test_map_colour_range_counts_patch_scorers() -> None:
    assert map_colour_range(("class_agnostic", "foreground", "histogram")) == (0.0, 4.0)
    assert map_colour_range(("class_aware",)) == (0.0, 2.0)
    assert map_colour_range(("histogram", "colour")) == (0.0, 2.0)  # no map at all: any non-empty range


def test_heat_map_colours_do_not_depend_on_the_other_images(tmp_path: Path) -> None:
    quiet = ReportItem("quiet.png", _prediction("good", 0), "good")
    hot = _prediction("extra", 1)
    hot = Prediction(hot.score, hot.map * 50, hot.scores, hot.raw_scores, hot.analysis)
    write_image_report(tmp_path / "alone", [quiet], _meta())
    write_image_report(tmp_path / "with_hot", [quiet, ReportItem("hot.png", hot, "anomalous")], _meta())
    alone, beside = (np.asarray(Image.open(tmp_path / run / "images" / "quiet_heatmap.png")) for run in ("alone", "with_hot"))
    assert (alone == beside).all()


def test_segmentation_overlay_palette_borders_and_outline() -> None:
    rgb = np.full((40, 40, 3), 100, np.uint8)
    labels = np.zeros((40, 40), np.int32)
    labels[5:20, 5:20] = 1
    labels[22:38, 22:38] = 3
    segments = (labels > 0).astype(np.int32) * np.where(labels == 3, 2, 1)
    gt = np.zeros((20, 20), bool)  # half resolution: resized to 40×40
    gt[12:18, 12:18] = True
    out = segmentation_overlay(rgb, labels, segments, gt)
    assert out.shape == rgb.shape
    assert (out[0, 0] == rgb[0, 0]).all()  # background untouched
    inside1, inside3 = out[12, 12].astype(int), out[30, 30].astype(int)
    expected1 = np.round(0.45 * 100 + 0.55 * PALETTE[0].astype(float))
    assert np.abs(inside1 - expected1).max() <= 1
    assert not (inside1 == inside3).all()  # different classes, different colours
    assert (out[5, 10] == SEGMENT_BORDER).all()  # top border of segment 1
    assert (out[24, 30] == GT_OUTLINE).all()  # outline of the resized ground truth
    # the same class takes the same colour in another image
    other = segmentation_overlay(rgb, np.where(labels == 1, 1, 0), (labels == 1).astype(np.int32))
    assert (other[12, 12] == out[12, 12]).all()


def test_overlay_stems_unique() -> None:
    stems = overlay_stems(["a.png", "sub/a.png", "a.jpg", "we ird/a b.png", "sub__a.png"])
    assert stems[:4] == ["a", "sub__a", "a_2", "we_ird__a_b"]
    assert len(set(stems)) == len(stems)


def test_write_results_csv_and_json(tmp_path: Path) -> None:
    items = [
        ReportItem("good_0.png", _prediction("good", 0), "good"),
        ReportItem("sub/missing.png", _prediction("missing", 1), "anomalous", label="logical_anomalies"),
        ReportItem("broken.png", None, "error", error="truncated file"),
    ]
    csv_path, json_path = write_results(tmp_path, items, _meta())
    with csv_path.open() as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["file", "score", "verdict", "label", *SCORERS, "error"]
    assert [r["file"] for r in rows] == ["good_0.png", "sub/missing.png", "broken.png"]
    assert float(rows[1]["score"]) == pytest.approx(items[1].prediction.score)
    assert float(rows[1]["histogram"]) == pytest.approx(items[1].prediction.scores["histogram"])
    assert rows[2]["score"] == "" and rows[2]["error"] == "truncated file"
    payload = json.loads(json_path.read_text())
    assert payload["meta"]["threshold"] == 1.0 and payload["meta"]["used_fallback"] is False
    assert payload["rows"][2]["score"] is None
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind


def test_write_image_report(tmp_path: Path) -> None:
    items = [
        ReportItem("a.png", _prediction("good", 0), "good"),
        ReportItem("sub/a.png", _prediction("extra", 1), "anomalous", gt_mask=make_scene("extra", seed=1).mask),
        ReportItem("nomap.png", _prediction("colour", 2, with_map=False), "anomalous"),
        ReportItem("bad.png", None, "error", error="cannot identify image file"),
    ]
    path = write_image_report(tmp_path, items, _meta())
    assert path == tmp_path / "report.html"
    images = tmp_path / "images"
    for stem in ("a", "sub__a"):
        for kind in ("heatmap", "segments"):
            with Image.open(images / f"{stem}_{kind}.png") as picture:
                assert picture.size == (192, 128)  # working resolution of the predictions
    assert (images / "nomap_segments.png").exists() and not (images / "nomap_heatmap.png").exists()
    page = parse_html(path)
    assert sorted(page.sources) == sorted(f"images/{p.name}" for p in images.iterdir())
    text = " ".join(page.text)
    assert "bad.png" in text and "cannot identify image file" in text and "no map" in text
    assert "blue 0, green 1 (" in text and "red 2" in text  # the heat-map scale of one patch scorer
    # scored images only, by descending score
    order = sorted((i for i in items if i.prediction), key=lambda i: -i.prediction.score)
    assert page.headings == [i.name for i in order]
