"""Baseline start: a family's forecast formed from the forecasts that cost nothing, plus the model's correction.

With `baseline_start: true` every family's model is wrapped (bubbles.models.registry.build_model): the frame at
lead l is

    blend_l = w[l, 0] * A_l + w[l, 1] * climatology + w[l, 2] * flow_l
    out_l   = clip(blend_l + g[l] * (model_l - blend_l), 0, 1)

A_l is persistence (the last context frame) for the families that synthesise frames, and the family's own frame for
`evolution`, which advects the last frame along its motion (untrained: zero motion, persistence exactly; it then
needs no gate, out_l = clip(blend_l)). climatology is the per-pixel mean of the TRAINING frames (a buffer, filled
before training and saved with the weights); flow_l is the optical-flow extrapolation of the last two context
frames: the yardstick's own baseline (iterative Lucas-Kanade, then semi-Lagrangian advection,
bubbles.evaluation.baselines) re-written in torch, so that it runs on the model's device and is part of the traced
programs an export writes (no gradient flows into it). The weights w start at the per-lead least-squares combination of the three on training
windows (bubbles.training.baseline_fit), and the gate g at 0, so an untrained trial scores that combination, which
on the fitted windows is at least as good as the best single baseline at every lead; training moves from there.

Trained on tiles (`tile`), the model runs on whole frames but trains on tiles at random places: the climatology is
the whole frame's, and a training tile's blend takes the same tile of it (the tile's `tile_origin`, given by the
training loop). A tile cut from a frame of another size than the climatology's (a training sequence of another
shape) takes its window's context mean as its stand-in. Sources that cannot be formed are switched off by the
`sources` buffer (1 = used): climatology with several predicted fields, flow with one context frame.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bubbles.evaluation.baselines import flow_radius

SOURCES = ("persistence", "climatology", "flow")


def _sample(frames: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of frames (N, C, H, W) at pixel coordinates (N, H, W), edges clamped (scipy's 'nearest',
    skimage.warp's 'edge')."""
    h, w = frames.shape[-2:]
    grid = torch.stack([xs / max(w - 1, 1) * 2 - 1, ys / max(h - 1, 1) * 2 - 1], dim=-1)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _gradient(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """np.gradient of (N, 1, H, W) along y and x: central differences inside, one-sided at the edges."""
    def along(t: torch.Tensor, dim: int) -> torch.Tensor:
        n = t.shape[dim]
        if n < 2:
            return torch.zeros_like(t)
        inner = (t.narrow(dim, 2, n - 2) - t.narrow(dim, 0, n - 2)) / 2
        first = t.narrow(dim, 1, 1) - t.narrow(dim, 0, 1)
        last = t.narrow(dim, n - 1, 1) - t.narrow(dim, n - 2, 1)
        return torch.cat([first, inner, last], dim)
    return along(image, 2), along(image, 3)


def _box(t: torch.Tensor, radius: int) -> torch.Tensor:
    """scipy.ndimage.uniform_filter(size 2r + 1, mode 'mirror') of (N, 1, H, W): the local mean."""
    h, w = t.shape[-2:]
    ry, rx = min(radius, h - 1), min(radius, w - 1)
    padded = F.pad(t, (rx, rx, ry, ry), mode="reflect") if (ry or rx) else t
    return F.avg_pool2d(padded, (2 * ry + 1, 2 * rx + 1), stride=1)


def lucas_kanade(previous: torch.Tensor, last: torch.Tensor, radius: int, warps: int = 10) -> torch.Tensor:
    """Iterative Lucas-Kanade (scikit-image's optical_flow_ilk with reference = last, moving = previous: the
    yardstick's flow baseline, bubbles.evaluation.baselines.motion_field) in torch, so that it runs on the model's
    device and is traced into exported programs: (N, 1, H, W) twice -> u (N, 2, H, W) (dy, dx) with
    last(x) ~ previous(x + u)."""
    n, _, h, w = last.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=last.dtype, device=last.device),
                            torch.arange(w, dtype=last.dtype, device=last.device), indexing="ij")
    ys, xs = ys.expand(n, h, w), xs.expand(n, h, w)
    flow = torch.zeros(n, 2, h, w, dtype=last.dtype, device=last.device)
    for _ in range(warps):
        moved = _sample(previous, ys + flow[:, 0], xs + flow[:, 1])
        gy, gx = _gradient(moved)
        error = gy * flow[:, :1] + gx * flow[:, 1:] + last - moved
        a, b, d = _box(gy * gy, radius), _box(gy * gx, radius), _box(gx * gx, radius)
        ey, ex = _box(gy * error, radius), _box(gx * error, radius)
        det = a * d - b * b
        bad = det.abs() < 1e-14  # skimage drops these systems too (its filter is a mean, as here)
        safe = torch.where(bad, torch.ones_like(det), det)
        fy = torch.where(bad, torch.zeros_like(det), (d * ey - b * ex) / safe)
        fx = torch.where(bad, torch.zeros_like(det), (a * ex - b * ey) / safe)
        flow = torch.cat([fy, fx], 1)
    return flow


