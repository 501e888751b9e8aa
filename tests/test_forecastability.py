"""Forecastability figures on synthetic sequences of known correlation (a per-pixel AR(1) process)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bubbles.data.forecastability import measure
from bubbles.data.store import SequenceMeta, write_sequence
from cli import main


def _ar1(rho: float, t: int = 3000, size: int = 16, seed: int = 0) -> np.ndarray:
    """Frames whose anomalies follow x[t+1] = rho x[t] + sqrt(1 - rho^2) e: anomaly correlation rho^lag."""
    rng = np.random.default_rng(seed)
    x = np.empty((t, size, size))
    x[0] = rng.normal(size=(size, size))
    for k in range(1, t):
        x[k] = rho * x[k - 1] + math.sqrt(1 - rho**2) * rng.normal(size=(size, size))
    return 128 + 20 * x


@pytest.mark.parametrize("rho", [0.9, 0.3])
def test_anomaly_correlation_and_persistence_ratio_match_the_process(rho: float) -> None:
    f = measure(_ar1(rho), "ar1")
    for lag, value in enumerate(f.correlation, start=1):
        assert value == pytest.approx(rho**lag, abs=0.03)
    assert f.persistence_ratio == pytest.approx(2 * (1 - rho), rel=0.05)  # persistence vs the mean frame
    assert f.hard == (rho < 0.5)  # the mean frame beats persistence below AC 0.5


def test_frame_step_spacing_and_the_smallest_step_with_motion() -> None:
    frames = _ar1(0.95)
    one, four = measure(frames, "ar1", 1), measure(frames, "ar1", 4)
    assert four.frames == 750 and four.correlation[0] == pytest.approx(0.95**4, abs=0.03)
    # persistence's error 2(1 - 0.95^k) reaches half the mean frame's at k = 6
    assert one.motion_step == four.motion_step == 6
    assert one.static and not four.static
    assert "frames carry motion from frame_step 6" in " ".join(one.lines())
    assert one.changed < four.changed  # frames further apart differ in more pixels


def test_mask_changed_share_counts_flipped_pixels() -> None:
    masks = np.zeros((10, 16, 16), np.float32)
    for t in range(10):
        masks[t, 4:8, t : t + 4] = 255  # a 4x4 bubble moving one pixel a frame: 8 of 256 pixels flip
    assert measure(masks, "m", mask=True).changed == pytest.approx(8 / 256)


def test_inspect_prints_forecastability_and_warns(tmp_path: Path) -> None:
    noise = np.clip(_ar1(0.05, t=60, size=24), 0, 255).astype(np.uint8)
    write_sequence(tmp_path / "s.zarr", "noise", noise, SequenceMeta(source="test"))
    result = CliRunner().invoke(main, ["inspect", str(tmp_path / "s.zarr"), "--frame-step", "2"])
    assert result.exit_code == 0, result.output
    assert "forecastability of noise at frame_step 2 (30 frames)" in result.output
    assert "the mean frame will be hard to beat at frame_step 2" in result.output
