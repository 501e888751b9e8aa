"""Search-space files: the YAML schema, its validation (before Ray starts), and its translation to Optuna.

This is the only module that knows how a dimension becomes an Optuna distribution. Schema (all sections but
`search` optional)::

    data:        {store, split, val, test, val_fraction, test_fraction, split_gap, split_seed}
    fixed:       {any trial parameter: value}          # shared by every trial
    search:      {parameter: {type: int|float|log|categorical, low, high, step, choices, when: {param: [values]}}}
                 # `model` may be searched (categorical); each family's own parameters then need when: {model: [...]}
    seed_points: [{parameter: value, ...}, ...]         # evaluated first (Optuna enqueue_trial)
    tune:        {objective, num_samples, max_concurrent, time_budget_s, max_failures, sampler, seed,
                  asha: {grace_period, reduction_factor, max_epochs, time_attr, max_t} | false, resources: {cpu, gpu},
                  objectives: [further objectives: multi-objective search],
                  champion: {rank_by, min_skill_every_lead},   # study.champion
                  reproducible: true|false}   # same seed -> same leaderboard: one trial at a time, deterministic torch
    evaluate:    {leads, size, stride, windows, epoch_windows, test_top_k, baselines}   # study.yardstick
    tracking:    {experiment}
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from bubbles.config import PARAMETERS, TrialConfig, check_names, override, parse_window, trial_config
from bubbles.errors import UserError
from bubbles.data.store import FrameStore
from bubbles.data.coverage import coverage_lines, coverage_warnings
from bubbles.data.windows import WindowSplits
from bubbles.data.splits import make_splits
from bubbles.training.config import RENAMED_METRICS, BestBy, best_by_mode
from study.champion import ChampionRule, parse_champion
from study.conditions import Dimension, Kind, check_conditions, check_fixed_families, check_point, walk
from study.config import read_yaml, resolve_store
from study.evaluate_section import EvaluateSettings, parse_evaluate

Objective = BestBy  # any epoch metric that can pick best.pt can be the sweep's objective
DATA_KEYS = ("store", "split", "val", "test", "val_fraction", "test_fraction", "split_gap", "split_seed")
SECTIONS = ("data", "fixed", "search", "seed_points", "tune", "evaluate", "tracking")


@dataclass(frozen=True)
class TuneSettings:
    # The objective the user means: skill against the strongest baseline on the yardstick, per lead, averaged over
    # leads (1 - MSE_model / MSE_strongest); > 0 beats every baseline on average (issue 27).
    objective: Objective = "yardstick_skill_vs_strongest"
    num_samples: int = 8
    max_concurrent: int = 2
    time_budget_s: float | None = None
    max_failures: int = 2
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    asha: bool = True
    grace_period: float = 1
    reduction_factor: int = 3
    max_epochs: int | None = None
    # ASHA's clock: epochs (Tune's training_iteration), or the trial's training seconds, or the GFLOPs it has
    # processed (forward + backward, 3x the forward count), so that families of unequal cost per epoch are compared
    # at equal cost (docs/sweeps.md); grace_period and max_t are in that unit (max_t needed for seconds/gflops).
    time_attr: Literal["epochs", "seconds", "gflops"] = "epochs"
    max_t: float | None = None
    cpu: float = 1.0
    gpu: float = 0.0
    champion: ChampionRule | None = None  # tune.champion (study.champion); None: the best by the objective
    # More objectives for a multi-objective search (Optuna's multi-objective TPE or random sampler through Ray Tune;
    # ASHA and the leaderboard's order use the first, `objective`): epoch metrics, or gflops_per_window (cost, min).
    objectives: tuple[str, ...] = ()
    # Same seed -> same leaderboard: trials run one at a time (so TPE and ASHA see the same results in the same
    # order whatever the load), torch's deterministic algorithms, and a clock that does not read the wall clock
    # (no asha.time_attr seconds, no time_budget_s). The price: no two trials at once.
    reproducible: bool = False

    def all_objectives(self) -> tuple[str, ...]:
        return (self.objective, *self.objectives)

    def mode_of(self, name: str) -> str:
        return "min" if name == "gflops_per_window" else best_by_mode(name)

    @property
    def mode(self) -> str:
        return best_by_mode(self.objective)


@dataclass(frozen=True)
class SweepSpace:
    """A validated search-space file."""

    path: Path
    base: dict[str, Any]
    dimensions: tuple[Dimension, ...]
    seed_points: tuple[dict[str, Any], ...]
    tune: TuneSettings
    experiment: str
    text: str = field(repr=False, default="")
    # Windows per sequence per split at the longest window the search can pick, and held-out conditions giving none.
    coverage: tuple[str, ...] = ()
    coverage_warnings: tuple[str, ...] = ()
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)  # the yardstick's protocol, as written

    def sample(self, trial: Any) -> None:
        """Optuna define-by-run: suggest each dimension in file order, skipping those whose `when` fails."""
        walk(self.base, self.dimensions, lambda dim: dim.suggest(trial))

    def trial_params(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """Flat parameters of one trial: data and fixed values, then what the search chose; best.pt is picked by
        the sweep's objective."""
        return override(self.base, sampled, f"{self.path}: search") | {"best_by": self.tune.objective}

    def trial_config(self, sampled: dict[str, Any], trial: str = "") -> TrialConfig:
        return trial_config(self.trial_params(sampled), where=f"{self.path}{' ' + trial if trial else ''}")

    def max_epochs(self) -> int:
        if self.tune.max_epochs:
            return self.tune.max_epochs
        dims = {d.name: d for d in self.dimensions}
        if "epochs" in dims:
            return int(max(dims["epochs"].corners()))
        return int(self.base.get("epochs", PARAMETERS["epochs"][0]))


