"""What validating costs beside an epoch of training at native scale (114x950, the flow-boiling rendering's size).

    python bench/native_eval.py [--store DIR] [--train-windows 16] [--epoch-val-windows 8] [--epoch-windows 4]
                                [--frames 80] [--repeats 1] [--threads 1]

A synthetic store of two 114x950 sequences (made under --store if missing; split by sequence, one for validation)
and a ConvLSTM trial at native size (1 layer, 16 hidden, 4->4, batch 4). Side by side in one run, interleaved so
both share the machine's load, on the same model:

- epoch: one training epoch of --train-windows windows;
- before: what every epoch cost until epoch_val_windows existed: validation on every validation window
  (max_val_windows 0) plus the per-epoch yardstick at the study's default subset (8 protocol windows);
- after: validation on --epoch-val-windows evenly spaced windows (epoch_val_windows) plus the per-epoch yardstick at
  --epoch-windows (evaluate.epoch_windows) — subsets the protocol allows: the end-of-trial evaluation and the
  trial-end yardstick still score every window.

One-off costs, paid once per trial (or once per study) and not per epoch, are timed apart: the baselines on every
protocol window (cached) and the target frames' bubbles (detected once, reused every epoch). Ratios are what to
compare: the machine is shared. Human-readable lines, then one JSON object as the very last line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bubbles.config import trial_config  # noqa: E402
from bubbles.data.splits import make_splits  # noqa: E402
from bubbles.data.synth import SynthConfig, synth_store  # noqa: E402
from bubbles.evaluation.bubbles import detect  # noqa: E402
from bubbles.evaluation.evaluate import _TARGET_BUBBLES, detectors, subset, validate  # noqa: E402
from bubbles.models import build_model  # noqa: E402
from bubbles.training.optim import make_optimizer  # noqa: E402
from bubbles.training.train import _loader, own_yardstick, train_one_epoch  # noqa: E402

SIZE = (114, 950)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, default=Path("data/native_114x950.zarr"))
    ap.add_argument("--frames", type=int, default=80, help="frames per sequence (the validation one gives frames-7 windows)")
    ap.add_argument("--train-windows", type=int, default=16, help="training windows per epoch (max_train_windows)")
    ap.add_argument("--epoch-val-windows", type=int, default=8)
    ap.add_argument("--epoch-windows", type=int, default=4, help="the per-epoch yardstick's subset after")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.store.exists():
        synth_store(str(args.store.resolve()), SynthConfig(sequences=2, frames=args.frames, size=SIZE, seed=3), workers=1)
    cfg = trial_config({"store": str(args.store), "image_size": SIZE[0], "split": "sequence", "val": ["seq001"],
                        "window": "4->4", "layers": 1, "hidden": 16, "batch_size": 4, "epochs": 1,
                        "max_train_windows": args.train_windows})
    splits = make_splits(cfg.data, cfg.window)
    cfg = cfg.at_frame_size(splits.frame_size).at_fields(splits.channels, splits.targets)
    torch.manual_seed(0)
    model = build_model(cfg.model_name, cfg.model)
    optimizer = make_optimizer(model.parameters(), cfg.train)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    yardstick = own_yardstick(replace(cfg, train=replace(cfg.train, max_val_windows=64)), splits)
    before_ys, after_ys = (replace(yardstick.protocol, epoch_windows=n) for n in (8, args.epoch_windows))

    began = time.perf_counter()
    yardstick.baselines()
    baselines_s = time.perf_counter() - began
    began = time.perf_counter()
    targets = _TARGET_BUBBLES.setdefault(splits.val, {})
    every = subset(len(splits.val), 0)
    for i, found in zip(every, detectors(splits.val, every)):
        y = splits.val[i][1][:, 0].numpy()
        for k in range(len(y)):
            targets[(i, k)] = detect(y[k], found)
    targets_s = time.perf_counter() - began

    epoch_s, before_s, after_s = [], [], []
    for repeat in range(args.repeats):
        began = time.perf_counter()
        loader = _loader(splits, cfg.train, repeat, torch.device("cpu"))
        train_one_epoch(model, loader, optimizer, scaler, cfg.train, repeat, None, cfg.family, len(loader))
        epoch_s.append(time.perf_counter() - began)
        for protocol, windows, out in ((after_ys, args.epoch_val_windows, after_s), (before_ys, 0, before_s)):
            yardstick.protocol = protocol
            began = time.perf_counter()
            validate(model, splits.val, cfg.train.batch_size, windows)
            yardstick.score(model, splits.val, cfg.train.batch_size, epoch=True)
            out.append(time.perf_counter() - began)
    epoch, before, after = (statistics.median(v) for v in (epoch_s, before_s, after_s))
    load = os.getloadavg()
    print(f"trial: {cfg.model_name} {cfg.model.label()} 4->4 at {SIZE[0]}x{SIZE[1]}, {args.train_windows} training windows "
          f"per epoch; {len(splits.val)} validation windows; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; "
          f"{args.threads} torch thread(s)")
    print(f"once per trial (or study): baselines on {len(yardstick.windows)} protocol windows {baselines_s:.1f} s, "
          f"target bubbles of {len(every)} windows {targets_s:.1f} s")
    print(f"epoch (training) {epoch:.1f} s")
    print(f"before: validation on all {len(splits.val)} windows + yardstick on 8: {before:.1f} s = {before / epoch:.0%} of an epoch")
    print(f"after:  validation on {args.epoch_val_windows} + yardstick on {args.epoch_windows}: {after:.1f} s = "
          f"{after / epoch:.0%} of an epoch ({before / after:.1f}x less)")
    print(json.dumps({"size": list(SIZE), "train_windows": args.train_windows, "val_windows": len(splits.val),
                      "epoch_val_windows": args.epoch_val_windows, "epoch_windows": args.epoch_windows, "epoch_s": epoch,
                      "before_s": before, "after_s": after, "before_ratio": before / epoch, "after_ratio": after / epoch,
                      "baselines_once_s": baselines_s, "target_bubbles_once_s": targets_s, "load": list(load)}))


if __name__ == "__main__":
    main()
