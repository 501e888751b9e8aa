"""Where a model runs: the one answer every path that runs a model (training, validation, the yardstick, the
test-split pass, predict) asks, so that inputs always go where the weights are."""

from __future__ import annotations

import itertools

import torch
from torch import nn


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's weights: its first parameter's, else its first buffer's, else the CPU (a model
    without weights, such as a baseline written as a module)."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")
