"""Calibrate the bubble detector to a sequence: polarity, bubble-size bounds and contrast, measured on its frames.

The detector's defaults (bubbles.evaluation.bubbles) were set on synthetic shadowgraphs, where a bubble is a few
percent of the frame height. Real recordings differ: the pool-boiling rendering's bubbles span 15-25% of the height
and are bright on a dark field. A calibration is measured once per sequence on its native frames (at ingest, or by
`inspect --calibrate`) and stored in the sequence's `extra.detector` as fractions of the frame height (so it holds
at every pyramid level and image size), with the native-pixel values in `extra.detector_calibration` for people.

How, on up to SAMPLE_FRAMES frames spread over the sequence (rows outside the roi ignored):
1. polarity: the heavier tail of the grey-level histogram (bubbles are the minority phase): bright when the 99.5th
   percentile is farther above the median than the 0.5th percentile is below it;
2. objects: pixels whose contrast to the median exceeds max(TAIL_SHARE of that tail, 3 robust σ), opened with
   a 3×3 disk, holes filled; connected regions of at least MIN_AREA_PX pixels;
3. bounds: min_diameter = 0.5 × their 10th diameter percentile, max_diameter = 2 × their 95th (native px);
   typical_diameter = the median diameter of the objects after touching ones are split (bubbles.data.shapes):
   merged vapour masses at a heater are few but large, and an area-weighted median (used before) was theirs
   (78 px of 800 on the shared experiment, the flow baseline's window then two of them);
   min_contrast = 0.2 × the 10th percentile of the regions' mean contrast (>= 0.02); roundness = 0.8 × the 10th
   percentile of their minor/major axis ratio, within [0.2, 0.5]; background_radius covers the largest bubble.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from skimage import measure, morphology

from bubbles.data.shapes import split_touching

SAMPLE_FRAMES = 16
TAIL_SHARE = 0.25
MIN_AREA_PX = 9
MIN_DIAMETER_FLOOR_PX = 2.5  # what the detector can resolve at any size


def _objects(frame: np.ndarray, bright: bool, roi: tuple[int, int]) -> tuple[list[float], list[float], list[float], list[float]]:
    """Of the candidate bubbles of one frame: diameters (px) after touching ones are split, diameters of the regions
    as found, mean contrasts (0..1) and minor/major axis ratios of the regions."""
    f = frame.astype(np.float32) / 255.0
    rows = f[roi[0] : roi[1]]
    med = float(np.median(rows))
    lo, hi = np.percentile(rows, [0.5, 99.5])
    sigma = 1.4826 * float(np.median(np.abs(rows - med)))
    contrast = (f - med) if bright else (med - f)
    mask = contrast > max(TAIL_SHARE * ((hi - med) if bright else (med - lo)), 3 * sigma, 1 / 255)
    mask[: roi[0]] = False
    mask[roi[1] :] = False
    mask = ndimage.binary_fill_holes(ndimage.binary_opening(mask, morphology.disk(1)))
    labels = measure.label(mask)
    regions = [p for p in measure.regionprops(labels, intensity_image=contrast) if p.area >= MIN_AREA_PX]
    split = [q.equivalent_diameter_area for p in regions for q in measure.regionprops(split_touching(p.image))
             if q.area >= MIN_AREA_PX]
    return (split, [p.equivalent_diameter_area for p in regions], [float(p.intensity_mean) for p in regions],
            [p.axis_minor_length / p.axis_major_length if p.axis_major_length > 0 else 1.0 for p in regions])


def calibrate(frames: np.ndarray, roi: tuple[float, float] = (0.0, 1.0)) -> dict[str, Any] | None:
    """frames (T, H, W) uint8 at native size -> the calibration in native pixels (None: no object found), with
    `hints`: the same as the detector's fractions of the frame height (DetectorConfig fields)."""
    t, h = frames.shape[0], frames.shape[1]
    rows = (int(round(roi[0] * h)), int(round(roi[1] * h)))
    sample = frames[np.unique(np.linspace(0, t - 1, min(SAMPLE_FRAMES, t)).round().astype(int))]
    body = sample[:, rows[0] : rows[1]].astype(np.float32)
    med = np.median(body)
    lo, hi = np.percentile(body, [0.5, 99.5])
    bright = bool(hi - med > med - lo)
    diameters: list[float] = []  # of the objects after touching ones are split: for the typical diameter
    region_diameters: list[float] = []  # of the regions as found, merged masses included: for the bounds
    contrasts: list[float] = []
    ratios: list[float] = []
    for frame in sample:
        d, a, c, r = _objects(frame, bright, rows)
        diameters += d
        region_diameters += a
        contrasts += c
        ratios += r
    if not region_diameters:
        return None
    typical = min(float(h), float(np.median(diameters if diameters else region_diameters)))
    d = np.asarray(region_diameters)
    min_d = max(MIN_DIAMETER_FLOOR_PX, 0.5 * float(np.percentile(d, 10)))
    max_d = min(float(h), 2.0 * float(np.percentile(d, 95)))  # room for bubbles that grow and merge
    # A fifth of the faint regions' contrast: the faint bubbles high in the pool rendering (a third of the typical
    # contrast) were missed at half of it; the floor keeps noise out.
    min_contrast = max(0.02, 0.2 * float(np.percentile(contrasts, 10)))
    roundness = float(np.clip(0.8 * np.percentile(ratios, 10), 0.2, 0.5))  # deformed bubbles are bubbles
    native = {
        "polarity": "bright" if bright else "dark", "min_diameter_px": round(min_d, 2), "max_diameter_px": round(max_d, 2),
        "typical_diameter_px": round(typical, 2), "min_contrast": round(min_contrast, 4), "roundness": round(roundness, 3),
        "native_height": h,
        "objects": len(d), "frames": len(sample),
    }
    return native | {"hints": hints_from(native)}


