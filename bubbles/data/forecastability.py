"""Can a sequence be forecast at a frame spacing? Cheap figures read from the store before anyone trains.

Per sequence, on frames `frame_step` apart, read at their native size on a grid of at most SAMPLE_PIXELS pixels (a
pixel sample keeps a mask's statistics; a coarser pyramid level would blur small bubbles into large grey patches
that look 10x more correlated than they are), so 500 frames take a few seconds:
- anomaly correlation at lags 1..5 (in frame_steps): the correlation of the frames' departures from the
  sequence's per-pixel mean frame, pooled over pixels and frame pairs. Persistence's error against the mean
  frame's is 2·(1 − AC(1)) for a stationary sequence: below AC 0.5 the mean frame beats persistence, and a model
  has little to learn from the past (the warning).
- share of pixels that change per frame: |difference| > CHANGE_LEVELS grey levels (a mask: any change).
- the smallest frame_step at which frames carry motion: where persistence's error reaches MOTION_RATIO of the mean
  frame's (at a high-speed camera's spacing, frames are near copies and a forecast of a few frames is a copy too),
  searched over 1..MAX_STEP. Below STATIC_RATIO the frames are called near copies (a warning).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bubbles.data.store import FrameStore, SequenceInfo

LAGS = 5
SAMPLE_PIXELS = 65_536  # per frame: the figures are means over pixels; a regular grid of this many estimates them
CHANGE_LEVELS = 10  # grey levels (of 255): a pixel that moves less is noise or a codec's ripple
HARD_AC = 0.5  # anomaly correlation at lag 1 below which the mean frame beats persistence
MOTION_RATIO = 0.5  # persistence's MSE / the mean frame's MSE at which frames carry motion (AC about 0.75)
STATIC_RATIO = 0.2  # below: frames are near copies of each other
MAX_STEP = 64


@dataclass(frozen=True)
class Forecastability:
    """One sequence's figures at one frame_step (see the module docstring)."""

    sequence: str
    frame_step: int
    frames: int  # frames at this spacing
    correlation: tuple[float, ...]  # anomaly correlation at lags 1..5 (NaN past the sequence's end)
    changed: float  # mean share of pixels changing from one frame to the next
    persistence_ratio: float  # persistence's MSE at lag 1 / the mean frame's MSE
    motion_step: int | None  # smallest frame_step where frames carry motion (None: none up to MAX_STEP)

    @property
    def hard(self) -> bool:
        """The mean frame will be hard to beat: consecutive frames barely correlate."""
        return bool(np.isfinite(self.correlation[0]) and self.correlation[0] < HARD_AC)

    @property
    def static(self) -> bool:
        """Frames at this spacing are near copies: persistence is nearly perfect, a forecast is a copy."""
        return bool(self.persistence_ratio < STATIC_RATIO)

    def lines(self) -> list[str]:
        """What inspect and a sweep's first lines say."""
        ac = " ".join("-" if not np.isfinite(c) else f"{c:.2f}" for c in self.correlation)
        out = [f"forecastability of {self.sequence} at frame_step {self.frame_step} ({self.frames} frames): anomaly "
               f"correlation at lags 1-{LAGS}: {ac}; {100 * self.changed:.2f}% of pixels change per frame; "
               f"persistence's error {self.persistence_ratio:.2f}x the mean frame's"]
        if self.hard:
            out.append(f"warning: {self.sequence}: consecutive frames barely correlate (anomaly correlation "
                       f"{self.correlation[0]:.2f} at lag 1, below {HARD_AC}): the mean frame will be hard to beat at "
                       f"frame_step {self.frame_step}" + ("; try a smaller frame_step" if self.frame_step > 1 else ""))
        if self.static:
            where = (f"frames carry motion from frame_step {self.motion_step}" if self.motion_step
                     else f"no frame_step up to {MAX_STEP} gives motion")
            out.append(f"warning: {self.sequence}: at frame_step {self.frame_step} frames are near copies (persistence's "
                       f"error {self.persistence_ratio:.3f}x the mean frame's): a forecast is a copy; {where}")
        return out


