"""Readers of the source formats ingest takes (a folder of images, a multi-page TIFF, a video or GIF, a BubbleML
HDF5 simulation): each returns the source's frames in their own dtype, or refuses in one line naming the file.
(netCDF has its own module, bubbles/data/netcdf.py.) The conversion rules are ingest's (bubbles/data/ingest.py)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bubbles.errors import UserError

IMAGE_SUFFIXES = {".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".gif", ".mov", ".mkv"}


def natural_key(path: Path) -> list[Any]:
    """Sort key that puts frame2 before frame10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def read_tiff_stack(path: Path) -> np.ndarray:
    """All pages of a (multi-page) TIFF as (T, H, W[, C]) frames, in their own dtype (tifffile)."""
    import logging

    import tifffile

    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.CRITICAL)  # its warnings about a damaged file would come before our one error line
    try:
        with tifffile.TiffFile(path) as tif:
            shapes = [s.shape for s in tif.series]
            if len(shapes) > 1:  # tifffile reads pages of one size as one series: several means sizes differ
                raise UserError(f"{path}: its {len(tif.pages)} pages differ in size ({', '.join(sorted({str(s) for s in shapes}))}); "
                                "a sequence's frames must share one")
            data = tif.asarray()
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{path}: cannot read TIFF ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    finally:
        log.setLevel(level)
    if data.size == 0:
        raise UserError(f"{path}: cannot read TIFF (no readable page: damaged, or not a TIFF file)")
    single = data.ndim == 2 or (data.ndim == 3 and data.shape[-1] in (3, 4))  # one page: gray, or RGB(A)
    return data[None] if single else data


def read_image_folder(folder: Path, progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, str]:
    """All PNG/TIFF/JPEG files of a folder, in natural order, stacked as frames."""
    import imageio.v3 as iio

    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)
    if not files:
        raise UserError(f"{folder}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    frames = []
    for f in files:
        try:
            frames.append(iio.imread(f))
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if "Could not find a backend" in first:  # imageio's 4-line advice about plugins to install
                first = "not a PNG, TIFF or JPEG file that can be decoded"
            raise UserError(f"{f}: cannot read image ({first})") from None
        if progress:
            progress(1)
    depths = {a.dtype for a in frames}
    if len(depths) > 1:  # one shared scaling range would squash the 8-bit frames into 0-1
        raise UserError(f"{folder}: images mix bit depths ({', '.join(sorted(map(str, depths)))}); convert them to one")
    shapes = {a.shape for a in frames}
    if len(shapes) > 1:
        raise UserError(f"{folder}: images differ in size ({', '.join(map(str, sorted(shapes)))})")
    dtypes = {str(a.dtype) for a in frames}
    if len(dtypes) > 1:
        raise UserError(f"{folder}: images mix bit depths ({', '.join(sorted(dtypes))}); one scaling rule needs one depth")
    return np.stack(frames), f"images:{folder.name}/{files[0].name}..{files[-1].name}"


def read_video(path: Path, progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, float | None]:
    """Every frame of a video (through the ffmpeg that imageio-ffmpeg ships; GIF through Pillow)."""
    import imageio.v3 as iio

    try:
        if path.suffix.lower() == ".gif":
            from PIL import Image

            frames = np.asarray(iio.imread(path, index=None, mode="RGB"))
            with Image.open(path) as gif:
                duration = gif.info.get("duration")  # milliseconds per frame (of the first; GIFs rarely vary)
            fps = 1000.0 / duration if duration else None
        else:
            import imageio.v2 as iio2

            reader = iio2.get_reader(path, format="FFMPEG")
            fps = reader.get_meta_data().get("fps")
            collected = []
            for frame in reader:
                collected.append(np.asarray(frame))
                if progress:
                    progress(1)
            reader.close()
            frames = np.stack(collected)
    except UserError:
        raise
    except Exception as exc:
        # imageio-ffmpeg's message carries ffmpeg's whole banner; its last line is the reason.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[-1].rstrip(")") if lines else type(exc).__name__
        raise UserError(f"{path}: cannot decode video ({reason})") from None
    return frames, fps


def read_hdf5(path: Path, field_names: tuple[str, ...], flip_y: bool) -> list[np.ndarray]:
    """The named fields (each T x Y x X) of a BubbleML-style simulation file, in the order given."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise UserError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        fields = sorted(k for k, v in f.items() if isinstance(v, h5py.Dataset) and v.ndim == 3)
        listed = f"3-D fields here: {', '.join(fields) or 'none'}"
        if not field_names:
            raise UserError(f"{path}: choose a field with --field, or several ({listed})")
        twice = sorted({n for n in field_names if field_names.count(n) > 1})
        if twice:
            raise UserError(f"{path}: --field {twice[0]} is given twice")
        missing = [n for n in field_names if n not in fields]
        if missing:
            raise UserError(f"{path}: no 3-D field {missing[0]!r} ({listed})")
        shapes = {n: f[n].shape for n in field_names}
        if len(set(shapes.values())) > 1:
            listed = ", ".join(f"{n} {'x'.join(map(str, s))}" for n, s in shapes.items())
            raise UserError(f"{path}: the fields differ in shape ({listed}); one sequence needs one shape (T x Y x X)")
        data = [np.asarray(f[n]) for n in field_names]
    return [d[:, ::-1, :].copy() if flip_y else d for d in data]
