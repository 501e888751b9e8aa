"""The training section of a trial config (kept apart from train.py so configs import no training code)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Loss = Literal["mse_sum", "mse_mean", "l1", "mse+ssim"]
Device = Literal["auto", "cpu", "cuda"]
AMP = Literal["auto", "off"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and run settings. loss mse_sum is the seed's (sum over batch and pixels); mse+ssim is
    mse_mean + 0.5 * (1 - SSIM). max_*_windows subsample windows evenly (0 = all); collapse_stop_epoch stops a
    collapsed trial at or after that epoch (0 = never)."""

    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 4
    loss: Loss = "mse_sum"
    grad_clip: float = 0.0
    seed: int = 0
    teacher_forcing: float = 0.0
    device: Device = "auto"
    amp: AMP = "auto"
    max_train_windows: int = 0
    max_val_windows: int = 0
    workers: int = 0
    collapse_stop_epoch: int = 0