def advect(frame: torch.Tensor, flow: torch.Tensor, horizon: int) -> torch.Tensor:
    """Semi-Lagrangian extrapolation along a frozen field, as bubbles.evaluation.baselines.advect:
    frame (N, C, H, W), flow (N, 2, H, W) -> (N, horizon, C, H, W)."""
    n, _, h, w = frame.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=frame.dtype, device=frame.device),
                            torch.arange(w, dtype=frame.dtype, device=frame.device), indexing="ij")
    ys, xs = ys.expand(n, h, w), xs.expand(n, h, w)
    offset = torch.zeros_like(flow)
    out = []
    for _ in range(horizon):
        offset = offset + _sample(flow, ys + offset[:, 0], xs + offset[:, 1])
        out.append(_sample(frame, ys + offset[:, 0], xs + offset[:, 1]))
    return torch.stack(out, 1)


def flow_forecast(x: torch.Tensor, future: int, channels: int, radius: int | None = None) -> torch.Tensor:
    """Optical-flow extrapolation of each window's last two frames, per field, with ILK window `radius` (None: the
    yardstick's default for the frame height): (B, T, C, H, W) -> (B, future, C, H, W)."""
    frames = x[:, -2:, :channels].detach().float()
    radius = radius or flow_radius(x.shape[-2])
    out = [advect(frames[:, 1, c : c + 1], lucas_kanade(frames[:, 0, c : c + 1], frames[:, 1, c : c + 1], radius), future)
           for c in range(channels)]
    return torch.cat(out, dim=2)


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
        # ILK window radius (px) of the flow source, measured on training frames by the fit as the yardstick measures
        # its own (bubbles.evaluation.baselines.measure_flow_radius); 0: the default for the frame height.
        self.register_buffer("flow_radius", torch.zeros(()))
        start = torch.zeros(lead_count, len(SOURCES))
        start[:, 0] = 1.0  # before the fit: persistence (or the family's own advected frame)
        self.weights = nn.Parameter(start)
        self.gate = nn.Parameter(torch.zeros(lead_count))

    def climatology_tiles(self, x: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
        """The climatology cut at each window's tile: origin (B, 4) = (top, left, frame height, frame width);
        a tile of a frame of another size than the climatology's takes its window's context mean. (B, C, h, w)."""
        c = self.cfg.out_channels
        th, tw = x.shape[-2:]
        full = tuple(self.climatology.shape[-2:])
        tiles = []
        for k, (top, left, fh, fw) in enumerate(origin.tolist()):
            if (fh, fw) == full:
                tiles.append(self.climatology[:, top : top + th, left : left + tw].float())
            else:
                tiles.append(x[k, :, :c].float().mean(0))
        return torch.stack(tiles)

    def baselines(self, x: torch.Tensor, future: int, tile_origin: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The sources that are on, (B, future, C, H, W) each (persistence even when the family advects: the fit
        uses it as the untrained family's frame). tile_origin: see climatology_tiles (training on tiles)."""
        c = self.cfg.out_channels
        b, _, _, h, w = x.shape
        out = {"persistence": x[:, -1:, :c].float().expand(b, future, c, h, w)}
        if self.sources[1] > 0 and tuple(self.climatology.shape[-2:]) == (h, w):
            out["climatology"] = self.climatology.float().expand(b, future, c, h, w)
        elif self.sources[1] > 0 and tile_origin is not None:
            out["climatology"] = self.climatology_tiles(x, tile_origin).unsqueeze(1).expand(b, future, c, h, w)
        if self.sources[2] > 0 and x.shape[1] >= 2:
            out["flow"] = flow_forecast(x, future, c, int(self.flow_radius.item()) or None)
        return out

    def forward(self, x: torch.Tensor, future: int = 1, tile_origin: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        horizon = self.cfg.output_len
        if future > horizon:  # beyond the fitted leads: roll out on its own predictions, `horizon` frames at a time
            window, chunks, made = x, [], 0
            while made < future:
                pred = self.forward(window, horizon, tile_origin, **{k: v for k, v in kwargs.items() if k not in ("target",)})
                chunks.append(pred)
                made += horizon
                window = torch.cat([window, pred.to(window.dtype)], dim=1)[:, -x.shape[1]:]
            return torch.cat(chunks, dim=1)[:, :future]
        model = self.inner(x, future=future, **kwargs).float()
        sources = self.baselines(x, future, tile_origin)
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
