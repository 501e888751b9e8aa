# Over 400 lines: splits, the frame cache and the window datasets share their segment arithmetic (make_splits, which also builds tiled splits, is in bubbles.data.splits).
"""Windows of frames for training: splits by initial condition, by sequence or by time, and the window dataset.

A split is a set of segments (sequence, first frame, end frame); windows never cross a segment, so no frame of one
split ever appears in a window of another. The image size is the short side (the store's aspect ratio kept) or an
exact HxW; it is resolved against the store once (`frame_size`). Frames come from the pyramid level that matches the
frame size (or the nearest larger level, resized once when loaded, never per sample) and are scaled to float32
[0, 1] by /255.
"""

from __future__ import annotations

import math
from pathlib import Path
import random
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from bubbles.errors import UserError
from bubbles.params import MAX_SEED, fail, param
from bubbles.data.fields import Fields, parse_fields
from bubbles.data.shared_frames import shared_frames
from bubbles.data.framesize import FrameSize, ImageSize, format_image_size, parse_image_size
from bubbles.data.store import FrameStore, SequenceInfo

SplitKind = Literal["condition", "sequence", "time"]
PRELOAD_LIMIT_BYTES = 2 * 1024**3


def _store(where: str, key: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise fail(where, key, f"expected a path, got {value!r}")
    return value


def parse_detector(where: str, key: str, value: Any) -> tuple[tuple[str, Any], ...]:
    """The `detector` mapping: DetectorConfig field names; polarity a choice, the rest non-negative numbers."""
    from bubbles.evaluation.bubbles import DETECTOR_FIELDS  # the detector's own field list; read only here
    from bubbles.params import parse_choice, parse_float

    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise fail(where, key, f"expected a mapping such as {{polarity: bright, max_diameter: 0.3}}, got {value!r}")
    out = []
    for name, v in sorted(value.items()):
        if name not in DETECTOR_FIELDS:
            raise fail(where, key, f"unknown setting {name!r} (have: {', '.join(DETECTOR_FIELDS)})")
        if name == "mask":
            if not isinstance(v, bool):
                raise fail(where, f"{key}.mask", f"expected true or false, got {v!r}")
            out.append((name, v))
            continue
        high = 1.0 if name.startswith("roi_") else 1000.0  # fractions of the frame height
        out.append((name, parse_choice(where, f"{key}.polarity", v, ("auto", "dark", "bright")) if name == "polarity"
                    else parse_float(where, f"{key}.{name}", v, 0.0, high)))
    given = dict(out)
    if given.get("min_diameter", 0.0) > given.get("max_diameter", math.inf):
        raise fail(where, key, f"min_diameter {given['min_diameter']:g} is larger than max_diameter {given['max_diameter']:g}: "
                   "no bubble could be found")
    if given.get("roi_top", 0.0) >= given.get("roi_bottom", 1.0):
        raise fail(where, key, f"roi_top {given.get('roi_top', 0.0):g} is not above roi_bottom {given.get('roi_bottom', 1.0):g}: "
                   "the region of interest is empty")
    return tuple(out)


def _tile(where: str, key: str, value: Any) -> FrameSize | None:
    """'48x48', 48 (square) or [48, 96]; empty / None: no tiling."""
    if value in (None, "", 0):
        return None
    size = parse_image_size(value, f"{where}: {key}")
    return size if isinstance(size, tuple) else (size, size)


def _show_tile(value: FrameSize | None) -> str | None:
    return None if value is None else f"{value[0]}x{value[1]}"


def _image_size(where: str, key: str, value: object) -> ImageSize:
    return parse_image_size(value, f"{where}: {key}")


@dataclass(frozen=True)
class WindowConfig:
    """input_len frames in, output_len frames out, the frames of a window `frame_step` stored frames apart (a
    high-speed camera films faster than bubbles move: every k-th frame), a new window every `stride` frames."""

    input_len: int = param(20, "input_len", "context frames", low=1)
    output_len: int = param(1, "output_len", "predicted frames (lead times 1..M, each frame_step frames apart)", low=1)
    stride: int = param(1, "stride", "stored frames between window starts", low=1)
    frame_step: int = param(1, "frame_step", "stored frames between the frames of a window (k: every k-th frame; "
                            "the yardstick and every baseline use the same spacing)", low=1, high=1000)

    @property
    def length(self) -> int:
        """Frames in a window (input and output)."""
        return self.input_len + self.output_len

    @property
    def span(self) -> int:
        """Stored frames a window covers, first to last: (length - 1) · frame_step + 1."""
        return (self.length - 1) * self.frame_step + 1


@dataclass(frozen=True)
class SplitConfig:
    """How frames are divided between train, val and test.

    condition: hold out whole initial conditions; `val` / `test` name them by id (c1234abcd) or as key=value
    filters (regime=nozzle), else `val_fraction` / `test_fraction` of the conditions are drawn with `seed`.
    sequence: the same with sequence names. time: each sequence is cut into train | gap | val | gap | test.
    """

    kind: SplitKind = param("condition", "split", "split rule: condition | sequence | time")
    val: tuple[str, ...] = param((), "val", "held-out validation conditions (ids or key=value) or sequence names; "
                                 "empty: drawn by val_fraction")
    test: tuple[str, ...] = param((), "test", "held-out test conditions or sequences; empty: drawn by test_fraction")
    val_fraction: float = param(0.25, "val_fraction", "fraction of conditions / sequences / frames for validation", high=0.9)
    test_fraction: float = param(0.0, "test_fraction", "fraction for test", high=0.9)
    gap: int = param(0, "split_gap", "time split: frames dropped between parts", low=0)
    seed: int = param(0, "split_seed", "seed of the drawn split", low=0, high=MAX_SEED)


@dataclass(frozen=True)
class DataConfig:
    """Which store, at which image size (short side or exact HxW, see frame_size), split how. size_multiple: what the
    model needs both frame sides divisible by. channels / targets: the fields read and predicted (empty: the
    store's first field; see bubbles.data.fields); feedback: the model feeds predictions back (targets = channels).
    frame: with tiles, the whole frame size once resolved (image_size stays the short side the tiles are cut at)."""

    store: str = param("data/synthetic.zarr", "store", "frame store path", parse=_store)
    image_size: ImageSize = param(64, "image_size", "short side in pixels, the store's aspect kept (64), or exact HxW "
                                  "('96x256', stretches when the aspect differs)", parse=_image_size, show=format_image_size)
    split: SplitConfig = field(default_factory=SplitConfig)
    size_multiple: int = 1
    channels: Fields = param((), "channels", "input fields of a multi-field store, e.g. [dfun, temperature, velx]; "
                             "empty: the store's first field", parse=parse_fields)
    targets: Fields = param((), "target_fields", "predicted fields, each also an input; empty: the first of channels. "
                            "Models that feed their frames back (convlstm seq2seq, predrnn_v2) predict exactly the "
                            "channels", parse=parse_fields)
    feedback: bool = False
    tile: FrameSize | None = param(None, "tile", "train on random HxW tiles (one place per window) cut from each "
                                   "sequence at the scale image_size sets (short side, aspect kept, never stretched), "
                                   "so sequences of any size and aspect train together; validation, evaluation and "
                                   "predict run on whole frames. Empty: whole frames at image_size",
                                   parse=_tile, show=_show_tile)
    detector: tuple[tuple[str, Any], ...] = param((), "detector", "bubble detector settings over the store's "
                                                  "calibration, e.g. {polarity: bright, max_diameter: 0.3, min_contrast: "
                                                  "0.05} (lengths in frame heights; docs/real-recordings.md)",
                                                  parse=parse_detector, show=dict)
    frame: FrameSize | None = None  # with tiles: the whole frame size resolved against a store (TrialConfig.at_frame_size)


Segment = tuple[str, int, int]  # sequence name, first frame, end frame (exclusive)


@dataclass(frozen=True)
class SplitSegments:
    train: tuple[Segment, ...]
    val: tuple[Segment, ...]
    test: tuple[Segment, ...]


def _matches(info: SequenceInfo, selector: str, where: str) -> bool:
    if "=" not in selector:
        return selector in (info.condition_id, info.name)
    key, _, value = selector.partition("=")
    if key not in info.meta.condition:
        raise UserError(f"{where}: unknown condition key {key!r} (keys: {', '.join(sorted(info.meta.condition)) or 'none'})")
    have = info.meta.condition[key]
    try:
        return math.isclose(float(have), float(value))
    except (TypeError, ValueError):
        return str(have) == value


def _pick_groups(groups: dict[str, list[str]], selectors: tuple[str, ...], infos: dict[str, SequenceInfo], what: str) -> set[str]:
    chosen = set()
    for sel in selectors:
        hit = {g for g, names in groups.items() if any(_matches(infos[n], sel, f"split.{what}") for n in names)}
        if not hit:
            raise UserError(f"split.{what}: {sel!r} matches no {('condition' if '=' in sel else 'condition id or sequence')} in the store")
        chosen |= hit
    return chosen


def split_segments(store: FrameStore, cfg: SplitConfig) -> SplitSegments:
    """Divide the store's frames into train / val / test segments by the rule in `cfg` (deterministic)."""
    infos = store.sequences
    if not infos:
        raise UserError(f"{store.path}: the store holds no sequences")
    if cfg.kind == "time":
        return _time_segments(infos, cfg)
    groups: dict[str, list[str]] = {}
    for name, info in sorted(infos.items()):
        key = info.condition_id if cfg.kind == "condition" else name
        groups.setdefault(key, []).append(name)
    if cfg.val or cfg.test:
        val = _pick_groups(groups, cfg.val, infos, "val")
        test = _pick_groups(groups, cfg.test, infos, "test") - val
    else:
        order = sorted(groups)
        random.Random(cfg.seed).shuffle(order)
        n_test = max(1, round(cfg.test_fraction * len(order))) if cfg.test_fraction > 0 else 0
        n_val = max(1, round(cfg.val_fraction * len(order))) if cfg.val_fraction > 0 else 0
        if n_test + n_val >= len(order):
            raise UserError(
                f"split: {len(order)} {cfg.kind}(s) cannot give {n_val} val + {n_test} test and keep one for training"
                + (" (use split: time, or a store with more conditions)" if cfg.kind == "condition" else "")
            )
        test, val = set(order[:n_test]), set(order[n_test : n_test + n_val])
    train = set(groups) - val - test
    if not train:
        raise UserError(f"split: every {cfg.kind} is held out; nothing is left for training")

    def segs(keys: set[str]) -> tuple[Segment, ...]:
        return tuple((n, 0, infos[n].frames) for k in sorted(keys) for n in groups[k])

    return SplitSegments(segs(train), segs(val), segs(test))


def _time_segments(infos: dict[str, SequenceInfo], cfg: SplitConfig) -> SplitSegments:
    train, val, test = [], [], []
    for name, info in sorted(infos.items()):
        t = info.frames
        a = int(round(t * (1 - cfg.val_fraction - cfg.test_fraction)))
        b = int(round(t * (1 - cfg.test_fraction)))
        train.append((name, 0, a))
        if cfg.val_fraction > 0:
            val.append((name, min(a + cfg.gap, b), b))
        if cfg.test_fraction > 0:
            test.append((name, min(b + cfg.gap, t), t))
    return SplitSegments(tuple(train), tuple(val), tuple(test))


class FrameCache:
    """Frames of one (H, W) frame size, read from the right pyramid level.

    With a `share` directory (the default for training, see bubbles.data.shared_frames) each sequence is decoded
    once per node into a memory-mapped file that every trial process on the node reads without a copy. Without
    one, small stores are loaded whole into this process, and larger ones are read chunk by chunk into an LRU
    cache bounded in bytes. Either way a chunk is decoded (and resized, if the level does not match the size
    exactly) only once per node or process.
    """

    def __init__(self, store: FrameStore, size: FrameSize, limit_bytes: int = PRELOAD_LIMIT_BYTES, share: Path | None = None) -> None:
        self.store = store
        self.size = size
        self.levels = {name: store.level_for(name, size) for name in store.sequences}
        total = self._bytes_of_all()
        self.share = share
        self.preloaded = share is not None or total <= limit_bytes
        self.limit = limit_bytes
        self._whole: dict[str, np.ndarray] = {}
        self._chunks: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._bytes = 0

    def __getstate__(self) -> dict:
        # A DataLoader worker started by pickling maps the node's files again rather than receiving a copy.
        return self.__dict__ | ({"_whole": {}} if self.share is not None else {})

    def _bytes_of_all(self) -> int:
        return sum(info.frames * int(np.prod(info.frame_shape(self.size))) for info in self.store.sequences.values())

    def _fit(self, frames: np.ndarray) -> np.ndarray:
        if frames.shape[-2:] == self.size:
            return frames
        from skimage.transform import resize

        # Time and field axes keep their length: scale 1 there, so no frame or field is mixed into another.
        out = resize(frames.astype(np.float32), (*frames.shape[:-2], *self.size), order=1, anti_aliasing=True, preserve_range=True)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def frames(self, name: str, start: int, stop: int) -> np.ndarray:
        """(stop - start, H, W) uint8 frames of one sequence ((stop - start, C, H, W) for several fields)."""
        if self.preloaded:
            whole = self._whole.get(name)
            if whole is None and (whole := self._load(name)) is not None:
                self._whole[name] = whole
            if whole is not None:
                return whole[start:stop]
        ct = self.store.sequences[name].chunk_frames
        parts = [self._chunk(name, c) for c in range(start // ct, (stop - 1) // ct + 1)]
        block = parts[0] if len(parts) == 1 else np.concatenate(parts)
        offset = start - (start // ct) * ct
        return block[offset : offset + stop - start]

    def check(self, names: list[str]) -> None:
        """Decode every chunk these sequences will be read from, now, so that a damaged one (checksum) stops a run
        before anything is written. Preloaded frames stay loaded for training; streamed ones are read once more."""
        for name in names:
            if self.preloaded:
                self.frames(name, 0, 1)  # loads (maps) the whole sequence, through the checked read
                if self.preloaded:  # still: it did not fall back to streaming for lack of room
                    continue
            ct, total = self.store.sequences[name].chunk_frames, self.store.sequences[name].frames
            for start in range(0, total, ct * 8):
                self.store.read(name, self.levels[name], start, min(total, start + ct * 8))

    def _load(self, name: str) -> np.ndarray | None:
        """The whole sequence (mapped from the node's file, or decoded here), or None when it must be streamed."""
        level = self.levels[name]
        if self.share is not None:
            mapped = shared_frames(self.share, self.store, name, level, self.size, lambda a, b: self._fit(self.store.read(name, level, a, b)))
            if mapped is not None:
                return mapped
            # No room on the node's disk: this process keeps its own frames, streamed if they are large.
            self.share = None
            self.preloaded = self._bytes_of_all() <= self.limit
            if not self.preloaded:
                return None
        return self._fit(self.store.read(name, level))

    def _chunk(self, name: str, c: int) -> np.ndarray:
        key = (name, c)
        if key in self._chunks:
            self._chunks.move_to_end(key)
            return self._chunks[key]
        ct = self.store.sequences[name].chunk_frames
        data = self._fit(self.store.read(name, self.levels[name], c * ct, (c + 1) * ct))
        self._chunks[key] = data
        self._bytes += data.nbytes
        while self._bytes > self.limit and len(self._chunks) > 1:
            _, old = self._chunks.popitem(last=False)
            self._bytes -= old.nbytes
        return data


class WindowDataset(Dataset):
    """(input, target) windows: tensors of shape (input_len, C_in, H, W) and (output_len, C_out, H, W), float32 in
    [0, 1], C_in the `channels` fields and C_out the `targets` (by default the store's first field, C = 1)."""

    def __init__(self, cache: FrameCache, segments: tuple[Segment, ...], window: WindowConfig, split_name: str,
                 channels: Fields = (), targets: Fields = (), detector: tuple[tuple[str, Any], ...] = ()) -> None:
        self.cache = cache
        self.detector_overrides = dict(detector)  # what the evaluation's bubble detector takes over the store's
        self.window = window
        infos = cache.store.sequences
        if not channels and segments:  # built without make_splits: the first field, as resolve_fields defaults
            channels = infos[segments[0][0]].fields[:1]
        self.channels, self.targets = channels, targets or channels[:1]
        # Per sequence, where each input and each target field lies among its stored channels.
        self._index = {name: (tuple(infos[name].fields.index(f) for f in self.channels),
                              tuple(infos[name].fields.index(f) for f in self.targets)) for name, _, _ in segments}
        self.target_inputs = tuple(self.channels.index(f) for f in self.targets)  # each target's place among inputs
        self.starts = [(name, s) for name, a, b in segments for s in range(a, b - window.span + 1, window.stride)]
        self.conditions = {name: cache.store.sequences[name].condition_id for name, _, _ in segments}
        if segments and not self.starts:
            longest = max(b - a for _, a, b in segments)
            raise UserError(
                f"window {window.input_len}->{window.output_len} needs {window.span} frames"
                + (f" ({window.length} frames {window.frame_step} apart)" if window.frame_step > 1 else "")
                + f", but the longest {split_name} segment has {longest}"
            )

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        name, s = self.starts[i]
        n = self.window.input_len
        frames = self._place(self.cache.frames(name, s, s + self.window.span)[:: self.window.frame_step])
        if frames.ndim == 3:
            frames = frames[:, None]
        inputs, targets = self._index[name]
        x = torch.from_numpy(frames[:n, inputs].astype(np.float32) / 255.0)
        return x, torch.from_numpy(frames[n:, targets].astype(np.float32) / 255.0)

    def _place(self, frames: np.ndarray) -> np.ndarray:
        """The part of a window's frames the model sees: all of them (TileDataset cuts a tile)."""
        return frames

    def field_frames(self, name: str, start: int, stop: int, target: int = 0) -> np.ndarray:
        """(stop - start, H, W) uint8 frames of one target field of one sequence."""
        frames = self.cache.frames(name, start, stop)
        return frames if frames.ndim == 3 else frames[:, self._index[name][1][target]]

    def condition_of(self, i: int) -> str:
        return self.conditions[self.starts[i][0]]


@dataclass
class WindowSplits:
    train: WindowDataset
    val: WindowDataset
    test: WindowDataset
    segments: SplitSegments
    frame_size: FrameSize
    channels: Fields = ()
    targets: Fields = ()
    # Tiles: each held-out sequence's whole frame size (the trained scale, its own aspect); empty: all at frame_size.
    sizes: dict[str, FrameSize] = field(default_factory=dict)

    def size_of(self, name: str) -> FrameSize:
        """The frame size a sequence's validation and test windows have."""
        return self.sizes.get(name, self.frame_size)

    def check_frames(self) -> None:
        """Decode (and check against their checksums) all frames the splits read: a damaged chunk is one error
        line before training creates its output directory or MLflow run."""
        names = sorted({name for part in (self.segments.train, self.segments.val, self.segments.test) for name, _, _ in part})
        self.train.cache.check(names)
        if self.val.cache is not self.train.cache:  # tiles: the held-out sequences are read by their own cache
            self.val.cache.check(sorted({name for part in (self.segments.val, self.segments.test) for name, _, _ in part}))
