"""Differentiable advection: move a frame along a motion field, semi-Lagrangianly, with bilinear sampling.

Motion fields are (B, 2, H, W) in pixels per step, channel 0 along the width (x, to the right), channel 1 along the
height (y, downwards): a bubble at x moves to x + v. The advected frame samples the previous one at each pixel's
departure point, traced back through the field (pySTEPS' extrapolation, NowcastNet's evolution operator).

Bilinear sampling is written out with gather rather than `grid_sample`: positions stay in pixel units, so a zero
field samples every pixel at exactly its own integer position with weights exactly (1, 0, 0, 0), and advection by
a zero field returns the frame bit for bit (grid_sample's normalised coordinates round). Edges are clamped, as the
flow baseline's `mode="nearest"`. It traces to TorchScript and exports to ONNX (Gather, Floor, Clip).
`predict_with_motion` reads the motion of a model that moves its frames, for pictures.
"""

from __future__ import annotations

import torch
from torch import nn


def pixel_grid(height: int, width: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer pixel coordinates (y, x), each (1, H, W), in like's dtype and device."""
    ys = torch.arange(height, device=like.device, dtype=like.dtype).view(1, height, 1).expand(1, height, width)
    xs = torch.arange(width, device=like.device, dtype=like.dtype).view(1, 1, width).expand(1, height, width)
    return ys, xs


def sample(frame: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bilinear values of frame (B, C, H, W) at pixel positions y, x (B, H', W'), clamped to the frame's edges."""
    b, c, h, w = frame.shape
    y = y.clamp(0, h - 1)
    x = x.clamp(0, w - 1)
    y0, x0 = y.floor(), x.floor()
    wy, wx = y - y0, x - x0
    y0i, x0i = y0.long(), x0.long()
    y1i, x1i = (y0i + 1).clamp(max=h - 1), (x0i + 1).clamp(max=w - 1)
    flat = frame.reshape(b, c, h * w)

    def at(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        index = (yi * w + xi).reshape(b, 1, -1).expand(b, c, -1)
        return flat.gather(2, index).reshape(b, c, *y.shape[1:])

    wy, wx = wy.unsqueeze(1), wx.unsqueeze(1)
    top = at(y0i, x0i) * (1 - wx) + at(y0i, x1i) * wx
    bottom = at(y1i, x0i) * (1 - wx) + at(y1i, x1i) * wx
    return top * (1 - wy) + bottom * wy


def departure(motion: torch.Tensor, substeps: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Departure points (y, x), each (B, H, W), of every pixel one step back along motion (B, 2, H, W): traced in
    `substeps` equal sub-steps, the field sampled where the parcel is at each (semi-Lagrangian integration; one
    sub-step is a straight line back along the field at the arrival pixel)."""
    _, _, h, w = motion.shape
    y0, x0 = pixel_grid(h, w, motion)
    y, x = y0.expand(motion.shape[0], h, w), x0.expand(motion.shape[0], h, w)
    step = motion / substeps
    for k in range(substeps):
        v = step if k == 0 else sample(step, y, x)  # at the arrival pixel first: no interpolation needed there
        x = x - v[:, 0]
        y = y - v[:, 1]
    return y, x


def advect(frame: torch.Tensor, motion: torch.Tensor, substeps: int = 1) -> torch.Tensor:
    """frame (B, C, H, W) moved one step along motion (B, 2, H, W): one bilinear sample at the departure points,
    however many sub-steps trace them (each extra resampling of the frame would blur it)."""
    y, x = departure(motion, substeps)
    return sample(frame, y, x)


def predict_with_motion(model: nn.Module, x: torch.Tensor, future: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Predictions and, for a model that moves its frames (one with `rollout_with_motion`, as evolution), the motion
    fields (B, future, 2, H, W) in pixels per frame that moved them; None for models that paint every pixel afresh."""
    moving = getattr(model, "rollout_with_motion", None)
    if moving is not None:
        return moving(x, future)
    return model(x, future=future), None
