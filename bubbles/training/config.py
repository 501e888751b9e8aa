"""The training section of a trial config (kept apart from train.py so configs import no training code)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Loss = Literal["mse_sum", "mse_mean", "l1", "mse+ssim", "mse+gdl"]
Device = Literal["auto", "cpu", "cuda"]
AMP = Literal["auto", "off"]
# The epoch metric that picks best.pt. A sweep sets it to its objective, so that the leaderboard, the evaluation
# of best.pt, the export and the registry all speak of the same weights.
# val_*: the trial's own windows, leads and size (not comparable across windows and sizes); yardstick_*: the
# study's protocol (bubbles.evaluation.yardstick), the same frames for every trial; yardstick_skill is against the
# strongest baseline.
BestBy = Literal["val_mse", "val_ssim", "val_psnr", "val_skill_persistence", "val_bubble_f1",
                 "yardstick_ssim", "yardstick_mse", "yardstick_psnr", "yardstick_bubble_f1", "yardstick_skill"]


def best_by_mode(metric: str) -> str:
    """'min' for the MSEs, 'max' for the others."""
    return "min" if metric in ("val_mse", "yardstick_mse") else "max"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and run settings. loss mse_sum is the seed's (sum over batch and pixels); mse+ssim is
    mse_mean + 0.5 * (1 - SSIM); mse+gdl is mse_mean + gdl_weight * gradient-difference loss (Mathieu et al. 2016). max_*_windows subsample windows evenly (0 = all); collapse_stop_epoch stops a
    collapsed trial at or after that epoch (0 = never). best_by: the epoch metric that picks best.pt."""

    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 4
    loss: Loss = "mse_sum"
    gdl_weight: float = 0.1
    grad_clip: float = 0.0
    seed: int = 0
    teacher_forcing: float = 0.0
    device: Device = "auto"
    amp: AMP = "auto"
    max_train_windows: int = 0
    max_val_windows: int = 0
    workers: int = 0
    collapse_stop_epoch: int = 0
    best_by: BestBy = "val_mse"
