"""`bubbles-study train` from its parsed options: one configuration trained without Ray and logged as one MLflow
run. Everything that can refuse (the experiment name, the config, the output directory, the store and split, a
--resume checkpoint, a damaged chunk, the tracking store) runs before any output or MLflow run exists."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Say = Callable[[str], object]
STRETCH_ADVICE = "(give image_size as a short side, or tile: HxW, to keep the aspect)"


@dataclass(frozen=True)
class TrainRequest:
    """The `train` command's options, as given."""

    config: Path
    sets: tuple[str, ...]
    dry_run: bool
    out: Path | None  # default runs/trials/<config file name>-<process id>
    experiment: str
    resume: Path | None


DEFAULT_EXPERIMENT = "bubbles-train"


def _again(request: TrainRequest, out_dir: Path, checkpoint: str) -> str:
    """The command that continues an interrupted `train` from its last epoch's checkpoint, as it was started."""
    out = request.out or out_dir
    again = ["bubbles-study", "train", str(request.config), *[a for s in request.sets for a in ("--set", s)],
             "--out", str(out), "--resume", str(out / checkpoint)]
    if request.experiment != DEFAULT_EXPERIMENT:
        again[-2:-2] = ["--experiment", request.experiment]
    return shlex.join(again)


def _describe(cfg: Any, splits: Any, sizes: list[str], stretched: list[str], echo: Say, err: Say) -> None:
    """--dry-run: the resolved parameters, the model's and the split's sizes, every sequence's frame size and what
    the windows cover; nothing is trained or written."""
    import yaml

    from bubbles.data.coverage import coverage_lines, coverage_warnings
    from bubbles.training.train import describe

    echo(yaml.safe_dump(cfg.flat(), sort_keys=False).rstrip())
    for key, value in describe(cfg, splits).items():
        echo(f"{key}: {value:,}" if isinstance(value, int) else f"{key}: {value}")
    for line in sizes:
        echo(line)
    for line in stretched:
        err(line)
    for line in coverage_lines(splits):
        echo(line)
    for line in coverage_warnings(splits):
        err(f"warning: {line}")


def train_command(request: TrainRequest, echo: Say, err: Say,
                  progress_bar: Callable[[Iterable, int], Iterable] | None = None) -> int:
    """Train (or with dry_run describe) the configuration; the exit code: 0 completed, 2 ended otherwise (diverged,
    stopped), 130 interrupted (with the command that continues it). `progress_bar(loader, epoch)` wraps an epoch's
    batches on a terminal."""
    from bubbles.data.tiles import tile_lines
    from bubbles.data.splits import make_splits
    from bubbles.outputs import check_output_dir, write_manifest
    from bubbles.training.train import CHECKPOINT, check_resume
    from study.config import load_trial_config
    from study.interrupt import stop_on_ctrl_c
    from study.tracking import check_experiment_name, check_tracking, tracking_uri
    from study.trial import heartbeat, run_logged_trial

    check_experiment_name(request.experiment, tracking_uri(Path.cwd()))
    cfg = load_trial_config(request.config, request.sets)
    out_dir = (request.out or Path("runs") / "trials" / f"{request.config.stem}-{os.getpid()}").resolve()
    if not request.dry_run:
        check_output_dir(out_dir, "train")  # training writes into it (and resumes there): only our own or a new one
    splits = make_splits(cfg.data, cfg.window)
    sizes = tile_lines(splits.train.cache.store, cfg.data, splits)
    stretched = [f"warning: {line} {STRETCH_ADVICE}" for line in sizes if "STRETCHED" in line]
    if request.dry_run:
        _describe(cfg, splits, sizes, stretched, echo, err)
        return 0
    resume = request.resume.resolve() if request.resume is not None else None
    if resume is not None:
        check_resume(resume, cfg)
    splits.check_frames()  # a damaged chunk stops here, before the output directory and the MLflow run exist
    for line in stretched:  # the dry run lists every sequence; training says only what is stretched
        err(line)
    uri = tracking_uri(Path.cwd())
    check_tracking(uri)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(out_dir, "train")

    def batches(loader, epoch: int):  # type: ignore[no-untyped-def]
        # A terminal gets a progress bar in epochs longer than 10 s (the epoch line follows it); a log or a pipe
        # gets a heartbeat line every 30 s instead.
        if progress_bar is not None:
            return progress_bar(loader, epoch)
        return heartbeat(loader, epoch, cfg.train.epochs, echo)

    echo(f"training {cfg.train.epochs} epochs; checkpoints in {out_dir}")
    stopping = stop_on_ctrl_c()
    runs: list[str] = []  # the MLflow run, once it exists

    def opened(run_id: str, continued: bool) -> None:
        runs.append(run_id)
        if continued:
            echo(f"continuing MLflow run {run_id} (the one this checkpoint's training logged to)")

    try:
        result, run_id = run_logged_trial(cfg, out_dir, uri, request.experiment, resume, splits,
                                          echo=echo, batches=batches, on_run=opened)
    except KeyboardInterrupt:
        stopping()
        checkpoint = out_dir / CHECKPOINT
        if not runs:
            err("interrupted before training began: no MLflow run was created; run the same command again")
        elif checkpoint.is_file():
            err(f"interrupted: the MLflow run {runs[0]} is KILLED; the checkpoint of the last finished epoch is kept "
                f"in {checkpoint}; the same run goes on with  {_again(request, out_dir, CHECKPOINT)}")
        else:
            err(f"interrupted before the first epoch ended: nothing to resume (the MLflow run {runs[0]} is KILLED); "
                "run the same command again")
        return 130
    if result.evaluation is not None:
        echo(result.evaluation.lead_table())
    echo(f"status {result.status}; MLflow run {run_id} in {uri}; checkpoints in {out_dir}")
    return 0 if result.status == "completed" else 2
