"""Families against the baselines on held-out conditions, per lead: does moving the bubbles beat painting them?

    python bench/families.py train evolution --store data/synthetic.zarr --out runs/bench-families
    python bench/families.py train convlstm  --store data/synthetic.zarr --out runs/bench-families   # (in parallel)
    python bench/families.py train simvp     --store data/synthetic.zarr --out runs/bench-families
    python bench/families.py table --store data/synthetic.zarr --out runs/bench-families --strip docs/strip.png

`train COLUMN` trains one column with the project's own `train()` on the store's condition split (the same split,
window, frame size, loss, epochs, training windows and batch for every column: the same budget) and keeps its
evaluation (the project's `evaluate()`: the model and every baseline on the same held-out windows). `table` puts
the columns side by side per lead — MSE, SSIM, bubble F1, bubble diameter error and sharpness for every column and
every baseline (the baselines' bubble metrics from the same BubbleMeter the evaluation uses) — with each model's
skill against the strongest baseline per lead, and draws one held-out window as flow, ConvLSTM and evolution
strips side by side. Markdown, then one JSON object as the very last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bubbles.config import from_json, trial_config  # noqa: E402
from bubbles.data.splits import make_splits  # noqa: E402
from bubbles.evaluation import baselines  # noqa: E402
from bubbles.evaluation.bubbles import BubbleMeter  # noqa: E402
from bubbles.evaluation.evaluate import Evaluation, detectors, evaluate, subset, training_mean_frame  # noqa: E402
from bubbles.evaluation.figures import LABEL_WIDTH, _tile, motion_colours  # noqa: E402
from bubbles.models import build_model  # noqa: E402
from bubbles.models.warp import predict_with_motion  # noqa: E402
from bubbles.training.train import BEST, load_checkpoint, train  # noqa: E402

# Each column's own sizes: small enough for a shared CPU, the same order of parameters (0.1-0.5 M).
COLUMNS: dict[str, dict[str, object]] = {
    "evolution": {"model": "evolution", "ev_width": 16, "ev_depth": 2, "motion_scales": 2, "substeps": 2, "smoothness": 0.01},
    "convlstm": {"model": "convlstm", "layers": 2, "hidden": 16, "peephole": "channel", "norm": "group"},
    "simvp": {"model": "simvp", "hid_s": 16, "hid_t": 64, "n_s": 2, "n_t": 2, "mlp_ratio": 4.0},
}


def common(args: argparse.Namespace) -> dict[str, object]:
    """What every column shares: data, split, window, size, loss and the training budget."""
    return {
        "store": str(Path(args.store).resolve()), "split": "condition", "val_fraction": 0.25, "image_size": args.size,
        "window": args.window, "epochs": args.epochs, "max_train_windows": args.windows, "max_val_windows": args.val_windows,
        "batch_size": 8, "lr": 3e-3, "loss": "mse+gdl", "gdl_weight": 0.1, "seed": 0, "device": "cpu",
        "channels": args.fields, "target_fields": args.fields,
    }


def run_column(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    cfg = trial_config(common(args) | COLUMNS[args.column], "bench")
    began = time.perf_counter()
    result = train(cfg, Path(args.out) / args.column,
                   report=lambda e, c, f: print(f"{args.column}: {e.line(cfg.train.epochs, 0, 0)}", flush=True))
    print(f"{args.column}: {result.parameters:,} parameters, {time.perf_counter() - began:.0f} s", flush=True)


def baseline_bubbles(args: argparse.Namespace) -> dict[str, dict[str, tuple[float, ...]]]:
    """Each baseline's per-lead bubble metrics on the held-out windows the columns were evaluated on."""
    cfg = trial_config(common(args) | COLUMNS["evolution"], "bench")
    splits = make_splits(cfg.data, cfg.window)
    val, horizon = splits.val, cfg.window.output_len
    mean_frame = training_mean_frame(splits)
    meters = {b: BubbleMeter(horizon) for b in baselines.BASELINES}
    targets: dict = {}
    indices = subset(len(val), args.val_windows)
    c = val.target_inputs[0]
    for start in range(0, len(indices), 8):
        idx = indices[start : start + 8]
        xs, ys = zip(*(val[i] for i in idx))
        x, y = torch.stack(xs)[:, :, c].numpy(), torch.stack(ys)[:, :, 0].numpy()
        for b, meter in meters.items():
            meter.add(baselines.forecast(b, x, horizon, mean_frame), y, detectors(val, idx), targets, idx)
    return {b: m.leads(val.cache.size[0]) for b, m in meters.items()}


