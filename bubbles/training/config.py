"""The training section of a trial config (kept apart from train.py so configs import no training code)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bubbles.params import MAX_SEED, param
from bubbles.training.losses import LOSSES
from bubbles.training.optim import OPTIMIZERS, SCHEDULES, table_help

Device = Literal["auto", "cpu", "cuda"]
AMP = Literal["auto", "off"]
# The epoch metric that picks best.pt. A sweep sets it to its objective, so that the leaderboard, the evaluation
# of best.pt, the export and the registry all speak of the same weights.
# val_*: the trial's own windows, leads and size (not comparable across windows and sizes); yardstick_*: the
# study's protocol (bubbles.evaluation.yardstick), the same frames for every trial; yardstick_skill_vs_strongest is against the
# strongest baseline.
# val_iou / yardstick_iou: IoU of vapour (thresholded at 0.5), the objective for masks (segmented recordings).
BestBy = Literal["val_mse", "val_ssim", "val_psnr", "val_skill_vs_persistence", "val_bubble_f1", "val_iou",
                 "yardstick_ssim", "yardstick_mse", "yardstick_psnr", "yardstick_bubble_f1", "yardstick_iou",
                 "yardstick_skill_vs_strongest"]
# Names before the columns said what each skill is measured against; a space file with one is told the new name.
RENAMED_METRICS = {"val_skill_persistence": "val_skill_vs_persistence", "yardstick_skill": "yardstick_skill_vs_strongest"}


def best_by_mode(metric: str) -> str:
    """'min' for the MSEs, 'max' for the others."""
    return "min" if metric in ("val_mse", "yardstick_mse") else "max"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and run settings. The loss, the optimiser and the learning-rate schedule are names from the
    tables in bubbles.training.losses (LOSSES) and bubbles.training.optim (OPTIMIZERS, SCHEDULES); the defaults
    (mse_sum, adam, constant) are the seed's. max_*_windows subsample windows evenly (0 = all); collapse_stop_epoch
    stops a collapsed trial at or after that epoch (0 = never). best_by: the epoch metric that picks best.pt."""

    epochs: int = param(10, "epochs", "training epochs", low=1)
    lr: float = param(1e-3, "lr", "learning rate (the peak of a schedule)", low=1e-12, high=10.0)
    weight_decay: float = param(0.0, "weight_decay", "weight decay of the optimiser")
    optimizer: str = param("adam", "optimizer", table_help(OPTIMIZERS), choices=tuple(OPTIMIZERS))
    momentum: float = param(0.9, "momentum", "optimizer sgd: momentum", high=0.999)
    lr_schedule: str = param("constant", "lr_schedule", table_help(SCHEDULES), choices=tuple(SCHEDULES))
    warmup: float = param(0.1, "warmup", "lr_schedule cosine | onecycle: fraction of the optimiser steps that warm the "
                          "learning rate up", high=0.9)
    batch_size: int = param(4, "batch_size", "windows per batch", low=1)
    loss: str = param("mse_sum", "loss", table_help(LOSSES), choices=tuple(LOSSES))
    gdl_weight: float = param(0.1, "gdl_weight", "loss mse+gdl: weight of the gradient-difference term (anti-blur)", high=100.0)
    bubble_dice: float = param(0.0, "bubble_dice", "weight of a soft Dice term on soft-thresholded bubble masks of "
                               "forecast and target, added to any loss (aligned with bubble F1 / IoU); 0 = off", high=100.0)
    bubble_threshold: float = param(0.5, "bubble_threshold", "bubble_dice: the intensity that separates bubble from "
                                    "background (0.5 for masks)", low=0.0, high=1.0)
    bubble_polarity: str = param("bright", "bubble_polarity", "bubble_dice: bubbles brighter (masks: vapour 1) or darker "
                                 "than the threshold", choices=("bright", "dark"))
    grad_clip: float = param(0.0, "grad_clip", "max gradient norm; 0 = off")
    seed: int = param(0, "seed", "seed of initialisation, shuffling and sampling", low=0, high=MAX_SEED)
    teacher_forcing: float = param(0.0, "teacher_forcing", "convlstm seq2seq: start probability of feeding the "
                                   "true frame to the rollout, decays linearly to 0 (predrnn_v2 has its own schedule)", high=1.0)
    device: Device = param("auto", "device", "auto | cpu | cuda")
    amp: AMP = param("auto", "amp", "auto (bf16, else fp16, on CUDA) | off")
    max_train_windows: int = param(0, "max_train_windows", "train on at most this many windows per epoch (evenly spaced); 0 = all", low=0)
    max_val_windows: int = param(0, "max_val_windows", "evaluate on at most this many windows; 0 = all", low=0)
    epoch_val_windows: int = param(0, "epoch_val_windows", "validate after each epoch on at most this many of those "
                                   "windows (a fixed, evenly spaced subset; the end-of-trial evaluation keeps "
                                   "max_val_windows): at native scale a full validation costs more than an epoch; "
                                   "0 = as max_val_windows", low=0)
    workers: int = param(0, "workers", "DataLoader worker processes", low=0)
    collapse_stop_epoch: int = param(0, "collapse_stop_epoch", "stop a trial found collapsed at or after this epoch; 0 = never", low=0)
    best_by: BestBy = param("val_mse", "best_by", "epoch metric that picks best.pt: val_mse (min) | val_ssim | val_psnr | "
                            "val_skill_vs_persistence | val_bubble_f1 | val_iou (max), or the yardstick's yardstick_mse (min) | yardstick_ssim | "
                            "yardstick_psnr | yardstick_bubble_f1 | yardstick_iou | yardstick_skill_vs_strongest (max); "
                            "*_iou: IoU of vapour, for masks; a sweep sets its objective")
