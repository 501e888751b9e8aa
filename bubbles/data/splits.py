"""The three window datasets of a configuration: the store opened, split by its rule, at its frame size (whole frames
at one size, or random tiles of every sequence at its own scale, bubbles.data.tiles). A module of its own so that
tiles and windows do not import each other."""

from __future__ import annotations

from bubbles.data.fields import resolve_fields
from bubbles.data.framesize import frame_size
from bubbles.data.shared_frames import share_dir
from bubbles.data.store import FrameStore
from bubbles.data.tiles import tiled_splits
from bubbles.data.windows import DataConfig, FrameCache, WindowConfig, WindowDataset, WindowSplits, split_segments
from bubbles.errors import UserError


def validate_window(window: WindowConfig) -> None:
    if window.input_len < 1 or window.output_len < 1 or window.stride < 1 or window.frame_step < 1:
        raise UserError(
            f"window {window.input_len}->{window.output_len} stride {window.stride} frame_step {window.frame_step}: "
            "lengths, stride and frame_step must be >= 1"
        )


def make_splits(data: DataConfig, window: WindowConfig, store: FrameStore | None = None) -> WindowSplits:
    """Open the store, split it and build the three window datasets; every impossible request is a UserError here."""
    validate_window(window)
    store = store or FrameStore.open(data.store)
    segments = split_segments(store, data.split)
    size = frame_size(store, data.image_size, data.size_multiple) if data.tile is None else (0, 0)
    channels, targets = resolve_fields(store, data.channels, data.targets, data.feedback)
    if data.tile is not None:
        splits = tiled_splits(store, data, window, segments, channels, targets)
    else:
        cache = FrameCache(store, size, share=share_dir())
        splits = WindowSplits(
            *(WindowDataset(cache, getattr(segments, k), window, k, channels, targets, data.detector) for k in ("train", "val", "test")),
            segments,
            size,
            channels,
            targets,
        )
    if len(splits.train) == 0:
        raise UserError("split: the training split has no windows")
    if len(splits.val) == 0:
        raise UserError("split: the validation split has no windows (set val / val_fraction)")
    return splits

