"""BatchNorm whose running statistics start from the first training batch's.

torch's BatchNorm starts its running statistics at mean 0, variance 1 and moves them by `momentum` (0.1) per batch,
so after n batches the running variance still holds 0.9**n of that initial 1. A ConvLSTM's hidden activations have
a variance of about 1e-4, so after one epoch of 48 batches the eval-mode variance was ~20x too large (0.9**49 =
0.006 against 0.0003): eval-mode features were squashed towards the mean and seq2seq's lead 1 (the encoder's norm,
one update per batch) came out flat grey while the rollout's norms (one update per rollout step) had decayed the
initial value away (issue 27). Copying the first batch's statistics in removes the initial value at once; later
batches update as usual. The buffers are torch's own, so saved weights load either way.
"""

from __future__ import annotations

import torch
from torch import nn


def _warm(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> None:
    """Before the first tracked update: running stats := this batch's. Written only then (a later in-place write
    would bump the version of buffers an earlier call of the same forward saved for backward); `_warmed` caches the
    answer so the counter is read from the device only until it is past 0 (once per module, also after a resume)."""
    if getattr(bn, "_warmed", False) or not (bn.training and bn.track_running_stats and bn.running_mean is not None):
        return
    if int(bn.num_batches_tracked) > 0 or x.device.type == "meta":
        bn._warmed = True
        return
    dims = [0, *range(2, x.dim())]
    with torch.no_grad():
        xf = x.detach().float()
        bn.running_mean.copy_(xf.mean(dims))
        bn.running_var.copy_(xf.var(dims))


class WarmBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d with running statistics started from the first batch (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _warm(self, x)
        return super().forward(x)


class WarmBatchNorm3d(nn.BatchNorm3d):
    """nn.BatchNorm3d with running statistics started from the first batch (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _warm(self, x)
        return super().forward(x)
