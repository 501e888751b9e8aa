"""What the sweep machinery costs per trial and per epoch report, with a stub trainable that does no torch work:
the real Ray Tune loop, Optuna TPE (its observations grow to --trials) and the real MLflow writes of a trial.

    python bench/overhead.py [--trials 200] [--epochs 20] [--concurrent 2]

Ray = time a trial spends blocked in tune.report, plus the scheduling gaps and actor starts (the sweep's wall
time x concurrency not spent inside trainables); Optuna = the driver's time in the searcher (suggest, per-result
reports, completion); MLflow = the trial's run creation, per-epoch log_batch and run end. Human-readable lines,
then one JSON object as the very last line.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bubbles.data.synth import SynthConfig, synth_store  # noqa: E402
from bubbles.training.train import EpochResult  # noqa: E402
from study import sweep as sweep_module  # noqa: E402
from study import sweep_mlflow  # noqa: E402
from study.space import load_space  # noqa: E402

SPACE = """
data: {{store: {store}, split: condition, val_fraction: 0.34}}
fixed: {{loss: mse_mean, image_size: 16, window: "4->1", epochs: {epochs}}}
search:
  layers: {{type: int, low: 1, high: 3}}
  hidden: {{type: categorical, choices: [8, 16, 32, 64]}}
  kernel: {{type: categorical, choices: [3, 5]}}
  peephole: {{type: categorical, choices: [frame, channel, none]}}
  lr: {{type: log, low: 1.0e-4, high: 1.0e-2}}
  weight_decay: {{type: log, low: 1.0e-6, high: 1.0e-3}}
  batch_size: {{type: categorical, choices: [4, 8, 16]}}
tune: {{num_samples: {trials}, max_concurrent: {concurrent}, max_failures: 0, asha: false, sampler: tpe, seed: 0}}
tracking: {{experiment: overhead}}
"""


def stub_trial(config: dict[str, Any], space: Any, uri: str, parent_run_id: str, sweep: str, spool: str | None = None) -> None:
    """The trainable's real MLflow and Tune calls around no training; its own timings ride on its reports."""
    from ray import tune

    from study.tracking import TrialRun

    began = time.perf_counter()
    trial_id = tune.get_context().get_trial_id()
    cfg = space.trial_config(config, trial_id)
    t = time.perf_counter()
    run = TrialRun(uri, space.experiment, cfg, tags={"mlflow.parentRunId": parent_run_id, "tune_trial_id": trial_id},
                   spool=Path(spool) if spool else None)
    mlflow_s, report_s = time.perf_counter() - t, 0.0
    for epoch in range(1, cfg.train.epochs + 1):
        value = float(config["lr"]) * epoch
        result = EpochResult(epoch, value, value, 0.5, 20.0, 0.5, 0.5, 0.1, 0.0, False, 0.0, 0.0)
        t = time.perf_counter()
        run.log_epoch(result)
        if epoch == cfg.train.epochs:
            run.end("completed")
        mlflow_s += time.perf_counter() - t
        metrics = {"objective": value, "epoch": epoch, "epochs_planned": cfg.train.epochs, "trial_status": "running",
                   "mlflow_s": mlflow_s, "report_s": report_s, "inside_s": time.perf_counter() - began}
        t = time.perf_counter()
        tune.report(metrics)
        report_s += time.perf_counter() - t


