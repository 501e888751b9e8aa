"""Ingest real recordings into a frame store: image folders, videos, BubbleML-style HDF5 simulations, .npy arrays.

Rules, so that every source becomes the same (T, H, W) uint8 frames:
- Colour (RGB/RGBA, or a colormapped rendering) becomes one channel by ITU-R BT.601 luma,
  Y = 0.299 R + 0.587 G + 0.114 B (alpha dropped), as Pillow's "L" mode does.
- 8-bit input is kept as is. Other integer input (16-bit PNG folders and multi-page TIFF stacks of high-speed
  cameras) and float input are scaled linearly, one rule per sequence: from the sequence's own [min, max] to
  [0, 255], or with `clip` (LO, HI percentiles, e.g. 0.1, 99.9) from those percentiles, values outside clipped
  (a few hot pixels then do not squash the rest). The values used are stored in `extra.scale` (min, max and the
  percentiles) so the physical values can be recovered. A folder mixing bit depths is refused.
- `crop` (LEFT, TOP, RIGHT, BOTTOM in native pixels, right and bottom exclusive) cuts margins, titles or colour bars
  away before the colour and scaling rules, so the scale comes from the kept region; it is recorded in `extra.crop`.
- The frame rate is `--fps`, else the video's own (ffmpeg metadata; a GIF's first frame duration), else 1.
- Repeated consecutive frames (a camera or an exporter that stalled; a recording padded at its end), equal or,
  after a lossy codec, within DUPLICATE_TOLERANCE grey levels of mean absolute difference, are found after
  conversion and reported with their count and frame ranges: persistence is (nearly) perfect on them, so they
  flatter the baseline's PSNR. They are kept and counted in `extra.duplicate_frames` unless `drop_duplicates`, which
  removes every frame repeating the one before it and records the removed (source) indices in
  `extra.dropped_duplicate_frames`.
- HDF5 simulations (BubbleML layout: one file per simulation, one dataset per field — temperature, pressure, velx,
  vely, dfun, and the grids x, y — each T x rows x columns with row 0 next to the heater) are read from `--field`,
  flipped vertically so the heater is at the bottom of the image as in a camera, then scaled as float input.
  BubbleML's `dfun` is the signed distance to the interface, positive in vapour: after scaling vapour is bright
  and liquid dark. `--field` given several times makes one multi-field sequence, (T, C, H, W): every field must
  have the same shape, and each is scaled by its own [min, max] (or `clip` percentiles), recorded per field in
  the sequence's `fields`.
- `frames` (START:STOP[:STEP], source frame numbers, STOP exclusive, either side may be empty, STEP default 1) keeps
  every STEP-th frame of a range of the source; it is applied first and recorded in `extra.frames` as the
  [start, stop, step] actually used (STOP clamped to the source's end); every frame number reported afterwards is a
  source number.
- `colormap` NAME: the source is a colour-mapped rendering of a scalar field (a matplotlib map, e.g. `jet`): every
  pixel becomes its position in the map (bubbles/data/colormap.py) instead of its luma, recorded in
  `extra.colormap`. Pixels far from every colour of the map (titles, axes, colour bars left in the crop) are
  counted and reported. `colorbar` LEFT,TOP,RIGHT,BOTTOM (native pixels of the source, before the crop): the map
  is the figure's own colour bar in that box, sampled from the first frame (colormap.table_from_colorbar),
  recorded in `extra.colorbar` with its orientation and, with `--colormap` too, that map's off-map share beside it.
- Frames that break the sequence (blank: nearly one grey level; saturated: most pixels at 0 or 255; a jump in
  mean brightness far beyond the neighbours': a padding frame, a flash, a dropped exposure) are reported like
  repeated frames, with the reason, kept and counted in `extra.broken_frames` unless `drop_broken`, which removes
  them and records their source numbers in `extra.dropped_broken_frames`. They are found before repeated frames.
- A one-field sequence gets its bubble-detector calibration (bubbles/data/calibrate.py): polarity, bubble-size
  bounds and contrast measured on its frames, in `extra.detector` (fractions of the height, what the detector
  reads) and `extra.detector_calibration` (native pixels).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bubbles.errors import UserError
from bubbles.data.frame_rules import (
    apply_crop, apply_frames, broken_frames, describe_ranges, duplicate_frames, resolve_frames, to_gray_uint8,
)
from bubbles.data.readers import VIDEO_SUFFIXES, read_hdf5, read_image_folder, read_tiff_stack, read_video
from bubbles.data.store import ConditionValue, SequenceMeta, write_sequence

HDF5_SUFFIXES = {".h5", ".hdf5", ".hdf"}
# A mask's detector: bubbles are the vapour (bright) components, of any shape and size (bubbles/evaluation/bubbles.py).
MASK_DETECTOR = {"mask": True, "polarity": "bright", "max_diameter": 1.0, "roundness": 0.0}
SQUASHED_LEVELS = 16  # fewer grey levels than this between the 0.1 and 99.9 percentiles: say that --clip would help


@dataclass(frozen=True)
class IngestRequest:
    """One ingest: where from, which sequence name, its condition, and source-specific options."""

    source: Path
    store: Path
    sequence: str | None = None
    condition: dict[str, ConditionValue] = field(default_factory=dict)
    fps: float | None = None
    hdf5_fields: tuple[str, ...] = ()
    flip_y: bool = True
    crop: tuple[int, int, int, int] | None = None
    clip: tuple[float, float] | None = None
    drop_duplicates: bool = False
    frames: tuple[int | None, int | None, int] | None = None
    colormap: str | None = None
    drop_broken: bool = False
    colorbar: tuple[int, int, int, int] | None = None  # the figure's colour bar box: inverted with it (colormap.py)


def ingest(request: IngestRequest, progress: Callable[[int], None] | None = None,
           warn: Callable[[str], None] | None = None) -> str:
    """Read a source, convert it by the module's rules and append it to the store. Returns the sequence name.

    `warn` receives one line per thing the user should know but that does not stop the ingest (duplicate frames).
    """
    src = request.source
    if not src.exists():
        raise UserError(f"{src}: no such file or folder")
    suffix = src.suffix.lower()
    fps: float | None = None
    extra: dict[str, Any] = {}
    from bubbles.data.netcdf import NETCDF_SUFFIXES, is_netcdf, read_netcdf

    netcdf = src.is_file() and (suffix in NETCDF_SUFFIXES or (suffix in HDF5_SUFFIXES and is_netcdf(src)))
    if request.hdf5_fields and suffix not in HDF5_SUFFIXES | NETCDF_SUFFIXES:
        raise UserError(f"{src}: --field applies to HDF5 simulations and netCDF files only")
    if netcdf:
        if len(request.hdf5_fields) > 1:
            raise UserError(f"{src}: a netCDF video is one variable; give one --field")
        video = read_netcdf(src, request.hdf5_fields[0] if request.hdf5_fields else None)
        raw, fps = video.frames, video.fps
        source = f"netcdf:{src.name}:{video.variable}"
        extra["netcdf"] = {"variable": video.variable, "dims": list(video.dims),
                           **({"unpacked": video.unpacked_dim} if video.unpacked_dim else {}),
                           **({"fps_from": "time coordinate"} if fps else {})}
    elif src.is_dir():
        raw, source = read_image_folder(src, progress)
    elif suffix in VIDEO_SUFFIXES:
        raw, fps = read_video(src, progress)
        source = f"video:{src.name}"
    elif suffix in HDF5_SUFFIXES:
        fields = read_hdf5(src, request.hdf5_fields, request.flip_y)
        if request.frames is not None:
            extra_frames = list(resolve_frames(request.frames, len(fields[0]), str(src)))
            fields = [apply_frames(f, request.frames, str(src)) for f in fields]
            return _ingest_fields(request, fields, warn, extra_frames)
        return _ingest_fields(request, fields, warn)
    elif suffix in (".tif", ".tiff"):
        raw = read_tiff_stack(src)
        source = f"tiff:{src.name}"
    elif suffix == ".npy":
        try:
            raw = np.load(src, allow_pickle=False)
        except Exception as exc:
            raise UserError(f"{src}: not a readable .npy array ({exc})") from None
        source = f"npy:{src.name}"
    else:
        raise UserError(f"{src}: unknown input type {suffix!r} (folder of images, video, TIFF stack, .h5/.hdf5, .nc, or .npy)")
    raw = np.asarray(raw)
    if request.frames is not None:
        extra["frames"] = list(resolve_frames(request.frames, len(raw), str(src)))
        raw = apply_frames(raw, request.frames, str(src))
    frames, scale = _convert(raw, request, extra)
    if scale:
        extra["scale"] = scale
    return _write(request, frames, source, fps, extra, warn=warn)


def _invert_with_colorbar(raw: np.ndarray, bar_source: np.ndarray, request: IngestRequest, extra: dict[str, Any],
                          where: str) -> np.ndarray:
    """The frames inverted through the figure's own colour bar (sampled from the uncropped first frame); the
    off-map share recorded, and beside it the named --colormap's, when one is given (before and after)."""
    from bubbles.data.colormap import invert, table_from_colorbar

    if raw.ndim != 4 or raw.shape[-1] not in (3, 4):
        raise UserError(f"{request.source}{where}: --colorbar needs colour (RGB) frames, got shape {raw.shape}")
    lut, orientation = table_from_colorbar(bar_source, request.colorbar, f"{request.source}{where}")  # type: ignore[arg-type]
    inverted, off = invert(raw, lut)
    extra["colorbar"] = {"box": list(request.colorbar), "orientation": orientation}  # type: ignore[arg-type]
    extra["off_colormap_fraction"] = round(off, 6)
    if request.colormap is not None:
        extra["colorbar"]["named_map"] = request.colormap
        extra["colorbar"]["named_map_off_fraction"] = round(invert(raw, request.colormap)[1], 6)
    return inverted


