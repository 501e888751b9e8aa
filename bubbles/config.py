"""The trial config: the user's flat parameter names, validated once, turned into typed nested sections.

The same flat names are used in trial YAML files, in `--set key=value` and in search spaces. Each one is documented
in PARAMETERS (name -> (default, help)); `trial_config(params, where)` checks names, types and ranges and returns a
frozen TrialConfig whose sections go down to the code that needs them (data, window, model, train).
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, get_args

from bubbles.errors import UserError
from bubbles.models.convlstm import ConvLSTMConfig, Mode, Norm, Peephole
from bubbles.models.predrnn_v2 import PredRNNv2Config
from bubbles.models.registry import MODELS, ModelConfig, size_multiple
from bubbles.models.simvp import SimVPConfig
from bubbles.training.config import AMP, BestBy, Device, Loss, TrainConfig
from bubbles.data.framesize import FrameSize, format_image_size, parse_image_size
from bubbles.data.windows import DataConfig, SplitConfig, SplitKind, WindowConfig

MAX_SEED = 2**32 - 1  # numpy and torch both take seeds this large on every platform

PARAMETERS: dict[str, tuple[Any, str]] = {
    "store": ("data/synthetic.zarr", "frame store path"),
    "split": ("condition", "split rule: condition | sequence | time"),
    "val": ([], "held-out validation conditions (ids or key=value) or sequence names; empty: drawn by val_fraction"),
    "test": ([], "held-out test conditions or sequences; empty: drawn by test_fraction"),
    "val_fraction": (0.25, "fraction of conditions / sequences / frames for validation"),
    "test_fraction": (0.0, "fraction for test"),
    "split_gap": (0, "time split: frames dropped between parts"),
    "split_seed": (0, "seed of the drawn split"),
    "channels": ([], "input fields of a multi-field store, e.g. [dfun, temperature, velx]; empty: the store's first field"),
    "target_fields": ([], "predicted fields, each also an input; empty: the first of channels. convlstm seq2seq and predrnn_v2 predict exactly the channels"),
    "image_size": (64, "short side in pixels, the store's aspect kept (64), or exact HxW ('96x256', stretches when the aspect differs)"),
    "window": (None, "shortcut 'N->M' for input_len and output_len, e.g. '20->1', '20->20', '5->5'"),
    "input_len": (20, "context frames"),
    "output_len": (1, "predicted frames (lead times 1..M)"),
    "stride": (1, "frames between window starts"),
    "model": ("convlstm", "model family: convlstm | predrnn_v2 | simvp"),
    "layers": (3, "ConvLSTM layers"),
    "hidden": (64, "kernels per layer: one value or a list per layer"),
    "kernel": (3, "gate convolution kernel size (odd)"),
    "peephole": ("frame", "peephole weights: frame (hidden x H x W, the seed) | channel | none"),
    "mode": ("auto", "seq2one | seq2seq | auto (seq2one when output_len is 1)"),
    "norm": ("batch", "normalisation after each layer: batch (the seed; separate statistics for the seq2seq rollout) | group | layer | none"),
    "st_layers": (4, "PredRNN-v2: ST-LSTM layers"),
    "st_hidden": (128, "PredRNN-v2: width of every ST-LSTM layer"),
    "st_kernel": (5, "PredRNN-v2: gate convolution kernel size (odd)"),
    "patch": (4, "PredRNN-v2: frames cut into patch x patch tiles folded into channels (must divide H and W)"),
    "st_layer_norm": (False, "PredRNN-v2: LayerNorm after each gate convolution"),
    "decouple_beta": (0.1, "PredRNN-v2: weight of the memory-decoupling loss"),
    "reverse_sampling": (True, "PredRNN-v2: with teacher_forcing > 0, also feed its own frames to the encoder (probability 1 - teacher_forcing)"),
    "hid_s": (64, "SimVP: encoder/decoder width"),
    "hid_t": (512, "SimVP: translator width"),
    "n_s": (4, "SimVP: encoder/decoder blocks (every second one halves H and W)"),
    "n_t": (8, "SimVP: gSTA translator blocks"),
    "spatio_kernel": (3, "SimVP: encoder/decoder kernel size (odd)"),
    "mlp_ratio": (8.0, "SimVP: widening of the translator's MLPs"),
    "teacher_forcing": (0.0, "convlstm seq2seq and predrnn_v2: start probability of feeding the true frame, decays linearly to 0"),
    "epochs": (10, "training epochs"),
    "lr": (1e-3, "Adam learning rate"),
    "weight_decay": (0.0, "Adam weight decay"),
    "batch_size": (4, "windows per batch"),
    "loss": ("mse_sum", "mse_sum (the seed) | mse_mean | l1 | mse+ssim | mse+gdl"),
    "gdl_weight": (0.1, "loss mse+gdl: weight of the gradient-difference term (anti-blur)"),
    "grad_clip": (0.0, "max gradient norm; 0 = off"),
    "seed": (0, "seed of initialisation, shuffling and sampling"),
    "device": ("auto", "auto | cpu | cuda"),
    "amp": ("auto", "auto (bf16, else fp16, on CUDA) | off"),
    "max_train_windows": (0, "train on at most this many windows per epoch (evenly spaced); 0 = all"),
    "max_val_windows": (0, "evaluate on at most this many windows; 0 = all"),
    "workers": (0, "DataLoader worker processes"),
    "collapse_stop_epoch": (0, "stop a trial found collapsed at or after this epoch; 0 = never"),
    "best_by": ("val_mse", "epoch metric that picks best.pt: val_mse (min) | val_ssim | val_psnr | val_skill_persistence | val_bubble_f1 (max), or the yardstick's yardstick_mse (min) | yardstick_ssim | yardstick_psnr | yardstick_bubble_f1 | yardstick_skill (max); a sweep sets its objective"),
}


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs, in sections."""

    data: DataConfig
    window: WindowConfig
    model_name: str
    model: ModelConfig
    train: TrainConfig

    def flat(self) -> dict[str, Any]:
        """The flat parameter names and values (what MLflow logs as params): common ones and the family's own."""
        s = self.data.split
        common = {
            "store": self.data.store, "split": s.kind, "val": list(s.val), "test": list(s.test),
            "val_fraction": s.val_fraction, "test_fraction": s.test_fraction, "split_gap": s.gap,
            "split_seed": s.seed, "image_size": format_image_size(self.data.image_size),
            "channels": list(self.data.channels), "target_fields": list(self.data.targets), "input_len": self.window.input_len,
            "output_len": self.window.output_len, "stride": self.window.stride, "model": self.model_name,
            **asdict(self.train),
        }
        m = self.model
        if isinstance(m, ConvLSTMConfig):
            own = {"layers": m.layers, "hidden": list(m.widths()), "kernel": m.kernel, "peephole": m.peephole, "mode": m.mode, "norm": m.norm}
        elif isinstance(m, PredRNNv2Config):
            own = {"st_layers": m.layers, "st_hidden": m.hidden, "st_kernel": m.kernel, "patch": m.patch,
                   "st_layer_norm": m.layer_norm, "decouple_beta": m.decouple_beta, "reverse_sampling": m.reverse_sampling}
        else:
            own = {"hid_s": m.hid_s, "hid_t": m.hid_t, "n_s": m.n_s, "n_t": m.n_t, "spatio_kernel": m.spatio_kernel, "mlp_ratio": m.mlp_ratio}
        if self.model_name == "simvp":
            common.pop("teacher_forcing")
        return common | own

    def to_json(self) -> str:
        return json.dumps(self.flat(), sort_keys=True)

    @property
    def frame_size(self) -> FrameSize:
        """(H, W) of the model's frames; only known once the image size is resolved against a store."""
        if isinstance(self.data.image_size, int):
            raise ValueError(f"image_size {self.data.image_size} is a short side: resolve it with at_frame_size first")
        return self.data.image_size

    def at_frame_size(self, size: FrameSize) -> TrialConfig:
        """This config with its image size resolved against a store (make_splits' frame_size): exact HxW from here
        on, so checkpoints, exports and predict use the shape the model was built for."""
        return replace(self, data=replace(self.data, image_size=size), model=replace(self.model, frame_size=size))

    def at_fields(self, channels: tuple[str, ...], targets: tuple[str, ...]) -> TrialConfig:
        """This config with its fields resolved against a store (make_splits' channels and targets), so checkpoints
        and exports name the fields the model reads and predicts."""
        model = replace(self.model, in_channels=len(channels), out_channels=len(targets))
        return replace(self, data=replace(self.data, channels=channels, targets=targets), model=model)


