"""Run an exported model on real frames: rollouts (also beyond the trained horizon), pictures and metrics."""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bubbles.bundle import load_bundle
from bubbles.errors import UserError
from bubbles.outputs import check_output_dir, replace_dir, temp_sibling
from bubbles.evaluation.bubbles import BubbleMeter, DetectorConfig
from bubbles.evaluation.evaluate import FrameMetrics
from bubbles.evaluation.figures import bubble_strip, prediction_strip
from bubbles.data.ingest import IngestRequest, ingest
from bubbles.data.store import FrameStore
from bubbles.data.windows import FrameCache


@dataclass(frozen=True)
class PredictRequest:
    model_dir: Path
    out: Path
    start: int = 0
    steps: int | None = None
    autoregressive: bool = False
    store: Path | None = None
    sequence: str | None = None
    raw_input: Path | None = None


@torch.no_grad()
def rollout(model: nn.Module, context: np.ndarray, horizon: int, steps: int) -> np.ndarray:
    """Predict `steps` frames after context (T, S, S): in chunks of the trained horizon, each chunk's predictions
    becoming the newest context frames of the next (autoregressive beyond the horizon)."""
    window = torch.from_numpy(context.astype(np.float32))[None, :, None]
    out: list[np.ndarray] = []
    while len(out) < steps:
        pred = model(window, future=horizon)
        out.extend(pred[0, :, 0].numpy())
        window = torch.cat([window, pred], dim=1)[:, -context.shape[0] :]
    return np.stack(out[:steps])


def _bubble_table(pred: np.ndarray, persistence: np.ndarray, target: np.ndarray, detector: DetectorConfig) -> dict[str, np.ndarray]:
    """Per-lead bubble metrics (bubbles.evaluation.bubbles) of the prediction and of persistence."""
    table: dict[str, np.ndarray] = {}
    for prefix, frames in (("", pred), ("persistence_", persistence)):
        meter = BubbleMeter(len(target))
        meter.add(frames[None], target[None], detector)
        for k in ("bubble_f1", "bubble_count_error", "bubble_diameter_error_px", "bubble_centroid_error_px", "sharpness"):
            table[prefix + k] = np.array(meter.leads(target.shape[1])[k])
    return table


def _frames(request: PredictRequest, size: int, tmp: Path) -> tuple[FrameCache, str]:
    if request.raw_input is not None:
        store_path = tmp / "input.zarr"
        ingest(IngestRequest(request.raw_input.resolve(), store_path, sequence="input"))
        return FrameCache(FrameStore.open(store_path), size), "input"
    if request.store is None or request.sequence is None:
        raise UserError("predict: give --store and --sequence, or --input with a folder of frames or a video")
    store = FrameStore.open(request.store)
    if request.sequence not in store.sequences:
        raise UserError(f"{request.store}: no sequence {request.sequence!r} (have: {', '.join(sorted(store.sequences))})")
    return FrameCache(store, size), request.sequence


def _gif(path: Path, context: np.ndarray, pred: np.ndarray, target: np.ndarray | None) -> None:
    """Input frames, then predicted | target side by side (target blank where the recording ends)."""
    import imageio.v3 as iio

    blank = np.ones_like(context[0])
    frames = [np.concatenate([f, blank], axis=1) for f in context]
    for k, p in enumerate(pred):
        t = target[k] if target is not None and k < len(target) else blank
        frames.append(np.concatenate([p, t], axis=1))
    scale = max(1, 128 // context.shape[-1])
    big = [np.kron(f, np.ones((scale, scale))) for f in frames]
    iio.imwrite(path, [np.clip(np.rint(f * 255), 0, 255).astype(np.uint8) for f in big], duration=150, loop=0)


def predict(request: PredictRequest) -> dict[str, object]:
    """Write strip.png, rollout.gif, prediction.npy and (when the recording continues) metrics.csv / .json."""
    model, cfg, _ = load_bundle(request.model_dir)
    n_in, horizon, size = cfg.window.input_len, cfg.window.output_len, cfg.data.image_size
    steps = request.steps or horizon
    if steps > horizon and not request.autoregressive:
        raise UserError(f"--steps {steps} is beyond the trained horizon {horizon}: add --autoregressive to roll out")
    with tempfile.TemporaryDirectory() as tmp_name:
        cache, name = _frames(request, size, Path(tmp_name))
        total = cache.store.sequences[name].frames
        if request.start < 0 or request.start + n_in > total:
            raise UserError(f"--start {request.start}: the model needs {n_in} context frames and {name!r} has {total}")
        context = cache.frames(name, request.start, request.start + n_in).astype(np.float32) / 255.0
        end = min(total, request.start + n_in + steps)
        target = cache.frames(name, request.start + n_in, end).astype(np.float32) / 255.0 if end > request.start + n_in else None
        hints = cache.store.sequences[name].meta.extra.get("detector", {})
        detector = DetectorConfig().with_store_hints(hints if isinstance(hints, dict) else {})
    pred = rollout(model, context, horizon, steps)
    out = request.out.resolve()
    check_output_dir(out, "prediction")
    tmp = temp_sibling(out)
    summary: dict[str, object] = {"sequence": name, "start": request.start, "steps": steps, "horizon": horizon}
    try:
        np.save(tmp / "prediction.npy", pred)
        shown_target = target if target is not None else pred
        strip = prediction_strip(context, np.pad(shown_target, ((0, len(pred) - len(shown_target)), (0, 0), (0, 0)), constant_values=1.0), pred)
        strip.save(tmp / "strip.png")
        _gif(tmp / "rollout.gif", context, pred, target)
        if target is not None:
            bubble_strip(target, pred[: len(target)], detector).save(tmp / "bubbles.png")
        if target is not None:
            m = len(target)
            model_frames, persistence_frames = FrameMetrics(), FrameMetrics()
            persistence = np.repeat(context[-1:], m, axis=0)
            model_frames.add(pred[None, :m], target[None])
            persistence_frames.add(persistence[None], target[None])
            table = {k: model_frames.array(k)[0] for k in ("ssim", "psnr", "mse", "mae")}
            table |= {f"persistence_{k}": persistence_frames.array(k)[0] for k in ("ssim", "mse")}
            table |= _bubble_table(pred[:m], persistence, target, detector)
            with (tmp / "metrics.csv").open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["lead", *table])
                for k in range(m):
                    writer.writerow([k + 1, *(f"{table[c][k]:.6g}" for c in table)])
            summary["metrics"] = {c: [float(v) if np.isfinite(v) else None for v in table[c]] for c in table}
            (tmp / "metrics.json").write_text(json.dumps(summary, indent=1))
        replace_dir(tmp, out, "prediction")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary
