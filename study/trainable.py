"""The Ray Tune trainable: a thin adapter from Tune's config dict to bubbles' train(), with MLflow around it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bubbles.data.splits import make_splits
from bubbles.evaluation.cost import ModelCost, median_rate
from bubbles.evaluation.yardstick import BaselineScores, Protocol, Yardstick
from bubbles.training.config import best_by_mode
from bubbles.training.train import EpochResult, TrialResult, train
from study.tracking import spooled_run
from study.space import SweepSpace
from study.tracking import TrialRun, find_trial_run, readable


def epoch_metrics(result: EpochResult, epochs_planned: int, objective: str, status: str) -> dict[str, Any]:
    """What one epoch reports to Tune (ASHA and Optuna read `objective`; NaN would poison TPE, so it is replaced)."""
    metrics: dict[str, Any] = {**result.metrics(), "epoch": result.epoch, "epochs_planned": epochs_planned, "trial_status": status}
    value = getattr(result, objective)
    worst = 1e9 if best_by_mode(objective) == "min" else -1e9
    metrics["objective"] = value if math.isfinite(value) else worst
    return metrics


def tune_node() -> str:
    """'host/node-id-prefix' of the Ray node running this trial: several nodes on one host (a test cluster, or a
    multi-GPU box running one raylet per GPU) share a host name and an IP, so the node id tells them apart."""
    import socket

    import ray

    return f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:8]}"


def run_trial(config: dict[str, Any], space: SweepSpace, uri: str, parent_run_id: str, sweep: str, spool: str | None = None,
              protocol: Protocol | None = None, baselines: dict[str, Any] | None = None) -> None:
    """Train one sampled configuration; report every epoch (with its checkpoint directory) to Tune. MLflow writes
    the tracking store cannot take go to the `spool` directory (study.mlflow_writer) and training goes on.
    `protocol` and `baselines`: the study's yardstick and its baselines' scores on the validation split (scored
    once by the driver), so that every trial is scored on the same frames."""
    import torch
    from ray import tune

    # The threads this trial was given (resources.cpu), not every core: two trials of 2 threads each on 2 busy cores
    # took 7-10 s a step where 1 thread each took 1.1 s (issue 20). Intra-op threads only; fractional cpu -> 1.
    torch.set_num_threads(max(1, int(space.tune.cpu)))
    if space.tune.reproducible:  # warn_only: an op without a deterministic kernel (some CUDA backwards) says so
        torch.use_deterministic_algorithms(True, warn_only=True)
    context = tune.get_context()
    trial_id = context.get_trial_id()
    cfg = space.trial_config(config, f"trial {trial_id}")
    checkpoint = tune.get_checkpoint()
    resume = Path(checkpoint.to_directory()) / "checkpoint.pt" if checkpoint else None
    identity = {"mlflow.parentRunId": parent_run_id, "tune_trial_id": trial_id}
    # The run an earlier attempt made (in MLflow, or still waiting in the spool if the store was down): one per trial.
    run_id = readable(lambda: find_trial_run(uri, space.experiment, parent_run_id, trial_id), None) or (
        spooled_run(Path(spool), identity) if spool else None)
    node = tune_node()
    tags = identity | {"sweep": sweep}
    run = TrialRun(uri, space.experiment, cfg, tags=tags, run_id=run_id, spool=Path(spool) if spool else None)
    nodes = run.record_node(node)  # a trial restarted after a node loss keeps every node it ran on

    cost: dict[str, float] = {}
    rates: list[float] = []
    spent = {"train_seconds_total": 0.0, "train_gflops_total": 0.0}  # ASHA's clocks (asha.time_attr)

    def on_cost(measured: ModelCost) -> None:
        run.log_cost(measured)
        cost.update(measured.metrics())

    def report(result: EpochResult, checkpoint_file: Path, final: TrialResult | None) -> None:
        run.log_epoch(result)
        status = "running" if final is None else final.status
        rates.append(result.samples_per_s)
        # The cost goes with every report: a trial ASHA stops has no final one, and the leaderboard reads the last.
        metrics = epoch_metrics(result, cfg.train.epochs, space.tune.objective, status) | cost | {"node": nodes, "mlflow_run": run.run_id}
        metrics["train_samples_per_s"] = median_rate(rates)
        # Training seconds, and GFLOPs processed (forward + backward ~ 3x the forward FLOPs per window), so far; a
        # resumed trial counts from its resume.
        spent["train_seconds_total"] += result.seconds
        spent["train_gflops_total"] += 3.0 * cost.get("gflops_per_window", 0.0) * result.samples_per_s * result.seconds
        metrics |= spent
        for k, name in enumerate(space.tune.objectives, start=2):  # a multi-objective search's further objectives
            value = float(metrics.get(name, math.nan))
            metrics[f"objective_{k}"] = value if math.isfinite(value) else (1e9 if space.tune.mode_of(name) == "min" else -1e9)
        if final is not None:
            # Tune may stop the trial inside this last report: log and close the MLflow run first.
            run.log_result(final)
            run.end(final.status)
        metrics |= run.writer.lost_metrics()  # writes neither logged nor spooled: the driver says so
        if final is not None:
            if final.evaluation is not None:
                metrics["final_skill_vs_persistence"] = final.evaluation.summary()["final_skill_vs_persistence"]
                metrics["final_ssim_lead1"] = final.evaluation.model.ssim[0]
                metrics["final_ssim_last"] = final.evaluation.model.ssim[-1]
            if final.yardstick is not None:
                metrics |= {f"final_yardstick_{k}": v for k, v in final.yardstick.means().items()}
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(checkpoint_file.parent)))

    try:
        splits = make_splits(cfg.data, cfg.window)
        yardstick = None
        if protocol is not None:
            cached = BaselineScores.from_dict(baselines, len(protocol.leads)) if baselines else None
            store = splits.val.cache.store  # with tiles: the held-out sequences only (bubbles.data.tiles)
            train_segments = tuple(s for s in splits.segments.train if s[0] in store.sequences)
            yardstick = Yardstick(protocol, store, splits.segments.val, "val", train_segments, cached,
                                  detector_overrides=splits.val.detector_overrides)
        train(cfg, Path(context.get_trial_dir()) / "work", report=report, resume=resume, splits=splits, on_cost=on_cost,
              yardstick=yardstick)
    except Exception:
        run.end("errored")
        raise
