"""MVTec LOCO AD on disk: images, ground-truth masks, defect configs and the k-shot reference draw.

The official layout of one category::

    <root>/<category>/train/good/*.png
    <root>/<category>/validation/good/*.png                       (optional)
    <root>/<category>/test/{good,logical_anomalies,structural_anomalies}/*.png
    <root>/<category>/ground_truth/<type>_anomalies/<image stem>/<defect>.png
    <root>/<category>/defects_config.json                         (optional)

Each ground-truth file holds one defect: its pixels carry the defect's grey
value (``pixel_value`` in ``defects_config.json``), all others are 0.

Any category name is accepted (MVTec 3D-AD's ``tire``, a user's product laid
out the same way); ``validation``, ``defects_config.json`` and either anomaly
folder may be absent. Without ``defects_config.json`` (or for a grey value it
does not list) a defect region saturates at its own area, so sPRO is the plain
per-region overlap (PRO) of MVTec AD.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
from PIL import Image, ImageFile

from loco_ad.errors import ConfigError, DataError, ImageReadError
from loco_ad.io import RESULT_MARKER

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import torch

CATEGORIES: tuple[str, ...] = ("breakfast_box", "juice_bottle", "pushpins", "screw_bag", "splicing_connectors")
# Pixel count (width × height) of the original images of each category; absolute
# sPRO saturation thresholds in defects_config.json are in these pixels.
ORIGINAL_AREAS: dict[str, int] = {
    "breakfast_box": 1600 * 1280,
    "juice_bottle": 800 * 1600,
    "pushpins": 1700 * 1000,
    "screw_bag": 1600 * 1100,
    "splicing_connectors": 1700 * 850,
}
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MIN_IMAGE_SIDE = 16  # pixels: a smaller image holds no patch worth comparing
MAX_ASPECT_RATIO = 20.0  # longer side over shorter side: beyond it the square working resolution is mostly stretch
DEFAULT_SEEDS: tuple[int, ...] = (42, 0, 1234)
DEFAULT_SHOTS: tuple[int, ...] = (1, 2, 4, 8)
DATA_ENV = "LOCO_AD_DATA"
# A few juice_bottle images of MVTec LOCO AD shipped with the package (CC BY-NC-SA 4.0,
# see its README.md): the data root the CLIs use when none is given.
SAMPLE_ROOT = Path(__file__).resolve().parent / "sample_data"

AnomalyType = Literal["good", "logical", "structural"]
# test sub-folder -> anomaly type
TEST_FOLDERS: dict[str, AnomalyType] = {
    "good": "good",
    "logical_anomalies": "logical",
    "structural_anomalies": "structural",
}


@dataclass(frozen=True)
class Sample:
    """One test image.

    Arguments:
      path: the image file.
      label: 0 for a good image, 1 for an anomalous one.
      anomaly_type: ``"good"``, ``"logical"`` or ``"structural"``.
      mask_paths: its ground-truth files, one per defect, sorted; empty for good
        images (and for anomalous images whose ground truth is missing).
    """

    path: Path
    label: int
    anomaly_type: AnomalyType
    mask_paths: tuple[Path, ...] = ()


@dataclass(frozen=True)
class DefectConfig:
    """One entry of a category's ``defects_config.json``.

    Arguments:
      name: the defect type, e.g. ``missing_top_label``.
      pixel_value: the grey value of this defect's pixels in the ground-truth files.
      saturation_threshold: sPRO saturation, in pixels of the original image when
        ``relative_saturation`` is false, else a fraction of the defect's area.
      relative_saturation: how to read ``saturation_threshold``.
    """

    name: str
    pixel_value: int
    saturation_threshold: float
    relative_saturation: bool


@dataclass(frozen=True)
class CategoryData:
    """The files of one category.

    Arguments:
      name: the category, e.g. ``juice_bottle``.
      root: the category folder.
      train: ``train/good`` images, sorted (the pool the references are drawn from).
      validation: ``validation/good`` images, sorted (empty when absent).
      test: test samples, good first, then logical, then structural, each sorted.
      defects: the defect types of ``defects_config.json`` (empty when absent).
    """

    name: str
    root: Path
    train: list[Path]
    validation: list[Path]
    test: list[Sample]
    defects: list[DefectConfig]


def read_image(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image as RGB, converting whatever mode it is stored in.

    Grey and palette images are expanded to RGB; an alpha channel is dropped
    (the colour channels are kept as stored, not composited); 16-bit grey images
    are scaled from [0, 65535] to [0, 255], 32-bit integer ones too unless a
    value exceeds 65535, then from [0, 2**31 - 1] (the range of Pillow's
    32-bit mode); float images are clipped to [0, 255]. An image smaller than
    ``MIN_IMAGE_SIDE`` pixels a side or more elongated than ``MAX_ASPECT_RATIO``
    is refused; a flat one (every pixel the same colour) is read with a warning.

    Arguments:
      path: the image file.
      size: (height, width) to resize to with Pillow's bilinear filter, which
        antialiases when shrinking (area-like averaging); ``None`` keeps the size.
    Returns:
      H×W×3 uint8 array.
    Raises:
      ImageReadError: the file is missing, truncated, not an image, larger
        than Pillow's decompression-bomb limit (``2 * Image.MAX_IMAGE_PIXELS``,
        about 179 million pixels), too small or too elongated.
    """
    image = _open(path)
    _check_shape(path, image.width, image.height)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        grey = np.asarray(image, dtype=np.float64)
        full_scale = 65535.0 if grey.max(initial=0) <= 65535 else 2.0**31 - 1
        image = Image.fromarray(np.clip(np.round(grey * (255.0 / full_scale)), 0, 255).astype(np.uint8))
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8))
    image = image.convert("RGB")
    if image.getextrema() and all(low == high for low, high in image.getextrema()):
        logger.warning("image %s is flat (every pixel the same colour); its score says little", path)
    if size is not None:
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8).copy()


