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
  frames (bench/baselines.py; docs/performance.md): about as accurate at lead 1 and faster.
  ILK's window must be larger than the bubbles: inside a bubble's flat interior (and on a flat background) a small
  window sees no gradient, the estimate there is ~0, and the advection tears the bubble apart. On the pool-boiling
  rendering (bubbles 12% of the height, flat interiors) the window of H/16 lost to persistence at every lead; a
  radius of H/4 beat it at leads 1-4 (docs/real-recordings.md). The radius is therefore set by the bubble scale
  when the caller knows it (`scale`: the sequence's calibrated typical diameter in px, bubbles/data/calibrate.py):
  FLOW_RADIUS_PER_DIAMETER diameters, within [H/16, H/4]; H/16 otherwise (the synthetic stores, 8 px at 128²).
  Motion from several past pairs (their mean) and Gaussian smoothing of the field were measured too and did not
  help on either store (bench/baselines.py --real reports them).
  Where training frames are at hand (the yardstick, an evaluation), the radius is MEASURED instead
  (`measure_flow_radius`): the candidates FLOW_RADIUS_CANDIDATES (fractions of H) and the calibrated one are each
  tried on up to FLOW_RADIUS_WINDOWS training windows at the scored spacing, and the one with the lowest lead-1
  MSE is used and recorded beside the baselines' scores. A rule of thumb that makes flow weaker than it could be
  flatters every model (on the shared experiment the calibrated radius made flow 16-18% worse than H/16).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.ndimage import map_coordinates
from skimage.registration import optical_flow_ilk, optical_flow_tvl1

Scale = float | np.ndarray | None  # bubble diameter (px) at the frames' size: one, or one per window
FLOW_METHODS: dict[str, Callable[..., np.ndarray]] = {"ilk": optical_flow_ilk, "tvl1": optical_flow_tvl1}
FLOW_RADIUS_FRACTION = 1 / 16  # ILK window radius as a fraction of the frame height (8 px at 128²), uncalibrated
FLOW_RADIUS_MAX_FRACTION = 1 / 4
FLOW_RADIUS_PER_DIAMETER = 2.0  # the window (2r + 1) then spans about four bubble diameters
FLOW_RADIUS_CANDIDATES = (1 / 48, 1 / 32, 1 / 16, 1 / 8, 1 / 4)  # of H: measured on training frames
FLOW_RADIUS_WINDOWS = 16


def persistence(inputs: np.ndarray, horizon: int) -> np.ndarray:
    """Repeat the last input frame: (N, T, H, W) -> (N, horizon, H, W)."""
    return np.repeat(inputs[:, -1:], horizon, axis=1)


def context_median(inputs: np.ndarray, horizon: int) -> np.ndarray:
    """The per-pixel median of the context frames, for every lead: a blurry background guess."""
    return np.repeat(np.median(inputs, axis=1, keepdims=True), horizon, axis=1)


def climatology(inputs: np.ndarray, horizon: int, mean_frame: np.ndarray) -> np.ndarray:
    """The training frames' per-pixel mean (H, W), at every lead of every window."""
    return np.broadcast_to(mean_frame.astype(inputs.dtype), (len(inputs), horizon, *inputs.shape[2:])).copy()


def flow_radius(height: int, scale: float | None = None) -> int:
    """ILK window radius (px) for frames `height` px high whose bubbles are `scale` px across (None/0: unknown)."""
    if not scale:
        return max(2, round(height * FLOW_RADIUS_FRACTION))
    low, high = height * FLOW_RADIUS_FRACTION, height * FLOW_RADIUS_MAX_FRACTION
    return max(2, round(min(max(FLOW_RADIUS_PER_DIAMETER * scale, low), high)))


def motion_field(previous: np.ndarray, last: np.ndarray, method: str = "ilk", radius: int | None = None) -> np.ndarray:
    """u (2, H, W): for every pixel x of `last`, the offset to where it was in `previous` (last(x) ~ previous(x+u))."""
    if method == "ilk":
        return optical_flow_ilk(last, previous, radius=radius or flow_radius(last.shape[0]))
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


def flow_extrapolation(inputs: np.ndarray, horizon: int, method: str = "ilk", scale: Scale = None,
                       radius: int | None = None) -> np.ndarray:
    """Advect each window's last frame along the motion of its last two frames; `scale`: the bubble diameter (px)
    of every window (one number, or one per window; None: unknown), which sets ILK's window, unless `radius` (px,
    measured: measure_flow_radius) is given."""
    if inputs.shape[1] < 2:
        return persistence(inputs, horizon)  # one context frame: no motion to estimate
    scales = np.broadcast_to(np.asarray(0.0 if scale is None else scale, np.float64), (len(inputs),))
    out = np.empty((len(inputs), horizon, *inputs.shape[2:]), inputs.dtype)
    for n, window in enumerate(inputs):
        radius_n = radius or flow_radius(window.shape[-2], float(scales[n]))
        u = motion_field(window[-2].astype(np.float32), window[-1].astype(np.float32), method, radius_n)
        out[n] = advect(window[-1], u, horizon)
    return out


def _climatology_or_error(inputs: np.ndarray, horizon: int, mean_frame: np.ndarray | None) -> np.ndarray:
    if mean_frame is None:
        raise ValueError("climatology needs the training frames' mean frame")
    return climatology(inputs, horizon, mean_frame)


# The one table of baselines, by name (as pySTEPS' get_method):
# (context, horizon, training mean frame, bubble scale per window) -> forecast.
TABLE: dict[str, Callable[[np.ndarray, int, np.ndarray | None, Scale], np.ndarray]] = {
    "persistence": lambda inputs, horizon, _, __: persistence(inputs, horizon),
    "median": lambda inputs, horizon, _, __: context_median(inputs, horizon),
    "climatology": lambda inputs, horizon, mean, _: _climatology_or_error(inputs, horizon, mean),
    "flow": lambda inputs, horizon, _, scale: flow_extrapolation(inputs, horizon, scale=scale),
}
BASELINES = tuple(TABLE)


def forecast(name: str, inputs: np.ndarray, horizon: int, mean_frame: np.ndarray | None = None,
             scale: Scale = None, flow_radius_px: int | None = None) -> np.ndarray:
    """One named baseline's forecast (climatology needs the training mean frame; flow uses its measured radius
    when given, else the bubble scale, px at the inputs' size, one or one per window, when known)."""
    if name not in TABLE:
        raise ValueError(f"unknown baseline {name!r} (have: {', '.join(BASELINES)})")
    if name == "flow" and flow_radius_px:
        return flow_extrapolation(inputs, horizon, radius=flow_radius_px)
    return TABLE[name](inputs, horizon, mean_frame, scale)


def measure_flow_radius(triples: np.ndarray, scale: float | None = None) -> tuple[int, dict[int, float]]:
    """The ILK radius (px) whose flow forecast has the lowest lead-1 MSE on training frames: `triples` (N, 3, H, W)
    are (previous, last, next) frames at the scored spacing and size; the candidates are FLOW_RADIUS_CANDIDATES of
    H and the radius the bubble `scale` gives. Returns the radius and every candidate's MSE."""
    h = triples.shape[-2]
    radii = sorted({max(2, round(h * f)) for f in FLOW_RADIUS_CANDIDATES} | ({flow_radius(h, scale)} if scale else set()))
    errors = {}
    for r in radii:
        pred = flow_extrapolation(triples[:, :2], 1, radius=r)[:, 0]
        errors[r] = float(((pred.astype(np.float64) - triples[:, 2]) ** 2).mean())
    return min(errors, key=lambda r: (errors[r], r)), errors


def mean_frame(frames: list[np.ndarray]) -> np.ndarray:
    """Per-pixel mean of uint8 frame blocks (T, H, W), as floats in [0, 1]: the climatology."""
    total = sum(f.astype(np.float64).sum(axis=0) for f in frames)
    count = sum(len(f) for f in frames)
    return (np.asarray(total) / max(count, 1) / 255.0).astype(np.float32)
