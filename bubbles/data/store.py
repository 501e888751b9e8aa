# Over 400 lines: the Zarr frame store's on-disk format (layout, metadata, pyramid levels, integrity) kept whole in one place.
"""The Zarr v3 frame-store format: create, append sequences atomically, open and validate, read pyramid levels.

Layout (format version 2; version 1 lacks the integrity record and still opens)::

    STORE/                       root group, attrs {"bubbles_store": {"format_version": 2}}
      <sequence>/                one group per recording or simulation
        zarr.json                attrs: source, fps, native_size [H, W], condition {...}, condition_id,
                                 extra {...}, multiscales [{"datasets": [{"path": "0", "size": [H, W]}, ...]}],
                                 fields [{"name": "dfun", "scale": {"min": .., "max": ..}}, ...] (one per channel),
                                 integrity {per array: shape, chunks, CRC-32 per chunk} (bubbles.data.integrity)
        0/                       level 0: (T, H, W) uint8, the native frames; (T, C, H, W) for C >= 2 fields
        1/                       level 1: (T, [C,] H/2, W/2) uint8, 2x2 box-averaged from level 0 (anti-aliased)
        ...                      down to the last level whose short side is >= MIN_LEVEL_SIZE
        truth/                   optional (synthetic stores): (K, 7) float32, one row per true bubble per frame,
                                 columns TRUTH_COLUMNS = frame, id, x, y, r, state, depth: x = column / width and
                                 y = row / height of the centre, r = radius / height (resolution-free, so one table
                                 serves every pyramid level), state 0 attached, 1 rising, 2 resting at the surface,
                                 3 merging into another bubble, depth 0 (in focus) .. 1 (blurred)

Frames are uint8: cameras record 8-bit (or are viewed that way), a 20-frame window of 256² is 1.3 MB rather than
2.6 MB (float16) or 5.2 MB (float32), and windows are scaled to float32 [0, 1] only when read. Chunks hold whole
frames and `chunk_frames(H, W)` frames each (>= 8, ~64 KiB or more per chunk), compressed with blosc-zstd.

Several fields of one simulation (temperature, velx, dfun, ...) are channels of one sequence: each scaled to uint8
by its own range (recorded in `fields`), each chunk one channel, so reading one field decodes no other. A
single-field sequence keeps the 3-D layout, so stores of one field read the same in tools that predate fields;
sequences without a `fields` record have one field named after their source (`field_names`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from bubbles.data import integrity, staging
from bubbles.errors import UserError

FORMAT_VERSION = 2  # 2: every chunk written and recorded with a checksum (bubbles.data.integrity)
READABLE_VERSIONS = (1, 2)
ROOT_KEY = "bubbles_store"
MIN_LEVEL_SIZE = 16
FRAME_DTYPE = np.uint8
_MIN_CHUNK_FRAMES = 8
_MAX_CHUNK_FRAMES = 64
_CHUNK_TARGET_BYTES = 64 * 1024

ConditionValue = str | float | int | bool
TRUTH_COLUMNS = ("frame", "id", "x", "y", "r", "state", "depth")
TRUTH_KEY = "truth"


@dataclass(frozen=True)
class SequenceMeta:
    """What is known about a sequence besides its frames."""

    source: str
    fps: float = 1.0
    condition: Mapping[str, ConditionValue] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    truth: np.ndarray | None = field(default=None, compare=False, repr=False)  # rows of TRUTH_COLUMNS, written only
    fields: tuple[Mapping[str, Any], ...] = ()  # one {"name", "scale"} per channel; () = one field named by source


@dataclass(frozen=True)
class SequenceInfo:
    """One validated sequence of an open store."""

    name: str
    frames: int
    native_size: tuple[int, int]
    level_sizes: tuple[tuple[int, int], ...]
    chunk_frames: int
    meta: SequenceMeta
    checksums: Mapping[str, Any] | None = None  # the integrity record per level (None: written before records)

    @property
    def condition_id(self) -> str:
        return condition_id(self.meta.condition)

    @property
    def fields(self) -> tuple[str, ...]:
        """The names of the sequence's channels, in store order."""
        return field_names(self.meta)

    def frame_shape(self, size: tuple[int, int]) -> tuple[int, ...]:
        """The shape of one stored frame at `size`: (H, W) for one field, (C, H, W) for several."""
        n = len(self.fields)
        return (*size,) if n == 1 else (n, *size)


