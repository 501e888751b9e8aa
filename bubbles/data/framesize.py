"""Frame sizes: the user's image size (a short side, aspect kept, or an exact HxW) and its resolution to the (H, W)
of a store's windows."""

from __future__ import annotations

from bubbles.data.store import FrameStore
from bubbles.errors import UserError

MIN_IMAGE_SIDE = 16
ImageSize = int | tuple[int, int]  # the short side (aspect kept) or an exact (H, W)
FrameSize = tuple[int, int]


def parse_image_size(value: object, where: str = "image_size") -> ImageSize:
    """64 (short side, aspect kept) or '96x256' / [96, 256] (exact H x W, stretching when the aspect differs)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        text = value.strip().lower()
        parts = text.split("x")
        if text.isdigit():
            value = int(text)
        elif len(parts) == 2 and all(p.strip().isdigit() for p in parts):
            value = (int(parts[0]), int(parts[1]))
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        value = (int(value[0]), int(value[1]))
    if isinstance(value, bool) or not isinstance(value, (int, tuple)):
        raise UserError(f"{where}: expected the short side (64) or HxW ('96x256'), got {value!r}")
    if min(value if isinstance(value, tuple) else (value,)) < MIN_IMAGE_SIDE:
        raise UserError(f"{where}: every side must be >= {MIN_IMAGE_SIDE}, got {format_image_size(value)}")
    return value


def format_image_size(size: ImageSize) -> int | str:
    """The flat form: 64 or '96x256' (what YAML, --set, MLflow and config.json hold)."""
    return size if isinstance(size, int) else f"{size[0]}x{size[1]}"


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def scaled_frame_size(native: FrameSize, short_side: int, multiple: int = 1) -> FrameSize:
    """A frame of `native` size at short side `short_side`, aspect kept, both sides rounded to `multiple`."""
    h, w = native
    scale = short_side / min(h, w)
    return _round_to(h * scale, multiple), _round_to(w * scale, multiple)


def frame_size(store: FrameStore, size: ImageSize, multiple: int = 1) -> FrameSize:
    """The (H, W) every window has: an exact HxW as given; a short side S scales each sequence's native frames so
    the short side is S and the aspect is kept, both sides rounded to a multiple of `multiple` (what the model
    needs). Sequences whose aspect ratios give different sizes need an explicit HxW."""
    if isinstance(size, tuple):
        if size[0] % multiple or size[1] % multiple:
            raise UserError(f"image_size {format_image_size(size)}: the model needs both sides divisible by {multiple}")
        return size
    sizes: dict[FrameSize, list[str]] = {}
    for name, info in sorted(store.sequences.items()):
        h, w = info.native_size
        rounded = scaled_frame_size((h, w), size, multiple)
        if multiple > 1 and (rounded[0] > h or rounded[1] > w):
            raise UserError(f"{store.path}/{name}: image_size {size} rounds to {rounded[0]}x{rounded[1]} so that both sides "
                            f"divide by {multiple} (the model's patch or down-sampling), larger than the native {h}x{w}; "
                            f"choose a patch that divides the frame, or a smaller image_size")
        sizes.setdefault(rounded, []).append(name)
    if len(sizes) > 1:
        listed = "; ".join(f"{format_image_size(s)} ({', '.join(n[:3])}{', ...' if len(n) > 3 else ''})" for s, n in sizes.items())
        raise UserError(f"{store.path}: image_size {size} gives different frame sizes per sequence ({listed}); give image_size as HxW")
    if not sizes:
        raise UserError(f"{store.path}: the store holds no sequences")
    return next(iter(sizes))
