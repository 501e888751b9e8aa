"""Training on tiles at native scale: sequences of any size and aspect train together, nothing is stretched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bubbles.config import trial_config
from bubbles.data.store import SequenceMeta, write_sequence
from bubbles.data.tiles import TileDataset, tile_lines
from bubbles.data.splits import make_splits
from bubbles.errors import UserError
from bubbles.training.train import train


def _ramp(t: int, h: int, w: int) -> np.ndarray:
    """Frame k holds (row + column + k) % 200: a tile's place is readable from its values, frame to frame +1."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([((yy + xx + k) % 200) for k in range(t)]).astype(np.uint8)


@pytest.fixture()
def mixed(tmp_path: Path) -> Path:
    """A square and a wide sequence (different aspects), and a held-out square one."""
    path = tmp_path / "mixed.zarr"
    for name, (h, w) in {"square": (32, 32), "wide": (32, 96), "held": (40, 40)}.items():
        write_sequence(path, name, _ramp(16, h, w), SequenceMeta(source="test"))
    return path


def _cfg(store: Path, **over: object):  # type: ignore[no-untyped-def]
    params = {"store": str(store), "split": "sequence", "val": ["held"], "image_size": 32, "tile": "16x16",
              "window": "3->1", "layers": 1, "hidden": 4, "peephole": "channel", "epochs": 1, "batch_size": 4}
    return trial_config(params | over)


def test_tiles_are_cut_at_each_sequences_scale_in_one_place_per_window(mixed: Path) -> None:
    splits = make_splits(_cfg(mixed).data, _cfg(mixed).window)
    assert isinstance(splits.train, TileDataset) and splits.frame_size == (32, 32)  # validation: whole frames
    assert splits.train.cache.sizes == {"square": (32, 32), "wide": (32, 96)}  # aspect kept, never squashed
    torch.manual_seed(0)
    places = set()
    for i in range(len(splits.train)):
        x, y = splits.train[i]
        assert x.shape == (3, 1, 16, 16) and y.shape == (1, 1, 16, 16)
        frames = torch.cat([x, y])[:, 0] * 255
        steps = (frames[1:] - frames[:-1]).round() % 200  # the same place in every frame: +1 everywhere
        assert (steps == 1).all()
        places.add(int(frames[0, 0, 0]))
    assert len(places) > 3  # random places, not one fixed crop
    xv, _ = splits.val[0]
    assert xv.shape[-2:] == (32, 32)
    lines = tile_lines(splits.train.cache.store, _cfg(mixed).data, splits)
    assert any(line.startswith("wide: native 32x96, level 0 (32x96) -> 32x96, random 16x16 tiles") for line in lines)
    assert any(line.startswith("held: native 40x40") and "whole frames" in line for line in lines)


def test_tiles_refuse_what_would_stretch_or_not_fit(mixed: Path) -> None:
    with pytest.raises(UserError, match="larger than the frames of square 32x32"):
        make_splits(_cfg(mixed, tile="48x48").data, _cfg(mixed).window)
    with pytest.raises(UserError, match="give image_size as a short side"):
        make_splits(_cfg(mixed, image_size="32x32").data, _cfg(mixed).window)
    with pytest.raises(UserError, match="frame peepholes"):
        _cfg(mixed, peephole="frame")
    plain = trial_config({"store": str(mixed), "split": "sequence", "val": ["held"], "image_size": "32x32", "window": "3->1"})
    splits = make_splits(plain.data, plain.window)
    wide = next(line for line in tile_lines(splits.train.cache.store, plain.data, splits) if line.startswith("wide"))
    assert "STRETCHED 0.33x sideways" in wide


def test_a_model_trains_on_tiles_and_validates_on_whole_frames(mixed: Path, tmp_path: Path) -> None:
    result = train(_cfg(mixed, epochs=2), tmp_path)
    assert len(result.history) == 2 and np.isfinite(result.history[-1].val_mse)


@pytest.fixture()
def wide(tmp_path: Path) -> Path:
    """One wide recording (as the real 114x950 ones): tiles train on it, whole frames validate and test on it."""
    path = tmp_path / "wide.zarr"
    write_sequence(path, "wide", _ramp(40, 32, 96), SequenceMeta(source="test"))
    return path


