"""The ConvLSTM of the user's research log: peephole ConvLSTM cells, BatchNorm3d between layers, a 3x3 output conv.

Tensor layout everywhere: (B, T, C, H, W). The cell's gate convolution is one Conv2d over [x, h] (the seed's
parameters, 10,178,497 for 3 x 64 kernels of 3x3 with frame peepholes at 128x128); for speed its weight is applied in
two parts, the input part to all T frames in one batched call outside the time loop (as cuDNN LSTMs do for their
input projections) and the hidden part inside it. Both give the same sums as the single conv.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from bubbles.models.family import BASELINE_START_HELP, Family, Progress
from bubbles.models.norms import WarmBatchNorm3d
from bubbles.models.patches import from_patches, to_patches
from bubbles.params import fail, param, parse_int

if TYPE_CHECKING:
    from bubbles.training.config import TrainConfig

Peephole = Literal["frame", "channel", "none"]
Mode = Literal["seq2one", "seq2seq"]
Norm = Literal["batch", "group", "layer", "none"]
State = tuple[torch.Tensor, torch.Tensor]


def _widths(where: str, key: str, value: Any) -> tuple[int, ...]:
    """One width or a list of widths (one per layer; the count is checked against layers in _check)."""
    raw = value if isinstance(value, (list, tuple)) else [value]
    return tuple(parse_int(where, key, h, 1) for h in raw)


@dataclass(frozen=True)
class ConvLSTMConfig:
    """Architecture. hidden: one width for every layer, or one per layer. peephole: Hadamard weights W_ci, W_cf,
    W_co of shape (hidden, H, W) ("frame", the seed, bound to the frame size), (hidden, 1, 1) ("channel",
    size-free) or none. mode: seq2one (N -> next frame) or seq2seq (encoder-forecaster rolling out M frames); auto
    is resolved by the trial config (seq2one when output_len is 1; a model built from an unresolved config is
    seq2one). norm after each layer: batch (BatchNorm3d, the seed; in seq2seq the encoder pass and the rollout
    steps each have their own, so eval-mode running statistics never mix the two), group (GroupNorm of up to 8
    groups per frame), layer (GroupNorm with one group: normalised over C, H, W per frame), none. group and layer
    use no batch statistics, so train and eval mode compute the same thing. patch: the cells run on frames cut into
    patch x patch tiles folded into channels (OpenSTL's ConvLSTM, patch 4 in its benchmarks: 1/patch² the pixels per
    step; the peepholes and the head work at that resolution). in_channels / out_channels: fields in and out
    (seq2seq feeds each predicted frame back as the next input, so it needs them equal)."""

    layers: int = param(3, "layers", "ConvLSTM layers", low=1)
    hidden: tuple[int, ...] = param((64,), "hidden", "kernels per layer: one value or a list per layer", parse=_widths)
    kernel: int = param(3, "kernel", "gate convolution kernel size (odd)", odd=True)
    peephole: Peephole = param("frame", "peephole", "peephole weights: frame (hidden x H x W, the seed) | channel | none")
    mode: Literal["auto"] | Mode = param("auto", "mode", "seq2one | seq2seq | auto (seq2one when output_len is 1)")
    norm: Norm = param("batch", "norm", "normalisation after each layer: batch (the seed; separate statistics for the "
                       "seq2seq rollout) | group | layer | none")
    patch: int = param(1, "patch", "frames cut into patch x patch tiles folded into channels (must divide H and W); "
                       "convlstm: 1 (the seed), predrnn_v2: 4", low=1)
    baseline_start: bool = param(False, "baseline_start", BASELINE_START_HELP)
    in_channels: int = 1
    out_channels: int = 1
    frame_size: tuple[int, int] = (128, 128)
    output_len: int = 1

    def widths(self) -> tuple[int, ...]:
        return self.hidden * self.layers if len(self.hidden) == 1 else self.hidden

    def rollout(self) -> bool:
        """seq2seq (an unresolved auto builds seq2one)."""
        return self.mode == "seq2seq"

    def label(self) -> str:
        """Short name for run names and cards, e.g. 'L3-h64'."""
        widths = self.widths()
        patch = f"-p{self.patch}" if self.patch > 1 else ""
        return f"L{self.layers}-h{'-'.join(map(str, widths)) if len(set(widths)) > 1 else widths[0]}{patch}"


def lstm_pointwise(
    gates: torch.Tensor, c_prev: torch.Tensor, w_ci: torch.Tensor | None, w_cf: torch.Tensor | None, w_co: torch.Tensor | None
) -> State:
    """The element-wise half of a step: gates (B, 4*hidden, H, W) and c_{t-1} -> (h_t, c_t)."""
    i, f, g, o = gates.chunk(4, dim=1)
    if w_ci is not None:
        i = i + w_ci * c_prev
        f = f + w_cf * c_prev
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    if w_co is not None:
        o = o + w_co * c
    return torch.sigmoid(o) * torch.tanh(c), c


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer: gates from a kxk conv over [x, h]; i and f peep at c_{t-1}, o at c_t."""

    def __init__(self, in_channels: int, hidden: int, kernel: int, peephole: Peephole, frame_size: tuple[int, int]) -> None:
        super().__init__()
        self.in_channels, self.hidden = in_channels, hidden
        self.conv = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel, padding=kernel // 2)
        shape = {"frame": (hidden, *frame_size), "channel": (hidden, 1, 1)}.get(peephole)
        if shape is None:
            self.w_ci = self.w_cf = self.w_co = None
        else:
            # Zeros, not torch.empty: the public implementation left these uninitialised (garbage, sometimes NaN).
            self.w_ci = nn.Parameter(torch.zeros(shape))
            self.w_cf = nn.Parameter(torch.zeros(shape))
            self.w_co = nn.Parameter(torch.zeros(shape))

    def project_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Input part of the gate conv for one frame (B, C, H, W) or all frames at once (B, T, C, H, W)."""
        w_x = self.conv.weight[:, : self.in_channels]
        if x.dim() == 4:
            return F.conv2d(x, w_x, self.conv.bias, padding=self.conv.padding)
        b, t = x.shape[:2]
        out = F.conv2d(x.reshape(b * t, *x.shape[2:]), w_x, self.conv.bias, padding=self.conv.padding)
        return out.reshape(b, t, *out.shape[1:])

    def hidden_weight(self) -> torch.Tensor:
        """The hidden part of the gate conv's weight; slice it once per sequence, not once per step (each slice
        costs a full-size gradient buffer in backward)."""
        return self.conv.weight[:, self.in_channels :]

    def step(self, gates_x: torch.Tensor, state: State | None, w_h: torch.Tensor | None = None) -> State:
        """One time step from the projected input (B, 4*hidden, H, W) and the previous (h, c)."""
        if state is None:
            gates, c_prev = gates_x, torch.zeros_like(gates_x[:, : self.hidden])
        else:
            h_prev, c_prev = state
            w_h = self.hidden_weight() if w_h is None else w_h
            gates = gates_x + F.conv2d(h_prev, w_h, padding=self.conv.padding)
        return lstm_pointwise(gates, c_prev, self.w_ci, self.w_cf, self.w_co)

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Run over a sequence (B, T, C, H, W); returns every h (B, T, hidden, H, W) and the last state."""
        w_h = self.hidden_weight()
        hs = []
        # unbind, not gates_x[:, t]: each indexing op's backward would zero-fill a buffer of the whole sequence.
        for gates_t in self.project_inputs(x).unbind(1):
            state = self.step(gates_t, state, w_h)
            hs.append(state[0])
        assert state is not None
        return torch.stack(hs, dim=1), state


