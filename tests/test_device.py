"""Every path that runs a model sends its inputs to the model's device (bubbles.models.device), proven on a machine
without a GPU: the model's weights are put on PyTorch's `meta` device, and a forward pre-hook on every module checks
that its inputs are on its weights' device. The check stops the run at the first forward (meta tensors hold no
numbers), so `_Reached` means: the inputs got where the weights are; `_Mismatch` is what CUDA would have raised."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bubbles.config import trial_config
from bubbles.data.store import FrameStore
from bubbles.data.splits import make_splits
from bubbles.evaluation.cost import measure_cost
from bubbles.evaluation.evaluate import evaluate, validate
from bubbles.evaluation.yardstick import Protocol, Yardstick
from bubbles.models import build_model
from bubbles.models.device import model_device
from bubbles.predict import motion_rollout, rollout
from bubbles.training.train import save_checkpoint
from study import yardstick as ys
from study.space import load_space

META = torch.device("meta")


class _Reached(Exception):
    """The model's first forward got its inputs on the model's device."""


class _Mismatch(Exception):
    pass


@contextlib.contextmanager
def device_check() -> Iterator[None]:
    """For as long as it is open, every module's forward checks its tensor inputs against its weights' device."""

    def check(module: nn.Module, args: tuple) -> None:
        weights = next(iter(module.parameters()), None)
        if weights is None:
            return
        found = {a.device for a in args if isinstance(a, torch.Tensor)}
        if found - {weights.device}:
            raise _Mismatch(f"{type(module).__name__}: weights on {weights.device}, inputs on {sorted(map(str, found))}")
        raise _Reached

    handle = torch.nn.modules.module.register_module_forward_pre_hook(check)
    try:
        yield
    finally:
        handle.remove()


def _cfg(store: Path, model: str = "convlstm"):  # type: ignore[no-untyped-def]
    extra = {"layers": 1, "hidden": 4} if model == "convlstm" else {"ev_width": 8, "ev_depth": 2}
    return trial_config({"store": str(store), "image_size": 16, "window": "3->2", "model": model, "split": "condition",
                         "val_fraction": 0.34, "seed": 1} | extra)


def test_model_device_is_where_the_weights_are() -> None:
    assert model_device(nn.Linear(2, 2).to(META)) == META
    assert model_device(nn.BatchNorm2d(2).to(META)) == META
    assert model_device(nn.Identity()) == torch.device("cpu")  # no weights: runs anywhere, the CPU by default


def test_validation_evaluation_yardstick_cost_and_predict_follow_the_model(tiny_store: Path) -> None:
    cfg = _cfg(tiny_store)
    splits = make_splits(cfg.data, cfg.window)
    cfg = cfg.at_frame_size(splits.frame_size)
    model = build_model(cfg.model_name, cfg.model).to(META)
    protocol = Protocol(leads=(1, 2), size=(16, 16), context=3, stride=2, windows=4, epoch_windows=2,
                        baselines=("persistence",), field="intensity")
    yardstick = Yardstick(protocol, FrameStore.open(tiny_store), splits.segments.val, "val", splits.segments.train)
    context = np.zeros((3, 1, 16, 16), np.float32)
    runs = {
        "validate": lambda: validate(model, splits.val, 2),
        "evaluate": lambda: evaluate(model, splits.val, 2),
        "yardstick": lambda: yardstick.score(model, splits.val, 2),
        "cost": lambda: measure_cost(model, 3, 2, 2),
        "predict": lambda: rollout(model, context, 2, 4),
    }
    with device_check():
        for name, run in runs.items():
            with pytest.raises(_Reached):
                run()


def test_predict_motion_follows_the_model(tiny_store: Path) -> None:
    cfg = _cfg(tiny_store, "evolution").at_frame_size((16, 16))
    model = build_model(cfg.model_name, cfg.model).to(META)
    with device_check(), pytest.raises(_Reached):
        motion_rollout(model, np.zeros((3, 1, 16, 16), np.float32), 2, 2)


def test_the_test_split_pass_runs_the_model_where_it_loaded_it(tiny_store: Path, tmp_path: Path) -> None:
    """The pass after a sweep on a GPU machine: the checkpoint loaded onto the device, the model and the test
    frames there too (it left the model on the CPU and sent the frames to CUDA, so a GPU sweep had no leaderboard)."""
    space_file = tmp_path / "space.yaml"
    space_file.write_text(f"data: {{store: {tiny_store}, split: condition, val_fraction: 0.34, test_fraction: 0.34}}\n"
                          "fixed: {image_size: 16, window: '3->2', layers: 1, hidden: 4, epochs: 1}\n"
                          "search: {lr: {type: log, low: 1.0e-4, high: 1.0e-2}}\n"
                          "evaluate: {leads: 2, windows: 4, epoch_windows: 2, test_top_k: 1, baselines: [persistence]}\n")
    space = load_space(space_file)
    protocol = ys.protocol_of(space, ys.open_store(space))
    cfg = _cfg(tiny_store)
    splits = make_splits(cfg.data, cfg.window)
    cfg = cfg.at_frame_size(splits.frame_size).at_fields(splits.channels, splits.targets)
    best = tmp_path / "best.pt"
    save_checkpoint(best, {"model": build_model(cfg.model_name, cfg.model).state_dict(), "config": cfg.to_json()})
    rows = [{"trial": "t1", "objective": 0.5}]
    with device_check(), pytest.raises(_Reached):
        ys.test_pass(space, protocol, tmp_path / "sweep", rows, {"t1": best}, echo=lambda _: None, device=META)
