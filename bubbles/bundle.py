"""The exported model: a self-contained directory a colleague can use without this package.

    MODEL_DIR/
      weights.safetensors   the state dict (safetensors: loading it never runs code)
      config.json           every trial parameter (image_size as the exact HxW), input_shape, output_shape, the
                            fields read and predicted (one channel each), the store fingerprint and split
      model.ts              TorchScript program: (B, input_len, C_in, H, W) float32 in [0, 1] -> (B, output_len, C_out, H, W)
      model.onnx            the same program as ONNX (optional), checked against PyTorch with onnxruntime
      metrics_card.md       objective, per-lead table against the baselines, per-condition table, data and split
      README.md             how to load each file

Everything is written to a temporary sibling and renamed into place, so an export is complete or absent.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import uuid
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from bubbles.config import TrialConfig, from_json
from bubbles.errors import UserError
from bubbles.outputs import check_output_dir, replace_dir, temp_sibling
from bubbles.evaluation.cost import ModelCost
from bubbles.evaluation.evaluate import Evaluation
from bubbles.models import build_model, check_state_shapes

FORMAT = "bubbles-export-1"
ONNX_TOLERANCE = 1e-4
CLIMATOLOGY = "climatology.npy"  # the per-pixel mean of the training frames, for the climatology baseline


class _Predictor(nn.Module):
    """forward(x) -> output_len frames: the trained horizon fixed, so tracing captures the whole rollout."""

    def __init__(self, model: nn.Module, horizon: int) -> None:
        super().__init__()
        self.model = model
        self.horizon = horizon

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, future=self.horizon)


@dataclass(frozen=True)
class BundleInfo:
    """What the export records besides the weights."""

    objective_name: str
    objective: float
    source: str
    store_fingerprint: str
    val_conditions: tuple[str, ...]
    cost: ModelCost | None = None
    # The study's yardstick (bubbles.evaluation.yardstick): "protocol" (a line), then per score name — validation
    # (what the model was chosen on) and test (unbiased) — its means, or one line saying why there is none.
    yardstick: dict[str, Any] = field(default_factory=dict)


def load_climatology(directory: Path) -> np.ndarray | None:
    """The bundle's climatology frame, if its export could read the training frames."""
    path = Path(directory) / CLIMATOLOGY
    return np.load(path, allow_pickle=False) if path.is_file() else None


def example_input(cfg: TrialConfig) -> torch.Tensor:
    """A fixed input of the exported program's shape (seeded, so exports are byte-for-byte repeatable)."""
    return torch.rand(1, cfg.window.input_len, cfg.model.in_channels, *cfg.frame_size, generator=torch.Generator().manual_seed(0))


def expected_shape(cfg: TrialConfig) -> tuple[int, ...]:
    """The exported program's output shape for example_input."""
    return (1, cfg.window.output_len, cfg.model.out_channels, *cfg.frame_size)


def field_record(cfg: TrialConfig) -> dict[str, list[str]]:
    """The fields of the input and output channels, in order (empty in configs saved before fields existed: one
    channel, the store's first field)."""
    return {"inputs": list(cfg.data.channels), "outputs": list(cfg.data.targets)}


def metrics_card(cfg: TrialConfig, info: BundleInfo, evaluation: Evaluation | None) -> str:
    lines = [
        f"# {cfg.model_name} {cfg.model.label()} "
        f"{cfg.window.input_len}->{cfg.window.output_len} at {cfg.frame_size[0]}x{cfg.frame_size[1]}",
        "",
        *([f"- fields: [{', '.join(cfg.data.channels)}] -> [{', '.join(cfg.data.targets)}] (the tables are "
           f"{cfg.data.targets[0]}'s)"] if len(cfg.data.channels) > 1 else []),
        f"- objective: {info.objective_name} = {info.objective:.4f}",
        f"- source: {info.source}",
        f"- data: store `{cfg.data.store}` (fingerprint `{info.store_fingerprint}`), split `{cfg.data.split.kind}`, "
        f"validation conditions {', '.join(info.val_conditions) or '-'}",
        f"- training: {cfg.train.epochs} epochs, {cfg.train.optimizer} lr {cfg.train.lr:g} ({cfg.train.lr_schedule}), loss {cfg.train.loss}, batch {cfg.train.batch_size}, seed {cfg.train.seed}",
        f"- cost: {info.cost.line() if info.cost else 'not recorded'}",
        "- metrics: SSIM (scikit-image, data_range 1, Gaussian σ 1.5), PSNR (data_range 1), MSE per pixel; "
        "skill = 1 − MSE_model / MSE_baseline; the strongest baseline at a lead is the one of lowest MSE there "
        "(persistence, context median, climatology = training mean frame, flow = optical-flow extrapolation)",
        "",
    ]
    lines += yardstick_lines(info.yardstick)
    if evaluation is None:
        return "\n".join(lines + ["(no evaluation recorded)"]) + "\n"
    lines += ["## Per lead time (validation windows)", "", evaluation.lead_table(), "", "## Per held-out condition", ""]
    base = [b for b in evaluation.baselines if all(f"{b}_mse" in row for row in evaluation.per_condition.values())]
    lines += ["| condition | windows | SSIM | PSNR | MSE | " + " | ".join(f"{b} MSE" for b in base) + " | skill_vs_strongest | skill_vs_persistence |",
              "|" + "---|" * (7 + len(base))]
    for cid, row in sorted(evaluation.per_condition.items()):
        lines.append(
            f"| {cid} | {row['windows']:.0f} | {row['ssim']:.3f} | {row['psnr']:.2f} | {row['mse']:.5f} | "
            + "".join(f"{row[f'{b}_mse']:.5f} | " for b in base)
            + f"{row.get('skill_vs_strongest', float('nan')):+.3f} | {row['skill_vs_persistence']:+.3f} |"
        )
    lines += ["", f"collapse score {evaluation.collapse_score:.3f} ({'collapsed' if evaluation.collapsed else 'not collapsed'})"]
    return "\n".join(lines) + "\n"


