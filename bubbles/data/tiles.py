"""Training on tiles at native scale: every sequence at its own scale (short side image_size, aspect kept), training
windows cut to random tiles, validation and test on whole frames (docs/real-recordings.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from bubbles.data.fields import Fields
from bubbles.data.framesize import FrameSize, format_image_size, scaled_frame_size
from bubbles.data.shared_frames import share_dir
from bubbles.data.store import FrameStore
from bubbles.data.windows import (DataConfig, FrameCache, Segment, SplitSegments, WindowConfig, WindowDataset,
                                  WindowSplits)
from bubbles.errors import UserError


def scaled_size(native: FrameSize, short_side: int) -> FrameSize:
    """A sequence's frame size when its short side is `short_side`, aspect kept (never above native)."""
    h, w = native
    scale = min(1.0, short_side / min(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def store_view(store: FrameStore, names: list[str]) -> FrameStore:
    """The same store, showing only some sequences (a FrameCache then sizes only those)."""
    return FrameStore(store.path, {n: store.sequences[n] for n in names})


class ScaledCaches:
    """Each sequence's frames at its own scale (see scaled_size): one FrameCache per sequence, one interface."""

    def __init__(self, store: FrameStore, sizes: dict[str, FrameSize], share: Path | None = None) -> None:
        self.store = store
        self.sizes = sizes
        self._caches = {n: FrameCache(store_view(store, [n]), s, share=share) for n, s in sizes.items()}
        self.levels = {n: c.levels[n] for n, c in self._caches.items()}

    def frames(self, name: str, start: int, stop: int) -> np.ndarray:
        return self._caches[name].frames(name, start, stop)

    def check(self, names: list[str]) -> None:
        for name in names:
            if name in self._caches:
                self._caches[name].check([name])


class TileDataset(WindowDataset):
    """Training windows as random tiles: each window's frames at its sequence's own scale, cut to `tile` at one
    random place (the same in every frame of the window), drawn anew each time the window is read (torch's RNG,
    so a trial's seed fixes them)."""

    def __init__(self, cache: ScaledCaches, segments: tuple[Segment, ...], window: WindowConfig, split_name: str,
                 tile: FrameSize, channels: Fields = (), targets: Fields = (), detector: tuple[tuple[str, Any], ...] = ()) -> None:
        super().__init__(cache, segments, window, split_name, channels, targets, detector)  # type: ignore[arg-type]
        self.tile = tile

    # With with_origin, a window is (x, y, origin): origin = (top, left, frame height, frame width) of the tile in
    # the frame it was cut from, so that the baseline start can cut the same tile of the climatology.
    with_origin: bool = False

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        x, y = super().__getitem__(i)
        return (x, y, torch.tensor(self._origin)) if self.with_origin else (x, y)

    def _place(self, frames: np.ndarray) -> np.ndarray:
        h, w = frames.shape[-2:]
        th, tw = self.tile
        y = int(torch.randint(0, h - th + 1, (1,)))
        x = int(torch.randint(0, w - tw + 1, (1,)))
        self._origin = (y, x, h, w)
        return frames[..., y : y + th, x : x + tw]


def tile_lines(store: FrameStore, data: DataConfig, splits: WindowSplits) -> list[str]:
    """One line per sequence: native size, the pyramid level read, the scale, and what the model sees (tiles of
    it, or the whole frame); what dry run and sweep print before anything trains."""
    lines = []
    train_names = {n for n, _, _ in splits.segments.train}
    cache = splits.train.cache
    for name, info in sorted(store.sequences.items()):
        native = info.native_size
        if data.tile is not None and name in train_names and isinstance(cache, ScaledCaches):
            size, level = cache.sizes[name], cache.levels[name]
            whole = splits.sizes.get(name)
            whole = f"; validation on whole {whole[0]}x{whole[1]} frames" if whole else ""
            seen = f"random {data.tile[0]}x{data.tile[1]} tiles (training){whole}"
        else:
            size = splits.sizes.get(name, splits.frame_size)
            level = store.level_for(name, size)
            seen = "whole frames"
        lh, lw = info.level_sizes[level]
        aspect = (size[1] / size[0]) / (native[1] / native[0])
        shape = "" if abs(aspect - 1) <= ASPECT_TOLERANCE else f"; STRETCHED {aspect:.2f}x sideways (aspect {native[1] / native[0]:.2f} -> {size[1] / size[0]:.2f})"
        lines.append(f"{name}: native {native[0]}x{native[1]}, level {level} ({lh}x{lw}) -> {size[0]}x{size[1]}, {seen}{shape}")
    return lines


ASPECT_TOLERANCE = 0.02  # rounding both sides to the model's multiple moves the aspect by about this much


def tiled_splits(store: FrameStore, data: DataConfig, window: WindowConfig, segments: SplitSegments,
                  channels: Fields, targets: Fields) -> WindowSplits:
    """Training on random tiles of every sequence at its own scale; validation and test on whole frames, which must
    then share one size (the model is built for it: every family is convolutional)."""
    tile, m = data.tile, data.size_multiple
    assert tile is not None
    if not isinstance(data.image_size, int):
        raise UserError(f"tile {tile[0]}x{tile[1]}: give image_size as a short side (the scale tiles are cut at), not "
                        f"{format_image_size(data.image_size)}: an exact HxW would stretch sequences of another aspect")
    if tile[0] % m or tile[1] % m:
        raise UserError(f"tile {tile[0]}x{tile[1]}: the model needs both sides divisible by {m}")
    train_names = sorted({n for n, _, _ in segments.train})
    sizes = {n: scaled_size(store.sequences[n].native_size, data.image_size) for n in train_names}
    small = [f"{n} {s[0]}x{s[1]}" for n, s in sizes.items() if s[0] < tile[0] or s[1] < tile[1]]
    if small:
        raise UserError(f"tile {tile[0]}x{tile[1]}: larger than the frames of {', '.join(small[:3])} at image_size "
                        f"{data.image_size}; choose a smaller tile or a larger image_size")
    held = sorted({n for part in (segments.val, segments.test) for n, _, _ in part})
    # Each held-out sequence whole, at its own size: the trained scale, its aspect kept (never stretched to another's).
    wholes = {n: whole_size(store.sequences[n].native_size, data.image_size, m, f"{store.path}/{n}") for n in held}
    share = share_dir()
    train = TileDataset(ScaledCaches(store, sizes, share), segments.train, window, "train", tile, channels, targets, data.detector)
    held_cache = ScaledCaches(store, wholes, share)
    val, test = (WindowDataset(held_cache, getattr(segments, k), window, k, channels, targets, data.detector) for k in ("val", "test"))  # type: ignore[arg-type]
    # The size recorded with the model (one of them: the model is convolutional, any size runs): the largest.
    largest = max(wholes.values(), key=lambda s: (s[0] * s[1], s)) if wholes else tile
    return WindowSplits(train, val, test, segments, largest, channels, targets, sizes=wholes)


def whole_size(native: FrameSize, short_side: int, multiple: int, where: str) -> FrameSize:
    """A held-out sequence's whole frame at the trained scale (short side `short_side`, aspect kept), both sides
    rounded to the model's multiple; never larger than native."""
    size = scaled_frame_size(native, min(short_side, min(native)), multiple)
    if size[0] > native[0] or size[1] > native[1]:
        raise UserError(f"{where}: image_size {short_side} rounds to {size[0]}x{size[1]} so that both sides divide by "
                        f"{multiple} (the model's patch or down-sampling), larger than the native {native[0]}x{native[1]}; "
                        "choose a smaller image_size")
    return size
