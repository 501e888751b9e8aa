"""One trial with MLflow around it: what `cli.py train` runs (the Ray trainable has its own thin adapter)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from torch.utils.data import DataLoader

from bubbles.config import TrialConfig
from bubbles.data.windows import WindowSplits, make_splits
from bubbles.training.train import EpochResult, TrialResult, train
from study.tracking import TrialRun


def run_logged_trial(
    cfg: TrialConfig,
    out_dir: Path,
    uri: str,
    experiment: str,
    resume: Path | None = None,
    splits: WindowSplits | None = None,
    echo: Callable[[str], object] | None = None,
    batches: Callable[[DataLoader, int], Iterable] | None = None,
) -> tuple[TrialResult, str]:
    """Train one configuration, logging it as one MLflow run; returns the result and the run id. `echo` gets a line
    per epoch (losses, seconds, ETA); `batches` may wrap each epoch's loader (a progress bar)."""
    splits = splits or make_splits(cfg.data, cfg.window)  # a store or split error comes before any MLflow run
    run = TrialRun(uri, experiment, cfg)
    began = last = time.perf_counter()
    first: int | None = None

    def report(result: EpochResult, checkpoint: Path, final: TrialResult | None) -> None:
        nonlocal last, first
        run.log_epoch(result)
        now = time.perf_counter()
        first = first or result.epoch
        if echo is not None:
            per_epoch = (now - began) / (result.epoch - first + 1)  # includes validation and checkpoints
            echo(result.line(cfg.train.epochs, now - last, per_epoch * (cfg.train.epochs - result.epoch)))
        last = now

    try:
        result = train(cfg, out_dir, report=report, resume=resume, splits=splits, batches=batches, on_cost=run.log_cost)
    except KeyboardInterrupt:
        run.end("unfinished")
        raise
    except BaseException:
        run.end("errored")
        raise
    try:
        run.log_result(result)
    except BaseException:
        run.end("errored")  # never left RUNNING
        raise
    run.end(result.status)
    return result, run.run_id
