"""Evolution: move the bubbles, then add what motion cannot explain (NowcastNet's evolution network, Zhang et al.
2023; DMVFN's multi-scale motion, Hu et al. 2023).

A U-Net reads the input_len context frames (all fields stacked on channels) and predicts, for each of the
output_len leads, a motion field (u, v) in pixels per frame, shared by every field, and an intensity residual per
field. The frame at lead k is the frame at lead k-1 (the last context frame for k = 1) advected along lead k's
motion (bubbles.models.warp: differentiable semi-Lagrangian advection, `substeps` sub-steps, bilinear) plus lead
k's residual, clipped to [0, 1]; the observed frame is interpolated once per lead, not once per step (see window). Training goes through the advection. Beyond output_len the rollout continues from
its own output: the latest input_len frames, predictions included, go through the U-Net again.

Motion comes from `scales` decoder levels (the finest first), each upsampled to the frame and scaled to its
pixels, and summed: coarse levels carry the large displacements, fine ones the corrections. Both heads start at
zero, so an untrained model is persistence exactly (zero motion, zero residual) and learns away from it.

With `flow_motion: true` the learnt motion is a correction to the optical-flow baseline's field: the iterative
Lucas-Kanade field of the last two context frames (the yardstick's flow, in torch: bubbles.models.baseline_start),
added to every lead's motion. Untrained, the model is then the flow forecast (one bilinear sample at the same
departure points), so it starts where flow is and displacements of several pixels a frame at native scale need no
learning to reach; the U-Net learns where flow is wrong. The field's ILK radius is measured on training frames
(`flow_radius` buffer, 0: the yardstick's default for the frame height).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bubbles.models.baseline_start import lucas_kanade
from bubbles.evaluation.baselines import flow_radius as default_flow_radius
from bubbles.models.family import BASELINE_START_HELP, ExtraLoss, Family
from bubbles.models.warp import departure, pixel_grid, sample
from bubbles.params import fail, param


@dataclass(frozen=True)
class EvolutionConfig:
    """Architecture. width: channels of the U-Net's finest level (doubling per level below); depth: halvings of
    the frame in the U-Net (any frame size: odd sides round up); substeps: sub-steps of the semi-Lagrangian trace
    per lead; scales: decoder levels that contribute motion (1..depth + 1); smoothness: weight of the motion
    smoothness regulariser in training (mean squared spatial gradient of the motion fields, pixels per frame).
    input_len / output_len: the window the model is built for; in_channels / out_channels: fields (equal: the
    model advects every field it reads)."""

    width: int = param(32, "ev_width", "evolution: channels of the U-Net's finest level (doubling per level)", low=1)
    depth: int = param(2, "ev_depth", "evolution: halvings of the frame in the U-Net (any frame size)", low=0, high=6)
    substeps: int = param(1, "substeps", "evolution: semi-Lagrangian sub-steps per lead when tracing the motion back", low=1, high=32)
    scales: int = param(1, "motion_scales", "evolution: decoder levels that contribute motion, finest first (1..ev_depth + 1)", low=1)
    smoothness: float = param(0.01, "smoothness", "evolution: weight of the motion-smoothness regulariser (mean squared gradient of the motion)", high=100.0)
    flow_motion: bool = param(False, "flow_motion", "evolution: learn a correction to the optical-flow baseline's field "
                              "(Lucas-Kanade of the last two context frames) instead of motion from zero; untrained = flow")
    input_len: int = 10
    output_len: int = 10
    baseline_start: bool = param(False, "baseline_start", BASELINE_START_HELP)
    in_channels: int = 1
    out_channels: int = 1
    frame_size: tuple[int, int] = (64, 64)

    def label(self) -> str:
        """Short name for run names and cards, e.g. 'E2x32-s1-m1'."""
        return f"E{self.depth}x{self.width}-s{self.substeps}-m{self.scales}" + ("-f" if self.flow_motion else "")


def _groups(channels: int) -> int:
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class Block(nn.Module):
    """Two 3x3 convolutions, each followed by GroupNorm and SiLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(_groups(cout), cout), nn.SiLU(),
            nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(_groups(cout), cout), nn.SiLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Evolution(nn.Module):
    """U-Net -> per-lead motion and residual -> advection rollout; forward(x, future) like the other families."""

    # Adam moves every weight of the zero-initialised residual head by about lr in its first step, which adds noise
    # of tenths of the intensity range to every frame; a gain of 0.1 keeps the residual small while motion is
    # learnt (on the tiny store, 3 epochs: skill against persistence +0.62 after epoch 1 against +0.25 at gain 1).
    RESIDUAL_GAIN = 0.1

    def __init__(self, cfg: EvolutionConfig) -> None:
        super().__init__()
        if cfg.in_channels != cfg.out_channels:
            raise ValueError("evolution advects the fields it reads: in_channels must equal out_channels")
        if not 1 <= cfg.scales <= cfg.depth + 1:
            raise ValueError(f"scales must be in 1..depth + 1 = {cfg.depth + 1}, got {cfg.scales}")
        self.cfg = cfg
        widths = [cfg.width * 2**level for level in range(cfg.depth + 1)]
        self.down = nn.ModuleList([Block(cfg.input_len * cfg.in_channels, widths[0])])
        self.down.extend(Block(a, b) for a, b in zip(widths[:-1], widths[1:]))
        # up[i] merges level i + 1's features into level i's skip
        self.up = nn.ModuleList(Block(widths[i + 1] + widths[i], widths[i]) for i in range(cfg.depth))
        m = cfg.output_len
        self.motion_heads = nn.ModuleList(nn.Conv2d(widths[level], 2 * m, 3, padding=1) for level in range(cfg.scales))
        self.residual_head = nn.Conv2d(widths[0], m * cfg.out_channels, 3, padding=1)
        for head in (*self.motion_heads, self.residual_head):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        if cfg.flow_motion:  # only then: checkpoints of models without it keep their exact state_dict
            # ILK window radius (px) of the prior field, measured on training frames (0: the default for the height)
            self.register_buffer("flow_radius", torch.zeros(()))

    def prior_motion(self, x: torch.Tensor) -> torch.Tensor | None:
        """The flow baseline's field of the last two context frames as motion (B, 2, H, W) (x, y pixels per frame),
        from the first field; None without `flow_motion`. No gradient flows into it."""
        if not self.cfg.flow_motion or x.shape[1] < 2:
            return None
        frames = x[:, -2:, :1].detach().float()
        radius = int(self.flow_radius.item()) or default_flow_radius(x.shape[-2])
        back = lucas_kanade(frames[:, 0], frames[:, 1], radius)  # (dy, dx): last(p) ~ previous(p + back)
        # a parcel at p came from p + back, so it moves by -back per frame; motion channels are (x, y)
        return torch.stack([-back[:, 1], -back[:, 0]], 1).to(x.dtype)

    def fields(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One U-Net pass: x (B, input_len, C, H, W) -> motion (B, output_len, 2, H, W) in pixels per frame and
        residual (B, output_len, C, H, W)."""
        b, n, c, h, w = x.shape
        feat = self.down[0](x.reshape(b, n * c, h, w) * 2 - 1)
        skips = [feat]
        for block in self.down[1:]:
            feat = block(F.avg_pool2d(feat, 2, ceil_mode=True))
            skips.append(feat)
        levels = [feat]  # decoder features, coarsest first
        for i in reversed(range(self.cfg.depth)):
            skip = skips[i]
            feat = self.up[i](torch.cat([F.interpolate(feat, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1))
            levels.append(feat)
        levels.reverse()  # finest first: level l is 2**l times coarser than the frame
        m = self.cfg.output_len
        motion = self.motion_heads[0](levels[0])
        for level in range(1, self.cfg.scales):
            coarse = self.motion_heads[level](levels[level]) * 2**level  # its pixels are 2**level frame pixels
            motion = motion + F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
        residual = self.residual_head(levels[0]) * self.RESIDUAL_GAIN
        motion = motion.reshape(b, m, 2, h, w)
        prior = self.prior_motion(x)
        if prior is not None:
            motion = motion + prior.unsqueeze(1)
        return motion, residual.reshape(b, m, c, h, w)

    def window(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One window: (B, input_len, C, H, W) -> frames (B, output_len, C, H, W) and their motion fields.

        Lead k is lead k-1 advected along motion k plus residual k. Advecting a prediction that was itself
        resampled would interpolate the observed frame k times (a blur growing with the lead), so the advection is
        carried as a map instead: where each pixel of lead k came from in the last context frame (lead k-1's map
        sampled at lead k's departure points: coordinates are smooth, interpolating them blurs nothing), and the
        frame is that context frame sampled once at the map, plus the residuals carried along the same way."""
        motion, residual = self.fields(x)
        last = x[:, -1]
        b, _, h, w = last.shape
        ys, xs = pixel_grid(h, w, last)
        origin = torch.stack([ys, xs], 1).expand(b, 2, h, w)  # (y, x) in the last context frame of every pixel
        carried = torch.zeros_like(last)
        out = []
        for k in range(self.cfg.output_len):
            dy, dx = departure(motion[:, k], self.cfg.substeps)
            origin = sample(origin, dy, dx)
            carried = sample(carried, dy, dx) + residual[:, k]
            out.append((sample(last, origin[:, 0], origin[:, 1]) + carried).clamp(0, 1))
        return torch.stack(out, 1), motion

    def rollout_with_motion(self, x: torch.Tensor, future: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`future` frames after x and the motion that made each: (B, future, C, H, W), (B, future, 2, H, W)."""
        n = self.cfg.input_len
        frames, preds, motions, made = x[:, -n:], [], [], 0
        while made < future:
            pred, motion = self.window(frames)
            preds.append(pred)
            motions.append(motion)
            made += self.cfg.output_len
            if made < future:
                frames = torch.cat([frames, pred], dim=1)[:, -n:]
        return torch.cat(preds, 1)[:, :future], torch.cat(motions, 1)[:, :future]

    def forward(
        self,
        x: torch.Tensor,
        future: int = 1,
        target: torch.Tensor | None = None,
        teacher_forcing: float = 0.0,
        generator: torch.Generator | None = None,
        motion: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Predict `future` frames (B, future, C, H, W) in [0, 1] after x (B, T, C, H, W), T >= input_len (the
        latest input_len are read). A list given as `motion` receives the motion fields (B, future, 2, H, W), for
        the smoothness term and for pictures. target, teacher_forcing and generator are ignored: each lead is
        advected from the previous prediction."""
        pred, fields = self.rollout_with_motion(x, future)
        if motion is not None:
            motion.append(fields)
        return pred


def motion_smoothness(motion: torch.Tensor) -> torch.Tensor:
    """Mean squared spatial gradient of motion fields (..., 2, H, W) in pixels per frame: a field that varies from
    pixel to pixel tears bubbles apart when it advects them; this term prefers fields that move a bubble as a whole
    (the first-order smoothness prior of variational optical flow, Horn & Schunck 1981)."""
    return motion.diff(dim=-2).pow(2).mean() + motion.diff(dim=-1).pow(2).mean()


def _smoothness(cfg: EvolutionConfig) -> ExtraLoss | None:
    """smoothness * motion_smoothness of the motion fields forward hands to `motion`."""
    if cfg.smoothness <= 0:
        return None
    motion: list[torch.Tensor] = []
    return ExtraLoss({"motion": motion}, lambda: cfg.smoothness * motion_smoothness(motion[0].float()))


def _check(where: str, cfg: EvolutionConfig, exact: bool) -> EvolutionConfig:
    if cfg.scales > cfg.depth + 1:
        raise fail(where, "motion_scales", f"must be <= ev_depth + 1 = {cfg.depth + 1}, got {cfg.scales}")
    return cfg


FAMILY = Family(
    name="evolution",
    config=EvolutionConfig,
    model=Evolution,
    feeds_back=lambda cfg: True,  # each lead is advected from the previous prediction, every field it reads
    check=_check,
    extra_loss=_smoothness,
    advects=True,
)
