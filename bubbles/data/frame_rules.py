"""The frame rules every ingested source goes through, whatever its format (bubbles/data/ingest.py says them in
full): the source frames kept (START:STOP[:STEP]), the crop, colour to luma and the scaling to 8 bits, and the
frames that break a sequence or repeat the one before; with the parsers of their command-line forms."""

from __future__ import annotations

import numpy as np

from bubbles.errors import UserError

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
