"""Patch reshaping: frames cut into patch x patch tiles folded into channels (PredRNN's and OpenSTL's reshape_patch),
so a recurrent cell runs at 1/patch the resolution with patch² times the input channels."""

from __future__ import annotations

import torch


def to_patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, T, C, H, W) -> (B, T, C*p*p, H/p, W/p)."""
    if p == 1:
        return x
    b, t, c, h, w = x.shape
    x = x.reshape(b, t, c, h // p, p, w // p, p).permute(0, 1, 2, 4, 6, 3, 5)
    return x.reshape(b, t, c * p * p, h // p, w // p)


def from_patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """Inverse of to_patches."""
    if p == 1:
        return x
    b, t, cpp, h, w = x.shape
    c = cpp // (p * p)
    x = x.reshape(b, t, c, p, p, h, w).permute(0, 1, 2, 5, 3, 6, 4)
    return x.reshape(b, t, c, h * p, w * p)
