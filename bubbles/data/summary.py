"""Human-readable summary of a frame store (what `cli.py inspect` prints)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import zarr

from bubbles.data import integrity
from bubbles.data.conditions import text_numbers
from bubbles.data.store import DEFAULT_FIELD, FORMAT_VERSION, ROOT_KEY, FrameStore, upgrade_format


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def describe_store(path: str | Path) -> str:
    """A table of the store's sequences, and totals with the compression ratio against raw uint8."""
    store = FrameStore.open(path)
    # The fields column appears for simulation stores; a store of camera recordings prints as it always did.
    named = any(info.fields != (DEFAULT_FIELD,) for info in store.sequences.values())
    header = ["sequence", "frames", "size", *(["fields"] if named else []), "levels", "chunk", "on disk", "condition"]
    rows = []
    total_disk = total_raw = 0
    for name, info in sorted(store.sequences.items()):
        disk = store.disk_bytes(name)
        raw = sum(info.frames * h * w * len(info.fields) for h, w in info.level_sizes)
        total_disk += disk
        total_raw += raw
        cond = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.meta.condition.items())
        rows.append([
            name,
            str(info.frames),
            f"{info.native_size[0]}x{info.native_size[1]}",
            *([",".join(info.fields)] if named else []),
            " ".join(str(h) if h == w else f"{h}x{w}" for h, w in info.level_sizes),
            f"{info.chunk_frames} fr",
            _human(disk),
            f"{info.condition_id} {cond}".strip(),
        ])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    version = store.root.attrs["bubbles_store"]["format_version"]
    lines = [f"store {store.path}  ({len(rows)} sequence{'' if len(rows) == 1 else 's'}, format v{version}, uint8 frames, blosc-zstd)"]
    for r in [header, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1])
    if total_raw:
        lines.append(f"total {_human(total_disk)} on disk for {_human(total_raw)} raw ({total_raw / max(total_disk, 1):.1f}x)")
    unrecorded = [n for n in sorted(store.sequences) if integrity.recorded(dict(store.root[n].attrs)) is None]
    if unrecorded:
        lines.append(f"{len(unrecorded)} sequences written before checksums ({', '.join(unrecorded[:3])}"
                     f"{', ...' if len(unrecorded) > 3 else ''}): missing chunks are not detected; "
                     "`inspect --verify --record` records them from their current contents")
    texts = {n: text_numbers(info.meta.condition) for n, info in sorted(store.sequences.items())}
    texts = {n: found for n, found in texts.items() if found}
    if texts:
        shown = "; ".join(f"{n}: " + ", ".join(f"{k}={v!r}" for k, v in found.items()) for n, found in list(texts.items())[:3])
        lines.append(f"{len(texts)} sequences hold numbers stored as text by an ingest before conditions were typed "
                     f"({shown}{'; ...' if len(texts) > 3 else ''}): their condition ids differ from the same values "
                     "ingested now, and selections by value treat them as text")
    return "\n".join(lines)


def verify_store(path: str | Path, record_missing: bool = False) -> str:
    """Decode every chunk and compare it with the checksums recorded at write time (reads the whole store);
    record_missing gives sequences written before checksums a record from their current contents (refusing a
    sequence with a missing or undecodable chunk) and, once every sequence has one, marks the store format 2."""
    store = FrameStore.open(path)
    checked, recorded, skipped = 0, [], []
    for name in sorted(store.sequences):
        arrays = integrity.recorded(dict(store.root[name].attrs))
        if arrays is not None:
            checked += integrity.verify(store.root[name], f"{store.path}/{name}", arrays)
        elif record_missing:
            group = zarr.open_group(str(store.path / name), mode="r+", zarr_format=3)
            integrity.record_existing(group, store.path / name, f"{store.path}/{name}")
            recorded.append(name)
        else:
            skipped.append(name)
    line = f"verified {checked} chunks: all checksums match"
    if recorded:
        line += f"; recorded checksums for {len(recorded)} older sequences ({', '.join(recorded)})"
    if skipped:
        line += f"; {len(skipped)} older sequences have no checksums (add --record to record them)"
    elif store.root.attrs[ROOT_KEY]["format_version"] < FORMAT_VERSION:
        upgrade_format(store.path)
        line += f"; the store is now format {FORMAT_VERSION} (every sequence recorded: a record lost later is an error)"
    return line


def inspect_lines(store: Path, verify: bool = False, record: bool = False, calibrate: bool = False,
                  frame_step: int = 1) -> Iterator[str]:
    """`inspect`: the store's summary, each sequence's detector calibration (measured and recorded first with
    `calibrate`), with `verify` every chunk checked against its checksum (`record`: checksums recorded where
    missing), then the forecastability figures at `frame_step`; one line at a time, as each is known."""
    from bubbles.data.calibrate import calibrate_store, describe
    from bubbles.data.forecastability import store_forecastability
    from bubbles.errors import UserError

    if record and not verify:
        raise UserError("inspect: --record goes with --verify")
    yield describe_store(store)
    if calibrate:
        for line in calibrate_store(store.resolve()):
            yield f"detector calibration: {line}"
    else:
        for name, info in sorted(FrameStore.open(store).sequences.items()):
            if "detector_calibration" in info.meta.extra:
                yield f"detector calibration: {describe(name, info.meta.extra['detector_calibration'])}"
    if verify:  # before forecastability reads the frames: a damaged chunk is named as such, not as a failed read
        yield verify_store(store, record_missing=record)
    for figures in store_forecastability(FrameStore.open(store), frame_step):
        yield from figures.lines()
