"""Run an exported model on real frames: rollouts (also beyond the trained horizon), pictures and metrics.

A model of several fields reads its input fields by name from the sequence; the top-level files show its first
predicted field (as for a one-field model) and `fields/<name>/` holds the pictures, frames and metrics of every
predicted field."""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bubbles.bundle import load_bundle, load_climatology
from bubbles.config import TrialConfig
from bubbles.errors import UserError
from bubbles.outputs import check_output_dir, replace_dir, temp_sibling
from bubbles.evaluation.bubbles import DetectorConfig, sequence_detector
from bubbles.evaluation import baselines
from bubbles.evaluation.verdict import TEST_VERDICT, Verdict
from bubbles.evaluation.scoring import Scores, strongest_skill
from bubbles.evaluation.yardstick import rollout as rollout_batch
from bubbles.evaluation.metrics import COLLAPSE_THRESHOLD, CollapseMeter
from bubbles.evaluation.figures import bubble_strip, prediction_strip
from bubbles.models.device import model_device
from bubbles.models.warp import predict_with_motion
from bubbles.data.ingest import IngestRequest, ingest
from bubbles.data.store import FrameStore
from bubbles.data.windows import FrameCache, split_segments
from bubbles.data.tiles import store_view, whole_size


BUBBLE_COLUMNS = ("bubble_f1", "bubble_count_error", "bubble_diameter_error_px", "bubble_centroid_error_px")


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
    crop: tuple[int, int, int, int] | None = None
    colormap: str | None = None  # --input is a colour-mapped rendering: inverted as ingest --colormap does
    frames: tuple[int | None, int | None, int] | None = None  # --input's source frames to keep, as ingest --frames
    detector: tuple[tuple[str, Any], ...] = ()  # bubble-detector settings over the bundle's and the store's


def rollout(model: nn.Module, context: np.ndarray, horizon: int, steps: int) -> np.ndarray:
    """Predict `steps` frames after context (T, C_in, H, W) -> (steps, C_out, H, W): in chunks of the trained
    horizon, each chunk's predictions becoming the newest context frames of the next (autoregressive beyond the
    horizon, which needs the predicted fields to be the input fields; the yardstick rolls out the same way)."""
    window = torch.from_numpy(context.astype(np.float32))[None].to(model_device(model))
    return rollout_batch(model, window, horizon, steps)[0].float().cpu().numpy()


@torch.no_grad()
def motion_rollout(model: nn.Module, context: np.ndarray, horizon: int, steps: int) -> np.ndarray | None:
    """The motion fields (steps, 2, H, W), pixels per frame, that moved each frame of `rollout`'s prediction, for a
    family that moves its frames (evolution); None for the others."""
    window = torch.from_numpy(context.astype(np.float32))[None].to(model_device(model))
    moves: list[np.ndarray] = []
    while len(moves) < steps:
        pred, motion = predict_with_motion(model, window, horizon)
        if motion is None:
            return None
        moves.extend(motion[0].float().cpu().numpy())
        window = torch.cat([window, pred], dim=1)[:, -context.shape[0] :]
    return np.stack(moves[:steps])


def aspect_note(native: tuple[int, int], size: tuple[int, int]) -> str:
    """A warning when frames of another aspect ratio are stretched to the model's H x W (more than 2 %)."""
    ratio = (native[1] / native[0]) / (size[1] / size[0])
    if abs(ratio - 1) <= 0.02:
        return ""
    return (f"the input's {native[0]}x{native[1]} frames are stretched to the model's {size[0]}x{size[1]} "
            f"(aspect {native[1] / native[0]:.2f} vs {size[1] / size[0]:.2f}); crop the input (--crop) to match")