def timed(cls: type, names: tuple[str, ...], into: dict[str, list[float]]) -> None:
    """Wrap the searcher's methods with timers (the searcher runs in the driver process)."""
    for name in names:
        original = getattr(cls, name)

        @functools.wraps(original)
        def wrapper(self: Any, *args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return _original(self, *args, **kwargs)
            finally:
                into[_name].append(time.perf_counter() - t)

        setattr(cls, name, wrapper)


def _timer(fn: Any, into: list[float]) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - t)

    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--concurrent", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    optuna_s: dict[str, list[float]] = defaultdict(list)
    timed(sweep_module.PruningOptunaSearch, ("suggest", "on_trial_result", "on_trial_complete"), optuna_s)
    driver_mlflow: dict[str, list[float]] = defaultdict(list)  # the driver's per-trial MLflow calls after fit()
    for name in ("find_trial_run", "settle_trial", "log_test_score"):
        setattr(sweep_mlflow, name, _timer(getattr(sweep_mlflow, name), driver_mlflow[name]))
    try:
        store = tmp / "tiny.zarr"
        synth_store(str(store), SynthConfig(sequences=3, frames=24, size=16, seed=0, conditions=3), workers=1)
        space_file = tmp / "overhead.yaml"
        space_file.write_text(SPACE.format(store=store, epochs=args.epochs, trials=args.trials, concurrent=args.concurrent))
        space = load_space(space_file)
        began = time.perf_counter()
        outcome = sweep_module.run_sweep(space, "overhead", tmp / "sweeps", f"sqlite:///{tmp / 'mlflow.db'}",
                                         address="local", trainable=stub_trial, echo=lambda s: None)
        wall = time.perf_counter() - began
        import pandas as pd

        frames = [pd.read_csv(p) for p in (tmp / "sweeps" / "overhead").glob("*/progress.csv")]
        last = pd.concat([f.tail(1) for f in frames])
        trials, reports = len(frames), int(sum(len(f) for f in frames))
        inside = float(last["inside_s"].sum())
        driver_total = sum(sum(v) for v in driver_mlflow.values())
        mlflow_total, report_total = float(last["mlflow_s"].sum()) + driver_total, float(last["report_s"].sum())
        optuna_total = sum(sum(v) for v in optuna_s.values())
        # Blocked in report, plus the gaps and starts: wall x concurrency not spent in trials (nor, after fit(),
        # in the driver's MLflow calls, counted as MLflow above).
        ray_total = report_total + max(0.0, (wall - driver_total) * args.concurrent - inside)
        per_trial = {"ray": ray_total / trials, "optuna": optuna_total / trials, "mlflow": mlflow_total / trials}
        per_report = {k: v * trials / reports for k, v in per_trial.items()}
        out: dict[str, Any] = {"trials": trials, "epochs": args.epochs, "reports": reports, "wall_s": round(wall, 1),
                               "completed": sum(r["status"] == "completed" for r in outcome.rows)}
        out |= {f"{k}_s_per_trial": round(v, 3) for k, v in per_trial.items()}
        out |= {f"{k}_s_per_report": round(v, 4) for k, v in per_report.items()}
        out["mlflow_driver_s_per_trial"] = round(driver_total / trials, 3)
        out["overhead_s_per_report"] = round(sum(per_report.values()), 4)
        out["overhead_share_of_60s_trial"] = round(sum(per_trial.values()) / 60, 4)
        out |= {f"optuna_{k}_ms_mean": round(1000 * sum(v) / len(v), 2) for k, v in optuna_s.items() if v}
        out["optuna_suggest_ms_last20"] = round(1000 * sum(optuna_s["suggest"][-20:]) / max(1, len(optuna_s["suggest"][-20:])), 2)
        print(f"{trials} stub trials x {args.epochs} epochs ({reports} reports), {args.concurrent} at a time: {wall:.0f} s")
        for k in per_trial:
            print(f"  {k:7s} {per_trial[k]:7.3f} s per trial, {1000 * per_report[k]:7.1f} ms per epoch report")
        print(f"  together {out['overhead_s_per_report'] * 1000:.0f} ms per epoch report; "
              f"{100 * out['overhead_share_of_60s_trial']:.1f}% of a 60 s trial")
        print(f"  Optuna suggest: {out.get('optuna_suggest_ms_mean', 0):.0f} ms mean, "
              f"{out['optuna_suggest_ms_last20']:.0f} ms over the last 20 trials")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
