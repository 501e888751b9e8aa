"""The training losses, chosen by name from one table (LOSSES), and their anti-blur terms: differentiable SSIM for
`mse+ssim` (the metric's convention, Gaussian sigma 1.5) and the gradient-difference loss for `mse+gdl`.

A new loss is one entry in LOSSES: the config's `loss` choices, its help and the training loop all read the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from bubbles.errors import UserError

_C1, _C2 = 0.01**2, 0.03**2  # K1, K2 of Wang et al. with data_range 1


def _gaussian(sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    radius = int(3.5 * sigma + 0.5)  # scikit-image's truncation for gaussian_weights=True
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_torch(pred: torch.Tensor, target: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of (N, C, H, W) images in [0, 1], valid region only (as scikit-image crops its border)."""
    g = _gaussian(sigma, pred.device, pred.dtype)
    c = pred.shape[1]
    wx = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    wy = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, wx, groups=c), wy, groups=c)

    mu_p, mu_t = blur(pred), blur(target)
    var_p = blur(pred * pred) - mu_p**2
    var_t = blur(target * target) - mu_t**2
    cov = blur(pred * target) - mu_p * mu_t
    num = (2 * mu_p * mu_t + _C1) * (2 * cov + _C2)
    den = (mu_p**2 + mu_t**2 + _C1) * (var_p + var_t + _C2)
    return (num / den).mean()


def gradient_difference(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gradient-difference loss of Mathieu, Couprie & LeCun (2016), alpha = 1, as a mean per pixel difference:
    mean | |d_y target| - |d_y pred| | + mean | |d_x target| - |d_x pred| | over the last two (image) axes.
    MSE alone is minimised by the mean of the plausible futures, a blur; this term penalises edges that are weaker
    (or stronger) than the target's, so a sharp bubble rim costs less than a smudge."""
    dy_p, dy_t = (t.diff(dim=-2).abs() for t in (pred, target))
    dx_p, dx_t = (t.diff(dim=-1).abs() for t in (pred, target))
    return (dy_t - dy_p).abs().mean() + (dx_t - dx_p).abs().mean()


@dataclass(frozen=True)
class Loss:
    """One training loss. fn(pred, target, train) -> a scalar, for predictions and targets (B, M, C, H, W) and the
    trial's training config (its weights, e.g. gdl_weight). summed: the loss sums over batch and pixels rather than
    averaging (the seed's mse_sum), so the reported per-pixel loss divides it by the pixels instead."""

    fn: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]
    help: str
    summed: bool = False


def _mse_ssim(pred: torch.Tensor, target: torch.Tensor, train: Any) -> torch.Tensor:
    return F.mse_loss(pred, target) + 0.5 * (1.0 - ssim_torch(pred.flatten(0, 1), target.flatten(0, 1)))


_EPS = 1e-3  # probabilities are clamped to [eps, 1 - eps] for BCE: a confident wrong pixel costs at most ~7


def _probabilities(pred: torch.Tensor) -> torch.Tensor:
    """pred as probabilities for the mask losses: clamped into (0, 1) in value, the gradient passed straight through
    (models whose head is not a sigmoid can leave [0, 1]; a plain clamp would stop their gradient there)."""
    return pred + (pred.clamp(_EPS, 1 - _EPS) - pred).detach()


def bce(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy per pixel of vapour probabilities against a mask (soft where resized)."""
    # Written out: torch's binary_cross_entropy refuses to run under CUDA autocast (amp).
    p, t = _probabilities(pred.float()), target.float()
    return -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean()


def dice(pred: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss of the vapour, 1 − (2 Σ p·t + s) / (Σ p + Σ t + s), per predicted frame (over its pixels),
    averaged over frames: the share of vapour is small (a few %) and Dice weighs it against itself rather than
    against the liquid, which BCE and MSE are dominated by."""
    p, t = _probabilities(pred.float()).flatten(-2), target.float().flatten(-2)
    inter = (p * t).sum(-1)
    return (1 - (2 * inter + smooth) / (p.sum(-1) + t.sum(-1) + smooth)).mean()


OVERLAP_SOFTNESS = 0.05  # intensity width of the soft threshold's sigmoid: sharp enough to be a mask, smooth to train


def soft_bubble_mask(frames: torch.Tensor, threshold: float, polarity: str) -> torch.Tensor:
    """A differentiable bubble mask of frames in [0, 1]: sigmoid((v - threshold) / OVERLAP_SOFTNESS) for bright
    bubbles (vapour 1 in masks), its mirror for dark ones (shadowgraphs)."""
    sign = 1.0 if polarity == "bright" else -1.0
    return torch.sigmoid(sign * (frames.float() - threshold) / OVERLAP_SOFTNESS)


def bubble_overlap(pred: torch.Tensor, target: torch.Tensor, threshold: float, polarity: str) -> torch.Tensor:
    """Soft Dice loss of the soft-thresholded bubble masks of forecast and target, per frame (bubbles.training.losses
    .dice's convention): the term aligned with what bubble F1 and IoU score. MSE pays the same for a bubble a few
    pixels off as for its blur; this term pays for missing overlap, so a sharp bubble in the right place wins."""
    p, t = soft_bubble_mask(pred, threshold, polarity).flatten(-2), soft_bubble_mask(target, threshold, polarity).flatten(-2)
    inter = (p * t).sum(-1)
    return (1 - (2 * inter + 1.0) / (p.sum(-1) + t.sum(-1) + 1.0)).mean()


LOSSES: dict[str, Loss] = {
    "mse_sum": Loss(lambda p, t, c: F.mse_loss(p, t, reduction="sum"), "the seed's: squared error summed over batch and pixels", summed=True),
    "mse_mean": Loss(lambda p, t, c: F.mse_loss(p, t), "mean squared error per pixel"),
    "l1": Loss(lambda p, t, c: F.l1_loss(p, t), "mean absolute error per pixel"),
    "mse+ssim": Loss(_mse_ssim, "mse_mean + 0.5 * (1 - SSIM)"),
    "mse+gdl": Loss(lambda p, t, c: F.mse_loss(p, t) + c.gdl_weight * gradient_difference(p, t),
                    "mse_mean + gdl_weight * gradient-difference loss (Mathieu et al. 2016, anti-blur)"),
    "bce": Loss(lambda p, t, c: bce(p, t), "masks: binary cross-entropy per pixel (vapour 1, liquid 0)"),
    "dice": Loss(lambda p, t, c: dice(p, t), "masks: soft Dice loss of the vapour per frame"),
    "bce+dice": Loss(lambda p, t, c: bce(p, t) + dice(p, t), "masks: bce + dice"),
}


def loss_named(name: str) -> Loss:
    """The table's loss `name`; any other name is one line listing the known ones."""
    try:
        return LOSSES[name]
    except KeyError:
        raise UserError(f"loss {name!r}: unknown; the losses are {', '.join(LOSSES)}") from None
