# Over 400 lines: every source format's reader (image folders, video, TIFF, HDF5, netCDF) beside the one ingest path; to move into per-format readers once issue 28's netCDF and mask work settles.
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
from bubbles.data.store import ConditionValue, SequenceMeta, write_sequence

IMAGE_SUFFIXES = {".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".gif", ".mov", ".mkv"}
HDF5_SUFFIXES = {".h5", ".hdf5", ".hdf"}
_LUMA = np.array([0.299, 0.587, 0.114], np.float64)
# Mean |difference| (grey levels) below which consecutive frames are one frame repeated. Seen: an H.264 video whose
# last frame was cloned 5 times decodes with 0.005-0.02 between the clones and >= 2.6 between moving frames;
# a camera's sensor noise alone gives about 1 or more.
DUPLICATE_TOLERANCE = 0.1
BLANK_STD = 1.0  # grey levels: a frame flatter than this holds no picture
SATURATED_FRACTION = 0.9  # of the pixels at 0 or 255
# A jump of mean brightness is broken when it exceeds JUMP_K times the sequence's typical frame-to-frame change of
# the mean (1.4826 MAD) and JUMP_MIN_LEVELS grey levels: the pool rendering's means move 0.1-1 level a frame, its
# padding frame (or a flash) tens.
JUMP_K = 10.0
JUMP_MIN_LEVELS = 8.0
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


def parse_crop(text: str, where: str = "--crop") -> tuple[int, int, int, int]:
    """'LEFT,TOP,RIGHT,BOTTOM' -> a tuple of four pixel coordinates (right and bottom exclusive)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise UserError(f"{where} {text!r}: expected LEFT,TOP,RIGHT,BOTTOM in pixels, e.g. 10,40,950,154")
    left, top, right, bottom = (int(p) for p in parts)
    if right <= left or bottom <= top:
        raise UserError(f"{where} {text!r}: RIGHT must exceed LEFT and BOTTOM must exceed TOP")
    return left, top, right, bottom


def parse_frames(text: str, where: str = "--frames") -> tuple[int | None, int | None, int]:
    """'START:STOP[:STEP]' (START, STOP may be empty; STOP exclusive; STEP >= 1, default 1) -> (start, stop, step) of
    source frame numbers: every STEP-th frame from START (a high-speed camera films faster than bubbles move)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.strip().isdigit() for p in parts if p.strip()) or (len(parts) == 3 and not parts[2].strip()):
        raise UserError(f"{where} {text!r}: expected START:STOP or START:STOP:STEP frame numbers (STOP exclusive), "
                        "e.g. 0:68, 10: or ::4")
    a, b = (int(p) if p.strip() else None for p in parts[:2])
    step = int(parts[2]) if len(parts) == 3 else 1
    if a is not None and b is not None and b <= a:
        raise UserError(f"{where} {text!r}: STOP must exceed START")
    if step < 1:
        raise UserError(f"{where} {text!r}: STEP must be >= 1")
    return a, b, step


def resolve_frames(keep: tuple[int | None, int | None, int], total: int, where: str) -> tuple[int, int, int]:
    """(start, stop, step) as used on a source of `total` frames: empty sides filled, STOP clamped to the source's
    end (what is recorded, so the store says which frames it holds)."""
    start, stop, step = keep[0] or 0, keep[1], keep[2] if len(keep) > 2 else 1
    if start >= total:
        raise UserError(f"{where}: --frames starts at {start}, but the source has {total} frames (0-{total - 1})")
    return start, min(total, stop if stop is not None else total), step


def apply_frames(frames: np.ndarray, keep: tuple[int | None, int | None, int], where: str) -> np.ndarray:
    """frames[start:stop:step]; a range that keeps fewer than 2 frames of this source is an error."""
    start, stop, step = resolve_frames(keep, len(frames), where)
    kept = frames[start:stop:step]
    if len(kept) < 2:
        shown = f"{keep[0] if keep[0] is not None else ''}:{keep[1] if keep[1] is not None else ''}" + (f":{step}" if step > 1 else "")
        raise UserError(f"{where}: --frames {shown} keeps {len(kept)} frame(s); a sequence needs at least 2")
    return kept


