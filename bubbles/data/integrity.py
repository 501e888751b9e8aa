"""What a store holds, recorded when it is written and checked when it is read: chunk presence and checksums.

A deleted chunk file would otherwise read as black frames (Zarr's fill value) and a damaged one as whatever it
decodes to. When a sequence group is written, every array in it gets a record in the group attributes
(`integrity`: shape, chunk shape, CRC-32 of each decoded chunk in grid order). Opening a store checks that every
chunk file of every array's grid exists (the array's own shape says which; one stat per chunk, cheap) and that the
record agrees with that shape; every read that covers whole chunks (training's and predict's level and block reads)
checks those chunks' checksums on the way; `verify` decodes every chunk and compares checksums (reads the whole
store). Arrays added to a group without a record (a later tool's extra table) are allowed and not covered.

In a format-2 store every sequence has a record: one missing or unreadable is damage. Sequences of a format-1 store
(written before records existed) open presence-checked but without checksums; `record_existing` adds the record to
them from their current contents, and refuses a sequence with a missing or undecodable chunk.
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from bubbles.errors import UserError

KEY = "integrity"


def _grid(shape: tuple[int, ...], chunks: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    return itertools.product(*(range(math.ceil(s / c)) for s, c in zip(shape, chunks)))


def _frames(index: tuple[int, ...], chunks: list[int], shape: list[int]) -> str:
    first = index[0] * chunks[0]
    return f"frames {first}-{min(first + chunks[0], shape[0]) - 1}"


def _chunk_path(group_path: Path, name: str, index: tuple[int, ...]) -> Path:
    return group_path / name / "c" / "/".join(map(str, index))


def _chunk(arr: zarr.Array, index: tuple[int, ...]) -> np.ndarray:
    return np.asarray(arr[tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, arr.chunks))])


def record(group: zarr.Group, group_path: Path, where: str | None = None) -> None:
    """Record every array of a freshly written group: shape, chunk shape and a CRC-32 per chunk. Reads the chunks
    back from disk, so the record also proves they were written; a chunk file missing or undecodable is refused
    (with `where` naming the sequence), never recorded as valid."""
    where = where or str(group_path)
    entries: dict[str, Any] = {}
    for name, arr in sorted(group.arrays()):
        grid = list(_grid(arr.shape, arr.chunks))
        for index in grid:
            if not _chunk_path(group_path, name, index).is_file():
                raise UserError(f"{where}: {_what(name, index, arr.chunks, arr.shape)} is missing on disk; "
                                "not recorded (a damaged sequence is never certified)")
        crcs = []
        for index in grid:
            try:
                data = _chunk(arr, index)
            except Exception as exc:  # a damaged compressed chunk raises from the codec
                raise UserError(f"{where}: {_what(name, index, arr.chunks, arr.shape)} cannot be decoded "
                                f"({type(exc).__name__}); not recorded (a damaged sequence is never certified)") from None
            crcs.append(zlib.crc32(np.ascontiguousarray(data).tobytes()))
        entries[name] = {"shape": list(arr.shape), "chunks": list(arr.chunks), "crc32": crcs, "absent": []}
    group.attrs[KEY] = {"version": 1, "arrays": entries}


def _what(name: str, index: tuple[int, ...], chunks: Any, shape: Any) -> str:
    return f"level {name} chunk {index[0]} ({_frames(index, list(chunks), list(shape))})"


def recorded(attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The group's integrity record, or None when it has none; a record that is there but unreadable is None too
    (`has_record` tells them apart)."""
    entry = attrs.get(KEY)
    return entry.get("arrays") if isinstance(entry, dict) and isinstance(entry.get("arrays"), dict) else None


def has_record(attrs: dict[str, Any]) -> bool:
    """Whether the group carries an integrity attribute at all (readable or not)."""
    return KEY in attrs