def load(out: Path, column: str) -> torch.nn.Module:
    """A column's best.pt, rebuilt from the config saved with it."""
    state = load_checkpoint(out / column / BEST, torch.device("cpu"))
    cfg = from_json(state["config"])
    model = build_model(cfg.model_name, cfg.model)
    model.load_state_dict(state["model"])
    return model.eval()


def evaluations(args: argparse.Namespace) -> dict[str, Evaluation]:
    """Each trained column's best.pt evaluated now, by this checkout's evaluate(), on the same held-out windows."""
    torch.set_num_threads(1)
    out = Path(args.out)
    cfg = trial_config(common(args) | COLUMNS["evolution"], "bench")
    splits = make_splits(cfg.data, cfg.window)
    mean_frame = training_mean_frame(splits)
    return {c: evaluate(load(out, c), splits.val, 8, args.val_windows, mean_frame=mean_frame)
            for c in COLUMNS if (out / c / BEST).exists()}


def table(args: argparse.Namespace) -> None:
    evals = evaluations(args)
    first = next(iter(evals.values()))
    bub = baseline_bubbles(args)
    leads = range(len(first.model.mse))
    rows: dict[str, dict[str, list[float]]] = {}
    for c, ev in evals.items():
        rows[c] = {"mse": list(ev.model.mse), "ssim": list(ev.model.ssim), "sharpness": list(ev.model.sharpness),
                   "bubble_f1": list(ev.bubbles["bubble_f1"]), "diameter": list(ev.bubbles["bubble_diameter_error_px"])}
    for b, m in first.baselines.items():
        rows[b] = {"mse": list(m.mse), "ssim": list(m.ssim), "sharpness": list(m.sharpness),
                   "bubble_f1": list(bub[b]["bubble_f1"]), "diameter": list(bub[b]["bubble_diameter_error_px"])}
    names = list(rows)
    print(f"{first.windows} held-out windows, {args.window}, {args.size} px, every column {args.epochs} epochs x "
          f"{args.windows} windows (batch 8, Adam 3e-3, mse+gdl 0.1)\n")
    for metric, label, fmt in [("mse", "MSE", "{:.5f}"), ("ssim", "SSIM", "{:.3f}"), ("bubble_f1", "bubble F1", "{:.3f}"),
                               ("diameter", "bubble diameter error px", "{:.2f}"), ("sharpness", "sharpness", "{:.2f}")]:
        print(f"{label} per lead:\n\n| lead | {' | '.join(names)} |\n|---|{'---|' * len(names)}")
        for k in leads:
            print(f"| {k + 1} | " + " | ".join(fmt.format(rows[n][metric][k]) for n in names) + " |")
        print()
    print(f"skill against the strongest baseline (by MSE, named) per lead:\n\n| lead | strongest | {' | '.join(evals)} |\n|---|---|{'---|' * len(evals)}")
    for k in leads:
        print(f"| {k + 1} | {first.strongest[k]} | " + " | ".join(f"{ev.skill_vs_strongest[k]:+.3f}" for ev in evals.values()) + " |")
    print()
    if "evolution" in evals:
        ev = rows["evolution"]
        goal = {k + 1: {"mse": ev["mse"][k] < rows["flow"]["mse"][k], "bubble_f1": ev["bubble_f1"][k] > rows["flow"]["bubble_f1"][k],
                        "sharpness": ev["sharpness"][k] >= 0.9} for k in leads}
        print("goal (evolution beats flow on MSE and bubble F1, sharpness >= 0.9) per lead: "
              + ", ".join(f"{k}: {'yes' if all(g.values()) else 'no (' + ', '.join(n for n, ok in g.items() if not ok) + ')'}" for k, g in goal.items()))
    if args.strip:
        strip(args, Path(args.strip))
    print(json.dumps({"size": args.size, "window": args.window, "epochs": args.epochs, "windows": args.windows,
                      "held_out_windows": first.windows, "per_lead": rows,
                      "skill_vs_strongest": {c: list(ev.skill_vs_strongest) for c, ev in evals.items()}, "strongest": list(first.strongest)}))


