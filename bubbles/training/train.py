"""One trial: train a model on windows, validate every epoch, checkpoint, and evaluate at the end. No Ray here.

`train(cfg, out_dir, report=...)` is what `cli.py train` runs directly and what the Ray trainable wraps. Shuffling
and scheduled sampling draw from generators seeded by (seed, epoch), and every epoch's checkpoint holds the model,
optimiser, scaler, epoch and RNG state, so a run resumed from a checkpoint matches an uninterrupted one exactly on CPU.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from bubbles.config import TrialConfig, from_json
from bubbles.errors import UserError
from bubbles.evaluation.evaluate import (
    Validation, evaluate, is_mask, persistence_mse, predict_batches, subset, training_mean_frames, validate,
)
from bubbles.evaluation.scoring import skill as skill_per_lead
from bubbles.evaluation.yardstick import Protocol, Yardstick
from bubbles.evaluation.cost import ModelCost, measure_cost
from bubbles.evaluation.figures import save_strip
from bubbles.training.losses import bubble_overlap, loss_named
from bubbles.training.optim import make_optimizer, make_schedule
from bubbles.models import build_model, parameter_count
from bubbles.models.baseline_start import BaselineStart
from bubbles.models.device import model_device
from bubbles.models.family import Family, Progress
from bubbles.models.warp import predict_with_motion
from bubbles.training.baseline_fit import start_baselines, start_flow_motion
from bubbles.training.config import TrainConfig, best_by_mode
from bubbles.data.windows import WindowSplits
from bubbles.data.splits import make_splits
# Checkpoints and the trial's records have modules of their own; imported here by the names callers know them by.
from bubbles.training.checkpoint import BEST, CHECKPOINT, check_resume, load_checkpoint, save_checkpoint  # noqa: F401
from bubbles.training.results import EpochResult, Reporter, Status, TrialResult  # noqa: F401

STRIP_WINDOWS = 3
COST = "cost.json"
YARDSTICK = "yardstick.json"


def epoch_windows(tc: TrainConfig) -> int:
    """How many validation windows each epoch is validated on (0: all): epoch_val_windows within max_val_windows."""
    chosen = [n for n in (tc.epoch_val_windows, tc.max_val_windows) if n > 0]
    return min(chosen) if chosen else 0


def pick_device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device: cuda was asked for, but no CUDA device is visible")
    return torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU has it, else fp16 (with a GradScaler); none on CPU."""
    if device.type != "cuda" or cfg.amp == "off":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def loss_fn(name: str, pred: torch.Tensor, target: torch.Tensor, train: TrainConfig) -> torch.Tensor:
    """The training loss `name` (a LOSSES entry) of predictions against targets (B, M, C, H, W)."""
    return loss_named(name).fn(pred, target, train)


