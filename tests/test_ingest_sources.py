"""Recordings as they come: a GIF's frame duration and an MP4's frame rate become fps, --crop cuts a box at ingest."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner

from bubbles.data.frame_rules import duplicate_frames, parse_crop
from bubbles.data.ingest import IngestRequest, ingest
from bubbles.data.store import FrameStore
from bubbles.errors import UserError
from cli import main


def _frames(t: int = 6, h: int = 40, w: int = 70) -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (t, h, w), dtype=np.uint8)


def test_gif_frame_duration_gives_fps_and_crop_cuts_the_box(tmp_path: Path) -> None:
    frames = _frames()
    iio.imwrite(tmp_path / "fig.gif", list(frames), duration=100, loop=0)  # 100 ms per frame
    ingest(IngestRequest(tmp_path / "fig.gif", tmp_path / "s.zarr", crop=(10, 5, 60, 35)))
    info = FrameStore.open(tmp_path / "s.zarr").sequences["fig"]
    assert info.meta.fps == pytest.approx(10.0)
    assert info.native_size == (30, 50) and info.meta.extra["crop"] == [10, 5, 60, 35]
    np.testing.assert_array_equal(FrameStore.open(tmp_path / "s.zarr").read("fig"), frames[:, 5:35, 10:60])
    with pytest.raises(UserError, match="outside the 40x70"):
        ingest(IngestRequest(tmp_path / "fig.gif", tmp_path / "s.zarr", sequence="b", crop=(0, 0, 71, 10)))


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "5,0,2,10", "-1,0,4,4"])
def test_bad_crop_is_one_line(text: str) -> None:
    with pytest.raises(UserError, match="--crop"):
        parse_crop(text)


def test_mp4_frame_rate_from_metadata(tmp_path: Path) -> None:
    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run([ffmpeg, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=96x48:rate=25:duration=0.4",
                    "-pix_fmt", "yuv420p", str(tmp_path / "cam.mp4")], check=True)
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "cam.mp4"), str(tmp_path / "s.zarr"), "--crop", "0,0,64,48"])
    assert result.exit_code == 0, result.output
    info = FrameStore.open(tmp_path / "s.zarr").sequences["cam"]
    assert info.meta.fps == pytest.approx(25.0) and info.native_size == (48, 64) and info.frames == 10


def test_16_bit_tiff_stack_and_png_folder_one_rule_with_clip(tmp_path: Path) -> None:
    import tifffile

    rng = np.random.default_rng(5)
    stack = rng.integers(1000, 3000, (8, 24, 40)).astype(np.uint16)
    stack[0, 0, 0] = 60000  # one hot pixel
    tifffile.imwrite(tmp_path / "cam.tif", stack)
    ingest(IngestRequest(tmp_path / "cam.tif", tmp_path / "s.zarr"))
    ingest(IngestRequest(tmp_path / "cam.tif", tmp_path / "s.zarr", sequence="clipped", clip=(0.1, 99.9)))
    store = FrameStore.open(tmp_path / "s.zarr")
    plain, clipped = store.read("cam"), store.read("clipped")
    assert store.sequences["cam"].meta.extra["scale"] == {"min": 1000.0, "max": 60000.0}
    assert plain[1:].max() < 15 and clipped[1:].std() > 40  # min..max squashes everything; the clip does not
    assert store.sequences["clipped"].meta.extra["scale"]["clip_high_percentile"] == 99.9
    folder = tmp_path / "pngs"
    folder.mkdir()
    for k in range(3):
        iio.imwrite(folder / f"f{k}.png", stack[k])
    ingest(IngestRequest(folder, tmp_path / "s.zarr", sequence="png16"))
    assert FrameStore.open(tmp_path / "s.zarr").sequences["png16"].meta.extra["scale"]["max"] == 60000.0
    iio.imwrite(folder / "f3.png", (stack[3] // 256).astype(np.uint8))
    with pytest.raises(UserError, match="mix bit depths"):
        ingest(IngestRequest(folder, tmp_path / "s.zarr", sequence="mixed"))


def test_duplicate_frames_warned_with_their_ranges_and_dropped_on_request(tmp_path: Path) -> None:
    frames = _frames(t=12)
    frames[5] = frames[4]
    frames[9:] = frames[8]  # a recording whose last frames repeat (stalled exporter)
    np.save(tmp_path / "rec.npy", frames)
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "rec.npy"), str(tmp_path / "s.zarr")])
    assert result.exit_code == 0, result.output
    assert "4 frame(s) repeating the frame before (frames 5, 9-11 of 12)" in result.output
    kept = FrameStore.open(tmp_path / "s.zarr")
    assert kept.sequences["rec"].frames == 12 and kept.sequences["rec"].meta.extra["duplicate_frames"] == 4
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "rec.npy"), str(tmp_path / "s.zarr"),
                                       "--sequence", "clean", "--drop-duplicates"])
    assert result.exit_code == 0 and "dropped 4 frame(s)" in result.output
    store = FrameStore.open(tmp_path / "s.zarr")
    assert store.sequences["clean"].meta.extra["dropped_duplicate_frames"] == [5, 9, 10, 11]
    np.testing.assert_array_equal(store.read("clean"), frames[[0, 1, 2, 3, 4, 6, 7, 8]])
    # A multi-channel sequence is a duplicate only when every channel repeats.
    fields = np.stack([frames, frames[::-1]], axis=1)
    assert duplicate_frames(fields) == []
    # A lossy codec's re-encoded repeat differs in a few pixels by a few levels: still a repeat; real motion is not.
    recoded = frames.copy()
    recoded[5, :3, :3] = np.clip(recoded[4, :3, :3].astype(int) + 4, 0, 255)
    assert duplicate_frames(recoded) == [5, 9, 10, 11] and duplicate_frames(_frames(t=12)) == []


def test_a_range_set_by_outliers_gets_a_clip_hint(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    stack = rng.integers(1000, 1400, (6, 24, 40)).astype(np.uint16)
    stack[2, 5, 5] = 65000  # one hot pixel sets the max: everything else lands in ~2 grey levels
    np.save(tmp_path / "hot.npy", stack)
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "hot.npy"), str(tmp_path / "s.zarr")])
    assert result.exit_code == 0 and "`ingest --clip 0.1,99.9` scales from percentiles instead" in result.output, result.output
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "hot.npy"), str(tmp_path / "s.zarr"), "--sequence", "c", "--clip", "0.1,99.9"])
    assert result.exit_code == 0 and "warning" not in result.output, result.output
    stack[2, 5, 5] = 1400  # no outlier: the full range is used, nothing to say
    np.save(tmp_path / "plain.npy", stack)
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "plain.npy"), str(tmp_path / "s.zarr")])
    assert result.exit_code == 0 and "warning" not in result.output, result.output
