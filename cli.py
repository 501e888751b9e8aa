# Over 400 lines: one click command per user verb, with its options, help and one-line errors (issue 29 left splitting it by command group to after issues 31 and 32, who are changing it now).
"""bubbles-study command line: resolve paths, parse configs, call study/ or bubbles/; nothing else."""

from __future__ import annotations

import errno
import gc
import logging
import math
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bubbles.errors import UserError

DEFAULT_STORE = "data/synthetic.zarr"
MAX_PREDICT_STEPS = 1000  # an autoregressive rollout keeps every frame in memory


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


def _detector_sets(pairs: tuple[str, ...]) -> tuple[tuple[str, object], ...]:
    """--detector KEY=VALUE pairs, checked as the `detector` parameter is."""
    import yaml

    from bubbles.data.windows import parse_detector

    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UserError(f"--detector {pair!r}: expected KEY=VALUE, e.g. roi_bottom=0.92")
        values[key.strip()] = yaml.safe_load(value)
    return parse_detector("predict", "--detector", values)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


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
    from bubbles.data.framesize import parse_image_size
    from bubbles.data.synth import SynthConfig, synth_store

    shape = parse_image_size(size, "synth: --size")
    cfg = SynthConfig(sequences=sequences, frames=frames, size=shape, seed=seed, conditions=conditions)
    cfg.validate()
    if store.exists():
        raise UserError(f"{store}: already exists (remove it or choose another path)")
    from tqdm import tqdm

    with tqdm(total=sequences, desc="synth", unit="sequence", disable=None) as bar:
        synth_store(str(store.resolve()), cfg, workers, progress=bar.update)
    h, w = (shape, shape) if isinstance(shape, int) else shape
    click.echo(f"wrote {sequences} sequences x {frames} frames at {h}x{w} to {store}")


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
    from bubbles.data.ingest import IngestRequest, ingest as run_ingest, parse_clip, parse_crop, parse_frames

    request = IngestRequest(
        source=src.resolve(), store=store.resolve(), sequence=sequence, condition=parse_conditions(condition),
        fps=fps, hdf5_fields=hdf5_fields, flip_y=not no_flip_y, crop=parse_crop(crop) if crop else None,
        clip=parse_clip(clip) if clip else None, drop_duplicates=drop_duplicates,
        frames=parse_frames(frame_range) if frame_range else None, colormap=colormap, drop_broken=drop_broken,
        colorbar=parse_crop(colorbar, "--colorbar") if colorbar else None,
    )
    with tqdm(desc=f"reading {src.name}", unit="frame", disable=None) as bar:
        name = run_ingest(request, progress=bar.update, warn=lambda line: click.echo(f"warning: {line}", err=True))
    click.echo(f"added sequence {name!r} to {store}")
    from bubbles.data.calibrate import describe
    from bubbles.data.store import FrameStore

    info = FrameStore.open(store).sequences[name]
    if "netcdf" in info.meta.extra:
        nc = info.meta.extra["netcdf"]
        rate = f"{info.meta.fps:g} fps from its time coordinate" if nc.get("fps_from") else f"{info.meta.fps:g} fps (no time coordinate; --fps sets it)"
        unpacked = f", unpacked from bits along {nc['unpacked']}" if nc.get("unpacked") else ""
        click.echo(f"netCDF variable {nc['variable']!r} ({' x '.join(nc['dims'])}{unpacked}): {info.frames} frames of "
                   f"{info.native_size[0]}x{info.native_size[1]}, {rate}")
    if "colorbar" in info.meta.extra:
        bar = info.meta.extra["colorbar"]
        named = (f" (with {bar['named_map']}: {100 * bar['named_map_off_fraction']:.1f}%)" if "named_map" in bar else "")
        click.echo(f"colour bar: {bar['orientation']}, read from the figure; "
                   f"{100 * info.meta.extra['off_colormap_fraction']:.1f}% of the pixels are no colour of it{named}")
    if "mask" in info.meta.extra:
        click.echo(f"binary recording: stored as a mask (vapour {info.meta.extra['mask']['source_values'][1]} -> 255, liquid "
                   f"{info.meta.extra['mask']['source_values'][0]} -> 0); bubbles are its connected components, mask "
                   "losses (bce, dice, bce+dice) and mask metrics (IoU, vapour fraction, bubble F1) apply")
    elif info.frames and len(info.fields) == 1:
        click.echo(f"detector calibration: {describe(name, info.meta.extra.get('detector_calibration'))}")


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
    from bubbles.data.summary import describe_store, verify_store

    if record and not verify:
        raise UserError("inspect: --record goes with --verify")
    click.echo(describe_store(store))
    if calibrate:
        from bubbles.data.calibrate import calibrate_store

        for line in calibrate_store(store.resolve()):
            click.echo(f"detector calibration: {line}")
    else:
        from bubbles.data.calibrate import describe
        from bubbles.data.store import FrameStore

        for name, info in sorted(FrameStore.open(store).sequences.items()):
            if "detector_calibration" in info.meta.extra:
                click.echo(f"detector calibration: {describe(name, info.meta.extra['detector_calibration'])}")
    if verify:  # before forecastability reads the frames: a damaged chunk is named as such, not as a failed read
        click.echo(verify_store(store, record_missing=record))
    from bubbles.data.forecastability import store_forecastability
    from bubbles.data.store import FrameStore

    for figures in store_forecastability(FrameStore.open(store), frame_step):
        for line in figures.lines():
            click.echo(line)


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
    import yaml

    from bubbles.data.coverage import coverage_lines, coverage_warnings
    from bubbles.training.train import describe
    from bubbles.data.windows import make_splits
    from study.config import load_trial_config
    from study.tracking import check_tracking, tracking_uri

    from study.tracking import check_experiment_name

    check_experiment_name(experiment, tracking_uri(Path.cwd()))
    cfg = load_trial_config(config, sets)
    from bubbles.outputs import check_output_dir, write_manifest

    out_dir = (out or Path("runs") / "trials" / f"{config.stem}-{os.getpid()}").resolve()
    if not dry_run:
        check_output_dir(out_dir, "train")  # training writes into it (and resumes there): only our own or a new one
    # Everything that can refuse (store, split, --resume) runs before any output or MLflow run exists.
    splits = make_splits(cfg.data, cfg.window)
    from bubbles.data.tiles import tile_lines

    sizes = tile_lines(splits.train.cache.store, cfg.data, splits)
    if dry_run:
        click.echo(yaml.safe_dump(cfg.flat(), sort_keys=False).rstrip())
        for key, value in describe(cfg, splits).items():
            click.echo(f"{key}: {value:,}" if isinstance(value, int) else f"{key}: {value}")
        for line in sizes:
            click.echo(line)
        for line in sizes:
            if "STRETCHED" in line:
                click.echo(f"warning: {line} (give image_size as a short side, or tile: HxW, to keep the aspect)", err=True)
        for line in coverage_lines(splits):
            click.echo(line)
        for line in coverage_warnings(splits):
            click.echo(f"warning: {line}", err=True)
        return
    from bubbles.training.train import CHECKPOINT
    from study.trial import run_logged_trial

    if resume is not None:
        from bubbles.training.train import check_resume

        check_resume(resume.resolve(), cfg)
    splits.check_frames()  # a damaged chunk stops here, before the output directory and the MLflow run exist
    for line in sizes:  # the dry run lists every sequence; training says only what is stretched
        if "STRETCHED" in line:
            click.echo(f"warning: {line} (give image_size as a short side, or tile: HxW, to keep the aspect)", err=True)
    uri = tracking_uri(Path.cwd())
    check_tracking(uri)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(out_dir, "train")
    from tqdm import tqdm

    from study.trial import heartbeat

    def bar(loader, epoch: int):  # type: ignore[no-untyped-def]
        # A terminal gets a progress bar in epochs longer than 10 s (the epoch line follows it); a log or a pipe
        # gets a heartbeat line every 30 s instead.
        if sys.stderr.isatty():
            return tqdm(loader, total=len(loader), desc=f"epoch {epoch + 1}", unit="batch", delay=10, leave=False)
        return heartbeat(loader, epoch, cfg.train.epochs, click.echo)

    click.echo(f"training {cfg.train.epochs} epochs; checkpoints in {out_dir}")
    stopping = _stop_on_ctrl_c()
    runs: list[str] = []  # the MLflow run, once it exists

    def opened(run_id: str, continued: bool) -> None:
        runs.append(run_id)
        if continued:
            click.echo(f"continuing MLflow run {run_id} (the one this checkpoint's training logged to)")

    try:
        result, run_id = run_logged_trial(cfg, out_dir, uri, experiment, resume.resolve() if resume else None, splits,
                                          echo=click.echo, batches=bar, on_run=opened)
    except KeyboardInterrupt:
        stopping()
        checkpoint = out_dir / CHECKPOINT
        if not runs:
            click.echo("interrupted before training began: no MLflow run was created; run the same command again", err=True)
        elif checkpoint.is_file():
            again = ["bubbles-study", "train", str(config), *[a for s in sets for a in ("--set", s)],
                     "--out", str(out or out_dir), "--resume", str((out or out_dir) / CHECKPOINT)]
            if experiment != "bubbles-train":
                again[-2:-2] = ["--experiment", experiment]
            click.echo(f"interrupted: the MLflow run {runs[0]} is KILLED; the checkpoint of the last finished epoch is kept "
                       f"in {checkpoint}; the same run goes on with  {shlex.join(again)}", err=True)
        else:
            click.echo(f"interrupted before the first epoch ended: nothing to resume (the MLflow run {runs[0]} is KILLED); "
                       "run the same command again", err=True)
        sys.exit(130)
    if result.evaluation is not None:
        click.echo(result.evaluation.lead_table())
    click.echo(f"status {result.status}; MLflow run {run_id} in {uri}; checkpoints in {out_dir}")
    if result.status != "completed":
        sys.exit(2)


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
    # First of all, as `train` does: Ctrl-C (and a SIGINT to a sweep a script started with `&`, SIGINT ignored)
    # stops it at any phase, Ray's start and the baselines included; Ray Tune takes it over during fit().
    stopping = _stop_on_ctrl_c()
    try:
        _sweep(space_file, name, resume, address, storage, store, verbose, trust_state, stopping)
    except KeyboardInterrupt:
        stopping()
        click.echo("interrupted before the sweep started: nothing to resume; run the same command again", err=True)
        sys.exit(130)


