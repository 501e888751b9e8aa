"""Per-lead tables of a trained trial against every baseline, with a 95% confidence interval over windows
(issue 27's real-data Show): MSE, bubble F1, sharpness, and for masks IoU and the vapour-fraction error.

    python bench/real_tables.py RUN_DIR [--split val|test] [--windows N] [--boot 1000]

RUN_DIR is a trial's --out directory (its checkpoint/best.pt carries the config). The split is rebuilt from that
config; the flow baseline's ILK radius is measured on training windows (as the yardstick measures its own) and the
climatology is the training frames' mean. The interval is a bootstrap over windows (resampling whole windows: the
metric of a resample is recomputed from its pooled sums, so bubble F1 stays 2TP / (2TP + FP + FN)). Windows of a
time split overlap, so the interval is narrower than the independent evidence warrants: read it as a lower bound
of the uncertainty.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bubbles.config import from_json  # noqa: E402
from bubbles.data.splits import make_splits  # noqa: E402
from bubbles.evaluation import baselines  # noqa: E402
from bubbles.evaluation.bubbles import detect, match, match_radius  # noqa: E402
from bubbles.evaluation.evaluate import detectors, is_mask, predict_batches, subset, training_mean_frame  # noqa: E402
from bubbles.evaluation.metrics import iou_frames, sharpness_frames, vapour_fraction_error  # noqa: E402
from bubbles.models import build_model  # noqa: E402
from bubbles.training.baseline_fit import training_flow_radius  # noqa: E402
from bubbles.training.train import load_checkpoint  # noqa: E402


def per_window(forecast: np.ndarray, target: np.ndarray, found: list, mask: bool) -> dict[str, np.ndarray]:
    """(N, M, H, W) forecast and target -> per window and lead: squared error, bubble tp/fp/fn, sharpness, IoU."""
    n, m, h = forecast.shape[:3]
    out = {"se": ((forecast - target) ** 2).mean(axis=(2, 3)),
           "sharp": sharpness_frames(forecast.reshape(-1, *forecast.shape[2:]), target.reshape(-1, *target.shape[2:])).reshape(n, m),
           "tp": np.zeros((n, m)), "fp": np.zeros((n, m)), "fn": np.zeros((n, m))}
    radius = match_radius(h)
    for w in range(n):
        for k in range(m):
            p, t = detect(forecast[w, k], found[w]), detect(target[w, k], found[w])
            pairs = len(match(p, t, radius))
            out["tp"][w, k], out["fp"][w, k], out["fn"][w, k] = pairs, len(p) - pairs, len(t) - pairs
    if mask:
        flat_f, flat_t = forecast.reshape(-1, *forecast.shape[2:]), target.reshape(-1, *target.shape[2:])
        out["iou"] = iou_frames(flat_f, flat_t).reshape(n, m)
        out["vf"] = vapour_fraction_error(flat_f, flat_t).reshape(n, m)
    return out


def statistic(rows: dict[str, np.ndarray], metric: str, pick: np.ndarray) -> np.ndarray:
    """A metric per lead over the windows `pick` (pooled sums for F1)."""
    if metric == "f1":
        tp, fp, fn = (rows[k][pick].sum(axis=0) for k in ("tp", "fp", "fn"))
        return np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), np.nan)
    key = {"mse": "se", "sharpness": "sharp", "iou": "iou", "vapour": "vf"}[metric]
    return np.nanmean(rows[key][pick], axis=0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--split", default="val", choices=("val", "test"))
    ap.add_argument("--windows", type=int, default=0, help="at most this many windows (evenly spaced); 0 = all")
    ap.add_argument("--boot", type=int, default=1000)
    args = ap.parse_args()
    state = load_checkpoint(args.run / "checkpoint" / "best.pt", torch.device("cpu"))
    cfg = from_json(state["config"])
    splits = make_splits(cfg.data, cfg.window)
    model = build_model(cfg.model_name, cfg.model)
    model.load_state_dict(state["model"])
    dataset = splits.val if args.split == "val" else splits.test
    if dataset is None or len(dataset) == 0:
        raise SystemExit(f"{args.run}: no {args.split} windows in this trial's split")
    mean = training_mean_frame(splits)
    radius = training_flow_radius(splits)
    mask = is_mask(dataset)
    indices = subset(len(dataset), args.windows)
    horizon = dataset.window.output_len
    names = ["model", *[b for b in baselines.BASELINES if b != "climatology" or mean is not None]]
    rows: dict[str, dict[str, list[np.ndarray]]] = {k: {} for k in names}
    for idx, x, y, pred in predict_batches(model, dataset, indices, 8):
        found = detectors(dataset, idx)
        forecasts = {"model": pred} | {b: baselines.forecast(b, x, horizon, mean, None, radius) for b in names[1:]}
        for key, f in forecasts.items():
            for metric, values in per_window(f.astype(np.float32), y, found, mask).items():
                rows[key].setdefault(metric, []).append(values)
    table = {k: {m: np.concatenate(v) for m, v in r.items()} for k, r in rows.items()}
    n = len(indices)
    rng = np.random.default_rng(0)
    picks = [rng.integers(0, n, n) for _ in range(args.boot)]
    everything = np.arange(n)
    print(f"# {args.run} ({cfg.model_name}), {args.split} split: {n} windows, frame {dataset.cache.size[0]}x{dataset.cache.size[1]}, "
          f"frame_step {cfg.window.frame_step}, flow ILK radius {radius} px (measured on training windows); "
          f"95% bootstrap interval over windows in brackets")
    metrics = ["mse", "f1", "sharpness"] + (["iou", "vapour"] if mask else [])
    for metric in metrics:
        print(f"\n| {metric} | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        point = {k: statistic(table[k], metric, everything) for k in names}
        boots = {k: np.stack([statistic(table[k], metric, p) for p in picks]) for k in names}
        for lead in range(horizon):
            cells = []
            for k in names:
                lo, hi = np.nanpercentile(boots[k][:, lead], [2.5, 97.5])
                fmt = "{:.5f}" if metric in ("mse", "vapour") else "{:.3f}"
                cells.append(f"{fmt.format(point[k][lead])} [{fmt.format(lo)}, {fmt.format(hi)}]")
            print(f"| {lead + 1} | " + " | ".join(cells) + " |")
        if metric in ("mse", "f1", "iou"):  # the model minus flow, paired per resample: is the difference real?
            sign = 1 if metric == "mse" else -1
            diff = np.stack([statistic(table["model"], metric, p) - statistic(table["flow"], metric, p) for p in picks])
            better = (sign * diff < 0).mean(axis=0)
            print(f"\nshare of resamples where the model beats flow on {metric}, per lead: " + ", ".join(f"{b:.2f}" for b in better))


if __name__ == "__main__":
    main()
