"""Masks (segmented recordings) end to end: ingest recognises them, a mask loss trains, the evaluation and predict
report IoU, vapour-fraction error and bubble F1 beside every baseline, at a frame_step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from bubbles.data.store import FrameStore
from cli import main


def _moving_discs(t: int = 40, size: int = 24, seed: int = 0) -> np.ndarray:
    """Boolean masks: two discs drifting right and up, a pixel every two frames."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((t, size, size), bool)
    starts = rng.uniform(5, size - 5, (2, 2))
    for k in range(t):
        for cy, cx in starts:
            out[k] |= (yy - (cy - k / 2) % size) ** 2 + (xx - (cx + k / 2) % size) ** 2 <= 9
    return out


@pytest.mark.slow
def test_masks_train_evaluate_predict(tmp_path: Path) -> None:
    store = tmp_path / "masks.zarr"
    runner = CliRunner()
    for n in range(2):
        np.save(tmp_path / f"run{n}.npy", _moving_discs(seed=n))
        result = runner.invoke(main, ["ingest", str(tmp_path / f"run{n}.npy"), str(store)])
        assert result.exit_code == 0, result.output
        assert "binary recording: stored as a mask" in result.output
    assert all("mask" in i.meta.extra for i in FrameStore.open(store).sequences.values())
    cfg = tmp_path / "trial.yaml"
    cfg.write_text(f"store: {store}\nimage_size: 24\nwindow: '3->2'\nframe_step: 2\nlayers: 1\nhidden: 4\nepochs: 1\n"
                   "batch_size: 8\nsplit: sequence\nval: [run1]\nloss: bce+dice\nmax_train_windows: 8\nmax_val_windows: 4\n")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"}
    result = runner.invoke(main, ["train", str(cfg), "--out", str(tmp_path / "run")], env=env)
    assert result.exit_code == 0, result.output
    evaluation = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert evaluation["mask"] is True
    for column in [evaluation["model"], *evaluation["baselines"].values()]:
        assert len(column["iou"]) == 2 and all(0 <= v <= 1 for v in column["iou"])
        assert all(0 <= v <= 1 for v in column["vapour_fraction_error"])
    assert evaluation["baselines"]["persistence"]["iou"][0] < 1  # the discs moved: persistence is not perfect
    yardstick = json.loads((tmp_path / "run" / "yardstick.json").read_text())
    assert yardstick["protocol"]["frame_step"] == 2 and "iou" in yardstick["baselines"]["flow"]
    assert yardstick["flow_radius"]["radius_px"] in {int(r) for r in yardstick["flow_radius"]["lead1_mse"]}  # measured
    strip = np.asarray(Image.open(sorted((tmp_path / "run").glob("strip_val*.png"))[0]).convert("RGB"))
    assert (strip == (40, 170, 60)).all(axis=-1).any()  # the target's vapour outlined (the outlines row)
    result = runner.invoke(main, ["export", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "exp")], env=env)
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["predict", str(tmp_path / "exp"), "--store", str(store), "--sequence", "run1",
                                  "--out", str(tmp_path / "pred")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "pred" / "metrics.json").read_text())["metrics"]
    assert len(metrics["iou"]) == 2 and "persistence_iou" in metrics


def test_iou_is_logged_every_epoch_and_picks_best_pt(tmp_path: Path) -> None:
    """IoU of vapour is an epoch metric (val_iou, yardstick_iou) and can be the objective that picks best.pt."""
    import torch

    from bubbles.config import trial_config
    from bubbles.data.ingest import MASK_DETECTOR
    from bubbles.data.store import SequenceMeta, write_sequence
    from bubbles.training.train import BEST, load_checkpoint, train
    from study.space import load_space

    store = tmp_path / "masks.zarr"
    for n in range(2):
        extra = {"mask": {"vapour": 255, "liquid": 0, "source_values": [0, 1]}, "detector": MASK_DETECTOR}
        write_sequence(store, f"run{n}", _moving_discs(t=24, size=16, seed=n).astype(np.uint8) * 255,
                       SequenceMeta(source="test", extra=extra))
    cfg = trial_config({"store": str(store), "image_size": 16, "window": "3->1", "layers": 1, "hidden": 4, "epochs": 2,
                        "batch_size": 8, "split": "sequence", "val": ["run1"], "loss": "bce+dice", "lr": 0.01,
                        "max_train_windows": 8, "max_val_windows": 4, "best_by": "val_iou"})
    result = train(cfg, tmp_path / "run")
    ious = [h.val_iou for h in result.history]
    assert all(0 <= v <= 1 for v in ious) and all(0 <= h.yardstick_iou <= 1 for h in result.history)
    assert load_checkpoint(tmp_path / "run" / BEST, torch.device("cpu"))["epoch"] == int(np.argmax(ious)) + 1
    assert "IoU" in result.history[0].line(2, 1.0, 0.0, "val_iou", mask=True)
    space = tmp_path / "space.yaml"
    space.write_text(f"data: {{store: {store}, split: sequence, val: [run1]}}\nfixed: {{image_size: 16, window: '3->1'}}\nsearch:\n  lr: {{type: log, low: 1.0e-3, high: 1.0e-2}}\n"
                     "tune: {objective: yardstick_iou}\n")
    assert load_space(space).tune.objective == "yardstick_iou"
