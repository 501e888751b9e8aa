"""One trial with MLflow around it: what `cli.py train` runs (the Ray trainable has its own thin adapter)."""

from __future__ import annotations

from pathlib import Path

from bubbles.config import TrialConfig
from bubbles.data.windows import WindowSplits, make_splits
from bubbles.training.train import EpochResult, TrialResult, train
from study.tracking import TrialRun


def run_logged_trial(cfg: TrialConfig, out_dir: Path, uri: str, experiment: str, resume: Path | None = None,
                     splits: WindowSplits | None = None) -> tuple[TrialResult, str]:
    """Train one configuration, logging it as one MLflow run; returns the result and the run id."""
    splits = splits or make_splits(cfg.data, cfg.window)  # a store or split error comes before any MLflow run
    run = TrialRun(uri, experiment, cfg)

    def report(result: EpochResult, checkpoint: Path, final: TrialResult | None) -> None:
        run.log_epoch(result)

    try:
        result = train(cfg, out_dir, report=report, resume=resume, splits=splits)
    except BaseException:
        run.finish("FAILED")
        raise
    run.log_result(result)
    run.finish("FINISHED" if result.status == "completed" else "FAILED")
    return result, run.run_id
