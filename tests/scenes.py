"""Synthetic inspection scenes with known parts, for tests.

A light tray on a dark background carries three coloured parts: a red disc,
a blue square and a yellow disc. ``make_scene`` draws a good scene or one with
a known anomaly and returns the true segment partition and class ids, so tests
can check each stage and scorer against ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BACKGROUND = (25, 25, 30)
TRAY = (200, 190, 170)
RED = (200, 40, 40)
BLUE = (40, 60, 200)
YELLOW = (220, 200, 40)
GREEN = (40, 170, 60)

# class id -> (colour, shape); class 1 is the tray
PARTS = {2: (RED, "disc"), 3: (BLUE, "square"), 4: (YELLOW, "disc")}
# default centres (fractions of height, width) of the parts on the tray
CENTRES = {2: (0.38, 0.3), 3: (0.38, 0.5), 4: (0.38, 0.7)}

ANOMALIES = ("missing", "extra", "colour", "swap", "moved", "scratch")
LOGICAL = ("missing", "extra", "colour", "swap", "moved")


@dataclass(frozen=True)
class Scene:
    """A drawn scene.

    Arguments:
      rgb: H×W×3 uint8 image.
      segment_map: H×W int32, 0 = background, one id per drawn object (tray first).
      class_map: H×W int32 true class id per pixel (0 background, 1 tray, 2..4 parts).
      anomaly: ``"good"`` or one of ``ANOMALIES``.
      mask: H×W bool, the anomalous pixels (empty for good scenes).
    """

    rgb: np.ndarray
    segment_map: np.ndarray
    class_map: np.ndarray
    anomaly: str
    mask: np.ndarray


def _shape_mask(shape: str, centre: tuple[float, float], radius: float, height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    cy, cx = centre
    if shape == "disc":
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return (np.abs(yy - cy) <= radius) & (np.abs(xx - cx) <= radius)


def make_scene(
    anomaly: str = "good",
    seed: int = 0,
    size: tuple[int, int] = (128, 192),
    shift: tuple[int, int] = (0, 0),
    noise: float = 4.0,
) -> Scene:
    """Draw a scene.

    Arguments:
      anomaly: ``"good"`` or one of ``ANOMALIES``.
      seed: varies the jitter of part positions (±2 px) and the pixel noise.
      size: (height, width) in pixels.
      shift: (dy, dx) pixels by which the whole object is moved.
      noise: standard deviation of the Gaussian pixel noise.
    Returns:
      the ``Scene``.
    """
    if anomaly != "good" and anomaly not in ANOMALIES:
        raise ValueError(f"unknown anomaly {anomaly!r}")
    rng = np.random.default_rng(seed)
    height, width = size
    dy, dx = shift
    rgb = np.empty((height, width, 3), np.float32)
    rgb[:] = BACKGROUND
    segment_map = np.zeros((height, width), np.int32)
    class_map = np.zeros((height, width), np.int32)
    anomalous = np.zeros((height, width), bool)

    tray = np.zeros((height, width), bool)
    tray[int(0.12 * height) + dy : int(0.88 * height) + dy, int(0.15 * width) + dx : int(0.85 * width) + dx] = True
    rgb[tray] = TRAY
    segment_map[tray] = 1
    class_map[tray] = 1

    radius = 0.12 * height
    centres = {c: (fy * height + dy + rng.integers(-2, 3), fx * width + dx + rng.integers(-2, 3)) for c, (fy, fx) in CENTRES.items()}
    colours = {c: colour for c, (colour, _) in PARTS.items()}
    placed: list[tuple[int, tuple[float, float]]] = [(c, centres[c]) for c in PARTS]
    if anomaly == "missing":
        placed = [p for p in placed if p[0] != 3]
        anomalous |= _shape_mask("square", centres[3], radius, height, width)
    elif anomaly == "extra":
        placed.append((2, (0.7 * height + dy, 0.4 * width + dx)))
    elif anomaly == "colour":
        colours[2] = GREEN
    elif anomaly == "swap":
        placed = [(2, centres[3]), (3, centres[2]), (4, centres[4])]
    elif anomaly == "moved":
        placed = [(c, (p[0] + 0.32 * height, p[1]) if c == 4 else p) for c, p in placed]
        anomalous |= _shape_mask("disc", centres[4], radius, height, width)

    for segment_id, (cls, centre) in enumerate(placed, start=2):
        mask = _shape_mask(PARTS[cls][1], centre, radius, height, width)
        rgb[mask] = colours[cls]
        segment_map[mask] = segment_id
        class_map[mask] = cls
        if anomaly in ("extra", "swap", "moved", "colour") and (
            (anomaly == "extra" and segment_id == len(placed) + 1)
            or (anomaly == "swap" and cls in (2, 3))
            or (anomaly == "moved" and cls == 4)
            or (anomaly == "colour" and cls == 2)
        ):
            anomalous |= mask

    if anomaly == "scratch":
        yy, xx = np.mgrid[:height, :width]
        line = (np.abs((yy - (0.55 * height + dy)) - 0.25 * (xx - (0.2 * width + dx))) <= 1.0) & tray
        line &= (xx > 0.2 * width + dx) & (xx < 0.45 * width + dx)
        rgb[line] = (60, 50, 45)
        anomalous |= line

    rgb += rng.normal(0.0, noise, rgb.shape)
    return Scene(np.clip(rgb, 0, 255).astype(np.uint8), segment_map, class_map, anomaly, anomalous)