def hints_from(native: Mapping[str, Any]) -> dict[str, Any]:
    """Native-pixel calibration -> DetectorConfig fields as fractions of the frame height."""
    h = float(native["native_height"])
    return {
        "polarity": native["polarity"],
        "min_diameter": round(native["min_diameter_px"] / h, 5),
        "max_diameter": round(native["max_diameter_px"] / h, 5),
        "typical_diameter": round(native["typical_diameter_px"] / h, 5),
        # The closing/opening must erase the largest bubble to see the background around it.
        "background_radius": round(max(0.08, 0.6 * native["max_diameter_px"] / h), 5),
        "min_contrast": native["min_contrast"],
        "roundness": native["roundness"],
    }


def describe(name: str, cal: Mapping[str, Any] | None) -> str:
    """One line for a person: what was measured for a sequence."""
    if cal is None:
        return f"{name}: no bubble-like objects found; the detector keeps its defaults"
    return (f"{name}: {cal['polarity']} bubbles, diameter {cal['min_diameter_px']:.1f}-{cal['max_diameter_px']:.1f} px "
            f"(typical {cal['typical_diameter_px']:.1f}) of {cal['native_height']} px height, contrast >= {cal['min_contrast']:.3f} "
            f"({cal['objects']} objects in {cal['frames']} frames)")


def calibrate_store(path: str | Path, keep_hints: tuple[str, ...] = ("roi_top", "roi_bottom")) -> list[str]:
    """Calibrate every one-field sequence of a store in place (its `extra.detector` and `extra.detector_calibration`
    attributes; the frames and their checksums are untouched). A store's own roi hints are kept and used. Returns
    one line per sequence."""
    import zarr

    from bubbles.data.store import FrameStore

    store = FrameStore.open(path)
    lines = []
    for name, info in sorted(store.sequences.items()):
        if len(info.fields) != 1:
            lines.append(f"{name}: {len(info.fields)} fields; calibration is for one-field sequences, skipped")
            continue
        old = dict(info.meta.extra.get("detector", {}) or {})
        kept = {k: old[k] for k in keep_hints if k in old}
        measured = calibrate(store.read(name, 0), (kept.get("roi_top", 0.0), kept.get("roi_bottom", 1.0)))
        lines.append(describe(name, measured))
        if measured is None:
            continue
        extra = dict(info.meta.extra)
        extra["detector"] = old | measured.pop("hints") | kept
        extra["detector_calibration"] = measured
        zarr.open_group(str(Path(path) / name), mode="r+", zarr_format=3).attrs["extra"] = extra
    return lines
