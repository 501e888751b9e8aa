"""The forecasts a model must beat: persistence, context median, climatology and optical-flow extrapolation.

All take context frames (N, T, H, W) floats in [0, 1] and return (N, horizon, H, W).

- persistence: the last context frame, at every lead.
- median: the per-pixel median of the context frames (a background guess: moving bubbles vanish from it).
- climatology: the per-pixel mean of the training frames (same store, same size), at every lead.
- flow: optical-flow extrapolation, the standard nowcasting baseline. The motion field u is estimated from the
  last two context frames with scikit-image's iterative Lucas-Kanade (`optical_flow_ilk`); the last frame is then
  advected semi-Lagrangianly as pySTEPS' extrapolation does: the departure point of every pixel is traced back k
  steps through the (frozen) field, d_k = d_{k-1} + u(x + d_{k-1}), and the frame at lead k is the last frame
  sampled at x + d_k (bilinear, edges clamped). ILK was chosen over TV-L1 after measuring both on 128² synthetic
  frames (bench/baselines.py; README, Performance): about as accurate at lead 1 and faster.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.ndimage import map_coordinates
from skimage.registration import optical_flow_ilk, optical_flow_tvl1

FLOW_METHODS: dict[str, Callable[..., np.ndarray]] = {"ilk": optical_flow_ilk, "tvl1": optical_flow_tvl1}
FLOW_RADIUS_FRACTION = 1 / 16  # ILK window radius as a fraction of the frame height (8 px at 128²)


def persistence(inputs: np.ndarray, horizon: int) -> np.ndarray:
    """Repeat the last input frame: (N, T, H, W) -> (N, horizon, H, W)."""
    return np.repeat(inputs[:, -1:], horizon, axis=1)


def context_median(inputs: np.ndarray, horizon: int) -> np.ndarray:
    """The per-pixel median of the context frames, for every lead: a blurry background guess."""
    return np.repeat(np.median(inputs, axis=1, keepdims=True), horizon, axis=1)


def climatology(inputs: np.ndarray, horizon: int, mean_frame: np.ndarray) -> np.ndarray:
    """The training frames' per-pixel mean (H, W), at every lead of every window."""
    return np.broadcast_to(mean_frame.astype(inputs.dtype), (len(inputs), horizon, *inputs.shape[2:])).copy()


def motion_field(previous: np.ndarray, last: np.ndarray, method: str = "ilk") -> np.ndarray:
    """u (2, H, W): for every pixel x of `last`, the offset to where it was in `previous` (last(x) ~ previous(x+u))."""
    if method == "ilk":
        radius = max(2, round(last.shape[0] * FLOW_RADIUS_FRACTION))
        return optical_flow_ilk(last, previous, radius=radius)
    return FLOW_METHODS[method](last, previous)


def advect(frame: np.ndarray, u: np.ndarray, horizon: int) -> np.ndarray:
    """Semi-Lagrangian extrapolation of frame (H, W) along the frozen field u (2, H, W) -> (horizon, H, W)."""
    h, w = frame.shape
    grid = np.mgrid[0:h, 0:w].astype(np.float64)
    offset = np.zeros_like(grid)
    out = np.empty((horizon, h, w), frame.dtype)
    for k in range(horizon):
        # One step further back along the trajectory: the field is sampled where the pixel was a step earlier.
        offset = offset + np.stack([map_coordinates(u[c], grid + offset, order=1, mode="nearest") for c in range(2)])
        out[k] = map_coordinates(frame, grid + offset, order=1, mode="nearest")
    return out


def flow_extrapolation(inputs: np.ndarray, horizon: int, method: str = "ilk") -> np.ndarray:
    """Advect each window's last frame along the motion of its last two frames."""
    if inputs.shape[1] < 2:
        return persistence(inputs, horizon)  # one context frame: no motion to estimate
    out = np.empty((len(inputs), horizon, *inputs.shape[2:]), inputs.dtype)
    for n, window in enumerate(inputs):
        u = motion_field(window[-2].astype(np.float32), window[-1].astype(np.float32), method)
        out[n] = advect(window[-1], u, horizon)
    return out


def _climatology_or_error(inputs: np.ndarray, horizon: int, mean_frame: np.ndarray | None) -> np.ndarray:
    if mean_frame is None:
        raise ValueError("climatology needs the training frames' mean frame")
    return climatology(inputs, horizon, mean_frame)


# The one table of baselines, by name (as pySTEPS' get_method): (context, horizon, training mean frame) -> forecast.
TABLE: dict[str, Callable[[np.ndarray, int, np.ndarray | None], np.ndarray]] = {
    "persistence": lambda inputs, horizon, _: persistence(inputs, horizon),
    "median": lambda inputs, horizon, _: context_median(inputs, horizon),
    "climatology": _climatology_or_error,
    "flow": lambda inputs, horizon, _: flow_extrapolation(inputs, horizon),
}
BASELINES = tuple(TABLE)


def forecast(name: str, inputs: np.ndarray, horizon: int, mean_frame: np.ndarray | None = None) -> np.ndarray:
    """One named baseline's forecast (climatology needs the training mean frame)."""
    if name not in TABLE:
        raise ValueError(f"unknown baseline {name!r} (have: {', '.join(BASELINES)})")
    return TABLE[name](inputs, horizon, mean_frame)


def mean_frame(frames: list[np.ndarray]) -> np.ndarray:
    """Per-pixel mean of uint8 frame blocks (T, H, W), as floats in [0, 1]: the climatology."""
    total = sum(f.astype(np.float64).sum(axis=0) for f in frames)
    count = sum(len(f) for f in frames)
    return (np.asarray(total) / max(count, 1) / 255.0).astype(np.float32)
