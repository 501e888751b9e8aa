"""Baselines: which optical-flow estimator, and what the evaluation costs beside training.

    python bench/baselines.py [--flow-size 128] [--flow-windows 40] [--cost-size 64] [--real STORE [--levels 1,2]]

1. Flow estimators on synthetic frames (default 128²): scikit-image's iterative Lucas-Kanade (`optical_flow_ilk`)
   and TV-L1 (`optical_flow_tvl1`), each followed by the same semi-Lagrangian advection, against persistence: MSE per
   lead 1..5 on the same windows and milliseconds per flow estimate (one pair of frames), interleaved so both share
   the machine's noise.
2. Evaluation cost per window at the seed configuration (3 x 64, 3x3, frame peepholes, 20->1, batch 4; default
   --cost-size 64): each baseline's forecast, the bubble metrics of one predicted frame, the model's forward pass
   and a training step; then, for the default store's split, one epoch's training time, the per-epoch validation
   (the model's own metrics, no baselines) as a share of it, and the final evaluation with every baseline.

3. With --real STORE (a store of recordings, calibrated at ingest): on every one-field sequence, at each pyramid
   level of --levels, MSE per lead 1..5 of persistence, the flow baseline before (ILK window H/16, the uncalibrated
   default) and after (window from the sequence's calibrated bubble diameter, baselines.flow_radius), and the
   variants a nowcasting practitioner would try: the mean motion of the last 2 and 3 pairs, a Gaussian-smoothed
   field, and TV-L1; from windows of 6 context frames starting every 3 frames.

Human-readable lines, then one JSON object as the very last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bubbles.data.store import FrameStore  # noqa: E402
from bubbles.data.synth import SynthConfig, synth_store  # noqa: E402
from bubbles.data.windows import DataConfig, SplitConfig, WindowConfig  # noqa: E402
from bubbles.data.splits import make_splits  # noqa: E402
from bubbles.evaluation import baselines  # noqa: E402
from bubbles.evaluation.bubbles import BubbleMeter, DetectorConfig  # noqa: E402
from bubbles.models import build_model  # noqa: E402
from bubbles.models.convlstm import ConvLSTMConfig  # noqa: E402

LEADS = 5


def _ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first-call allocations and oneDNN's kernel choice are not the steady cost
    began = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - began) / repeats * 1e3


def flow_choice(store: FrameStore, windows: int) -> dict[str, object]:
    """MSE per lead and ms per flow estimate for ILK and TV-L1, with persistence for scale."""
    rng = np.random.default_rng(0)
    names = sorted(store.sequences)
    picks = []
    for _ in range(windows):
        name = names[rng.integers(len(names))]
        start = int(rng.integers(0, store.sequences[name].frames - 2 - LEADS))
        picks.append(store.read(name, 0, start, start + 2 + LEADS).astype(np.float32) / 255)
    mse = {k: np.zeros(LEADS) for k in ("persistence", "ilk", "tvl1")}
    seconds = {"ilk": 0.0, "tvl1": 0.0}
    for frames in picks:
        context, target = frames[None, :2], frames[2:]
        mse["persistence"] += ((baselines.persistence(context, LEADS)[0] - target) ** 2).mean(axis=(1, 2))
        for method in ("ilk", "tvl1"):  # interleaved: both see the same load
            began = time.perf_counter()
            u = baselines.motion_field(frames[0], frames[1], method)
            seconds[method] += time.perf_counter() - began
            mse[method] += ((baselines.advect(frames[1], u, LEADS) - target) ** 2).mean(axis=(1, 2))
    return {
        "mse_per_lead": {k: [round(float(v), 6) for v in m / windows] for k, m in mse.items()},
        "ms_per_pair": {k: round(s / windows * 1e3, 1) for k, s in seconds.items()},
    }


def _variant_field(context: np.ndarray, kind: str, radius: int) -> np.ndarray:
    """The motion field of one practitioner's variant from a window's context frames (T, H, W)."""
    from scipy.ndimage import gaussian_filter

    if kind == "tvl1":
        return baselines.motion_field(context[-2], context[-1], "tvl1")
    if kind.startswith("pairs"):  # mean motion of the last k pairs
        k = int(kind[-1])
        return np.mean([baselines.motion_field(context[-j - 1], context[-j], "ilk", radius) for j in range(1, k + 1)], axis=0)
    u = baselines.motion_field(context[-2], context[-1], "ilk", radius)
    return np.stack([gaussian_filter(c, radius / 2) for c in u])  # "smoothed"


def real_flow(store: FrameStore, levels: list[int]) -> dict[str, object]:
    """Persistence, flow before / after the calibrated window, and variants, on a store of recordings."""
    context_len, out = 6, {}
    for name, info in sorted(store.sequences.items()):
        if len(info.fields) != 1:
            continue
        typical = float(info.meta.extra.get("detector", {}).get("typical_diameter", 0.0))
        for level in levels:
            if level >= len(info.level_sizes):
                continue
            frames = store.read(name, level).astype(np.float32) / 255
            h = frames.shape[1]
            after = baselines.flow_radius(h, typical * h)
            rows = {k: np.zeros(LEADS) for k in ("persistence", "flow before", "flow after", "pairs2", "pairs3", "smoothed", "tvl1")}
            starts = range(0, len(frames) - context_len - LEADS + 1, 3)
            for t in starts:
                context, target = frames[t : t + context_len], frames[t + context_len : t + context_len + LEADS]
                mse = lambda f: ((f - target) ** 2).mean(axis=(1, 2))  # noqa: E731
                rows["persistence"] += mse(baselines.persistence(context[None], LEADS)[0])
                rows["flow before"] += mse(baselines.flow_extrapolation(context[None], LEADS)[0])
                rows["flow after"] += mse(baselines.flow_extrapolation(context[None], LEADS, scale=typical * h)[0])
                for kind in ("pairs2", "pairs3", "smoothed", "tvl1"):
                    rows[kind] += mse(baselines.advect(context[-1], _variant_field(context, kind, after), LEADS))
            out[f"{name}@{h}x{frames.shape[2]}"] = {
                "windows": len(starts), "radius_before": baselines.flow_radius(h), "radius_after": after,
                "mse_per_lead": {k: [round(float(v), 6) for v in r / len(starts)] for k, r in rows.items()},
            }
    return out


def evaluation_cost(store_path: Path, size: int) -> dict[str, object]:
    """Per-window costs at the seed configuration, and their shares of an epoch on this store's split."""
    window = WindowConfig(input_len=20, output_len=1)
    splits = make_splits(DataConfig(store=str(store_path), image_size=size, split=SplitConfig(val_fraction=0.25)), window)
    cfg = ConvLSTMConfig(layers=3, hidden=(64,), kernel=3, peephole="frame", mode="seq2one", frame_size=(size, size))
    model = build_model("convlstm", cfg)
    batch = 4
    xs, ys = zip(*(splits.val[i] for i in range(batch)))
    x, y = torch.stack(xs), torch.stack(ys)
    inputs, target = x[:, :, 0].numpy(), y[:, :, 0].numpy()
    mean_frame = inputs.mean(axis=(0, 1))
    per_window = {
        name: _ms(lambda name=name: baselines.forecast(name, inputs, 1, mean_frame), 5) / batch
        for name in baselines.BASELINES
    }
    detector = DetectorConfig()
    per_window["bubble metrics (one forecast)"] = _ms(lambda: BubbleMeter(1).add(target, target, detector), 3) / batch
    model.eval()
    with torch.no_grad():
        per_window["model forward"] = _ms(lambda: model(x, future=1), 2) / batch
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)

    def step() -> None:
        optimizer.zero_grad()
        pred = model(x, future=1)
        pred = pred[0] if isinstance(pred, tuple) else pred
        torch.nn.functional.mse_loss(pred, y, reduction="sum").backward()
        optimizer.step()

    per_window["training step"] = _ms(step, 2) / batch
    n_train, n_val = len(splits.train), len(splits.val)
    epoch_s = per_window["training step"] * n_train / 1e3
    validation_s = (per_window["model forward"] + per_window["bubble metrics (one forecast)"]) * n_val / 1e3
    baseline_ms = sum(per_window[b] for b in baselines.BASELINES)
    final_s = (per_window["model forward"] + baseline_ms + 5 * per_window["bubble metrics (one forecast)"]) * n_val / 1e3
    return {
        "size": size, "train_windows": n_train, "val_windows": n_val,
        "ms_per_window": {k: round(v, 2) for k, v in per_window.items()},
        "epoch_training_s": round(epoch_s, 1), "validation_per_epoch_s": round(validation_s, 1),
        "validation_share_of_epoch": round(validation_s / epoch_s, 4),
        "final_evaluation_s": round(final_s, 1), "final_evaluation_in_epochs": round(final_s / epoch_s, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--flow-size", type=int, default=128)
    ap.add_argument("--flow-windows", type=int, default=40)
    ap.add_argument("--cost-size", type=int, default=64)
    ap.add_argument("--real", type=Path, help="a store of recordings (calibrated at ingest) to run part 3 on")
    ap.add_argument("--levels", default="1,2", help="pyramid levels of --real to run part 3 at")
    ap.add_argument("--skip-cost", action="store_true", help="skip part 2")
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench-baselines-") as tmp:
        flow_store = Path(tmp) / "flow.zarr"
        synth_store(str(flow_store), SynthConfig(sequences=4, frames=80, size=args.flow_size, seed=1), workers=2)
        flow = flow_choice(FrameStore.open(flow_store), args.flow_windows)
        print(f"flow estimators at {args.flow_size}², {args.flow_windows} windows, MSE at leads 1..{LEADS}:")
        for name, row in flow["mse_per_lead"].items():  # type: ignore[union-attr]
            ms = flow["ms_per_pair"].get(name)  # type: ignore[union-attr]
            print(f"  {name:12s} " + " ".join(f"{v:.5f}" for v in row) + (f"   {ms} ms per pair" if ms else ""))
        cost: dict[str, object] = {}
        if not args.skip_cost:
            cost_store = Path(tmp) / "default.zarr"
            synth_store(str(cost_store), SynthConfig(), workers=2)  # the default store, as `sweep` makes it
            cost = evaluation_cost(cost_store, args.cost_size)
    if cost:
        print(f"seed configuration at {cost['size']}², per window (ms):")
        for name, ms in cost["ms_per_window"].items():  # type: ignore[union-attr]
            print(f"  {name:30s} {ms:10.2f}")
        print(f"default store: {cost['train_windows']} training / {cost['val_windows']} validation windows; "
              f"epoch {cost['epoch_training_s']} s, validation {cost['validation_per_epoch_s']} s "
              f"({100 * cost['validation_share_of_epoch']:.1f}% of the epoch), final evaluation with every baseline "
              f"{cost['final_evaluation_s']} s ({cost['final_evaluation_in_epochs']} epochs)")
    real = real_flow(FrameStore.open(args.real), [int(v) for v in args.levels.split(",")]) if args.real else {}
    for key, entry in real.items():
        print(f"{key}: {entry['windows']} windows, ILK radius {entry['radius_before']} px before, "
              f"{entry['radius_after']} px after; MSE at leads 1..{LEADS}:")
        for name, row in entry["mse_per_lead"].items():  # type: ignore[index]
            print(f"  {name:12s} " + " ".join(f"{v:.5f}" for v in row))
    print(json.dumps({"flow": flow, "cost": cost, "real": real}))


if __name__ == "__main__":
    main()
