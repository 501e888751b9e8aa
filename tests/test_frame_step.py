"""frame_step: a window's frames are k stored frames apart, and the yardstick and its baselines use one spacing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bubbles.data.store import FrameStore, SequenceMeta, write_sequence
from bubbles.data.windows import DataConfig, SplitConfig, WindowConfig
from bubbles.data.splits import make_splits
from bubbles.errors import UserError
from bubbles.evaluation.yardstick import Protocol, Yardstick

T = 60


@pytest.fixture()
def ramp_store(tmp_path: Path) -> Path:
    """Two sequences whose frame t is the flat grey level 2t (+ a gradient): a frame's value names its index."""
    path = tmp_path / "ramp.zarr"
    grad = np.linspace(0, 40, 16)[None, :]
    for name in ("a", "b"):
        frames = np.stack([np.full((16, 16), 2.0 * t) + grad for t in range(T)])
        write_sequence(path, name, np.rint(frames).astype(np.uint8), SequenceMeta(source="test"))
    return path


class Extrapolate(nn.Module):
    """A real (parameter-free) model: continues the last two frames' straight line. Exact on a ramp at any step."""

    def forward(self, x: torch.Tensor, future: int = 1, **_: object) -> torch.Tensor:
        slope = x[:, -1:] - x[:, -2:-1]
        return torch.cat([x[:, -1:] + slope * (k + 1) for k in range(future)], dim=1)


def _splits(store: Path, window: WindowConfig):  # type: ignore[no-untyped-def]
    data = DataConfig(str(store), image_size=16, split=SplitConfig(kind="sequence", val=("b",)))
    return make_splits(data, window)


def test_window_frames_are_frame_step_apart(ramp_store: Path) -> None:
    splits = _splits(ramp_store, WindowConfig(input_len=3, output_len=2, stride=5, frame_step=4))
    name, start = splits.train.starts[1]
    assert start == 5  # windows still start `stride` stored frames apart
    x, y = splits.train[1]
    index = np.rint(np.concatenate([x, y])[:, 0, :, 0].mean(axis=1) * 255 / 2).astype(int)
    assert index.tolist() == [5, 9, 13, 17, 21]
    assert splits.train.starts[-1][1] + 16 <= T - 1  # the last window's last frame exists: span (5-1)*4+1 = 17
    with pytest.raises(UserError, match=r"needs 119 frames \(60 frames 2 apart\)"):
        _splits(ramp_store, WindowConfig(input_len=50, output_len=10, frame_step=2))


def test_yardstick_scores_every_trial_at_the_protocols_spacing(ramp_store: Path) -> None:
    """Protocol spacing 4: a trial at frame_step 1 rolls out 4 of its steps per lead, one at 2 two, one at 4 one;
    all read the same last context frame, so the exact extrapolator scores MSE 0 for each, and persistence (its
    error grows with the spacing: 8 grey levels per lead) is scored on frames 4 apart."""
    protocol = Protocol(leads=(1, 2), size=(16, 16), context=3, stride=6, windows=5, epoch_windows=2,
                        baselines=("persistence",), field="intensity", frame_step=4)
    scores = []
    for step in (1, 2, 4):
        splits = _splits(ramp_store, WindowConfig(input_len=3, output_len=1, frame_step=step))
        ys = Yardstick(protocol, FrameStore.open(ramp_store), splits.segments.val, "val", splits.segments.train)
        scores.append(ys.score(Extrapolate(), splits.val, 4))
    assert all(s.windows == scores[0].windows for s in scores)
    assert all(t >= 3 * 4 for _, t in scores[0].windows)  # the context: 3 frames 4 apart before the first target
    for s in scores:
        assert max(s.per_lead["mse"]) < 1e-8
    persistence = scores[0].baselines["persistence"]["mse"]
    assert persistence[0] == pytest.approx((8 / 255) ** 2, rel=0.02) and persistence[1] == pytest.approx((16 / 255) ** 2, rel=0.02)
    splits = _splits(ramp_store, WindowConfig(input_len=3, output_len=1, frame_step=3))
    ys = Yardstick(protocol, FrameStore.open(ramp_store), splits.segments.val, "val", splits.segments.train)
    with pytest.raises(UserError, match="frame_step 3 does not divide the protocol's 4"):
        ys.score(Extrapolate(), splits.val, 4)


def test_a_searched_frame_step_gives_the_study_one_spacing(ramp_store: Path, tmp_path: Path) -> None:
    """frame_step searched over [1, 2, 4]: the study's yardstick scores every trial 4 stored frames apart (each
    trial's step divides it); steps without a small common multiple are refused."""
    from study.space import load_space
    from study.yardstick import open_store, protocol_of

    def space(choices: str) -> Path:
        path = tmp_path / f"space{len(choices)}.yaml"
        path.write_text(f"data: {{store: {ramp_store}, split: sequence, val: [b]}}\n"
                        "fixed: {image_size: 16, window: '3->1', layers: 1, hidden: 4, epochs: 1}\n"
                        f"search:\n  frame_step: {{type: categorical, choices: {choices}}}\n"
                        "tune: {num_samples: 2}\n")
        return path

    loaded = load_space(space("[1, 2, 4]"))
    protocol = protocol_of(loaded, open_store(loaded))
    assert protocol.frame_step == 4 and protocol.stride == 4  # one lead, targets 4 frames apart
    loaded = load_space(space("[7, 11, 13, 17]"))
    with pytest.raises(UserError, match="no common multiple up to 1000"):
        protocol_of(loaded, open_store(loaded))
