"""Splitting touching bubbles: one place for the detector (bubbles.evaluation.bubbles) and the calibration
(bubbles.data.calibrate), so a "bubble" is cut the same way in both."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import measure, morphology

SPLIT_H = 0.3  # a distance maximum is a bubble's own core when it stands this share of the largest distance out


def split_touching(region: np.ndarray) -> np.ndarray:
    """Labels (0 outside) of the bubbles of one boolean component: a distance-transform watershed between the cores
    that stand out by more than SPLIT_H of its largest distance to the outside (one label when there is one core).
    The distance is smoothed by a 1 px Gaussian: on a pixel staircase (a tilted ellipse) the raw ridge has spurious
    maxima. Two discs joined by a neck: two labels; an ellipse at any tilt, a leaning or tall plume: one."""
    from skimage.segmentation import watershed

    dist = ndimage.gaussian_filter(ndimage.distance_transform_edt(np.pad(region, 2)), 1.0)[2:-2, 2:-2]
    top = float(dist.max())
    if top < 2:  # a sliver: nothing to split
        return region.astype(np.int32)
    cores = measure.label(morphology.h_maxima(dist, max(1.0, SPLIT_H * top)) & region)
    if cores.max() <= 1:
        return region.astype(np.int32)
    return watershed(-dist, cores, mask=region).astype(np.int32)
