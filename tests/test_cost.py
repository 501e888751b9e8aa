"""What a model costs: FLOPs counted by torch.utils.flop_counter agree with a hand count of the convolutions, and
measuring inside a training run leaves it bit-exact."""

from __future__ import annotations

import math

import pytest
import torch

from bubbles.config import trial_config
from bubbles.evaluation.cost import ModelCost, forward_flops, measure_cost, median_rate
from bubbles.models import build_model


def _convlstm_conv_flops(layers: int, hidden: int, kernel: int, t_in: int, t_out: int, size: int) -> float:
    """2 x multiply-adds of every convolution: the gates over x at every step of every layer and over h from the
    second step on (h is zero at the first: that convolution is skipped), and the 3x3 head per predicted frame."""
    steps = t_in + t_out - 1  # the encoder steps, then the rollout steps after the first prediction
    total, cin = 0.0, 1
    for _ in range(layers):
        total += 2 * (steps * cin + (steps - 1) * hidden) * 4 * hidden * kernel**2 * size * size
        cin = hidden
    return total + 2 * t_out * hidden * 1 * 9 * size * size


@pytest.mark.parametrize("window", ["3->1", "3->4"])
def test_counted_flops_match_the_convolutions_by_hand(window: str) -> None:
    cfg = trial_config({"model": "convlstm", "layers": 2, "hidden": 8, "kernel": 3, "image_size": 16, "window": window,
                        "peephole": "none", "norm": "none"})
    model = build_model(cfg.model_name, cfg.model).eval()
    t_in, t_out = cfg.window.input_len, cfg.window.output_len
    counted = forward_flops(model, torch.rand(1, t_in, 1, 16, 16), t_out)
    # flop_counter counts convolutions and matmuls only; the gates' elementwise work is not in either number.
    assert counted == _convlstm_conv_flops(2, 8, 3, t_in, t_out, 16)


def test_measuring_leaves_rng_and_mode_alone_and_scales_with_the_window() -> None:
    cfg = trial_config({"model": "simvp", "hid_s": 8, "hid_t": 16, "n_s": 2, "n_t": 1, "image_size": 16, "window": "4->2"})
    model = build_model(cfg.model_name, cfg.model).train()
    torch.manual_seed(5)
    before = torch.get_rng_state()
    cost = measure_cost(model, 4, 2, batch=3)
    assert torch.equal(torch.get_rng_state(), before) and model.training
    assert cost.parameters == sum(p.numel() for p in model.parameters())
    assert cost.gflops_per_window > 0 and cost.inference_frames_per_s > 0 and math.isnan(cost.train_samples_per_s)
    assert ModelCost.from_dict(cost.metrics() | {"device": "cpu"}) == cost or math.isnan(cost.train_samples_per_s)
    assert "GFLOPs per window" in cost.line() and "inference" in cost.line() and "training" not in cost.line()
    assert median_rate([float("nan"), 3.0, 1.0, 2.0]) == 2.0 and math.isnan(median_rate([]))