def test_a_tiled_checkpoint_records_its_scale_and_exports_and_predicts_with_every_baseline(wide: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from bubbles.config import from_json
    from bubbles.training.train import BEST, load_checkpoint
    from cli import main

    cfg = _cfg(wide, split="time", val_fraction=0.3, val=[], image_size=16, tile="16x16")
    train(cfg, tmp_path / "t")
    saved = from_json(load_checkpoint(tmp_path / "t" / BEST, torch.device("cpu"))["config"])
    assert saved.data.image_size == 16 and saved.frame_size == (16, 48)  # the scale tiles were cut at, and the whole frame
    assert make_splits(saved.data, saved.window).frame_size == (16, 48)  # what every consumer rebuilds
    runner = CliRunner()
    result = runner.invoke(main, ["export", "--checkpoint", str(tmp_path / "t"), "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "climatology.npy").is_file()
    result = runner.invoke(main, ["predict", str(tmp_path / "m"), "--store", str(wide), "--sequence", "wide", "--start", "30",
                                  "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    import json

    metrics = json.loads((tmp_path / "p" / "metrics.json").read_text())["metrics"]
    assert {"persistence_mse", "median_mse", "climatology_mse", "flow_mse"} <= set(metrics)


def test_a_checkpoint_saved_with_the_exact_frame_reads_back_as_its_scale(wide: Path) -> None:
    """Tiled checkpoints written before the scale was kept recorded the whole frame as image_size (the cause of
    'give image_size as a short side, not 16x48' at a sweep's test pass, export and predict)."""
    import json

    from bubbles.config import from_json

    old = _cfg(wide, split="time", val_fraction=0.3, val=[], image_size=16).flat() | {"image_size": "16x48"}
    cfg = from_json(json.dumps(old))
    assert cfg.data.image_size == 16 and cfg.frame_size == (16, 48)
    assert make_splits(cfg.data, cfg.window).frame_size == (16, 48)


def test_export_says_when_the_trained_splits_cannot_be_rebuilt(wide: Path, tmp_path: Path) -> None:
    """export never swallows a rebuild error: an export without its climatology would let predict name a weaker
    baseline the strongest."""
    from click.testing import CliRunner

    from cli import main

    cfg = _cfg(wide, split="time", val_fraction=0.3, val=[], image_size=16)
    train(cfg, tmp_path / "t")
    # A sequence of another field: the splits cannot be rebuilt (held-out frames of two sizes no longer stop them:
    # each is validated whole at its own size, issue 28).
    write_sequence(wide, "tiny", _ramp(40, 16, 16), SequenceMeta(source="test", fields=({"name": "other", "scale": 1},)))
    result = CliRunner().invoke(main, ["export", "--checkpoint", str(tmp_path / "t"), "--out", str(tmp_path / "m")])
    assert result.exit_code != 0 and "cannot rebuild the splits" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m").exists()


TILED_SPACE = """
data: {{store: {store}, split: time, val_fraction: 0.25, test_fraction: 0.25}}
fixed: {{image_size: 16, tile: 16x16, loss: mse_mean, batch_size: 4, max_train_windows: 8, max_val_windows: 4, layers: 1, hidden: 4, peephole: channel,
         epochs: 1, window: "3->1"}}
search:
  lr: {{type: log, low: 1.0e-3, high: 1.0e-2}}
tune: {{objective: val_ssim, num_samples: 2, max_concurrent: 1, max_failures: 0, asha: false, seed: 1}}
evaluate: {{leads: 1, windows: 4, epoch_windows: 2, test_top_k: 2}}
tracking: {{experiment: tiles-test}}
"""


@pytest.mark.slow
def test_a_tiled_sweep_with_a_test_split_reaches_its_leaderboard(wide: Path, tmp_path: Path) -> None:
    """Both trials train on tiles; the test-split pass rebuilds their whole frames from the recorded scale."""
    import csv

    from study.space import load_space
    from study.sweep import run_sweep

    (tmp_path / "space.yaml").write_text(TILED_SPACE.format(store=wide))
    outcome = run_sweep(load_space(tmp_path / "space.yaml"), "tiled", tmp_path / "sweeps", f"sqlite:///{tmp_path / 'mlflow.db'}")
    with (outcome.directory / "leaderboard.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(r["status"] == "completed" for r in rows)
    tested = [r for r in rows if np.isfinite(float(r.get("test_ssim") or r.get("test_ssim_unbiased") or "nan"))]
    assert len(tested) == 2, rows
