"""SimVP-v2 with the gSTA translator (Tan et al., 2022): a per-frame conv encoder (N_S ConvSC blocks, every second one
strided; an odd N_S builds N_S - 1, as OpenSTL's sampling_generator), a translator over time x channels (N_T gated spatiotemporal attention blocks on the N*hid_S-channel stack),
and a decoder (N_S ConvSC blocks, every second one a pixel-shuffle upsampling) that adds the encoder's first features
as a skip. Non-recurrent: all M frames come out of one pass.

Deliberate departures from OpenSTL's SimVP_Model: the output goes through a sigmoid (frames in [0, 1] like the other
families); when M != N, a 1x1 conv maps the translator's N*hid_S channels to M*hid_S, and another maps the N skips
to M (OpenSTL predicts N frames and crops or repeats the model); n_s 1 builds one unstrided block (OpenSTL needs
N_S >= 2). With M == N the layers and parameter count are OpenSTL's. As OpenSTL: encoder/decoder convolutions start
trunc-normal (std 0.02), gSTA convolutions normal(0, sqrt(2 / fan_out)), their biases 0 (the readout, the reductions
and the M != N maps keep PyTorch's defaults, as OpenSTL's do); stochastic depth in the translator by OpenSTL's rule:
block i of N_T drops with probability linspace(0.01, drop_path, N_T)[i], the last with drop_path (so even drop_path
0 leaves the early blocks a little, as OpenSTL's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from bubbles.models.family import BASELINE_START_HELP, Family
from bubbles.models.norms import WarmBatchNorm2d
from bubbles.params import fail, param


@dataclass(frozen=True)
class SimVPConfig:
    """Architecture. hid_s / n_s: encoder and decoder width and depth (n_s // 2 strided halvings: H and W must
    divide by 2**(n_s // 2)); hid_t / n_t: translator width and depth; spatio_kernel: encoder/decoder conv size;
    mlp_ratio: widening of the translator's MLPs; drop_path: the translator's stochastic depth. input_len / output_len: the window the model is built for.
    in_channels / out_channels: fields in and out (a rollout beyond output_len needs them equal)."""

    hid_s: int = param(64, "hid_s", "SimVP: encoder/decoder width (even: GroupNorm of 2 groups)", low=2)
    hid_t: int = param(512, "hid_t", "SimVP: translator width", low=1)
    n_s: int = param(4, "n_s", "SimVP: encoder/decoder blocks (every second one halves H and W)", low=1)
    n_t: int = param(8, "n_t", "SimVP: gSTA translator blocks", low=1)
    spatio_kernel: int = param(3, "spatio_kernel", "SimVP: encoder/decoder kernel size (odd)", odd=True)
    mlp_ratio: float = param(8.0, "mlp_ratio", "SimVP: widening of the translator's MLPs", low=0.25, high=64.0)
    drop_path: float = param(0.0, "drop_path", "SimVP: stochastic depth of the translator's last block (OpenSTL's rule: "
                             "linspace(0.01, drop_path) over the blocks)", high=0.9)
    input_len: int = 10
    output_len: int = 10
    baseline_start: bool = param(False, "baseline_start", BASELINE_START_HELP)
    in_channels: int = 1
    out_channels: int = 1
    frame_size: tuple[int, int] = (64, 64)

    def label(self) -> str:
        """Short name for run names and cards."""
        return f"S{self.n_s}x{self.hid_s}-T{self.n_t}x{self.hid_t}"


class ConvSC(nn.Module):
    """Conv (stride 2 when downsampling; conv to 4x channels + PixelShuffle when upsampling) + GroupNorm(2) + SiLU."""

    def __init__(self, cin: int, cout: int, kernel: int, down: bool = False, up: bool = False, act_norm: bool = True) -> None:
        super().__init__()
        stride = 2 if down else 1
        padding = (kernel - stride + 1) // 2
        if up:
            self.conv: nn.Module = nn.Sequential(nn.Conv2d(cin, cout * 4, kernel, 1, padding), nn.PixelShuffle(2))
        else:
            self.conv = nn.Conv2d(cin, cout, kernel, stride, padding)
        self.post = nn.Sequential(nn.GroupNorm(2, cout), nn.SiLU()) if act_norm else nn.Identity()
        for m in self.conv.modules():
            if isinstance(m, nn.Conv2d):  # OpenSTL's BasicConv2d
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.conv(x))


def _samplings(n: int, reverse: bool = False) -> list[bool]:
    """Which blocks halve (or double) the frame: OpenSTL's [False, True] * (n // 2), so an odd n loses a block; n 1
    is one unstrided block."""
    s = [False, True] * (n // 2) or [False]
    return list(reversed(s)) if reverse else s


class AttentionModule(nn.Module):
    """Large-kernel attention: depthwise 5x5, depthwise dilated 7x7 (dilation 3), 1x1 to a gate and a value."""

    def __init__(self, dim: int, kernel: int = 21, dilation: int = 3) -> None:
        super().__init__()
        d_k = 2 * dilation - 1
        dd_k = kernel // dilation + ((kernel // dilation) % 2 - 1)
        self.conv0 = nn.Conv2d(dim, dim, d_k, padding=(d_k - 1) // 2, groups=dim)
        self.conv_spatial = nn.Conv2d(dim, dim, dd_k, padding=dilation * (dd_k - 1) // 2, groups=dim, dilation=dilation)
        self.conv1 = nn.Conv2d(dim, 2 * dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, g = self.conv1(self.conv_spatial(self.conv0(x))).chunk(2, dim=1)
        return torch.sigmoid(g) * f


class DropPath(nn.Module):
    """Stochastic depth (timm's DropPath): in training, a sample's residual branch is zeroed with probability p and
    the kept ones scaled by 1 / (1 - p); identity in eval."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        return x * x.new_empty(x.shape[0], 1, 1, 1).bernoulli_(keep) / keep


class GASubBlock(nn.Module):
    """gSTA block: x + drop(s1 * SpatialAttention(BN(x))), then x + drop(s2 * MixMlp(BN(x))), layer scales 1e-2."""

    def __init__(self, dim: int, mlp_ratio: float, drop_path: float = 0.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = WarmBatchNorm2d(dim)
        self.attn = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.GELU(), AttentionModule(dim), nn.Conv2d(dim, dim, 1))
        self.norm2 = WarmBatchNorm2d(dim)
        self.mlp = nn.Sequential(
            nn.Conv2d(dim, hidden, 1), nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden), nn.GELU(), nn.Conv2d(hidden, dim, 1)
        )
        self.scale1 = nn.Parameter(1e-2 * torch.ones(dim, 1, 1))
        self.scale2 = nn.Parameter(1e-2 * torch.ones(dim, 1, 1))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # OpenSTL's GASubBlock._init_weights
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.drop_path(self.scale1 * (self.attn(y) + y))  # the attention's own shortcut (attn_shortcut=True)
        return x + self.drop_path(self.scale2 * self.mlp(self.norm2(x)))


class MetaBlock(nn.Module):
    """A gSTA block at the input width, then a 1x1 reduction when the output width differs."""

    def __init__(self, cin: int, cout: int, mlp_ratio: float, drop_path: float = 0.0) -> None:
        super().__init__()
        self.block = GASubBlock(cin, mlp_ratio, drop_path)
        self.reduction = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduction(self.block(x))


class SimVP(nn.Module):
    """Encoder -> gSTA translator -> decoder with skip; forward(x, future) like the recurrent families."""

    def __init__(self, cfg: SimVPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        k, hs = cfg.spatio_kernel, cfg.hid_s
        down, up = _samplings(cfg.n_s), _samplings(cfg.n_s, reverse=True)
        self.enc = nn.ModuleList([ConvSC(cfg.in_channels, hs, k, down=down[0]), *(ConvSC(hs, hs, k, down=s) for s in down[1:])])
        self.dec = nn.ModuleList(ConvSC(hs, hs, k, up=s) for s in up)
        self.readout = nn.Conv2d(hs, cfg.out_channels, 1)
        c_in = cfg.input_len * hs
        widths = [c_in, *([cfg.hid_t] * (cfg.n_t - 1)), c_in] if cfg.n_t > 1 else [c_in, c_in]
        blocks = len(widths) - 1
        # OpenSTL's MidMetaNet: linspace(1e-2, drop_path, blocks) for all but the last, drop_path for the last (plain
        # floats: the model may be built on the meta device).
        drops = [1e-2 + (cfg.drop_path - 1e-2) * i / max(blocks - 1, 1) for i in range(blocks - 1)] + [cfg.drop_path]
        self.translator = nn.Sequential(*(MetaBlock(a, b, cfg.mlp_ratio, d) for a, b, d in zip(widths[:-1], widths[1:], drops)))
        c_out = cfg.output_len * hs
        self.time_out = nn.Conv2d(c_in, c_out, 1) if c_out != c_in else nn.Identity()
        self.skip_out = nn.Conv2d(c_in, c_out, 1) if c_out != c_in else nn.Identity()

    def window(self, x: torch.Tensor) -> torch.Tensor:
        """One pass: (B, input_len, C_in, H, W) -> (B, output_len, C_out, H, W)."""
        b, n, c, h, w = x.shape
        cfg = self.cfg
        feat = x.reshape(b * n, c, h, w)
        skip = feat = self.enc[0](feat)
        for layer in self.enc[1:]:
            feat = layer(feat)
        hh, ww = feat.shape[-2:]
        z = self.time_out(self.translator(feat.reshape(b, n * cfg.hid_s, hh, ww)))
        skip = self.skip_out(skip.reshape(b, n * cfg.hid_s, h, w))
        m = cfg.output_len
        z = z.reshape(b * m, cfg.hid_s, hh, ww)
        for layer in self.dec[:-1]:
            z = layer(z)
        z = self.dec[-1](z + skip.reshape(b * m, cfg.hid_s, h, w))
        return torch.sigmoid(self.readout(z)).reshape(b, m, cfg.out_channels, h, w)

    def forward(
        self,
        x: torch.Tensor,
        future: int = 1,
        target: torch.Tensor | None = None,
        teacher_forcing: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Predict `future` frames after x: the first `future` of one pass, or, for more than output_len, further
        passes on the latest input_len frames (target, teacher_forcing and generator are ignored: no recurrence)."""
        n = self.cfg.input_len
        if future > self.cfg.output_len and self.cfg.in_channels != self.cfg.out_channels:
            raise ValueError("a rollout beyond output_len feeds predictions back: in_channels must equal out_channels")
        frames, outputs, made = x[:, -n:], [], 0
        while made < future:
            pred = self.window(frames)
            outputs.append(pred)
            made += self.cfg.output_len
            if made < future:
                frames = torch.cat([frames, pred], dim=1)[:, -n:]
        return torch.cat(outputs, dim=1)[:, :future]


def _size_multiple(cfg: SimVPConfig) -> int:
    return 2 ** (cfg.n_s // 2)


def _check(where: str, cfg: SimVPConfig, exact: bool) -> SimVPConfig:
    step, (h, w) = _size_multiple(cfg), cfg.frame_size
    if exact and (h % step or w % step):
        raise fail(where, "n_s", f"{cfg.n_s} blocks halve the frame {cfg.n_s // 2} times: {h}x{w} must divide by {step}")
    if cfg.hid_s % 2:
        raise fail(where, "hid_s", f"must be even (GroupNorm of 2 groups), got {cfg.hid_s}")
    return cfg


FAMILY = Family(name="simvp", config=SimVPConfig, model=SimVP, size_multiple=_size_multiple, check=_check)