def check_present(group_path: Path, where: str, arrays: dict[str, Any], group: zarr.Group | None = None) -> None:
    """Every chunk file of every array exists (Zarr v3 default keys: <array>/c/<i>/<j>/...); one stat per chunk.
    With `group`, the grid is the one the arrays' own metadata says (what a read would ask for) and each recorded
    array must agree with it; the record alone lists the chunks of arrays it names. `arrays` may be empty (a
    format-1 sequence without a record: only its levels' grids are checked)."""
    grids: dict[str, tuple[tuple[int, ...], tuple[int, ...], set[int]]] = {}
    for name, entry in arrays.items():
        try:
            grids[name] = (tuple(entry["shape"]), tuple(entry["chunks"]), set(entry.get("absent", [])))
        except (KeyError, TypeError):
            raise UserError(f"{where}: malformed integrity record for {name!r} (the store was damaged after it was written)") from None
        if not isinstance(entry.get("crc32"), list) or len(entry["crc32"]) != math.prod(math.ceil(s / c) for s, c in zip(*grids[name][:2])):
            raise UserError(f"{where}: malformed integrity record for {name!r} (the store was damaged after it was written)")
    if group is not None:
        for name, arr in group.arrays():
            if name in grids:
                shape, chunks, _ = grids[name]
                if (tuple(arr.shape), tuple(arr.chunks)) != (shape, chunks):
                    raise UserError(f"{where}: level {name} has shape {tuple(arr.shape)} in chunks of {tuple(arr.chunks)}, "
                                    f"the integrity record says {shape} in {chunks} (the store was damaged after it was written)")
            elif not arrays:
                grids[name] = (tuple(arr.shape), tuple(arr.chunks), set())
    for name, (shape, chunks, absent) in grids.items():
        for k, index in enumerate(_grid(shape, chunks)):
            if k not in absent and not _chunk_path(group_path, name, index).is_file():
                why = ("(the store was damaged after it was written)" if arrays else
                       "(deleted, or never written: a store before format 2 left no file for an all-black chunk, and "
                       "the two look the same; re-ingest the sequence)")
                raise UserError(f"{where}: {_what(name, index, chunks, shape)} is missing on disk {why}")


def verify(group: zarr.Group, where: str, arrays: dict[str, Any]) -> int:
    """Decode every recorded chunk and compare its checksum; returns the number of chunks checked."""
    checked = 0
    for name, entry in arrays.items():
        arr = group[name]
        if list(arr.shape) != entry["shape"] or list(arr.chunks) != entry["chunks"]:
            raise UserError(f"{where}: level {name} has shape {arr.shape}, the record says {tuple(entry['shape'])}")
        for index, crc in zip(_grid(arr.shape, arr.chunks), entry["crc32"]):
            frames = _frames(index, entry["chunks"], entry["shape"])
            try:
                data = _chunk(arr, index)
            except Exception as exc:  # a damaged compressed chunk raises from the codec
                raise UserError(f"{where}: level {name} chunk {index[0]} ({frames}) cannot be decoded ({type(exc).__name__})") from None
            if zlib.crc32(np.ascontiguousarray(data).tobytes()) != crc:
                raise UserError(f"{where}: level {name} chunk {index[0]} ({frames}) is damaged (checksum differs)")
            checked += 1
    return checked


def check_read(entry: dict[str, Any] | None, where: str, level: int, start: int, data: np.ndarray) -> None:
    """The chunks wholly inside a read of frames [start, start + len(data)) against their checksums. Training,
    evaluation and predict decode whole chunks (a level, or blocks of chunks) before anything else, so a damaged
    chunk stops them with one line; a read of part of a chunk (one window) is not checked."""
    if not entry or list(entry["chunks"][1:]) != list(entry["shape"][1:]):  # only whole-frame chunks map to frames
        return
    per_chunk, total, stop = entry["chunks"][0], entry["shape"][0], start + len(data)
    for c in range(-(-start // per_chunk), len(entry["crc32"])):
        first, end = c * per_chunk, min((c + 1) * per_chunk, total)
        if end > stop:
            break
        if zlib.crc32(np.ascontiguousarray(data[first - start : end - start]).tobytes()) != entry["crc32"][c]:
            raise UserError(f"{where}: level {level} chunk {c} (frames {first}-{end - 1}) is damaged (checksum differs; "
                            "`inspect --verify` checks the whole store)")


def record_existing(group: zarr.Group, group_path: Path, where: str | None = None) -> bool:
    """Give a format-1 sequence its record from its current contents (trusting them, after checking that every
    chunk is there and decodes); False if it had one."""
    if has_record(dict(group.attrs)):
        return False
    record(group, group_path, where)
    return True
