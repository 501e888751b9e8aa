"""Initial-condition values given as text (`--condition KEY=VALUE`): typed once, and text that should have been a number."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from bubbles.errors import UserError

ConditionValue = str | float | int | bool
_BOOLS = {"true": True, "false": False}


def parse_value(text: str) -> ConditionValue:
    """'3' -> 3, '0.5' / '1e-3' -> float, 'true' / 'false' (any case) -> bool, anything else stays text.
    Numbers are typed so that one condition has one id however it was written (0.5 and '0.5' would differ)."""
    for cast in (int, float):
        try:
            value = cast(text)
        except ValueError:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("the value must be finite")  # NaN / Infinity are not JSON
        return value
    return _BOOLS.get(text.lower(), text)


def parse_conditions(pairs: Iterable[str], option: str = "--condition") -> dict[str, ConditionValue]:
    """KEY=VALUE texts to a typed condition; a malformed pair, a key given twice or a non-finite number is one
    UserError line naming the pair."""
    out: dict[str, ConditionValue] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key or not text:
            raise UserError(f"{option} {pair!r}: expected key=value")
        if key in out:
            raise UserError(f"{option} {key!r}: given twice")
        try:
            out[key] = parse_value(text)
        except ValueError as exc:
            raise UserError(f"{option} {pair!r}: {exc}") from None
    return out


def text_numbers(condition: Mapping[str, object]) -> dict[str, str]:
    """Values stored as text that read as numbers or booleans: what an ingest before typed conditions wrote for
    `--condition gas_flow=0.5` ('0.5'). Their condition id differs from the same value ingested now."""
    found = {}
    for key, value in condition.items():
        if isinstance(value, str):
            try:
                typed = parse_value(value)
            except ValueError:
                continue
            if not isinstance(typed, str):
                found[key] = value
    return found
