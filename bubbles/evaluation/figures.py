"""Pictures: prediction strips (rows input / target / output / |error|), as the user's own figures show them, and
bubble strips (target and prediction with the detected bubbles outlined)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bubbles.evaluation.bubbles import DetectorConfig, detect, match, match_radius

MAX_COLUMNS = 10
LABEL_WIDTH = 56


def _tile(frames: np.ndarray, columns: int, scale: int) -> np.ndarray:
    """One row of up to `columns` frames (float [0, 1]), scaled up by `scale`, padded with white."""
    h, w = frames.shape[1:]
    row = np.ones((h * scale, columns * (w * scale + 2)), np.float32)
    for k, f in enumerate(frames[:columns]):
        big = np.kron(f, np.ones((scale, scale), np.float32))
        row[:, k * (w * scale + 2) : k * (w * scale + 2) + w * scale] = big
    return row


def prediction_strip(inputs: np.ndarray, target: np.ndarray, output: np.ndarray) -> Image.Image:
    """inputs (T, H, W), target and output (M, H, W), floats in [0, 1] -> a labelled grayscale image.

    The input row shows the last frames of the context; the others show lead times 1.. (at most 10 columns).
    |error| is scaled so that 0.5 is black (errors are rarely larger).
    """
    scale = max(1, 96 // min(inputs.shape[-2:]))
    columns = min(MAX_COLUMNS, max(len(target), min(len(inputs), MAX_COLUMNS)))
    rows = [
        ("input", inputs[-columns:]),
        ("target", target),
        ("output", output),
        ("|error|", 1.0 - np.clip(np.abs(output - target) * 2, 0, 1)),
    ]
    tiles = [_tile(frames, columns, scale) for _, frames in rows]
    gap = 4
    height = sum(t.shape[0] for t in tiles) + gap * (len(tiles) - 1)
    canvas = np.ones((height, LABEL_WIDTH + tiles[0].shape[1]), np.float32)
    y = 0
    for tile in tiles:
        canvas[y : y + tile.shape[0], LABEL_WIDTH:] = tile
        y += tile.shape[0] + gap
    image = Image.fromarray(np.clip(np.rint(canvas * 255), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    y = 0
    for (label, _), tile in zip(rows, tiles):
        draw.text((4, y + tile.shape[0] // 2 - 6), label, fill=0)
        y += tile.shape[0] + gap
    return image


def save_strip(path: Path, inputs: np.ndarray, target: np.ndarray, output: np.ndarray) -> Path:
    """Write a prediction strip PNG (atomically) and return its path."""
    tmp = path.with_suffix(".tmp.png")
    prediction_strip(inputs, target, output).save(tmp)
    tmp.replace(path)
    return path


MATCHED, UNMATCHED = (40, 170, 60), (220, 40, 40)
BUBBLE_ROW_PX = 240
BUBBLE_TILE_MAX_W = 1200


def bubble_strip(target: np.ndarray, output: np.ndarray, detector: DetectorConfig = DetectorConfig()) -> Image.Image:
    """target and output (M, H, W) floats in [0, 1] -> RGB rows target / output, each detected bubble outlined by
    its equivalent-diameter circle: green where it is matched across the two rows, red where it is not (a missed
    bubble on the target row, a spurious one on the output row)."""
    h, w = target.shape[-2:]
    # Big enough to check by eye: frames at least BUBBLE_ROW_PX high (a 48 px high channel was drawn 48 px high,
    # its bubbles a few pixels), a wide frame's tile at most BUBBLE_TILE_MAX_W wide.
    scale = max(1, min(-(-BUBBLE_ROW_PX // h), BUBBLE_TILE_MAX_W // w))
    columns = min(MAX_COLUMNS, len(target))
    tiles = [_tile(frames, columns, scale) for frames in (target, output)]
    gap = 4
    canvas = np.ones((2 * tiles[0].shape[0] + gap, LABEL_WIDTH + tiles[0].shape[1]), np.float32)
    canvas[: tiles[0].shape[0], LABEL_WIDTH:] = tiles[0]
    canvas[tiles[0].shape[0] + gap :, LABEL_WIDTH:] = tiles[1]
    image = Image.fromarray(np.clip(np.rint(canvas * 255), 0, 255).astype(np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(image)
    row_height = tiles[0].shape[0] + gap
    for k in range(columns):
        found = [detect(target[k], detector), detect(output[k], detector)]
        pairs = match(found[1], found[0], match_radius(target.shape[1]))
        matched = [{j for _, j in pairs}, {i for i, _ in pairs}]
        for row in (0, 1):
            x0, y0 = LABEL_WIDTH + k * (target.shape[2] * scale + 2), row * row_height
            for b, (r, c, d) in enumerate(found[row]):
                cx, cy, rad = x0 + (c + 0.5) * scale, y0 + (r + 0.5) * scale, d / 2 * scale
                draw.ellipse((cx - rad, cy - rad, cx + rad, cy + rad), outline=MATCHED if b in matched[row] else UNMATCHED, width=2)
    for row, label in enumerate(("target", "output")):
        draw.text((4, row * row_height + tiles[0].shape[0] // 2 - 6), label, fill=(0, 0, 0))
    return image
