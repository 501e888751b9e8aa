"""Models by name: the sweep and the CLI choose a family with `model: convlstm`; room for predrnn and others."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from bubbles.errors import UserError

from bubbles.models.convlstm import ConvLSTM, ConvLSTMConfig

MODELS: dict[str, Callable[[ConvLSTMConfig], nn.Module]] = {"convlstm": ConvLSTM}


def build_model(name: str, cfg: ConvLSTMConfig) -> nn.Module:
    """Instantiate a registered model family from its typed config."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r} (known: {', '.join(sorted(MODELS))})")
    return MODELS[name](cfg)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_state_shapes(name: str, cfg: ConvLSTMConfig, state: object, where: str) -> None:
    """Refuse, in one line, saved weights that do not fit this config. The config's model is built on the meta
    device, so an edited config (image_size 20000) allocates nothing before the mismatch is found."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{where}: the saved weights are not a mapping of names to tensors")
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_model(name, cfg).state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    bad = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
    if bad:
        raise UserError(f"{where}: weights saved for another architecture ({bad[0]}: config {expected.get(bad[0])}, "
                        f"saved {found.get(bad[0])})")
