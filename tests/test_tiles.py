"""Training on tiles at native scale: sequences of any size and aspect train together, nothing is stretched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bubbles.config import trial_config
from bubbles.data.store import SequenceMeta, write_sequence
from bubbles.data.tiles import TileDataset, tile_lines
from bubbles.data.windows import make_splits
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
