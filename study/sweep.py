"""The sweep: Ray Tune runs trials, Optuna (TPE) proposes them, ASHA stops the hopeless ones; resumable by name."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bubbles.errors import UserError
from bubbles.evaluation.scoring import strongest_named
from study import champion, leaderboard, sweep_end, sweep_state
from study import yardstick as ys
from study.console import OneLineTrialErrors, TrialEvents, quiet_ray_tune, short_leaderboard
from study.records import (
    PruningOptunaSearch, TrialRecord, VanishedCheckpoints, fail_orphaned, fail_orphaned_trials, restore_tuner, trial_outcome, trial_records,
)
from study.space import SweepSpace
from study.sweep_dir import OPTUNA_DB, UNSETTLED_FILE, check_name, check_trusted, read_unsettled
from study.sweep_files import check_sweep_files
from study.sweep_mlflow import lost_lines, replay, report_to_mlflow, run_ids_of
from study.tracking import PARENT_FILE, SPOOL_DIR, SweepRun, close_orphaned_runs, pending_creations
from study.trainable import run_trial

__all__ = ["PruningOptunaSearch", "SweepOutcome", "TrialRecord", "check_name", "fail_orphaned_trials", "run_sweep",
           "trial_outcome", "OPTUNA_DB", "UNSETTLED_FILE"]

CONNECT_TIMEOUT_S = 5.0


def check_address(address: str | None) -> None:
    """A HOST:PORT Ray address must accept a connection within seconds (ray.init would wait for minutes)."""
    if not address or address in ("local", "auto") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address!r}: expected auto, local, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise UserError(f"--address {address}: no Ray head answers there ({exc.strerror or exc})") from None


def frame_lines(space: SweepSpace, store: Any) -> list[str]:
    """Per search corner (study.space.corner_configs) and sequence: the pyramid level, the size and tiles the model
    sees, and STRETCHED where an exact image_size changes a sequence's aspect: said before any trial runs."""
    from bubbles.data.tiles import tile_lines
    from bubbles.data.splits import make_splits
    from study.space import corner_configs

    out: list[str] = []
    seen: set[Any] = set()
    for label, cfg in corner_configs(space):
        if (cfg.data, cfg.window) in seen:
            continue
        seen.add((cfg.data, cfg.window))
        out += [f"{label}: {line}" for line in tile_lines(store, cfg.data, make_splits(cfg.data, cfg.window, store))]
    return out


def check_resources(space: SweepSpace) -> None:
    """A trial asking for more than the whole cluster has would stay PENDING forever: refuse before fit()."""
    import ray

    have = ray.cluster_resources()
    for key, want in (("CPU", space.tune.cpu), ("GPU", space.tune.gpu)):
        if want > have.get(key, 0):
            raise UserError(f"resources: a trial asks for {want:g} {key} but the Ray cluster has {have.get(key, 0):g}")


@dataclass
class SweepOutcome:
    name: str
    directory: Path
    parent_run_id: str
    rows: list[dict[str, Any]]
    interrupted: bool


def _searcher(space: SweepSpace, name: str, sweep_dir: Path) -> PruningOptunaSearch:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # its "new study created" lines are not trial events
    sampler = (
        optuna.samplers.TPESampler(seed=space.tune.seed)
        if space.tune.sampler == "tpe"
        else optuna.samplers.RandomSampler(seed=space.tune.seed)
    )
    t = space.tune
    metrics = ["objective", *(f"objective_{k}" for k in range(2, len(t.objectives) + 2))]
    return PruningOptunaSearch(
        space=space.sample,
        metric=metrics if t.objectives else "objective",
        mode=[t.mode_of(o) for o in t.all_objectives()] if t.objectives else t.mode,
        points_to_evaluate=[dict(p) for p in space.seed_points] or None,
        sampler=sampler,
        study_name=name,
        storage=optuna.storages.RDBStorage(f"sqlite:///{sweep_dir / OPTUNA_DB}"),
    )


# ASHA's clock per asha.time_attr: what every epoch's report carries (study.trainable), cumulative over the trial.
ASHA_CLOCK = {"epochs": "training_iteration", "seconds": "train_seconds_total", "gflops": "train_gflops_total"}


