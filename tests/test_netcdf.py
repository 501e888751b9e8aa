"""netCDF-4 ingest: files laid out as xarray/netCDF4 write them (dimension scales, a time coordinate, bool as int8,
bit-packed masks), written here with h5py."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from bubbles.data.ingest import IngestRequest, ingest
from bubbles.data.store import FrameStore
from bubbles.errors import UserError


def _masks(t: int = 10, h: int = 16, w: int = 21, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    out = np.zeros((t, h, w), bool)
    for k in range(t):
        cy, cx = rng.integers(4, h - 4), rng.integers(4, w - 4)
        out[k] = (yy - cy) ** 2 + (xx - cx) ** 2 <= 9
    return out


def _write_nc(path: Path, video: np.ndarray, x_full: int, packed: bool, fps: float = 4800.0,
              frame_dim: str = "frame", time_units: str = "s") -> None:
    """A netCDF-4 layout: dimension scales for frame/ypx/xpx (and xpx_packed), a `time` coordinate on the frame
    dimension listed in the variable's `coordinates`, bool video as int8 with dtype='bool'."""
    t, h = video.shape[:2]
    with h5py.File(path, "w") as f:
        f.attrs["_NCProperties"] = b"version=2,netcdf=4.9.2,hdf5=1.14.0"
        f[frame_dim] = np.arange(t)
        f["ypx"] = np.arange(h)
        f["xpx"] = np.arange(x_full)
        scales = [frame_dim, "ypx", "xpx_packed" if packed else "xpx"]
        if packed:
            f["xpx_packed"] = np.arange(video.shape[2])
        for name in (frame_dim, "ypx", "xpx", *(("xpx_packed",) if packed else ())):
            f[name].make_scale(name)
        scale = {"s": 1.0, "ms": 1e3}[time_units]
        f["time"] = np.round(np.arange(t) / fps, 6) * scale  # rounded to microseconds, like the shared file
        f["time"].attrs["units"] = time_units.encode()
        f["time"].dims[0].attach_scale(f[frame_dim])
        f["video"] = video
        for axis, name in enumerate(scales):
            f["video"].dims[axis].attach_scale(f[name])
        f["video"].attrs["coordinates"] = b"time"
        if not packed:
            f["video"].attrs["dtype"] = b"bool"


def test_netcdf_mask_fps_and_mask_record(tmp_path: Path) -> None:
    masks = _masks()
    _write_nc(tmp_path / "run.nc", masks.astype(np.int8), masks.shape[2], packed=False)
    name = ingest(IngestRequest(tmp_path / "run.nc", tmp_path / "s.zarr"))
    store = FrameStore.open(tmp_path / "s.zarr")
    np.testing.assert_array_equal(store.read(name), np.where(masks, 255, 0))
    meta = store.sequences[name].meta
    assert meta.fps == pytest.approx(4800.0, rel=1e-3)  # from the time coordinate, not the default 1
    assert meta.extra["mask"]["source_values"] == [0, 1]
    assert meta.extra["detector"]["mask"] is True and "detector_calibration" not in meta.extra
    assert meta.extra["netcdf"]["dims"] == ["frame", "ypx", "xpx"]


def test_netcdf_bit_packed_frames_are_unpacked(tmp_path: Path) -> None:
    masks = _masks(w=21)  # 21 columns: packed into 3 bytes, the last one padded with 3 zero bits
    packed = np.packbits(masks, axis=2)
    assert packed.shape[2] == 3
    _write_nc(tmp_path / "packed.h5", packed, 21, packed=True, time_units="ms", fps=1000.0)
    name = ingest(IngestRequest(tmp_path / "packed.h5", tmp_path / "s.zarr"))  # .h5 written by xarray: netCDF too
    store = FrameStore.open(tmp_path / "s.zarr")
    np.testing.assert_array_equal(store.read(name), np.where(masks, 255, 0))
    info = store.sequences[name]
    assert info.native_size == (16, 21) and info.meta.fps == pytest.approx(1000.0, rel=1e-3)
    assert info.meta.extra["netcdf"]["unpacked"] == "xpx_packed"


def test_netcdf_frame_axis_found_by_name_and_errors(tmp_path: Path) -> None:
    video = np.random.default_rng(3).normal(0, 1, (6, 16, 18)).astype(np.float32)
    # frames last: (ypx, xpx, time) -> moved first
    with h5py.File(tmp_path / "late.nc", "w") as f:
        for name, n in (("ypx", 16), ("xpx", 18), ("time", 6)):
            f[name] = np.arange(n) * (0.5 if name == "time" else 1)
            f[name].make_scale(name)
        f["time"].attrs["units"] = b"seconds since 2024-01-01"
        f["v"] = np.moveaxis(video, 0, -1)
        for axis, name in enumerate(("ypx", "xpx", "time")):
            f["v"].dims[axis].attach_scale(f[name])
        f["other"] = np.zeros((2, 2, 2))
    with pytest.raises(UserError, match="choose a variable with --field.*other, v"):
        ingest(IngestRequest(tmp_path / "late.nc", tmp_path / "s.zarr"))
    name = ingest(IngestRequest(tmp_path / "late.nc", tmp_path / "s.zarr", hdf5_fields=("v",)))
    info = FrameStore.open(tmp_path / "s.zarr").sequences[name]
    assert info.frames == 6 and info.native_size == (16, 18) and info.meta.fps == pytest.approx(2.0)
    assert "mask" not in info.meta.extra
    with pytest.raises(UserError, match="none names frames"):
        ingest(IngestRequest(tmp_path / "late.nc", tmp_path / "s.zarr", hdf5_fields=("other",)))
