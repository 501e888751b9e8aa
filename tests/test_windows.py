"""Window datasets and splits: disjointness, determinism, cache modes, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bubbles.errors import UserError
from bubbles.data.store import FrameStore
from bubbles.data.windows import DataConfig, FrameCache, SplitConfig, WindowConfig, split_segments
from bubbles.data.splits import make_splits


def _frames_used(dataset) -> set[tuple[str, int]]:  # type: ignore[no-untyped-def]
    n = dataset.window.length
    return {(name, s + k) for name, s in dataset.starts for k in range(n)}


@pytest.mark.parametrize(
    "split",
    [
        SplitConfig(kind="condition", val_fraction=0.34, test_fraction=0.34),
        SplitConfig(kind="sequence", val_fraction=0.2, test_fraction=0.2),
        SplitConfig(kind="time", val_fraction=0.25, test_fraction=0.25, gap=2),
    ],
)
def test_splits_never_share_a_frame(tiny_store: Path, split: SplitConfig) -> None:
    splits = make_splits(DataConfig(str(tiny_store), 32, split), WindowConfig(4, 2, 1))
    train, val, test = (_frames_used(d) for d in (splits.train, splits.val, splits.test))
    assert train and val and test
    assert not (train & val) and not (train & test) and not (val & test)
    if split.kind == "condition":
        conds = [set(d.conditions.values()) for d in (splits.train, splits.val, splits.test)]
        assert not (conds[0] & conds[1]) and not (conds[0] & conds[2])
    again = make_splits(DataConfig(str(tiny_store), 32, split), WindowConfig(4, 2, 1))
    assert again.train.starts == splits.train.starts and again.val.starts == splits.val.starts


def test_condition_selectors(tiny_store: Path) -> None:
    store = FrameStore.open(tiny_store)
    info = store.sequences["seq001"]
    by_id = split_segments(store, SplitConfig(kind="condition", val=(info.condition_id,)))
    assert sorted(s[0] for s in by_id.val) == ["seq001", "seq004"]  # 3 conditions cycle over 6 sequences
    regime = info.meta.condition["regime"]
    by_value = split_segments(store, SplitConfig(kind="condition", val=(f"regime={regime}",)))
    assert {"seq001", "seq004"} <= {s[0] for s in by_value.val}


def test_pyramid_level_and_resize(tiny_store: Path) -> None:
    store = FrameStore.open(tiny_store)
    cache16 = FrameCache(store, (16, 16))
    np.testing.assert_array_equal(cache16.frames("seq000", 3, 9), store.read("seq000", 1)[3:9])
    cache24 = FrameCache(store, (24, 24))  # no level of 24: resized once from the 32 level
    assert cache24.frames("seq000", 0, 5).shape == (5, 24, 24)


def test_streaming_cache_equals_preloaded(tiny_store: Path) -> None:
    store = FrameStore.open(tiny_store)
    whole = FrameCache(store, (32, 32))
    streamed = FrameCache(store, (32, 32), limit_bytes=3 * 64 * 32 * 32)  # a few chunks at most
    assert whole.preloaded and not streamed.preloaded
    for start, stop in [(0, 5), (60, 70), (30, 48), (62, 66)]:
        stop = min(stop, 48)
        start = min(start, stop - 1)
        np.testing.assert_array_equal(whole.frames("seq002", start, stop), streamed.frames("seq002", start, stop))
    assert streamed._bytes <= streamed.limit


@pytest.mark.parametrize(
    "data, window, message",
    [
        (SplitConfig(kind="condition"), WindowConfig(40, 20), "needs 60 frames"),
        (SplitConfig(kind="condition", val=("nope=1",)), WindowConfig(4, 1), "unknown condition key 'nope'"),
        (SplitConfig(kind="condition", val=("regime=volcano",)), WindowConfig(4, 1), "matches no condition"),
        (SplitConfig(kind="condition", val_fraction=0.5, test_fraction=0.5), WindowConfig(4, 1), "keep one for training"),
        (SplitConfig(kind="time", val_fraction=0.0), WindowConfig(4, 1), "validation split has no windows"),
        (SplitConfig(kind="condition"), WindowConfig(0, 1), "must be >= 1"),
    ],
)
def test_impossible_requests(tiny_store: Path, data: SplitConfig, window: WindowConfig, message: str) -> None:
    with pytest.raises(UserError, match=message):
        make_splits(DataConfig(str(tiny_store), 32, data), window)


def test_image_size_too_large(tiny_store: Path) -> None:
    with pytest.raises(UserError, match="larger than the native"):
        make_splits(DataConfig(str(tiny_store), 64), WindowConfig(4, 1))
