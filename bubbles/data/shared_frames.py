"""One decoded copy of a store's frames per node: read-only memory-mapped .npy files on node-local disk.

Every trial process on a node that trains on the same (store, sequence, level, image size) maps the same file, so
the frames sit once in the page cache however many trials run (bench/memory.py measures it). The first process to
need a file decodes it under a lock, writes it to a temporary sibling and renames it; the others wait on the lock
and then map it. A file is named by a key made from the store's path and what its level holds on disk (every
chunk file's name, size and modification time), so a rewritten or appended sequence gets a new file and the stale
one is removed. Set BUBBLES_FRAME_CACHE to choose the directory, or to "off" to keep frames in each process.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bubbles.data.store import FrameStore

ENV = "BUBBLES_FRAME_CACHE"
MARKER = "bubbles-frame-cache"  # written in every directory this module creates; only those are ever pruned
HEADROOM_BYTES = 512 * 1024**2  # leave the node this much disk after writing a cache file


def share_dir() -> Path | None:
    """The node-local cache directory (BUBBLES_FRAME_CACHE, else the temp directory), or None when set to 'off'."""
    value = os.environ.get(ENV, "")
    if value.lower() == "off":
        return None
    return Path(value) if value else Path(tempfile.gettempdir()) / f"bubbles-frames-{os.getuid()}"


def content_key(store: FrameStore, name: str, level: int, size: tuple[int, int]) -> str:
    """A hash of what one level of one sequence holds on disk, and of the size it is served at."""
    level_dir = store.path / name / str(level)
    files = sorted((str(f.relative_to(level_dir)), f.stat().st_size, f.stat().st_mtime_ns) for f in level_dir.rglob("*") if f.is_file())
    record = [str(store.path.resolve()), name, level, list(size), store.sequences[name].frames, files]
    return hashlib.sha256(json.dumps(record).encode()).hexdigest()[:20]


def _store_dir(root: Path, store: FrameStore) -> Path:
    return root / hashlib.sha256(str(store.path.resolve()).encode()).hexdigest()[:12]


def _mark(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / MARKER
    if not marker.exists():
        marker.write_text("frames decoded from a bubbles frame store; safe to delete when no training runs\n")


def shared_frames(
    root: Path, store: FrameStore, name: str, level: int, size: tuple[int, int], decode: Callable[[int, int], np.ndarray]
) -> np.ndarray | None:
    """(T, H, W) uint8 frames of one sequence ((T, C, H, W) for several fields), mapped read-only from the node's
    cache file (written first if missing, by `decode(start, stop)` in blocks of whole chunks). None when the disk
    has no room for it."""
    frames = store.sequences[name].frames
    shape = (frames, *store.sequences[name].frame_shape(size))
    key = content_key(store, name, level, size)
    directory = _store_dir(root, store)
    path = directory / f"{name}.L{level}.S{size[0]}x{size[1]}.{key}.npy"
    if not path.exists():
        _mark(root)
        _mark(directory)
        with open(directory / f"{name}.L{level}.S{size[0]}x{size[1]}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one writer per node; the others wait, then find the file
            if not path.exists():
                if shutil.disk_usage(directory).free < int(np.prod(shape)) + HEADROOM_BYTES:
                    return None
                _write(path, shape, store.sequences[name].chunk_frames, decode)
                _prune(directory, f"{name}.L{level}.S{size[0]}x{size[1]}.", keep=path.name)
    mapped = np.load(path, mmap_mode="r")
    if mapped.shape != shape or mapped.dtype != np.uint8:
        return None
    # A plain ndarray view of the map: slicing an np.memmap subclass costs a few microseconds more per window.
    return np.asarray(mapped)


def _write(path: Path, shape: tuple[int, ...], chunk: int, decode: Callable[[int, int], np.ndarray]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    frames = shape[0]
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        step = max(chunk, (64 * 1024**2 // max(int(np.prod(shape[1:])), 1)) // chunk * chunk)  # ~64 MiB of whole chunks at a time
        for start in range(0, frames, step):
            stop = min(start + step, frames)
            out[start:stop] = decode(start, stop)
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _prune(directory: Path, prefix: str, keep: str) -> None:
    """Remove this sequence's cache files for an older content of the store (the directory is ours: it has the
    marker). A process still mapping one keeps reading it: unlinking a mapped file leaves the mapping valid."""
    if not (directory / MARKER).exists():
        return
    for old in directory.glob(f"{prefix}*.npy"):
        if old.name != keep:
            old.unlink(missing_ok=True)
