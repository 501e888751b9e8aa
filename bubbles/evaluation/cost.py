"""What a model costs: parameters, forward FLOPs of one window (counted by torch.utils.flop_counter, not by hand),
and inference frames/s on a device. Measured once per trial, on one window for the FLOPs."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from bubbles.models import parameter_count
from bubbles.models.device import model_device

INFERENCE_REPEATS = 3


@dataclass(frozen=True)
class ModelCost:
    """parameters; gflops_per_window: forward GFLOPs to predict one window's output_len frames (batch 1);
    inference_frames_per_s: predicted frames per second at the trial's batch size on `device`;
    train_samples_per_s: training windows per second (median over epochs; NaN before the first epoch)."""

    parameters: int
    gflops_per_window: float
    inference_frames_per_s: float
    device: str
    train_samples_per_s: float = math.nan

    def metrics(self) -> dict[str, float]:
        """The numbers (the device is a tag)."""
        return {k: float(v) for k, v in asdict(self).items() if k != "device"}

    def line(self) -> str:
        """One readable line for cards and logs (speeds only where they were measured)."""
        speeds = [f"{label} {v:,.1f} {unit}/s" for label, v, unit in (
            ("training", self.train_samples_per_s, "samples"), ("inference", self.inference_frames_per_s, "frames")) if math.isfinite(v)]
        where = f"{', '.join(speeds)} on {self.device}" if speeds else "speeds not recorded"
        return (f"{self.parameters:,} parameters, {self.gflops_per_window:.4g} GFLOPs per window (forward, "
                f"torch.utils.flop_counter); {where}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCost:
        """Inverse of dataclasses.asdict (cost.json, MLflow metrics); absent speeds are NaN."""
        return cls(int(data["parameters"]), float(data["gflops_per_window"]), float(data.get("inference_frames_per_s", math.nan)),
                   str(data.get("device", "unknown")), float(data.get("train_samples_per_s", math.nan)))


def forward_flops(model: nn.Module, x: torch.Tensor, future: int) -> float:
    """Forward FLOPs of predicting `future` frames from x, counted by torch.utils.flop_counter (not by hand)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x, future=future)
    return float(counter.get_total_flops())


def _window(model: nn.Module, batch: int, input_len: int) -> torch.Tensor:
    """Input windows of the model's shape, from a private generator (the global RNG is left alone)."""
    cfg = model.cfg  # type: ignore[union-attr]  # every family's config carries in_channels and frame_size
    return torch.rand(batch, input_len, cfg.in_channels, *cfg.frame_size, generator=torch.Generator().manual_seed(0))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_rate(rates: Sequence[float]) -> float:
    """The median of per-epoch rates (the first epoch pays for warm-up; the median is robust to it)."""
    finite = [r for r in rates if math.isfinite(r)]
    return statistics.median(finite) if finite else math.nan


def measure_cost(model: nn.Module, input_len: int, output_len: int, batch: int, amp: torch.dtype | None = None) -> ModelCost:
    """Count the FLOPs of one window and time inference on a batch, where the model is. The inputs come from a
    private generator and the model is left in the mode it was in, so a training run that measures first stays
    bit-exact."""
    device = model_device(model)
    x = _window(model, batch, input_len).to(device)
    was_training = model.training
    model.eval()
    try:
        flops = forward_flops(model, x[:1], output_len)
        best = math.inf
        with torch.no_grad(), torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            for k in range(INFERENCE_REPEATS + 1):  # the first call warms up (allocator, cuDNN autotune)
                _sync(device)
                began = time.perf_counter()
                model(x, future=output_len)
                _sync(device)
                if k:
                    best = min(best, time.perf_counter() - began)
    finally:
        model.train(was_training)
    return ModelCost(parameter_count(model), flops / 1e9, batch * output_len / best, device.type)


def static_cost(model: nn.Module, input_len: int, output_len: int) -> ModelCost:
    """Parameters and FLOPs only, on the CPU (an export of weights whose trial recorded no speeds)."""
    x = _window(model, 1, input_len)
    was_training = model.training
    model.eval()
    try:
        flops = forward_flops(model, x, output_len)
    finally:
        model.train(was_training)
    return ModelCost(parameter_count(model), flops / 1e9, math.nan, "cpu")
