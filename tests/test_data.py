"""The MVTec LOCO data layer: layout, images, masks, errors, reference draw."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from loco_ad.data import (
    DEFAULT_SEEDS,
    DEFAULT_SHOTS,
    data_root,
    draw_references,
    image_size,
    list_images,
    load_category,
    read_image,
    read_mask,
    read_mask_channels,
    resolve_categories,
    saturation_scale,
    tensor_to_rgb,
)
from loco_ad.errors import ConfigError, DataError, ImageReadError
from tests.loco_tree import DEFECTS, make_loco_tree
from tests.scenes import make_scene

# ---------------------------------------------------------------- real data


def test_sample_counts_and_masks(loco_sample: Path) -> None:
    data = load_category(loco_sample, "juice_bottle")
    types = [s.anomaly_type for s in data.test]
    assert (len(data.train), len(data.validation)) == (8, 0)
    assert (types.count("good"), types.count("logical"), types.count("structural")) == (6, 10, 0)
    assert data.train == sorted(data.train) and data.train[0].name == "000.png"
    assert all(s.label == 1 and len(s.mask_paths) == 1 for s in data.test if s.anomaly_type == "logical")
    assert all(s.mask_paths[0].parent.name == s.path.stem for s in data.test if s.label)
    assert {d.name for d in data.defects} >= {"missing_top_label", "juice_color"} and len(data.defects) == 18

    sample = next(s for s in data.test if s.label)
    image = read_image(sample.path)
    mask = read_mask(sample)
    assert image.shape == (400, 200, 3) and image.dtype == np.uint8
    assert mask.shape == (400, 200) and set(np.unique(mask)) == {0, 255}
    small = read_mask(sample, size=(200, 100))
    assert small.shape == (200, 100) and set(np.unique(small)) <= {0, 255} and small.any()
    assert read_image(sample.path, size=(256, 256)).shape == (256, 256, 3)
    assert resolve_categories(loco_sample, "all") == ["juice_bottle"]


def test_sample_reference_draw(loco_sample: Path) -> None:
    train = load_category(loco_sample, "juice_bottle").train
    torch.manual_seed(42)
    expected = torch.randperm(len(train))[:4].tolist()
    assert draw_references(train, 4, 42) == [train[i] for i in expected]


def test_subset_counts(loco_subset: Path) -> None:
    data = load_category(loco_subset, "juice_bottle")
    types = [s.anomaly_type for s in data.test]
    assert (len(data.train), len(data.validation)) == (40, 10)
    assert (types.count("good"), types.count("logical"), types.count("structural")) == (22, 71, 0)
    assert read_image(data.train[0]).shape == (800, 400, 3)


# ---------------------------------------------------------------- tiny tree


def test_tiny_tree_layout(tiny_loco_root: Path) -> None:
    data = load_category(tiny_loco_root, "juice_bottle")
    assert (len(data.train), len(data.validation), len(data.test)) == (6, 2, 8)
    assert [s.anomaly_type for s in data.test] == ["good"] * 3 + ["logical"] * 3 + ["structural"] * 2
    assert [s.label for s in data.test] == [0] * 3 + [1] * 5
    assert all(s.mask_paths == () for s in data.test[:3])
    assert {d.pixel_value: d.relative_saturation for d in data.defects} == {v: r for v, _, r in DEFECTS.values()}
    assert data.root == tiny_loco_root / "juice_bottle"


def test_tiny_tree_masks(tiny_loco_root: Path) -> None:
    data = load_category(tiny_loco_root, "juice_bottle")
    good, missing, extra, colour, scratch = data.test[0], data.test[3], data.test[4], data.test[5], data.test[6]
    assert not read_mask(good).any() and read_mask(good).shape == (64, 96)
    assert read_mask_channels(good).shape == (0, 64, 96)
    for sample, kind in ((missing, "missing"), (extra, "extra"), (colour, "colour"), (scratch, "scratch")):
        mask = read_mask(sample)
        assert set(np.unique(mask)) == {0, DEFECTS[kind][0]}
        np.testing.assert_array_equal(mask > 0, make_scene(kind, seed=5000 + int(sample.path.stem), size=(64, 96)).mask)
    resized = read_mask(missing, size=(32, 48))
    assert resized.shape == (32, 48) and set(np.unique(resized)) == {0, 255}


def test_multi_file_ground_truth(tmp_path: Path) -> None:
    root = make_loco_tree(tmp_path, n_logical=4, n_structural=0)  # the fourth logical scene is a swap: two parts
    sample = load_category(root, "juice_bottle").test[-1]
    assert len(sample.mask_paths) == 2
    channels = read_mask_channels(sample)
    assert channels.shape == (2, 64, 96)
    assert not np.logical_and(channels[0], channels[1]).any()
    np.testing.assert_array_equal(read_mask(sample), channels.max(axis=0))


# ---------------------------------------------------------------- images


def test_tensor_to_rgb_rounds_clips_and_keeps_the_layout() -> None:
    images = torch.zeros(2, 3, 4, 5)
    images[0, 0] = 1.0  # red
    images[0, 2] = 128 / 255
    images[1, 1] = 2.0  # clipped to 255
    images[1, 2] = -1.0  # clipped to 0
    images[1, 0, 0, 0] = 100.4 / 255  # rounds down
    images[1, 0, 0, 1] = 100.6 / 255  # rounds up
    rgb = tensor_to_rgb(images)
    assert rgb.shape == (2, 4, 5, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    assert (rgb[0] == [255, 0, 128]).all()
    assert (rgb[1, 1:, :] == [0, 255, 0]).all() and rgb[1, 0, 0, 0] == 100 and rgb[1, 0, 1, 0] == 101


def test_read_image_converts_modes(tmp_path: Path) -> None:
    rgb = make_scene(size=(32, 48)).rgb
    grey = rgb[..., 0]
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(np.dstack([rgb, np.full(grey.shape, 7, np.uint8)])).save(tmp_path / "rgba.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(rgb).save(tmp_path / "upper.JPG", quality=95)

    np.testing.assert_array_equal(read_image(tmp_path / "grey.png"), np.dstack([grey] * 3))
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgb)  # alpha dropped, colours kept
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png"), np.dstack([grey] * 3))
    palette = read_image(tmp_path / "palette.png")
    assert palette.shape == (32, 48, 3) and np.abs(palette.astype(int) - rgb).mean() < 20
    assert read_image(tmp_path / "upper.JPG", size=(16, 24)).shape == (16, 24, 3)


def test_truncated_and_bogus_images_name_the_file(tmp_path: Path) -> None:
    Image.fromarray(make_scene(size=(64, 96)).rgb).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_text("not an image")
    for name in ("cut.png", "text.png", "absent.png"):
        with pytest.raises(ImageReadError, match=name) as error:
            read_image(tmp_path / name)
        assert error.value.path == str(tmp_path / name)


def test_decompression_bombs_are_unreadable_images(bomb_png: Path) -> None:
    for read in (read_image, image_size):
        with pytest.raises(ImageReadError, match="too large to decode safely") as error:
            read(bomb_png)
        assert error.value.path == str(bomb_png) and "\n" not in str(error.value)


def test_list_images(tmp_path: Path) -> None:
    for name in ("b.PNG", "a.jpg", "sub/c.tiff", "notes.txt", ".hidden.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.tiff"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["a.jpg", "b.PNG"]
    with pytest.raises(DataError, match="absent"):
        list_images(tmp_path / "absent")


def test_32_bit_images_are_scaled_by_their_range(tmp_path: Path) -> None:
    """Values above 65535 scale from the 32-bit range (they were clipped white); 16-bit values keep the 16-bit scale."""
    ramp = np.linspace(0, 2**31 - 1, 32 * 48).reshape(32, 48).astype(np.int32)
    Image.fromarray(ramp).save(tmp_path / "deep32.tif")
    assert Image.open(tmp_path / "deep32.tif").mode == "I"
    grey = read_image(tmp_path / "deep32.tif")[..., 0].astype(int)
    expected = np.round(ramp / (2**31 - 1) * 255)
    assert np.abs(grey - expected).max() <= 1 and grey.min() == 0 and grey.max() == 255 and 120 < np.median(grey) < 135
    Image.fromarray((ramp // 2**15).astype(np.int32)).save(tmp_path / "sixteen.tif")  # 0 .. 65535 held in 32 bits
    np.testing.assert_array_equal(read_image(tmp_path / "sixteen.tif")[..., 0], np.round(ramp // 2**15 / 257))


@pytest.mark.parametrize("size, problem", [((1, 1), "too small"), ((20000, 1), "too small"), ((8, 64), "too small"),
                                           ((20, 2000), "too elongated")])
def test_tiny_and_elongated_images_are_refused(tmp_path: Path, size: tuple[int, int], problem: str) -> None:
    Image.new("RGB", size, (10, 20, 30)).save(tmp_path / "odd.png")
    with pytest.raises(ImageReadError, match=f"{size[0]}×{size[1]} pixels is {problem}") as error:
        read_image(tmp_path / "odd.png")
    assert error.value.path == str(tmp_path / "odd.png")


def test_flat_images_are_read_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    Image.new("RGB", (64, 48), (90, 90, 90)).save(tmp_path / "flat.png")
    Image.fromarray(make_scene(size=(48, 64)).rgb).save(tmp_path / "scene.png")
    assert read_image(tmp_path / "flat.png").shape == (48, 64, 3)
    read_image(tmp_path / "scene.png")
    assert caplog.messages == [f"image {tmp_path / 'flat.png'} is flat (every pixel the same colour); its score says little"]


def test_listings_skip_result_sets_and_hidden_folders_and_name_dangling_links(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from loco_ad.io import RESULT_MARKER

    for name in ("a.png", "results/images/x_heatmap.png", ".staging/images/y.png", "sub/b.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "results" / RESULT_MARKER).write_text("")
    (tmp_path / "sub" / "gone.png").symlink_to(tmp_path / "nothing.png")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a.png", "sub/b.png"]
    assert f"skipping {tmp_path / 'results'}: a loco_ad result folder, not input" in caplog.messages
    assert f"(dangling links?): {tmp_path / 'sub' / 'gone.png'}" in caplog.text
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(DataError, match="file.png is not a folder"):
        list_images(tmp_path / "file.png")


# ---------------------------------------------------------------- errors and config


def test_layout_errors(tmp_path: Path, tiny_loco_root: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_category(tmp_path / "nowhere", "juice_bottle")
    (tmp_path / "pushpins" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="missing train/good and test"):
        load_category(tmp_path, "pushpins")
    (tiny_loco_root / "juice_bottle" / "test" / "scratches").mkdir()
    with pytest.raises(DataError, match="scratches"):
        load_category(tiny_loco_root, "juice_bottle")


def test_malformed_defects_config(tiny_loco_root: Path) -> None:
    (tiny_loco_root / "juice_bottle" / "defects_config.json").write_text(json.dumps([{"defect_name": "x"}]))
    with pytest.raises(DataError, match="defects_config.json"):
        load_category(tiny_loco_root, "juice_bottle")


def test_anomalous_sample_without_mask(tiny_loco_root: Path) -> None:
    folder = tiny_loco_root / "juice_bottle" / "ground_truth" / "logical_anomalies" / "000"
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    sample = load_category(tiny_loco_root, "juice_bottle").test[3]
    assert sample.label == 1 and sample.mask_paths == ()
    with pytest.raises(DataError, match="no ground-truth mask"):
        read_mask(sample)


def test_mask_of_another_size_than_its_image_names_the_file(tiny_loco_root: Path) -> None:
    sample = load_category(tiny_loco_root, "juice_bottle").test[3]
    assert read_mask(sample, size=(32, 48)).shape == (32, 48)  # resizing to the evaluation size is intended
    Image.new("L", (48, 32)).save(sample.mask_paths[0])  # the file itself half the size of its 96×64 image
    for size in (None, (32, 48)):
        with pytest.raises(DataError, match=f"{sample.mask_paths[0]} is 48×32 pixels but its image is 96×64"):
            read_mask(sample, size=size)


def test_resolve_categories(tiny_loco_root: Path, tmp_path: Path) -> None:
    assert resolve_categories(tiny_loco_root, "all") == ["juice_bottle"]
    assert resolve_categories(tiny_loco_root, " juice_bottle ") == ["juice_bottle"]
    assert resolve_categories(tiny_loco_root, ["juice_bottle"]) == ["juice_bottle"]
    assert resolve_categories(tiny_loco_root, ["all"]) == ["juice_bottle"]
    with pytest.raises(ConfigError, match="'all' alone"):
        resolve_categories(tiny_loco_root, ["juice_bottle", "all"])
    with pytest.raises(ConfigError, match="none given"):
        resolve_categories(tiny_loco_root, [])
    with pytest.raises(DataError, match="bottle not found.*categories there: juice_bottle"):
        resolve_categories(tiny_loco_root, "bottle")
    with pytest.raises(DataError, match="pushpins"):
        resolve_categories(tiny_loco_root, "juice_bottle,pushpins")
    with pytest.raises(DataError, match="does not exist"):
        resolve_categories(tmp_path / "nowhere", "all")
    assert resolve_categories(tiny_loco_root, ["juice_bottle", "juice_bottle,juice_bottle"]) == ["juice_bottle"]
    (tmp_path / "empty" / "notes").mkdir(parents=True)  # a folder outside the layout is no category
    with pytest.raises(DataError, match="no category folder"):
        resolve_categories(tmp_path / "empty", "all")


def test_any_category_name_in_the_layout(tmp_path: Path) -> None:
    """A folder of any name in the layout is a category; "all" lists every one, by name, and nothing else."""
    root = make_loco_tree(tmp_path / "data", category="tire", n_logical=0)
    make_loco_tree(root, category="breakfast_box", n_structural=0)
    (root / "docs").mkdir()
    assert resolve_categories(root, "tire") == ["tire"]
    assert resolve_categories(root, "all") == ["breakfast_box", "tire"]
    data = load_category(root, "tire")
    assert {s.anomaly_type for s in data.test} == {"good", "structural"}


def test_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCO_AD_DATA", raising=False)
    with pytest.raises(DataError, match="LOCO_AD_DATA"):
        data_root(None)
    assert data_root(str(tmp_path)) == tmp_path
    monkeypatch.setenv("LOCO_AD_DATA", str(tmp_path))
    assert data_root(None) == tmp_path
    with pytest.raises(DataError, match="does not exist"):
        data_root(str(tmp_path / "nowhere"))
    (tmp_path / "file").write_text("")
    for check in (data_root, lambda root: resolve_categories(root, "all")):
        with pytest.raises(DataError, match="is a file, not a folder"):
            check(str(tmp_path / "file"))


def test_saturation_scale() -> None:
    # MVTec LOCO categories: pixels of the official release, whatever the size on disk
    assert saturation_scale("juice_bottle", (800, 400), (400, 200)) == pytest.approx(0.25)
    assert saturation_scale("breakfast_box", (1280, 1600), (640, 800)) == pytest.approx(1.0)
    # any other category: pixels of its images as stored
    assert saturation_scale("tire", (150, 200), (300, 400)) == pytest.approx(0.25)


# ---------------------------------------------------------------- reference draw


@pytest.mark.parametrize("seed", DEFAULT_SEEDS)
@pytest.mark.parametrize("k", DEFAULT_SHOTS)
def test_draw_matches_challenge_script(seed: int, k: int) -> None:
    train = [Path(f"train/good/{i:03d}.png") for i in range(40)]
    torch.manual_seed(seed)
    expected = torch.randperm(len(train))[:k].tolist()
    state = torch.get_rng_state()
    assert draw_references(train, k, seed) == [train[i] for i in expected]
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left alone


def test_draw_errors() -> None:
    train = [Path(f"{i}.png") for i in range(3)]
    with pytest.raises(DataError, match="only 3 good"):
        draw_references(train, 4, 0)
    with pytest.raises(ConfigError):
        draw_references(train, 0, 0)