def _check_shape(path: str | Path, width: int, height: int) -> None:
    """``ImageReadError`` for an image too small or too elongated to analyse."""
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ImageReadError(path, f"{width}×{height} pixels is too small; an image needs {MIN_IMAGE_SIDE} pixels a side")
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ImageReadError(path, f"{width}×{height} pixels is too elongated (more than {MAX_ASPECT_RATIO:g}:1)")


def tensor_to_rgb(images: torch.Tensor) -> np.ndarray:
    """Float image tensors in [0, 1] (as torchvision and anomalib pass them) as the uint8 arrays the pipeline takes.

    The conversion runs on the tensors' device; only the uint8 result is copied
    to host memory, in one transfer for the whole batch.

    Arguments:
      images: B×3×H×W ``torch.Tensor``, values in [0, 1] (clipped otherwise), on any device.
    Returns:
      B×H×W×3 uint8 array, ``round(255 × value)`` (round half to even).
    """
    import torch  # imported here: the rest of the data layer does not need it

    scaled = images.detach().to(torch.float32).clamp(0, 1).mul(255).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def _open(path: str | Path) -> Image.Image:
    """Open and fully decode an image, refusing truncated files."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except FileNotFoundError:
        raise ImageReadError(path, "no such file") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageReadError(path, _reason(error)) from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _reason(error: Exception) -> str:
    """Why Pillow could not read an image, in one line."""
    if isinstance(error, Image.DecompressionBombError):
        return f"too large to decode safely ({error})"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _read_grey(path: Path, size: tuple[int, int] | None, image_shape: tuple[int, int]) -> np.ndarray:
    """A ground-truth file as H×W uint8 grey values (nearest-neighbour resize); ``DataError`` unless it is ``image_shape``."""
    image = _open(path)
    if (image.height, image.width) != image_shape:
        raise DataError(
            f"ground-truth mask {path} is {image.width}×{image.height} pixels but its image is "
            f"{image_shape[1]}×{image_shape[0]}; a mask must have the size of its image"
        )
    if image.mode not in ("L", "P"):
        image = image.convert("L")
    if size is not None:
        image = image.resize((size[1], size[0]), Image.Resampling.NEAREST)
    return np.asarray(image, dtype=np.uint8).copy()


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image file, read from its header."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageReadError(path, _reason(error)) from None


def read_mask_channels(sample: Sample, size: tuple[int, int] | None = None) -> np.ndarray:
    """The ground truth of a sample, one channel per defect file (as the official evaluation reads it).

    Arguments:
      sample: the test sample.
      size: (height, width) to resize to (nearest neighbour, grey values kept);
        ``None`` keeps the size of the files.
    Returns:
      C×H×W uint8 array of grey values, C = number of defect files (0 for good images).
    Raises:
      DataError: the sample is anomalous but has no ground-truth files, or a
        file's size differs from its image's (read from the image's header).
    """
    if sample.label and not sample.mask_paths:
        raise DataError(
            f"no ground-truth mask for {sample.path}; pixel metrics need "
            f"ground_truth/{sample.anomaly_type}_anomalies/{sample.path.stem}/*.png"
        )
    shape = image_size(sample.path)
    if not sample.mask_paths:
        return np.zeros((0, *(size or shape)), np.uint8)
    return np.stack([_read_grey(path, size, shape) for path in sample.mask_paths])


def read_mask(sample: Sample, size: tuple[int, int] | None = None) -> np.ndarray:
    """The union of a sample's ground-truth files, keeping grey values.

    Where defects overlap the larger grey value wins.

    Arguments:
      sample: the test sample.
      size: (height, width) to resize to (nearest neighbour); ``None`` keeps the size.
    Returns:
      H×W uint8 array, all zeros for a good image.
    """
    return read_mask_channels(sample, size).max(axis=0, initial=0)


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """The image files in a folder, sorted; hidden files and folders, and loco_ad result sets, are skipped.

    A folder holding ``io.RESULT_MARKER`` is a result set a command wrote
    (overlay PNGs), never input: it is skipped with a warning. Paths with an
    image suffix that are not readable files (a dangling symbolic link, a
    folder named ``x.png``) are skipped with a warning naming them.

    Arguments:
      folder: the folder to list.
      recursive: also list sub-folders.
    Returns:
      the paths whose suffix is in ``IMAGE_SUFFIXES`` (any case).
    Raises:
      DataError: the folder does not exist or is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        state = "is not a folder" if folder.exists() else "does not exist"
        raise DataError(f"image folder {folder} {state}; check the path")
    files: list[Path] = []
    skipped: list[Path] = []
    for current, subfolders, names in os.walk(folder):  # links to folders are not followed, as rglob did
        here = Path(current)
        if (here / RESULT_MARKER).is_file():
            logger.warning("skipping %s: a loco_ad result folder, not input", here)
            subfolders.clear()
            continue
        candidates = [here / name for name in names + subfolders
                      if Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith(".")]
        subfolders[:] = [name for name in subfolders if not name.startswith(".")] if recursive else []
        files += [path for path in candidates if path.is_file()]
        skipped += [path for path in candidates if not path.is_file()]
    if skipped:
        shown = ", ".join(str(path) for path in sorted(skipped)[:5]) + (", ..." if len(skipped) > 5 else "")
        logger.warning("skipped %d image path(s) in %s that are not readable files (dangling links?): %s",
                       len(skipped), folder, shown)
    return sorted(files)


def data_root(arg: str | Path | None) -> Path:
    """The MVTec LOCO root: ``arg`` if given, else the environment variable ``LOCO_AD_DATA``.

    Raises:
      DataError: neither is set, or it is not a folder.
    """
    value = arg if arg is not None else os.environ.get(DATA_ENV)
    if not value:
        raise DataError(f"no data root given; pass the MVTec LOCO folder or set {DATA_ENV}")
    root = Path(value).expanduser()
    _check_root(root)
    return root


def _check_root(root: Path) -> None:
    """``DataError`` unless ``root`` is a folder, saying whether it is missing or a file."""
    if not root.is_dir():
        state = "is a file, not a folder" if root.exists() else "does not exist"
        raise DataError(f"data root {root} {state}; pass the folder that holds the MVTec LOCO categories")


def category_folders(root: str | Path) -> list[str]:
    """The folders under ``root`` in the MVTec LOCO layout (holding ``train/good`` and ``test``), sorted by name."""
    return sorted(d.name for d in Path(root).iterdir() if (d / "train" / "good").is_dir() and (d / "test").is_dir())


def resolve_categories(root: str | Path, spec: str | Sequence[str]) -> list[str]:
    """The categories to evaluate.

    A category is any folder under ``root`` in the MVTec LOCO layout, whatever
    its name: the five MVTec LOCO categories, MVTec 3D-AD's ``tire`` laid out
    the same way, or a user's product.

    Arguments:
      root: the data root.
      spec: category names as a comma-separated string or a sequence of such
        strings (as a CLI's ``--category a b,c`` gives), or ``"all"`` alone: every
        folder under ``root`` in the layout (``category_folders``), by name. On an
        MVTec LOCO root these are its five categories in ``CATEGORIES`` order.
    Returns:
      category names, in the order first given, each once.
    Raises:
      ConfigError: no name is given, or ``"all"`` is mixed with names.
      DataError: ``root`` or a named category folder is missing, or ``"all"`` finds none.
    """
    root = Path(root)
    _check_root(root)
    items = [spec] if isinstance(spec, str) else list(spec)
    names = list(dict.fromkeys(n.strip() for item in items for n in item.split(",") if n.strip()))
    if names == ["all"]:
        present = category_folders(root)
        if not present:
            raise DataError(f"no category folder under {root}; a category holds train/good and test (the MVTec LOCO layout)")
        return present
    if not names or "all" in names:
        raise ConfigError(f"--category takes category folder names or 'all' alone, got {', '.join(names) or '(none given)'}")
    missing = [n for n in names if not (root / n).is_dir()]
    if missing:
        present = ", ".join(category_folders(root)) or "none"
        raise DataError(f"category folder(s) {', '.join(missing)} not found under {root} (categories there: {present})")
    return names


def load_category(root: str | Path, category: str) -> CategoryData:
    """List the files of one category in the official MVTec LOCO layout.

    Arguments:
      root: the data root (holding one folder per category).
      category: the category folder name.
    Returns:
      the ``CategoryData``.
    Raises:
      DataError: the folder is missing, is not in the layout (no ``train/good``
        images or no ``test`` folder), has an unexpected ``test`` sub-folder, or
        its ``defects_config.json`` is malformed.
    """
    folder = Path(root) / category
    if not folder.is_dir():
        raise DataError(f"category folder {folder} does not exist; check the data root and category name")
    missing = [name for name in ("train/good", "test") if not (folder / name).is_dir()]
    if missing:
        raise DataError(f"{folder} is not in the MVTec LOCO layout: missing {' and '.join(missing)}")
    train = list_images(folder / "train" / "good")
    if not train:
        raise DataError(f"{folder / 'train' / 'good'} holds no images")
    validation = list_images(folder / "validation" / "good") if (folder / "validation" / "good").is_dir() else []
    return CategoryData(
        name=category,
        root=folder,
        train=train,
        validation=validation,
        test=_test_samples(folder),
        defects=_read_defects(folder / "defects_config.json"),
    )


def _test_samples(folder: Path) -> list[Sample]:
    """The test samples of a category folder with their ground-truth files."""
    unexpected = sorted(d.name for d in (folder / "test").iterdir() if d.is_dir() and d.name not in TEST_FOLDERS)
    if unexpected:
        raise DataError(
            f"unexpected folder(s) {', '.join(unexpected)} in {folder / 'test'}; expected {', '.join(TEST_FOLDERS)}"
        )
    samples: list[Sample] = []
    for sub, anomaly_type in TEST_FOLDERS.items():
        if not (folder / "test" / sub).is_dir():
            continue
        for path in list_images(folder / "test" / sub, recursive=False):
            gt = folder / "ground_truth" / sub / path.stem
            masks = tuple(list_images(gt, recursive=False)) if anomaly_type != "good" and gt.is_dir() else ()
            samples.append(Sample(path, int(anomaly_type != "good"), anomaly_type, masks))
    if not samples:
        raise DataError(f"{folder / 'test'} holds no images in {', '.join(TEST_FOLDERS)}")
    return samples


def _read_defects(path: Path) -> list[DefectConfig]:
    """Parse a ``defects_config.json``; an absent file gives no defects."""
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text())
        return [
            DefectConfig(
                name=str(e["defect_name"]),
                pixel_value=int(e["pixel_value"]),
                saturation_threshold=float(e["saturation_threshold"]),
                relative_saturation=bool(e["relative_saturation"]),
            )
            for e in entries
        ]
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(f"malformed {path}: {error!r}; expected a list of defect entries") from None


