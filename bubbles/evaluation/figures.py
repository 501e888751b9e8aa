"""Pictures: prediction strips (rows input / target / output / |error|, and the predicted motion of a model that
moves its frames), as the user's own figures show them, and bubble strips (target and prediction with the detected
bubbles outlined)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage.color import hsv2rgb

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


def motion_colours(motion: np.ndarray, largest: float) -> np.ndarray:
    """Motion fields (..., 2, H, W) in pixels per frame (x right, y down) -> RGB (..., H, W, 3) in [0, 1] on the
    optical-flow colour wheel (Baker et al., Middlebury): the hue is the direction a pixel moves, the saturation
    its speed relative to `largest`; white is at rest."""
    u, v = np.moveaxis(motion, -3, 0)
    hue = (np.arctan2(-v, -u) / (2 * np.pi) + 0.5) % 1.0  # right red, down yellow-green, left cyan, up violet
    sat = np.clip(np.hypot(u, v) / max(largest, 1e-6), 0, 1)
    return hsv2rgb(np.stack([hue, sat, np.ones_like(hue)], axis=-1))


def _wheel(size: int) -> np.ndarray:
    """The colour key: a disc of the wheel (RGB, white outside), speed 0 at the centre to `largest` at the rim."""
    r = (np.arange(size) - (size - 1) / 2) / ((size - 1) / 2)
    x, y = np.meshgrid(r, r)
    disc = motion_colours(np.stack([x, y]), 1.0)
    disc[np.hypot(x, y) > 1] = 1.0
    return disc


def _motion_row(motion: np.ndarray, columns: int, scale: int, largest: float) -> np.ndarray:
    """RGB tiles of the motion fields (M, 2, H, W), laid out like _tile's rows."""
    h, w = motion.shape[-2:]
    row = np.ones((h * scale, columns * (w * scale + 2), 3), np.float32)
    for k, colours in enumerate(motion_colours(motion[:columns], largest)):
        row[:, k * (w * scale + 2) : k * (w * scale + 2) + w * scale] = np.kron(colours, np.ones((scale, scale, 1)))
    return row


