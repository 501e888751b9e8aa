"""Baseline start: a family's forecast formed from the forecasts that cost nothing, plus the model's correction.

With `baseline_start: true` every family's model is wrapped (bubbles.models.registry.build_model): the frame at
lead l is

    blend_l = w[l, 0] * A_l + w[l, 1] * climatology + w[l, 2] * flow_l
    out_l   = clip(blend_l + g[l] * (model_l - blend_l), 0, 1)

A_l is persistence (the last context frame) for the families that synthesise frames, and the family's own frame for
`evolution`, which advects the last frame along its motion (untrained: zero motion, persistence exactly; it then
needs no gate, out_l = clip(blend_l)). climatology is the per-pixel mean of the TRAINING frames (a buffer, filled
before training and saved with the weights); flow_l is the optical-flow extrapolation of the last two context
frames (bubbles.evaluation.baselines, the yardstick's own baseline, at the model's frame size; it runs on the CPU
in numpy, no gradient). The weights w start at the per-lead least-squares combination of the three on training
windows (bubbles.training.baseline_fit), and the gate g at 0, so an untrained trial scores that combination, which
on the fitted windows is at least as good as the best single baseline at every lead; training moves from there.

Sources that cannot be formed are switched off by the `sources` buffer (1 = used): climatology with tiles (the
model is trained on tiles at random places and runs on whole frames: no single mean frame fits both) or with
several predicted fields, flow with one context frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from bubbles.evaluation.baselines import flow_extrapolation

SOURCES = ("persistence", "climatology", "flow")


def flow_forecast(x: torch.Tensor, future: int, channels: int) -> torch.Tensor:
    """Optical-flow extrapolation of each window's last two frames, per field: (B, T, C, H, W) -> (B, future, C, H, W)."""
    frames = x[:, :, :channels].detach().float().cpu().numpy()
    out = np.stack([flow_extrapolation(frames[:, :, c], future) for c in range(channels)], axis=2)
    return torch.from_numpy(out).to(x.device)


class BaselineStart(nn.Module):
    """A family's model wrapped as in the module docstring; forward(x, future, **sampling) like every family."""

    def __init__(self, inner: nn.Module, cfg: Any, advects: bool) -> None:
        super().__init__()
        if cfg.in_channels != cfg.out_channels:
            raise ValueError("baseline_start forms persistence from the input fields: in_channels must equal out_channels")
        self.inner = inner
        self.cfg = cfg  # the family's config: the training loop and cost measure read frame_size, channels, modes
        self.advects = advects
        lead_count = cfg.output_len
        self.register_buffer("climatology", torch.zeros(cfg.out_channels, *cfg.frame_size))
        self.register_buffer("sources", torch.ones(len(SOURCES)))
        start = torch.zeros(lead_count, len(SOURCES))
        start[:, 0] = 1.0  # before the fit: persistence (or the family's own advected frame)
        self.weights = nn.Parameter(start)
        self.gate = nn.Parameter(torch.zeros(lead_count))

    def baselines(self, x: torch.Tensor, future: int) -> dict[str, torch.Tensor]:
        """The sources that are on, (B, future, C, H, W) each (persistence even when the family advects: the fit
        uses it as the untrained family's frame)."""
        c = self.cfg.out_channels
        b, _, _, h, w = x.shape
        out = {"persistence": x[:, -1:, :c].float().expand(b, future, c, h, w)}
        if self.sources[1] > 0 and tuple(self.climatology.shape[-2:]) == (h, w):
            out["climatology"] = self.climatology.float().expand(b, future, c, h, w)
        if self.sources[2] > 0 and x.shape[1] >= 2:
            out["flow"] = flow_forecast(x, future, c)
        return out

    def forward(self, x: torch.Tensor, future: int = 1, **kwargs: Any) -> torch.Tensor:
        horizon = self.cfg.output_len
        if future > horizon:  # beyond the fitted leads: roll out on its own predictions, `horizon` frames at a time
            window, chunks, made = x, [], 0
            while made < future:
                pred = self.forward(window, horizon, **{k: v for k, v in kwargs.items() if k not in ("target",)})
                chunks.append(pred)
                made += horizon
                window = torch.cat([window, pred.to(window.dtype)], dim=1)[:, -x.shape[1]:]
            return torch.cat(chunks, dim=1)[:, :future]
        model = self.inner(x, future=future, **kwargs).float()
        sources = self.baselines(x, future)
        w = self.weights[:future].float()
        first = model if self.advects else sources["persistence"]
        blend = w[:, 0].view(1, future, 1, 1, 1) * first
        for k, name in enumerate(SOURCES[1:], start=1):
            if name in sources:
                blend = blend + w[:, k].view(1, future, 1, 1, 1) * sources[name]
        if not self.advects:
            blend = blend + self.gate[:future].float().view(1, future, 1, 1, 1) * (model - blend)
        return blend.clamp(0, 1)


def wrap(inner: nn.Module, cfg: Any, advects: bool) -> nn.Module:
    """The family's model, wrapped when its config asks for the baseline start."""
    return BaselineStart(inner, cfg, advects) if getattr(cfg, "baseline_start", False) else inner