def _convert(raw: np.ndarray, request: IngestRequest, extra: dict[str, Any], where: str = "") -> tuple[np.ndarray, dict[str, float]]:
    """Crop (recorded in extra), then the colour and scaling rules."""
    bar_source = raw[0] if request.colorbar is not None and len(raw) else raw
    if request.crop is not None:
        raw = apply_crop(raw, request.crop, str(request.source))
        extra["crop"] = list(request.crop)
    binary = binary_values(raw) if request.colormap is None and request.colorbar is None else None
    if binary is not None:
        extra["mask"] = {"vapour": 255, "liquid": 0, "source_values": binary}
        return np.where(raw == binary[1], 255, 0).astype(np.uint8), {}
    if request.colorbar is not None:
        return _invert_with_colorbar(raw, bar_source, request, extra, where), {}
    if request.colormap is not None:
        if raw.ndim != 4 or raw.shape[-1] not in (3, 4):
            raise UserError(f"{request.source}{where}: --colormap needs colour (RGB) frames, got shape {raw.shape}")
        from bubbles.data.colormap import invert

        inverted, off = invert(raw, request.colormap)
        extra["colormap"] = request.colormap
        extra["off_colormap_fraction"] = round(off, 6)
        return inverted, {}
    return to_gray_uint8(raw, f"{request.source}{where}", request.clip)


