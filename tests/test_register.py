"""Registration onto the first reference: the estimate, its refusals, and the pipeline that uses it."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from loco_ad.config import apply_overrides, get_preset
from loco_ad.data import read_image
from loco_ad.errors import ConfigError
from loco_ad.pipeline import Pipeline
from loco_ad.stages.register import Registration, unwarp, warp

SAMPLE = Path(__file__).resolve().parents[1] / "loco_ad" / "sample_data" / "juice_bottle"
SIZE = (448, 224)  # the offline preset's working size for the sample's 400×800 images


def _image(name: str = "train/good/000.png") -> np.ndarray:
    return cv2.resize(read_image(SAMPLE / name), SIZE[::-1], interpolation=cv2.INTER_AREA)


def _moved(rgb: np.ndarray, dy: float, dx: float, degrees: float) -> np.ndarray:
    """``rgb`` turned about its centre and shifted, as a product placed a little off."""
    height, width = rgb.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    matrix[:, 2] += (dx, dy)
    return cv2.warpAffine(rgb, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("motion", ["translation", "euclidean"])
def test_a_shifted_image_is_laid_back_onto_the_reference(motion):
    reference = _image()
    degrees = 3.0 if motion == "euclidean" else 0.0
    moved = _moved(reference, dy=9.0, dx=-6.0, degrees=degrees)
    matrix = Registration(motion).fit(reference).transform(moved)
    assert matrix is not None
    assert math.degrees(math.atan2(matrix[1, 0], matrix[0, 0])) == pytest.approx(-degrees, abs=0.3)
    restored = warp(moved, matrix).astype(float)
    inner = (slice(40, -40), slice(30, -30))  # away from the borders the warps uncover
    before = np.abs(moved.astype(float) - reference)[inner].mean()
    after = np.abs(restored - reference)[inner].mean()
    assert after < before / 3


def test_the_reference_itself_and_refused_estimates_are_left_alone():
    reference = _image()
    registration = Registration("euclidean").fit(reference)
    assert registration.transform(reference) is None  # no shift: the image (and its cache entry) stays as it is
    assert registration.transform(np.zeros_like(reference)) is None  # flat: ECC does not converge
    assert registration.transform(reference[:, :112]) is None  # another size
    far = Registration("translation", max_shift=0.01).fit(reference)
    assert far.transform(_moved(reference, dy=9.0, dx=0.0, degrees=0.0)) is None  # 9 px > 1 % of 448 px


def test_unwarp_undoes_warp_and_keeps_labels_integer():
    reference = _image()
    matrix = Registration("euclidean").fit(reference).transform(_moved(reference, 6.0, 4.0, 2.0))
    labels = (np.arange(SIZE[0] * SIZE[1]).reshape(SIZE) // 5000).astype(np.int32)
    back = unwarp(warp(labels.astype(np.float32), matrix), matrix, nearest=True).astype(np.int32)
    inner = (slice(40, -40), slice(30, -30))
    assert (back[inner] == labels[inner]).mean() > 0.95
    unwarped = unwarp(labels, matrix, nearest=True)
    assert unwarped.dtype == np.int32 and set(np.unique(unwarped)) <= set(np.unique(labels))


def test_registration_setting_is_checked():
    assert get_preset("offline").registration.motion == "euclidean"
    assert get_preset("fast").registration.motion == get_preset("paper").registration.motion == "none"
    with pytest.raises(ConfigError, match="motion"):
        apply_overrides(get_preset("offline"), ["registration.motion=affine"])


def _pipeline(motion: str, *overrides: str) -> Pipeline:
    config = apply_overrides(get_preset("offline"), [f"registration.motion={motion}", *overrides])
    return Pipeline(config, progress=False)


def test_registration_lowers_the_score_of_a_moved_good_image_and_maps_stay_in_the_input_frame():
    """Every scorer scores a moved good image lower once it is laid onto the references: those that compare places
    (the descriptors' position block, the thumbnails) and ``imagenet`` too, which matches anywhere but would read
    the warp's filled border as a defect if it scored it (measured, weighted: imagenet counted six times 4.1
    unregistered, 6.2 registered with the border, 3.3 without it; the preset, imagenet counted three times, 6.2 -> 4.0)."""
    references = [_image(f"train/good/{i:03d}.png") for i in range(3)]
    good = _moved(_image("test/good/000.png"), dy=40.0, dx=-30.0, degrees=2.0)
    defective = good.copy()
    defective[330:354, 70:94] = (10, 10, 10)  # a dark square on the lower label, in the input's frame
    assert _pipeline("euclidean").fit(references).predict(good).score < _pipeline("none").fit(references).predict(good).score
    alone = "ensemble.scorers=imagenet"
    assert _pipeline("euclidean", alone).fit(references).predict(good).score < _pipeline("none", alone).fit(references).predict(good).score
    registered = _pipeline("euclidean").fit(references)
    prediction = registered.predict(defective)
    assert prediction.analysis.rgb is not None and np.array_equal(prediction.analysis.rgb, defective)
    assert prediction.map.shape == defective.shape[:2]
    peak = np.unravel_index(np.argmax(prediction.map), prediction.map.shape)
    assert 330 - 14 <= peak[0] <= 354 + 14 and 70 - 14 <= peak[1] <= 94 + 14  # within a patch of the square


def test_an_estimate_that_matches_worse_than_the_unmoved_image_is_refused(monkeypatch):
    reference = _image()
    registration = Registration("euclidean").fit(reference)
    wrong = np.array([[1.0, 0.0, 12.0], [0.0, 1.0, -9.0]], np.float32)  # a converged but wrong estimate, in small-copy pixels
    monkeypatch.setattr(cv2, "findTransformECC", lambda *args: (0.9, wrong.copy()))
    assert registration.transform(reference) is None
    assert registration.transform(_moved(reference, dy=-9.0 * 448 / 160, dx=12.0 * 448 / 160, degrees=0.0)) is not None
