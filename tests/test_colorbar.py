"""A rendering whose colour bar is no matplotlib map, inverted with the figure's own bar (--colorbar)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from bubbles.data.colormap import table_from_colorbar
from bubbles.data.store import FrameStore
from cli import main

# A map no library names: dark blue -> green (34, 253, 18) mid -> red (237, 28, 7) top, like the flow rendering's.
STOPS = np.array([[10, 20, 120], [30, 140, 200], [34, 253, 18], [240, 230, 30], [237, 28, 7]], np.float64)


def _lut() -> np.ndarray:
    x = np.linspace(0, len(STOPS) - 1, 256)
    return np.stack([np.interp(x, np.arange(len(STOPS)), STOPS[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


def _figure(field: np.ndarray, vertical: bool = True) -> np.ndarray:
    """White figures: the field (T, 40, 40) rendered at (10, 10), a colour bar beside it (vertical: 8 x 120 at the
    right, low end at the bottom; else 120 x 8 below), with black tick marks across the bar."""
    t = len(field)
    rgb = np.full((t, 150, 200, 3), 255, np.uint8)
    rgb[:, 10:50, 10:50] = _lut()[field]
    ramp = _lut()[np.linspace(0, 255, 120).round().astype(int)]
    if vertical:
        rgb[:, 20:140, 170:178] = ramp[::-1][None, :, None, :]
        rgb[:, 20:140:30, 170:173] = 0  # ticks over part of the bar's width
    else:
        rgb[:, 130:138, 60:180] = ramp[None, None, :, :]
        rgb[:, 130:133, 60:180:30] = 0
    return rgb


def test_colorbar_orientation_and_table() -> None:
    field = np.zeros((1, 40, 40), np.uint8)
    for vertical, box in ((True, (170, 20, 178, 140)), (False, (60, 130, 180, 138))):
        lut, orientation = table_from_colorbar(_figure(field, vertical)[0], box, "x")
        assert orientation == ("vertical" if vertical else "horizontal")
        assert np.abs(lut.astype(int) - _lut().astype(int)).max() <= 6  # 120 px of bar resampled to 256 entries


def test_ingest_with_the_figures_own_colorbar(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:40, :40]
    field = np.stack([np.clip(128 + 100 * np.sin((xx + 3 * k) / 7) * np.cos(yy / 9) + rng.normal(0, 3, (40, 40)), 0, 255)
                      for k in range(6)]).astype(np.uint8)
    np.save(tmp_path / "fig.npy", _figure(field))
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "fig.npy"), str(tmp_path / "s.zarr"), "--crop", "10,10,50,50",
                                       "--colorbar", "170,20,178,140", "--colormap", "jet"])
    assert result.exit_code == 0, result.output
    assert "colour bar: vertical, read from the figure" in result.output
    info = FrameStore.open(tmp_path / "s.zarr").sequences["fig"]
    bar = info.meta.extra["colorbar"]
    assert info.meta.extra["off_colormap_fraction"] < 0.01 and bar["named_map_off_fraction"] > 0.2  # after vs before
    back = FrameStore.open(tmp_path / "s.zarr").read("fig").astype(int)
    assert np.abs(back - field).mean() < 2.5 and np.percentile(np.abs(back - field), 99) <= 8
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "fig.npy"), str(tmp_path / "s.zarr"), "--sequence", "w",
                                       "--colorbar", "180,20,190,140"])
    assert result.exit_code != 0 and "holds one colour" in result.output
