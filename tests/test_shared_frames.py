"""The node's shared frame cache: one file per sequence level, written once under a lock, checked against the store."""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pytest

from bubbles.data import shared_frames
from bubbles.data.store import FrameStore, SequenceMeta, write_sequence
from bubbles.data.windows import FrameCache


def _read_all(args: tuple[str, str]) -> str:
    store_path, share = args
    cache = FrameCache(FrameStore.open(store_path), (24, 24), share=Path(share))  # 24: resized from the 32 level
    return cache.frames("seq001", 0, 48).tobytes().hex()


def test_shared_equals_private_and_is_a_map(tiny_store: Path, tmp_path: Path) -> None:
    store = FrameStore.open(tiny_store)
    shared, private = FrameCache(store, (16, 16), share=tmp_path), FrameCache(store, (16, 16))
    for start, stop in [(0, 5), (40, 48), (3, 24)]:
        np.testing.assert_array_equal(shared.frames("seq003", start, stop), private.frames("seq003", start, stop))
    view = shared.frames("seq003", 0, 4)
    assert not view.flags.writeable and not view.flags.owndata  # a view of the mapped file, not a copy
    files = list(tmp_path.rglob("*.npy"))
    assert len(files) == 1 and "seq003.L1.S16x16." in files[0].name


def test_concurrent_processes_write_one_file(tiny_store: Path, tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        outs = pool.map(_read_all, [(str(tiny_store), str(tmp_path))] * 4)
    assert len(set(outs)) == 1
    assert bytes.fromhex(outs[0]) == FrameCache(FrameStore.open(tiny_store), (24, 24)).frames("seq001", 0, 48).tobytes()
    assert len(list(tmp_path.rglob("seq001*.npy"))) == 1
    assert not list(tmp_path.rglob(".*tmp-*"))


def test_rewritten_sequence_gets_a_new_file(tiny_store: Path, tmp_path: Path) -> None:
    path = tmp_path / "copy.zarr"
    shutil.copytree(tiny_store, path)
    share = tmp_path / "share"
    before = FrameCache(FrameStore.open(path), (32, 32), share=share).frames("seq000", 0, 10).copy()
    meta = FrameStore.open(path).sequences["seq000"].meta
    shutil.rmtree(path / "seq000")
    write_sequence(path, "seq000", np.full((48, 32, 32), 7, np.uint8), meta)
    after = FrameCache(FrameStore.open(path), (32, 32), share=share).frames("seq000", 0, 10)
    assert (after == 7).all() and not (before == 7).all()
    assert len(list(share.rglob("seq000*.npy"))) == 1  # the stale file was removed


def test_no_room_falls_back_to_private_frames(tiny_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_frames, "HEADROOM_BYTES", 1 << 60)
    store = FrameStore.open(tiny_store)
    cache = FrameCache(store, (32, 32), share=tmp_path)
    np.testing.assert_array_equal(cache.frames("seq002", 5, 9), store.read("seq002", 0)[5:9])
    assert cache.share is None and cache.preloaded and not list(tmp_path.rglob("*.npy"))


def test_share_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(shared_frames.ENV, "off")
    assert shared_frames.share_dir() is None
    monkeypatch.setenv(shared_frames.ENV, str(tmp_path))
    assert shared_frames.share_dir() == tmp_path
