"""The detector calibrated to a sequence: big bright bubbles the defaults cannot see are found after calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from bubbles.data.calibrate import calibrate
from bubbles.data.ingest import IngestRequest, ingest
from bubbles.data.store import FrameStore
from bubbles.evaluation.bubbles import BubbleMeter, DetectorConfig, detect, sequence_detector
from cli import main

H = 96


def _big_bright(t: int = 8) -> tuple[np.ndarray, list[np.ndarray]]:
    """Three bright discs of 36-40% of the height (as the pool rendering's largest) rising on a dark field."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:H, 0:H]
    frames, truth = [], []
    for k in range(t):
        img = np.full((H, H), 30.0)
        rows = []
        for cy, cx, d in ((70 - 3 * k, 24, 36), (40 - 2 * k, 70, 38), (80 - k, 72, 34)):
            img[np.hypot(yy - cy, xx - cx) < d / 2] = 150.0
            rows.append((cy, cx, d))
        frames.append(np.clip(img + rng.normal(0, 2, img.shape), 0, 255))
        truth.append(np.array(rows, float))
    return np.rint(frames).astype(np.uint8), truth


def _f1(frames: np.ndarray, truth: list[np.ndarray], cfg: DetectorConfig) -> float:
    meter = BubbleMeter(1)
    for f, rows in zip(frames, truth):
        meter.add_frame(0, detect(f.astype(np.float32) / 255, cfg), rows, H)
    return meter.f1()


def test_calibration_measures_polarity_size_and_finds_what_defaults_miss() -> None:
    frames, truth = _big_bright()
    cal = calibrate(frames)
    assert cal is not None and cal["polarity"] == "bright" and cal["native_height"] == H
    assert 30 <= cal["typical_diameter_px"] <= 42 and cal["max_diameter_px"] >= 38
    assert _f1(frames, truth, DetectorConfig()) < 0.5  # max_diameter 0.25·H = 24 px: these are invisible to it
    calibrated = DetectorConfig().with_store_hints(cal["hints"])
    assert _f1(frames, truth, calibrated) == 1.0
    # In fractions of the height, the same calibration holds at half the size.
    half = frames[:, ::2, ::2]
    meter = BubbleMeter(1)
    for f, rows in zip(half, truth):
        meter.add_frame(0, detect(f.astype(np.float32) / 255, calibrated), rows / 2, H // 2)
    assert meter.f1() >= 0.9  # a disc cut by the bottom edge is lost at 48 px


def test_ingest_records_the_calibration_and_overrides_win(tmp_path: Path) -> None:
    frames, _ = _big_bright()
    np.save(tmp_path / "b.npy", frames)
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "b.npy"), str(tmp_path / "s.zarr")])
    assert result.exit_code == 0 and "detector calibration: b: bright bubbles" in result.output
    extra = FrameStore.open(tmp_path / "s.zarr").sequences["b"].meta.extra
    assert extra["detector"]["polarity"] == "bright" and extra["detector_calibration"]["native_height"] == H
    cfg = sequence_detector(extra, {"polarity": "dark", "max_diameter": 0.5})
    assert cfg.polarity == "dark" and cfg.max_diameter == 0.5 and cfg.min_contrast == extra["detector"]["min_contrast"]


def test_inspect_calibrate_keeps_a_stores_roi_and_its_checksums(tiny_store: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy.zarr"
    shutil.copytree(tiny_store, copy)
    result = CliRunner().invoke(main, ["inspect", str(copy), "--calibrate"])
    assert result.exit_code == 0 and result.output.count("detector calibration:") == len(FrameStore.open(copy).sequences)
    for info in FrameStore.open(copy).sequences.values():
        assert info.meta.extra["detector"]["polarity"] == "dark" and "roi_top" in info.meta.extra["detector"]
    assert "all checksums match" in CliRunner().invoke(main, ["inspect", str(copy), "--verify"]).output
