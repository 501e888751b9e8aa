"""The yardstick: every trial scored on the same frames at the same resolution, short outputs rolled out, smaller
predictions resized; baselines once; the `evaluate:` section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bubbles.config import trial_config
from bubbles.data.store import FrameStore
from bubbles.data.splits import make_splits
from bubbles.errors import UserError
from bubbles.evaluation.yardstick import BaselineScores, Protocol, Yardstick, rollout
from bubbles.models import build_model
from study.yardstick import parse_evaluate

PROTOCOL = Protocol(leads=(1, 2, 3, 4), size=(32, 32), context=6, stride=4, windows=10, epoch_windows=4,
                    baselines=("persistence", "median", "flow"), field="intensity")


class Persist(nn.Module):
    """A real (parameter-free) model: repeats the last input frame; counts its forward calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor, future: int = 1, **_: object) -> torch.Tensor:
        self.calls += 1
        return x[:, -1:].repeat(1, future, 1, 1, 1)


def _splits(store: Path, size: int, window: str):  # type: ignore[no-untyped-def]
    cfg = trial_config({"store": str(store), "image_size": size, "window": window, "layers": 1, "hidden": 4,
                        "split": "condition", "val_fraction": 0.34, "seed": 3})
    return cfg, make_splits(cfg.data, cfg.window)


def _yardstick(store: Path, splits) -> Yardstick:  # type: ignore[no-untyped-def]
    return Yardstick(PROTOCOL, FrameStore.open(store), splits.segments.val, "val", splits.segments.train)


def test_equal_scored_frames_across_windows_and_sizes(tiny_store: Path) -> None:
    """A 4->1 trial at 16 px and a 4->4 trial at 32 px: the same windows, leads and target frames."""
    scores = []
    for size, window in ((16, "4->1"), (32, "4->4")):
        cfg, splits = _splits(tiny_store, size, window)
        torch.manual_seed(0)
        model = build_model(cfg.at_frame_size(splits.frame_size).model_name, cfg.at_frame_size(splits.frame_size).model)
        scores.append(_yardstick(tiny_store, splits).score(model, splits.val, 4))
    a, b = scores
    assert a.windows == b.windows and len(a.windows) == 10
    assert all(t >= PROTOCOL.context for _, t in a.windows)  # targets start after the longest context
    assert len(a.per_lead["ssim"]) == len(b.per_lead["ssim"]) == 4
    assert a.baselines == b.baselines  # the same targets: the baselines score the same
    epoch = _yardstick(tiny_store, splits).score(model, splits.val, 4, epoch=True)
    assert len(epoch.windows) == 4 and set(epoch.windows) <= set(b.windows)


def test_short_output_rolls_out_to_every_lead(tiny_store: Path) -> None:
    """A 4->1 model is rolled out on its own predictions: persistence rolled out is persistence at every lead."""
    _, splits = _splits(tiny_store, 32, "4->1")
    model = Persist()
    scored = _yardstick(tiny_store, splits).score(model, splits.val, 16)
    assert model.calls == 4  # one forward per lead (10 windows, one batch)
    assert scored.per_lead["mse"] == pytest.approx(scored.baselines["persistence"]["mse"], rel=1e-9)
    assert scored.per_lead["skill_vs_persistence"] == pytest.approx((0.0,) * 4, abs=1e-9)
    # A model that cannot feed its output back is refused, not scored on fewer leads.
    with pytest.raises(UserError, match="cannot roll out"):
        rollout(model, torch.zeros(1, 4, 1, 8, 8), 1, 4, feedback=False)


def test_smaller_trials_are_resized_to_the_protocol(tiny_store: Path) -> None:
    """A 16 px trial's predictions are upsampled (bilinear) to 32 px and scored against 32 px targets."""
    _, small = _splits(tiny_store, 16, "4->1")
    ys = _yardstick(tiny_store, small)
    scored = ys.score(Persist(), small.val, 16)
    # By hand: the 16 px last context frame, upsampled, against the 32 px targets, for the first window.
    name, t0 = scored.windows[0]
    last = torch.from_numpy(small.val.cache.frames(name, t0 - 1, t0).astype(np.float32) / 255.0)[None]
    up = F.interpolate(last, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)[0, 0].numpy()
    target = ys.target_frames([0])[0]
    by_hand = float(((up - target[0]) ** 2).mean())
    first = Yardstick(Protocol(**{**PROTOCOL.to_dict(), "windows": 1}), ys.store, small.segments.val, "val")
    assert first.windows[0] == (name, t0)
    assert first.score(Persist(), small.val, 1).per_lead["mse"][0] == pytest.approx(by_hand, rel=1e-6)
    # Smoothed by the down- and up-sampling: worse than persistence at full size, never scored at 16 px.
    assert scored.per_lead["mse"][0] > scored.baselines["persistence"]["mse"][0]


def test_baselines_round_trip_and_are_not_recomputed(tiny_store: Path) -> None:
    _, splits = _splits(tiny_store, 32, "4->4")
    ys = _yardstick(tiny_store, splits)
    again = BaselineScores.from_dict(ys.baselines().to_dict(), len(PROTOCOL.leads))
    cached = Yardstick(PROTOCOL, ys.store, splits.segments.val, "val", baselines=again)
    a = ys.score(Persist(), splits.val, 8)
    b = cached.score(Persist(), splits.val, 8)
    assert a.baselines == b.baselines and a.per_lead == b.per_lead


def test_evaluate_section(tmp_path: Path) -> None:
    ev = parse_evaluate("s.yaml: evaluate", {"leads": 3, "size": 32, "test_top_k": 2})
    assert ev.leads == (1, 2, 3) and ev.size == 32 and ev.test_top_k == 2 and ev.stride is None
    assert parse_evaluate("e", {"leads": [4, 1, 2]}).leads == (1, 2, 4)
    for bad, match in (({"leads": 0}, "evaluate.leads"), ({"lead": 3}, "unknown key"), ({"baselines": ["oracle"]}, "baselines"),
                       ({"epoch_windows": 0}, "epoch_windows")):
        with pytest.raises(UserError, match=match):
            parse_evaluate("s.yaml: evaluate", bad)