def _tuner(space: SweepSpace, name: str, storage: Path, trainable: Any, sweep_dir: Path, events: TrialEvents, verbose: bool):  # type: ignore[no-untyped-def]
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if tune.Tuner.can_restore(str(sweep_dir)):
        return restore_tuner(sweep_dir, trainable, [events, sweep_state.StateDigest(sweep_dir), VanishedCheckpoints()], verbose), True
    t = space.tune
    scheduler = (
        ASHAScheduler(time_attr=ASHA_CLOCK[t.time_attr], max_t=space.max_epochs() if t.time_attr == "epochs" else t.max_t,
                      grace_period=t.grace_period, reduction_factor=t.reduction_factor)
        if t.asha
        else FIFOScheduler()
    )
    reporter = tune.CLIReporter(
        parameter_columns=[d.name for d in space.dimensions if not d.when],  # conditional ones may be absent
        # Tune's own column says RUNNING / TERMINATED; ours would be a second "status" column: the node instead.
        metric_columns={"epoch": "epoch", "objective": t.objective, "node": "node"},
        max_report_frequency=15,
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric="objective",
            mode=t.mode,
            search_alg=_searcher(space, name, sweep_dir),
            scheduler=scheduler,
            num_samples=t.num_samples,
            max_concurrent_trials=t.max_concurrent,
            time_budget_s=t.time_budget_s,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage),
            failure_config=tune.FailureConfig(max_failures=t.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            progress_reporter=reporter,
            callbacks=[events, sweep_state.StateDigest(sweep_dir), VanishedCheckpoints()],  # the digest: what --resume will unpickle, as it is saved
            verbose=1 if verbose else 0,  # Ray's status tables only on request: the event lines say what matters
        ),
    )
    return tuner, False



@dataclass(frozen=True)
class SweepStart:
    """What every trial and the end of the sweep read, resolved once, in one direction, before the first trial:
    the frame store (opened once), the protocol, the validation yardstick (its baselines scored once), and
    whether the study holds out a test split."""

    store: Any
    protocol: Any
    val_yardstick: Any
    has_test: bool


def _checked_sweep_dir(storage: Path, name: str, uri: str, trust_state: bool) -> Path:
    """storage/name, refused in one line if someone else could have written what resuming unpickles, or if a file
    the driver reads back is damaged, missing or foreign (study.sweep_files)."""
    sweep_dir = storage / check_name(name)
    if sweep_dir.exists():
        check_trusted(sweep_dir)  # before anything in it is read, let alone unpickled
        if (sweep_dir / "tuner.pkl").exists():
            if trust_state:
                sweep_state.record(sweep_dir)
            sweep_state.verify(sweep_dir)
    check_sweep_files(sweep_dir, name, uri)
    return sweep_dir


def _check_cluster(space: SweepSpace, storage: Path, storage_shared: bool, store_shared: bool) -> None:
    """What the Ray cluster cannot do, refused before the parent MLflow run exists (a refusal leaves no run)."""
    import ray

    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    if nodes > 1 and not storage_shared:
        raise UserError(f"the Ray cluster has {nodes} nodes but the sweep storage {storage} is this machine's "
                        "default: give --storage a path every node sees (a shared file system)")
    if nodes > 1 and not store_shared:
        raise UserError(f"the Ray cluster has {nodes} nodes but the frame store {space.base.get('store')} was "
                        "named by a relative path (this machine's copy): give --store (or data.store) a path every "
                        "node sees")
    check_resources(space)


def resolve_start(space: SweepSpace, sweep_dir: Path, echo: Callable[[str], None], verbose: bool) -> SweepStart:
    """The store, the protocol and the validation yardstick, once; says what every trial is scored on."""
    from bubbles.data.forecastability import summary_lines

    store = ys.open_store(space)
    protocol = ys.protocol_of(space, store)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    ys.check_recorded(protocol, sweep_dir)
    val_yardstick = ys.study_yardstick(space, protocol, "val", sweep_dir, echo, store)
    echo(f"yardstick: every trial is scored on the same {len(val_yardstick.windows)} validation windows, leads "
         f"{', '.join(map(str, protocol.leads))}"
         + (f" (frames {protocol.frame_step} stored frames apart)" if protocol.frame_step > 1 else "")
         + (f", each sequence whole at short side {protocol.scale} px (aspect kept) " if protocol.scale else
            f", at {protocol.size[0]}x{protocol.size[1]} px ")
         + f"({min(protocol.epoch_windows, len(val_yardstick.windows))} of them after each epoch); the baselines were scored once")
    for line in [*ys.reach_notes(space, store, protocol),
                 *summary_lines(val_yardstick.store, protocol.frame_step, val_yardstick.train_segments, verbose)]:
        echo(line)
    return SweepStart(store, protocol, val_yardstick, ys.has_test_split(space, store))


