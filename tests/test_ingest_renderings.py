"""Renderings and recordings as they come: --frames keeps a range, broken frames are reported and droppable,
--colormap inverts a colour-mapped rendering back to its scalar field."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner

from bubbles.data import colormap
from bubbles.data.frame_rules import broken_frames, parse_frames
from bubbles.data.ingest import IngestRequest, ingest
from bubbles.data.store import FrameStore
from bubbles.errors import UserError
from cli import main


def _moving(t: int = 10, h: int = 24, w: int = 32) -> np.ndarray:
    """A bright blob moving over a mid-grey, slightly noisy background: a sequence with nothing broken."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for k in range(t):
        blob = 120 * np.exp(-((yy - h / 2) ** 2 + (xx - 4 - 2 * k) ** 2) / 18)
        out.append(np.clip(70 + blob + rng.normal(0, 3, (h, w)), 0, 255))
    return np.rint(out).astype(np.uint8)


def test_field_rendered_with_jet_comes_back_within_one_grey_level(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:20, 0:30]
    field = np.stack([((np.sin(xx / 4 + k) + np.cos(yy / 5)) * 63.5 + 127).astype(np.uint8) for k in range(4)])
    assert len(np.unique(field)) > 200  # the whole map is exercised
    import matplotlib  # installed with mlflow; the reference renderer, independent of our embedded table

    rgb = matplotlib.colormaps["jet"](field, bytes=True)[..., :3]
    folder = tmp_path / "png"
    folder.mkdir()
    for k, frame in enumerate(rgb):
        iio.imwrite(folder / f"t{k}.png", frame)
    ingest(IngestRequest(folder, tmp_path / "s.zarr", sequence="jet", colormap="jet"))
    ingest(IngestRequest(folder, tmp_path / "s.zarr", sequence="luma"))
    store = FrameStore.open(tmp_path / "s.zarr")
    back = store.read("jet").astype(int)
    # jet draws entries 29-32 in one colour (pure blue): those four come back as their middle, 30 or 31, within 2.
    plateau = (field >= 29) & (field <= 32)
    assert np.abs(back - field)[~plateau].max() <= 1 and np.abs(back - field)[plateau].max() <= 2
    assert store.sequences["jet"].meta.extra["colormap"] == "jet"
    luma = store.read("luma").astype(float)  # what grey by luma gives: not monotonic in the field
    assert luma[field >= 250].max() < luma[(field > 150) & (field < 190)].min() - 100  # dark red below yellow
    np.testing.assert_array_equal(colormap.table("jet"), matplotlib.colormaps["jet"](np.arange(256), bytes=True)[:, :3])


def test_colormap_refuses_grey_input_and_unknown_names(tmp_path: Path) -> None:
    np.save(tmp_path / "g.npy", _moving())
    with pytest.raises(UserError, match="--colormap needs colour"):
        ingest(IngestRequest(tmp_path / "g.npy", tmp_path / "s.zarr", colormap="jet"))
    with pytest.raises(UserError, match="not a matplotlib colour map"):
        colormap.table("jett")


def test_colormap_warns_when_much_of_the_frame_is_no_colour_of_the_map(tmp_path: Path) -> None:
    rgb = colormap.render(_moving(), "jet")
    rgb[:, :8] = 255  # a white title band: no colour of jet
    np.save(tmp_path / "r.npy", rgb)
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "r.npy"), str(tmp_path / "s.zarr"), "--colormap", "jet"])
    assert result.exit_code == 0, result.output
    assert "33.3% of the pixels are no colour of jet" in result.output