def field_indices(cfg: TrialConfig, fields: tuple[str, ...], where: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Where the model's input and predicted fields lie among a sequence's fields. A one-field model on a one-field
    sequence takes it whatever the names (a camera clip given to a model trained on a simulation's dfun)."""
    channels, targets = cfg.data.channels, cfg.data.targets
    if not channels or (len(channels) == 1 and len(fields) == 1):
        return (0,), (0,)
    missing = [f for f in channels if f not in fields]
    if missing:
        raise UserError(f"{where}: no field {missing[0]!r}; the model reads [{', '.join(channels)}] and the sequence "
                        f"has [{', '.join(fields)}]")
    return tuple(fields.index(f) for f in channels), tuple(fields.index(f) for f in targets)


def held_out_sequence(store: FrameStore, cfg: TrialConfig) -> tuple[str, str]:
    """A sequence of `store` the model's split held out of training (its first test sequence, else its first
    validation one), and why it was chosen, in words."""
    segments = split_segments(store, cfg.data.split)
    for split, label in ((segments.test, "held out as this model's test split"), (segments.val, "held out as this model's validation split")):
        names = sorted({n for n, _, _ in split})
        if names:
            return names[0], f"{label} ({', '.join(names)}; --sequence picks another)"
    first = sorted(store.sequences)[0]
    return first, "the store's first sequence (this model's split holds none of its sequences out; --sequence picks another)"


def _frames(request: PredictRequest, size: tuple[int, int], tmp: Path, notes: list[str], cfg: TrialConfig | None = None
            ) -> tuple[FrameCache, str]:
    """The frames to predict from: the store's sequence, or --input ingested by the ingest rules (what ingest would
    say about it — repeated frames, a range set by outliers — goes to `notes`). A tile-trained model (`cfg` with a
    tile) reads them whole at its trained scale, their own aspect kept, whatever their size."""
    store, name = _source(request, tmp, notes)
    if cfg is not None and cfg.data.tile is not None and isinstance(cfg.data.image_size, int):
        size = whole_size(store.sequences[name].native_size, cfg.data.image_size, cfg.data.size_multiple, f"{store.path}/{name}")
        store = store_view(store, [name])  # the others may be smaller than this size: only this one is read
    return FrameCache(store, size), name


def _source(request: PredictRequest, tmp: Path, notes: list[str]) -> tuple[FrameStore, str]:
    """The store and sequence to predict from (--input ingested into a temporary store under tmp)."""
    if request.raw_input is not None:
        store_path = tmp / "input.zarr"
        try:
            ingest(IngestRequest(request.raw_input.resolve(), store_path, sequence="input", crop=request.crop,
                                 colormap=request.colormap, frames=request.frames), warn=notes.append)
        except UserError as exc:
            if "--field" in str(exc):  # ingest's advice names an option predict does not have
                raise UserError(f"{request.raw_input}: predict --input reads one-field recordings; for a simulation, "
                                "`ingest` it with --field into a store and predict with --store and --sequence") from None
            raise
        return FrameStore.open(store_path), "input"
    if request.store is None or request.sequence is None:
        raise UserError("predict: give --store (and --sequence), or --input with a folder of frames or a video")
    store = FrameStore.open(request.store)
    if request.sequence not in store.sequences:
        raise UserError(f"{request.store}: no sequence {request.sequence!r} (have: {', '.join(sorted(store.sequences))})")
    return store, request.sequence


def _gif(path: Path, context: np.ndarray, pred: np.ndarray, target: np.ndarray | None) -> None:
    """The context frames, then forecast | target side by side (target blank where the recording ends), each frame
    under a label that says which it is (context 3/4, forecast +1 | target +1)."""
    import imageio.v3 as iio

    blank = np.ones_like(context[0])
    frames = [np.concatenate([f, blank], axis=1) for f in context]
    labels = [(f"context {k + 1}/{len(context)}", "") for k in range(len(context))]
    for k, p in enumerate(pred):
        t = target[k] if target is not None and k < len(target) else blank
        frames.append(np.concatenate([p, t], axis=1))
        labels.append((f"forecast +{k + 1}", f"target +{k + 1}" if target is not None and k < len(target) else "no target"))
    scale = max(1, 128 // context.shape[-1])
    big = [np.clip(np.rint(np.kron(f, np.ones((scale, scale))) * 255), 0, 255).astype(np.uint8) for f in frames]
    iio.imwrite(path, [_labelled(f, left, right) for f, (left, right) in zip(big, labels)], duration=150, loop=0)


def _labelled(frame: np.ndarray, left: str, right: str) -> np.ndarray:
    """A grey frame with a white bar above it naming its two halves."""
    from PIL import Image, ImageDraw

    bar = 14
    canvas = Image.new("L", (frame.shape[1], frame.shape[0] + bar), 255)
    canvas.paste(Image.fromarray(frame), (0, bar))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 1), left, fill=0)
    if right:
        draw.text((frame.shape[1] // 2 + 2, 1), right, fill=0)
    return np.asarray(canvas)


def window_metrics(
    context: np.ndarray, pred: np.ndarray, target: np.ndarray, mean_frame: np.ndarray | None, detector: DetectorConfig
) -> dict[str, list]:
    """Per lead: the model's metrics, each baseline's (climatology when the bundle has its mean frame), bubble metrics
    of the model and each baseline, the strongest baseline by MSE and the skill against it and against persistence."""
    m = len(target)
    names = [b for b in baselines.BASELINES if b != "climatology" or mean_frame is not None]
    scale = detector.typical_diameter * context.shape[-2]  # the calibrated bubble size sets the flow's window
    forecasts = {"model": pred[None]} | {b: baselines.forecast(b, context[None], m, mean_frame, scale) for b in names}
    scores = Scores(list(forecasts), m)
    scores.add(forecasts, target[None], [detector])
    leads = {k: f.leads() for k, f in scores.frames.items()}
    found = {k: c.leads(target.shape[1]) for k, c in scores.bubbles.items()}
    table: dict[str, list] = {k: list(v) for k, v in asdict(leads["model"]).items() if len(v)}
    table |= {k: list(found["model"][k]) for k in BUBBLE_COLUMNS}
    for b in names:
        table |= {f"{b}_{k}": list(getattr(leads[b], k)) for k in ("mse", "ssim", "sharpness", "iou", "vapour_fraction_error")}
        table |= {f"{b}_bubble_f1": list(found[b]["bubble_f1"])}
    skill, strongest, skill_vs_strongest = strongest_skill(leads["model"].mse, {b: leads[b].mse for b in names})
    table |= {"strongest": list(strongest), "skill_vs_strongest": list(skill_vs_strongest), "skill_vs_persistence": list(skill["persistence"])}
    return table


def _json_number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None  # NaN (nothing matched, flat target) is no JSON


def rollout_collapse(pred: np.ndarray, target: np.ndarray) -> float:
    """The collapse score over the frames of one rollout: how much the prediction varies from lead to lead, per
    pixel, against how much the recording does (a rollout fading to a static picture scores near 0)."""
    meter = CollapseMeter()
    meter.update(pred[:, None], target[:, None])
    return float(meter.score())


def predict(request: PredictRequest) -> dict[str, object]:
    """Write strip.png, rollout.gif, prediction.npy and (when the recording continues) metrics.csv / .json."""
    model, cfg, saved = load_bundle(request.model_dir)
    n_in, horizon, size = cfg.window.input_len, cfg.window.output_len, cfg.frame_size
    steps = request.steps or horizon
    if steps > horizon and not request.autoregressive:
        raise UserError(f"--steps {steps} is beyond the trained horizon {horizon}: add --autoregressive to roll out")
    if steps > horizon and cfg.data.targets != cfg.data.channels:
        raise UserError(f"--autoregressive: this model predicts [{', '.join(cfg.data.targets)}] from "
                        f"[{', '.join(cfg.data.channels)}], so its predictions cannot become its next inputs; use --steps {horizon} or less")
    with tempfile.TemporaryDirectory() as tmp_name:
        notes: list[str] = []
        chosen = ""
        if request.raw_input is None and request.store is not None and request.sequence is None:
            picked, why = held_out_sequence(FrameStore.open(request.store), cfg)
            request, chosen = replace(request, sequence=picked), f"no --sequence: predicting {picked!r}, {why}"
        cache, name = _frames(request, size, Path(tmp_name), notes, cfg)
        total = cache.store.sequences[name].frames
        stretch = aspect_note(cache.store.sequences[name].native_size, cache.size)
        step = cfg.window.frame_step  # the model's frames are `step` stored frames apart: read them so
        need = (n_in - 1) * step + 1
        if request.start < 0 or request.start + need > total:
            last = f"the last valid start is {total - need}" if total >= need else "it is too short for this model"
            spacing = f" ({n_in} frames {step} apart: {need} stored frames)" if step > 1 else ""
            raise UserError(f"--start {request.start}: the model needs {n_in} context frames{spacing} and {name!r} has {total}; {last}")
        # --input is read through a temporary store: an error names the user's file, not that store.
        where = str(request.raw_input) if request.raw_input is not None else f"{cache.store.path}/{name}"
        inputs, outputs = field_indices(cfg, cache.store.sequences[name].fields, where)
        context = _channels(cache.frames(name, request.start, request.start + need)[::step], inputs)
        first = request.start + need - 1 + step  # the first predicted frame
        end = min(total, first + (steps - 1) * step + 1)
        target = _channels(cache.frames(name, first, end)[::step], outputs) if end > first else None
        detector = sequence_detector(cache.store.sequences[name].meta.extra, dict(cfg.data.detector) | dict(request.detector))
    pred, motion = rollout(model, context, horizon, steps), motion_rollout(model, context, horizon, steps)
    out = request.out.resolve()
    check_output_dir(out, "prediction")
    tmp = temp_sibling(out)
    summary: dict[str, object] = {"sequence": name, "start": request.start, "steps": steps, "horizon": horizon}
    if chosen:
        summary["chosen"] = chosen
    tested = (saved.get("yardstick") or {}).get(TEST_VERDICT)
    if tested:  # what the study measured on its test split, beside what this one window shows
        summary["test_against_baselines"] = tested
    if stretch or notes:
        summary["warnings"] = ([stretch] if stretch else []) + notes
    targets = cfg.data.targets or ("",)
    # The first predicted field's own past: the context shown and given to the baselines.
    own = [cfg.data.channels.index(f) if f in cfg.data.channels else 0 for f in targets]
    climatology = load_climatology(request.model_dir)
    if climatology is not None and tuple(climatology.shape[-2:]) != tuple(context.shape[-2:]):
        # A tile-trained model predicts any size whole; its export's mean frame is of the size it was validated at.
        notes.append(f"climatology left out: the export's mean frame is {climatology.shape[-2]}x{climatology.shape[-1]}, "
                     f"these frames are {context.shape[-2]}x{context.shape[-1]}")
        climatology = None
        summary["warnings"] = ([stretch] if stretch else []) + notes
    try:
        for k, field in enumerate(targets):
            where = tmp if k == 0 else tmp / "fields" / field
            where.mkdir(parents=True, exist_ok=True)
            table = _write_field(where, context[:, own[k]], pred[:, k], None if target is None else target[:, k],
                                 climatology if k == 0 else None, detector, motion)
            if len(targets) > 1:
                if k == 0:  # every field under fields/, the first one too, so each has the same files
                    shutil.copytree(tmp, tmp / "fields" / field, ignore=shutil.ignore_patterns("fields"))
                summary.setdefault("fields", {})[field] = _json_table(table) if table else {}  # type: ignore[union-attr]
            if k == 0 and table:
                summary["metrics"] = _json_table(table)
                mse = {b.removesuffix("_mse"): tuple(v) for b, v in table.items() if b.endswith("_mse") and b.removesuffix("_mse") in baselines.BASELINES}
                summary["against_baselines"] = Verdict(tuple(range(1, len(table["mse"]) + 1)), tuple(table["mse"]), mse).sentence()
                # Variation across one frame is undefined: a one-frame prediction has no collapse score (null).
                score = rollout_collapse(pred[: len(target), 0], target[:, 0]) if len(target) > 1 else float("nan")  # type: ignore[index, arg-type]
                summary["collapse_score"] = _json_number(score)
                summary["collapsed"] = bool(score < COLLAPSE_THRESHOLD)  # NaN (one frame): not collapsed, not known
        if target is not None:
            (tmp / "metrics.json").write_text(json.dumps(summary, indent=1))
        replace_dir(tmp, out, "prediction")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _channels(frames: np.ndarray, index: tuple[int, ...]) -> np.ndarray:
    """uint8 (T, H, W) or (T, C, H, W) frames -> float32 (T, len(index), H, W) in [0, 1]."""
    frames = frames[:, None] if frames.ndim == 3 else frames[:, list(index)]
    return frames.astype(np.float32) / 255.0


def _json_table(table: dict[str, list]) -> dict[str, list]:
    return {c: [v if isinstance(v, str) else _json_number(v) for v in table[c]] for c in table}


def _write_field(out: Path, context: np.ndarray, pred: np.ndarray, target: np.ndarray | None, climatology: np.ndarray | None,
                 detector: DetectorConfig, motion: np.ndarray | None = None) -> dict[str, list]:
    """One field's prediction.npy, strip.png, rollout.gif and, where the recording continues, bubbles.png and
    metrics.csv; returns the metrics table (empty without a target). A model that moves its frames also gets
    motion.npy (steps, 2, H, W: x and y pixels per frame) and the motion row in strip.png."""
    np.save(out / "prediction.npy", pred)
    if motion is not None:
        np.save(out / "motion.npy", motion)
    shown_target = target if target is not None else pred
    strip = prediction_strip(context, np.pad(shown_target, ((0, len(pred) - len(shown_target)), (0, 0), (0, 0)), constant_values=1.0), pred, motion)
    strip.save(out / "strip.png")
    _gif(out / "rollout.gif", context, pred, target)
    if target is None:
        return {}
    bubble_strip(target, pred[: len(target)], detector).save(out / "bubbles.png")
    table = window_metrics(context, pred[: len(target)], target, climatology, detector)
    with (out / "metrics.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["lead", *table])
        for k in range(len(target)):
            writer.writerow([k + 1, *(v[k] if isinstance(v[k], str) else f"{v[k]:.6g}" for v in table.values())])
    return table