def saturation_scale(category: str, size: tuple[int, int], stored_size: tuple[int, int]) -> float:
    """Factor from the original image's pixels to pixels at ``size``, for absolute sPRO saturations.

    Absolute saturation thresholds in ``defects_config.json`` are in pixels of
    the original images: for a MVTec LOCO category those of the official release
    (``ORIGINAL_AREAS``, so a downscaled copy keeps the official thresholds); for
    any other category, those of its images as stored.

    Arguments:
      category: the category name.
      size: (height, width) at which masks and maps are evaluated.
      stored_size: (height, width) of the category's images on disk.
    Returns:
      ``height * width / original area``.
    """
    original = ORIGINAL_AREAS.get(category, stored_size[0] * stored_size[1])
    return size[0] * size[1] / original


def draw_references(train: Sequence[Path], k: int, seed: int) -> list[Path]:
    """Draw k reference images exactly as the VAND 2025 challenge script does.

    The challenge seeds torch with ``seed`` and takes ``torch.randperm(n)[:k]``
    over the ``train/good`` images sorted by path; a private generator seeded the
    same way gives the same permutation without touching torch's global state.

    Arguments:
      train: the good images in sorted order (``CategoryData.train``).
      k: number of references.
      seed: the protocol seed (42, 0 or 1234 in the challenge).
    Returns:
      the k paths in permutation order.
    Raises:
      ConfigError: ``k`` is smaller than 1.
      DataError: ``k`` exceeds the number of good images.
    """
    import torch  # imported here: the rest of the data layer does not need it

    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    if k > len(train):
        raise DataError(f"cannot draw {k} references: there are only {len(train)} good training images; use a smaller k")
    generator = torch.Generator().manual_seed(seed)
    return [train[i] for i in torch.randperm(len(train), generator=generator)[:k].tolist()]