DEFAULT_FIELD = "intensity"  # the one field of a camera recording (and of sequences written before fields)


def field_names(meta: SequenceMeta) -> tuple[str, ...]:
    """Channel names: the `fields` record, else one field: the HDF5 field a sequence came from, or 'intensity'."""
    if meta.fields:
        return tuple(str(f["name"]) for f in meta.fields)
    parts = meta.source.split(":")
    return (parts[-1],) if parts[0] == "hdf5" and len(parts) >= 3 and parts[-1] else (DEFAULT_FIELD,)


def condition_id(condition: Mapping[str, ConditionValue]) -> str:
    """A stable short id of an initial condition: the same values give the same id on every machine."""
    text = json.dumps({k: condition[k] for k in sorted(condition)}, sort_keys=True)
    return "c" + hashlib.sha1(text.encode()).hexdigest()[:8]


def chunk_frames(height: int, width: int) -> int:
    """Frames per chunk: whole frames, at least 8, growing for small frames so that a chunk is ~64 KiB."""
    return int(np.clip(_CHUNK_TARGET_BYTES // max(1, height * width), _MIN_CHUNK_FRAMES, _MAX_CHUNK_FRAMES))


def pyramid_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Sizes of every pyramid level: halving while the short side stays >= MIN_LEVEL_SIZE."""
    sizes = [(height, width)]
    while min(sizes[-1]) // 2 >= MIN_LEVEL_SIZE:
        h, w = sizes[-1]
        sizes.append((h // 2, w // 2))
    return sizes


def downsample2(frames: np.ndarray) -> np.ndarray:
    """Halve (..., H, W) frames by 2x2 box averaging (the anti-aliasing filter for a factor-2 decimation)."""
    *lead, h, w = frames.shape
    cropped = frames[..., : h // 2 * 2, : w // 2 * 2].astype(np.float32)
    return cropped.reshape(*lead, h // 2, 2, w // 2, 2).mean(axis=(-3, -1))


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(frames), 0, 255).astype(FRAME_DTYPE)


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _check_name(name: str) -> None:
    # Zarr v3 reserves names starting with "__" and uses zarr.json itself; spaces and newlines break listings.
    if not _NAME.fullmatch(name) or name == "zarr.json":
        raise UserError(f"sequence name {name!r}: use 1-100 letters, digits, '.', '-', '_', starting with a letter or digit")


def _check_parent(store_path: Path) -> None:
    for parent in store_path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{store_path}: {parent} is a file, not a directory")
            return


def _write_group(path: Path, frames: np.ndarray, meta: SequenceMeta, progress: Any = None) -> None:
    """Write one complete sequence group (all levels) at `path`, a fresh directory. frames: (T, H, W), or
    (T, C, H, W) with one meta.fields entry per channel."""
    if frames.ndim == 4 and frames.shape[1] == 1:
        frames = frames[:, 0]  # one field keeps the 3-D layout
    if frames.ndim not in (3, 4) or frames.dtype != FRAME_DTYPE:
        raise UserError(f"frames must be (T, H, W) or (T, C, H, W) uint8, got {frames.shape} {frames.dtype}")
    channels = () if frames.ndim == 3 else (frames.shape[1],)
    if len(meta.fields) > 1 or channels:
        if len(meta.fields) != (channels[0] if channels else 1):
            raise UserError(f"{len(meta.fields)} field records for frames of shape {frames.shape}")
    t, h, w = frames.shape[0], *frames.shape[-2:]
    if min(h, w) < MIN_LEVEL_SIZE:
        raise UserError(f"frames of {h}x{w} are smaller than the {MIN_LEVEL_SIZE}px minimum")
    sizes = pyramid_sizes(h, w)
    group = zarr.open_group(str(path), mode="w-", zarr_format=3)
    group.attrs.update(
        {
            "source": meta.source,
            "fps": float(meta.fps),
            "native_size": [h, w],
            "condition": dict(meta.condition),
            "condition_id": condition_id(meta.condition),
            "extra": dict(meta.extra),
            **({"fields": [dict(f) for f in meta.fields]} if meta.fields else {}),
            "multiscales": [{"version": "bubbles-1", "datasets": [{"path": str(i), "size": list(s)} for i, s in enumerate(sizes)]}],
        }
    )
    arrays = []
    for i, (lh, lw) in enumerate(sizes):
        arrays.append(
            group.create_array(
                str(i),
                shape=(t, *channels, lh, lw),
                chunks=(chunk_frames(lh, lw), *(1 for _ in channels), lh, lw),
                dtype=FRAME_DTYPE,
                compressors=BloscCodec(cname="zstd", clevel=5, shuffle="noshuffle"),
                fill_value=0,
                # Every chunk gets a file, black ones too: a missing file then always means damage.
                config={"write_empty_chunks": True},
            )
        )
    if meta.truth is not None:
        table = np.asarray(meta.truth, np.float32).reshape(-1, len(TRUTH_COLUMNS))
        group.create_array(TRUTH_KEY, data=table, chunks=(max(1, len(table)), len(TRUTH_COLUMNS)), attributes={"columns": list(TRUTH_COLUMNS)})
    # Write level by level in blocks of whole level-0 chunks so memory stays bounded by one block per level.
    block = chunk_frames(h, w) * max(1, _MAX_CHUNK_FRAMES // chunk_frames(h, w))
    for start in range(0, t, block):
        level = frames[start : start + block].astype(np.float32)
        for i, arr in enumerate(arrays):
            if i > 0:
                level = downsample2(level)
            arr[start : start + len(level)] = _to_uint8(level)
        if progress is not None:
            progress(min(block, t - start))
    integrity.record(group, path)


def _remove_tmp(tmp: Path) -> None:
    """Remove a failed write's temp directory until it stays gone: after one chunk write fails (disk full), Zarr's
    writer tasks for other chunks may still be finishing and recreate directories under it."""
    for _ in range(40):
        if not tmp.exists():
            return
        shutil.rmtree(tmp, ignore_errors=True)
        time.sleep(0.05)


_FS_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.ENAMETOOLONG}


@contextmanager
def _writing(store_path: Path, tmp: Path) -> Iterator[None]:
    """Around a write into tmp: a refusing file system is one line naming the store; tmp never stays behind, and
    while it exists its lock says who writes it (bubbles.data.staging)."""
    try:
        with staging.holding(tmp):
            try:
                yield
            finally:
                _remove_tmp(tmp)
    except OSError as exc:
        if exc.errno not in _FS_ERRNOS:
            raise
        raise UserError(f"{store_path}: cannot write ({exc.strerror}); the store is unchanged") from None


def _tmp_sibling(path: Path, tag: str) -> Path:
    return path.parent / f".{path.name}.{tag}.tmp-{uuid.uuid4().hex[:8]}"


def _staging_dir(store_path: Path, name: str) -> Path:
    """Where a new sequence is written before its rename into the store: beside the store, or inside it (hidden: a
    dot name, which no sequence can have and readers skip) when the store is another file system than its parent
    (a mount point, a volume, a symlink to another disk), since a rename cannot cross file systems."""
    if os.stat(store_path).st_dev != os.stat(store_path.parent).st_dev:
        return store_path / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
    return _tmp_sibling(store_path, name)


def write_sequence(
    store_path: str | Path,
    name: str,
    frames: np.ndarray,
    meta: SequenceMeta,
    progress: Any = None,
    say: Callable[[str], None] | None = None,
) -> None:
    """Add one sequence to a store, creating the store if it does not exist.

    Everything is written under a temporary sibling directory and renamed into place when complete, so a
    failure or interruption leaves the store exactly as it was. Staging left by a writer that was killed is
    removed first (`say` gets a line for each).
    """
    _check_name(name)
    store_path = Path(store_path)
    _check_parent(store_path)
    if store_path.exists():
        store = FrameStore.open(store_path)
        if name in store.sequences:
            raise UserError(f"{store_path}: sequence {name!r} already exists (choose another --sequence name)")
        staging.clean_stale(store_path, say)
        tmp = _staging_dir(store_path, name)
        with _writing(store_path, tmp):
            _write_group(tmp, frames, meta, progress)
            try:
                os.rename(tmp, store_path / name)  # atomic, and fails if another ingest got there first
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                raise UserError(f"{store_path}: sequence {name!r} was added by another ingest meanwhile") from None
        return
    write_store(store_path, iter([(name, frames, meta)]), progress, say)


def write_store(store_path: str | Path, sequences: Iterator[tuple[str, np.ndarray, SequenceMeta]], progress: Any = None,
                say: Callable[[str], None] | None = None) -> None:
    """Create a new store from several sequences at once, atomically (all or nothing)."""
    store_path = Path(store_path)
    if store_path.exists():
        raise UserError(f"{store_path}: already exists (remove it or choose another path)")
    _check_parent(store_path)
    store_path.parent.mkdir(parents=True, exist_ok=True)
    staging.clean_stale(store_path, say)
    tmp = _tmp_sibling(store_path, "new")
    with _writing(store_path, tmp):
        root = zarr.open_group(str(tmp), mode="w-", zarr_format=3)
        root.attrs[ROOT_KEY] = {"format_version": FORMAT_VERSION}
        for name, frames, meta in sequences:
            _check_name(name)
            _write_group(tmp / name, frames, meta, progress)
        try:
            os.rename(tmp, store_path)  # atomic, and fails if another process created the store first
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            raise UserError(f"{store_path}: created by another process meanwhile; run again to add to it") from None


def upgrade_format(store_path: Path) -> None:
    """Mark a format-1 store whose sequences all have integrity records as format 2 (from then on a record that
    goes missing is damage). The root zarr.json is rewritten atomically (temp + rename)."""
    root = store_path / "zarr.json"
    meta = json.loads(root.read_text())
    meta["attributes"][ROOT_KEY]["format_version"] = FORMAT_VERSION
    tmp = root.with_name(f".zarr.json.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, root)


class FrameStore:
    """A validated, read-only view of a frame store. Cheap to pickle: it reopens the Zarr group lazily."""

    def __init__(self, path: Path, sequences: dict[str, SequenceInfo]) -> None:
        self.path = path
        self.sequences = sequences
        self._root: zarr.Group | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "sequences": self.sequences, "_root": None}

    @classmethod
    def open(cls, path: str | Path) -> FrameStore:
        """Open and validate a store; any problem is one UserError line naming the path."""
        path = Path(path)
        if not path.exists():
            raise UserError(f"{path}: no such frame store")
        if not (path / "zarr.json").is_file():
            raise UserError(f"{path}: not a Zarr v3 store (no zarr.json)")
        try:
            root = zarr.open_group(str(path), mode="r", zarr_format=3)
            header = root.attrs.get(ROOT_KEY)
            with warnings.catch_warnings():  # a directory without zarr.json is reported below, not warned about
                warnings.simplefilter("ignore")
                members = sorted(name for name, _ in root.groups() if not name.startswith("."))  # dot: being written
        except Exception as exc:  # zarr raises many types for corrupt metadata
            raise UserError(f"{path}: corrupt store metadata ({type(exc).__name__}: {exc})") from None
        if not isinstance(header, dict) or "format_version" not in header:
            raise UserError(f"{path}: not a bubbles frame store (no '{ROOT_KEY}' attribute)")
        if header["format_version"] not in READABLE_VERSIONS:
            raise UserError(
                f"{path}: store format version {header['format_version']} is not supported (this tool reads {READABLE_VERSIONS})"
            )
        # A sequence directory whose zarr.json was deleted would silently drop out of the listing.
        for child in sorted(path.iterdir()):
            if child.is_dir() and not child.name.startswith(".") and child.name not in members:
                raise UserError(f"{path}/{child.name}: a sequence directory without its zarr.json (the store is damaged)")
        sequences = {name: _validate_sequence(path, root, name, header["format_version"]) for name in members}
        store = cls(path, sequences)
        store._root = root
        return store

    @property
    def root(self) -> zarr.Group:
        if self._root is None:
            self._root = zarr.open_group(str(self.path), mode="r", zarr_format=3)
        return self._root

    def level_for(self, name: str, size: tuple[int, int]) -> int:
        """The smallest pyramid level still >= (H, W) on both sides (so frames are only ever shrunk)."""
        info = self.sequences[name]
        fitting = [i for i, s in enumerate(info.level_sizes) if s[0] >= size[0] and s[1] >= size[1]]
        if not fitting:
            h, w = info.native_size
            raise UserError(f"{self.path}/{name}: frame size {size[0]}x{size[1]} is larger than the native {h}x{w}")
        return fitting[-1]

    def read(self, name: str, level: int = 0, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames [start, stop) of one level as a (T, H, W) uint8 array ((T, C, H, W) for several fields), in one
        Zarr read. The chunks the read covers whole are checked against their recorded checksums."""
        try:
            data = np.asarray(self.root[name][str(level)][start:stop])
        except Exception as exc:
            raise UserError(f"{self.path}/{name}/{level}: cannot read frames ({type(exc).__name__}: {exc})") from None
        info = self.sequences.get(name)
        if info is not None and info.checksums:
            integrity.check_read(info.checksums.get(str(level)), f"{self.path}/{name}", level, start, data)
        return data

    def truth(self, name: str) -> np.ndarray | None:
        """The sequence's true-bubble table (rows of TRUTH_COLUMNS), or None when the store has none."""
        group = self.root[name]
        if TRUTH_KEY not in group.array_keys():
            return None
        return np.asarray(group[TRUTH_KEY][:])

    def fingerprint(self) -> str:
        """A short hash of what the store holds: every sequence's metadata, level shapes and bytes on disk. It
        changes when a sequence is added, removed or rewritten; it is not a hash of every pixel (that would read
        the whole store)."""
        digest = hashlib.sha256()
        for name in sorted(self.sequences):
            info = self.sequences[name]
            record = [name, info.frames, info.level_sizes, dict(info.meta.condition), info.meta.source, self.disk_bytes(name)]
            digest.update(json.dumps(record, sort_keys=True, default=str).encode())
        return digest.hexdigest()[:16]

    def disk_bytes(self, name: str) -> int:
        return sum(f.stat().st_size for f in (self.path / name).rglob("*") if f.is_file())


def _validate_sequence(path: Path, root: zarr.Group, name: str, version: int = FORMAT_VERSION) -> SequenceInfo:
    where = f"{path}/{name}"
    try:
        group = root[name]
        attrs = dict(group.attrs)
        datasets = attrs["multiscales"][0]["datasets"]
        native = tuple(int(v) for v in attrs["native_size"])
        meta = SequenceMeta(
            source=str(attrs["source"]),
            fps=float(attrs["fps"]),
            condition=dict(attrs["condition"]),
            extra=dict(attrs.get("extra", {})),
            fields=tuple(dict(f) for f in attrs.get("fields", [])),
        )
        names = field_names(meta)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise UserError(f"{where}: missing or malformed sequence attribute ({exc})") from None
    sizes: list[tuple[int, int]] = []
    frames = None
    chunk_t = 0
    for i, ds in enumerate(datasets):
        try:
            arr = group[ds["path"]]
        except Exception:
            raise UserError(f"{where}: pyramid level {ds.get('path')!r} is missing") from None
        layout = ("(T, H, W)", 3) if len(names) == 1 else (f"(T, {len(names)}, H, W) for fields {', '.join(names)}", 4)
        if arr.ndim != layout[1] or arr.dtype != FRAME_DTYPE or (arr.ndim == 4 and arr.shape[1] != len(names)):
            raise UserError(f"{where}/{ds['path']}: expected {layout[0]} uint8, found {arr.shape} {arr.dtype}")
        if frames is None:
            frames, chunk_t = arr.shape[0], arr.chunks[0]
        if arr.shape[0] != frames or list(arr.shape[-2:]) != list(ds["size"]):
            raise UserError(f"{where}/{ds['path']}: shape {arr.shape} does not match level {i} of {frames} frames")
        sizes.append((arr.shape[-2], arr.shape[-1]))
    if not sizes or sizes[0] != native:
        raise UserError(f"{where}: level 0 does not hold the native {native} frames")
    arrays = integrity.recorded(attrs)
    if arrays is None and (version >= 2 or integrity.has_record(attrs)):
        # A store of this format records every sequence it writes: no record, or one that cannot be read, means
        # the sequence was changed after it was written, never that it is older (which would switch checks off).
        state = "unreadable" if integrity.has_record(attrs) else "missing"
        raise UserError(f"{where}: its integrity record is {state} (the store was damaged after it was written; "
                        "a format-2 store records every sequence)")
    integrity.check_present(path / name, where, arrays or {}, group)
    return SequenceInfo(name, int(frames or 0), native, tuple(sizes), int(chunk_t), meta, arrays)
