"""Model families by name: the sweep and the CLI choose one with `model: convlstm | predrnn_v2 | simvp | evolution`.

Each family module exports one record (bubbles.models.family.Family): its config dataclass, model class, size
multiple, feedback and training hooks. Registering a family is one line in FAMILIES; the config layer, the training
loop and tracking walk these records. Every family's forward(x (B, T, C_in, H, W), future, target=None,
generator=None, **sampling) returns (B, future, C_out, H, W) in [0, 1]; each config has label() for run names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bubbles.errors import UserError
from bubbles.models import convlstm, evolution, predrnn_v2, simvp
from bubbles.models.baseline_start import wrap
from bubbles.models.family import Family

FAMILIES: dict[str, Family] = {f.name: f for f in (convlstm.FAMILY, predrnn_v2.FAMILY, simvp.FAMILY, evolution.FAMILY)}

# A family's frozen config dataclass (ConvLSTMConfig, PredRNNv2Config, ...).
ModelConfig = Any

MODELS: dict[str, Callable[[Any], nn.Module]] = {name: f.model for name, f in FAMILIES.items()}


def family_of(cfg: ModelConfig) -> Family:
    """The family whose config class `cfg` is."""
    for family in FAMILIES.values():
        if isinstance(cfg, family.config):
            return family
    raise KeyError(f"no registered family has config {type(cfg).__name__}")


def build_model(name: str, cfg: ModelConfig) -> nn.Module:
    """Instantiate a registered model family from its typed config."""
    if name not in FAMILIES:
        raise KeyError(f"unknown model {name!r} (known: {', '.join(sorted(FAMILIES))})")
    family = FAMILIES[name]
    return wrap(family.model(cfg), cfg, family.advects)


def size_multiple(cfg: ModelConfig) -> int:
    """Both frame sides of the model's inputs must be divisible by this (PredRNN-v2 folds patch x patch pixels into
    channels, SimVP's encoder halves the frame every second block; ConvLSTM takes any size)."""
    return family_of(cfg).size_multiple(cfg)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_state_shapes(name: str, cfg: ModelConfig, state: object, where: str) -> None:
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
