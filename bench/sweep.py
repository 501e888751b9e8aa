"""Search efficiency and machinery overhead on the smoke space, side by side in one run:
(a) random search without early stopping, (b) TPE + ASHA, the same number of trials each.

    python bench/sweep.py [--space search_spaces/smoke.yaml] [--samples 8]

Prints the best objective reached against the epochs spent, and the share of the sweep's wall time not spent
inside trials (Ray start, scheduling, Optuna, MLflow bookkeeping). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from study.space import load_space  # noqa: E402
from study.sweep import run_sweep  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--space", type=Path, default=Path("search_spaces/smoke.yaml"))
    ap.add_argument("--samples", type=int, default=8)
    args = ap.parse_args()
    root = Path(__file__).resolve().parents[1]
    if not (root / "data" / "synthetic.zarr").exists():
        from bubbles.data.synth import SynthConfig, synth_store

        synth_store(str(root / "data" / "synthetic.zarr"), SynthConfig(), workers=2)
    space = load_space(root / args.space if not args.space.is_absolute() else args.space, cwd=root)
    tmp = Path(tempfile.mkdtemp())
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    out: dict[str, float] = {}
    try:
        variants = {
            "random_no_es": dataclasses.replace(space.tune, sampler="random", asha=False, num_samples=args.samples),
            "tpe_asha": dataclasses.replace(space.tune, sampler="tpe", asha=True, num_samples=args.samples),
        }
        for label, tune in variants.items():
            began = time.perf_counter()
            outcome = run_sweep(dataclasses.replace(space, tune=tune), label, tmp / "sweeps", uri, echo=lambda s: None)
            wall = time.perf_counter() - began
            rows = outcome.rows
            epochs = sum(int(r["epochs"] or 0) for r in rows)
            best = rows[0]["objective"]
            from ray.tune import ExperimentAnalysis

            analysis = ExperimentAnalysis(str(outcome.directory))
            trial_time = sum(float(df["time_total_s"].iloc[-1]) for df in analysis.trial_dataframes.values() if len(df))
            busy = trial_time / (wall * tune.max_concurrent)
            out |= {
                f"{label}_best_{space.tune.objective}": round(float(best), 4),
                f"{label}_epochs_spent": epochs,
                f"{label}_wall_s": round(wall, 1),
                f"{label}_overhead_share": round(1 - busy, 3),
            }
            stopped = sum(r["status"] == "stopped_early" for r in rows)
            print(f"{label:13s}: {len(rows)} trials ({stopped} stopped early), {epochs} epochs spent, best "
                  f"{space.tune.objective} {best:.4f}; wall {wall:.1f} s, trials busy {busy:.0%} of "
                  f"{tune.max_concurrent} slots -> Ray+Optuna+MLflow overhead {1 - busy:.0%}")
        a, b = out["random_no_es_epochs_spent"], out["tpe_asha_epochs_spent"]
        out["epochs_saved_by_asha"] = round(1 - b / a, 3) if a else 0.0
        print(f"TPE+ASHA spent {b} epochs against {a} ({1 - b / a:.0%} fewer)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