def _sweep(space_file: Path, name: str | None, resume: bool, address: str | None, storage: Path, store: Path | None,
           verbose: bool, trust_state: bool, stopping: Callable[[], None]) -> None:
    from study.interrupt import discard_unstarted, has_tune_state
    from study.space import load_space
    from study.tracking import check_tracking, readable, tracking_uri

    from study.sweep_dir import check_name

    name = check_name(name or space_file.stem)
    storage = storage.resolve()
    from bubbles.outputs import zarr_store_around

    if zarr_store_around(storage) is not None:
        raise UserError(f"--storage {storage}: lies inside the Zarr store {zarr_store_around(storage)}; sweeps live outside frame stores")
    if resume and not (storage / name).is_dir():
        raise UserError(f"--resume: no sweep named {name!r} under {storage}")
    if resume and not (storage / name / "tuner.pkl").exists() and not has_tune_state(storage / name):
        raise UserError(f"--resume: the sweep {name!r} under {storage} never saved a trial (its start was interrupted); "
                        f"start it again without --resume")
    if trust_state and not resume:
        raise UserError("--trust-state goes with --resume")
    if store is None:
        _ensure_default_store(space_file)
    space = load_space(space_file, store=store)
    uri = tracking_uri(Path.cwd())
    from study.tracking import check_experiment_name

    check_experiment_name(space.experiment, uri, f"{space_file}: tracking.experiment")
    check_tracking(uri)

    def list_windows() -> None:
        for line in space.coverage:
            click.echo(line)
        for line in space.coverage_warnings:
            click.echo(f"warning: {line}", err=True)

    from study.sweep import run_sweep

    address = address or os.environ.get("RAY_ADDRESS") or None
    if address in (None, "local"):
        # A fresh local Ray needs no token: without this Ray 2.60 asks for one (or prints how to set one up).
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    shared = click.get_current_context().get_parameter_source("storage") != click.core.ParameterSource.DEFAULT
    address = address or os.environ.get("RAY_ADDRESS") or None
    again = _resume_command(space_file, name, storage, address, store)
    created = not (storage / name).exists()  # only a directory this run creates may be removed after a Ctrl-C
    try:
        outcome = run_sweep(space, name, storage, uri, address=address, echo=click.echo, storage_shared=shared,
                            store_shared=store is not None or _store_is_absolute(space_file),
                            preamble=list_windows, resume_command=again, verbose=verbose, trust_state=trust_state)
        click.echo(f"sweep {name!r}: {len(outcome.rows)} trials; leaderboard in {outcome.directory}; MLflow parent run {outcome.parent_run_id} in {uri}")
        from study.tracking.views import sweep_view_link

        # None: the store is down (said above). The link opens this sweep's trials ranked by the objective.
        link = readable(lambda: sweep_view_link(uri, space.experiment, outcome.parent_run_id, name,
                                                space.tune.objective, space.tune.mode), None)
        if link:
            click.echo(f"MLflow runs table: {link}")
        if any(r.get("status") == "completed" for r in outcome.rows) and not outcome.interrupted:
            click.echo(f"export the winner:  {_export_command(name, storage, uri)}")
    except KeyboardInterrupt:
        stopping()  # a second Ctrl-C while the driver tidies up is ignored
        if has_tune_state(storage / name):
            click.echo(f"interrupted: continue with  {again}", err=True)
        else:
            done = discard_unstarted(storage / name, uri, created)
            start = _resume_command(space_file, name, storage, address, store, resume=False)
            click.echo(f"interrupted during start-up, before any trial ({done}): nothing to resume; start it again "
                       f"with  {start}", err=True)
        sys.exit(130)
    if outcome.interrupted:
        click.echo(f"interrupted: continue with  {again}", err=True)
        sys.exit(130)


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
    from bubbles.outputs import check_output_dir
    from study import export as ex
    from study.tracking import check_tracking, tracking_uri

    if sum(v is not None for v in (sweep_name, run_id, checkpoint)) != 1:
        raise UserError("export: give exactly one of --sweep, --run-id, --checkpoint")
    if register is not None and not register.strip():
        raise UserError("export: --register needs a model name (e.g. --register bubbles-convlstm)")
    check_output_dir(out.resolve(), "export")  # before any download or evaluation
    uri = tracking_uri(Path.cwd())
    if checkpoint is not None:
        chosen = ex.from_checkpoint_dir(checkpoint.resolve())
    else:
        check_tracking(uri)
        objective, board = None, None
        if sweep_name is not None:
            from study.sweep_dir import finished_sweep_dir
            from study.tracking import sweep_dirs_named

            sweep_dir = finished_sweep_dir(storage.resolve(), sweep_name, sweep_dirs_named(uri, sweep_name))
            run_id, objective, board = ex.best_run_of_sweep(sweep_dir)
        chosen = ex.from_run(uri, str(run_id), objective)
        if board is not None and not math.isclose(board, chosen.objective, rel_tol=1e-4, abs_tol=1e-6):
            click.echo(f"warning: the leaderboard says {objective} {board:.5f}, the exported weights measure "
                       f"{chosen.objective:.5f} (a trial trained before best.pt was picked by the objective?)", err=True)
    click.echo(f"building the export: weights, TorchScript{', ONNX (checked with onnxruntime)' if onnx else ''}, the "
               "climatology frame from the training windows, the metrics card ...")
    path = ex.export(chosen, out, onnx, note=lambda line: click.echo(line, err=True))
    selected = f", {ex.VALIDATION}" if chosen.yardstick else ""
    click.echo(f"exported {chosen.source} ({chosen.objective_name} {chosen.objective:.4f}{selected}) to {path}")
    if chosen.test_line:
        click.echo(chosen.test_line)
    for line in chosen.warnings():
        click.echo(line, err=True)
    if register is not None:
        check_tracking(uri)
        try:
            version, champion, why = ex.register(uri, register, path, chosen)
        except UserError as exc:  # the registry kept nothing; the export directory itself is complete
            raise UserError(f"{exc} in the registry; the export in {path} is complete and kept (export again with "
                            "--register to retry)") from None
        from study.tracking import model_version_link

        click.echo(f"registered {register} version {version}" + (" as 'champion'" if champion else f" (champion unchanged: {why})")
                   + f"; load it with mlflow.pyfunc.load_model('models:/{register}/{version}'); see {model_version_link(uri, register, version)}")


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
    from bubbles.outputs import check_output_dir
    from bubbles.data.ingest import parse_crop, parse_frames
    from bubbles.evaluation.metrics import COLLAPSE_THRESHOLD
    from bubbles.predict import PredictRequest, predict as run_predict

    if (store is None) == (raw_input is None):
        raise UserError("predict: give either --store (with --sequence) or --input, not both")
    if steps is not None and not 1 <= steps <= MAX_PREDICT_STEPS:
        raise UserError(f"--steps {steps}: must be in [1, {MAX_PREDICT_STEPS}]")
    check_output_dir(out.resolve(), "prediction")
    if crop and raw_input is None:
        raise UserError("predict: --crop applies to --input (a store's frames were cropped at ingest)")
    if (colormap or frame_range) and raw_input is None:
        raise UserError("predict: --colormap and --frames apply to --input (a store's frames were converted at ingest)")
    request = PredictRequest(model_dir.resolve(), out, start, steps, autoregressive, store.resolve() if store else None, sequence,
                             raw_input, parse_crop(crop) if crop else None, colormap,
                             parse_frames(frame_range) if frame_range else None, _detector_sets(detector_sets))
    summary = run_predict(request)
    if summary.get("chosen"):
        click.echo(str(summary["chosen"]))
    for warning in summary.get("warnings", []):  # type: ignore[union-attr]
        click.echo(f"warning: {warning}", err=True)
    line = f"predicted {summary['steps']} frames of {summary['sequence']!r} from frame {start} into {out}"
    if "metrics" in summary:
        m = summary["metrics"]
        line += (f"; lead 1: SSIM {m['ssim'][0]:.3f} (persistence {m['persistence_ssim'][0]:.3f}), skill vs the strongest "  # type: ignore[index]
                 f"baseline ({m['strongest'][0]}{'' if 'climatology_mse' in m else '; not climatology: the export has no climatology.npy'}) "
                 f"{m['skill_vs_strongest'][0]:+.3f}, bubble F1 {_fmt(m['bubble_f1'][0])} (persistence "  # type: ignore[index]
                 f"{_fmt(m['persistence_bubble_f1'][0])}); collapse score "  # type: ignore[index]
                 + (_fmt(summary["collapse_score"]) if summary["collapse_score"] is not None else "n/a (one predicted frame)")  # type: ignore[arg-type]
                 + (" — COLLAPSED: the prediction barely changes from lead to lead while the target does (below "
                    f"{COLLAPSE_THRESHOLD}); this model predicts blur" if summary.get("collapsed") else ""))
    click.echo(line)
    if "against_baselines" in summary:
        click.echo(f"on this window, by MSE per lead: the model {summary['against_baselines']}")
    if "test_against_baselines" in summary:
        click.echo(f"on the study's test split: the model {summary['test_against_baselines']}")
    for field, f in summary.get("fields", {}).items():  # type: ignore[union-attr]
        if f:
            click.echo(f"  {field}: lead 1 SSIM {f['ssim'][0]:.3f} (persistence {f['persistence_ssim'][0]:.3f}), MSE {f['mse'][0]:.5f}, "
                       f"skill vs persistence {f['skill_vs_persistence'][0]:+.3f}; files in {out / 'fields' / field}")


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
    from bubbles.outputs import check_output_dir
    from study.report import write_report
    from study.tracking import check_tracking, tracking_uri

    check_output_dir(out.resolve(), "report")
    uri = tracking_uri(Path.cwd())
    check_tracking(uri)
    from study.sweep_dir import finished_sweep_dir
    from study.tracking import sweep_dirs_named

    sweep_dir = finished_sweep_dir(storage.resolve(), sweep_name, sweep_dirs_named(uri, sweep_name))
    click.echo(f"wrote {write_report(uri, sweep_dir, out.resolve())}")


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