def make_norm(kind: Norm, channels: int) -> nn.Module:
    """The normalisation after a layer: BatchNorm3d (statistics per channel over batch, time and space), GroupNorm
    per frame (group: up to 8 groups; layer: one group), or identity."""
    if kind == "batch":
        return WarmBatchNorm3d(channels)  # running statistics from the first batch: lead 1 was flat grey in eval
    if kind == "none":
        return nn.Identity()
    groups = 1 if kind == "layer" else max(g for g in range(1, min(8, channels) + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def apply_norm(norm: nn.Module, seq: torch.Tensor) -> torch.Tensor:
    """Apply a make_norm module to (B, T, C, H, W)."""
    if isinstance(norm, nn.BatchNorm3d):
        return norm(seq.transpose(1, 2)).transpose(1, 2)
    if isinstance(norm, nn.GroupNorm):
        return norm(seq.flatten(0, 1)).reshape(seq.shape)
    return seq


class ConvLSTM(nn.Module):
    """Stacked ConvLSTM layers, each followed by a normalisation (BatchNorm3d in the seed), and a 3x3 conv + sigmoid
    to frames in [0, 1]."""

    def __init__(self, cfg: ConvLSTMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        widths = cfg.widths()
        if cfg.rollout() and cfg.in_channels != cfg.out_channels:
            raise ValueError(f"seq2seq feeds predictions back: in_channels {cfg.in_channels} != out_channels {cfg.out_channels}")
        p = cfg.patch
        size = (cfg.frame_size[0] // p, cfg.frame_size[1] // p)
        ins = (cfg.in_channels * p * p, *widths[:-1])
        self.cells = nn.ModuleList(ConvLSTMCell(i, h, cfg.kernel, cfg.peephole, size) for i, h in zip(ins, widths))
        self.norms = nn.ModuleList(make_norm(cfg.norm, h) for h in widths)
        # The rollout feeds one frame at a time: its batch statistics differ from the encoder pass over T frames,
        # and running statistics shared by both served neither in eval mode (lead 1 became the worst lead).
        separate = cfg.rollout() and cfg.norm == "batch"
        self.rollout_norms = nn.ModuleList(make_norm(cfg.norm, h) for h in widths) if separate else None
        self.head = nn.Conv2d(widths[-1], cfg.out_channels * p * p, 3, padding=1)

    def _frame(self, top: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(top))

    def forward(
        self,
        x: torch.Tensor,
        future: int = 1,
        target: torch.Tensor | None = None,
        teacher_forcing: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Predict `future` frames after the input x (B, T, C_in, H, W); returns (B, future, C_out, H, W) in [0, 1].

        seq2one predicts the next frame from the last top-layer state (future must be 1). seq2seq keeps the layer
        states after encoding and rolls out: each predicted frame is the next input, or, with probability
        `teacher_forcing` per step (scheduled sampling, training only), the true frame from `target`.
        """
        p = self.cfg.patch
        seq = to_patches(x, p)
        states: list[State] = []
        for cell, norm in zip(self.cells, self.norms):
            seq, state = cell(seq)
            seq = apply_norm(norm, seq)
            states.append(state)
        outputs = [self._frame(seq[:, -1])]
        if not self.cfg.rollout():
            if future != 1:
                raise ValueError("seq2one predicts exactly one frame; use mode seq2seq for longer horizons")
            return from_patches(outputs[0].unsqueeze(1), p)
        hidden_weights = [cell.hidden_weight() for cell in self.cells]
        rollout_norms = self.rollout_norms if self.rollout_norms is not None else self.norms
        truth = to_patches(target, p).unbind(1) if target is not None and teacher_forcing > 0 else None
        for k in range(1, future):
            inp = outputs[-1]
            if truth is not None and torch.rand((), generator=generator).item() < teacher_forcing:
                inp = truth[k - 1]
            for layer, (cell, norm) in enumerate(zip(self.cells, rollout_norms)):
                states[layer] = cell.step(cell.project_inputs(inp), states[layer], hidden_weights[layer])
                inp = apply_norm(norm, states[layer][0].unsqueeze(1)).squeeze(1)
            outputs.append(self._frame(inp))
        return from_patches(torch.stack(outputs, dim=1), p)


def _check(where: str, cfg: ConvLSTMConfig, exact: bool) -> ConvLSTMConfig:
    """mode auto resolved by output_len; one width per layer."""
    mode = cfg.mode if cfg.mode != "auto" else ("seq2one" if cfg.output_len == 1 else "seq2seq")
    if mode == "seq2one" and cfg.output_len != 1:
        raise fail(where, "mode", f"seq2one predicts one frame but output_len is {cfg.output_len} (use seq2seq)")
    h, w = cfg.frame_size
    if exact and (h % cfg.patch or w % cfg.patch):
        raise fail(where, "patch", f"must divide the frame size {h}x{w}, got {cfg.patch}")
    if len(cfg.hidden) not in (1, cfg.layers):
        raise fail(where, "hidden", f"give one width or {cfg.layers} (one per layer), got {len(cfg.hidden)}")
    return replace(cfg, mode=mode, hidden=cfg.widths())


def _teacher_forcing(cfg: ConvLSTMConfig, train: TrainConfig, progress: Progress) -> dict[str, Any]:
    """Scheduled sampling of the seq2seq rollout: the true frame with probability teacher_forcing, decaying
    linearly to 0 over the epochs."""
    return {"teacher_forcing": train.teacher_forcing * max(0.0, 1.0 - progress.epoch / progress.epochs)}


FAMILY = Family(
    name="convlstm",
    config=ConvLSTMConfig,
    model=ConvLSTM,
    size_multiple=lambda cfg: cfg.patch,
    feeds_back=ConvLSTMConfig.rollout,
    reads=("teacher_forcing",),
    check=_check,
    sampling=_teacher_forcing,
)
