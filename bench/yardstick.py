"""What the per-epoch yardstick costs beside an epoch of training, at a search space's seed configuration.

    python bench/yardstick.py [--space search_spaces/convlstm.yaml] [--seed-point 0] [--batches 6] [--repeats 3]

The space's protocol (evaluate: section, or its defaults) on the space's store (the default synthetic store is
made if missing), and its seed point's trial: the per-epoch yardstick (its fixed subset of protocol windows: the
model's rollout to every protocol lead, resizing, SSIM / MSE / bubble F1 against the cached baselines) is timed
side by side with training batches of the same trial, interleaved so that both share the machine's noise. An
epoch's time is the measured seconds per training batch times the trial's batches per epoch (its
max_train_windows, or all its training windows). Human-readable lines, then one JSON object as the very last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bubbles.data.splits import make_splits  # noqa: E402
from bubbles.evaluation.yardstick import Yardstick  # noqa: E402
from bubbles.models import build_model  # noqa: E402
from bubbles.training.train import loss_fn  # noqa: E402
from study.space import load_space  # noqa: E402
from study.yardstick import open_store, protocol_of  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--space", type=Path, default=Path("search_spaces/convlstm.yaml"))
    ap.add_argument("--seed-point", type=int, default=0)
    ap.add_argument("--batches", type=int, default=6, help="training batches timed per repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--windows", type=int, default=0, help="protocol windows (0: the space's); the per-epoch subset "
                    "is the same size either way, fewer only shortens the one-off baseline scoring")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not Path("data/synthetic.zarr").exists():
        from bubbles.data.synth import SynthConfig, synth_store

        synth_store(str(Path("data/synthetic.zarr").resolve()), SynthConfig(), workers=1)
    space = load_space(args.space)
    protocol = protocol_of(space, open_store(space))
    if args.windows:
        protocol = replace(protocol, windows=max(args.windows, protocol.epoch_windows))
    cfg = space.trial_config(space.seed_points[args.seed_point])
    splits = make_splits(cfg.data, cfg.window)
    cfg = cfg.at_frame_size(splits.frame_size).at_fields(splits.channels, splits.targets)
    torch.manual_seed(0)
    model = build_model(cfg.model_name, cfg.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    yardstick = Yardstick(protocol, splits.val.cache.store, splits.segments.val, "val", splits.segments.train)
    began = time.perf_counter()
    yardstick.baselines()
    baseline_s = time.perf_counter() - began
    windows = min(len(splits.train), cfg.train.max_train_windows or len(splits.train))
    batches_per_epoch = -(-windows // cfg.train.batch_size)
    loader = torch.utils.data.DataLoader(splits.train, batch_size=cfg.train.batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    batch_s: list[float] = []
    score_s: list[float] = []
    yardstick.score(model, splits.val, cfg.train.batch_size, epoch=True)  # warm-up: target bubbles, caches
    it = iter(loader)
    for _ in range(args.repeats):
        model.train()
        began = time.perf_counter()
        for _ in range(args.batches):
            x, y = next(it)
            optimizer.zero_grad()
            loss = loss_fn(cfg.train.loss, model(x, future=y.shape[1], target=y), y, cfg.train)
            loss.backward()
            optimizer.step()
        batch_s.append((time.perf_counter() - began) / args.batches)
        began = time.perf_counter()
        yardstick.score(model, splits.val, cfg.train.batch_size, epoch=True)
        score_s.append(time.perf_counter() - began)
    epoch = statistics.median(batch_s) * batches_per_epoch
    score = statistics.median(score_s)
    w = cfg.window
    print(f"trial: {cfg.model_name} {cfg.model.label()} {w.input_len}->{w.output_len} at {splits.frame_size[0]}x{splits.frame_size[1]}, "
          f"{windows} training windows per epoch in {batches_per_epoch} batches of {cfg.train.batch_size}")
    print(f"protocol: leads {protocol.leads[0]}..{protocol.horizon} at {protocol.size[0]}x{protocol.size[1]}, "
          f"{len(yardstick.windows)} windows, {protocol.epoch_windows} per epoch; baselines scored once in {baseline_s:.1f} s")
    print(f"epoch (estimated from {args.batches} x {args.repeats} batches): {epoch:.1f} s; per-epoch yardstick: {score:.2f} s "
          f"= {100 * score / epoch:.1f}% of an epoch")
    print(json.dumps({"space": str(args.space), "trial": f"{cfg.model_name} {w.input_len}->{w.output_len} {splits.frame_size[0]}px",
                      "protocol_leads": len(protocol.leads), "protocol_size": list(protocol.size), "epoch_windows": protocol.epoch_windows,
                      "batch_s": statistics.median(batch_s), "batches_per_epoch": batches_per_epoch, "epoch_s": epoch,
                      "yardstick_epoch_s": score, "ratio": score / epoch, "baselines_once_s": baseline_s}))


if __name__ == "__main__":
    main()