def _open_parent(uri: str, space: SweepSpace, name: str, sweep_dir: Path, echo: Callable[[str], None]) -> SweepRun:
    """The sweep's parent run (made, or reopened), and its trial runs a killed driver left RUNNING closed."""
    parent = SweepRun.open_or_create(uri, space, name, sweep_dir / PARENT_FILE)
    # No driver of this sweep runs now: a RUNNING run is an orphan, unless an outage kept the last driver from
    # ending it (recorded then; settled at the end, with its real outcome).
    unsettled = read_unsettled(sweep_dir)
    if unsettled:
        echo(f"settling {len(unsettled)} MLflow run(s) the tracking outage of the last run left unfinished")
    orphans = close_orphaned_runs(parent.run_id, unsettled | pending_creations(sweep_dir / SPOOL_DIR))
    if orphans:
        echo(f"closed {orphans} trial run(s) a killed driver left RUNNING in MLflow (KILLED, unfinished)")
    return parent


def _fit(space: SweepSpace, name: str, storage: Path, uri: str, parent: SweepRun, start: SweepStart, trainable: Any,
         sweep_dir: Path, echo: Callable[[str], None], verbose: bool) -> tuple[Any, bool, int]:
    """Tune's run of the trials: (its results, whether it continued a saved sweep, trials started now)."""
    from ray import tune

    fn = tune.with_resources(
        tune.with_parameters(trainable, space=space, uri=uri, parent_run_id=parent.run_id, sweep=name,
                             spool=str(sweep_dir / SPOOL_DIR), protocol=start.protocol,
                             baselines=start.val_yardstick.baselines().to_dict()),
        {"cpu": space.tune.cpu, "gpu": space.tune.gpu},
    )
    events = TrialEvents(space, echo)
    if not verbose:
        quiet_ray_tune()
    tuner, resumed = _tuner(space, name, storage, fn, sweep_dir, events, verbose)
    lines = frame_lines(space, start.store)
    stretched = [line for line in lines if "STRETCHED" in line]
    for line in lines if verbose else stretched:
        echo(f"warning: {line}" if "STRETCHED" in line else line)
    if not verbose and lines:
        # One line per search corner and sequence is a screenful before the first trial: the count, and the
        # stretched ones above (the only ones a user must act on).
        echo(f"frame sizes: {len(lines)} search-corner x sequence reads checked (pyramid level, size, tiles), "
             f"{len(stretched)} stretched; --verbose lists them")
    echo(f"{'continuing' if resumed else 'starting'} sweep {name!r} in {sweep_dir}")
    errors = logging.getLogger("ray.tune.execution.tune_controller")
    one_line = OneLineTrialErrors()
    errors.addFilter(one_line)
    handler = signal.getsignal(signal.SIGINT)
    try:
        results = tuner.fit()
    finally:
        errors.removeFilter(one_line)
        if threading.current_thread() is threading.main_thread() and handler is not None:
            # Tune leaves its own SIGINT handler behind (one that only flags its finished loop): the caller's
            # again, so that a Ctrl-C during the test pass and the leaderboard still stops the sweep.
            signal.signal(signal.SIGINT, handler)
    sweep_state.record(sweep_dir)  # Ray's last save is complete once fit() returns
    return results, resumed, events.started


def _close_locally(space: SweepSpace, name: str, sweep_dir: Path, start: SweepStart, records: list[TrialRecord],
                   run_ids: dict[str, str], echo: Callable[[str], None], verbose: bool, nothing_ran: bool):  # type: ignore[no-untyped-def]
    """Everything the sweep decides, without MLflow: stopped trials scored on the full protocol, the ranking, the
    test split, the leaderboard written and shown. Returns (records, evaluated now, rows, interrupted, tested now)."""
    records, evaluated = sweep_end.score_stopped(records, start.val_yardstick, sweep_dir, echo)
    ranked, champion_note = champion.apply(space.tune.champion, sweep_end.ranked_rows(records, space, run_ids))
    for row in ranked:  # filled for the trials scored on the test split below
        row |= {"beats_all_baselines": "", "loses_from_lead": ""}
    interrupted = sweep_end.interrupted(records, space)
    if not interrupted:
        fail_orphaned(sweep_dir, name)
    tested = start.has_test and not interrupted and space.evaluate.test_top_k > 0
    scored, new = sweep_end.test_pass(space, start.protocol, sweep_dir, ranked, records, echo) if tested else ({}, set())
    # The strongest baseline per lead, named under the table (on the test windows once they are scored).
    strongest_test = strongest_named(next(iter(scored.values())).strongest, start.protocol.leads) if scored else ""
    notes = ys.column_notes(start.has_test, space.evaluate.test_top_k,
                            strongest_named(start.val_yardstick.strongest(), start.protocol.leads), strongest_test, interrupted)
    if champion_note:
        notes.insert(0, ("", champion_note))
        champion.record(sweep_dir, space.tune.champion, champion_note, ranked)
    note = ys.notes_for(list(ranked[0]) if ranked else [], notes)
    leaderboard.write(sweep_dir, ranked, note)
    if nothing_ran and not interrupted:
        echo(f"sweep {name!r} is complete ({len(records)} of {space.tune.num_samples} trials), nothing left to run. "
             f"A new sweep of this space: bubbles-study sweep {space.path} --name {name}-2 (or edit the file and give it a new --name)")
    echo(leaderboard.markdown(ranked[:5], space, note) if verbose else short_leaderboard(ranked, space, notes))
    if ranked and tested:
        echo(ys.champion_line(ranked[0], sweep_dir))
    return records, evaluated, ranked, interrupted, {t: scored[t] for t in new}


