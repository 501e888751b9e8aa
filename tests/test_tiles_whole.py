"""Tiles for any size and aspect (issue 28): a tile-trained model validates, is scored and predicts on each
sequence's WHOLE frame at the trained scale, its aspect kept; held-out sequences of different sizes are each scored
at their own size, the yardstick too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bubbles.config import trial_config
from bubbles.data.splits import make_splits
from bubbles.data.store import SequenceMeta, write_sequence
from bubbles.training.train import train


def _drift(t: int, h: int, w: int, seed: int) -> np.ndarray:
    """Dark discs on a bright background drifting right a pixel a frame (a forecast is possible)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    centres = rng.uniform([6, 0], [h - 6, w], (max(2, w // 24), 2))
    out = np.full((t, h, w), 200, np.uint8)
    for k in range(t):
        for cy, cx in centres:
            out[k][(yy - cy) ** 2 + (xx - (cx + k) % w) ** 2 <= 16] = 40
    return out


@pytest.fixture()
def two_shapes(tmp_path: Path) -> Path:
    """A wide 48x160 and a square 64x64 sequence (the issue's store)."""
    path = tmp_path / "shapes.zarr"
    write_sequence(path, "wide", _drift(30, 48, 160, 0), SequenceMeta(source="test"))
    write_sequence(path, "square", _drift(30, 64, 64, 1), SequenceMeta(source="test"))
    return path


def _cfg(store: Path, **over: object):  # type: ignore[no-untyped-def]
    params = {"store": str(store), "split": "time", "val_fraction": 0.4, "image_size": 48, "tile": "32x32",
              "window": "3->1", "layers": 1, "hidden": 4, "peephole": "channel", "epochs": 1, "batch_size": 4,
              "max_train_windows": 8}
    return trial_config(params | over)


def test_a_time_split_of_two_shapes_validates_each_whole_at_its_own_size(two_shapes: Path) -> None:
    cfg = _cfg(two_shapes)
    splits = make_splits(cfg.data, cfg.window)  # accepted: no "give image_size as HxW"
    assert splits.sizes == {"wide": (48, 160), "square": (48, 48)}
    shapes = {splits.val.starts[i][0]: tuple(splits.val[i][0].shape[-2:]) for i in range(len(splits.val))}
    assert shapes == {"wide": (48, 160), "square": (48, 48)}  # whole, aspect kept, never stretched to one size


def test_a_tiled_model_is_scored_and_predicts_whole_frames_of_any_shape(two_shapes: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cli import main

    result = train(_cfg(two_shapes), tmp_path / "t")
    evaluation = result.evaluation
    assert evaluation is not None and np.isfinite(evaluation.model.mse).all()
    assert {"persistence", "median", "flow", "climatology"} <= set(evaluation.baselines)  # climatology per size
    yardstick = json.loads((tmp_path / "t" / "yardstick.json").read_text())
    assert yardstick["protocol"]["scale"] == 48
    assert {n for n, _ in yardstick["windows"]} == {"wide", "square"}  # both held-out shapes scored
    runner = CliRunner()
    out = runner.invoke(main, ["export", "--checkpoint", str(tmp_path / "t"), "--out", str(tmp_path / "m")])
    assert out.exit_code == 0, out.output
    for name, size in (("wide", (48, 160)), ("square", (48, 48))):
        out = runner.invoke(main, ["predict", str(tmp_path / "m"), "--store", str(two_shapes), "--sequence", name,
                                   "--start", "20", "--out", str(tmp_path / f"p_{name}")])
        assert out.exit_code == 0, out.output
        assert "stretched" not in out.output
        assert np.load(tmp_path / f"p_{name}" / "prediction.npy").shape[-2:] == size


def test_a_tiled_studys_yardstick_scores_each_sequence_at_its_own_size(two_shapes: Path, tmp_path: Path) -> None:
    """The study's protocol: per-sequence sizes at the space's scale, the same for every trial; a trial at another
    scale is resized to each sequence's scored size."""
    from bubbles.evaluation.yardstick import Yardstick
    from bubbles.models import build_model
    from study.space import load_space
    from study.yardstick import open_store, protocol_of

    space_file = tmp_path / "space.yaml"
    space_file.write_text(f"""
data: {{store: {two_shapes}, split: time, val_fraction: 0.4}}
fixed: {{tile: 32x32, layers: 1, hidden: 4, peephole: channel, epochs: 1, window: "3->1", batch_size: 4}}
search:
  image_size: {{type: categorical, choices: [32, 48]}}
tune: {{objective: val_ssim, num_samples: 1}}
evaluate: {{leads: 1, windows: 6, epoch_windows: 2}}
""")
    space = load_space(space_file)
    protocol = protocol_of(space, open_store(space))
    assert protocol.scale == 48 and protocol.size == (48, 160)
    cfg = _cfg(two_shapes, image_size=32)
    splits = make_splits(cfg.data, cfg.window)
    assert splits.sizes == {"wide": (32, 107), "square": (32, 32)}
    yardstick = Yardstick(protocol, splits.val.cache.store, splits.segments.val, "val", splits.segments.train)
    assert yardstick.sizes == {"wide": (48, 160), "square": (48, 48)}
    cfg = cfg.at_frame_size(splits.frame_size).at_fields(splits.channels, splits.targets)
    torch.manual_seed(0)
    score = yardstick.score(build_model(cfg.model_name, cfg.model), splits.val, 4)
    assert {n for n, _ in score.windows} == {"wide", "square"} and np.isfinite(score.per_lead["mse"]).all()
