"""Invert a colour-mapped rendering (a matplotlib colour map) back to the scalar field it was drawn from.

A rendering of a temperature field in `jet` turned into grey by luma is not monotonic in the field (jet's yellow is
brighter than its dark red and its dark blue), so a model trained on it learns the colour map, not the physics.
Inverting maps every RGB pixel to the position of the nearest colour of the map's 256-entry table: 0 for the map's
low end, 255 for its high end, which is the field up to the linear scaling the renderer used. A map that draws
several entries in one colour loses which: jet's entries 29-32 are all pure blue and come back as 30 (within 2
levels); every other entry of jet comes back within 1 (tests/test_ingest_renderings.py). A GIF's 256-colour
palette moves some pixels off the map (the pool rendering: 3% farther than OFF_MAP_DISTANCE): they take the
nearest colour's position.

A rendering whose colour bar is not a named matplotlib map (the BubbleML flow rendering's bar differs from jet:
25.5% of its pixels were "no colour of jet") is inverted with the figure's own bar (`table_from_colorbar`): the bar's
box is sampled from the first frame, its orientation is the box's longer side (a vertical bar's low end at the
bottom, as matplotlib draws it; a horizontal bar's at the left), the colour at each position the per-channel median
across the bar (ticks and edges drawn over it do not count), resampled to 256 entries.

Tables: `jet` and `gray` are embedded (jet from matplotlib's own segment data, sampled as matplotlib samples it, so
no dependency is needed); any other name is taken from matplotlib when it is installed (mlflow installs it).
"""

from __future__ import annotations

import numpy as np

from bubbles.errors import UserError

# matplotlib's _jet_data: per channel, (x, value below, value above) breakpoints of a piecewise-linear map.
_JET = {
    "red": ((0.0, 0, 0), (0.35, 0, 0), (0.66, 1, 1), (0.89, 1, 1), (1.0, 0.5, 0.5)),
    "green": ((0.0, 0, 0), (0.125, 0, 0), (0.375, 1, 1), (0.64, 1, 1), (0.91, 0, 0), (1.0, 0, 0)),
    "blue": ((0.0, 0.5, 0.5), (0.11, 1, 1), (0.34, 1, 1), (0.65, 0, 0), (1.0, 0, 0)),
}
OFF_MAP_DISTANCE = 40.0  # RGB distance beyond which a pixel is not a colour of the map (text, axes, another map)
OFF_MAP_FRACTION = 0.05  # more than this: say so (wrong map, a crop keeping annotations; a GIF palette alone gave 3%)


def _segmented(data: dict[str, tuple[tuple[float, float, float], ...]], n: int = 256) -> np.ndarray:
    x = np.linspace(0, 1, n)
    return np.stack([np.interp(x, [p[0] for p in data[c]], [p[1] for p in data[c]]) for c in ("red", "green", "blue")], axis=1)


def table(name: str) -> np.ndarray:
    """The (256, 3) uint8 RGB table of a colour map, as matplotlib draws it with bytes=True (float · 255, truncated)."""
    if name == "jet":
        lut = _segmented(_JET)
    elif name == "gray":
        lut = np.repeat(np.linspace(0, 1, 256)[:, None], 3, axis=1)
    else:
        try:
            import matplotlib
        except ImportError:
            raise UserError(f"--colormap {name}: only jet and gray are built in; install matplotlib for other maps") from None
        try:
            cmap = matplotlib.colormaps[name].resampled(256)
        except KeyError:
            raise UserError(f"--colormap {name!r}: not a matplotlib colour map (e.g. jet, viridis, inferno, gray)") from None
        lut = cmap(np.linspace(0, 1, 256))[:, :3]
    return (lut * 255).astype(np.uint8)


def render(field: np.ndarray, name: str) -> np.ndarray:
    """uint8 field (..., ) -> (..., 3) uint8 RGB through the map: what a plot of the field would show."""
    return table(name)[field]


def table_from_colorbar(frame: np.ndarray, box: tuple[int, int, int, int], where: str) -> tuple[np.ndarray, str]:
    """The (256, 3) uint8 table of the colour bar inside `box` (LEFT, TOP, RIGHT, BOTTOM, right and bottom
    exclusive) of one RGB(A) frame (H, W, 3|4), low end first, and its orientation ('vertical' or 'horizontal')."""
    left, top, right, bottom = box
    h, w = frame.shape[:2]
    if right > w or bottom > h:
        raise UserError(f"{where}: --colorbar {left},{top},{right},{bottom} reaches outside the {h}x{w} (HxW) frames")
    bar = frame[top:bottom, left:right, :3].astype(np.float64)
    vertical = bar.shape[0] >= bar.shape[1]
    profile = np.median(bar, axis=1)[::-1] if vertical else np.median(bar, axis=0)  # low end first
    if len(profile) < 8:
        raise UserError(f"{where}: --colorbar box is {len(profile)} px long; the bar's long side needs at least 8")
    if np.ptp(profile, axis=0).max() < 16:
        raise UserError(f"{where}: --colorbar {left},{top},{right},{bottom} holds one colour; is the box on the bar?")
    x = np.linspace(0, len(profile) - 1, 256)
    lut = np.stack([np.interp(x, np.arange(len(profile)), profile[:, c]) for c in range(3)], axis=1)
    return np.clip(np.rint(lut), 0, 255).astype(np.uint8), "vertical" if vertical else "horizontal"


def invert(frames: np.ndarray, name: str | np.ndarray) -> tuple[np.ndarray, float]:
    """RGB(A) frames (..., 3|4) -> uint8 positions in the map (0..255), and the fraction of pixels farther than
    OFF_MAP_DISTANCE from every colour of the map. `name`: a map's name, or its (256, 3) table (a colour bar's).
    Works on the distinct colours (a GIF has at most 256 a frame)."""
    full = table(name) if isinstance(name, str) else name
    # Entries drawn in one colour (jet is pure blue from 0.11 to 0.125: entries 29-31) give the middle position.
    lut_colours, which = np.unique(full, axis=0, return_inverse=True)
    position = np.rint(np.bincount(which.ravel(), weights=np.arange(256)) / np.bincount(which.ravel())).astype(np.uint8)
    lut = lut_colours.astype(np.float64)
    rgb = np.ascontiguousarray(frames[..., :3]).astype(np.uint8)
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    colours, inverse = np.unique(packed.reshape(-1), return_inverse=True)
    cols = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=1).astype(np.float64)
    best = np.empty(len(cols), np.uint8)
    dist = np.empty(len(cols))
    for start in range(0, len(cols), 4096):  # bounded memory for a video with many colours
        d = np.linalg.norm(cols[start : start + 4096, None, :] - lut[None], axis=2)
        best[start : start + 4096] = position[d.argmin(axis=1)]
        dist[start : start + 4096] = d.min(axis=1)
    counts = np.bincount(inverse, minlength=len(cols))
    off = float(counts[dist > OFF_MAP_DISTANCE].sum()) / max(packed.size, 1)
    return best[inverse].reshape(packed.shape), off
