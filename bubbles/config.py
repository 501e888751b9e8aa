"""The trial config: the user's flat parameter names, validated once, turned into typed nested sections.

The same flat names are used in trial YAML files, in `--set key=value` and in search spaces. Each one is a
`param(...)` field of the frozen dataclass that reads it (bubbles.params): the data, split and window sections
(bubbles.data.windows), the training section (bubbles.training.config) and each model family's config (its record in
bubbles.models.registry.FAMILIES). Defaults, help and ranges live there; this module walks them.
`trial_config(params, where)` checks names, types and ranges and returns a frozen TrialConfig whose sections go down
to the code that needs them (data, window, model, train).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from bubbles.data.framesize import FrameSize, format_image_size, parse_image_size
from bubbles.data.windows import DataConfig, SplitConfig, WindowConfig
from bubbles.models.family import CONTEXT_FIELDS, Family
from bubbles.models.registry import FAMILIES, ModelConfig
from bubbles.params import MAX_SEED, defaults_of, fail, flat_values, params_of, parse_choice, parse_section
from bubbles.training.config import RENAMED_METRICS, TrainConfig

__all__ = ["FAMILY_PARAMETERS", "MAX_SEED", "PARAMETERS", "TrialConfig", "check_family", "check_names", "from_json",
           "override", "parse_window", "trial_config"]

DEFAULT_MODEL = "convlstm"
_COMMON = (DataConfig, SplitConfig, WindowConfig, TrainConfig)  # the sections every family reads


def _parameters() -> dict[str, tuple[Any, str]]:
    """Flat name -> (default, help) of every parameter, walked from the dataclasses (a name several families read
    shows the first family's default; each family parses it with its own)."""
    table: dict[str, tuple[Any, str]] = {}
    for cls in (DataConfig, SplitConfig):
        table |= {spec.name: (defaults_of(cls)[spec.name], spec.help) for _, spec in params_of(cls)}
    table["window"] = (None, "shortcut 'N->M' for input_len and output_len, e.g. '20->1', '20->20', '5->5'")
    table |= {spec.name: (defaults_of(WindowConfig)[spec.name], spec.help) for _, spec in params_of(WindowConfig)}
    table["model"] = (DEFAULT_MODEL, f"model family: {' | '.join(FAMILIES)}")
    for family in FAMILIES.values():
        for _, spec in params_of(family.config):
            table.setdefault(spec.name, (defaults_of(family.config)[spec.name], spec.help))
    table |= {spec.name: (defaults_of(TrainConfig)[spec.name], spec.help) for _, spec in params_of(TrainConfig)}
    return table


PARAMETERS: dict[str, tuple[Any, str]] = _parameters()

# The names only some families read (a family's own config, and shared training parameters it `reads`, such as
# teacher_forcing for the recurrent ones); the rest apply to every model.
FAMILY_PARAMETERS: dict[str, frozenset[str]] = {
    name: frozenset({spec.name for _, spec in params_of(f.config)} | set(f.reads)) for name, f in FAMILIES.items()
}
_READ_BY_SOME = frozenset(n for f in FAMILIES.values() for n in f.reads)


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs, in sections."""

    data: DataConfig
    window: WindowConfig
    model_name: str
    model: ModelConfig
    train: TrainConfig

    @property
    def family(self) -> Family:
        return FAMILIES[self.model_name]

    def flat(self) -> dict[str, Any]:
        """The flat parameter names and values (what MLflow logs as params): common ones and the family's own."""
        common = (flat_values(self.data) | flat_values(self.data.split) | flat_values(self.window)
                  | {"model": self.model_name} | flat_values(self.train))
        unread = _READ_BY_SOME - set(self.family.reads)  # teacher_forcing is no SimVP parameter
        return {k: v for k, v in common.items() if k not in unread} | flat_values(self.model)

    def saved(self) -> dict[str, Any]:
        """What checkpoints and exports record: the flat parameters and, for a tile-trained model (whose image_size
        stays the short side its tiles were cut at), the whole frame size it was validated on as `frame_size`."""
        whole = {"frame_size": format_image_size(self.data.frame)} if self.data.frame is not None else {}
        return self.flat() | whole

    def to_json(self) -> str:
        return json.dumps(self.saved(), sort_keys=True)

    @property
    def frame_size(self) -> FrameSize:
        """(H, W) of the model's frames; only known once the image size is resolved against a store."""
        if self.data.frame is not None:
            return self.data.frame
        if isinstance(self.data.image_size, int):
            raise ValueError(f"image_size {self.data.image_size} is a short side: resolve it with at_frame_size first")
        return self.data.image_size

    def at_frame_size(self, size: FrameSize) -> TrialConfig:
        """This config with its image size resolved against a store (make_splits' frame_size): exact HxW from here
        on, so checkpoints, exports and predict use the shape the model was built for. With tiles the image size
        stays the short side (the scale the tiles are cut at, which every consumer needs to rebuild the splits) and
        the whole frame size is kept beside it."""
        model = replace(self.model, frame_size=size)
        if self.data.tile is not None and isinstance(self.data.image_size, int):
            return replace(self, data=replace(self.data, frame=size), model=model)
        return replace(self, data=replace(self.data, image_size=size), model=model)

    def at_fields(self, channels: tuple[str, ...], targets: tuple[str, ...]) -> TrialConfig:
        """This config with its fields resolved against a store (make_splits' channels and targets), so checkpoints
        and exports name the fields the model reads and predicts."""
        model = replace(self.model, in_channels=len(channels), out_channels=len(targets))
        return replace(self, data=replace(self.data, channels=channels, targets=targets), model=model)


def parse_window(where: str, text: Any) -> tuple[int, int]:
    """'20->1' -> (20, 1)."""
    parts = str(text).replace(" ", "").split("->")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise fail(where, "window", f"expected 'N->M' like '20->1', got {text!r}")
    n, m = int(parts[0]), int(parts[1])
    if n < 1 or m < 1:
        raise fail(where, "window", f"lengths must be >= 1, got {text!r}")
    return n, m


def override(base: Mapping[str, Any], over: Mapping[str, Any], where: str = "--set") -> dict[str, Any]:
    """`over` layered on `base` (a file under --set, fixed values under sampled ones): the later layer wins, also
    over the `window` shortcut — base's window is split into input_len / output_len first, so `--set input_len=4`
    on a file with `window: "20->1"` gives 4->1. One layer giving both window and input_len / output_len is an
    error."""
    parts = {"input_len", "output_len"} & set(over)
    if "window" in over and parts and over["window"] is not None:
        raise fail(where, "window", f"given together with {', '.join(sorted(parts))}: give one or the other")
    out = dict(base)
    if parts and out.get("window") is not None:
        out["input_len"], out["output_len"] = parse_window(where, out.pop("window"))
    elif "window" in over:
        for key in ("input_len", "output_len"):
            out.pop(key, None)
    return out | dict(over)


def check_names(where: str, params: Mapping[str, Any]) -> None:
    """Unknown parameter names are errors, with the nearest known name as a hint."""
    for key in params:
        if key not in PARAMETERS:
            near = difflib.get_close_matches(str(key), PARAMETERS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise fail(where, str(key), f"unknown parameter{hint}")


def check_family(where: str, model: str, params: Mapping[str, Any]) -> None:
    """A family's own names given for another family are errors (they would be silently ignored)."""
    for key in params:
        owners = [name for name, names in FAMILY_PARAMETERS.items() if key in names]
        if owners and model not in owners:
            raise fail(where, str(key), f"applies to model {' and '.join(owners)} only, not {model}")



def _model_config(where: str, family: Family, p: Mapping[str, Any], context: Mapping[str, Any], exact: bool) -> ModelConfig:
    """The family's config from its flat names, sized by the trial (CONTEXT_FIELDS it has), checked by the family."""
    own = {f.name for f in fields(family.config)}
    cfg = family.config(**parse_section(family.config, where, p), **{k: v for k, v in context.items() if k in own})
    return family.check(where, cfg, exact)


def trial_config(params: Mapping[str, Any], where: str = "config") -> TrialConfig:
    """Validate flat parameters (missing ones take the dataclasses' defaults) into a TrialConfig."""
    check_names(where, params)
    p = dict(params)
    window = WindowConfig(**parse_section(WindowConfig, where, p))
    if p.get("window") is not None:
        input_len, output_len = parse_window(where, p["window"])
        window = replace(window, input_len=input_len, output_len=output_len)
    data = DataConfig(**parse_section(DataConfig, where, p), split=SplitConfig(**parse_section(SplitConfig, where, p)))
    model_name = parse_choice(where, "model", p.get("model", DEFAULT_MODEL), tuple(sorted(FAMILIES)))
    check_family(where, model_name, params)
    family = FAMILIES[model_name]
    # A short side is resolved against the store by at_frame_size; until then the model is sized square.
    size = data.image_size
    exact = isinstance(size, tuple)
    # Field names are checked against the store by make_splits; the counts size the model now (default: one field).
    context = {
        "frame_size": size if isinstance(size, tuple) else (size, size),
        "in_channels": len(data.channels) or 1, "out_channels": len(data.targets) or 1,
        "input_len": window.input_len, "output_len": window.output_len,
    }
    assert set(context) == set(CONTEXT_FIELDS)
    model = _model_config(where, family, p, context, exact)
    data = replace(data, size_multiple=family.size_multiple(model), feedback=family.feeds_back(model))
    if model.baseline_start and data.targets != data.channels and (len(data.channels) > 1 or data.targets):
        # persistence and flow are formed from the input fields as the predicted fields, in the same order
        raise fail(where, "baseline_start", "needs the predicted fields to be the input fields (target_fields equal "
                   f"to channels), got channels {list(data.channels)} and target_fields {list(data.targets)}")
    if data.tile is not None and getattr(model, "peephole", None) == "frame":
        # One peephole weight per pixel of one frame size: such a model cannot train on tiles and run on frames.
        raise fail(where, "tile", "convlstm's frame peepholes hold one weight per pixel of a fixed frame; with tiles "
                   "set peephole: channel (or none)")
    return TrialConfig(data=data, window=window, model_name=model_name, model=model,
                       train=TrainConfig(**parse_section(TrainConfig, where, p)))


def from_json(text: str) -> TrialConfig:
    """Inverse of TrialConfig.to_json (used by checkpoints and exports)."""
    params = json.loads(text)
    params.pop("window", None)
    whole = params.pop("frame_size", None)  # a tile-trained model's whole frame size (TrialConfig.saved)
    family = FAMILIES.get(params.get("model", DEFAULT_MODEL))
    for name in _READ_BY_SOME - set(family.reads if family else ()):  # saved when predrnn_v2 read teacher_forcing
        params.pop(name, None)
    if params.get("best_by") in RENAMED_METRICS:  # saved before the skill metrics said what they compare against
        params["best_by"] = RENAMED_METRICS[params["best_by"]]
    tiled = params.get("tile") not in (None, "", 0)
    if isinstance(params.get("image_size"), int) and not tiled:  # saved before HxW existed: frames were squashed to S x S
        params["image_size"] = f"{params['image_size']}x{params['image_size']}"
    cfg = trial_config(params, "saved config")
    if tiled and isinstance(cfg.data.image_size, tuple):
        # Saved before tile checkpoints kept their scale: the exact whole frame was recorded, whose short side is the
        # scale the tiles were cut at (rounded to the model's multiple, as the whole frame was).
        whole = whole or format_image_size(cfg.data.image_size)
        cfg = replace(cfg, data=replace(cfg.data, image_size=min(cfg.data.image_size)))
    if whole is not None:
        size = parse_image_size(whole, "saved config: frame_size")
        cfg = cfg.at_frame_size(size if isinstance(size, tuple) else (size, size))
    return cfg
