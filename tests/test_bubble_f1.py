"""Bubble F1 conventions: matches summed over frames, empty targets scored for false alarms only, blur scores 0."""

from __future__ import annotations

import math

import numpy as np

from bubbles.evaluation.bubbles import BubbleMeter

H = 64
NONE = np.zeros((0, 3))


def _rows(*centres: tuple[float, float]) -> np.ndarray:
    return np.array([[y, x, 6.0] for y, x in centres]).reshape(-1, 3)


def test_f1_is_pooled_from_summed_matches_not_averaged_per_frame() -> None:
    meter = BubbleMeter(1)
    meter.add_frame(0, _rows((10, 10)), _rows((10, 10)), H)  # tp 1
    meter.add_frame(0, _rows((30, 30), (50, 50)), _rows((30, 31), (5, 60), (60, 5)), H)  # tp 1, fp 1, fn 2
    lead = meter.leads(H)
    # Summed: tp 2, fp 1, fn 2 -> P 2/3, R 1/2, F1 4/7 (a mean of per-frame F1s would give (1 + 0.4) / 2 = 0.7).
    assert math.isclose(lead["bubble_precision"][0], 2 / 3) and math.isclose(lead["bubble_recall"][0], 0.5)
    assert math.isclose(lead["bubble_f1"][0], 4 / 7) and math.isclose(meter.f1(), 4 / 7)


def test_a_forecast_without_bubbles_scores_zero_where_the_target_has_bubbles() -> None:
    blur = BubbleMeter(2)
    for lead in range(2):
        blur.add_frame(lead, NONE, _rows((20, 20), (40, 40)), H)
    out = blur.leads(H)
    assert out["bubble_precision"] == (0.0, 0.0) and out["bubble_recall"] == (0.0, 0.0) and out["bubble_f1"] == (0.0, 0.0)
    assert blur.f1() == 0.0


def test_frames_without_target_bubbles_count_only_their_false_alarms() -> None:
    quiet = BubbleMeter(1)
    quiet.add_frame(0, NONE, NONE, H)  # nothing in either: no credit, no penalty
    quiet.add_frame(0, _rows((20, 20)), _rows((20, 20)), H)
    assert quiet.leads(H)["bubble_f1"] == (1.0,)
    alarm = BubbleMeter(1)
    alarm.add_frame(0, _rows((5, 5)), NONE, H)  # a bubble where there is none: a false alarm
    alarm.add_frame(0, _rows((20, 20)), _rows((20, 20)), H)
    assert math.isclose(alarm.leads(H)["bubble_f1"][0], 2 / 3) and math.isclose(alarm.leads(H)["bubble_precision"][0], 0.5)
    empty = BubbleMeter(1)
    empty.add_frame(0, NONE, NONE, H)  # a set with no bubble anywhere has no F1 (not 1, as it once had)
    out = empty.leads(H)
    assert math.isnan(out["bubble_f1"][0]) and math.isnan(out["bubble_precision"][0]) and math.isnan(empty.f1())