def _start_ray(address: str | None, echo: Callable[[str], None]) -> bool:
    """Ray started here (True), or the one already running in this process (False)."""
    import ray

    if ray.is_initialized():
        return False
    check_address(address)
    echo(f"connecting to the Ray cluster at {address} ..." if address and address != "local" else
         "starting Ray on this machine (10-60 s on a busy machine) ...")  # the longest silent wait of a start
    sigterm = signal.getsignal(signal.SIGTERM)
    ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    if callable(sigterm) and threading.current_thread() is threading.main_thread():
        # ray.init replaces the process's SIGTERM handler (sys.exit, then its core worker's crash dump, which aborts):
        # the caller's is put back (the CLI's takes Ctrl-C's path, so Tune saves its state one last time).
        signal.signal(signal.SIGTERM, sigterm)
    return True


def run_sweep(space: SweepSpace, name: str, storage: Path, uri: str, address: str | None = None,
              trainable: Callable[..., None] = run_trial, echo: Callable[[str], None] = print,
              storage_shared: bool = True, store_shared: bool = True, preamble: Callable[[], None] | None = None,
              resume_command: str | None = None, verbose: bool = False, trust_state: bool = False) -> SweepOutcome:
    """Run (or continue) the sweep `name` under storage/name; returns the leaderboard rows. storage_shared=False
    says storage is the local default, which a cluster of several nodes cannot use (checked before any MLflow run);
    store_shared=False, the same of a frame store named by a relative path.
    `preamble` (what the sweep will read) is called once nothing can refuse any more, before the first MLflow run,
    so that a refusal stays one line. `resume_command` is what the messages tell the user to run to continue.
    Continuing a sweep first checks that the Ray state it unpickles is the one it recorded (study.sweep_state);
    `trust_state` accepts the files as they are and records them anew."""
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic table, with only the columns we choose
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    sweep_dir = _checked_sweep_dir(storage, name, uri, trust_state)
    started_ray = _start_ray(address, echo)
    try:
        _check_cluster(space, storage, storage_shared, store_shared)
        if preamble is not None:
            preamble()
        start = resolve_start(space, sweep_dir, echo, verbose)
        parent = _open_parent(uri, space, name, sweep_dir, echo)
        try:
            results, resumed, started = _fit(space, name, storage, uri, parent, start, trainable, sweep_dir, echo, verbose)
        except BaseException as exc:
            parent.end_after_failure(sweep_dir / SPOOL_DIR, exc)
            raise
    finally:
        if started_ray:
            ray.shutdown()
    try:
        return _end(space, name, storage, uri, parent, start, results, resumed and started == 0, sweep_dir, echo,
                    verbose, resume_command)
    except BaseException as exc:  # whatever fails after the parent run was opened: it is not left RUNNING
        parent.end_after_failure(sweep_dir / SPOOL_DIR, exc)
        raise


def _end(space: SweepSpace, name: str, storage: Path, uri: str, parent: SweepRun, start: SweepStart, results: Any,
         nothing_ran: bool, sweep_dir: Path, echo: Callable[[str], None], verbose: bool,
         resume_command: str | None) -> SweepOutcome:
    """After Tune: the spool's replay, the records, the leaderboard (study.sweep_end) and what MLflow is told."""
    replayed = replay(uri, sweep_dir / SPOOL_DIR, echo)
    records = trial_records(results, sweep_dir, name)
    for line in lost_lines(records, sweep_dir / SPOOL_DIR):
        echo(line)
    run_ids = run_ids_of(records, replayed[0], uri, space, parent.run_id)
    closed = _close_locally(space, name, sweep_dir, start, records, run_ids, echo, verbose, nothing_ran)
    again = resume_command or f"bubbles-study sweep {space.path} --name {name} --resume --storage {storage}"
    report_to_mlflow(uri, space, name, sweep_dir, parent, closed, run_ids, replayed, echo, again)
    return SweepOutcome(name, sweep_dir, parent.run_id, closed[2], closed[3])
