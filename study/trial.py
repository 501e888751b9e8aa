"""One trial with MLflow around it: what `cli.py train` runs (the Ray trainable has its own thin adapter)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from pathlib import Path

from torch.utils.data import DataLoader

from bubbles.config import TrialConfig
from bubbles.data.windows import WindowSplits
from bubbles.data.splits import make_splits
from bubbles.evaluation.evaluate import is_mask
from bubbles.training.train import EpochResult, TrialResult, train
from study.tracking import TrialRun, live_run


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


RUN_RECORD = "mlflow_run.json"  # in a `train` output directory: the MLflow run its checkpoints belong to


def recorded_run(out_dir: Path, uri: str, experiment: str) -> str | None:
    """The MLflow run a `train` output directory logged to, if it was in this tracking store and experiment and is
    still there (not deleted): a resume from that directory's checkpoint continues it."""
    try:
        record = json.loads((out_dir / RUN_RECORD).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("tracking_uri") != uri or record.get("experiment") != experiment:
        return None
    run_id = record.get("run_id")
    return run_id if isinstance(run_id, str) and live_run(uri, run_id) else None


def checkpoint_history(path: Path) -> list[EpochResult]:
    """The epochs a checkpoint.pt has behind it."""
    import torch

    from bubbles.training.train import load_checkpoint

    state = load_checkpoint(path, torch.device("cpu"))
    return [EpochResult(**h) for h in json.loads(state.get("history", "[]"))]


def _record_run(out_dir: Path, run_id: str, uri: str, experiment: str) -> None:
    tmp = out_dir / f".{RUN_RECORD}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps({"run_id": run_id, "tracking_uri": uri, "experiment": experiment}))
    tmp.replace(out_dir / RUN_RECORD)


def run_logged_trial(
    cfg: TrialConfig,
    out_dir: Path,
    uri: str,
    experiment: str,
    resume: Path | None = None,
    splits: WindowSplits | None = None,
    echo: Callable[[str], object] | None = None,
    batches: Callable[[DataLoader, int], Iterable] | None = None,
    on_run: Callable[[str, bool], object] | None = None,
) -> tuple[TrialResult, str]:
    """Train one configuration, logging it as one MLflow run; returns the result and the run id. `echo` gets a line
    per epoch (losses, seconds, ETA); `batches` may wrap each epoch's loader (a progress bar). A resume from a
    checkpoint whose output directory recorded its run (RUN_RECORD) continues that run: one run per training,
    however often it is stopped and resumed; the run's id is recorded in out_dir as soon as it exists, and `on_run`
    gets it (and whether it continues an earlier run)."""
    splits = splits or make_splits(cfg.data, cfg.window)  # a store or split error comes before any MLflow run
    previous = recorded_run(resume.parent.parent, uri, experiment) if resume is not None else None
    run = TrialRun(uri, experiment, cfg, run_id=previous)
    mask = is_mask(splits.val)  # masks: the epoch line shows IoU of vapour
    began = last = time.perf_counter()
    first: int | None = None

    def report(result: EpochResult, checkpoint: Path, final: TrialResult | None) -> None:
        nonlocal last, first
        run.log_epoch(result)
        now = time.perf_counter()
        first = first or result.epoch
        if echo is not None:
            per_epoch = (now - began) / (result.epoch - first + 1)  # includes validation and checkpoints
            echo(result.line(cfg.train.epochs, now - last, per_epoch * (cfg.train.epochs - result.epoch), cfg.train.best_by,
                             mask))
        last = now

    try:
        _record_run(out_dir, run.run_id, uri, experiment)
        if on_run is not None:
            on_run(run.run_id, previous is not None)
        if previous is not None:
            # The checkpoint is saved before its epoch is logged: an interrupt in between left that epoch unlogged.
            for done in checkpoint_history(resume):  # type: ignore[arg-type]
                run.log_epoch(done)
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