def yardstick_lines(yardstick: dict[str, Any]) -> list[str]:
    """The card's yardstick table: validation and test side by side (or the line that says why a score is absent)."""
    if not yardstick:
        return []
    names = (("ssim", "SSIM", ".3f"), ("mse", "MSE", ".5f"), ("bubble_f1", "bubble F1", ".3f"), ("skill_vs_strongest", "skill_vs_strongest", "+.3f"))
    lines = ["## The study's yardstick", "", f"{yardstick.get('protocol', '')}", "",
             "| score | " + " | ".join(n for _, n, _ in names) + " |", "|" + "---|" * (len(names) + 1)]
    notes = []
    for key, value in yardstick.items():
        if key == "protocol":
            continue
        if isinstance(value, dict):
            lines.append(f"| {key} | " + " | ".join(format(value.get(k, float("nan")), f) for k, _, f in names) + " |")
        else:
            notes.append(f"- {key}: {value}")
    return lines + [""] + notes + ([""] if notes else [])


_README = """# Exported bubble-flow predictor

Input: float32 frames in [0, 1], shape (batch, {input_len}, {c_in}, {h}, {w}) — {input_len} consecutive frames
of height {h} and width {w}; channels: {inputs}.
Output: (batch, {output_len}, {c_out}, {h}, {w}) — the next {output_len} frames; channels: {outputs}.
Each field is scaled to [0, 1] from its sequence's own range (`fields[].scale` in the store; value = min + v·(max − min)).

    import torch
    program = torch.jit.load("model.ts")            # needs only torch
    prediction = program(frames)

    import onnxruntime                               # if model.onnx is present
    session = onnxruntime.InferenceSession("model.onnx")
    prediction = session.run(None, {{"frames": frames_numpy}})[0]

`weights.safetensors` + `config.json` rebuild the model in bubbles-study (`bubbles.bundle.load_bundle`), which
can also roll out beyond {output_len} frames (`cli.py predict --autoregressive`).
"""