def broken_frames(frames: np.ndarray) -> dict[int, str]:
    """Frames that break the sequence, by index, with the reason: blank, saturated, or a brightness jump."""
    flat = frames.reshape(len(frames), -1)
    sample = flat[:, :: max(1, flat.shape[1] // 200_000)].astype(np.float32)  # 200k pixels tell these apart
    means, stds = sample.mean(axis=1), sample.std(axis=1)
    extreme = ((sample == 0) | (sample == 255)).mean(axis=1)
    usual = float(np.median(extreme))  # an over-exposed background is saturated in every frame: not a break
    out: dict[int, str] = {}
    for t in range(len(frames)):
        if stds[t] < BLANK_STD:
            out[t] = f"blank (one grey level, {means[t]:.0f})"
        elif extreme[t] > SATURATED_FRACTION and extreme[t] - usual > 0.5:
            out[t] = f"saturated ({100 * extreme[t]:.0f}% of the pixels at 0 or 255)"
    # The typical change between neighbouring frames, over the frames not already broken: two blank frames' steps
    # (to black and back) would otherwise inflate it and hide a real brightness jump.
    steps = np.abs(np.diff(means[[t for t in range(len(frames)) if t not in out]]))
    typical = 1.4826 * float(np.median(np.abs(steps - np.median(steps)))) + float(np.median(steps)) if len(steps) else 0.0
    limit = max(JUMP_K * typical, JUMP_MIN_LEVELS)
    for t in range(len(frames)):
        if t in out:
            continue
        near = [means[i] for i in range(max(0, t - 2), min(len(frames), t + 3)) if i != t and i not in out]
        if near and abs(means[t] - float(np.median(near))) > limit:
            out[t] = f"brightness jump (mean {means[t]:.0f} against {float(np.median(near)):.0f} around it)"
    return out


def apply_crop(frames: np.ndarray, crop: tuple[int, int, int, int], where: str) -> np.ndarray:
    """frames (T, H, W[, C]) cut to [top:bottom, left:right]; a box outside the frame is an error."""
    left, top, right, bottom = crop
    h, w = frames.shape[1:3]
    if right > w or bottom > h:
        raise UserError(f"{where}: crop {left},{top},{right},{bottom} reaches outside the {h}x{w} (HxW) frames")
    return frames[:, top:bottom, left:right]


def duplicate_frames(frames: np.ndarray, tolerance: float = DUPLICATE_TOLERANCE) -> list[int]:
    """Indices t >= 1 whose frame (all channels) repeats frame t - 1: equal, or within `tolerance` grey levels of
    mean absolute difference (a lossy codec re-encodes a repeated frame with a few small differences)."""
    out = []
    for t in range(1, len(frames)):
        a, b = frames[t], frames[t - 1]
        if np.array_equal(a, b) or np.abs(a.astype(np.int16) - b).mean() <= tolerance:
            out.append(t)
    return out


def describe_ranges(indices: list[int]) -> str:
    """[3, 4, 5, 9] -> '3-5, 9': runs of consecutive frame indices, for one readable line."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def natural_key(path: Path) -> list[Any]:
    """Sort key that puts frame2 before frame10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def to_gray_uint8(frames: np.ndarray, where: str, clip: tuple[float, float] | None = None) -> tuple[np.ndarray, dict[str, float]]:
    """Apply the module's colour and scaling rules; returns the frames and the scale used (empty for uint8)."""
    if frames.dtype == np.bool_:
        raise UserError(f"{where}: unsupported dtype bool (use integer or float frames)")
    if clip is not None and frames.dtype == np.uint8:
        raise UserError(f"{where}: --clip scales 16-bit or float frames; these are 8-bit and are stored as they are (drop --clip)")
    if frames.ndim == 4 and frames.shape[-1] == 1:
        frames = frames[..., 0]  # (T, H, W, 1): already one channel
    if frames.ndim == 4:
        if frames.shape[-1] not in (3, 4):
            raise UserError(f"{where}: expected 1, 3 or 4 channels last, got shape {frames.shape}")
        frames = np.tensordot(frames[..., :3].astype(np.float64), _LUMA, axes=([-1], [0]))
        if np.issubdtype(frames.dtype, np.floating) and frames.max(initial=0) <= 255 and frames.min(initial=0) >= 0:
            return np.clip(np.rint(frames), 0, 255).astype(np.uint8), {}
    if frames.ndim != 3:
        raise UserError(f"{where}: expected frames as (T, H, W) or (T, H, W, C), got shape {frames.shape}")
    if frames.dtype == np.uint8:
        return frames, {}
    if frames.size == 0:
        raise UserError(f"{where}: no pixels (shape {frames.shape})")
    if not (np.issubdtype(frames.dtype, np.integer) or np.issubdtype(frames.dtype, np.floating)):
        raise UserError(f"{where}: unsupported dtype {frames.dtype} (use integer or float frames)")
    data = frames.astype(np.float64)
    if not np.isfinite(data).all():
        raise UserError(f"{where}: frames contain NaN or infinite values")
    lo, hi = (float(v) for v in np.percentile(data, clip)) if clip else (float(data.min()), float(data.max()))
    # Halved first: hi - lo of values near the float64 limits would overflow to inf and scale everything to 0.
    span = hi / 2 - lo / 2
    scaled = np.clip((data / 2 - lo / 2) / span, 0, 1) * 255 if span > 0 else np.zeros_like(data)
    scale = {"min": lo, "max": hi} | ({"clip_low_percentile": clip[0], "clip_high_percentile": clip[1]} if clip else {})
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8), scale


def parse_clip(text: str) -> tuple[float, float]:
    """'0.1,99.9' -> (0.1, 99.9): the percentiles mapped to 0 and 255."""
    try:
        lo, hi = (float(p) for p in text.split(","))
    except ValueError:
        raise UserError(f"--clip {text!r}: expected LO,HI percentiles, e.g. 0.1,99.9") from None
    if not 0 <= lo < hi <= 100:
        raise UserError(f"--clip {text!r}: need 0 <= LO < HI <= 100")
    return lo, hi


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
