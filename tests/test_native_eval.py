"""Native-scale evaluation at training speed (issue 28): each epoch validates on a fixed subset of the validation
windows (epoch_val_windows) while the end-of-trial evaluation keeps every window, and the epoch line says when
validating costs more than its share of the epoch. The speed itself is measured in bench/native_eval.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bubbles.config import trial_config
from bubbles.data.splits import make_splits
from bubbles.evaluation.evaluate import subset, validate
from bubbles.models import build_model
from bubbles.training.train import CHECKPOINT, EpochResult, epoch_windows, load_checkpoint, train


def test_each_epoch_validates_on_its_subset_and_the_end_on_every_window(tiny_store: Path, tmp_path: Path) -> None:
    cfg = trial_config({"store": str(tiny_store), "image_size": 16, "window": "3->1", "layers": 1, "hidden": 4, "epochs": 1,
                        "batch_size": 8, "max_train_windows": 8, "split": "condition", "val_fraction": 0.34,
                        "epoch_val_windows": 3})
    assert epoch_windows(cfg.train) == 3
    result = train(cfg, tmp_path)
    splits = make_splits(cfg.data, cfg.window)
    state = load_checkpoint(tmp_path / CHECKPOINT, torch.device("cpu"))
    model = build_model(cfg.model_name, cfg.at_frame_size(splits.frame_size).model)
    model.load_state_dict(state["model"])
    few, every = validate(model, splits.val, 8, 3), validate(model, splits.val, 8, 0)
    assert len(subset(len(splits.val), 3)) == 3 < len(splits.val)
    assert np.isclose(result.history[-1].val_mse, few.mse) and not np.isclose(few.mse, every.mse)
    assert result.evaluation is not None and result.evaluation.windows == len(splits.val)  # the end: every window
    assert result.history[-1].eval_seconds > 0


def test_the_epoch_line_says_when_validation_costs_more_than_its_share() -> None:
    values = dict(train_loss=0.1, val_mse=0.1, val_ssim=0.5, val_psnr=10.0, val_ssim_lead1=0.5, val_ssim_last=0.5,
                  val_skill_vs_persistence=0.0, collapse_score=1.0, collapsed=False, seconds=100.0, samples_per_s=1.0)
    slow = EpochResult(1, **values, eval_seconds=260.0).line(2, 360.0, 0.0)
    assert "validation 260 s = 260% of training: lower epoch_val_windows" in slow
    assert "validation" not in EpochResult(1, **values, eval_seconds=10.0).line(2, 110.0, 0.0)
    assert epoch_windows(trial_config({"max_val_windows": 24}).train) == 24
    assert epoch_windows(trial_config({"max_val_windows": 24, "epoch_val_windows": 8}).train) == 8