def _mapping(where: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _dimension(where: str, name: str, spec: Any) -> Dimension:
    spec = _mapping(f"{where}.{name}", spec)
    allowed = {"type", "low", "high", "step", "choices", "when"}
    for key in spec:
        if key not in allowed:
            raise UserError(f"{where}.{name}.{key}: unknown key (use {', '.join(sorted(allowed))})")
    kind = spec.get("type")
    if kind not in ("int", "float", "log", "categorical"):
        raise UserError(f"{where}.{name}.type: expected int, float, log or categorical, got {kind!r}")
    when = tuple((k, tuple(v if isinstance(v, list) else [v])) for k, v in _mapping(f"{where}.{name}.when", spec.get("when")).items())
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UserError(f"{where}.{name}.choices: expected a non-empty list")
        for choice in choices:  # every float is checked before Ray starts, choices too (.nan would kill a trial)
            if isinstance(choice, float) and not math.isfinite(choice):
                raise UserError(f"{where}.{name}.choices: {choice} is not a finite number")
        return Dimension(name, kind, choices=tuple(choices), when=when)
    low, high, step = spec.get("low"), spec.get("high"), spec.get("step")
    for key, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise UserError(f"{where}.{name}.{key}: expected a number, got {v!r}")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise UserError(f"{where}.{name}: int bounds must be integers, got {low}..{high}")
    if low > high:
        raise UserError(f"{where}.{name}: empty range, low {low} > high {high}")
    if kind == "log" and low <= 0:
        raise UserError(f"{where}.{name}.low: a log range needs low > 0, got {low}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0):
        raise UserError(f"{where}.{name}.step: expected a positive number, got {step!r}")
    return Dimension(name, kind, float(low), float(high), step, when=when)


def _tune(where: str, raw: dict[str, Any]) -> TuneSettings:
    allowed = {"objective", "num_samples", "max_concurrent", "time_budget_s", "max_failures", "sampler", "seed", "asha", "resources", "champion", "objectives", "reproducible"}
    for key in raw:
        if key not in allowed:
            raise UserError(f"{where}.{key}: unknown key (use {', '.join(sorted(allowed))})")
    asha = raw.get("asha", {})
    asha_on = asha is not False
    asha = _mapping(f"{where}.asha", asha if asha_on else {})
    for key in asha:
        if key not in ("grace_period", "reduction_factor", "max_epochs", "time_attr", "max_t"):
            raise UserError(f"{where}.asha.{key}: unknown key (use grace_period, reduction_factor, max_epochs, time_attr, max_t)")
    time_attr = asha.get("time_attr", "epochs")
    if time_attr not in ("epochs", "seconds", "gflops"):
        raise UserError(f"{where}.asha.time_attr: expected epochs, seconds or gflops, got {time_attr!r}")
    if time_attr != "epochs" and asha.get("max_t") is None:
        raise UserError(f"{where}.asha.max_t: needed with time_attr {time_attr} (the most {time_attr} a trial may use)")
    res = _mapping(f"{where}.resources", raw.get("resources"))
    for key in res:
        if key not in ("cpu", "gpu"):
            raise UserError(f"{where}.resources.{key}: unknown key (use cpu, gpu)")

    def num(key: str, value: Any, low: float, integer: bool = True) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()) or value < low:
            raise UserError(f"{where}.{key}: expected {'an integer' if integer else 'a number'} >= {low}, got {value!r}")
        return int(value) if integer else float(value)

    d = TuneSettings()
    objective = raw.get("objective", d.objective)
    if objective not in get_args(BestBy):
        choices = ", ".join(f"{o} ({best_by_mode(o)})" for o in get_args(BestBy))
        if objective in RENAMED_METRICS:
            raise UserError(f"{where}.objective: {objective!r} is now called {RENAMED_METRICS[objective]!r}")
        raise UserError(f"{where}.objective: expected one of {choices}, got {objective!r}")
    more = raw.get("objectives", [])
    if not isinstance(more, list) or any(o not in (*get_args(BestBy), "gflops_per_window") or o == objective for o in more) \
            or len(set(more)) != len(more):
        raise UserError(f"{where}.objectives: expected a list of further objectives (epoch metrics such as "
                        f"yardstick_bubble_f1, or gflops_per_window), each once and not the objective itself, got {more!r}")
    sampler = raw.get("sampler", d.sampler)
    if sampler not in ("tpe", "random"):
        raise UserError(f"{where}.sampler: expected tpe or random, got {sampler!r}")
    budget = raw.get("time_budget_s")
    reproducible = raw.get("reproducible", False)
    if not isinstance(reproducible, bool):
        raise UserError(f"{where}.reproducible: expected true or false, got {reproducible!r}")
    if reproducible and time_attr == "seconds":
        raise UserError(f"{where}.reproducible: ASHA on training seconds depends on the machine's load; use "
                        "asha.time_attr gflops or epochs")
    if reproducible and budget is not None:
        raise UserError(f"{where}.reproducible: time_budget_s stops the sweep after a wall-clock time that depends on "
                        "the load; remove it")
    return TuneSettings(
        objective=objective,
        num_samples=num("num_samples", raw.get("num_samples", d.num_samples), 1),
        max_concurrent=1 if reproducible else num("max_concurrent", raw.get("max_concurrent", d.max_concurrent), 1),
        time_budget_s=None if budget is None else num("time_budget_s", budget, 1, integer=False),
        max_failures=num("max_failures", raw.get("max_failures", d.max_failures), 0),
        sampler=sampler,
        seed=num("seed", raw.get("seed", d.seed), 0),
        asha=asha_on,
        grace_period=num("asha.grace_period", asha.get("grace_period", d.grace_period), 1 if time_attr == "epochs" else 0,
                         integer=time_attr == "epochs"),
        time_attr=time_attr,
        max_t=None if asha.get("max_t") is None else num("asha.max_t", asha["max_t"], 0, integer=False),
        reduction_factor=num("asha.reduction_factor", asha.get("reduction_factor", d.reduction_factor), 2),
        max_epochs=None if asha.get("max_epochs") is None else num("asha.max_epochs", asha["max_epochs"], 1),
        cpu=num("resources.cpu", res.get("cpu", d.cpu), 0, integer=False),
        gpu=num("resources.gpu", res.get("gpu", d.gpu), 0, integer=False),
        champion=parse_champion(f"{where}.champion", raw.get("champion")),
        objectives=tuple(more),
        reproducible=reproducible,
    )


def load_space(path: Path, cwd: Path | None = None, check_data: bool = True, store: Path | None = None) -> SweepSpace:
    """Read and validate a search-space file: names, types, ranges, seed points, and (check_data) that every
    window and image size the search can pick fits the store. Everything fails here, before Ray starts. `store`
    replaces the file's data.store (sweep --store)."""
    raw = read_yaml(path)
    where = str(path)
    raw = _mapping(where, raw)
    for key in raw:
        if key not in SECTIONS:
            raise UserError(f"{where}: {key}: unknown section (use {', '.join(SECTIONS)})")
    data = _mapping(f"{where}: data", raw.get("data"))
    for key in data:
        if key not in DATA_KEYS:
            raise UserError(f"{where}: data.{key}: unknown key (use {', '.join(DATA_KEYS)})")
    if store is not None:
        data = {**data, "store": str(store)}
    fixed = _mapping(f"{where}: fixed", raw.get("fixed"))
    check_names(f"{where}: fixed", fixed)
    base = resolve_store({**data, **fixed}, cwd or Path.cwd())
    search = _mapping(f"{where}: search", raw.get("search"))
    if not search:
        raise UserError(f"{where}: search: no dimensions to search")
    check_names(f"{where}: search", search)
    dims = tuple(_dimension(f"{where}: search", name, spec) for name, spec in search.items())
    for dim in dims:
        if dim.name in base:
            raise UserError(f"{where}: search.{dim.name}: also given in data/fixed; keep it in one place")
        if dim.name == "window":
            for choice in dim.corners():
                parse_window(f"{where}: search", choice)
    check_conditions(f"{where}: search", base, dims)
    check_fixed_families(f"{where}: fixed", fixed, dims)
    points_raw = raw.get("seed_points") or []
    if not isinstance(points_raw, list):
        raise UserError(f"{where}: seed_points: expected a list of mappings")
    by_name = {d.name: d for d in dims}
    points = []
    for k, point in enumerate(points_raw):
        point = _mapping(f"{where}: seed_points[{k}]", point)
        for key, value in point.items():
            if key not in by_name:
                raise UserError(f"{where}: seed_points[{k}].{key}: not a search dimension")
            if not by_name[key].contains(value):
                raise UserError(f"{where}: seed_points[{k}].{key}: {value!r} is outside the search range")
        check_point(f"{where}: seed_points[{k}]", base, dims, point)
        trial_config(override(base, point, f"{where}: seed_points[{k}]"), where=f"{where}: seed_points[{k}]")
        points.append(dict(point))
    tune = _tune(f"{where}: tune", _mapping(f"{where}: tune", raw.get("tune")))
    tracking = _mapping(f"{where}: tracking", raw.get("tracking"))
    for key in tracking:
        if key != "experiment":
            raise UserError(f"{where}: tracking.{key}: unknown key (use experiment)")
    evaluate = parse_evaluate(f"{where}: evaluate", _mapping(f"{where}: evaluate", raw.get("evaluate")))
    space = SweepSpace(path, base, dims, tuple(points), tune, str(tracking.get("experiment", f"bubbles-{path.stem}")),
                       path.read_text(), evaluate=evaluate)
    longest = _check_corners(space, check_data)
    if longest is None:
        return space
    window = f"at window {longest.val.window.input_len}->{longest.val.window.output_len}: "
    return replace(space, coverage=tuple(window + line for line in coverage_lines(longest)),
                   coverage_warnings=tuple(coverage_warnings(longest)))


# The dimensions whose values interact with the frame size, the window or the store: every combination of their
# extremes is checked; the rest only need one valid value each.
SHAPE_NAMES = ("model", "window", "input_len", "output_len", "frame_step", "image_size", "tile", "mode", "patch", "n_s", "channels",
               "target_fields")


def corner_configs(space: SweepSpace) -> list[tuple[str, TrialConfig]]:
    """One trial config for every combination of the extremes of the model, window, size and field dimensions
    (each family with its own conditional ones), labelled."""
    shape_dims = [d for d in space.dimensions if d.name in SHAPE_NAMES]
    seen: set[str] = set()
    out = []
    for combo in itertools.islice(itertools.product(*(d.corners() for d in shape_dims)), 4096):
        corner = {d.name: v for d, v in zip(shape_dims, combo)}
        sampled = walk(space.base, space.dimensions, lambda dim: corner.get(dim.name, dim.corners()[0]))
        label = "search corner " + ", ".join(f"{k}={v}" for k, v in sampled.items() if k in SHAPE_NAMES)
        if label in seen:
            continue  # a conditional dimension dropped out: the same trial again
        seen.add(label)
        out.append((label, space.trial_config(sampled, f"({label})")))
    return out


def _check_corners(space: SweepSpace, check_data: bool) -> WindowSplits | None:
    """Every corner (corner_configs) must make a valid trial and fit the store: an impossible window or a field
    the store lacks is found now, not in the 40th trial. Returns the splits of the longest window."""
    longest: WindowSplits | None = None
    store = None
    if check_data:
        try:
            store = FrameStore.open(space.base.get("store", PARAMETERS["store"][0]))
        except UserError as exc:
            raise UserError(f"{space.path}: data.store: {exc}") from None
    checked: set[Any] = set()
    predicted: dict[tuple[str, ...], str] = {}  # the fields trials predict -> the first corner predicting them
    for label, cfg in corner_configs(space):
        if store is not None and (cfg.data, cfg.window) not in checked:
            checked.add((cfg.data, cfg.window))
            try:
                splits = make_splits(cfg.data, cfg.window, store)
            except UserError as exc:
                raise UserError(f"{space.path}: {label}: {exc}") from None
            longest = max(longest or splits, splits, key=lambda s: s.val.window.span)
            predicted.setdefault(splits.targets, label)
    if len(predicted) > 1:
        # The yardstick scores one field, the same for every trial: trials predicting other fields would be ranked
        # by a field they do not predict.
        (a, at_a), (b, at_b) = list(predicted.items())[:2]
        raise UserError(f"{space.path}: trials of this space predict different fields ([{', '.join(a)}] at {at_a}; "
                        f"[{', '.join(b)}] at {at_b}); the yardstick scores one field for every trial: fix "
                        "target_fields (or search channels that share their first field)")
    return longest
