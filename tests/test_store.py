"""Frame-store format: round trip, pyramid, validation errors, atomic appends."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import bubbles.data.store as store_mod
from bubbles.errors import UserError
from bubbles.data.store import FrameStore, SequenceMeta, chunk_frames, pyramid_sizes, write_sequence


def _frames(t: int = 10, h: int = 64, w: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w), dtype=np.uint8)


def test_round_trip_and_pyramid(tmp_path: Path) -> None:
    frames = _frames()
    meta = SequenceMeta(source="test", fps=25.0, condition={"regime": "nozzle", "gas_flow": 0.8})
    write_sequence(tmp_path / "s.zarr", "a", frames, meta)
    store = FrameStore.open(tmp_path / "s.zarr")
    info = store.sequences["a"]
    assert info.frames == 10 and info.native_size == (64, 48)
    assert info.level_sizes == ((64, 48), (32, 24))
    assert info.meta.condition == {"regime": "nozzle", "gas_flow": 0.8}
    np.testing.assert_array_equal(store.read("a", 0), frames)
    # Level 1 is the 2x2 box average of level 0, rounded.
    expected = np.rint(frames.astype(np.float32).reshape(10, 32, 2, 24, 2).mean(axis=(2, 4)))
    np.testing.assert_array_equal(store.read("a", 1), expected.astype(np.uint8))
    assert store.level_for("a", (24, 24)) == 1 and store.level_for("a", (40, 40)) == 0
    assert store.level_for("a", (32, 24)) == 1 and store.level_for("a", (33, 24)) == 0
    with pytest.raises(UserError, match="larger than the native"):
        store.level_for("a", (100, 100))


def test_chunks_hold_whole_frames() -> None:
    assert chunk_frames(256, 256) == 8
    assert chunk_frames(32, 32) == 64
    assert pyramid_sizes(256, 256)[-1] == (16, 16)


def test_append_and_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    write_sequence(path, "a", _frames(), SequenceMeta("x"))
    write_sequence(path, "b", _frames(seed=1), SequenceMeta("y"))
    assert sorted(FrameStore.open(path).sequences) == ["a", "b"]
    with pytest.raises(UserError, match="already exists"):
        write_sequence(path, "a", _frames(), SequenceMeta("x"))


def test_failed_append_leaves_store_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.zarr"
    write_sequence(path, "a", _frames(), SequenceMeta("x"))
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    calls = {"n": 0}
    real = store_mod.downsample2

    def failing(frames: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt  # an interruption half-way through writing the pyramid
        return real(frames)

    monkeypatch.setattr(store_mod, "downsample2", failing)
    with pytest.raises(KeyboardInterrupt):
        write_sequence(path, "b", _frames(seed=2), SequenceMeta("y"))
    after = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert after == before  # no half-written group, no temp directory left behind
    assert list(FrameStore.open(path).sequences) == ["a"]


def test_failed_create_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "downsample2", lambda f: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        write_sequence(tmp_path / "new.zarr", "a", _frames(), SequenceMeta("x"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: shutil.rmtree(p), "no such frame store"),
        (lambda p: (p / "zarr.json").unlink(), "not a Zarr v3 store"),
        (lambda p: (p / "zarr.json").write_text("{not json"), "corrupt store metadata"),
        (lambda p: _edit_json(p / "zarr.json", lambda d: d["attributes"].pop("bubbles_store")), "not a bubbles frame store"),
        (lambda p: _edit_json(p / "zarr.json", lambda d: d["attributes"]["bubbles_store"].update(format_version=9)), "format version 9"),
        (lambda p: shutil.rmtree(p / "a" / "1"), "level '1' is missing"),
        (lambda p: _edit_json(p / "a" / "zarr.json", lambda d: d["attributes"].pop("native_size")), "malformed sequence attribute"),
        (lambda p: _edit_json(p / "a" / "0" / "zarr.json", lambda d: d.update(data_type="float32")), "expected \\(T, H, W\\) uint8"),
    ],
)
def test_open_rejects_bad_stores(tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "s.zarr"
    write_sequence(path, "a", _frames(), SequenceMeta("x"))
    damage(path)
    with pytest.raises(UserError, match=message):
        FrameStore.open(path)


def _edit_json(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
