"""Flat parameters declared on config dataclasses: `param(...)` fields carry their flat name, help and valid range.

A user writes flat names (`lr`, `st_hidden`, `split_seed`) in trial files, `--set` and search spaces. Each one is a
field of the frozen dataclass of the module that reads it, declared with `param(default, "flat_name", "help", ...)`;
the default lives there and nowhere else. `parse_section(cls, where, values)` turns flat values into that
dataclass's keyword arguments, checking types and ranges with one-line errors naming `where` and the key;
`flat_values(obj)` goes the other way (what checkpoints and MLflow record).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from bubbles.errors import UserError

MAX_SEED = 2**32 - 1  # numpy and torch both take seeds this large on every platform
Parser = Callable[[str, str, Any], Any]  # (where, flat name, raw value) -> parsed value


@dataclass(frozen=True)
class Spec:
    """What a field's metadata says about its flat parameter. low/high bound numbers (floats default to >= 0);
    odd: an odd kernel size; parse / show: custom conversion from and to the flat value (a list, a 'HxW' text)."""

    name: str
    help: str
    low: float | None = None
    high: float | None = None
    odd: bool = False
    choices: tuple[Any, ...] = ()
    parse: Parser | None = None
    show: Callable[[Any], Any] | None = None


def param(default: Any, name: str, help: str, *, low: float | None = None, high: float | None = None, odd: bool = False,
          choices: tuple[Any, ...] = (), parse: Parser | None = None, show: Callable[[Any], Any] | None = None) -> Any:
    """A dataclass field that is also the flat parameter `name` (see Spec). Choices default to the field's Literal."""
    spec = Spec(name, help, low, high, odd, tuple(choices), parse, show)
    return dataclasses.field(default=default, metadata={"param": spec})


def fail(where: str, key: str, problem: str) -> UserError:
    """The one-line error every parameter check raises: 'where: key: problem'."""
    return UserError(f"{where}: {key}: {problem}")


def parse_int(where: str, key: str, value: Any, low: float | None = None, high: float | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise fail(where, key, f"expected an integer, got {value!r}")
    if low is not None and value < low:
        raise fail(where, key, f"must be >= {_number(low)}, got {value}")
    if high is not None and value > high:
        raise fail(where, key, f"must be <= {_number(high)}, got {value}")
    return value


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def parse_float(where: str, key: str, value: Any, low: float | None = 0.0, high: float | None = None) -> float:
    low = 0.0 if low is None else low
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(where, key, f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise fail(where, key, f"expected a finite number, got {value}")
    if value < low or (high is not None and value > high):
        raise fail(where, key, f"must be in [{low}, {high if high is not None else 'inf'}], got {value}")
    return float(value)


def parse_choice(where: str, key: str, value: Any, choices: tuple[Any, ...]) -> Any:
    if value not in choices:
        raise fail(where, key, f"expected one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def parse_bool(where: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise fail(where, key, f"expected true or false, got {value!r}")
    return value


def parse_odd(where: str, key: str, value: Any, low: float | None = 1, high: float | None = None) -> int:
    kernel = parse_int(where, key, value, 1 if low is None else low, high)
    if kernel % 2 == 0:
        raise fail(where, key, f"must be odd (same padding), got {kernel}")
    return kernel


def parse_strings(where: str, key: str, value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, (str, int, float)) for v in items):
        raise fail(where, key, f"expected a list of names, got {value!r}")
    return tuple(str(v) for v in items)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def params_of(cls: type) -> list[tuple[dataclasses.Field, Spec]]:
    """The fields of a dataclass that are flat parameters, in declaration order."""
    return [(f, f.metadata["param"]) for f in dataclasses.fields(cls) if "param" in f.metadata]


def _literal(tp: Any) -> tuple[Any, ...]:
    """The values of a Literal (or of a union of Literals)."""
    if get_origin(tp) is Literal:
        return get_args(tp)
    if get_origin(tp) in (Union, types.UnionType):
        return tuple(v for arg in get_args(tp) for v in _literal(arg))
    return ()


def choices_of(cls: type, f: dataclasses.Field) -> tuple[Any, ...]:
    spec: Spec = f.metadata["param"]
    return spec.choices or _literal(_hints(cls)[f.name])


def parse_field(cls: type, f: dataclasses.Field, where: str, value: Any) -> Any:
    """One flat value checked against its field's type and Spec."""
    spec: Spec = f.metadata["param"]
    if spec.parse is not None:
        return spec.parse(where, spec.name, value)
    tp = _hints(cls)[f.name]
    choices = choices_of(cls, f)
    if choices:
        return parse_choice(where, spec.name, value, choices)
    if tp is bool:
        return parse_bool(where, spec.name, value)
    if tp is int:
        return (parse_odd if spec.odd else parse_int)(where, spec.name, value, spec.low, spec.high)
    if tp is float:
        return parse_float(where, spec.name, value, spec.low, spec.high)
    if tp is str:
        if not isinstance(value, str) or not value:
            raise fail(where, spec.name, f"expected a text, got {value!r}")
        return value
    if tp == tuple[str, ...]:
        return parse_strings(where, spec.name, value)
    raise TypeError(f"{cls.__name__}.{f.name}: give param(..., parse=...) for a field of type {tp}")


def parse_section(cls: type, where: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of `cls` from flat values; a flat name not in `values` keeps the field's default."""
    return {f.name: parse_field(cls, f, where, values[spec.name]) for f, spec in params_of(cls) if spec.name in values}


def defaults_of(cls: type) -> dict[str, Any]:
    """Flat name -> default value (as a flat value) of a dataclass's parameters."""
    return {spec.name: _show(spec, f.default) for f, spec in params_of(cls)}


def _show(spec: Spec, value: Any) -> Any:
    if spec.show is not None:
        return spec.show(value)
    return list(value) if isinstance(value, tuple) else value


def flat_values(obj: Any) -> dict[str, Any]:
    """Flat name -> value of a config dataclass instance (tuples as lists): what parse_section reads back."""
    return {spec.name: _show(spec, getattr(obj, f.name)) for f, spec in params_of(type(obj))}