def _generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def train_one_epoch(
    model: nn.Module,
    loader_for_epoch: Iterable,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    cfg: TrainConfig,
    epoch: int,
    amp: torch.dtype | None,
    family: Family,
    steps_per_epoch: int,
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> tuple[float, int]:
    """One pass over the training windows; returns (mean loss per pixel, samples seen). The family's hooks give the
    forward its sampling arguments at each step and any extra loss term; `schedule` steps after every step."""
    model.train()
    device = model_device(model)
    sampling = _generator(cfg.seed + 1, epoch)
    total, pixels, samples = 0.0, 0, 0
    model_cfg = model.cfg  # type: ignore[attr-defined]
    for step, batch in enumerate(loader_for_epoch):
        x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        # tiles for the baseline start: where each tile was cut, so its blend takes the same tile of the climatology
        tiled = {"tile_origin": batch[2]} if len(batch) > 2 else {}
        optimizer.zero_grad(set_to_none=True)
        progress = Progress(epoch, cfg.epochs, epoch * steps_per_epoch + step, cfg.epochs * steps_per_epoch)
        extra = family.extra_loss(model_cfg)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            pred = model(x, future=y.shape[1], target=y, generator=sampling, **family.sampling(model_cfg, cfg, progress),
                         **(extra.forward_kwargs if extra else {}), **tiled)
            loss = loss_fn(cfg.loss, pred.float(), y, cfg)
        # The reported loss stays the frame loss (comparable across families); an extra term only trains.
        frame_loss = loss.detach()
        if extra is not None:
            loss = loss + extra.term()
        if cfg.bubble_dice > 0:
            loss = loss + cfg.bubble_dice * bubble_overlap(pred, y, cfg.bubble_threshold, cfg.bubble_polarity)
        scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        if schedule is not None:
            schedule.step()
        value = frame_loss.item()
        total += value if loss_named(cfg.loss).summed else value * y.numel()
        pixels += y.numel()
        samples += len(x)
    return total / max(pixels, 1), samples


def _loader(splits: WindowSplits, cfg: TrainConfig, epoch: int, device: torch.device) -> DataLoader:
    indices = subset(len(splits.train), cfg.max_train_windows)
    order = torch.randperm(len(indices), generator=_generator(cfg.seed, epoch)).tolist()
    return DataLoader(
        Subset(splits.train, [indices[i] for i in order]),
        batch_size=cfg.batch_size,
        num_workers=cfg.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )


@torch.no_grad()
def write_strips(model: nn.Module, splits: WindowSplits, out_dir: Path) -> list[Path]:
    """Prediction strips for a few fixed validation windows (first, middle, last), with the predicted motion for a
    family that moves its frames."""
    n = len(splits.val)
    chosen = sorted({0, n // 2, n - 1})[:STRIP_WINDOWS]
    paths = []
    mask = is_mask(splits.val)  # masks: a row of target and predicted outlines
    for idx, x, y, pred in predict_batches(model, splits.val, chosen, len(chosen)):
        window = torch.stack([splits.val[i][0] for i in idx]).to(model_device(model))
        motion = predict_with_motion(model, window, y.shape[1])[1]
        for k, i in enumerate(idx):
            shown = None if motion is None else motion[k].float().cpu().numpy()
            paths.append(save_strip(out_dir / f"strip_val{i:04d}.png", x[k], y[k], pred[k], shown, mask))
    return paths


def train(
    cfg: TrialConfig,
    out_dir: str | Path,
    report: Reporter | None = None,
    resume: str | Path | None = None,
    splits: WindowSplits | None = None,
    batches: Callable[[DataLoader, int], Iterable] | None = None,
    on_cost: Callable[[ModelCost], None] | None = None,
    yardstick: Yardstick | None = None,
) -> TrialResult:
    """Train and evaluate one configuration; checkpoints go to out_dir/checkpoint/. `report` is called after every
    epoch (see Reporter). `resume` is a checkpoint.pt to continue from (its best.pt beside it is carried over).
    `batches(loader, epoch)` may wrap each epoch's loader (a progress bar). `on_cost` gets the model's cost
    (parameters, FLOPs per window, inference speed here) once, before epoch 1. `yardstick`: the study's protocol on
    the validation split (default: one of this trial's own window, leads and size)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tc = cfg.train
    device = pick_device(tc)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes per trial: let cuDNN pick its fastest kernels once
    amp = autocast_dtype(tc, device)
    splits = splits or make_splits(cfg.data, cfg.window)
    # Checkpoints record the exact H x W the model is built for and the fields it reads and predicts.
    cfg = cfg.at_frame_size(splits.frame_size).at_fields(splits.channels, splits.targets)
    torch.manual_seed(tc.seed)
    model = build_model(cfg.model_name, cfg.model).to(device)
    if resume is None and isinstance(model, BaselineStart):
        start_baselines(model, cfg, splits, out_dir)
    elif resume is None:
        start_flow_motion(model, splits)
    if isinstance(model, BaselineStart) and hasattr(splits.train, "with_origin"):
        splits.train.with_origin = True  # training tiles carry their place: the blend takes that tile of the climatology
    cost = measure_cost(model, cfg.window.input_len, cfg.window.output_len, tc.batch_size, amp)
    if on_cost is not None:
        on_cost(cost)
    optimizer = make_optimizer(model.parameters(), tc)
    steps_per_epoch = math.ceil(len(subset(len(splits.train), tc.max_train_windows)) / tc.batch_size)
    schedule = make_schedule(optimizer, tc, tc.epochs * steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    sign = 1.0 if best_by_mode(tc.best_by) == "min" else -1.0  # compare sign * value: smaller is better
    start, history, best = 0, [], math.inf
    if resume is not None:
        resume = Path(resume)
        if (resume.parent / "best.pt").exists() and resume.parent.resolve() != (out_dir / BEST).parent.resolve():
            (out_dir / BEST).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(resume.parent / "best.pt", out_dir / BEST)
        state = check_resume(resume, cfg)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        if schedule is not None and "schedule" in state:
            schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"].cpu())
        start, best = int(state["epoch"]), float(state.get("best_score", state.get("best_val_mse", math.inf)))
        history = [EpochResult(**h) for h in json.loads(state["history"])]
    status: Status = "completed"
    per_epoch = epoch_windows(tc)
    baseline = persistence_mse(splits.val, per_epoch)
    yardstick = yardstick or own_yardstick(cfg, splits)
    final: TrialResult | None = None
    for epoch in range(start, tc.epochs):
        began = time.perf_counter()
        loader = _loader(splits, tc, epoch, device)
        train_loss, samples = train_one_epoch(model, batches(loader, epoch) if batches else loader, optimizer, scaler, tc, epoch,
                                              amp, cfg.family, len(loader), schedule)
        elapsed = time.perf_counter() - began
        val: Validation = validate(model, splits.val, tc.batch_size, per_epoch)
        skill = float(np.mean(skill_per_lead(val.mse_per_lead, baseline)))
        ys = yardstick.score(model, splits.val, tc.batch_size, epoch=True).means()
        checked = time.perf_counter() - began - elapsed
        result = EpochResult(
            epoch + 1, train_loss, val.mse, val.ssim, val.psnr, val.ssim_per_lead[0], val.ssim_per_lead[-1], skill,
            val.collapse_score, val.collapsed, elapsed, samples / elapsed, val_bubble_f1=val.bubble_f1, val_iou=val.iou, eval_seconds=checked,
            **{f"yardstick_{k}": v for k, v in ys.items()},
        )
        history.append(result)
        if not math.isfinite(train_loss) or not math.isfinite(val.mse):
            status = "nan"
        elif val.collapsed and 0 < tc.collapse_stop_epoch <= epoch + 1:
            status = "collapsed"
        score = sign * getattr(result, tc.best_by)
        if math.isfinite(val.mse) and math.isfinite(score) and score < best:
            best = score
            save_checkpoint(
                out_dir / BEST,
                {"model": model.state_dict(), "config": cfg.to_json(), "epoch": epoch + 1, tc.best_by: sign * score},
            )
        checkpoint = out_dir / CHECKPOINT
        save_checkpoint(
            checkpoint,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                **({"schedule": schedule.state_dict()} if schedule is not None else {}),
                "epoch": epoch + 1,
                "torch_rng": torch.get_rng_state(),
                "best_score": best,
                "history": json.dumps([asdict(h) for h in history]),
                "config": cfg.to_json(),
            },
        )
        last = status != "completed" or epoch + 1 == tc.epochs
        if last:
            final = finish(model, cfg, splits, status, history, out_dir, cost, yardstick)
        if report is not None:
            report(result, checkpoint, final)
        if last:
            break
    return final or finish(model, cfg, splits, status, history, out_dir, cost, yardstick)


def own_yardstick(cfg: TrialConfig, splits: WindowSplits) -> Yardstick:
    """A trial outside a study is scored on a protocol of its own: its leads, its size, its context."""
    w = cfg.window
    protocol = Protocol(tuple(range(1, w.output_len + 1)), splits.frame_size, w.input_len, w.output_len * w.frame_step,
                        windows=cfg.train.max_val_windows or 64, field=splits.targets[0] if splits.targets else "",
                        frame_step=w.frame_step, scale=cfg.data.image_size if splits.sizes else 0)
    store = splits.val.cache.store
    # With tiles each held-out sequence is scored whole at its own size (the trained scale): the climatology of a
    # size is the mean of the training frames of that size (a time split), never of other shapes squashed to it.
    train_segments = tuple(s for s in splits.segments.train if s[0] in store.sequences)
    return Yardstick(protocol, store, splits.segments.val, "val", train_segments,
                     detector_overrides=splits.val.detector_overrides)


def finish(model: nn.Module, cfg: TrialConfig, splits: WindowSplits, status: Status, history: list[EpochResult], out_dir: Path,
           cost: ModelCost | None = None, yardstick: Yardstick | None = None) -> TrialResult:
    """Evaluate the best checkpoint on the validation split (with the four baselines and VMAF, and on every window
    of the yardstick's protocol) and draw the strips. The cost gets the training speed of the epochs run."""
    evaluation, strips, scored = None, [], None
    if status != "nan" and (out_dir / BEST).exists():
        model.load_state_dict(load_checkpoint(out_dir / BEST, model_device(model))["model"])
        yardstick = yardstick or own_yardstick(cfg, splits)
        # The flow baseline's radius measured on training frames (at the yardstick's size), at this evaluation's size.
        measured = yardstick.baselines().flow_radius.get("radius_px")
        own = cfg.data.image_size if yardstick.protocol.scale and isinstance(cfg.data.image_size, int) else splits.frame_size[0]
        radius = max(2, round(measured * own / yardstick.height)) if measured else None
        evaluation = evaluate(model, splits.val, cfg.train.batch_size, cfg.train.max_val_windows, with_vmaf=True,
                              mean_frame=training_mean_frames(splits), flow_radius_px=radius)
        strips = write_strips(model, splits, out_dir)
        (out_dir / "evaluation.json").write_text(json.dumps(evaluation.to_dict(), indent=1))
        scored = yardstick.score(model, splits.val, cfg.train.batch_size)
        (out_dir / YARDSTICK).write_text(json.dumps(scored.to_dict(), indent=1))
    result = TrialResult(status, parameter_count(model), history, evaluation, out_dir, strips, yardstick=scored)
    if cost is not None:
        result.cost = replace(cost, train_samples_per_s=result.train_samples_per_s)
        (out_dir / COST).write_text(json.dumps(asdict(result.cost), indent=1))  # beside best.pt's evaluation: for export
    return result


def evaluate_checkpoint_dir(directory: Path, out_dir: Path, device: torch.device | None = None,
                            yardstick: Yardstick | None = None) -> tuple[TrialConfig, TrialResult]:
    """The end-of-trial evaluation for a trial that was stopped from outside (ASHA, a time budget): best.pt and
    the history of checkpoint.pt in `directory` -> evaluation.json, strips and best.pt under out_dir."""
    device = device or torch.device("cpu")
    state = load_checkpoint(directory / Path(CHECKPOINT).name, device)
    cfg = from_json(state["config"])
    history = [EpochResult(**h) for h in json.loads(state["history"])]
    (out_dir / BEST).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(directory / Path(BEST).name, out_dir / BEST)
    model = build_model(cfg.model_name, cfg.model).to(device)
    return cfg, finish(model, cfg, make_splits(cfg.data, cfg.window), "completed", history, out_dir, yardstick=yardstick)


def describe(cfg: TrialConfig, splits: WindowSplits) -> dict[str, object]:
    """What `train --dry-run` prints: sizes of the model and of each split."""
    cfg = cfg.at_frame_size(splits.frame_size).at_fields(splits.channels, splits.targets)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model_name, cfg.model)
    return {
        "parameters": parameter_count(model),
        "train_windows": len(splits.train),
        "val_windows": len(splits.val),
        "test_windows": len(splits.test),
        "val_conditions": sorted(set(splits.val.conditions.values())),
        "frames_per_window": f"{cfg.window.input_len}->{cfg.window.output_len}",
        "pixels": ", ".join(f"{n} {h}x{w}" for n, (h, w) in sorted(splits.sizes.items())) + " (whole, each at its own size)"
                  if splits.sizes else "{}x{}".format(*cfg.frame_size),
        "fields": f"[{', '.join(splits.channels)}] -> [{', '.join(splits.targets)}]",
        "train_mean_intensity": float(np.mean([splits.train[i][0].mean().item() for i in subset(len(splits.train), 16)])),
    }
