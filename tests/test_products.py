"""experiments/products.py: re-lighting, subsampling, the choice across products, and the table end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from experiments.cross_validate import ImageSet
from experiments.products import (
    RELEASE,
    TEXTURE_DEFECTS,
    Product,
    choose_across,
    cross_validate_products,
    main,
    relight,
    subsample,
    texture_crop,
    with_texture_defect,
)
from loco_ad.cli import settings_from_file
from loco_ad.config import apply_overrides, get_preset
from tests.loco_tree import make_loco_tree


def test_relight_changes_exposure_colour_and_light_across_the_image() -> None:
    image = np.full((60, 80, 3), 120, np.uint8)
    first = relight(image, np.random.default_rng(3))
    assert np.array_equal(first, relight(image, np.random.default_rng(3)))  # seeded, reproducible
    assert first.shape == image.shape and first.dtype == np.uint8
    means = first.reshape(-1, 3).mean(axis=0)
    assert np.ptp(means) > 1  # the channels got different gains: a colour cast
    corners = [first[:5, :5].mean(), first[:5, -5:].mean(), first[-5:, :5].mean(), first[-5:, -5:].mean()]
    assert max(corners) / min(corners) > 1.05  # a light gradient, not one gain


def _image_set(goods: int, anomalies: int) -> ImageSet:
    labels = np.array([0] * goods + [1] * anomalies)
    names = [f"{i:03d}.png" for i in range(len(labels))]
    return ImageSet([Path(n) for n in names], labels, ["good" if label == 0 else n for label, n in zip(labels, names)], names)


def test_subsample_is_even_deterministic_and_keeps_small_sets() -> None:
    images = _image_set(100, 7)
    small = subsample(images, 10, 60)
    assert int((small.labels == 0).sum()) == 10 and int(small.labels.sum()) == 7
    assert small.files[0] == "000.png" and "099.png" in small.files  # both ends of the good images
    assert small.files == sorted(small.files) and small.files == subsample(images, 10, 60).files
    assert subsample(images, 200, 200).files == images.files


def test_texture_crops_differ_in_size_and_each_defect_marks_a_small_grey_patch() -> None:
    from skimage.data import gravel

    rng = np.random.default_rng(0)
    crops = [texture_crop(gravel(), rng) for _ in range(len(TEXTURE_DEFECTS))]
    assert len({c.shape for c in crops}) > 1 and all(224 <= c.shape[0] == c.shape[1] <= 384 for c in crops)
    for crop, kind in zip(crops, TEXTURE_DEFECTS):
        defective = with_texture_defect(crop, kind, rng)
        changed = (defective != crop).any(axis=-1)
        assert defective.shape == crop.shape and (defective == defective[..., :1]).all(), kind  # still grey
        assert 0.001 < changed.mean() < 0.05, kind
        ys, xs = np.nonzero(changed)
        assert min(ys.min(), xs.min()) > 0.1 * crop.shape[0] and max(ys.max(), xs.max()) < 0.9 * crop.shape[0], kind


def test_the_worst_product_objective_refuses_to_buy_one_product_with_another() -> None:
    per_product = np.array([[0.80, 0.80], [0.99, 0.70], [0.80, 0.79]])
    assert choose_across(per_product, "worst") == 0
    assert choose_across(per_product, "mean") == 1
    assert choose_across(np.array([[0.8, 0.9], [0.8, 0.95]]), "worst") == 1  # equal worst: the better mean


def test_cross_validation_across_products_holds_out_and_chooses_the_safe_candidate() -> None:
    rng = np.random.default_rng(0)
    products, scores = [], []
    for flip in (False, True):
        images = _image_set(12, 12)
        products.append(Product(f"product{int(flip)}", None, images))
        good = np.r_[rng.random(12), rng.random(12) + 0.5]  # separates the kinds fairly
        sharp = np.r_[np.zeros(12), np.ones(12)]
        bought = 1 - sharp if flip else sharp  # perfect on the first product, inverted on the second
        scores.append(np.stack([good, bought])[:, None, :])
    held_out, choices = cross_validate_products(scores, products, [0, 1], n_folds=3, repeats=2, objective="worst")
    assert {c["candidate"] for c in choices} == {0} and held_out.shape == (2, 2, 3, 1)
    _, by_mean = cross_validate_products(scores, products, [0, 1], n_folds=3, repeats=1, objective="mean")
    assert all(0.0 <= value <= 1.0 for value in held_out.ravel())
    assert len(by_mean) == 3


def test_a_candidate_below_the_release_on_one_product_and_k_does_not_compete() -> None:
    assert choose_across(np.array([[0.80, 0.80], [0.85, 0.82]]), "worst", np.array([True, False])) == 0
    assert choose_across(np.array([[0.80, 0.80], [0.85, 0.82]]), "worst", np.array([False, False])) == 1  # none: all compete
    rng = np.random.default_rng(1)
    products, scores = [], []
    for name in ("juice", "tire"):
        images = _image_set(12, 12)
        products.append(Product(name, None, images))
        labels = images.labels.astype(float)
        noise = rng.random((2, 24))  # two runs (k = 1, 2)
        fair = (0.6 if name == "juice" else 0.15) * labels + noise  # juice well, the tire hardly
        release = fair.copy()
        bold = noise + 2 * labels  # perfect on the tire...
        if name == "juice":
            bold[0] = 0.2 * labels + noise[0]  # ...but worse on juice at k = 1
        scores.append(np.stack([fair, release, bold]))
    _, free = cross_validate_products(scores, products, [0, 2], n_folds=3, repeats=1, objective="worst")
    _, bounded = cross_validate_products(scores, products, [0, 2], n_folds=3, repeats=1, objective="worst",
                                         floor=1, margin=0.01, run_k=[1, 2])
    assert 2 in {c["candidate"] for c in free}  # unbounded, the worst product buys the tire with juice at k = 1
    assert {c["candidate"] for c in bounded} == {0}


def test_cli_writes_the_table_with_the_choice_across_products(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    shared = tmp_path / "shared"
    make_loco_tree(shared / "mvtec_3d_ad", category="tire", n_train=4, n_good=4, n_logical=0, n_structural=4)
    out = tmp_path / "out"
    argv = ["--products", "tire", "posed", "texture", "--shared-data", str(shared), "--work", str(tmp_path / "work"),
            "--shots", "1", "2", "--seeds", "42", "--max-good", "4", "--max-anomalous", "4", "--folds", "2",
            "--repeats", "1", "--grid", "ensemble.scorers=foreground", "--out", str(out),
            "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| tire | 2 |" in printed and "| posed | 1 |" in printed and "objective worst" in printed
    with open(out / "products.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert {r["column"] for r in rows} == {"default", "pixel", "release", "chosen"}
    assert len([r for r in rows if r["column"] == "pixel"]) == 3 * 2  # products × (seed, k)
    report = json.loads((out / "products.json").read_text())
    assert report["products"]["posed"] == {"good": 4, "anomalous": 4, "train": 40}
    assert report["products"]["texture"] == {"good": 4, "anomalous": 4, "train": 40}
    # the references of the gravel crops share no layout, the posed photographs' do (one fit of k = 2 each)
    assert report["layout"]["texture"]["applied"] == 1 == report["layout"]["texture"]["fits"]
    assert report["layout"]["posed"]["applied"] == 0 and report["layout"]["posed"]["measured"][0] > 0.9
    assert report["colour"]["texture"]["applied"] == report["colour"]["texture"]["fits"] == 2  # grey crops, k = 1 and 2
    assert report["colour"]["posed"]["applied"] == 0 and report["colour"]["posed"]["measured"][0] > 15
    assert "texture agreement" in printed
    assert report["baseline_set"] == list(RELEASE)  # no --baseline-set: the release's settings
    assert report["choice"]["candidates"] == ["preset", "ensemble.scorers=foreground"]
    assert (out / "products.md").read_text().startswith("| product | k | default | pixel | release | chosen |")


def test_missing_product_folder_is_one_line_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["--products", "tire", "--shared-data", str(tmp_path / "nowhere"), "--out", str(out), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "tire" in lines[0]
    assert not out.exists()


def test_the_release_config_file_and_the_release_overrides_agree() -> None:
    """experiments/configs/release_1dda9bf.yaml (``--config``) and ``RELEASE`` (the products' release column) are one setting."""
    preset = get_preset("offline")
    from_file = settings_from_file(preset, Path(__file__).resolve().parents[1] / "experiments" / "configs" / "release_1dda9bf.yaml")
    assert from_file == apply_overrides(preset, RELEASE) != preset
    # the release column does not follow --scorers (which clears the k = 1 scorers of the default column)
    assert apply_overrides(preset.with_scorers(("fine",)), RELEASE) == from_file