def write_bundle(
    out: Path,
    model: nn.Module,
    cfg: TrialConfig,
    info: BundleInfo,
    evaluation: Evaluation | None,
    onnx: bool = False,
    climatology: np.ndarray | None = None,
) -> Path:
    """Write the export directory atomically; returns its path. climatology: the training frames' mean frame, kept
    as climatology.npy so that `predict` can show that baseline too."""
    out = out.resolve()
    check_output_dir(out, "export")
    tmp = temp_sibling(out)
    try:
        model = model.cpu().eval()
        predictor = _Predictor(model, cfg.window.output_len).eval()
        x = example_input(cfg)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "weights.safetensors"), metadata={"format": FORMAT})
        config = {"format": FORMAT, "params": cfg.saved(), "input_shape": list(x.shape), "output_shape": list(expected_shape(cfg)),
                  "fields": field_record(cfg), "objective": {"name": info.objective_name, "value": info.objective},
                  "source": info.source, "store_fingerprint": info.store_fingerprint, "val_conditions": list(info.val_conditions),
                  "cost": asdict(info.cost) if info.cost else None, "yardstick": info.yardstick or None}
        (tmp / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True))
        with torch.no_grad(), _constants_of_the_program():
            expected = predictor(x)
            traced = torch.jit.trace(predictor, (x,), check_trace=False)
        torch.jit.save(traced, str(tmp / "model.ts"))
        _pin_serialization_id(tmp / "model.ts")
        if onnx:
            with _constants_of_the_program():
                _export_onnx(predictor, x, expected, tmp / "model.onnx")
        (tmp / "metrics_card.md").write_text(metrics_card(cfg, info, evaluation))
        if climatology is not None:
            np.save(tmp / CLIMATOLOGY, climatology.astype(np.float32))
        h, w = cfg.frame_size
        names = field_record(cfg)
        (tmp / "README.md").write_text(_README.format(
            input_len=cfg.window.input_len, output_len=cfg.window.output_len, h=h, w=w, c_in=cfg.model.in_channels,
            c_out=cfg.model.out_channels, inputs=", ".join(names["inputs"]) or "the store's first field",
            outputs=", ".join(names["outputs"]) or "the same field"))
        replace_dir(tmp, out, "export")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _pin_serialization_id(path: Path) -> None:
    """torch.jit.save stores a random serialization id; replace it (same length, CRCs updated) by digits of a hash
    of every other record, so that exporting the same model twice gives the same bytes."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        target = next((i for i in infos if i.filename.endswith(".data/serialization_id")), None)
        if target is None or target.compress_type != zipfile.ZIP_STORED:
            return
        digest = hashlib.sha256(b"".join(archive.read(i.filename) for i in infos if i is not target)).hexdigest()
        size = target.file_size
    new = str(int(digest, 16)).encode()[:size].ljust(size, b"0")
    crc = zlib.crc32(new)
    name = target.filename.encode()
    local = target.header_offset
    name_len, extra_len = struct.unpack_from("<HH", data, local + 26)
    start = local + 30 + name_len + extra_len
    data[start : start + size] = new
    struct.pack_into("<I", data, local + 14, crc)
    central = data.find(b"PK\x01\x02", start)
    while central != -1:
        n_len = struct.unpack_from("<H", data, central + 28)[0]
        if bytes(data[central + 46 : central + 46 + n_len]) == name:
            struct.pack_into("<I", data, central + 16, crc)
            break
        central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))


@contextmanager
def _constants_of_the_program() -> Iterator[None]:
    """Silence the tracer's warnings about the baseline start's Python values (bubbles.models.baseline_start; and
    evolution's flow_motion, which reads the same flow's ILK radius): the
    frame size, the sources in use and the flow's ILK radius are fixed for an exported program by design (config.json
    records its one input shape), so "treated as a constant" is what is meant. Warnings from anywhere else still show."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"bubbles\.models\.(baseline_start|evolution)")
        # torch.onnx's note that a strided slice is left unfolded (printed three times per export): an optimisation
        # it skips, not a difference in the program; the export is checked against PyTorch with onnxruntime anyway.
        warnings.filterwarnings("ignore", message=r"Constant folding - Only steps=1", category=UserWarning)
        yield


def _export_onnx(predictor: nn.Module, x: torch.Tensor, expected: torch.Tensor, path: Path) -> None:
    import onnxruntime

    with torch.no_grad():
        torch.onnx.export(predictor, (x,), str(path), dynamo=False, input_names=["frames"], output_names=["prediction"],
                          opset_version=17, dynamic_axes={"frames": {0: "batch"}, "prediction": {0: "batch"}})
    got = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"frames": x.numpy()})[0]
    diff = float(np.abs(got - expected.numpy()).max())
    if diff > ONNX_TOLERANCE:
        raise UserError(f"ONNX export differs from PyTorch by {diff:.2e} (> {ONNX_TOLERANCE}); not written")


def load_bundle(directory: str | Path) -> tuple[nn.Module, TrialConfig, dict[str, Any]]:
    """Rebuild the model from weights.safetensors and config.json (no pickles involved)."""
    directory = Path(directory)
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        hint = ""
        if (directory / "checkpoint" / "best.pt").is_file():
            hint = f"; it is a train output: export it first with  bubbles-study export --checkpoint {directory} --out EXPORT_DIR"
        raise UserError(f"{directory}: not an exported model (no readable config.json){hint}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise UserError(f"{directory}: export format {found!r} is not {FORMAT!r}")
    if not isinstance(config.get("params"), dict):
        raise UserError(f"{directory}/config.json: 'params' must be a mapping of parameter names to values")
    cfg = from_json(json.dumps(config["params"]))
    try:
        weights = load_file(str(directory / "weights.safetensors"))
    except Exception as exc:
        raise UserError(f"{directory}/weights.safetensors: cannot load ({type(exc).__name__})") from None
    check_state_shapes(cfg.model_name, cfg.model, weights, f"{directory}/weights.safetensors")
    model = build_model(cfg.model_name, cfg.model)
    model.load_state_dict(weights)
    return model.eval(), cfg, config
