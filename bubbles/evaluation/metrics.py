"""Pure numpy metrics per predicted frame, sharpness, skill scores and the collapse score (baselines: baselines.py).

Conventions (stated once, used everywhere): frames are float in [0, 1]; SSIM is scikit-image's
`structural_similarity` with data_range=1 and the Wang et al. (2004) setting — Gaussian weights, sigma 1.5,
population covariance; PSNR uses data_range=1 with MSE floored at 1e-10 (so identical frames score 100 dB, not inf),
computed per frame from that frame's MSE and then averaged over frames (a mean of dB values, not the PSNR of the mean
MSE); MSE and MAE are per pixel. Mask metrics (segmented recordings: vapour 1, liquid 0) threshold prediction and target
at MASK_THRESHOLD (a target resized below its native scale is soft at bubble edges): IoU of vapour (1 where neither
has vapour: they agree), and the vapour-fraction error |vapour share of the prediction − of the target| per frame.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

PSNR_MSE_FLOOR = 1e-10
COLLAPSE_THRESHOLD = 0.3
MASK_THRESHOLD = 0.5


def iou_frames(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """IoU of the vapour (> MASK_THRESHOLD) of each frame pair: (N, H, W) x 2 -> (N,); 1 where both have none."""
    p, t = pred > MASK_THRESHOLD, target > MASK_THRESHOLD
    inter = (p & t).reshape(len(p), -1).sum(axis=1)
    union = (p | t).reshape(len(p), -1).sum(axis=1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def vapour_fraction_error(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """|share of vapour pixels in the prediction − in the target| per frame (> MASK_THRESHOLD): (N,)."""
    p = (pred > MASK_THRESHOLD).reshape(len(pred), -1).mean(axis=1)
    t = (target > MASK_THRESHOLD).reshape(len(target), -1).mean(axis=1)
    return np.abs(p - t)


def ssim_frames(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """SSIM of each frame pair: (N, H, W) x 2 -> (N,)."""
    return np.array(
        [
            structural_similarity(p, t, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
            for p, t in zip(pred.astype(np.float64), target.astype(np.float64))
        ]
    )


def mse_frames(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    diff = pred.astype(np.float64) - target.astype(np.float64)
    return (diff**2).reshape(len(diff), -1).mean(axis=1)


def mae_frames(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    diff = pred.astype(np.float64) - target.astype(np.float64)
    return np.abs(diff).reshape(len(diff), -1).mean(axis=1)


def psnr_from_mse(mse: np.ndarray) -> np.ndarray:
    """PSNR in dB for data_range 1, per frame."""
    return 10.0 * np.log10(1.0 / np.maximum(mse, PSNR_MSE_FLOOR))


def gradient_magnitude(frames: np.ndarray) -> np.ndarray:
    """Mean gradient magnitude of each frame (N, H, W) -> (N,), central differences in pixels."""
    gy, gx = np.gradient(frames.astype(np.float64), axis=(1, 2))
    return np.hypot(gx, gy).reshape(len(frames), -1).mean(axis=1)


def sharpness_frames(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Sharpness ratio per frame: mean gradient magnitude of the prediction / of the target. 1 is as sharp as the
    target; a blur scores well below 1 (NaN where the target is flat)."""
    g_target = gradient_magnitude(target)
    return np.where(g_target > 0, gradient_magnitude(pred) / np.where(g_target > 0, g_target, 1.0), np.nan)


def skill(mse_model: np.ndarray, mse_baseline: np.ndarray) -> np.ndarray:
    """1 - MSE_model / MSE_baseline: 1 is perfect, 0 is no better than the baseline, < 0 is worse."""
    return 1.0 - np.asarray(mse_model) / np.maximum(np.asarray(mse_baseline), PSNR_MSE_FLOOR)


class CollapseMeter:
    """Does the model still react to its input? Compares how much predictions vary across windows with how much
    the targets do, per pixel and lead time.

    score = mean_pixels(std over windows of prediction) / mean_pixels(std over windows of target).
    A model that has collapsed to one static picture (the plate and nozzle right, the bubbles gone) outputs nearly
    the same frame for every window: score -> 0. A good model, like persistence, scores near 1. `collapsed` is
    score < COLLAPSE_THRESHOLD (0.3).
    """

    def __init__(self) -> None:
        # Per frame size (tiles: held-out sequences of several sizes are each scored whole): windows and sums.
        self.n: dict[tuple[int, ...], int] = {}
        self.sums: dict[tuple[int, ...], dict[str, np.ndarray]] = {}

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        """pred, target: (N, M, H, W) batches."""
        shape = tuple(pred.shape[1:])
        sums = self.sums.setdefault(shape, {})
        for key, arr in (("p", pred), ("t", target)):
            a = arr.astype(np.float64)
            for suffix, val in (("1", a.sum(axis=0)), ("2", (a**2).sum(axis=0))):
                k = key + suffix
                sums[k] = sums.get(k, 0.0) + val
        self.n[shape] = self.n.get(shape, 0) + len(pred)

    def score(self) -> float:
        """With several frame sizes: each size's spreads weighted by its windows (sizes seen once have none)."""
        spread = {"p": 0.0, "t": 0.0}
        for shape, n in self.n.items():
            if n < 2:
                continue
            for key in spread:
                mean = self.sums[shape][key + "1"] / n
                var = np.maximum(self.sums[shape][key + "2"] / n - mean**2, 0.0)
                spread[key] += n * float(np.sqrt(var).mean())
        if not any(n >= 2 for n in self.n.values()):
            return float("nan")
        return spread["p"] / spread["t"] if spread["t"] > 0 else float("nan")