def _resume_command(space_file: Path, name: str, storage: Path, address: str | None, store: Path | None = None,
                    resume: bool = True) -> str:
    """The command that continues this sweep as it was started: same storage, same Ray cluster (a command without
    them looks under runs/sweeps, or starts a local Ray); resume=False: the command that starts it again."""
    import shlex

    words = ["bubbles-study", "sweep", str(space_file), "--name", name, *(["--resume"] if resume else []), "--storage", str(storage)]
    if store is not None:
        words += ["--store", str(store.resolve())]
    if address and address != "local":
        words += ["--address", address]
    return shlex.join(words)


def _export_command(name: str, storage: Path, uri: str) -> str:
    """The command that exports this sweep's winner, exactly: its --storage, and the tracking URI when it is not
    the default one this directory would use."""
    import shlex

    from study.tracking import default_uri

    words = ["bubbles-study", "export", "--sweep", name, "--out", f"exports/{name}", "--storage", str(storage)]
    prefix = f"MLFLOW_TRACKING_URI={shlex.quote(uri)} " if uri != default_uri(Path.cwd()) else ""
    return prefix + shlex.join(words)


def _store_is_absolute(space_file: Path) -> bool:
    """Whether the search space names its frame store by an absolute path or a URL (a relative one is this
    machine's copy, which the other nodes of a cluster do not have)."""
    from study.config import read_yaml

    raw = read_yaml(space_file)
    store = raw.get("data", {}).get("store") if isinstance(raw, dict) and isinstance(raw.get("data"), dict) else None
    return isinstance(store, str) and (store.startswith("/") or "://" in store)


