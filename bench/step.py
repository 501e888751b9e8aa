"""Training-step speed of bubbles' ConvLSTM against the straightforward reference, side by side in one run.

    python bench/step.py                       # CPU: 3x64, 3x3, 32² and 64², 10->10, batch 4
    python bench/step.py --device cuda --sizes 128 256 --amp both
    python bench/step.py --model simvp --device cuda --amp both     # the other families: their own steps/s only
    python bench/step.py --patch 4 --layers 4 --hidden 128 --kernel 5 --sizes 64   # OpenSTL's ConvLSTM benchmark
                                               # configuration: patch 4 against patch 1, side by side

For each size: the outputs of both implementations from one set of weights (max |difference|), training steps/s
(forward + backward + Adam, interleaved A/B/A/B to share the machine's noise), the speed-up, and the achieved
FLOP/s of the convolutions as a share of this machine's measured GEMM peak. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bubbles.models.convlstm import ConvLSTM, ConvLSTMConfig  # noqa: E402
from bubbles.evaluation.cost import forward_flops  # noqa: E402
from bubbles.models import build_model  # noqa: E402
from bubbles.models.predrnn_v2 import PredRNNv2Config  # noqa: E402
from bubbles.models.simvp import SimVPConfig  # noqa: E402
from reference_convlstm import ReferenceConvLSTM  # noqa: E402


def _best_seconds(fn: Callable[[], object], device: torch.device, repeats: int = 6) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def gemm_peak(device: torch.device, dtype: torch.dtype, n: int = 2048) -> tuple[float, float]:
    """FLOP/s of a large GEMM two ways: torch.matmul (BLAS) and a 1x1 convolution (the conv library's own GEMM,
    oneDNN on CPU, cuDNN on GPU). The larger is the ceiling the conv work is measured against."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    matmul = 2 * n**3 / _best_seconds(lambda: a @ b, device)
    x, w = torch.randn(1, n, 64, 64, device=device, dtype=dtype), torch.randn(n, n, 1, 1, device=device, dtype=dtype)
    conv = 2 * n * n * 64 * 64 / _best_seconds(lambda: F.conv2d(x, w), device)
    return matmul, conv


def conv_flops(cfg: ConvLSTMConfig, batch: int, t_in: int, t_out: int, size: int) -> float:
    """Forward multiply-adds x2 of every convolution: gates over [x, h] for every step of every layer, and the head."""
    steps = t_in + t_out - 1  # encoder steps, then the rollout steps after the first prediction
    total, cin = 0.0, cfg.in_channels
    for h in cfg.widths():
        total += 2 * batch * steps * (cin + h) * 4 * h * cfg.kernel**2 * size * size
        cin = h
    return total + 2 * batch * t_out * cfg.widths()[-1] * cfg.out_channels * 9 * size * size


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def load_reference(ours: torch.nn.Module, reference: torch.nn.Module) -> None:
    """The reference's weights into ours. Ours also has the seq2seq rollout's own batch norms, which the reference
    lacks; fresh, they are the same identity as the reference's fresh norms, so the outputs still match."""
    missing, unexpected = ours.load_state_dict(reference.state_dict(), strict=False)
    if unexpected or any(not k.startswith("rollout_norms.") for k in missing):
        raise RuntimeError(f"weights do not match: missing {missing}, unexpected {unexpected}")


def make_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, amp: torch.dtype | None) -> Callable[[], None]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(x.device.type, enabled=amp == torch.float16)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = F.mse_loss(model(x, future=y.shape[1]).float(), y, reduction="sum")
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


