"""Conditional dimensions of a search space: the `when` rules, the model-family rules, and the define-by-run walk.

A dimension with `when: {model: [simvp]}` is sampled only in trials whose `model` is simvp. With `model` searched,
every family's own parameter (FAMILY_PARAMETERS) must be conditional on it, so that no trial is handed a name its
family does not read; everything here is checked when the file is loaded, one line per mistake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bubbles.config import FAMILY_PARAMETERS, PARAMETERS
from bubbles.errors import UserError
from bubbles.models import MODELS

Kind = Literal["int", "float", "log", "categorical"]


@dataclass(frozen=True)
class Dimension:
    """One searched parameter. `when` makes it conditional: sampled only if those parameters have those values."""

    name: str
    kind: Kind
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] = ()
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def suggest(self, trial: Any) -> Any:
        """Ask an Optuna trial (or Ray's captor of one) for a value."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1))  # type: ignore[arg-type]
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.kind == "log")

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return self.low <= value <= self.high  # type: ignore[operator]

    def corners(self) -> list[Any]:
        """The values that bound what a trial can get (every choice, or both ends of a range)."""
        if self.kind == "categorical":
            return list(self.choices)
        return [int(self.low) if self.kind == "int" else self.low, int(self.high) if self.kind == "int" else self.high]  # type: ignore[arg-type]


def holds(dim: Dimension, chosen: Mapping[str, Any]) -> bool:
    """Whether `dim` is sampled, given the values chosen so far (fixed ones and earlier dimensions)."""
    return all(chosen.get(key, _ABSENT) in values for key, values in dim.when)


_ABSENT = object()  # a condition on a dimension that was itself not sampled never holds


def walk(base: Mapping[str, Any], dims: Sequence[Dimension], pick: Callable[[Dimension], Any]) -> dict[str, Any]:
    """Define-by-run: every dimension in file order whose `when` holds gets pick(dim); returns what was picked."""
    chosen, picked = dict(base), {}
    for dim in dims:
        if holds(dim, chosen):
            chosen[dim.name] = picked[dim.name] = pick(dim)
    return picked


def _owners(name: str) -> list[str]:
    return sorted(family for family, names in FAMILY_PARAMETERS.items() if name in names)


def check_conditions(where: str, base: Mapping[str, Any], dims: Sequence[Dimension]) -> None:
    """Each `when` names a fixed or earlier-searched parameter and values it can take; family parameters are
    conditional on the families that read them; the model choices are known families."""
    order = {d.name: k for k, d in enumerate(dims)}
    by_name = {d.name: d for d in dims}
    for k, dim in enumerate(dims):
        for key, values in dim.when:
            at = f"{where}.{dim.name}.when.{key}"
            if key in by_name:
                if order[key] > k:
                    raise UserError(f"{at}: {key} is searched after {dim.name}; list it before (dimensions are sampled in file order)")
                bad = [v for v in values if not by_name[key].contains(v)]
                if bad:
                    raise UserError(f"{at}: {bad[0]!r} is not a value search.{key} can take ({_range(by_name[key])})")
            elif key in base:
                if base[key] not in values:
                    raise UserError(f"{at}: {key} is fixed to {base[key]!r}, so {dim.name} would never be searched")
            else:
                raise UserError(f"{at}: {key!r} is neither fixed nor searched")
    model = by_name.get("model")
    if model is not None:
        if model.kind != "categorical":
            raise UserError(f"{where}.model: a model family is categorical (type: categorical, choices: [{', '.join(sorted(MODELS))}])")
        unknown = [c for c in model.choices if c not in MODELS]
        if unknown:
            raise UserError(f"{where}.model.choices: unknown model {unknown[0]!r} (known: {', '.join(sorted(MODELS))})")
    families = list(model.choices) if model is not None else [base.get("model", PARAMETERS["model"][0])]
    for dim in dims:
        owners = _owners(dim.name)
        if not owners:
            continue
        when_model = dict(dim.when).get("model")
        reach = [f for f in families if when_model is None or f in when_model]
        strays = [f for f in reach if f not in owners]
        if not strays:
            continue
        if model is None:
            raise UserError(f"{where}.{dim.name}: applies to model {' and '.join(owners)} only, not {strays[0]} (the fixed model)")
        if when_model is None:
            raise UserError(f"{where}.{dim.name}: applies to model {' and '.join(owners)} only: make it conditional, "
                            f"when: {{model: [{', '.join(o for o in owners if o in families)}]}}")
        raise UserError(f"{where}.{dim.name}.when.model: {strays[0]} does not read {dim.name} (it applies to {' and '.join(owners)} only)")


def check_fixed_families(where: str, fixed: Mapping[str, Any], dims: Sequence[Dimension]) -> None:
    """With `model` searched, a fixed family parameter would reach the other families: refuse it."""
    model = next((d for d in dims if d.name == "model"), None)
    if model is None:
        return
    for key in fixed:
        owners = _owners(key)
        strays = [f for f in model.choices if owners and f not in owners]
        if strays:
            raise UserError(f"{where}.{key}: applies to model {' and '.join(owners)} only but model is searched "
                            f"(also {strays[0]}): search it with one choice and when: {{model: [{', '.join(owners)}]}}")


def check_point(where: str, base: Mapping[str, Any], dims: Sequence[Dimension], point: Mapping[str, Any]) -> None:
    """A seed point gives only dimensions that are sampled under its own values (and the fixed ones)."""
    chosen = {**base, **point}
    for dim in dims:
        if dim.name not in point:
            continue
        for key, values in dim.when:
            if key not in chosen:
                raise UserError(f"{where}.{dim.name}: conditional on {key}; give {key} in this seed point too")
            if chosen[key] not in values:
                raise UserError(f"{where}.{dim.name}: not searched when {key} is {chosen[key]!r} "
                                f"(when: {key} in [{', '.join(map(str, values))}])")


def _range(dim: Dimension) -> str:
    if dim.kind == "categorical":
        return ", ".join(map(str, dim.choices))
    return f"{dim.low:g}..{dim.high:g}"