def _stop_on_ctrl_c() -> Callable[[], None]:
    """SIGINT (and SIGTERM, the same way) stops training now (KeyboardInterrupt at the next Python line, i.e. within the current batch's
    operation), even when the shell started us with SIGINT ignored (a job run with `&`); a second Ctrl-C while the
    run is being closed is ignored, so the MLflow run is always marked KILLED. Returns the call that starts that."""
    import signal

    state = {"stopping": False}

    def on_sigint(signum: int, frame: Any) -> None:
        if state["stopping"]:
            return
        state["stopping"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    # SIGTERM (kill, a scheduler's stop, a container's shutdown) takes Ctrl-C's path, in every phase: whichever SIGINT
    # handler holds then (this one, or Ray Tune's during fit(), which saves the experiment state one last time and
    # stops the trials) runs. Killed outright instead, the driver left Ray a state up to 10 s older than the trial
    # directories, which --resume then restored (trials run again, checkpoints Ray had deleted looked for).
    signal.signal(signal.SIGTERM, lambda signum, frame: signal.raise_signal(signal.SIGINT))
    return lambda: state.update(stopping=True)


def _ensure_default_store(space_file: Path) -> None:
    """The embedded default: make the synthetic store when a search space names it and it is missing."""
    from study.config import read_yaml

    raw = read_yaml(space_file)
    store = raw.get("data", {}).get("store") if isinstance(raw, dict) and isinstance(raw.get("data"), dict) else None
    if store == DEFAULT_STORE and not Path(DEFAULT_STORE).exists():
        from bubbles.data.synth import SynthConfig, synth_store

        click.echo(f"making the default synthetic store {DEFAULT_STORE} ...")
        synth_store(str(Path(DEFAULT_STORE).resolve()), SynthConfig(), workers=min(2, os.cpu_count() or 1))


if __name__ == "__main__":
    main()
