"""A tiny MVTec LOCO tree of synthetic scenes (``tests/scenes.py``), for data, pipeline and CLI tests.

Good images are good scenes; logical anomalies cycle through the scene's
logical kinds (missing, extra, colour, swap, moved); structural ones are
scratches. Each connected part of an anomaly's mask is written as its own
ground-truth file holding the kind's grey value, as in the official layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from tests.scenes import LOGICAL, make_scene

# kind -> (grey value, saturation threshold, relative?)
DEFECTS: dict[str, tuple[int, float, bool]] = {
    "missing": (255, 200, False),
    "extra": (254, 1.0, True),
    "colour": (253, 0.5, True),
    "swap": (252, 1.0, True),
    "moved": (251, 150, False),
    "scratch": (250, 1.0, True),
}


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_loco_tree(
    root: str | Path,
    category: str = "juice_bottle",
    n_train: int = 6,
    n_good: int = 3,
    n_logical: int = 3,
    n_structural: int = 2,
    size: tuple[int, int] = (64, 96),
    n_validation: int = 2,
) -> Path:
    """Write a tiny MVTec LOCO category.

    Arguments:
      root: the data root to create (``root/category/...``).
      category: the category folder name.
      n_train: good images in ``train/good``.
      n_good: good images in ``test/good``.
      n_logical: images in ``test/logical_anomalies`` (none written when 0).
      n_structural: images in ``test/structural_anomalies`` (none written when 0).
      size: (height, width) of every image.
      n_validation: good images in ``validation/good``.
    Returns:
      ``root``.
    """
    root = Path(root)
    folder = root / category
    splits = {"train/good": n_train, "validation/good": n_validation, "test/good": n_good}
    for offset, (split, count) in enumerate(splits.items()):
        for i in range(count):
            _write(folder / split / f"{i:03d}.png", make_scene("good", seed=1000 * offset + i, size=size).rgb)
    kinds = {"logical": [LOGICAL[i % len(LOGICAL)] for i in range(n_logical)], "structural": ["scratch"] * n_structural}
    for anomaly_type, names in kinds.items():
        for i, kind in enumerate(names):
            scene = make_scene(kind, seed=5000 + i, size=size)
            _write(folder / "test" / f"{anomaly_type}_anomalies" / f"{i:03d}.png", scene.rgb)
            parts, n_parts = ndimage.label(scene.mask)
            for part in range(1, n_parts + 1):
                grey = np.where(parts == part, DEFECTS[kind][0], 0).astype(np.uint8)
                _write(folder / "ground_truth" / f"{anomaly_type}_anomalies" / f"{i:03d}" / f"{part - 1:03d}.png", grey)
    config = [
        {"defect_name": kind, "pixel_value": value, "saturation_threshold": threshold, "relative_saturation": relative}
        for kind, (value, threshold, relative) in DEFECTS.items()
    ]
    (folder / "defects_config.json").write_text(json.dumps(config, indent=2))
    return root
