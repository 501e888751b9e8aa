"""Frame memory of N concurrent trial processes on one node: private copies vs the node's memory-mapped cache
file vs Ray's object store, as proportional set size (PSS) summed over the processes; and warm window reads of
each vs slicing an in-memory numpy array.

    python bench/memory.py [--size 128] [--frames 400] [--sequences 8] [--trials 1,2,4,8] [--no-ray]

Each "trial" is a fresh process that opens the frames the way a trial does and touches every frame; all N hold
them at once when PSS is read (/proc/PID/smaps_rollup; shared pages count 1/N in each). Frame memory = PSS after
minus PSS before loading. Human-readable lines, then one JSON object as the very last line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bubbles.data.store import FrameStore  # noqa: E402
from bubbles.data.synth import SynthConfig, synth_store  # noqa: E402
from bubbles.data.windows import FrameCache  # noqa: E402


def pss_bytes(pid: str | int = "self") -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no Pss line in smaps_rollup")


def touch(arrays: list[np.ndarray]) -> int:
    return int(sum(int(a[:, ::64, ::64].sum()) + int(a.sum(dtype=np.uint64)) for a in arrays))  # fault in every page


def _cache_trial(store: str, size: int, share: str | None, loaded: Any, measured: Any, out: Any) -> None:
    opened = FrameStore.open(store)
    opened.read(next(iter(opened.sequences)), 0, 0, 1)  # imports and Zarr's own buffers count before, not as frames
    before = pss_bytes()
    cache = FrameCache(FrameStore.open(store), (size, size), share=Path(share) if share else None)
    touch([cache.frames(n, 0, i.frames) for n, i in cache.store.sequences.items()])
    loaded.wait()
    out.put(pss_bytes() - before)
    measured.wait()


def run_processes(n: int, store: str, size: int, share: str | None) -> int:
    ctx = mp.get_context("spawn")
    loaded, measured, out = ctx.Barrier(n), ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_cache_trial, args=(store, size, share, loaded, measured, out)) for _ in range(n)]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=600) for _ in range(n))
    for p in procs:
        p.join()
    return total


def _ray_daemons() -> list[int]:
    """PIDs of the raylet (which holds the object store's shared memory) and other Ray processes of this driver."""
    import os

    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
                cmd = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and b"raylet" in cmd:
                pids.append(int(proc.name))
    return pids


def run_ray(ns: list[int], frames: dict[str, np.ndarray]) -> dict[int, int]:
    """Frame PSS of N actors reading one ray.put copy: theirs, plus the share the driver and raylet hold."""
    import ray

    ray.init(address="local", num_cpus=max(ns), include_dashboard=False, log_to_driver=False,
             object_store_memory=max(256 * 2**20, 2 * sum(a.nbytes for a in frames.values())))

    @ray.remote(num_cpus=0)
    class Trial:
        def load(self, ref: list) -> int:  # type: ignore[type-arg]
            import os

            self.before = pss_bytes(os.getpid())
            self.arrays = ray.get(ref[0])  # numpy arrays come back as zero-copy views of the object store
            return touch(list(self.arrays.values()))

        def pss(self) -> int:
            return pss_bytes() - self.before

    try:
        daemons = [pss_bytes("self")] + [pss_bytes(p) for p in _ray_daemons()]
        ref = ray.put(frames)
        out = {}
        for n in ns:
            trials = [Trial.remote() for _ in range(n)]
            ray.get([t.load.remote([ref]) for t in trials])
            now = [pss_bytes("self")] + [pss_bytes(p) for p in _ray_daemons()]
            out[n] = sum(ray.get([t.pss.remote() for t in trials])) + sum(now) - sum(daemons)
            for t in trials:
                ray.kill(t)
        return out
    finally:
        ray.shutdown()


def windows_per_s(read, starts: list[tuple[str, int]], length: int) -> float:  # type: ignore[no-untyped-def]
    began = time.perf_counter()
    for name, s in starts:
        read(name, s, s + length).astype(np.float32)  # what the window dataset does next
    return len(starts) / (time.perf_counter() - began)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--sequences", type=int, default=8)
    ap.add_argument("--trials", default="1,2,4,8")
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    ns = [int(n) for n in args.trials.split(",")]
    tmp = Path(tempfile.mkdtemp())
    out: dict[str, Any] = {}
    try:
        store = str(tmp / "s.zarr")
        synth_store(store, SynthConfig(sequences=args.sequences, frames=args.frames, size=args.size, seed=0), workers=2)
        mib = args.sequences * args.frames * args.size**2 / 2**20
        print(f"{args.sequences} sequences x {args.frames} frames at {args.size}²: {mib:.1f} MiB of uint8 frames")
        fs = FrameStore.open(store)
        # The node's cache file is written once, by the first trial; here before the trials start, so that the
        # writer's transient decoding buffers are not counted as frames.
        touch([FrameCache(fs, (args.size, args.size), share=tmp / "share").frames(n, 0, args.frames) for n in fs.sequences])
        modes: dict[str, dict[int, int]] = {
            "private": {n: run_processes(n, store, args.size, None) for n in ns},
            "memmap": {n: run_processes(n, store, args.size, str(tmp / "share")) for n in ns},
        }
        memory = {n: fs.read(n, 0) for n in fs.sequences}
        if not args.no_ray:
            modes["ray"] = run_ray(ns, memory)
        for mode, pss in modes.items():
            ratio = pss[max(ns)] / pss[min(ns)]
            cells = ", ".join(f"{n}: {v / 2**20:.1f}" for n, v in pss.items())
            print(f"{mode:8s} frame PSS (MiB) summed over trials -> {cells}; {max(ns)} vs {min(ns)}: {ratio:.2f}x")
            out |= {f"{mode}_pss_mib_{n}": round(v / 2**20, 1) for n, v in pss.items()}
            out[f"{mode}_ratio_{max(ns)}_vs_{min(ns)}"] = round(ratio, 2)

        length = 21
        rng = np.random.default_rng(0)
        names = sorted(memory)
        starts = [(names[rng.integers(len(names))], int(rng.integers(0, args.frames - length))) for _ in range(4000)]
        mapped = FrameCache(fs, (args.size, args.size), share=tmp / "share")
        windows_per_s(mapped.frames, starts[:200], length)  # warm: the file is mapped and in the page cache
        rates = {}
        for _ in range(3):  # interleaved repeats, best of each: the machine is shared
            rates["numpy"] = max(rates.get("numpy", 0), windows_per_s(lambda n, a, b: memory[n][a:b], starts, length))
            rates["memmap"] = max(rates.get("memmap", 0), windows_per_s(mapped.frames, starts, length))
        out |= {f"{k}_windows_per_s": round(v) for k, v in rates.items()}
        out["memmap_warm_time_vs_numpy"] = round(rates["numpy"] / rates["memmap"], 3)
        print(f"warm 20->1 windows at {args.size}²: numpy {rates['numpy']:,.0f}/s, memory-mapped cache "
              f"{rates['memmap']:,.0f}/s -> {rates['numpy'] / rates['memmap']:.2f}x the numpy time")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