def _arrows(draw: ImageDraw.ImageDraw, motion: np.ndarray, x0: int, y0: int, scale: int, gain: float) -> None:
    """Sparse arrows over one motion tile (2, H, W): from a pixel's centre towards where it moves, gain x longer."""
    h, w = motion.shape[-2:]
    step = max(4, min(h, w) // 6)
    for r in range(step // 2, h, step):
        for c in range(step // 2, w, step):
            u, v = motion[0, r, c], motion[1, r, c]
            if np.hypot(u, v) * gain * scale < 2:
                continue  # shorter than two screen pixels: the colour says it
            ax, ay = x0 + (c + 0.5) * scale, y0 + (r + 0.5) * scale
            bx, by = ax + u * gain * scale, ay + v * gain * scale
            draw.line((ax, ay, bx, by), fill=(0, 0, 0), width=1)
            draw.ellipse((bx - 1.5, by - 1.5, bx + 1.5, by + 1.5), fill=(0, 0, 0))  # the head: where it goes


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


def prediction_strip(inputs: np.ndarray, target: np.ndarray, output: np.ndarray, motion: np.ndarray | None = None,
                     mask: bool = False) -> Image.Image:
    """inputs (T, H, W), target and output (M, H, W), floats in [0, 1] -> a labelled RGB image (gray content); with
    the predicted motion (M, 2, H, W, pixels per frame) a fifth row: each lead's motion on the colour wheel (key at
    the left, saturated at the largest speed shown) with sparse arrows towards where pixels move.

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
    image = _stack(rows, {0: past, 1: _leads(min(columns, len(target)))}, inputs.shape[-1], scale)
    if mask:
        image = _with_outlines(image, target[:columns], output[:columns], columns, scale, 4)
    if motion is None:
        return image
    return _with_motion(image, motion[:columns], columns, scale, 4)


TARGET_OUTLINE, OUTPUT_OUTLINE = (40, 170, 60), (220, 40, 40)


def _outline(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a boolean mask (inside pixels with a 4-neighbour outside)."""
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def _with_outlines(image: Image.Image, target: np.ndarray, output: np.ndarray, columns: int, scale: int, gap: int) -> Image.Image:
    """The strip with a row below it for masks: each lead's target, its vapour (> 0.5) outlined in green and the
    prediction's in red, drawn at screen resolution so a one-pixel bubble still shows."""
    h, w = target.shape[-2:]
    tile = np.ones((h * scale, columns * (w * scale + 2), 3), np.float32)
    for k in range(min(columns, len(target))):
        big_t = np.kron(target[k], np.ones((scale, scale), np.float32))
        big_o = np.kron(output[k], np.ones((scale, scale), np.float32))
        rgb = np.repeat((0.35 + 0.4 * big_t)[..., None], 3, axis=-1)  # vapour light grey, liquid dark: outlines show
        rgb[_outline(big_t > 0.5)] = np.array(TARGET_OUTLINE) / 255
        rgb[_outline(big_o > 0.5)] = np.array(OUTPUT_OUTLINE) / 255
        tile[:, k * (w * scale + 2) : k * (w * scale + 2) + w * scale] = rgb
    canvas = np.ones((image.height + gap + tile.shape[0], image.width, 3), np.float32)
    canvas[: image.height] = np.asarray(image.convert("RGB"), np.float32) / 255
    canvas[image.height + gap :, LABEL_WIDTH : LABEL_WIDTH + tile.shape[1]] = tile
    out = Image.fromarray(np.clip(np.rint(canvas * 255), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    top = image.height + gap + tile.shape[0] // 2 - 14
    draw.text((4, top), "outlines", fill=(0, 0, 0))
    draw.text((4, top + 12), "target", fill=TARGET_OUTLINE)
    draw.text((4, top + 24), "output", fill=OUTPUT_OUTLINE)
    return out




def _with_motion(image: Image.Image, motion: np.ndarray, columns: int, scale: int, gap: int) -> Image.Image:
    """The strip with a motion row below it (see prediction_strip)."""
    largest = float(np.hypot(motion[:, 0], motion[:, 1]).max())
    tile = _motion_row(motion, columns, scale, largest)
    key = max(16, min(LABEL_WIDTH - 8, tile.shape[0] - 22))
    canvas = np.ones((image.height + gap + max(tile.shape[0], key + 22), image.width, 3), np.float32)
    canvas[: image.height] = np.asarray(image.convert("RGB"), np.float32) / 255
    top = image.height + gap
    canvas[top : top + tile.shape[0], LABEL_WIDTH : LABEL_WIDTH + tile.shape[1]] = tile
    canvas[top + 12 : top + 12 + key, 4 : 4 + key] = _wheel(key)
    out = Image.fromarray(np.clip(np.rint(canvas * 255), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    h, w = motion.shape[-2:]
    step = max(4, min(h, w) // 6)
    gain = 0.8 * step / largest if largest > 0 else 1.0  # the fastest arrow spans most of the gap between arrows
    for k in range(len(motion)):
        _arrows(draw, motion[k], LABEL_WIDTH + k * (w * scale + 2), top, scale, gain)
    draw.text((4, top), "motion", fill=(0, 0, 0))
    draw.text((4, top + 14 + key), f"{largest:.2g} px", fill=(0, 0, 0))
    return out


def save_strip(path: Path, inputs: np.ndarray, target: np.ndarray, output: np.ndarray, motion: np.ndarray | None = None,
               mask: bool = False) -> Path:
    """Write a prediction strip PNG (atomically) and return its path; `mask`: with the outlines row (masks)."""
    tmp = path.with_suffix(".tmp.png")
    prediction_strip(inputs, target, output, motion, mask).save(tmp)
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
