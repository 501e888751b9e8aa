"""The straightforward ConvLSTM the speed benchmark compares against (not used by the product).

Written the way the popular public implementations do it: every time step of every layer runs one convolution over
torch.cat([x_t, h_{t-1}]), a Python loop over time, float32, outputs gathered with torch.stack. The parameters have
the same names and shapes as bubbles' ConvLSTM, so one state_dict loads into both and the math can be compared.
"""

from __future__ import annotations

import torch
from torch import nn

from bubbles.models.convlstm import ConvLSTMConfig


class ReferenceCell(nn.Module):
    def __init__(self, in_channels: int, hidden: int, kernel: int, frame_size: tuple[int, int]) -> None:
        super().__init__()
        self.hidden = hidden
        self.conv = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel, padding=kernel // 2)
        self.w_ci = nn.Parameter(torch.zeros(hidden, *frame_size))
        self.w_cf = nn.Parameter(torch.zeros(hidden, *frame_size))
        self.w_co = nn.Parameter(torch.zeros(hidden, *frame_size))

    def step(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        i, f, g, o = torch.chunk(self.conv(torch.cat([x, h], dim=1)), 4, dim=1)
        i = torch.sigmoid(i + self.w_ci * c)
        f = torch.sigmoid(f + self.w_cf * c)
        c = f * c + i * torch.tanh(g)
        o = torch.sigmoid(o + self.w_co * c)
        return o * torch.tanh(c), c


class ReferenceConvLSTM(nn.Module):
    """Same network as bubbles.models.convlstm.ConvLSTM (frame peepholes, seq2seq rollout)."""

    def __init__(self, cfg: ConvLSTMConfig) -> None:
        super().__init__()
        widths = cfg.widths()
        ins = (cfg.in_channels, *widths[:-1])
        self.cells = nn.ModuleList(ReferenceCell(i, h, cfg.kernel, cfg.frame_size) for i, h in zip(ins, widths))
        self.norms = nn.ModuleList(nn.BatchNorm3d(h) for h in widths)
        self.head = nn.Conv2d(widths[-1], cfg.out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, future: int = 1) -> torch.Tensor:
        b, t, _, hgt, wid = x.shape
        seq = x
        states = []
        for cell, norm in zip(self.cells, self.norms):
            h = torch.zeros(b, cell.hidden, hgt, wid)
            c = torch.zeros_like(h)
            outs = []
            for k in range(seq.shape[1]):
                h, c = cell.step(seq[:, k], h, c)
                outs.append(h)
            seq = norm(torch.stack(outs, dim=2)).transpose(1, 2)
            states.append((h, c))
        frames = [torch.sigmoid(self.head(seq[:, -1]))]
        for _ in range(1, future):
            inp = frames[-1]
            for layer, (cell, norm) in enumerate(zip(self.cells, self.norms)):
                h, c = cell.step(inp, *states[layer])
                states[layer] = (h, c)
                inp = norm(h.unsqueeze(2))[:, :, 0]
            frames.append(torch.sigmoid(self.head(inp)))
        return torch.stack(frames, dim=1)
