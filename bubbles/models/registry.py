"""Models by name: the sweep and the CLI choose a family with `model: convlstm`; room for predrnn and others."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from bubbles.models.convlstm import ConvLSTM, ConvLSTMConfig

MODELS: dict[str, Callable[[ConvLSTMConfig], nn.Module]] = {"convlstm": ConvLSTM}


def build_model(name: str, cfg: ConvLSTMConfig) -> nn.Module:
    """Instantiate a registered model family from its typed config."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r} (known: {', '.join(sorted(MODELS))})")
    return MODELS[name](cfg)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
