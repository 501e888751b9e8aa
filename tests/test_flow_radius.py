"""The flow baseline's window follows the bubble size: big flat bubbles are carried whole, not torn."""

from __future__ import annotations

import numpy as np

from bubbles.evaluation import baselines

H = 64


def _disc(k: int) -> np.ndarray:
    """A flat bright disc 22 px across (a third of the height) moving 3 px up and 2 px right per frame."""
    yy, xx = np.mgrid[0:H, 0:H]
    frame = np.full((H, H), 0.1, np.float32)
    frame[np.hypot(yy - 40 + 3 * k, xx - 24 - 2 * k) < 11] = 0.6
    return frame


def test_radius_from_the_calibrated_bubble_size() -> None:
    assert baselines.flow_radius(128) == 8  # uncalibrated: H/16, the synthetic stores' setting
    assert baselines.flow_radius(74, 8.8) == 18  # two diameters, at most H/4
    assert baselines.flow_radius(74, 100.0) == 18 and baselines.flow_radius(128, 1.0) == 8  # within [H/16, H/4]


def test_a_window_of_the_bubbles_size_carries_a_flat_bubble_whole() -> None:
    context = np.stack([_disc(k) for k in range(4)])[None]
    target = np.stack([_disc(k) for k in (4, 5)])
    mse = {
        name: ((forecast[0] - target) ** 2).mean(axis=(1, 2))
        for name, forecast in (("persistence", baselines.persistence(context, 2)),
                               ("small window", baselines.forecast("flow", context, 2)),
                               ("bubble window", baselines.forecast("flow", context, 2, scale=22.0)))
    }
    assert mse["bubble window"][1] < 1e-6  # carried whole two steps on
    assert mse["small window"][1] > 1e-3  # H/16 sees no gradient inside the disc: the second step tears it
    assert mse["bubble window"][1] < mse["persistence"][1]


def test_the_radius_is_measured_on_training_frames() -> None:
    """No calibration (a mask has none): the rule's H/16 window tears the flat disc; the measured radius is the one
    of lowest lead-1 error, and the flow forecast with it carries the disc."""
    triples = np.stack([np.stack([_disc(k), _disc(k + 1), _disc(k + 2)]) for k in range(3)])
    radius, errors = baselines.measure_flow_radius(triples)
    assert set(errors) == {2, 4, 8, 16} and errors[radius] == min(errors.values())
    assert radius >= 8 and errors[radius] < errors[baselines.flow_radius(H)]  # better than the rule of thumb
    context = np.stack([_disc(k) for k in range(4)])[None]
    measured = baselines.forecast("flow", context, 1, flow_radius_px=radius)
    rule = baselines.forecast("flow", context, 1)
    target = _disc(4)
    assert ((measured[0, 0] - target) ** 2).mean() < ((rule[0, 0] - target) ** 2).mean()
