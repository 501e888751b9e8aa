"""Models by name: the sweep and the CLI choose a family with `model: convlstm | predrnn_v2 | simvp | evolution`.

Every family takes its own frozen config (with in_channels / out_channels: the fields read and predicted) and has
forward(x (B, T, C_in, H, W), future, target=None, teacher_forcing=0.0, generator=None) -> (B, future, C_out, H, W)
in [0, 1]; each config has label() for run names and cards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

import torch
from torch import nn

from bubbles.errors import UserError

from bubbles.models.convlstm import ConvLSTM, ConvLSTMConfig
from bubbles.models.evolution import Evolution, EvolutionConfig
from bubbles.models.predrnn_v2 import PredRNNv2, PredRNNv2Config
from bubbles.models.simvp import SimVP, SimVPConfig

ModelConfig = Union[ConvLSTMConfig, PredRNNv2Config, SimVPConfig, EvolutionConfig]

MODELS: dict[str, Callable[[Any], nn.Module]] = {"convlstm": ConvLSTM, "predrnn_v2": PredRNNv2, "simvp": SimVP, "evolution": Evolution}


def build_model(name: str, cfg: ModelConfig) -> nn.Module:
    """Instantiate a registered model family from its typed config."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r} (known: {', '.join(sorted(MODELS))})")
    return MODELS[name](cfg)


def size_multiple(cfg: ModelConfig) -> int:
    """Both frame sides of the model's inputs must be divisible by this: PredRNN-v2 folds patch x patch pixels into
    channels, SimVP's encoder halves the frame every second block; ConvLSTM takes any size."""
    if isinstance(cfg, PredRNNv2Config):
        return cfg.patch
    if isinstance(cfg, SimVPConfig):
        return 2 ** (cfg.n_s // 2)
    return 1


def predict_with_motion(model: nn.Module, x: torch.Tensor, future: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Predictions and, for a family that moves its frames (evolution), the motion fields (B, future, 2, H, W) in
    pixels per frame that moved them; None for the families that paint every pixel afresh."""
    if isinstance(model, Evolution):
        return model.rollout(x, future)
    return model(x, future=future), None


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
