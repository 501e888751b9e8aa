"""Loss, optimiser and learning-rate schedule are names from tables: unknown names are one line listing the known
ones, each optimiser and schedule trains, a schedule resumes where it stopped, and a space can search them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bubbles.config import trial_config
from bubbles.errors import UserError
from bubbles.training.losses import LOSSES, loss_named
from bubbles.training.optim import OPTIMIZERS, SCHEDULES, make_optimizer, make_schedule
from bubbles.training.train import CHECKPOINT, train
from study.space import load_space


@pytest.mark.parametrize("key, table", [("loss", LOSSES), ("optimizer", OPTIMIZERS), ("lr_schedule", SCHEDULES)])
def test_unknown_name_is_one_line_listing_the_table(key: str, table: dict) -> None:
    with pytest.raises(UserError) as err:
        trial_config({key: "nonesuch"}, "trial.yaml")
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"trial.yaml: {key}:")
    assert all(name in text for name in table)
    with pytest.raises(UserError, match="mse_sum, mse_mean"):
        loss_named("nonesuch")  # a checkpoint's config read past the config layer


def test_defaults_are_the_seeds_adam_at_a_constant_rate() -> None:
    train_cfg = trial_config({"lr": 2e-3, "weight_decay": 1e-4}).train
    model = torch.nn.Linear(3, 3)
    optimizer = make_optimizer(model.parameters(), train_cfg)
    assert type(optimizer) is torch.optim.Adam and optimizer.defaults["weight_decay"] == 1e-4
    assert make_schedule(optimizer, train_cfg, 10) is None


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_schedules_warm_up_then_decay(schedule: str) -> None:
    train_cfg = trial_config({"lr": 1e-2, "lr_schedule": schedule, "warmup": 0.2, "optimizer": "sgd"}).train
    optimizer = make_optimizer(torch.nn.Linear(2, 2).parameters(), train_cfg)
    assert type(optimizer) is torch.optim.SGD and optimizer.defaults["momentum"] == 0.9
    sched = make_schedule(optimizer, train_cfg, 50)
    rates = []
    for _ in range(50):
        optimizer.step()
        sched.step()
        rates.append(optimizer.param_groups[0]["lr"])
    peak = max(range(50), key=rates.__getitem__)
    assert 5 <= peak <= 12 and rates[peak] == pytest.approx(1e-2, rel=0.05)  # warm-up over ~20% of 50 steps
    assert rates[0] < rates[peak] and rates[-1] < 0.05 * rates[peak]


class _Interrupted(Exception):
    pass


def test_sgd_onecycle_resumes_its_schedule_exactly(tiny_store: Path, tmp_path: Path) -> None:
    params = {"store": str(tiny_store), "image_size": 16, "window": "3->1", "layers": 1, "hidden": 8, "epochs": 2,
              "batch_size": 4, "max_train_windows": 8, "max_val_windows": 4, "split": "condition", "val_fraction": 0.34,
              "loss": "mse_mean", "optimizer": "sgd", "lr_schedule": "onecycle", "lr": 0.05}
    cfg = trial_config(params)
    train(cfg, tmp_path / "a")

    def stop_after_epoch_1(result: object, checkpoint: Path, final: object) -> None:
        raise _Interrupted  # as a killed trial: its checkpoint.pt is saved before the report

    with pytest.raises(_Interrupted):
        train(cfg, tmp_path / "b", report=stop_after_epoch_1)
    state = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=True)
    assert state["schedule"]["last_epoch"] == 2  # 8 windows / batch 4: two steps in epoch 1
    train(cfg, tmp_path / "b", resume=tmp_path / "b" / CHECKPOINT)
    a = torch.load(tmp_path / "a" / CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=True)
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    assert a["optimizer"]["param_groups"][0]["lr"] == b["optimizer"]["param_groups"][0]["lr"]


def test_a_space_searches_optimizer_and_schedule(tiny_store: Path, tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(f"data: {{store: {tiny_store}}}\nfixed: {{image_size: 16, epochs: 1}}\n"
                    "search:\n  optimizer: {type: categorical, choices: [adam, adamw, sgd]}\n"
                    "  lr_schedule: {type: categorical, choices: [constant, cosine, onecycle]}\n"
                    "  momentum: {type: float, low: 0.5, high: 0.99, when: {optimizer: [sgd]}}\n")
    space = load_space(path)
    assert {d.name for d in space.dimensions} == {"optimizer", "lr_schedule", "momentum"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text().replace("[adam, adamw, sgd]", "[adam, rmsprop]"))
    with pytest.raises(UserError, match="rmsprop"):
        load_space(bad)