def time_steps(steps: dict[str, Callable[[], None]], repeats: int, device: torch.device) -> dict[str, float]:
    """Seconds per step for each variant, best of `repeats`, run interleaved."""
    for fn in steps.values():
        fn()  # warm-up (allocator, cuDNN autotune)
    best = {k: float("inf") for k in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            _sync(device)
            t = time.perf_counter()
            fn()
            _sync(device)
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def family_steps(args: argparse.Namespace, device: torch.device, amps: list, t_in: int, t_out: int, out: dict) -> None:
    """PredRNN-v2 or SimVP at OpenSTL's Moving-MNIST sizes (patch 4; hid_S 64, hid_T 512): training steps/s."""
    for size in args.sizes:
        if args.model == "predrnn_v2":
            cfg = PredRNNv2Config(layers=4, hidden=args.hidden, kernel=5, patch=4, frame_size=(size, size))
        else:
            cfg = SimVPConfig(hid_s=64, hid_t=args.hidden * 8, n_s=4, n_t=8, input_len=t_in, output_len=t_out, frame_size=(size, size))
        torch.manual_seed(0)
        model = build_model(args.model, cfg).to(device).train()
        x = torch.rand(args.batch, t_in, 1, size, size, device=device)
        y = torch.rand(args.batch, t_out, 1, size, size, device=device)
        gflops = forward_flops(model.eval(), x[:1], t_out) / 1e9
        model.train()
        for amp in amps:
            tag = f"{args.model}_{size}" + ("" if amp is None else f"_amp_{str(amp).split('.')[-1]}")
            secs = time_steps({"ours": make_step(model, x, y, amp)}, args.repeats, device)["ours"]
            out[f"steps_per_s_{tag}"] = round(1 / secs, 3)
            out[f"samples_per_s_{tag}"] = round(args.batch / secs, 2)
            out[f"forward_gflops_per_window_{args.model}_{size}"] = round(gflops, 2)
            print(f"{args.model} {size}² {args.window} batch {args.batch}, amp {amp or 'off'}: {1 / secs:.3f} steps/s, "
                  f"{args.batch / secs:.2f} samples/s; forward {gflops:.2f} GFLOPs per window")


def patch_steps(args: argparse.Namespace, device: torch.device, amps: list, t_in: int, t_out: int, out: dict) -> None:
    """ConvLSTM seq2seq with patch 1 and with --patch side by side (interleaved): training steps/s and the ratio."""
    for size in args.sizes:
        models = {}
        for p in (1, args.patch):
            cfg = ConvLSTMConfig(layers=args.layers, hidden=(args.hidden,), kernel=args.kernel, peephole="frame",
                                 mode="seq2seq", patch=p, frame_size=(size, size))
            torch.manual_seed(0)
            models[f"patch{p}"] = ConvLSTM(cfg).to(device).train()
        x = torch.rand(args.batch, t_in, 1, size, size, device=device)
        y = torch.rand(args.batch, t_out, 1, size, size, device=device)
        for amp in amps:
            tag = f"{size}" + ("" if amp is None else f"_amp_{str(amp).split('.')[-1]}")
            secs = time_steps({k: make_step(m, x, y, amp) for k, m in models.items()}, args.repeats, device)
            one, many = secs["patch1"], secs[f"patch{args.patch}"]
            out[f"steps_per_s_patch1_{tag}"] = round(1 / one, 3)
            out[f"steps_per_s_patch{args.patch}_{tag}"] = round(1 / many, 3)
            out[f"patch{args.patch}_speedup_{tag}"] = round(one / many, 2)
            print(f"convlstm {args.layers}x{args.hidden} k{args.kernel} {size}² {args.window} batch {args.batch}, amp {amp or 'off'}: "
                  f"patch 1 {1 / one:.3f} steps/s, patch {args.patch} {1 / many:.3f} steps/s -> {one / many:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", choices=["convlstm", "predrnn_v2", "simvp"], default="convlstm",
                    help="convlstm: against the reference; the others: their own steps/s (--hidden: ST-LSTM width / hid_T / 8)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--kernel", type=int, default=3, help="ConvLSTM gate kernel of --patch runs")
    ap.add_argument("--patch", type=int, default=0, help="convlstm: time patch 1 against this patch instead of the reference")
    ap.add_argument("--window", default="10->10")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--amp", choices=["off", "on", "both"], default="off", help="CUDA autocast (bf16, else fp16)")
    ap.add_argument("--channels-last", action="store_true", help="also time ours in channels_last")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    t_in, t_out = (int(v) for v in args.window.split("->"))
    matmul, conv1x1 = gemm_peak(device, torch.float32)
    peak = max(matmul, conv1x1)
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"torch {torch.__version__}; float32 GEMM peak {peak / 1e9:,.1f} GFLOP/s "
          f"(torch.matmul {matmul / 1e9:,.1f}, 1x1-conv GEMM {conv1x1 / 1e9:,.1f})")
    print("  conv FLOPs are counted as direct convolution (2*Cin*Cout*k*k*H*W per frame, backward = 2x forward); "
          "a library using Winograd can exceed 100% of the GEMM peak")
    out: dict[str, float] = {"gemm_peak_gflops": round(peak / 1e9, 1), "matmul_gflops": round(matmul / 1e9, 1)}
    amp_dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
    amps = {"off": [None], "on": [amp_dtype], "both": [None, amp_dtype]}[args.amp]
    if args.model != "convlstm" or args.patch:
        (patch_steps if args.patch else family_steps)(args, device, amps, t_in, t_out, out)
        print(json.dumps(out))
        return
    for size in args.sizes:
        cfg = ConvLSTMConfig(layers=args.layers, hidden=(args.hidden,), kernel=3, peephole="frame", mode="seq2seq", frame_size=(size, size))
        torch.manual_seed(0)
        reference = ReferenceConvLSTM(cfg).to(device)
        with torch.no_grad():
            for p in reference.parameters():
                if p.dim() == 3:  # peepholes: non-zero so the comparison covers them
                    p.normal_(0, 0.1)
        ours = ConvLSTM(cfg).to(device)
        load_reference(ours, reference)
        x = torch.rand(args.batch, t_in, 1, size, size, device=device)
        y = torch.rand(args.batch, t_out, 1, size, size, device=device)
        reference.eval(), ours.eval()
        with torch.no_grad():
            diff = (reference(x, future=t_out) - ours(x, future=t_out)).abs().max().item()
        reference.train(), ours.train()
        flops = 3 * conv_flops(cfg, args.batch, t_in, t_out, size)  # forward + backward ~ 3x forward
        for amp in amps:
            tag = f"{size}" + ("" if amp is None else f"_amp_{str(amp).split('.')[-1]}")
            variants = {"reference": make_step(reference, x, y, amp), "ours": make_step(ours, x, y, amp)}
            if args.channels_last:
                ours_cl = ConvLSTM(cfg).to(device).to(memory_format=torch.channels_last)
                load_reference(ours_cl, reference)
                variants["ours_channels_last"] = make_step(ours_cl, x, y, amp)
            secs = time_steps(variants, args.repeats, device)
            speedup = secs["reference"] / secs["ours"]
            share = flops / secs["ours"] / peak
            out[f"speedup_vs_reference_{tag}"] = round(speedup, 2)
            out[f"gemm_peak_share_{tag}"] = round(share, 3)
            out[f"steps_per_s_{tag}"] = round(1 / secs["ours"], 3)
            print(f"{size}² {args.window} batch {args.batch}, {args.layers}x{args.hidden}, amp {amp or 'off'}: "
                  f"reference {1 / secs['reference']:.3f} steps/s, ours {1 / secs['ours']:.3f} steps/s -> {speedup:.2f}x; "
                  f"conv work {flops / secs['ours'] / 1e9:,.1f} GFLOP/s = {share:.0%} of GEMM peak")
            if "ours_channels_last" in secs:
                cl = secs["reference"] / secs["ours_channels_last"]
                out[f"speedup_channels_last_{tag}"] = round(cl, 2)
                print(f"  ours in channels_last: {1 / secs['ours_channels_last']:.3f} steps/s -> {cl:.2f}x the reference")
        out[f"max_abs_diff_{size}"] = diff
        print(f"  outputs equal within {diff:.1e} (float32; tolerance 1e-5)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