def _fail(where: str, key: str, problem: str) -> UserError:
    return UserError(f"{where}: {key}: {problem}")


def _int(where: str, key: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise _fail(where, key, f"expected an integer, got {value!r}")
    if low is not None and value < low:
        raise _fail(where, key, f"must be >= {low}, got {value}")
    if high is not None and value > high:
        raise _fail(where, key, f"must be <= {high}, got {value}")
    return value


def _float(where: str, key: str, value: Any, low: float = 0.0, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, key, f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise _fail(where, key, f"expected a finite number, got {value}")
    if value < low or (high is not None and value > high):
        raise _fail(where, key, f"must be in [{low}, {high if high is not None else 'inf'}], got {value}")
    return float(value)


def _choice(where: str, key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _fail(where, key, f"expected one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _strings(where: str, key: str, value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, (str, int, float)) for v in items):
        raise _fail(where, key, f"expected a list of names, got {value!r}")
    return tuple(str(v) for v in items)


def _fields(where: str, key: str, value: Any) -> tuple[str, ...]:
    """A list of field names ('dfun,temperature' from --set too), each once."""
    names = tuple(n.strip() for n in value.split(",") if n.strip()) if isinstance(value, str) else _strings(where, key, value)
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise _fail(where, key, f"field {twice!r} is named twice")
    return names


def parse_window(where: str, text: Any) -> tuple[int, int]:
    """'20->1' -> (20, 1)."""
    parts = str(text).replace(" ", "").split("->")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise _fail(where, "window", f"expected 'N->M' like '20->1', got {text!r}")
    n, m = int(parts[0]), int(parts[1])
    if n < 1 or m < 1:
        raise _fail(where, "window", f"lengths must be >= 1, got {text!r}")
    return n, m


def override(base: Mapping[str, Any], over: Mapping[str, Any], where: str = "--set") -> dict[str, Any]:
    """`over` layered on `base` (a file under --set, fixed values under sampled ones): the later layer wins, also
    over the `window` shortcut — base's window is split into input_len / output_len first, so `--set input_len=4`
    on a file with `window: "20->1"` gives 4->1. One layer giving both window and input_len / output_len is an
    error."""
    parts = {"input_len", "output_len"} & set(over)
    if "window" in over and parts and over["window"] is not None:
        raise _fail(where, "window", f"given together with {', '.join(sorted(parts))}: give one or the other")
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
            raise _fail(where, str(key), f"unknown parameter{hint}")


# The names only one family reads (teacher_forcing: the recurrent ones); the rest apply to every model.
FAMILY_PARAMETERS: dict[str, frozenset[str]] = {
    "convlstm": frozenset({"layers", "hidden", "kernel", "peephole", "mode", "norm", "teacher_forcing"}),
    "predrnn_v2": frozenset({"st_layers", "st_hidden", "st_kernel", "patch", "st_layer_norm", "decouple_beta", "reverse_sampling", "teacher_forcing"}),
    "simvp": frozenset({"hid_s", "hid_t", "n_s", "n_t", "spatio_kernel", "mlp_ratio"}),
}


def check_family(where: str, model: str, params: Mapping[str, Any]) -> None:
    """A family's own names given for another family are errors (they would be silently ignored)."""
    for key in params:
        owners = [name for name, names in FAMILY_PARAMETERS.items() if key in names]
        if owners and model not in owners:
            raise _fail(where, str(key), f"applies to model {' and '.join(owners)} only, not {model}")


def _bool(where: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, key, f"expected true or false, got {value!r}")
    return value


def _odd(where: str, key: str, value: Any) -> int:
    kernel = _int(where, key, value, 1)
    if kernel % 2 == 0:
        raise _fail(where, key, f"must be odd (same padding), got {kernel}")
    return kernel


def _convlstm(where: str, p: Mapping[str, Any], size: tuple[int, int], exact: bool, input_len: int, output_len: int) -> ConvLSTMConfig:
    mode = _choice(where, "mode", p["mode"], ("auto", *get_args(Mode)))
    if mode == "auto":
        mode = "seq2one" if output_len == 1 else "seq2seq"
    if mode == "seq2one" and output_len != 1:
        raise _fail(where, "mode", f"seq2one predicts one frame but output_len is {output_len} (use seq2seq)")
    hidden_raw = p["hidden"] if isinstance(p["hidden"], (list, tuple)) else [p["hidden"]]
    hidden = tuple(_int(where, "hidden", h, 1) for h in hidden_raw)
    layers = _int(where, "layers", p["layers"], 1)
    if len(hidden) not in (1, layers):
        raise _fail(where, "hidden", f"give one width or {layers} (one per layer), got {len(hidden)}")
    return ConvLSTMConfig(
        layers=layers, hidden=hidden, kernel=_odd(where, "kernel", p["kernel"]),
        peephole=_choice(where, "peephole", p["peephole"], get_args(Peephole)),  # type: ignore[arg-type]
        mode=mode,  # type: ignore[arg-type]
        norm=_choice(where, "norm", p["norm"], get_args(Norm)),  # type: ignore[arg-type]
        frame_size=size,
    )


def _predrnn_v2(where: str, p: Mapping[str, Any], size: tuple[int, int], exact: bool, input_len: int, output_len: int) -> PredRNNv2Config:
    patch = _int(where, "patch", p["patch"], 1)
    if exact and (size[0] % patch or size[1] % patch):
        raise _fail(where, "patch", f"must divide the frame size {size[0]}x{size[1]}, got {patch}")
    return PredRNNv2Config(
        layers=_int(where, "st_layers", p["st_layers"], 1), hidden=_int(where, "st_hidden", p["st_hidden"], 1),
        kernel=_odd(where, "st_kernel", p["st_kernel"]), patch=patch,
        layer_norm=_bool(where, "st_layer_norm", p["st_layer_norm"]),
        decouple_beta=_float(where, "decouple_beta", p["decouple_beta"]),
        reverse_sampling=_bool(where, "reverse_sampling", p["reverse_sampling"]), frame_size=size,
    )


def _simvp(where: str, p: Mapping[str, Any], size: tuple[int, int], exact: bool, input_len: int, output_len: int) -> SimVPConfig:
    n_s = _int(where, "n_s", p["n_s"], 1)
    step = 2 ** (n_s // 2)
    if exact and (size[0] % step or size[1] % step):
        raise _fail(where, "n_s", f"{n_s} blocks halve the frame {n_s // 2} times: {size[0]}x{size[1]} must divide by {step}")
    hid_s = _int(where, "hid_s", p["hid_s"], 2)
    if hid_s % 2:
        raise _fail(where, "hid_s", f"must be even (GroupNorm of 2 groups), got {hid_s}")
    return SimVPConfig(
        hid_s=hid_s, hid_t=_int(where, "hid_t", p["hid_t"], 1), n_s=n_s, n_t=_int(where, "n_t", p["n_t"], 1),
        spatio_kernel=_odd(where, "spatio_kernel", p["spatio_kernel"]),
        mlp_ratio=_float(where, "mlp_ratio", p["mlp_ratio"], 0.25, 64.0),
        input_len=input_len, output_len=output_len, frame_size=size,
    )


_MODEL_SECTIONS = {"convlstm": _convlstm, "predrnn_v2": _predrnn_v2, "simvp": _simvp}


def trial_config(params: Mapping[str, Any], where: str = "config") -> TrialConfig:
    """Validate flat parameters (missing ones take PARAMETERS defaults) into a TrialConfig."""
    check_names(where, params)
    p = {k: v for k, (v, _) in PARAMETERS.items()} | dict(params)
    input_len, output_len = (_int(where, "input_len", p["input_len"], 1), _int(where, "output_len", p["output_len"], 1))
    if p["window"] is not None:
        input_len, output_len = parse_window(where, p["window"])
    size = parse_image_size(p["image_size"], f"{where}: image_size")
    model_name = _choice(where, "model", p["model"], tuple(sorted(MODELS)))
    check_family(where, model_name, params)
    # A short side is resolved against the store by at_frame_size; until then the model is sized square.
    exact = isinstance(size, tuple)
    frame = size if isinstance(size, tuple) else (size, size)
    model = _MODEL_SECTIONS[model_name](where, p, frame, exact, input_len, output_len)
    channels, targets = _fields(where, "channels", p["channels"]), _fields(where, "target_fields", p["target_fields"])
    # Field names are checked against the store by make_splits; the counts size the model now (default: one field).
    model = replace(model, in_channels=len(channels) or 1, out_channels=len(targets) or 1)
    feedback = model_name == "predrnn_v2" or getattr(model, "mode", "") == "seq2seq"
    if not isinstance(p["store"], str) or not p["store"]:
        raise _fail(where, "store", f"expected a path, got {p['store']!r}")
    split = SplitConfig(
        kind=_choice(where, "split", p["split"], get_args(SplitKind)),  # type: ignore[arg-type]
        val=_strings(where, "val", p["val"]),
        test=_strings(where, "test", p["test"]),
        val_fraction=_float(where, "val_fraction", p["val_fraction"], 0.0, 0.9),
        test_fraction=_float(where, "test_fraction", p["test_fraction"], 0.0, 0.9),
        gap=_int(where, "split_gap", p["split_gap"], 0),
        seed=_int(where, "split_seed", p["split_seed"], 0, MAX_SEED),
    )
    train = TrainConfig(
        epochs=_int(where, "epochs", p["epochs"], 1),
        lr=_float(where, "lr", p["lr"], 1e-12, 10.0),
        weight_decay=_float(where, "weight_decay", p["weight_decay"]),
        batch_size=_int(where, "batch_size", p["batch_size"], 1),
        loss=_choice(where, "loss", p["loss"], get_args(Loss)),  # type: ignore[arg-type]
        gdl_weight=_float(where, "gdl_weight", p["gdl_weight"], 0.0, 100.0),
        grad_clip=_float(where, "grad_clip", p["grad_clip"]),
        seed=_int(where, "seed", p["seed"], 0, MAX_SEED),
        teacher_forcing=_float(where, "teacher_forcing", p["teacher_forcing"], 0.0, 1.0),
        device=_choice(where, "device", p["device"], get_args(Device)),  # type: ignore[arg-type]
        amp=_choice(where, "amp", p["amp"], get_args(AMP)),  # type: ignore[arg-type]
        max_train_windows=_int(where, "max_train_windows", p["max_train_windows"], 0),
        max_val_windows=_int(where, "max_val_windows", p["max_val_windows"], 0),
        workers=_int(where, "workers", p["workers"], 0),
        collapse_stop_epoch=_int(where, "collapse_stop_epoch", p["collapse_stop_epoch"], 0),
        best_by=_choice(where, "best_by", p["best_by"], get_args(BestBy)),  # type: ignore[arg-type]
    )
    return TrialConfig(
        data=DataConfig(store=p["store"], image_size=size, split=split, size_multiple=size_multiple(model),
                        channels=channels, targets=targets, feedback=feedback),
        window=WindowConfig(input_len, output_len, _int(where, "stride", p["stride"], 1)),
        model_name=model_name,
        model=model,
        train=train,
    )


def from_json(text: str) -> TrialConfig:
    """Inverse of TrialConfig.to_json (used by checkpoints and exports)."""
    params = json.loads(text)
    params.pop("window", None)
    if isinstance(params.get("image_size"), int):  # saved before HxW existed: frames were squashed to S x S
        params["image_size"] = f"{params['image_size']}x{params['image_size']}"
    return trial_config(params, "saved config")
