"""One trial with MLflow around it: what `cli.py train` runs (the Ray trainable has its own thin adapter)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sized
from pathlib import Path

from torch.utils.data import DataLoader

from bubbles.config import TrialConfig
from bubbles.data.windows import WindowSplits, make_splits
from bubbles.training.train import EpochResult, TrialResult, train
from study.tracking import TrialRun


def heartbeat(loader: Sized, epoch: int, epochs: int, echo: Callable[[str], object], every_s: float = 30.0,
              clock: Callable[[], float] = time.monotonic) -> Iterator:
    """Yield the loader's batches, saying every `every_s` seconds how far the epoch is (for logs and pipes, where
    a progress bar cannot redraw): 'epoch 1/10: batch 37/270 (14%), 31 s, about 3m10s left in this epoch'."""
    began = last = clock()
    total = len(loader)
    for i, batch in enumerate(loader, 1):  # type: ignore[call-overload]
        yield batch
        now = clock()
        if now - last >= every_s and i < total:
            last = now
            left = (now - began) / i * (total - i)
            echo(f"epoch {epoch + 1}/{epochs}: batch {i}/{total} ({100 * i // total}%), {now - began:.0f} s, "
                 f"about {int(left) // 60}m{int(left) % 60:02d}s left in this epoch")


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
            echo(result.line(cfg.train.epochs, now - last, per_epoch * (cfg.train.epochs - result.epoch), cfg.train.best_by))
        last = now

    try:
        result = train(cfg, out_dir, report=report, resume=resume, splits=splits, batches=batches, on_cost=run.log_cost)
    except KeyboardInterrupt:
        run.end("unfinished")  # stopped by the user: the last epoch's checkpoint is kept for --resume
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
