"""The `evaluate:` section of a space file as written (the schema: study.yardstick's docstring), checked in one
line per mistake. Apart from the yardstick so that reading a space never imports what scores it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bubbles.data.framesize import ImageSize, parse_image_size
from bubbles.errors import UserError
from bubbles.evaluation.baselines import BASELINES

KEYS = ("leads", "size", "stride", "windows", "epoch_windows", "test_top_k", "baselines")


@dataclass(frozen=True)
class EvaluateSettings:
    """The `evaluate:` section as written; None: derived from the search space (see protocol_of)."""

    leads: tuple[int, ...] | None = None
    size: ImageSize | str | None = None
    stride: int | None = None
    windows: int = 64
    epoch_windows: int = 8
    test_top_k: int = 3
    baselines: tuple[str, ...] = BASELINES


def parse_evaluate(where: str, raw: dict[str, Any]) -> EvaluateSettings:
    """Validate the section; every mistake is one line naming the key."""
    for key in raw:
        if key not in KEYS:
            raise UserError(f"{where}.{key}: unknown key (use {', '.join(KEYS)})")

    def count(key: str, default: int, low: int) -> int:
        v = raw.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise UserError(f"{where}.{key}: expected an integer >= {low}, got {v!r}")
        return v

    leads = raw.get("leads")
    if leads is not None:
        items = list(range(1, leads + 1)) if isinstance(leads, int) and not isinstance(leads, bool) else leads
        if not isinstance(items, list) or not items or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in items):
            raise UserError(f"{where}.leads: expected a number of leads >= 1 or a list of lead times >= 1, got {leads!r}")
        leads = tuple(sorted(set(items)))
    size = raw.get("size")
    if size is not None and size != "native":
        size = parse_image_size(size, f"{where}.size")
    names = raw.get("baselines", list(BASELINES))
    if not isinstance(names, list) or not names or any(b not in BASELINES for b in names):
        raise UserError(f"{where}.baselines: expected a list of {', '.join(BASELINES)}, got {names!r}")
    return EvaluateSettings(leads, size, count("stride", 1, 1) if "stride" in raw else None, count("windows", 64, 0),
                            count("epoch_windows", 8, 1), count("test_top_k", 3, 0), tuple(names))
