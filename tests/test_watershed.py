"""The mask detector: connected components of vapour, touching bubbles split by watershed, elongated and tilted
shapes kept whole."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.transform import rotate

from bubbles.evaluation.bubbles import DetectorConfig, detect

MASK = DetectorConfig(mask=True, polarity="bright", max_diameter=1.0, roundness=0.0)
YY, XX = np.mgrid[:64, :64]


def _disc(cy: float, cx: float, r: float) -> np.ndarray:
    return (YY - cy) ** 2 + (XX - cx) ** 2 <= r * r


@pytest.mark.parametrize("gap", [17, 19, 22])  # centres 17-22 px apart, radius 10: overlapping to just touching
def test_two_touching_discs_are_two_bubbles(gap: int) -> None:
    frame = (_disc(32, 20, 10) | _disc(32, 20 + gap, 10)).astype(float)
    found = detect(frame, MASK)
    assert len(found) == 2
    cols = sorted(found[:, 1])
    assert cols[0] == pytest.approx(20, abs=1.5) and cols[1] == pytest.approx(20 + gap, abs=1.5)
    assert all(16 <= d <= 22 for d in found[:, 2])  # each about its disc's 20 px, not the merged mass's


@pytest.mark.parametrize("angle", [0, 15, 30, 45, 60])
def test_elongated_tilted_shape_stays_one(angle: int) -> None:
    ellipse = ((YY - 32) / 25) ** 2 + ((XX - 32) / 6) ** 2 <= 1
    frame = rotate(ellipse.astype(float), angle, order=0) > 0.5
    found = detect(frame.astype(float), MASK)
    assert len(found) == 1 and found[0, 2] == pytest.approx(2 * np.sqrt(25 * 6), rel=0.1)


def test_mask_components_need_no_contrast_and_skip_specks() -> None:
    frame = np.zeros((64, 64))
    frame[_disc(15, 15, 6)] = 1.0
    frame[_disc(45, 45, 8)] = 1.0
    frame[2, 60] = 1.0  # a one-pixel speck: below min_diameter_px
    found = detect(frame, MASK)
    assert len(found) == 2
    assert detect(np.zeros((64, 64)), MASK).shape == (0, 3)


def test_grey_detector_separates_two_touching_discs() -> None:
    """A camera frame (dark bubbles on a light field, no mask): two touching discs are two bubbles."""
    frame = np.full((64, 64), 0.8)
    frame[_disc(32, 22, 9) | _disc(32, 39, 9)] = 0.2
    found = detect(frame, DetectorConfig(polarity="dark", background_radius=0.3, max_diameter=0.5))
    assert len(found) == 2 and all(15 <= d <= 20 for d in found[:, 2])
