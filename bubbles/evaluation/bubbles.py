"""Bubble-level evaluation: detect bubbles in a frame and match predicted to target bubbles (counts, F1, errors).

The detector (documented in docs/evaluation.md, "Bubble metrics"), on a float frame in [0, 1]:
1. background: a grey closing (dark bubbles) or opening (bright bubbles) with a square of side
   2·round(background_radius·H)+1, which erases every object smaller than that and keeps the slow light field;
2. local contrast = background − frame (dark) or frame − background (bright), smoothed by a Gaussian (σ 0.7 px);
   threshold = max(contrast_k · robust σ of the contrast (1.4826·MAD), min_contrast);
3. morphology: holes filled (a shadowgraph bubble is a dark rim round a lighter core), opened with a 3×3 disk;
4. labelling and regionprops: a region is a bubble when its equivalent diameter is in [min_diameter_px,
   max_diameter·H] and it is round (minor/major axis ≥ roundness, area ≥ 0.8 × its moment ellipse's). A region that is not (a bubble
   touching the free surface, the nozzle or another bubble) is opened again with disks of radius 2 and 3 px and
   its round parts are kept — unless a distance-transform watershed (bubbles.data.shapes.split_touching) cuts it
   into parts that are each round: touching bubbles, separated before any opening shrinks them.
Masks (segmented recordings, `mask`: true in the detector settings that ingest writes for a binary recording):
no background or contrast; the foreground is the frame > 0.5 (vapour), holes filled, and each connected component
is a bubble of any shape (no roundness test), after touching bubbles are separated by a distance-transform
watershed (`split_touching`): markers are the maxima of the distance to the liquid that stand out by more than
SPLIT_H of the component's largest distance (distance smoothed by a 1 px Gaussian; two discs joined by a neck: two
markers; an ellipse at any tilt, a leaning or tall plume: one ridge, one marker), and the component is cut along the
watershed lines between them.
Polarity `auto` runs the detector both ways and keeps the polarity that finds more bubbles. Rows outside
[roi_top, roi_bottom) (fractions of H) are ignored: a store can set polarity and roi per sequence in its
`extra.detector` attribute (synthetic stores exclude the heated plate). Ingest (and `inspect --calibrate`)
write a calibration there for recordings: polarity, min_diameter / max_diameter / typical_diameter and
background_radius as fractions of the height (bubbles/data/calibrate.py), so the bounds follow the evaluated size.
The user's overrides go on top (sequence_detector).

Matching: Hungarian assignment (`scipy.optimize.linear_sum_assignment`) on centroid distance; pairs farther
apart than the match radius, max(MATCH_RADIUS·H, MATCH_RADIUS_MIN_PX), are not matches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from skimage import measure, morphology

from bubbles.data.shapes import split_touching
from bubbles.data.store import TRUTH_COLUMNS
from bubbles.errors import UserError

Polarity = Literal["auto", "dark", "bright"]
MATCH_RADIUS = 0.04  # frame heights
MATCH_RADIUS_MIN_PX = 2.0
MERGING_STATE = 3  # a bubble being absorbed is drawn inside its partner: not a bubble of its own
_SMOOTH_SIGMA = 0.7
_MIN_FILL = 0.8


@dataclass(frozen=True)
class DetectorConfig:
    """The detector's parameters (see the module docstring); lengths in frame heights unless named _px."""

    polarity: Polarity = "auto"
    background_radius: float = 0.08
    contrast_k: float = 4.0
    min_contrast: float = 0.06
    min_diameter_px: float = 2.5
    max_diameter: float = 0.25
    roundness: float = 0.5
    roi_top: float = 0.0
    roi_bottom: float = 1.0
    min_diameter: float = 0.0  # frame heights; a calibrated lower bound (the px floor min_diameter_px still holds)
    typical_diameter: float = 0.0  # frame heights; the calibrated area-weighted median (0: not calibrated)
    mask: bool = False  # the frames are masks: connected components of vapour, split by watershed (module docstring)

    def with_store_hints(self, hints: Mapping[str, Any]) -> DetectorConfig:
        """This config with the values a store names in `extra.detector` (unknown keys are ignored)."""
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in hints.items() if k in known})


