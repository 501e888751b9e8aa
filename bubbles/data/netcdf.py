"""Read a video variable of a netCDF-4 file (or an HDF5 file written by xarray) with h5py.

netCDF-4 is HDF5 with conventions: every variable is an HDF5 dataset whose axes are attached to dimension scales
(the `DIMENSION_LIST` attribute; a dimension without a coordinate is a scale dataset named after it), coordinates
that are not dimensions are listed in the variable's `coordinates` attribute, and the file carries `_NCProperties`
or `_Netcdf4Dimid` attributes. h5py (already a dependency, for BubbleML files) reads all of that; xarray would
add pandas and an engine for no extra information.

Rules:
- The variable is `--field NAME`; without it, the file's one variable of three or more dimensions.
- The frame axis is the dimension named like time or frames (`time`, `frame`, `t`, ...); it is moved first. The
  other two are rows (y) and columns (x), in the file's order; colour last (a dimension of 3 or 4) is kept.
- The frame rate comes from a time coordinate along the frame axis (a dimension scale or a coordinate named
  `time`/`t`, units seconds, ms, us or ns, or "<unit> since ..."): 1 / the median spacing.
- A binary video bit-packed along a dimension (published boiling datasets store masks as uint8 with a
  `xpx_packed` dimension beside the full `xpx` coordinate) is unpacked along it with numpy.unpackbits, big-endian
  bit order, and cut to the full coordinate's length.
- A variable stored as integers holding booleans (attribute `dtype = "bool"`, as xarray writes bool) is returned as
  bool; the caller records it as a mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bubbles.errors import UserError

NETCDF_SUFFIXES = {".nc", ".nc4", ".netcdf", ".cdf"}
FRAME_DIM_NAMES = ("time", "frame", "frames", "t", "frame_number", "image", "images")
TIME_NAMES = ("time", "t", "times", "elapsed_time", "time_elapsed")
_TIME_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3, "millisecond": 1e-3,
               "milliseconds": 1e-3, "us": 1e-6, "µs": 1e-6, "microsecond": 1e-6, "microseconds": 1e-6,
               "ns": 1e-9, "nanosecond": 1e-9, "nanoseconds": 1e-9, "min": 60.0, "minutes": 60.0}
PACKED_SUFFIX = "_packed"


@dataclass(frozen=True)
class NetcdfVideo:
    """What a netCDF video variable holds: frames (T, H, W[, C]), its name, the frame rate when the file gives one,
    whether it is binary (stored as booleans or bit-packed), and notes for the user (which dims, unpacking)."""

    frames: np.ndarray
    variable: str
    fps: float | None
    binary: bool
    dims: tuple[str, ...]
    unpacked_dim: str | None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def is_netcdf(path: Path) -> bool:
    """True for a .nc file, or an HDF5 file carrying netCDF-4's markers (written by xarray or netCDF4)."""
    if path.suffix.lower() in NETCDF_SUFFIXES:
        return True
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "_NCProperties" in f.attrs:
                return True
            return any(isinstance(v, h5py.Dataset) and "_Netcdf4Dimid" in v.attrs for v in f.values())
    except OSError:
        return False


def _dim_names(f: object, var: object) -> tuple[str, ...]:
    """The variable's dimension names from its attached scales ('phony_dim_N' for an axis without one)."""
    names = []
    for i, dim in enumerate(var.dims):  # type: ignore[attr-defined]
        scales = list(dim.keys())
        if scales:
            names.append(scales[0].rsplit("/", 1)[-1])
        else:
            names.append(f"phony_dim_{i}")
    return tuple(names)


def _seconds_per_unit(units: str) -> float | None:
    head = units.strip().lower().split(" since ")[0].strip()
    return _TIME_UNITS.get(head)


def _fps(f: object, var: object, frame_dim: str, frames: int, where: str) -> float | None:
    """1 / median spacing of a time coordinate along the frame dimension, in seconds; None without one."""
    import h5py

    candidates = [frame_dim] + [c for c in _text(var.attrs.get("coordinates", b"")).split() if c]  # type: ignore[attr-defined]
    candidates += [n for n in TIME_NAMES if n in f]  # type: ignore[operator]
    for name in candidates:
        if name not in f or name.lower() not in TIME_NAMES and name != frame_dim:  # type: ignore[operator]
            continue
        coord = f[name]  # type: ignore[index]
        if not isinstance(coord, h5py.Dataset) or coord.ndim != 1 or coord.shape[0] != frames:
            continue
        units = _text(coord.attrs.get("units", b""))
        per = _seconds_per_unit(units) if units else None
        if per is None:
            continue  # a frame counter (no time units) says nothing about the rate
        values = np.asarray(coord[:], np.float64)
        steps = np.diff(values[np.isfinite(values)])
        steps = steps[steps > 0]
        if len(steps) == 0:
            raise UserError(f"{where}: time coordinate {name!r} does not increase; give the frame rate with --fps")
        step = float(np.median(steps))
        if np.all(np.abs(steps - step) <= 0.1 * step):  # regular: the whole span is more precise than rounded steps
            step = float((values[-1] - values[0]) / (len(values) - 1))
        return float(1.0 / (step * per))
    return None


def read_netcdf(path: Path, variable: str | None) -> NetcdfVideo:
    """The video variable of a netCDF-4 file, frames first (see the module's rules)."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise UserError(f"{path}: not a readable netCDF-4/HDF5 file ({exc}); netCDF-3 files are not supported") from None
    with f:
        videos = sorted(k for k, v in f.items() if isinstance(v, h5py.Dataset) and v.ndim >= 3)
        listed = f"variables of 3 or more dimensions here: {', '.join(videos) or 'none'}"
        if variable is None:
            if len(videos) != 1:
                raise UserError(f"{path}: choose a variable with --field ({listed})")
            variable = videos[0]
        if variable not in videos:
            raise UserError(f"{path}: no variable {variable!r} of 3 or more dimensions ({listed})")
        var = f[variable]
        dims = _dim_names(f, var)
        frame_axis = next((i for i, d in enumerate(dims) if d.lower() in FRAME_DIM_NAMES), None)
        if frame_axis is None:
            raise UserError(f"{path}: variable {variable!r} has dimensions ({', '.join(dims)}); none names frames "
                            f"({', '.join(FRAME_DIM_NAMES)})")
        where = f"{path}:{variable}"
        fps = _fps(f, var, dims[frame_axis], var.shape[frame_axis], where)
        data = np.moveaxis(np.asarray(var[:]), frame_axis, 0)
        order = [d for i, d in enumerate(dims) if i != frame_axis]
        binary = _text(var.attrs.get("dtype", b"")).lower() == "bool"
        unpacked = None
        for axis, dim in enumerate(order, start=1):
            if dim.endswith(PACKED_SUFFIX):
                full = dim[: -len(PACKED_SUFFIX)]
                if data.dtype != np.uint8:
                    raise UserError(f"{where}: dimension {dim!r} says bit-packed, but the data are {data.dtype}, not uint8")
                bits = np.unpackbits(data, axis=axis)
                length = f[full].shape[0] if full in f and f[full].ndim == 1 else bits.shape[axis]
                if length > bits.shape[axis]:
                    raise UserError(f"{where}: {dim!r} holds {bits.shape[axis]} bits, fewer than the {length} of {full!r}")
                data = np.take(bits, np.arange(length), axis=axis)
                order[axis - 1] = full
                unpacked, binary = dim, True
        if binary:
            data = data != 0
    return NetcdfVideo(frames=data, variable=variable, fps=fps, binary=binary,
                       dims=(dims[frame_axis], *order), unpacked_dim=unpacked)
