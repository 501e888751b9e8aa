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


HEADER = 14  # a band of column labels above a row: the frame's time (t = the last input frame)


def _stack(rows: list[tuple[str, np.ndarray]], headers: dict[int, list[str]], frame_w: int, scale: int) -> Image.Image:
    """Rows of tiles with their row labels at the left and, above the rows named in `headers`, a label per column."""
    gap = 4
    height = sum(t.shape[0] for _, t in rows) + gap * (len(rows) - 1) + HEADER * len(headers)
    canvas = np.ones((height, LABEL_WIDTH + rows[0][1].shape[1]), np.float32)
    places, y = [], 0
    for k, (_, tile) in enumerate(rows):
        y += HEADER if k in headers else 0
        canvas[y : y + tile.shape[0], LABEL_WIDTH:] = tile
        places.append(y)
        y += tile.shape[0] + gap
    image = Image.fromarray(np.clip(np.rint(canvas * 255), 0, 255).astype(np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for k, ((label, tile), top) in enumerate(zip(rows, places)):
        draw.text((4, top + tile.shape[0] // 2 - 6), label, fill=(0, 0, 0))
        for c, text in enumerate(headers.get(k, [])):
            draw.text((LABEL_WIDTH + c * (frame_w * scale + 2) + 2, top - HEADER + 1), text, fill=(90, 90, 90))
    return image


def _leads(n: int) -> list[str]:
    return [f"t+{k}" for k in range(1, n + 1)]


def prediction_strip(inputs: np.ndarray, target: np.ndarray, output: np.ndarray) -> Image.Image:
    """inputs (T, H, W), target and output (M, H, W), floats in [0, 1] -> a labelled RGB image (gray content).

    The input row shows the last frames of the context (t-k … t), the others lead times t+1 … (at most 10 columns),
    each column labelled with its time. |error| is scaled so that 0.5 is black (errors are rarely larger).
    """
    scale = max(1, 96 // min(inputs.shape[-2:]))
    columns = min(MAX_COLUMNS, max(len(target), min(len(inputs), MAX_COLUMNS)))
    shown = inputs[-columns:]
    rows = [
        ("input", _tile(shown, columns, scale)),
        ("target", _tile(target, columns, scale)),
        ("output", _tile(output, columns, scale)),
        ("|error|", _tile(1.0 - np.clip(np.abs(output - target) * 2, 0, 1), columns, scale)),
    ]
    past = [f"t-{len(shown) - 1 - k}" if k < len(shown) - 1 else "t" for k in range(len(shown))]
    return _stack(rows, {0: past, 1: _leads(min(columns, len(target)))}, inputs.shape[-1], scale)


def save_strip(path: Path, inputs: np.ndarray, target: np.ndarray, output: np.ndarray) -> Path:
    """Write a prediction strip PNG (atomically) and return its path."""
    tmp = path.with_suffix(".tmp.png")
    prediction_strip(inputs, target, output).save(tmp)
    tmp.replace(path)
    return path


MATCHED, UNMATCHED = (40, 170, 60), (220, 40, 40)


def bubble_strip(target: np.ndarray, output: np.ndarray, detector: DetectorConfig = DetectorConfig()) -> Image.Image:
    """target and output (M, H, W) floats in [0, 1] -> RGB rows target / output, each detected bubble outlined by
    its equivalent-diameter circle: green where it is matched across the two rows, red where it is not (a missed
    bubble on the target row, a spurious one on the output row)."""
    size = target.shape[-1]
    scale = max(1, 160 // size)
    columns = min(MAX_COLUMNS, len(target))
    rows = [("target", _tile(target, columns, scale)), ("output", _tile(output, columns, scale))]
    image = _stack(rows, {0: _leads(columns)}, target.shape[2], scale)
    draw = ImageDraw.Draw(image)
    row_height = rows[0][1].shape[0] + 4
    for k in range(columns):
        found = [detect(target[k], detector), detect(output[k], detector)]
        pairs = match(found[1], found[0], match_radius(target.shape[1]))
        matched = [{j for _, j in pairs}, {i for i, _ in pairs}]
        for row in (0, 1):
            x0, y0 = LABEL_WIDTH + k * (target.shape[2] * scale + 2), HEADER + row * row_height
            for b, (r, c, d) in enumerate(found[row]):
                cx, cy, rad = x0 + (c + 0.5) * scale, y0 + (r + 0.5) * scale, d / 2 * scale
                draw.ellipse((cx - rad, cy - rad, cx + rad, cy + rad), outline=MATCHED if b in matched[row] else UNMATCHED, width=2)
    return image