def sequence_detector(extra: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> DetectorConfig:
    """The detector of one sequence: defaults, then its calibration or hints (`extra.detector`), then the user's
    overrides (config `detector:` / `--detector KEY=VALUE`, same field names: lengths in frame heights)."""
    hints = extra.get("detector", {})
    cfg = DetectorConfig().with_store_hints(hints if isinstance(hints, Mapping) else {})
    return check_detector(cfg.with_store_hints(overrides or {}), "detector (the store's calibration, then your settings)")


def check_detector(cfg: DetectorConfig, where: str = "detector") -> DetectorConfig:
    """Refuse settings that contradict each other (a detector that can find nothing, so that bubble F1 would
    silently read n/a): a size range or a region of interest that is empty."""
    if cfg.min_diameter > cfg.max_diameter:
        raise UserError(f"{where}: min_diameter {cfg.min_diameter:g} is larger than max_diameter {cfg.max_diameter:g} "
                        "(frame heights): no bubble could be found")
    if cfg.roi_top >= cfg.roi_bottom:
        raise UserError(f"{where}: roi_top {cfg.roi_top:g} is not above roi_bottom {cfg.roi_bottom:g} (fractions of the "
                        "frame height, from the top): the region of interest is empty")
    return cfg


DETECTOR_FIELDS = tuple(f.name for f in fields(DetectorConfig))


def _above_threshold(frame: np.ndarray, side: int, dark: bool, cfg: DetectorConfig) -> np.ndarray:
    """Steps 1-2 for one polarity: pixels whose local contrast exceeds the threshold."""
    if dark:
        c = ndimage.grey_closing(frame, size=(side, side)) - frame
    else:
        c = frame - ndimage.grey_opening(frame, size=(side, side))
    c = ndimage.gaussian_filter(c, _SMOOTH_SIGMA)
    sigma = float(np.median(np.abs(c - np.median(c)))) * 1.4826
    return c > max(cfg.contrast_k * sigma, cfg.min_contrast)


def _round(props: Any, cfg: DetectorConfig, max_px: float, min_px: float) -> bool:
    d = props.equivalent_diameter_area
    if not min_px <= d <= max_px:
        return False
    major, minor = props.axis_major_length, props.axis_minor_length
    # Fill of its moment ellipse (area / (π/4 · major · minor)): 1 for a disc, lower for a notched or bridged
    # blob; as telling as solidity here and without a convex hull per region (which cost 50% of the detector).
    return minor >= cfg.roundness * major and props.area >= _MIN_FILL * np.pi / 4 * major * minor


def foreground(frame: np.ndarray, cfg: DetectorConfig) -> np.ndarray:
    """Steps 1–3: the boolean mask of bubble pixels (holes filled, opened), rows outside the roi cleared; `auto`
    polarity is read as dark here (detect() tries both)."""
    img = frame.astype(np.float32)
    h = img.shape[0]
    side = 2 * max(2, int(round(cfg.background_radius * h))) + 1
    mask = _above_threshold(img, side, cfg.polarity != "bright", cfg)
    mask[: int(round(cfg.roi_top * h))] = False
    mask[int(round(cfg.roi_bottom * h)) :] = False
    mask = ndimage.binary_fill_holes(mask)
    return ndimage.binary_opening(mask, morphology.disk(1))


def detect_mask(frame: np.ndarray, cfg: DetectorConfig) -> np.ndarray:
    """Bubbles of a mask frame: the vapour's connected components, touching ones split (split_touching)."""
    h = frame.shape[0]
    fg = frame > 0.5
    fg[: int(round(cfg.roi_top * h))] = False
    fg[int(round(cfg.roi_bottom * h)) :] = False
    fg = ndimage.binary_fill_holes(fg)
    min_px = max(cfg.min_diameter_px, cfg.min_diameter * h)
    max_px = cfg.max_diameter * h
    found: list[tuple[float, float, float]] = []
    for p in measure.regionprops(measure.label(fg)):
        if p.equivalent_diameter_area < min_px:
            continue
        r0, c0 = p.slice[0].start, p.slice[1].start
        for q in measure.regionprops(split_touching(p.image)):
            if min_px <= q.equivalent_diameter_area <= max_px:
                found.append((q.centroid[0] + r0, q.centroid[1] + c0, q.equivalent_diameter_area))
    return np.array(found, dtype=np.float64).reshape(-1, 3)


def detect(frame: np.ndarray, cfg: DetectorConfig = DetectorConfig()) -> np.ndarray:
    """Bubbles in one (H, W) frame as (K, 3) rows of centroid row, centroid column, equivalent diameter (px)."""
    if cfg.mask:
        return detect_mask(frame, cfg)
    if cfg.polarity == "auto":
        return max((detect(frame, replace(cfg, polarity=p)) for p in ("dark", "bright")), key=len)
    h = frame.shape[0]
    max_px = cfg.max_diameter * h
    min_px = max(cfg.min_diameter_px, cfg.min_diameter * h)
    labels = measure.label(foreground(frame, cfg))
    found: list[tuple[float, float, float]] = []
    for p in measure.regionprops(labels):
        if p.equivalent_diameter_area < min_px:
            continue
        if _round(p, cfg, max_px, min_px):
            found.append((*p.centroid, p.equivalent_diameter_area))
            continue
        region = labels[p.slice] == p.label
        r0, c0 = p.slice[0].start, p.slice[1].start
        # Touching bubbles first: a watershed between distinct cores, kept when every part is a bubble.
        split = [q for q in measure.regionprops(split_touching(region)) if q.area >= 4]
        if len(split) > 1 and all(_round(q, cfg, max_px, min_px) for q in split):
            found.extend((q.centroid[0] + r0, q.centroid[1] + c0, q.equivalent_diameter_area) for q in split)
            continue
        for radius in (2, 3, 4):  # cut thin bridges (surface line, nozzle, a touching neighbour)
            pad = radius + 1
            opened = ndimage.binary_opening(np.pad(region, pad), morphology.disk(radius))[pad:-pad, pad:-pad]
            parts = [q for q in measure.regionprops(measure.label(opened)) if _round(q, cfg, max_px, min_px)]
            if parts:
                found.extend((q.centroid[0] + r0, q.centroid[1] + c0, q.equivalent_diameter_area) for q in parts)
                break
    return np.array(found, dtype=np.float64).reshape(-1, 3)


def truth_bubbles(
    table: np.ndarray, frame: int, height: int, width: int, cfg: DetectorConfig = DetectorConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """The true bubbles of one frame (a store's truth table) as detect() rows in pixels of an (height, width)
    frame: (those a detector must find: diameter >= min_diameter_px, inside the roi, not merging; the rest inside
    the roi, which a detector may find or not without penalty, like a crowd region in object-detection benchmarks)."""
    col = {name: i for i, name in enumerate(TRUTH_COLUMNS)}
    rows = table[table[:, col["frame"]] == frame]
    y, x, d = rows[:, col["y"]] * height, rows[:, col["x"]] * width, 2 * rows[:, col["r"]] * height
    inside = (y >= cfg.roi_top * height) & (y < cfg.roi_bottom * height)
    keep = inside & (d >= cfg.min_diameter_px) & (rows[:, col["state"]] != MERGING_STATE)
    table_px = np.stack([y, x, d], axis=1).astype(np.float64)
    return table_px[keep], table_px[inside & ~keep]


def match_radius(height: int) -> float:
    """How far (px) a predicted bubble's centroid may be from its target's to count as the same bubble."""
    return max(MATCH_RADIUS * height, MATCH_RADIUS_MIN_PX)


def match(pred: np.ndarray, target: np.ndarray, radius: float) -> list[tuple[int, int]]:
    """Hungarian matching of detect() rows on centroid distance; only pairs within `radius` px are kept."""
    if len(pred) == 0 or len(target) == 0:
        return []
    dist = np.hypot(pred[:, None, 0] - target[None, :, 0], pred[:, None, 1] - target[None, :, 1])
    rows, cols = linear_sum_assignment(np.where(dist <= radius, dist, 1e6))
    return [(int(i), int(j)) for i, j in zip(rows, cols) if dist[i, j] <= radius]


class BubbleMeter:
    """Bubble counts and errors pooled over windows, one slot per lead time."""

    def __init__(self, leads: int) -> None:
        self.sums = np.zeros((leads, 7))  # tp, fp, fn, |count error|, diam err, centroid err, frames

    def add_frame(
        self, lead: int, pred: np.ndarray, target: np.ndarray, height: int, ignore: np.ndarray | None = None
    ) -> None:
        """pred / target: detect() rows of one predicted frame and its target frame (lead 0-based); an unmatched
        prediction that matches an `ignore` row is no false positive."""
        radius = match_radius(height)
        pairs = match(pred, target, radius)
        extra = 0
        if ignore is not None and len(ignore):
            rest = np.delete(pred, [i for i, _ in pairs], axis=0)
            extra = len(match(rest, ignore, radius))
        s = self.sums[lead]
        s[0] += len(pairs)
        s[1] += len(pred) - len(pairs) - extra
        s[2] += len(target) - len(pairs)
        s[3] += abs(len(pred) - len(target))
        for i, j in pairs:
            s[4] += abs(pred[i, 2] - target[j, 2])
            s[5] += float(np.hypot(*(pred[i, :2] - target[j, :2])))
        s[6] += 1

    def add(
        self,
        pred: np.ndarray,
        target: np.ndarray,
        cfg: DetectorConfig | list[DetectorConfig] = DetectorConfig(),
        cache: dict[tuple[int, int], np.ndarray] | None = None,
        keys: list[int] | None = None,
    ) -> None:
        """pred, target: (N, M, H, W) batches; cfg: one detector config, or one per window. With `cache` and the
        windows' `keys`, the targets' detections are computed once and reused (validation sees the same target
        windows every epoch). The sharpness ratio is a pixel metric (bubbles.evaluation.metrics), not counted here."""
        n, m, h = pred.shape[0], pred.shape[1], pred.shape[2]
        for w in range(n):
            c = cfg[w] if isinstance(cfg, list) else cfg
            for k in range(m):
                key = (keys[w], k) if keys is not None else None
                if cache is not None and key in cache:
                    found = cache[key]
                else:
                    found = detect(target[w, k], c)
                    if cache is not None and key is not None:
                        cache[key] = found
                self.add_frame(k, detect(pred[w, k], c), found, h)

    def f1(self) -> float:
        """Bubble F1 over every frame and lead the meter saw, from the summed matches: 2·TP / (2·TP + FP + FN).
        NaN when no frame had a bubble, predicted or true (nothing to score)."""
        tp, fp, fn = self.sums[:, :3].sum(axis=0)
        return float(2 * tp / (2 * tp + fp + fn)) if 2 * tp + fp + fn > 0 else float("nan")

    def leads(self, height: int) -> dict[str, tuple[float, ...]]:
        """Per lead, over all the frames at that lead (TP, FP, FN summed first, so a frame with no target bubble
        counts only its false alarms): bubble_precision (0 when nothing was predicted but the targets have
        bubbles: a blurred forecast that finds nothing is not precise), bubble_recall, bubble_f1 (NaN where no
        frame had a bubble, predicted or true), bubble_count_error (mean |predicted − target count| per frame),
        bubble_diameter_error_px and _pct (% of frame height) and bubble_centroid_error_px over matched pairs (NaN
        where nothing matched)."""
        tp, fp, fn, cnt, diam, cen, frames = self.sums.T
        matched = np.where(tp > 0, tp, np.nan)
        nan = np.full_like(tp, np.nan)

        def ratio(num: np.ndarray, den: np.ndarray, empty: np.ndarray) -> np.ndarray:
            return np.where(den > 0, num / np.maximum(den, 1), empty)

        out = {
            "bubble_precision": ratio(tp, tp + fp, np.where(tp + fn > 0, 0.0, nan)),
            "bubble_recall": ratio(tp, tp + fn, nan),
            "bubble_f1": ratio(2 * tp, 2 * tp + fp + fn, nan),
            "bubble_count_error": cnt / np.maximum(frames, 1),
            "bubble_diameter_error_px": diam / matched,
            "bubble_diameter_error_pct": 100 * diam / matched / height,
            "bubble_centroid_error_px": cen / matched,
        }
        return {k: tuple(float(x) for x in v) for k, v in out.items()}
