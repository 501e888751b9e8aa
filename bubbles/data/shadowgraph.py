"""Shadowgraph rendering of a bubble flow: how a backlit high-speed camera sees bubbles (dark rims, lighter cores,
defocus by depth), the static apparatus (plate, nucleation sites, nozzle), the free surface, noise and flicker."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bubbles.data.geometry import NOZZLE_TIP, NOZZLE_X, PLATE_TOP

# render() draws a bubbles.data.bubble_flow.BubbleFlow (named in annotations only, never imported: bubble_flow
# imports this module to draw its frames, and the import stays one-way).


@dataclass(frozen=True)
class RenderStyle:
    """Per-sequence nuisances of the camera and lighting, kept apart from the physics."""

    liquid: float
    air: float
    plate: float
    contrast: float
    noise: float
    flicker: float
    vignette: float

    @staticmethod
    def sample(rng: np.random.Generator) -> RenderStyle:
        return RenderStyle(
            liquid=float(rng.uniform(0.72, 0.82)),
            air=float(rng.uniform(0.86, 0.93)),
            plate=float(rng.uniform(0.25, 0.35)),
            contrast=float(rng.uniform(0.7, 0.85)),
            noise=float(rng.uniform(0.006, 0.015)),
            flicker=float(rng.uniform(0.002, 0.008)),
            vignette=float(rng.uniform(0.03, 0.08)),
        )


def background(size: int, style: RenderStyle, sites: np.ndarray) -> np.ndarray:
    """The static parts: liquid with a gentle gradient and vignette, the plate with its sites, the nozzle."""
    rows = (np.arange(size) + 0.5)[:, None] / size
    cols = (np.arange(size) + 0.5)[None, :] / size
    img = style.liquid * (1.0 - 0.05 * rows) * (1 - style.vignette * ((cols - 0.5) ** 2 + (rows - 0.5) ** 2) * 2)
    plate = 1 / (1 + np.exp(-(rows - PLATE_TOP) * size / 0.7))
    img = img * (1 - plate) + style.plate * plate
    for x in sites:  # the "bottom circles": shallow cavities seen edge-on as flat ellipses
        e = ((cols - x) / 0.018) ** 2 + ((rows - PLATE_TOP - 0.022) / 0.007) ** 2
        img = img + 0.3 * np.exp(-((np.sqrt(e) - 1.0) ** 2) / 0.15) * plate
    half_w = max(0.008, 1.2 / size)
    nozzle = (np.abs(cols - NOZZLE_X) < half_w) & (rows > PLATE_TOP - NOZZLE_TIP) & (rows < PLATE_TOP + 0.01)
    img = np.where(nozzle, style.plate * 0.5, img)
    return img


def render(flow: BubbleFlow, size: int, style: RenderStyle, bg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One frame as float in [0, 1]: surface line, then each bubble as a dark rim with a lighter core."""
    cols = (np.arange(size) + 0.5) / size
    rows = (np.arange(size) + 0.5)[:, None] / size
    surf_row = PLATE_TOP - flow.surface_height(cols)[None, :]
    air = 1 / (1 + np.exp(-(surf_row - rows) * size / 0.8))
    img = bg * (1 - air) + style.air * air
    line_w = max(1.0, size / 160) / size
    img = img * (1 - 0.45 * np.exp(-(((rows - surf_row) / line_w) ** 2)))
    for i in np.flatnonzero(flow.alive):
        cx, cy, radius = flow.x[i] * size, (PLATE_TOP - flow.z[i]) * size, flow.r[i] * size
        if radius < 0.4:
            continue
        depth = flow.depth[i]
        ext = radius * 1.6 + 2
        x0, x1 = max(int(cx - ext), 0), min(int(cx + ext) + 1, size)
        y0, y1 = max(int(cy - ext), 0), min(int(cy + ext) + 1, size)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        d = np.hypot(xx + 0.5 - cx, yy + 0.5 - cy) / radius
        blur = 0.08 + 0.35 * depth + 0.7 / radius  # defocus by depth, never sharper than a pixel
        inner = np.exp(-(((d - 0.78) / (0.22 + blur)) ** 2))
        outer = np.exp(-(((d - 0.78) / (0.1 + blur)) ** 2))
        dark = style.contrast * (1 - 0.55 * depth) * np.where(d < 0.78, inner, outer)
        core = 0.06 * np.exp(-((d / 0.4) ** 2))
        patch = img[y0:y1, x0:x1]
        img[y0:y1, x0:x1] = patch * (1 - dark) + core
    gain = 1 + style.flicker * rng.standard_normal()
    return img * gain + rng.normal(0.0, style.noise, img.shape)
