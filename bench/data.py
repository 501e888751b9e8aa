"""Data-path figures: synth speed, store size vs raw, window reads (Zarr cold / warm) vs in-memory numpy slicing,
vs what a training step consumes; and the persistence / context-median baselines on the synthetic data.

    python bench/data.py [--size 128] [--frames 400] [--sequences 8]

Human-readable lines, then one JSON object as the very last line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bubbles.evaluation import baselines, metrics  # noqa: E402
from bubbles.data.store import FrameStore  # noqa: E402
from bubbles.data.synth import SynthConfig, synth_store  # noqa: E402
from bubbles.data.windows import DataConfig, FrameCache, SplitConfig, WindowConfig  # noqa: E402
from bubbles.data.splits import make_splits  # noqa: E402


def windows_per_s(read, starts: list[tuple[str, int]], length: int) -> float:  # type: ignore[no-untyped-def]
    began = time.perf_counter()
    for name, s in starts:
        frames = read(name, s, s + length)
        frames.astype(np.float32)  # what the dataset does next, on both paths
    return len(starts) / (time.perf_counter() - began)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--sequences", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    out: dict[str, float] = {}
    tmp = Path(tempfile.mkdtemp())
    try:
        for size in sorted({args.size, 256}):
            cfg = SynthConfig(sequences=args.sequences, frames=args.frames, size=size, seed=0)
            began = time.perf_counter()
            synth_store(str(tmp / f"s{size}.zarr"), cfg, workers=args.workers)
            secs = time.perf_counter() - began
            out[f"synth_s_{size}"] = round(secs, 2)
            print(f"synth: {args.sequences} sequences x {args.frames} frames at {size}² on {args.workers} processes: {secs:.1f} s")
        path = tmp / f"s{args.size}.zarr"
        store = FrameStore.open(path)
        disk = sum(store.disk_bytes(n) for n in store.sequences)
        raw0 = sum(i.frames * i.native_size[0] * i.native_size[1] for i in store.sequences.values())
        raw_all = sum(i.frames * h * w for i in store.sequences.values() for h, w in i.level_sizes)
        out["store_vs_raw_level0"] = round(disk / raw0, 3)
        out["store_vs_raw_pyramid"] = round(disk / raw_all, 3)
        print(f"store: {disk / 2**20:.1f} MiB on disk; raw uint8 level 0 {raw0 / 2**20:.1f} MiB ({disk / raw0:.2f}x), "
              f"whole pyramid {raw_all / 2**20:.1f} MiB ({disk / raw_all:.2f}x)")

        length = 21  # 20 -> 1, the seed's window
        rng = np.random.default_rng(0)
        names = sorted(store.sequences)
        starts = [(names[rng.integers(len(names))], int(rng.integers(0, args.frames - length))) for _ in range(2000)]
        memory = {n: store.read(n, 0) for n in names}
        numpy_rate = windows_per_s(lambda n, a, b: memory[n][a:b], starts, length)
        cold_cache = FrameCache(FrameStore.open(path), (args.size, args.size))
        began = time.perf_counter()
        cold_rate = windows_per_s(cold_cache.frames, starts, length)
        cold_total = time.perf_counter() - began
        warm_rate = windows_per_s(cold_cache.frames, starts, length)
        stream = FrameCache(FrameStore.open(path), (args.size, args.size), limit_bytes=64 * 2**20)
        stream_cold = windows_per_s(stream.frames, starts[:300], length)
        stream_warm = windows_per_s(stream.frames, starts[:300], length)
        raw_zarr = FrameStore.open(path)
        zarr_direct = windows_per_s(lambda n, a, b: raw_zarr.read(n, 0, a, b), starts[:200], length)
        out |= {
            "numpy_windows_per_s": round(numpy_rate),
            "zarr_cold_windows_per_s": round(cold_rate),
            "zarr_warm_windows_per_s": round(warm_rate),
            "zarr_per_window_read_windows_per_s": round(zarr_direct),
            "stream_cache_cold_windows_per_s": round(stream_cold),
            "stream_cache_warm_windows_per_s": round(stream_warm),
            "warm_time_vs_numpy": round(numpy_rate / warm_rate, 2),
            "stream_warm_time_vs_numpy": round(numpy_rate / stream_warm, 2),
        }
        print(f"windows of 20->1 at {args.size}² (2000 random): numpy in memory {numpy_rate:,.0f}/s")
        print(f"  FrameCache preloaded: first pass {cold_rate:,.0f}/s (includes loading every level once, {cold_total:.2f} s), "
              f"warm {warm_rate:,.0f}/s -> {numpy_rate / warm_rate:.2f}x the numpy time")
        print(f"  FrameCache streaming (64 MiB LRU of chunks): cold {stream_cold:,.0f}/s, warm {stream_warm:,.0f}/s "
              f"-> {numpy_rate / stream_warm:.2f}x the numpy time")
        print(f"  one Zarr read per window (what not to do): {zarr_direct:,.0f}/s")

        try:
            import torch

            from bubbles.models import build_model
            from bubbles.models.convlstm import ConvLSTMConfig

            step_size = min(args.size, 64)  # a 128² step of the seed model takes over a minute on 2 cores
            torch.manual_seed(0)
            model = build_model("convlstm", ConvLSTMConfig(frame_size=(step_size, step_size)))
            opt = torch.optim.Adam(model.parameters())
            x, y = torch.rand(4, 20, 1, step_size, step_size), torch.rand(4, 1, 1, step_size, step_size)
            began = time.perf_counter()
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y, reduction="sum").backward()
            opt.step()
            step_rate = 4 / (time.perf_counter() - began)
            out[f"train_step_windows_per_s_{step_size}"] = round(step_rate, 3)
            out["warm_reads_per_step_consumption"] = round(warm_rate / step_rate)
            print(f"a training step of the seed model (3x64, 20->1, batch 4, {step_size}², CPU) consumes {step_rate:.2f} windows/s: "
                  f"the warm data path is {warm_rate / step_rate:,.0f}x faster")
        except Exception as exc:  # the data figures stand on their own
            print(f"(training-step comparison skipped: {exc})")

        splits = make_splits(DataConfig(str(path), args.size, SplitConfig(kind="sequence", val_fraction=0.25)), WindowConfig(20, 10, 10))
        xs, ys = zip(*(splits.val[i] for i in range(len(splits.val))))
        x = np.stack([t[:, 0].numpy() for t in xs])
        y = np.stack([t[:, 0].numpy() for t in ys])
        for label, pred in (("persistence", baselines.persistence(x, 10)), ("context median", baselines.context_median(x, 10))):
            flat_p, flat_y = pred.reshape(-1, args.size, args.size), y.reshape(-1, args.size, args.size)
            ssim = metrics.ssim_frames(flat_p, flat_y).reshape(len(x), 10).mean(axis=0)
            psnr = metrics.psnr_from_mse(metrics.mse_frames(flat_p, flat_y)).reshape(len(x), 10).mean(axis=0)
            key = label.split()[-1]
            out[f"{key}_ssim_lead1"], out[f"{key}_ssim_lead10"] = round(float(ssim[0]), 3), round(float(ssim[9]), 3)
            out[f"{key}_psnr_lead1"], out[f"{key}_psnr_lead10"] = round(float(psnr[0]), 2), round(float(psnr[9]), 2)
            print(f"{label:15s} on {len(x)} held-out windows at {args.size}²: SSIM {ssim[0]:.3f} (1 ahead) / {ssim[9]:.3f} (10 ahead), "
                  f"PSNR {psnr[0]:.1f} / {psnr[9]:.1f} dB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
