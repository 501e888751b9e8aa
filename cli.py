"""bubbles-study command line: each command parses its options into a typed request and calls the one function in
study/ or bubbles/ that does the work (bubbles.data.*, study.train_command, study.sweep_command, study.export_command,
bubbles.predict_command, study.report, study.server); the group turns user errors into one line."""

from __future__ import annotations

import errno
import gc
import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from bubbles.data import DEFAULT_STORE
from bubbles.errors import UserError


class Group(click.Group):
    """A click group that prints user errors as one line (no traceback) and exits 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return self._invoke(ctx)
        finally:
            # The interpreter's last full garbage collection walks every object torch, mlflow and ray made: 6-11 s
            # after the work is done (or after Ctrl-C) on 2 busy cores. Frozen objects are skipped; the OS frees them.
            gc.freeze()

    def _invoke(self, ctx: click.Context) -> Any:
        # A log file or a pipe gets each line when it happens (trial events, heartbeats), not in 8 KiB blocks.
        if hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(line_buffering=True)
        # MLflow announces creating a new sqlite store's tables at INFO: not a line a user needs on the console.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)  # Ctrl-C before anything was written: nothing to clean up or resume
            sys.exit(130)
        except OSError as exc:
            # The file system refused (read-only, full, name too long, permission, a file where a folder should
            # be): the user can fix that, so one line naming the path, not a traceback.
            if exc.errno not in _USER_ERRNOS:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: {where}{exc.strerror or exc}", err=True)
            sys.exit(1)


_USER_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG, errno.EACCES, errno.EPERM,
                errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ENOENT}


@click.group(cls=Group)
@click.version_option(package_name="bubbles-study")
def main() -> None:
    """Find the best video-prediction model for bubble flows.

    \b
    Data:    synth, ingest, inspect
    Models:  train (one trial, no Ray), sweep (Ray Tune + Optuna + ASHA)
    Results: export, predict, report
    Lab:     server (the tracking server on PostgreSQL)
    Honours MLFLOW_TRACKING_URI and RAY_ADDRESS.
    """


def _say(lines: Iterable[str]) -> None:
    for line in lines:
        click.echo(line)


def _err(line: str) -> None:
    click.echo(line, err=True)


def _warn(line: str) -> None:
    click.echo(f"warning: {line}", err=True)


def _exit(code: int) -> None:
    if code:
        sys.exit(code)


def _epoch_bar(loader: Any, epoch: int) -> Any:
    """A terminal's progress bar over an epoch's batches, shown once the epoch has run 10 s."""
    from tqdm import tqdm

    return tqdm(loader, total=len(loader), desc=f"epoch {epoch + 1}", unit="batch", delay=10, leave=False)


@main.command()
@click.argument("store", type=click.Path(path_type=Path), default=DEFAULT_STORE)
@click.option("--sequences", default=8, show_default=True, help="Number of sequences.")
@click.option("--frames", default=200, show_default=True, help="Frames per sequence.")
@click.option("--size", default="128", show_default=True, help="Frame size: S (S x S) or HxW, e.g. 96x256.")
@click.option("--seed", default=0, show_default=True, help="Seed: same arguments give byte-identical frames.")
@click.option("--conditions", type=int, default=None, help="Distinct initial conditions (default: one per sequence).")
@click.option("--workers", default=min(2, os.cpu_count() or 1), show_default=True, help="Processes.")
def synth(store: Path, sequences: int, frames: int, size: str, seed: int, conditions: int | None, workers: int) -> None:
    """Generate a synthetic bubble-flow store (Lagrangian bubbles, shadowgraph rendering).

    \b
    Examples:
      bubbles-study synth data/synthetic.zarr
      bubbles-study synth data/big.zarr --sequences 16 --frames 400 --size 256 --conditions 8
      bubbles-study synth data/wide.zarr --sequences 4 --frames 100 --size 96x256
    """
    from tqdm import tqdm

    from bubbles.data.framesize import parse_image_size
    from bubbles.data.synth import SynthConfig, new_synthetic_store

    cfg = SynthConfig(sequences=sequences, frames=frames, size=parse_image_size(size, "synth: --size"), seed=seed,
                      conditions=conditions)
    cfg.validate()
    with tqdm(total=sequences, desc="synth", unit="sequence", disable=None, delay=1) as bar:
        line = new_synthetic_store(store, cfg, workers, progress=bar.update)
    click.echo(line)


@main.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--sequence", help="Sequence name (default: from the source's file name).")
@click.option("--condition", multiple=True, metavar="KEY=VALUE", help="Initial condition value (repeatable).")
@click.option("--field", "hdf5_fields", multiple=True,
              help="HDF5 field to read (e.g. dfun); repeat for a multi-field sequence (--field dfun --field temperature). "
                   "netCDF: the video variable (default: the file's only one of 3+ dimensions).")
@click.option("--fps", type=float, help="Frame rate (default: from the video, else 1).")
@click.option("--no-flip-y", is_flag=True, help="HDF5: keep row 0 at y=0 (default flips so y points up).")
@click.option("--crop", metavar="LEFT,TOP,RIGHT,BOTTOM", help="Keep only this box (native pixels, right/bottom exclusive).")
@click.option("--clip", metavar="LO,HI", help="16-bit/float: scale from these percentiles (e.g. 0.1,99.9), not min..max.")
@click.option("--drop-duplicates", is_flag=True, help="Remove frames repeating the frame before (stalled camera, padding, a codec's re-encoded repeat).")
@click.option("--frames", "frame_range", metavar="START:STOP[:STEP]",
              help="Keep source frames START..STOP-1 (either side may be empty), every STEP-th (a high-speed camera: ::4).")
@click.option("--drop-broken", is_flag=True, help="Remove frames that break the sequence (blank, saturated, a brightness jump).")
@click.option("--colormap", metavar="NAME", help="The source renders a scalar field in this matplotlib colour map (e.g. jet): invert it.")
@click.option("--colorbar", metavar="L,T,R,B", help="Invert with the figure's own colour bar in this box (source pixels; orientation found).")
def ingest(src: Path, store: Path, sequence: str | None, condition: tuple[str, ...], hdf5_fields: tuple[str, ...], fps: float | None, no_flip_y: bool, crop: str | None, clip: str | None, drop_duplicates: bool, frame_range: str | None, drop_broken: bool, colormap: str | None, colorbar: str | None) -> None:
    """Add a recording to a store (created if missing), atomically.

    SRC is a folder of PNG/TIFF/JPEG frames, a video (mp4/avi/gif), a BubbleML HDF5 file, a netCDF-4 file (.nc,
    as xarray writes; fps from its time coordinate, bit-packed masks unpacked), or a .npy array. A recording of two
    values (a segmentation) is stored as a mask.

    \b
    Examples:
      bubbles-study ingest recordings/run07/ data/lab.zarr --condition regime=nozzle --condition gas_flow=0.8
      bubbles-study ingest sim/Twall-100.hdf5 data/bubbleml.zarr --field dfun --condition superheat=100
      bubbles-study ingest sim/Twall-100.hdf5 data/fields.zarr --field dfun --field temperature --field velx
      bubbles-study ingest saturated.gif data/pool.zarr --crop 6,53,305,352 --colormap jet --drop-duplicates
      bubbles-study ingest pool-boiling-experiment-masks.nc data/exp.zarr --frames ::2
    """
    from tqdm import tqdm

    from bubbles.data.conditions import parse_conditions
    from bubbles.data.frame_rules import parse_clip, parse_crop, parse_frames
    from bubbles.data.ingest import IngestRequest
    from bubbles.data.ingested import add_recording

    request = IngestRequest(
        source=src.resolve(), store=store.resolve(), sequence=sequence, condition=parse_conditions(condition),
        fps=fps, hdf5_fields=hdf5_fields, flip_y=not no_flip_y, crop=parse_crop(crop) if crop else None,
        clip=parse_clip(clip) if clip else None, drop_duplicates=drop_duplicates,
        frames=parse_frames(frame_range) if frame_range else None, colormap=colormap, drop_broken=drop_broken,
        colorbar=parse_crop(colorbar, "--colorbar") if colorbar else None,
    )
    with tqdm(desc=f"reading {src.name}", unit="frame", disable=None) as bar:
        lines = add_recording(request, store, progress=bar.update, warn=_warn)
    _say(lines)


@main.command()
@click.argument("store", type=click.Path(path_type=Path), default=DEFAULT_STORE)
@click.option("--verify", is_flag=True, help="Decode every chunk and check it against the checksum recorded at write time.")
@click.option("--record", is_flag=True, help="With --verify: record checksums for sequences written before they existed.")
@click.option("--calibrate", is_flag=True, help="Measure each sequence's bubble polarity, size bounds and contrast; record them for the detector.")
@click.option("--frame-step", default=1, show_default=True, type=click.IntRange(1, 1000),
              help="Forecastability figures for windows whose frames are this many stored frames apart.")
def inspect(store: Path, verify: bool, record: bool, calibrate: bool, frame_step: int) -> None:
    """Show a store's sequences: frames, sizes, pyramid levels, conditions, chunking, bytes on disk.

    Opening a store checks that every chunk file is present; --verify also checks every chunk's contents.

    \b
    Examples:
      bubbles-study inspect data/synthetic.zarr
      bubbles-study inspect data/lab.zarr --verify
      bubbles-study inspect data/lab.zarr --calibrate
      bubbles-study inspect data/exp.zarr --frame-step 8
    """
    from bubbles.data.summary import inspect_lines

    _say(inspect_lines(store, verify, record, calibrate, frame_step))


@main.command()
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a parameter (repeatable).")
@click.option("--dry-run", is_flag=True, help="Build the model and the split, print them, do not train.")
@click.option("--out", type=click.Path(path_type=Path),
              help="Checkpoint directory (default runs/trials/<config file name>-<process id>).")
@click.option("--experiment", default="bubbles-train", show_default=True, help="MLflow experiment.")
@click.option("--resume", type=click.Path(path_type=Path), help="Continue from this checkpoint.pt.")
def train(config: Path, sets: tuple[str, ...], dry_run: bool, out: Path | None, experiment: str, resume: Path | None) -> None:
    """Train one configuration (no Ray) and log it as one MLflow run.

    CONFIG is a YAML file of flat parameters (all of them: docs/parameters.md). Ctrl-C stops at the next batch and
    prints the command that continues from the last epoch's checkpoint.

    \b
    Examples:
      bubbles-study train search_spaces/trial_seed.yaml --dry-run
      bubbles-study train search_spaces/trial_quick.yaml --out runs/trials/quick
      bubbles-study train search_spaces/trial_quick.yaml --set 'window=6->2' --set epochs=5
      MLFLOW_TRACKING_URI=http://127.0.0.1:5000 bubbles-study train my_trial.yaml
    """
    from study.train_command import TrainRequest, train_command

    request = TrainRequest(config, sets, dry_run, out, experiment, resume)
    _exit(train_command(request, click.echo, _err, progress_bar=_epoch_bar if sys.stderr.isatty() else None))


@main.command()
@click.argument("space_file", type=click.Path(path_type=Path))
@click.option("--name", help="Sweep name (default: the file's stem); an existing sweep of that name continues.")
@click.option("--resume", is_flag=True, help="Continue the interrupted sweep of that name (it must exist).")
@click.option("--address", default=None, help="Ray cluster: auto, HOST:PORT or ray://... (default RAY_ADDRESS, else local).")
@click.option("--storage", type=click.Path(path_type=Path), default=Path("runs/sweeps"), show_default=True,
              help="Where sweeps live (a shared path on a cluster).")
@click.option("--store", type=click.Path(path_type=Path), default=None,
              help="The frame store, instead of the search space's data.store (on a cluster: a path every node sees).")
@click.option("--verbose", is_flag=True, help="Also print Ray Tune's status tables and the full top-5 leaderboard.")
@click.option("--trust-state", is_flag=True, help="With --resume: accept Ray's state files although they differ from the digest the sweep recorded (only if you know why: a driver killed while saving).")
def sweep(space_file: Path, name: str | None, resume: bool, address: str | None, storage: Path, store: Path | None,
          verbose: bool, trust_state: bool) -> None:
    """Search models with Ray Tune + Optuna (TPE) + ASHA; every trial is an MLflow run under one parent run.

    \b
    Examples:
      bubbles-study sweep search_spaces/smoke.yaml
      bubbles-study sweep search_spaces/convlstm.yaml --address auto --storage /shared/sweeps
      bubbles-study sweep search_spaces/smoke.yaml --resume
      MLFLOW_TRACKING_URI=http://head:5000 bubbles-study sweep search_spaces/convlstm.yaml
    """
    from study.sweep_command import SweepRequest, sweep_from_cli

    shared = click.get_current_context().get_parameter_source("storage") != click.core.ParameterSource.DEFAULT
    request = SweepRequest(space_file, name, resume, address, storage, shared, store, verbose, trust_state)
    _exit(sweep_from_cli(request, click.echo, _err))


@main.command()
@click.option("--sweep", "sweep_name", help="Export the best completed trial of this sweep by validation (and say its test score).")
@click.option("--run-id", help="Export this MLflow trial run.")
@click.option("--checkpoint", type=click.Path(path_type=Path), help="Export from a `train` output directory.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Export directory (new, or an earlier export: replaced atomically).")
@click.option("--onnx", is_flag=True, help="Also write model.onnx, checked against PyTorch with onnxruntime.")
@click.option("--register", help="Register in the MLflow model registry under this name (alias 'champion' if best).")
@click.option("--storage", type=click.Path(path_type=Path), default=Path("runs/sweeps"), show_default=True,
              help="Where the sweep named by --sweep lives (the sweep's --storage).")
def export(sweep_name: str | None, run_id: str | None, checkpoint: Path | None, out: Path, onnx: bool, register: str | None, storage: Path) -> None:
    """Write the best model as a self-contained directory (weights, config, TorchScript, metrics card).

    \b
    Examples:
      bubbles-study export --sweep smoke --out exports/smoke-best --onnx
      bubbles-study export --run-id 3f2a... --out exports/run --register bubbles-convlstm
      bubbles-study export --checkpoint runs/trials/trial_seed-1234 --out exports/seed
    """
    from study.export_command import ExportOptions, export_command

    export_command(ExportOptions(out, sweep_name, run_id, checkpoint, onnx, register, storage), click.echo, _err)


@main.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--store", type=click.Path(path_type=Path), help="Frame store to read from.")
@click.option("--sequence", help="Sequence in the store (default: one the model's split held out of training, named on the first line).")
@click.option("--input", "raw_input", type=click.Path(path_type=Path), help="Instead of a store: a folder of frames, a video, a TIFF stack or a .npy array.")
@click.option("--crop", metavar="LEFT,TOP,RIGHT,BOTTOM", help="With --input: keep only this box (native pixels).")
@click.option("--colormap", metavar="NAME", help="With --input: a rendering in this matplotlib colour map (as ingest --colormap).")
@click.option("--frames", "frame_range", metavar="START:STOP[:STEP]", help="With --input: keep these source frames (as ingest --frames).")
@click.option("--detector", "detector_sets", multiple=True, metavar="KEY=VALUE",
              help="Bubble-detector setting over the calibration (repeatable), e.g. --detector roi_bottom=0.92. Keys: "
                   "polarity (auto|dark|bright), background_radius, contrast_k, min_contrast, min_diameter_px, "
                   "max_diameter, roundness, roi_top, roi_bottom, min_diameter, typical_diameter (lengths in frame "
                   "heights, min_diameter_px in pixels).")
@click.option("--start", default=0, show_default=True, help="First context frame.")
@click.option("--steps", type=int, help="Frames to predict (default: the trained horizon).")
@click.option("--autoregressive", is_flag=True, help="Roll out beyond the trained horizon on its own predictions.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output directory.")
def predict(model_dir: Path, store: Path | None, sequence: str | None, raw_input: Path | None, crop: str | None, colormap: str | None,
            frame_range: str | None, detector_sets: tuple[str, ...], start: int, steps: int | None, autoregressive: bool,
            out: Path) -> None:
    """Predict frames with an exported model: strip.png, rollout.gif, prediction.npy, metrics when targets exist.

    \b
    Examples:
      bubbles-study predict exports/smoke-best --store data/synthetic.zarr --sequence seq003 --start 40 --out pred/
      bubbles-study predict exports/smoke-best --input recordings/run07/ --steps 30 --autoregressive --out pred07/
    """
    from bubbles.predict_command import PredictOptions, predict_command

    options = PredictOptions(model_dir, out, store, sequence, raw_input, crop, colormap, frame_range, detector_sets,
                             start, steps, autoregressive)
    predict_command(options, click.echo, _err)


@main.command()
@click.option("--sweep", "sweep_name", required=True, help="The sweep to report on.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Directory for index.html and its PNGs.")
@click.option("--storage", type=click.Path(path_type=Path), default=Path("runs/sweeps"), show_default=True,
              help="Where the sweep lives (the sweep's --storage).")
def report(sweep_name: str, out: Path, storage: Path) -> None:
    """Write an HTML report of a sweep (leaderboard, importances, curves, strips, failures, compute); it is also
    logged to the sweep's parent MLflow run.

    \b
    Example:
      bubbles-study report --sweep smoke --out reports/smoke
    """
    from study.report import report_sweep

    click.echo(f"wrote {report_sweep(sweep_name, out, storage)}")


@main.command()
@click.option("--backend-store-uri", "backend", required=True, metavar="URI",
              help="postgresql://USER@HOST:PORT/DB (a lab's server), or sqlite:///FILE (one user).")
@click.option("--artifacts", type=click.Path(path_type=Path), required=True,
              help="Artifact destination, on storage that outlives the head node (the shared file system); clients "
                   "upload and download through the server.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", default=5000, show_default=True, help="Port to listen on (a busy one is one line).")
@click.option("--workers", default=4, show_default=True, help="Server processes (concurrent trial writers).")
@click.option("--allowed-hosts", help="Host headers clients send, comma-separated NAME:PORT (e.g. head.lab:5000); "
                                      "required with a --host other than loopback; 127.0.0.1:PORT is always accepted.")
def server(backend: str, artifacts: Path, host: str, port: int, workers: int, allowed_hosts: str | None) -> None:
    """Run the study's MLflow tracking server (PostgreSQL backend, shared artifacts); see docs/lab-setup.md.

    \b
    Example:
      bubbles-study server --backend-store-uri postgresql://mlflow@127.0.0.1:5432/mlflow --artifacts /shared/mlartifacts
      then: MLFLOW_TRACKING_URI=http://127.0.0.1:5000 bubbles-study sweep ...
    """
    from study.server import ServerConfig, check
    from study.server_process import serve

    cfg = ServerConfig(backend, artifacts.resolve(), host, port, workers, allowed_hosts)
    for line in check(cfg):
        click.echo(f"warning: {line}", err=True)
    click.echo(f"starting the MLflow tracking server on {cfg.host}:{port} (backend {cfg.scheme}, artifacts in "
               f"{cfg.artifacts}) ...")
    serve(cfg, click.echo)


if __name__ == "__main__":
    main()
