"""Optimisers and learning-rate schedules, chosen by name from two tables (OPTIMIZERS, SCHEDULES).

Both are trial parameters (`optimizer`, `lr_schedule`, with `momentum` and `warmup`), so a search space can search
them like any other. A new optimiser or schedule is one entry here: the config's choices and help read the tables.
Schedules step once per optimiser step; their state is saved in checkpoint.pt, so a resumed trial continues its
schedule where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from bubbles.errors import UserError

Params = Iterable[torch.nn.Parameter]


@dataclass(frozen=True)
class Optimizer:
    """make(parameters, train) -> a torch optimiser, from the trial's training config (lr, weight_decay, momentum)."""

    make: Callable[[Params, Any], torch.optim.Optimizer]
    help: str


@dataclass(frozen=True)
class Schedule:
    """make(optimizer, train, total_steps) -> a scheduler stepped after every optimiser step, or None (constant)."""

    make: Callable[[torch.optim.Optimizer, Any, int], Any]
    help: str


OPTIMIZERS: dict[str, Optimizer] = {
    "adam": Optimizer(lambda p, c: torch.optim.Adam(p, lr=c.lr, weight_decay=c.weight_decay),
                      "Adam, weight_decay as L2 in the gradient (the seed's)"),
    "adamw": Optimizer(lambda p, c: torch.optim.AdamW(p, lr=c.lr, weight_decay=c.weight_decay),
                       "AdamW, decoupled weight_decay"),
    "sgd": Optimizer(lambda p, c: torch.optim.SGD(p, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay),
                     "SGD with momentum (the `momentum` parameter)"),
}


def _warmup_cosine(optimizer: torch.optim.Optimizer, train: Any, total: int) -> Any:
    warm = int(round(train.warmup * total))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm  # linear warm-up from lr/warm to lr
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _anneal(start: float, end: float, progress: float) -> float:
    """Cosine from `start` (progress 0) to `end` (progress 1)."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _one_cycle(optimizer: torch.optim.Optimizer, train: Any, total: int) -> Any:
    # Smith's one cycle as torch's OneCycleLR draws it (lr/25 up to lr, then down to lr/25e4, cosine both ways), as a
    # LambdaLR: any number of steps (OneCycleLR divides by zero below 4), and the LR only, for every optimiser.
    warm = max(1, int(round(train.warmup * total)))

    def factor(step: int) -> float:
        if step < warm:
            return _anneal(1 / 25, 1.0, step / warm)
        return _anneal(1.0, 1 / 25e4, (step - warm) / max(1, total - warm))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


SCHEDULES: dict[str, Schedule] = {
    "constant": Schedule(lambda o, c, n: None, "lr throughout (the seed's)"),
    "cosine": Schedule(_warmup_cosine, "linear warm-up over the `warmup` fraction of steps, then cosine decay to 0"),
    "onecycle": Schedule(_one_cycle, "one cycle: from lr/25 up to lr over the `warmup` fraction of steps, then "
                                     "cosine annealing to lr/25e4 (as torch's OneCycleLR, lr only)"),
}


def _named(table: dict[str, Any], what: str, name: str) -> Any:
    try:
        return table[name]
    except KeyError:
        raise UserError(f"{what} {name!r}: unknown; the {what}s are {', '.join(table)}") from None


def make_optimizer(parameters: Params, train: Any) -> torch.optim.Optimizer:
    """The trial's optimiser (train.optimizer names it)."""
    return _named(OPTIMIZERS, "optimizer", train.optimizer).make(parameters, train)


def make_schedule(optimizer: torch.optim.Optimizer, train: Any, total_steps: int) -> Any:
    """The trial's learning-rate schedule over `total_steps` optimiser steps, or None for a constant rate."""
    return _named(SCHEDULES, "lr_schedule", train.lr_schedule).make(optimizer, train, total_steps)


def table_help(table: dict[str, Any]) -> str:
    """'name (help) | name (help) …' for a parameter's help text."""
    return " | ".join(f"{name} ({entry.help})" for name, entry in table.items())
