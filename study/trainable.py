"""The Ray Tune trainable: a thin adapter from Tune's config dict to bubbles' train(), with MLflow around it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bubbles.evaluation.cost import ModelCost, median_rate
from bubbles.training.train import EpochResult, TrialResult, train
from study.space import SweepSpace
from study.tracking import TrialRun, find_trial_run, readable


def epoch_metrics(result: EpochResult, epochs_planned: int, objective: str, status: str) -> dict[str, Any]:
    """What one epoch reports to Tune (ASHA and Optuna read `objective`; NaN would poison TPE, so it is replaced)."""
    metrics: dict[str, Any] = {**result.metrics(), "epoch": result.epoch, "epochs_planned": epochs_planned, "trial_status": status}
    value = getattr(result, objective)
    worst = 1e9 if objective == "val_mse" else -1e9
    metrics["objective"] = value if math.isfinite(value) else worst
    return metrics


def tune_node() -> str:
    """'host/node-id-prefix' of the Ray node running this trial: several nodes on one host (a test cluster, or a
    multi-GPU box running one raylet per GPU) share a host name and an IP, so the node id tells them apart."""
    import socket

    import ray

    return f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:8]}"


def run_trial(config: dict[str, Any], space: SweepSpace, uri: str, parent_run_id: str, sweep: str, spool: str | None = None) -> None:
    """Train one sampled configuration; report every epoch (with its checkpoint directory) to Tune. MLflow writes
    the tracking store cannot take go to the `spool` directory (study.mlflow_writer) and training goes on."""
    from ray import tune

    context = tune.get_context()
    trial_id = context.get_trial_id()
    cfg = space.trial_config(config, f"trial {trial_id}")
    checkpoint = tune.get_checkpoint()
    resume = Path(checkpoint.to_directory()) / "checkpoint.pt" if checkpoint else None
    run_id = readable(lambda: find_trial_run(uri, space.experiment, parent_run_id, trial_id), None)
    node = tune_node()
    tags = {"mlflow.parentRunId": parent_run_id, "tune_trial_id": trial_id, "sweep": sweep}
    run = TrialRun(uri, space.experiment, cfg, tags=tags, run_id=run_id, spool=Path(spool) if spool else None)
    nodes = run.record_node(node)  # a trial restarted after a node loss keeps every node it ran on

    cost: dict[str, float] = {}
    rates: list[float] = []

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
        if final is not None:
            # Tune may stop the trial inside this last report: log and close the MLflow run first.
            run.log_result(final)
            run.end(final.status)
            if final.evaluation is not None:
                metrics["final_skill_persistence"] = final.evaluation.summary()["final_skill_persistence"]
                metrics["final_ssim_lead1"] = final.evaluation.model.ssim[0]
                metrics["final_ssim_last"] = final.evaluation.model.ssim[-1]
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(checkpoint_file.parent)))

    try:
        train(cfg, Path(context.get_trial_dir()) / "work", report=report, resume=resume, on_cost=on_cost)
    except Exception:
        run.end("errored")
        raise