def _sampled_frames(store: FrameStore, info: SequenceInfo, first: int = 0, end: int | None = None) -> np.ndarray:
    """Frames first..end-1 of the sequence's first field as float32 (T, h, w): its native pixels on a regular grid
    of <= SAMPLE_PIXELS."""
    h, w = info.native_size
    stride = max(1, int(np.ceil(np.sqrt(h * w / SAMPLE_PIXELS))))
    end = info.frames if end is None else end
    parts = []
    for start in range(first, end, 256):  # a block at a time: a long native recording need not fit in memory
        block = store.read(info.name, 0, start, min(end, start + 256))
        parts.append((block[:, 0] if block.ndim == 4 else block)[:, ::stride, ::stride].astype(np.float32))
    return np.concatenate(parts)


def anomaly_correlation(frames: np.ndarray, lag: int) -> float:
    """Correlation of departures from the per-pixel mean between frames `lag` apart (NaN when too short or flat)."""
    if len(frames) <= lag:
        return float("nan")
    anomaly = frames - frames.mean(axis=0, keepdims=True)
    a, b = anomaly[:-lag].ravel().astype(np.float64), anomaly[lag:].ravel().astype(np.float64)
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def persistence_ratio(frames: np.ndarray, step: int) -> float:
    """MSE of persistence at `step` frames / MSE of the per-pixel mean frame (NaN when flat or too short)."""
    if len(frames) <= step:
        return float("nan")
    spread = float(((frames - frames.mean(axis=0, keepdims=True)) ** 2).mean())
    if spread == 0:
        return float("nan")
    return float(((frames[step:] - frames[:-step]) ** 2).mean() / spread)


def measure(frames: np.ndarray, sequence: str, frame_step: int = 1, mask: bool = False) -> Forecastability:
    """The figures of one sequence's (T, H, W) frames (grey levels 0..255) at `frame_step`."""
    spaced = frames[::frame_step]
    correlation = tuple(anomaly_correlation(spaced, lag) for lag in range(1, LAGS + 1))
    if len(spaced) > 1:
        diff = np.abs(spaced[1:] - spaced[:-1])
        changed = float((diff > 0).mean() if mask else (diff > CHANGE_LEVELS).mean())
    else:
        changed = float("nan")
    motion = None
    for step in range(1, min(MAX_STEP, len(frames) // 4) + 1):
        ratio = persistence_ratio(frames, step)
        if np.isfinite(ratio) and ratio >= MOTION_RATIO:
            motion = step
            break
    return Forecastability(sequence, frame_step, len(spaced), correlation, changed,
                           persistence_ratio(spaced, 1), motion)


def store_forecastability(store: FrameStore, frame_step: int = 1,
                          segments: tuple[tuple[str, int, int], ...] | None = None) -> list[Forecastability]:
    """Every sequence of a store at `frame_step`, in name order; or only these (sequence, first, end) segments (a
    sweep reads its training frames only: the test split stays unread until the test pass)."""
    parts = segments if segments is not None else tuple((n, 0, i.frames) for n, i in sorted(store.sequences.items()))
    out = []
    for name, first, end in parts:
        info = store.sequences[name]
        if end - first >= 2:
            out.append(measure(_sampled_frames(store, info, first, end), name, frame_step, mask="mask" in info.meta.extra))
    return out


def summary_lines(store: FrameStore, frame_step: int, segments: tuple[tuple[str, int, int], ...],
                  every: bool = False) -> list[str]:
    """What a sweep says before it starts, on its training segments: one line, then each sequence's warnings (every
    line of every sequence with `every`)."""
    figures = store_forecastability(store, frame_step, segments)
    if not figures:
        return []
    ac = [f.correlation[0] for f in figures if np.isfinite(f.correlation[0])]
    hard = sum(f.hard for f in figures)
    static = sum(f.static for f in figures)
    head = (f"forecastability of the training frames at frame_step {frame_step}: anomaly correlation at lag 1 "
            + (f"{min(ac):.2f}-{max(ac):.2f}" if ac else "-") + f" over {len(figures)} sequence(s); "
            f"{hard} where the mean frame will be hard to beat, {static} whose frames are near copies"
            + ("" if every else " (`inspect --frame-step` shows each)"))
    lines = [line for f in figures for line in f.lines() if every or line.startswith("warning:")]
    return [head, *lines[: None if every else 5]] + ([f"... and {len(lines) - 5} more warning(s)"] if not every and len(lines) > 5 else [])
