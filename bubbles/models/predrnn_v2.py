"""PredRNN-v2 (Wang et al., TPAMI 2022): stacked ST-LSTM cells with a zig-zag spatiotemporal memory M that flows up
the layers within a step and from the top layer back to the bottom at the next step, the memory-decoupling terms,
reverse scheduled sampling and patch reshaping (frames folded into patch² * C channels).

Layout (B, T, C, H, W) like every model here. The model only returns what the decoupling loss needs (the adapted,
normalised increments of C and M per layer and step, when asked for a list); the loss is in bubbles/training.
As OpenSTL's PredRNNv2_Model: gate convolutions without biases (also under LayerNorm), the raw 1x1-conv output fed
back as the next input, and reverse scheduled sampling by iteration (reserve_schedule_sampling_exp; see _sampling).
Deliberate departures: in eval mode the frames returned are clipped to [0, 1] like the other families' (training
returns OpenSTL's raw output, so the loss and its gradients are OpenSTL's); training losses are taken on the M
predicted frames only (OpenSTL also scores the reconstruction of input frames 2..N).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from bubbles.models.family import BASELINE_START_HELP, ExtraLoss, Family, Progress
from bubbles.models.patches import from_patches, to_patches
from bubbles.params import fail, param

if TYPE_CHECKING:
    from bubbles.training.config import TrainConfig

FORGET_BIAS = 1.0  # OpenSTL's and the paper's


@dataclass(frozen=True)
class PredRNNv2Config:
    """Architecture. hidden: the width of every layer (one width: the spatiotemporal memory crosses layers); kernel: the gate convolutions' size;
    patch: frames are cut into patch x patch tiles folded into channels (H and W must divide); layer_norm: LayerNorm
    after each gate convolution (the convolutions have no biases either way, as in OpenSTL); decouple_beta: weight
    of the memory-decoupling loss. Sampling while training, by iteration (OpenSTL's defaults): with reverse_sampling
    the encoder gets the true frame with probability 0.5 until sampling_start, rising to 1 as 1 - 0.5 exp(-(i -
    start) / sampling_alpha) until sampling_end, and the forecaster the true frame with probability 0.5 falling
    linearly to 0 over the same span; without it, the encoder always gets the true frames and the forecaster the
    true frame with probability 1 falling linearly to 0 at sampling_end (OpenSTL's schedule_sampling). sampling_end
    0 turns sampling off. in_channels / out_channels: fields in and out (it feeds its frames back as inputs, so beyond one predicted frame
    or with scheduled sampling they must be equal)."""

    layers: int = param(4, "st_layers", "PredRNN-v2: ST-LSTM layers", low=1)
    hidden: int = param(128, "st_hidden", "PredRNN-v2: width of every ST-LSTM layer", low=1)
    kernel: int = param(5, "st_kernel", "PredRNN-v2: gate convolution kernel size (odd)", odd=True)
    patch: int = param(4, "patch", "frames cut into patch x patch tiles folded into channels (must divide H and W); "
                       "convlstm: 1 (the seed), predrnn_v2: 4", low=1)
    layer_norm: bool = param(False, "st_layer_norm", "PredRNN-v2: LayerNorm after each gate convolution")
    decouple_beta: float = param(0.1, "decouple_beta", "PredRNN-v2: weight of the memory-decoupling loss")
    reverse_sampling: bool = param(True, "reverse_sampling", "PredRNN-v2: reverse scheduled sampling (the paper's): the "
                                   "encoder's true-frame probability rises 0.5 -> 1, the forecaster's falls 0.5 -> 0; "
                                   "false: the forecaster's falls 1 -> 0, the encoder always sees true frames")
    sampling_start: int = param(25000, "sampling_start", "PredRNN-v2: training iteration where the sampling "
                                "probabilities start to move (reverse sampling)", low=0)
    sampling_end: int = param(50000, "sampling_end", "PredRNN-v2: training iteration where the encoder's true-frame "
                              "probability is 1 and the forecaster's 0; 0 = no sampling", low=0)
    sampling_alpha: float = param(5000.0, "sampling_alpha", "PredRNN-v2: iterations of the encoder's exponential rise "
                                  "to 1 (reverse sampling)", low=1.0, high=1e9)
    baseline_start: bool = param(False, "baseline_start", BASELINE_START_HELP)
    in_channels: int = 1
    out_channels: int = 1
    frame_size: tuple[int, int] = (64, 64)
    output_len: int = 1  # the trial's horizon: the baseline start has one blend per lead (the model rolls out any)

    def label(self) -> str:
        """Short name for run names and cards."""
        return f"L{self.layers}-h{self.hidden}-k{self.kernel}-p{self.patch}"


def _gate_conv(cin: int, cout: int, kernel: int, size: tuple[int, int], layer_norm: bool) -> nn.Module:
    conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
    return nn.Sequential(conv, nn.LayerNorm([cout, *size])) if layer_norm else conv


class STLSTMCell(nn.Module):
    """One ST-LSTM v2 layer: a temporal memory c (from the same layer at t-1) and the spatiotemporal memory m (from
    the layer below, or the top layer at t-1), each with its own input and forget gates; the output gate sees both."""

    def __init__(self, in_channels: int, hidden: int, kernel: int, size: tuple[int, int], layer_norm: bool) -> None:
        super().__init__()
        self.hidden = hidden
        self.conv_x = _gate_conv(in_channels, 7 * hidden, kernel, size, layer_norm)
        self.conv_h = _gate_conv(hidden, 4 * hidden, kernel, size, layer_norm)
        self.conv_m = _gate_conv(hidden, 3 * hidden, kernel, size, layer_norm)
        self.conv_o = _gate_conv(2 * hidden, hidden, kernel, size, layer_norm)
        self.conv_last = nn.Conv2d(2 * hidden, hidden, 1, bias=False)

    def forward(
        self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, m: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step; returns (h, c, m, delta_c, delta_m), the deltas being what the decoupling loss compares."""
        i_x, f_x, g_x, i_xm, f_xm, g_xm, o_x = self.conv_x(x).chunk(7, dim=1)
        i_h, f_h, g_h, o_h = self.conv_h(h).chunk(4, dim=1)
        i_m, f_m, g_m = self.conv_m(m).chunk(3, dim=1)
        delta_c = torch.sigmoid(i_x + i_h) * torch.tanh(g_x + g_h)
        c = torch.sigmoid(f_x + f_h + FORGET_BIAS) * c + delta_c
        delta_m = torch.sigmoid(i_xm + i_m) * torch.tanh(g_xm + g_m)
        m = torch.sigmoid(f_xm + f_m + FORGET_BIAS) * m + delta_m
        mem = torch.cat([c, m], dim=1)
        o = torch.sigmoid(o_x + o_h + self.conv_o(mem))
        return o * torch.tanh(self.conv_last(mem)), c, m, delta_c, delta_m


class PredRNNv2(nn.Module):
    """Stacked ST-LSTM v2 cells, a 1x1 conv to the (patched) frame, and the 1x1 adapter of the decoupling loss."""

    def __init__(self, cfg: PredRNNv2Config) -> None:
        super().__init__()
        self.cfg = cfg
        widths = (cfg.hidden,) * cfg.layers
        size = (cfg.frame_size[0] // cfg.patch, cfg.frame_size[1] // cfg.patch)
        ins = (cfg.in_channels * cfg.patch**2, *widths[:-1])
        self.cells = nn.ModuleList(STLSTMCell(i, h, cfg.kernel, size, cfg.layer_norm) for i, h in zip(ins, widths))
        self.conv_last = nn.Conv2d(widths[-1], cfg.out_channels * cfg.patch**2, 1, bias=False)
        self.adapter = nn.Conv2d(cfg.hidden, cfg.hidden, 1, bias=False)  # one for every layer, as in OpenSTL

    def _mask(self, p: float, batch: int, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
        """Per-sample Bernoulli(p) of 'use the true frame', broadcast over the frame."""
        draw = torch.rand(batch, generator=generator) < p
        return draw.to(like.device, like.dtype).view(batch, 1, 1, 1)

    def forward(
        self,
        x: torch.Tensor,
        future: int = 1,
        target: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        encoder_truth: float = 1.0,
        forecast_truth: float = 0.0,
        deltas: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """Predict `future` frames after x (B, T, C_in, H, W); returns (B, future, C_out, H, W): OpenSTL's raw
        output while training, clipped to [0, 1] in eval mode.

        Each step's raw output is the next step's input in the forecast. While training, input frames 2..N are, per
        sample and step, the true frame with probability `encoder_truth` or else the model's own prediction of it
        (reverse scheduled sampling), and forecast inputs the true frame from `target` with probability
        `forecast_truth`. If `deltas` is a list, the adapted, normalised (delta_c, delta_m) of every layer and step
        are appended to it, shaped (B, hidden, H*W)."""
        p = self.cfg.patch
        frames = to_patches(x, p)
        sampling = self.training and (encoder_truth < 1.0 or (forecast_truth > 0.0 and target is not None))
        truth = to_patches(target, p) if sampling and target is not None else None
        if self.cfg.in_channels != self.cfg.out_channels and (future > 1 or sampling):
            raise ValueError("PredRNN-v2 feeds its frames back: in_channels must equal out_channels here")
        inputs = frames.unbind(1)  # a Python-length list: tracing records no shape-dependent branch
        b, t_in = frames.shape[0], len(inputs)
        h = [frames.new_zeros(b, self.cfg.hidden, *frames.shape[3:]) for _ in self.cells]
        c = [z.clone() for z in h]
        m = h[0].clone()
        outputs: list[torch.Tensor] = []
        for step in range(t_in + future - 1):
            if step < t_in:
                inp = inputs[step]
                if sampling and step > 0 and encoder_truth < 1.0:
                    keep = self._mask(encoder_truth, b, generator, inp)
                    inp = keep * inp + (1 - keep) * outputs[-1]
            else:
                inp = outputs[-1]
                if truth is not None and forecast_truth > 0.0:
                    keep = self._mask(forecast_truth, b, generator, inp)
                    inp = keep * truth[:, step - t_in] + (1 - keep) * inp
            for layer, cell in enumerate(self.cells):
                below = inp if layer == 0 else h[layer - 1]
                h[layer], c[layer], m, d_c, d_m = cell(below, h[layer], c[layer], m)
                if deltas is not None:
                    deltas.append((F.normalize(self.adapter(d_c).flatten(2), dim=2), F.normalize(self.adapter(d_m).flatten(2), dim=2)))
            outputs.append(self.conv_last(h[-1]))
        frames_out = from_patches(torch.stack(outputs[t_in - 1 :], dim=1), p)
        return frames_out if self.training else frames_out.clamp(0.0, 1.0)


def decouple_loss(deltas: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """The memory decoupling: mean |cosine| between the adapted increments of the temporal memory C and the
    spatiotemporal memory M, per channel over space, every layer and step (0 when they point apart)."""
    return torch.stack([F.cosine_similarity(d_c.float(), d_m.float(), dim=2).abs().mean() for d_c, d_m in deltas]).mean()


def _decoupling(cfg: PredRNNv2Config) -> ExtraLoss | None:
    """decouple_beta * decouple_loss over the increments forward appends to `deltas`."""
    if cfg.decouple_beta <= 0:
        return None
    deltas: list[tuple[torch.Tensor, torch.Tensor]] = []
    return ExtraLoss({"deltas": deltas}, lambda: cfg.decouple_beta * decouple_loss(deltas))


def sampling_probabilities(cfg: PredRNNv2Config, iteration: int) -> tuple[float, float]:
    """(encoder, forecaster) probabilities of the true frame at a training iteration: OpenSTL's
    reserve_schedule_sampling_exp with reverse_sampling, else its schedule_sampling (1 falling to 0 at
    sampling_end)."""
    start, end, i = cfg.sampling_start, cfg.sampling_end, iteration
    if end == 0:
        return 1.0, 0.0
    if not cfg.reverse_sampling:
        return 1.0, max(0.0, 1.0 - i / end)
    if i < start:
        return 0.5, 0.5
    if i < end:
        return 1.0 - 0.5 * math.exp(-(i - start) / cfg.sampling_alpha), 0.5 - 0.5 * (i - start) / (end - start)
    return 1.0, 0.0


def _sampling(cfg: PredRNNv2Config, train: TrainConfig, progress: Progress) -> dict[str, Any]:
    """The training forward's sampling probabilities at this iteration (independent of teacher_forcing)."""
    encoder, forecast = sampling_probabilities(cfg, progress.iteration)
    return {"encoder_truth": encoder, "forecast_truth": forecast}


def _check(where: str, cfg: PredRNNv2Config, exact: bool) -> PredRNNv2Config:
    h, w = cfg.frame_size
    if exact and (h % cfg.patch or w % cfg.patch):
        raise fail(where, "patch", f"must divide the frame size {h}x{w}, got {cfg.patch}")
    if cfg.sampling_end and cfg.reverse_sampling and cfg.sampling_start > cfg.sampling_end:
        raise fail(where, "sampling_start", f"must be <= sampling_end {cfg.sampling_end}, got {cfg.sampling_start}")
    return cfg


FAMILY = Family(
    name="predrnn_v2",
    config=PredRNNv2Config,
    model=PredRNNv2,
    size_multiple=lambda cfg: cfg.patch,
    feeds_back=lambda cfg: True,
    check=_check,
    sampling=_sampling,
    extra_loss=_decoupling,
)
