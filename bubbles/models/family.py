"""The record a model family exports: everything the config layer, the registry, the training loop and tracking need
to know about it, so that a family is one file plus one line in the registry.

A family module defines a frozen config dataclass whose user-facing fields are `bubbles.params.param(...)` fields
(flat name, help, range; the default lives there only), its nn.Module, and `FAMILY = Family(...)`. Fields named
frame_size, in_channels, out_channels, input_len and output_len (without param metadata) are filled in by the config
layer from the trial's frames, fields and window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from bubbles.training.config import TrainConfig

# Config fields the config layer sets from the trial (not user parameters); a family's config has those it needs.
CONTEXT_FIELDS = ("frame_size", "in_channels", "out_channels", "input_len", "output_len")

# Every family's config has this field; bubbles.models.registry.build_model wraps the family's model in
# bubbles.models.baseline_start.BaselineStart when it is true.
BASELINE_START_HELP = ("start from the baselines: forecast = a learned per-lead blend of persistence (evolution: its own "
                       "advected frame), the training frames' mean and optical flow, fitted by least squares on training "
                       "windows, plus the model's correction (gated, starting at 0): untrained it scores the blend")


@dataclass(frozen=True)
class Progress:
    """Where training stands, for schedules by epoch or by iteration (optimiser steps, counted from 0 over all
    epochs; `iterations` is the planned total)."""

    epoch: int
    epochs: int
    iteration: int
    iterations: int


@dataclass
class ExtraLoss:
    """A training-only loss term: `forward_kwargs` are passed to the model's forward (e.g. a list it appends to), and
    `term()` is called after forward and added to the frame loss (it is already weighted). The reported train loss
    stays the frame loss, comparable across families."""

    forward_kwargs: dict[str, Any]
    term: Callable[[], torch.Tensor]


def _one(cfg: Any) -> int:
    return 1


def _never(cfg: Any) -> bool:
    return False


def _as_is(where: str, cfg: Any, exact: bool) -> Any:
    return cfg


def _no_sampling(cfg: Any, train: TrainConfig, progress: Progress) -> dict[str, Any]:
    return {}


def _no_extra_loss(cfg: Any) -> ExtraLoss | None:
    return None


@dataclass(frozen=True)
class Family:
    """One model family.

    name: the value of `model:`. config: its frozen config dataclass. model: the nn.Module class, built as
    model(config); its forward(x (B, T, C_in, H, W), future, target=None, generator=None, **sampling) returns
    (B, future, C_out, H, W) in [0, 1]. size_multiple(cfg): both frame sides must divide by it. feeds_back(cfg):
    predicted frames become inputs (then the predicted fields must be the input fields). reads: shared training
    parameters that only some families read (teacher_forcing); the others refuse them. check(where, cfg, exact):
    cross-field checks once the trial's sizes are set (exact: the frame size is final, not a square guess); returns
    the config, possibly with values resolved (mode auto). sampling(cfg, train, progress): keyword arguments for the
    training forward at this step (scheduled sampling probabilities). extra_loss(cfg): a training-only loss term,
    or None. advects: see the field.
    """

    name: str
    config: type
    model: Callable[[Any], nn.Module]
    size_multiple: Callable[[Any], int] = _one
    feeds_back: Callable[[Any], bool] = _never
    reads: tuple[str, ...] = ()
    check: Callable[[str, Any, bool], Any] = _as_is
    sampling: Callable[[Any, TrainConfig, Progress], dict[str, Any]] = _no_sampling
    extra_loss: Callable[[Any], ExtraLoss | None] = _no_extra_loss
    # Its frames are the last context frame moved along its motion (untrained: persistence exactly), so the baseline
    # start uses its own frame in place of persistence (bubbles.models.baseline_start).
    advects: bool = False