def binary_values(raw: np.ndarray) -> list[int | float | bool] | None:
    """[low, high] when a one-channel recording holds exactly two values (a segmented video: vapour high, liquid
    low), else None. Booleans, 0/1 and 0/255 masks alike; a sample tells, the whole recording confirms."""
    if raw.ndim != 3 or raw.size == 0 or not (raw.dtype == np.bool_ or np.issubdtype(raw.dtype, np.integer)):
        return None
    sample = np.unique(raw.reshape(-1)[:: max(1, raw.size // 100_000)])
    if len(sample) != 2:
        return None
    low, high = (int(v) for v in sample.tolist())
    if not np.isin(raw, sample).all():
        return None
    return [low, high]


def _ingest_fields(request: IngestRequest, fields: list[np.ndarray], warn: Callable[[str], None] | None,
                   frames_used: list[int] | None = None) -> str:
    """One sequence from simulation fields: each scaled by its own range, stacked as channels (T, C, H, W)."""
    extra: dict[str, Any] = {"flip_y": request.flip_y} | ({"frames": frames_used} if frames_used else {})
    converted = [_convert(f, request, extra, f":{n}") for n, f in zip(request.hdf5_fields, fields)]
    records = tuple({"name": n, **({"scale": s} if s else {})} for n, (_, s) in zip(request.hdf5_fields, converted))
    if len(converted) == 1 and converted[0][1]:
        extra["scale"] = converted[0][1]  # where single-field sequences kept it before fields were recorded
    frames = np.stack([f for f, _ in converted], axis=1) if len(converted) > 1 else converted[0][0]
    source = f"hdf5:{request.source.name}:{','.join(request.hdf5_fields)}"
    return _write(request, frames, source, None, extra, records, warn)


def _write(request: IngestRequest, frames: np.ndarray, source: str, fps: float | None, extra: dict[str, Any],
           fields: tuple[dict[str, Any], ...] = (), warn: Callable[[str], None] | None = None) -> str:
    src = request.source
    frames, broken_line = _handle_broken(request, frames, extra)
    frames, duplicates_line = _handle_duplicates(request, frames, extra)
    notes = [line for line in (broken_line, duplicates_line, _squashed(request, frames, extra), _off_map(request, extra)) if line]
    if len(frames) < 2:
        dropped = len(extra.get("dropped_duplicate_frames", []))
        after = f" after dropping {dropped} repeated" if dropped else ""
        raise UserError(f"{src}: only {len(frames)} frame(s){after}; a sequence needs at least 2")
    if request.fps is not None and not (math.isfinite(request.fps) and request.fps > 0):
        raise UserError(f"--fps {request.fps}: must be a positive number")
    name = request.sequence or re.sub(r"[^A-Za-z0-9_-]+", "_", src.stem).strip("_") or "sequence"
    if "mask" in extra:  # a segmented recording: bubbles are its connected components, nothing to calibrate
        extra["detector"] = dict(MASK_DETECTOR)
    elif frames.ndim == 3:  # one field: the bubble detector calibrated to it (bubbles/data/calibrate.py)
        from bubbles.data.calibrate import calibrate

        measured = calibrate(frames)
        if measured is not None:
            extra["detector"] = measured.pop("hints")
            extra["detector_calibration"] = measured
    meta = SequenceMeta(source=source, fps=float(request.fps or fps or 1.0), condition=request.condition, extra=extra, fields=fields)
    write_sequence(request.store, name, frames, meta, say=warn)
    for line in notes if warn else ():  # said once the sequence is written: a refused ingest is one error line
        warn(line)
    return name


def _squashed(request: IngestRequest, frames: np.ndarray, extra: dict[str, Any]) -> str:
    """A hint when a min..max scaling left almost all pixels in a few grey levels: a few hot pixels or outliers
    set the range (16-bit cameras, simulations with a singular value); percentile clipping spreads the rest."""
    if request.clip is not None or "scale" not in extra or frames.ndim != 3:  # 8-bit, clipped, or several fields
        return ""
    if extra["scale"].get("min") == extra["scale"].get("max"):  # constant frames: no range, no outliers
        return ""
    sample = frames.reshape(-1)[:: max(1, frames.size // 1_000_000)]  # a million pixels are enough to tell
    low, high = np.percentile(sample, [0.1, 99.9])
    if high - low >= SQUASHED_LEVELS:
        return ""
    return (f"{request.source}: 99.8% of the pixels lie within {int(high - low) + 1} grey level(s) after scaling from "
            "min..max (outliers set the range); `ingest --clip 0.1,99.9` scales from percentiles instead")


def _off_map(request: IngestRequest, extra: dict[str, Any]) -> str:
    from bubbles.data.colormap import OFF_MAP_FRACTION

    off = extra.get("off_colormap_fraction", 0.0)
    if off <= OFF_MAP_FRACTION:
        return ""
    if request.colorbar is not None:
        return (f"{request.source}: {100 * off:.1f}% of the pixels are no colour of the colour bar at --colorbar "
                f"{','.join(map(str, request.colorbar))} (titles or axes in the crop, or the box is not on the bar)")
    return (f"{request.source}: {100 * off:.1f}% of the pixels are no colour of {request.colormap} (titles, axes or colour "
            "bars in the frame, or another map): --crop to the plot, --colorbar to read the figure's own bar, or check "
            "the map's name")


def _source_numbers(request: IngestRequest, indices: list[int], extra: dict[str, Any]) -> list[int]:
    """Indices into the kept frames -> source frame numbers (after --frames and frames dropped as broken)."""
    start, _, step = extra.get("frames", (0, 0, 1))
    dropped = sorted(extra.get("dropped_broken_frames", []))
    out = []
    for i in indices:
        n = i
        for d in dropped:  # dropped kept indices at or before n shift it on
            if (d - start) // step <= n:
                n += 1
        out.append(start + n * step)
    return out


def _handle_broken(request: IngestRequest, frames: np.ndarray, extra: dict[str, Any]) -> tuple[np.ndarray, str]:
    """Find frames that break the sequence; drop them when asked. Recorded in extra either way."""
    found = broken_frames(frames)
    if not found:
        return frames, ""
    start, _, step = extra.get("frames", (0, 0, 1))
    numbers = sorted(start + i * step for i in found)
    reasons = "; ".join(f"{start + i * step}: {why}" for i, why in sorted(found.items()))
    if request.drop_broken:
        extra["dropped_broken_frames"] = numbers
        return (np.delete(frames, sorted(found), axis=0),
                f"{request.source}: dropped {len(found)} frame(s) that break the sequence ({reasons})")
    extra["broken_frames"] = {str(start + i * step): why for i, why in sorted(found.items())}
    return frames, (f"{request.source}: {len(found)} frame(s) of {len(frames)} break the sequence ({reasons}); "
                    "`ingest --drop-broken` removes them")


def _handle_duplicates(request: IngestRequest, frames: np.ndarray, extra: dict[str, Any]) -> tuple[np.ndarray, str]:
    """Find repeated consecutive frames; drop them when asked. Recorded in extra either way (as source frame
    numbers); returns the frames and the line to tell the user (empty when there is nothing to say)."""
    found = duplicate_frames(frames)
    if not found:
        return frames, ""
    duplicates = _source_numbers(request, found, extra)
    where = f"frames {describe_ranges(duplicates)} of {len(frames)}"
    if request.drop_duplicates:
        extra["dropped_duplicate_frames"] = duplicates
        return np.delete(frames, found, axis=0), f"{request.source}: dropped {len(duplicates)} frame(s) repeating the frame before ({where})"
    extra["duplicate_frames"] = len(duplicates)
    return frames, (f"{request.source}: {len(duplicates)} frame(s) repeating the frame before ({where}); persistence "
                    "is (nearly) perfect on them and flatters its PSNR; `ingest --drop-duplicates` removes them")
