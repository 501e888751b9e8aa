"""Ingest round trips: each format into a store, and windows equal the source pixels."""

from __future__ import annotations

from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import pytest

from bubbles.errors import UserError
from bubbles.data.ingest import IngestRequest, ingest, to_gray_uint8
from bubbles.data.store import FrameStore
from bubbles.data.windows import DataConfig, SplitConfig, WindowConfig
from bubbles.data.splits import make_splits


def _gray(t: int = 12, size: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size, size))
    return np.stack([np.roll(base, k, axis=0) for k in range(t)]).astype(np.uint8)


def test_image_folder_natural_order(tmp_path: Path) -> None:
    frames = _gray()
    folder = tmp_path / "rec"
    folder.mkdir()
    for k, f in enumerate(frames):
        iio.imwrite(folder / f"frame{k}.png", f)  # frame10 must come after frame9
    name = ingest(IngestRequest(folder, tmp_path / "s.zarr", condition={"gas_flow": 0.5}))
    store = FrameStore.open(tmp_path / "s.zarr")
    np.testing.assert_array_equal(store.read(name), frames)
    assert store.sequences[name].meta.condition == {"gas_flow": 0.5}


def test_rgb_becomes_luma(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (4, 16, 16, 3)).astype(np.uint8)
    gray, scale = to_gray_uint8(rgb, "x")
    expected = np.rint(rgb @ np.array([0.299, 0.587, 0.114]))
    np.testing.assert_array_equal(gray, expected.astype(np.uint8))
    assert scale == {}


def test_npy_and_windows_equal_source(tmp_path: Path) -> None:
    frames = _gray(t=30)
    np.save(tmp_path / "a.npy", frames)
    np.save(tmp_path / "b.npy", _gray(t=30, seed=1))
    for n in ("a", "b"):
        ingest(IngestRequest(tmp_path / f"{n}.npy", tmp_path / "s.zarr"))
    data = DataConfig(str(tmp_path / "s.zarr"), image_size=32, split=SplitConfig(kind="sequence", val=("b",)))
    splits = make_splits(data, WindowConfig(5, 3, 2))
    for i in range(len(splits.train)):
        x, y = splits.train[i]
        _, start = splits.train.starts[i]
        window = np.concatenate([x.numpy(), y.numpy()])[:, 0]
        np.testing.assert_array_equal(np.rint(window * 255).astype(np.uint8), frames[start : start + 8])


def test_float_hdf5_field_is_flipped_and_scaled(tmp_path: Path) -> None:
    field = np.random.default_rng(2).normal(300.0, 5.0, (6, 32, 40))
    with h5py.File(tmp_path / "sim.hdf5", "w") as f:
        f["temperature"] = field
        f["x"] = np.zeros((32, 40))
    req = IngestRequest(tmp_path / "sim.hdf5", tmp_path / "s.zarr", sequence="sim", hdf5_fields=("temperature",))
    ingest(req)
    store = FrameStore.open(tmp_path / "s.zarr")
    lo, hi = field.min(), field.max()
    expected = np.rint((field[:, ::-1, :] - lo) / (hi - lo) * 255).astype(np.uint8)
    np.testing.assert_array_equal(store.read("sim"), expected)
    assert store.sequences["sim"].meta.extra["scale"] == {"min": lo, "max": hi}
    with pytest.raises(UserError, match="no 3-D field 'velx'.*temperature"):
        ingest(IngestRequest(tmp_path / "sim.hdf5", tmp_path / "s.zarr", sequence="v", hdf5_fields=("velx",)))


def test_gif_round_trip(tmp_path: Path) -> None:
    frames = _gray(t=8)
    iio.imwrite(tmp_path / "clip.gif", frames, loop=0)
    name = ingest(IngestRequest(tmp_path / "clip.gif", tmp_path / "s.zarr"))
    np.testing.assert_array_equal(FrameStore.open(tmp_path / "s.zarr").read(name), frames)


def test_mp4_round_trip_within_codec_loss(tmp_path: Path) -> None:
    t = np.arange(16)[:, None, None]
    yy, xx = np.mgrid[0:64, 0:64]
    frames = (128 + 100 * np.sin((xx[None] + 2 * t) / 6.0) * np.cos(yy[None] / 9.0)).astype(np.uint8)
    iio.imwrite(tmp_path / "clip.mp4", frames, fps=10, plugin="FFMPEG", codec="libx264", macro_block_size=16, quality=10)
    name = ingest(IngestRequest(tmp_path / "clip.mp4", tmp_path / "s.zarr"))
    store = FrameStore.open(tmp_path / "s.zarr")
    got = store.read(name).astype(np.float32)
    assert got.shape == frames.shape
    assert np.abs(got - frames).mean() < 4.0  # lossy codec: close, not equal
    assert store.sequences[name].meta.fps == pytest.approx(10.0)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.npy", "no such file"),
        (lambda p: (p / "x.txt").write_text("hi") and p / "x.txt", "unknown input type"),
        (lambda p: (p / "bad.npy").write_bytes(b"junk") and p / "bad.npy", "not a readable .npy"),
        (lambda p: np.save(p / "c.npy", np.zeros((3, 8, 8), complex)) or p / "c.npy", "unsupported dtype"),
        (lambda p: np.save(p / "n.npy", np.full((3, 32, 32), np.nan)) or p / "n.npy", "NaN"),
        (lambda p: np.save(p / "one.npy", np.zeros((1, 32, 32), np.uint8)) or p / "one.npy", "at least 2"),
        (lambda p: np.save(p / "small.npy", np.zeros((4, 8, 8), np.uint8)) or p / "small.npy", "smaller than"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no image files"),
    ],
)
def test_bad_sources_leave_no_store(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    src = make(tmp_path)
    with pytest.raises(UserError, match=message):
        ingest(IngestRequest(src, tmp_path / "s.zarr"))
    assert not (tmp_path / "s.zarr").exists()