@torch.no_grad()
def strip(args: argparse.Namespace, path: Path) -> None:
    """One held-out window: input, target, then flow, ConvLSTM and evolution with |error|, evolution's motion."""
    from PIL import Image, ImageDraw

    out = Path(args.out)
    cfg = trial_config(common(args) | COLUMNS["evolution"], "bench")
    splits = make_splits(cfg.data, cfg.window)
    val = splits.val
    index = subset(len(val), args.val_windows)[args.strip_window]
    x, y = val[index]
    c = val.target_inputs[0]
    horizon = y.shape[0]
    rows = [("input", x[-horizon:, c].numpy()), ("target", y[:, 0].numpy())]
    flow = baselines.forecast("flow", x[None, :, c].numpy(), horizon)[0]
    rows += [("flow", flow), ("|err|", 1 - np.clip(np.abs(flow - rows[1][1]) * 2, 0, 1))]
    motion = None
    for name in ("convlstm", "evolution"):
        pred, moved = predict_with_motion(load(out, name), x[None], horizon)
        frames = pred[0, :, 0].numpy()
        rows += [(name, frames), ("|err|", 1 - np.clip(np.abs(frames - rows[1][1]) * 2, 0, 1))]
        motion = moved[0].numpy() if moved is not None else motion
    h, w = rows[0][1].shape[-2:]
    scale = max(1, 96 // min(h, w))
    tiles = [np.repeat(_tile(frames, horizon, scale)[..., None], 3, axis=2) for _, frames in rows]
    labels = [label for label, _ in rows]
    if motion is not None:
        largest = float(np.hypot(motion[:, 0], motion[:, 1]).max())
        colours = motion_colours(motion, largest)
        row = np.ones((h * scale, horizon * (w * scale + 2), 3), np.float32)
        for k in range(horizon):
            row[:, k * (w * scale + 2) : k * (w * scale + 2) + w * scale] = np.kron(colours[k], np.ones((scale, scale, 1)))
        tiles.append(row)
        labels.append(f"motion\n<= {largest:.1f} px")
    gap = 4
    canvas = np.ones((sum(t.shape[0] + gap for t in tiles), LABEL_WIDTH + tiles[0].shape[1], 3), np.float32)
    top = 0
    for t in tiles:
        canvas[top : top + t.shape[0], LABEL_WIDTH:] = t
        top += t.shape[0] + gap
    image = Image.fromarray(np.clip(np.rint(canvas * 255), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    top = 0
    for label, t in zip(labels, tiles):
        draw.text((4, top + t.shape[0] // 2 - 6), label, fill=(0, 0, 0))
        top += t.shape[0] + gap
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    print(f"strip: window {index} of the held-out split ({val.condition_of(index)}) -> {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["train", "table"])
    parser.add_argument("column", nargs="?", choices=sorted(COLUMNS))
    parser.add_argument("--store", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--size", default="48")
    parser.add_argument("--window", default="10->5")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--windows", type=int, default=128, help="training windows per epoch (evenly spaced)")
    parser.add_argument("--val-windows", type=int, default=48)
    parser.add_argument("--fields", nargs="*", default=[], help="multi-field store: input = predicted fields")
    parser.add_argument("--strip", default="")
    parser.add_argument("--strip-window", type=int, default=10)
    args = parser.parse_args()
    if args.what == "train":
        run_column(args)
    else:
        table(args)


if __name__ == "__main__":
    main()