def test_frames_keeps_a_range_and_reports_source_numbers(tmp_path: Path) -> None:
    frames = _moving(t=12)
    frames[9] = frames[8]  # a repeat at source frame 9
    np.save(tmp_path / "m.npy", frames)
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "m.npy"), str(tmp_path / "s.zarr"), "--frames", "3:11"])
    assert result.exit_code == 0, result.output
    assert "frames 9 of 8" in result.output
    info = FrameStore.open(tmp_path / "s.zarr").sequences["m"]
    np.testing.assert_array_equal(FrameStore.open(tmp_path / "s.zarr").read("m"), frames[3:11])
    assert info.meta.extra["frames"] == [3, 11, 1]
    for text, message in [("5", "START:STOP"), ("4:2", "STOP must exceed"), ("a:3", "START:STOP")]:
        with pytest.raises(UserError, match=message):
            parse_frames(text)
    with pytest.raises(UserError, match="the source has 12 frames"):
        ingest(IngestRequest(tmp_path / "m.npy", tmp_path / "s.zarr", sequence="x", frames=(20, None)))
    with pytest.raises(UserError, match="keeps 1 frame"):
        ingest(IngestRequest(tmp_path / "m.npy", tmp_path / "s.zarr", sequence="x", frames=(11, None)))
    assert parse_frames(":7") == (None, 7, 1) and parse_frames("2:") == (2, None, 1) and parse_frames("::4") == (None, None, 4)
    for text, message in [("1:5:0", "STEP must be"), ("1:5:", "START:STOP:STEP")]:
        with pytest.raises(UserError, match=message):
            parse_frames(text)


def test_frames_step_keeps_every_kth_frame_and_records_the_clamped_range(tmp_path: Path) -> None:
    frames = _moving(t=12)
    frames[7] = frames[4]  # source 7 repeats source 4: consecutive once every 3rd frame is kept
    np.save(tmp_path / "m.npy", frames)
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "m.npy"), str(tmp_path / "s.zarr"), "--frames", "1:100:3"])
    assert result.exit_code == 0, result.output
    assert "frames 7 of 4" in result.output  # reported by source number
    store = FrameStore.open(tmp_path / "s.zarr")
    np.testing.assert_array_equal(store.read("m"), frames[1:12:3])
    assert store.sequences["m"].meta.extra["frames"] == [1, 12, 3]  # STOP clamped to the source's 12 frames


def test_blank_saturated_and_jumping_frames_are_reported_and_dropped(tmp_path: Path) -> None:
    frames = _moving(t=14)
    assert broken_frames(frames) == {}
    frames[13] = 253  # a white padding frame at the end
    frames[6] = np.clip(frames[6].astype(int) + 60, 0, 255)  # a flash
    frames[2] = np.where(frames[2] > 100, 255, 0)  # a saturated exposure
    found = broken_frames(frames)
    assert sorted(found) == [2, 6, 13]
    assert found[13].startswith("blank") and found[6].startswith("brightness jump") and found[2].startswith("saturated")
    np.save(tmp_path / "b.npy", frames)
    kept = CliRunner().invoke(main, ["ingest", str(tmp_path / "b.npy"), str(tmp_path / "s.zarr")])
    assert kept.exit_code == 0 and "3 frame(s) of 14 break the sequence (2: saturated" in kept.output
    assert "`ingest --drop-broken` removes them" in kept.output
    dropped = CliRunner().invoke(main, ["ingest", str(tmp_path / "b.npy"), str(tmp_path / "s.zarr"), "--sequence", "clean",
                                        "--drop-broken", "--frames", "1:"])
    assert dropped.exit_code == 0, dropped.output
    store = FrameStore.open(tmp_path / "s.zarr")
    assert store.sequences["b"].frames == 14 and set(store.sequences["b"].meta.extra["broken_frames"]) == {"2", "6", "13"}
    assert store.sequences["clean"].meta.extra["dropped_broken_frames"] == [2, 6, 13]
    np.testing.assert_array_equal(store.read("clean"), np.delete(frames, [0, 2, 6, 13], axis=0))


def test_an_over_exposed_background_is_not_a_break() -> None:
    frames = _moving(t=8)
    frames[:, :, :] = np.where(frames > 90, 255, frames)
    frames[:, 2:22, 2:30] = 255  # most of every frame at 255: the camera's setting, not a broken frame
    assert broken_frames(frames) == {}


def test_a_brightness_jump_is_found_beside_two_blank_frames() -> None:
    """Before: two blank frames' steps (to black and back) inflated the typical change and hid the flash."""
    frames = _moving(t=14)
    frames[3] = 0
    frames[4] = 0  # two blank frames
    frames[9] = np.clip(frames[9].astype(int) + 40, 0, 255)  # a flash
    found = broken_frames(frames)
    assert sorted(found) == [3, 4, 9] and found[9].startswith("brightness jump"), found
