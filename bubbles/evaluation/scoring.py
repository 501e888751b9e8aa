"""The one scoring module: forecasts against target frames, per frame and per lead; skill against the baselines.

Validation, the end-of-trial evaluation, `predict`, the study's yardstick (the per-epoch objective, the trial-end
score and the test-split pass) and the report's numbers all come from here, so a number means the same wherever it
stands. The conventions of each metric are in bubbles.evaluation.metrics (pixels) and bubbles.evaluation.bubbles
(bubble F1); skill has one floor, metrics.PSNR_MSE_FLOOR.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bubbles.evaluation import metrics
from bubbles.evaluation.bubbles import BubbleMeter, DetectorConfig

PIXEL_METRICS = ("ssim", "psnr", "mse", "mae", "sharpness", "iou", "vapour_fraction_error")
MASK_METRICS = ("iou", "vapour_fraction_error")  # meaningful on masks (segmented recordings); computed for all


@dataclass(frozen=True)
class LeadMetrics:
    """Mean over windows of each metric, one value per lead time 1..M (sharpness: empty in evaluations written
    before it existed)."""

    ssim: tuple[float, ...]
    psnr: tuple[float, ...]
    mse: tuple[float, ...]
    mae: tuple[float, ...]
    sharpness: tuple[float, ...] = ()
    iou: tuple[float, ...] = ()  # mask metrics (bubbles.evaluation.metrics); empty in evaluations written before
    vapour_fraction_error: tuple[float, ...] = ()

    def mean(self, name: str) -> float:
        values = getattr(self, name)
        return float(np.mean(values)) if len(values) else float("nan")


class FrameMetrics:
    """Per-frame metric values of one forecast, gathered as (windows, leads) arrays."""

    def __init__(self) -> None:
        self.values: dict[str, list[np.ndarray]] = {k: [] for k in PIXEL_METRICS}

    def add(self, pred: np.ndarray, target: np.ndarray) -> None:
        """pred, target: (N, M, H, W) floats in [0, 1]."""
        n, m = pred.shape[:2]
        p, t = pred.reshape(n * m, *pred.shape[2:]), target.reshape(n * m, *target.shape[2:])
        mse = metrics.mse_frames(p, t)
        self.values["mse"].append(mse.reshape(n, m))
        self.values["psnr"].append(metrics.psnr_from_mse(mse).reshape(n, m))
        self.values["mae"].append(metrics.mae_frames(p, t).reshape(n, m))
        self.values["ssim"].append(metrics.ssim_frames(p, t).reshape(n, m))
        self.values["sharpness"].append(metrics.sharpness_frames(p, t).reshape(n, m))
        self.values["iou"].append(metrics.iou_frames(p, t).reshape(n, m))
        self.values["vapour_fraction_error"].append(metrics.vapour_fraction_error(p, t).reshape(n, m))

    def array(self, name: str) -> np.ndarray:
        """(windows, leads) values of one metric (NaN for a metric a cached score was written without)."""
        if not self.values.get(name):
            shape = next((np.concatenate(v).shape for v in self.values.values() if v), (0, 0))
            return np.full(shape, np.nan)
        return np.concatenate(self.values[name])

    def leads(self, rows: np.ndarray | None = None) -> LeadMetrics:
        """Means over windows (all, or those `rows` picks), per lead."""
        def mean(k: str) -> tuple[float, ...]:
            a = self.array(k) if rows is None else self.array(k)[rows]
            if a.size == 0 or np.isnan(a).all(axis=0).any():  # a column without a value: NaN, without numpy's warning
                return tuple(float(np.nanmean(c)) if np.isfinite(c).any() else float("nan") for c in a.T)
            return tuple(float(v) for v in np.nanmean(a, axis=0))

        return LeadMetrics(**{k: mean(k) for k in PIXEL_METRICS})


class BubbleCounts:
    """Bubble matches of one forecast, kept per window so that any subset of windows can be pooled later (the
    yardstick's per-epoch subset, a condition). Pooling is BubbleMeter's (bubbles.evaluation.bubbles)."""

    def __init__(self, leads: int) -> None:
        self.m = leads
        self.rows: list[np.ndarray] = []  # one BubbleMeter.sums per window

    def add(self, pred: np.ndarray, target: np.ndarray, detectors: Sequence[DetectorConfig],
            cache: dict | None = None, keys: Sequence | None = None) -> None:
        """pred, target: (N, M, H, W); one detector per window; `cache` + `keys`: target detections found once."""
        for w in range(len(pred)):
            meter = BubbleMeter(self.m)
            meter.add(pred[w : w + 1], target[w : w + 1], detectors[w], cache, None if keys is None else [keys[w]])
            self.rows.append(meter.sums.copy())

    def leads(self, height: int, rows: np.ndarray | None = None) -> dict[str, tuple[float, ...]]:
        """BubbleMeter.leads over the windows `rows` picks (all by default)."""
        meter = BubbleMeter(self.m)
        stacked = np.stack(self.rows) if self.rows else np.zeros((0, *meter.sums.shape))
        meter.sums = (stacked if rows is None else stacked[rows]).sum(axis=0)
        return meter.leads(height)


class Scores:
    """Pixel metrics and bubble counts of several named forecasts (the model, each baseline) on the same targets."""

    def __init__(self, names: Sequence[str], leads: int) -> None:
        self.frames = {k: FrameMetrics() for k in names}
        self.bubbles = {k: BubbleCounts(leads) for k in names}

    def add(self, forecasts: dict[str, np.ndarray], target: np.ndarray, detectors: Sequence[DetectorConfig],
            cache: dict | None = None, keys: Sequence | None = None) -> None:
        """forecasts: name -> (N, M, H, W), each scored against target (N, M, H, W)."""
        for name, forecast in forecasts.items():
            self.frames[name].add(forecast, target)
            self.bubbles[name].add(forecast, target, detectors, cache, keys)


def skill(model_mse: Sequence[float], baseline_mse: Sequence[float]) -> tuple[float, ...]:
    """Per lead, 1 - MSE_model / MSE_baseline (metrics.skill, its one floor)."""
    return tuple(float(v) for v in metrics.skill(np.asarray(model_mse, float), np.asarray(baseline_mse, float)))


def strongest_skill(model_mse: Sequence[float], baseline_mse: dict[str, Sequence[float]]) -> tuple[dict[str, tuple[float, ...]], tuple[str, ...], tuple[float, ...]]:
    """Skill against each baseline, the strongest (lowest-MSE) baseline per lead, and the skill against it."""
    each = {b: skill(model_mse, m) for b, m in baseline_mse.items()}
    strongest = tuple(min(baseline_mse, key=lambda b: baseline_mse[b][k]) for k in range(len(model_mse)))
    return each, strongest, tuple(each[b][k] for k, b in enumerate(strongest))


def strongest_named(strongest: Sequence[str], leads: Sequence[int]) -> str:
    """The strongest baseline per lead in words, as a column's note names it: 'flow', or 'flow at leads 1-2,
    persistence at 3'."""
    if not strongest:
        return "none"
    if len(set(strongest)) == 1:
        return strongest[0]
    runs: list[tuple[str, list[int]]] = []
    for name, lead in zip(strongest, leads):
        if runs and runs[-1][0] == name:
            runs[-1][1].append(lead)
        else:
            runs.append((name, [lead]))
    return ", ".join(f"{b} at lead{'s' if len(ks) > 1 else ''} {ks[0]}" + (f"-{ks[-1]}" if len(ks) > 1 else "") for b, ks in runs)
