"""The bubble detector against the synthetic truth, Hungarian matching, and the per-lead bubble meter."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from bubbles.data.geometry import PLATE_TOP
from bubbles.data.store import TRUTH_COLUMNS, FrameStore
from bubbles.data.synth import detector_hints, generate_sequence, sample_condition
from bubbles.evaluation.bubbles import BubbleMeter, DetectorConfig, detect, match, match_radius, truth_bubbles
from bubbles.evaluation import metrics

SIZE = 128


def _regime_frames(regime: str, seed: int) -> tuple[np.ndarray, np.ndarray, DetectorConfig]:
    rng = np.random.default_rng(seed)
    cond = sample_condition(rng)
    while cond.regime != regime:
        cond = sample_condition(rng)
    frames, _, table = generate_sequence(cond, 24, SIZE, np.random.SeedSequence(seed))
    return frames.astype(np.float32) / 255.0, table, DetectorConfig().with_store_hints(detector_hints(cond))


def _f1_against_truth(regime: str) -> float:
    meter = BubbleMeter(1)
    for seed in (1, 2):
        frames, table, cfg = _regime_frames(regime, seed)
        for t, frame in enumerate(frames):
            visible, ignore = truth_bubbles(table, t, SIZE, SIZE, cfg)
            meter.add_frame(0, detect(frame, cfg), visible, SIZE, ignore)
    return meter.leads(SIZE)["bubble_f1"][0]


@pytest.mark.parametrize("regime", ["nozzle", "boiling", "mixed"])
def test_detector_finds_the_true_bubbles_of_every_regime(regime: str) -> None:
    f1 = _f1_against_truth(regime)
    print(f"detector F1 against the synthetic truth, {regime}, {SIZE}²: {f1:.3f}")
    assert f1 >= 0.9


def _bright_rendering(table: np.ndarray, frame: int, rng: np.random.Generator) -> np.ndarray:
    """Front-lit bubbles: bright soft-edged discs on a dark, graded, noisy background, from the true bubbles."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    img = 0.15 + 0.1 * rows / SIZE
    for _, _, x, y, r, _, _ in table[table[:, 0] == frame]:
        d = np.hypot(cols - x * SIZE, rows - y * SIZE) / (r * SIZE)
        img = img + 0.5 / (1 + np.exp(np.minimum((d - 1.0) * 6, 50)))
    return img + rng.normal(0, 0.01, img.shape)


def test_auto_polarity_finds_bright_bubbles() -> None:
    """Bright bubbles on a dark background: `auto` picks the bright polarity and finds them."""
    frames, table, _ = _regime_frames("mixed", 1)
    cfg, meter, rng = DetectorConfig(polarity="auto"), BubbleMeter(1), np.random.default_rng(0)
    for t in range(len(frames)):
        visible, ignore = truth_bubbles(table, t, SIZE, SIZE, cfg)
        meter.add_frame(0, detect(_bright_rendering(table, t, rng), cfg), visible, SIZE, ignore)
    f1 = meter.leads(SIZE)["bubble_f1"][0]
    print(f"detector F1 on bright bubbles, polarity auto: {f1:.3f}")
    assert f1 >= 0.9


def test_synth_store_keeps_the_truth_table(tiny_store) -> None:  # type: ignore[no-untyped-def]
    store = FrameStore.open(tiny_store)
    for name, info in store.sequences.items():
        table = store.truth(name)
        assert table is not None and table.shape[1] == len(TRUTH_COLUMNS)
        assert set(np.unique(table[:, 0]).astype(int)) <= set(range(info.frames))
        assert ((table[:, 2:4] >= 0) & (table[:, 2:4] <= 1)).all() and (table[:, 4] > 0).all()
        hints = info.meta.extra["detector"]
        assert hints["roi_top"] < hints["roi_bottom"] == PLATE_TOP


def test_match_is_the_optimal_assignment_within_the_radius() -> None:
    # Greedy nearest-first would pair pred 0 with target 1 (distance 1) and leave pred 1 unmatched.
    pred = np.array([[10.0, 10.0, 4.0], [10.0, 13.5, 4.0]])
    target = np.array([[10.0, 8.0, 4.0], [10.0, 11.0, 4.0], [50.0, 50.0, 4.0]])
    assert sorted(match(pred, target, radius=3.0)) == [(0, 0), (1, 1)]
    assert match(pred, target, radius=0.5) == []
    assert match(pred[:0], target, radius=3.0) == []


def test_meter_scores_identity_as_perfect_and_blur_as_blur() -> None:
    frames, _, cfg = _regime_frames("boiling", 3)
    target = frames[None, :4]
    blurred = np.stack([ndimage.gaussian_filter(f, 3.0) for f in target[0]])[None]
    same, blur = BubbleMeter(4), BubbleMeter(4)
    same.add(target, target, cfg)
    blur.add(blurred, target, cfg)
    s, b = same.leads(SIZE), blur.leads(SIZE)
    assert s["bubble_f1"] == (1.0,) * 4 and s["bubble_count_error"] == (0.0,) * 4
    assert "sharpness" not in s  # a pixel metric (metrics.sharpness_frames), computed once, in the scoring module
    assert metrics.sharpness_frames(blurred[0], target[0]).max() < 0.6
    assert np.mean(b["bubble_f1"]) < 1.0 and min(b["bubble_diameter_error_px"]) > 1.0
    assert match_radius(SIZE) == pytest.approx(0.04 * SIZE)


def test_contradictory_detector_settings_are_one_line() -> None:
    """Before: accepted, and bubble F1 silently became n/a (a detector that can find nothing)."""
    from bubbles.config import trial_config
    from bubbles.errors import UserError
    from bubbles.evaluation.bubbles import sequence_detector

    with pytest.raises(UserError, match="min_diameter 0.4 is larger than max_diameter 0.2"):
        trial_config({"detector": {"min_diameter": 0.4, "max_diameter": 0.2}})
    with pytest.raises(UserError, match="roi_top 0.8 is not above roi_bottom 0.3"):
        trial_config({"detector": {"roi_top": 0.8, "roi_bottom": 0.3}})
    with pytest.raises(UserError, match="min_diameter 0.5 is larger than max_diameter 0.3"):  # against the calibration
        sequence_detector({"detector": {"max_diameter": 0.3}}, {"min_diameter": 0.5})
