"""The sweep: Ray Tune runs trials, Optuna (TPE) proposes them, ASHA stops the hopeless ones; resumable by name."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from bubbles.errors import UserError
from bubbles.evaluation.scoring import strongest_named
from bubbles.evaluation.verdict import Verdict
from study import champion, leaderboard, sweep_state
from study.space import SweepSpace
from study.sweep_dir import OPTUNA_DB, UNSETTLED_FILE, check_name, check_trusted, read_unsettled, write_unsettled
from study.sweep_files import check_sweep_files
from study.tracking import (
    PARENT_FILE, SPOOL_DIR, SweepRun, read_parent, TrialRun, check_tracking, close_orphaned_runs, final_yardstick_of, find_trial_run, has_result,
    log_test_score, pending_creations, replay_spool, settle_trial,
)
from study.console import OneLineTrialErrors, TrialEvents, quiet_ray_tune, short_id, short_leaderboard
from study.trainable import run_trial
from study import yardstick as ys

CONNECT_TIMEOUT_S = 5.0


def fail_orphaned_trials(study: Any) -> None:
    """Optuna trials still RUNNING after a complete sweep belong to a driver that was killed: FAIL them, so the
    study (and TPE) does not count them as in flight forever."""
    import optuna

    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)


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


def frame_lines(space: SweepSpace) -> list[str]:
    """Per search corner (study.space.corner_configs) and sequence: the pyramid level, the size and tiles the model
    sees, and STRETCHED where an exact image_size changes a sequence's aspect: said before any trial runs."""
    from bubbles.data.store import FrameStore
    from bubbles.data.tiles import tile_lines
    from bubbles.data.windows import make_splits
    from study.space import corner_configs

    out: list[str] = []
    seen: set[Any] = set()
    for label, cfg in corner_configs(space):
        if (cfg.data, cfg.window) in seen:
            continue
        seen.add((cfg.data, cfg.window))
        store = FrameStore.open(cfg.data.store)
        out += [f"{label}: {line}" for line in tile_lines(store, cfg.data, make_splits(cfg.data, cfg.window, store))]
    return out


def check_resources(space: SweepSpace) -> None:
    """A trial asking for more than the whole cluster has would stay PENDING forever: refuse before fit()."""
    import ray

    have = ray.cluster_resources()
    for key, want in (("CPU", space.tune.cpu), ("GPU", space.tune.gpu)):
        if want > have.get(key, 0):
            raise UserError(f"resources: a trial asks for {want:g} {key} but the Ray cluster has {have.get(key, 0):g}")


class PruningOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna the truth about early stops.

    Ray reports a trial that ASHA stopped early to Optuna as COMPLETE with its early score, which misleads TPE into
    treating a 1-epoch score as a final one. Here such a trial is told as PRUNED with its intermediate values
    (one per epoch, the last included), a collapsed trial as PRUNED, and a NaN trial as FAIL.
    """

    def suggest(self, trial_id: str) -> dict | None:
        params = super().suggest(trial_id)
        if trial_id in self._ot_trials:
            # Lets the driver tell finished trials from interrupted ones after fit(), from the study alone.
            self._ot_trials[trial_id].set_user_attr("ray_trial_id", trial_id)
        return params

    def _finished_in_optuna(self, trial_id: str) -> bool:
        """A trial Optuna already recorded as finished: after a driver killed with SIGKILL, Ray may restore an
        older experiment state than Optuna's database and run that trial's last epochs again."""
        trial = self._ot_trials.get(trial_id)
        return trial is not None and self._ot_study._storage.get_trial(trial._trial_id).state.is_finished()

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if not self._finished_in_optuna(trial_id):  # Optuna refuses (a traceback) to update a finished trial
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        import optuna

        if self._finished_in_optuna(trial_id):
            self._completed_trials.add(trial_id)
            return
        if error or not result or trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return super().on_trial_complete(trial_id, result, error)
        status = result.get("trial_status")
        early = result.get("epoch", 0) < result.get("epochs_planned", 0)
        if status == "nan":
            state = optuna.trial.TrialState.FAIL
        elif early or status == "collapsed":
            state = optuna.trial.TrialState.PRUNED
        else:
            return super().on_trial_complete(trial_id, result, error)
        trial = self._ot_trials[trial_id]
        step = result.get("training_iteration")
        if state == optuna.trial.TrialState.PRUNED and step is not None and isinstance(self.metric, str) \
                and result.get(self.metric) is not None:  # Optuna has no intermediate values for several objectives
            # Ray skips on_trial_result for the result on which the scheduler stops a trial: record it here.
            trial.report(result[self.metric], step)
        self._ot_study.tell(trial, None, state=state)
        self._completed_trials.add(trial_id)


def trial_outcome(metrics: dict[str, Any], error: bool, finished: bool = True) -> str:
    """completed | stopped_early (ASHA or time budget) | collapsed | nan | errored | unfinished (interrupted).
    `finished` is whether the searcher was told the trial's end (its Optuna trial is no longer running)."""
    if error:
        return "errored"
    if not finished:
        return "unfinished"
    status = metrics.get("trial_status")
    if status in ("nan", "collapsed"):
        return str(status)
    if metrics.get("epoch", 0) < metrics.get("epochs_planned", 0):
        return "stopped_early"
    return "completed" if metrics else "errored"


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
        # The restored run config is the saved one: this run's event lines and verbosity replace its own (Tune has
        # no public setter; a Ray-client tuner keeps the saved ones).
        tuner = tune.Tuner.restore(str(sweep_dir), trainable=trainable, resume_unfinished=True, resume_errored=True)
        internal = getattr(tuner, "_local_tuner", None)
        if internal is not None:
            internal._run_config.callbacks = [events, sweep_state.StateDigest(sweep_dir)]
            internal._run_config.verbose = 1 if verbose else 0
        return tuner, True
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
            callbacks=[events, sweep_state.StateDigest(sweep_dir)],  # the digest: what --resume will unpickle, as it is saved
            verbose=1 if verbose else 0,  # Ray's status tables only on request: the event lines say what matters
        ),
    )
    return tuner, False


def evaluate_stopped_trial(uri: str, space: SweepSpace, run_id: str, checkpoint: Path, yardstick: Any = None,
                           announce: Callable[[], None] | None = None) -> dict[str, float]:
    """A trial stopped early gets the same evaluation and artifacts as a finished one (on the same capped
    validation windows as its epochs, and on every window of the yardstick), so that MLflow's Compare has no empty
    rows. Returns its yardstick means on the validation split (read back from its run when evaluated before)."""
    from bubbles.training.train import evaluate_checkpoint_dir

    if not (checkpoint / "best.pt").is_file():
        return {}
    if has_result(run_id):  # evaluated already (a resumed sweep goes over every trial again)
        return final_yardstick_of(run_id)
    if announce is not None:
        announce()  # a few seconds per trial: said, so that the minutes after the last trial are not silent
    with tempfile.TemporaryDirectory() as out_dir:
        cfg, result = evaluate_checkpoint_dir(checkpoint, Path(out_dir), yardstick=yardstick)
        TrialRun(uri, space.experiment, cfg, run_id=run_id).log_result(result)
    return result.yardstick.means() if result.yardstick is not None else {}


def _replay(uri: str, spool: Path, echo: Callable[[str], None]) -> tuple[bool, list[str], str]:
    """Log what the trials could not (the tracking store was down). Returns (whether the store answers and took
    everything, the runs whose writes are still spooled, why not). Spool lines that cannot be read are named; the
    readable ones are logged all the same."""
    if spool.exists() and not spool.is_dir():
        echo(f"MLflow: the spool {spool} is not a directory, so nothing could be kept there while the tracking store "
             "was unavailable (each trial that lost writes is named below)")
        try:
            check_tracking(uri)
            return True, [], ""
        except Exception as exc:
            return False, [], str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    unlogged = sorted(p.stem for p in spool.glob("*.jsonl"))
    errors: list[str] = []
    unreadable: list[str] = []
    try:
        unlogged = replay_spool(spool, errors, unreadable)
        for line in unreadable:
            echo(f"MLflow spool {spool}: {line}")
        check_tracking(uri)
    except Exception as exc:
        return False, unlogged, str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    return not unlogged, unlogged, errors[0] if errors else ""


def _unsettled_lines(parent_run_id: str, name: str, trials: list[tuple[str, str, str, dict[str, Any]]],
                     unlogged: list[str], spool: Path) -> tuple[list[str], list[str]]:
    """What an outage left unfinished in MLflow, one line per run with why; and the runs' ids. trials: (trial id,
    run id or '', outcome, last metrics)."""
    lines = [f"  parent run {parent_run_id} (sweep {name!r}): still RUNNING; its leaderboard, best trial and trial "
             "count are not logged"]
    ids = [parent_run_id]
    for trial_id, run_id, outcome, metrics in trials:
        spooled = run_id in unlogged
        if outcome == "completed" and not spooled:
            continue  # the trial logged its result and ended its run itself
        epochs = f" at epoch {metrics.get('epoch', 0)}/{metrics.get('epochs_planned', '?')}"
        state = {"stopped_early": f"stopped early{epochs}", "unfinished": f"interrupted{epochs}"}.get(outcome, f"{outcome}{epochs}")
        if not run_id:
            where = "its run was never created (no MLflow id known)"
        elif run_id.startswith("pending-"):
            where = f"not created in MLflow yet, all its writes wait in {spool}"
        elif spooled:
            where = f"still RUNNING, its last writes (result, artifacts, end) wait in {spool}"
        else:
            where = "still RUNNING, its end status and trial_status tag are not logged"
        todo = "; not evaluated, no artifacts" if outcome == "stopped_early" else ""
        why = f"{state}; {where}{todo}"
        lines.append(f"  trial {trial_id} (run {run_id or '-'}): {why}")
        if run_id:
            ids.append(run_id)
    return lines, ids


def _lost_lines(trials: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """One line per trial whose MLflow writes could neither be logged nor kept (reported with its results)."""
    return [f"MLflow: trial {trial_id} lost {int(m['mlflow_lost_writes'])} write(s): {m.get('mlflow_lost_why', '')}; "
            "its run in MLflow is incomplete or missing (the leaderboard has its results)"
            for trial_id, m in trials if m.get("mlflow_lost_writes")]


def run_sweep(
    space: SweepSpace,
    name: str,
    storage: Path,
    uri: str,
    address: str | None = None,
    trainable: Callable[..., None] = run_trial,
    echo: Callable[[str], None] = print,
    storage_shared: bool = True,
    store_shared: bool = True,
    preamble: Callable[[], None] | None = None,
    resume_command: str | None = None,
    verbose: bool = False,
    trust_state: bool = False,
) -> SweepOutcome:
    """Run (or continue) the sweep `name` under storage/name; returns the leaderboard rows. storage_shared=False
    says storage is the local default, which a cluster of several nodes cannot use (checked before any MLflow run);
    store_shared=False, the same of a frame store named by a relative path.
    `preamble` (what the sweep will read) is called once nothing can refuse any more, before the first MLflow run,
    so that a refusal stays one line. `resume_command` is what the messages tell the user to run to continue.
    Continuing a sweep first checks that the Ray state it unpickles is the one it recorded (study.sweep_state);
    `trust_state` accepts the files as they are and records them anew."""
    import ray
    from ray import tune

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic table, with only the columns we choose
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    sweep_dir = storage / check_name(name)
    if sweep_dir.exists():
        check_trusted(sweep_dir)  # before anything in it is read, let alone unpickled
        if (sweep_dir / "tuner.pkl").exists():
            if trust_state:
                sweep_state.record(sweep_dir)
            sweep_state.verify(sweep_dir)
    check_sweep_files(sweep_dir, name, uri)  # each file the driver reads back: one line if damaged, missing or foreign
    started_ray = not ray.is_initialized()
    if started_ray:
        check_address(address)
        # The longest silent wait of a start: 10-60 s for a local Ray on two busy cores.
        echo(f"connecting to the Ray cluster at {address} ..." if address and address != "local" else
             "starting Ray on this machine (10-60 s on a busy machine) ...")
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        if nodes > 1 and not storage_shared:
            raise UserError(f"the Ray cluster has {nodes} nodes but the sweep storage {storage} is this machine's "
                            "default: give --storage a path every node sees (a shared file system)")
        if nodes > 1 and not store_shared:
            raise UserError(f"the Ray cluster has {nodes} nodes but the frame store {space.base.get('store')} was "
                            "named by a relative path (this machine's copy): give --store (or data.store) a path every "
                            "node sees")
        # Everything that can refuse runs before the parent MLflow run exists, so a refusal leaves no run behind.
        check_resources(space)
        if preamble is not None:
            preamble()
        protocol = ys.protocol_of(space, ys.open_store(space))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        ys.check_recorded(protocol, sweep_dir)
        val_yardstick = ys.study_yardstick(space, protocol, "val", sweep_dir, echo)
        echo(f"yardstick: every trial is scored on the same {len(val_yardstick.windows)} validation windows, leads "
             f"{', '.join(map(str, protocol.leads))}"
             + (f" (frames {protocol.frame_step} stored frames apart)" if protocol.frame_step > 1 else "")
             + f", at {protocol.size[0]}x{protocol.size[1]} px "
             f"({min(protocol.epoch_windows, len(val_yardstick.windows))} of them after each epoch); the baselines were scored once")
        from bubbles.data.forecastability import summary_lines

        for line in summary_lines(val_yardstick.store, protocol.frame_step, val_yardstick.train_segments, verbose):
            echo(line)
        parent = SweepRun.open_or_create(uri, space, name, sweep_dir / PARENT_FILE)
        # No driver of this sweep runs now: a RUNNING run is an orphan, unless an outage kept the last driver from
        # ending it (recorded then; settled after fit() below, with its real outcome).
        unsettled = read_unsettled(sweep_dir)
        if unsettled:
            echo(f"settling {len(unsettled)} MLflow run(s) the tracking outage of the last run left unfinished")
        orphans = close_orphaned_runs(parent.run_id, unsettled | pending_creations(sweep_dir / SPOOL_DIR))
        if orphans:
            echo(f"closed {orphans} trial run(s) a killed driver left RUNNING in MLflow (KILLED, unfinished)")
        fn = tune.with_resources(
            tune.with_parameters(trainable, space=space, uri=uri, parent_run_id=parent.run_id, sweep=name, spool=str(sweep_dir / SPOOL_DIR),
                                 protocol=protocol, baselines=val_yardstick.baselines().to_dict()),
            {"cpu": space.tune.cpu, "gpu": space.tune.gpu},
        )
        events = TrialEvents(space, echo)
        if not verbose:
            quiet_ray_tune()
        tuner, resumed = _tuner(space, name, storage, fn, sweep_dir, events, verbose)
        lines = frame_lines(space)
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
    finally:
        if started_ray:
            ray.shutdown()
    resume_command = resume_command or f"bubbles-study sweep {space.path} --name {name} --resume --storage {storage}"
    tracked, unlogged, why_not = _replay(uri, sweep_dir / SPOOL_DIR, echo)
    import optuna

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir / OPTUNA_DB}")
    finished = {t.user_attrs.get("ray_trial_id"): t.state.is_finished() for t in study.trials}
    rows = []
    trials: list[tuple[str, str, str, dict[str, Any]]] = []
    checkpoints: dict[str, Path] = {}  # best.pt of each trial that may go to the test pass
    # ResultGrid keeps the experiment's trials in the same order.
    for trial, result in zip(results._experiment_analysis.trials, results):
        metrics = dict(result.metrics or {})
        trial_id = trial.trial_id
        outcome = trial_outcome(metrics, result.error is not None, finished.get(trial_id, False))
        run_id = str(metrics.get("mlflow_run") or "")
        if tracked and trial_id and (not run_id or run_id.startswith("pending-")):
            run_id = find_trial_run(uri, space.experiment, parent.run_id, trial_id) or ""
        trials.append((trial_id, run_id, outcome, metrics))
        validation = {k.removeprefix("final_yardstick_"): v for k, v in metrics.items() if k.startswith("final_yardstick_")}
        if tracked and run_id:
            if outcome == "stopped_early" and result.checkpoint is not None:
                validation = evaluate_stopped_trial(uri, space, run_id, Path(result.checkpoint.path), val_yardstick,
                                                    lambda: echo(f"trial {short_id(trial_id)}: stopped early; evaluating "
                                                                 "its best.pt on every validation window ...")) or validation
            settle_trial(run_id, outcome)
        if outcome in ("completed", "stopped_early") and result.checkpoint is not None and (Path(result.checkpoint.path) / "best.pt").is_file():
            checkpoints[trial_id] = Path(result.checkpoint.path) / "best.pt"
        history = result.metrics_dataframe
        objective = metrics.get("objective")
        if history is not None and "objective" in history:
            objective = history["objective"].max() if space.tune.mode == "max" else history["objective"].min()
        if space.tune.objective.startswith("yardstick_") and math.isfinite(validation.get(space.tune.objective.removeprefix("yardstick_"), math.nan)):
            # The per-epoch value is on a subset of the protocol's windows: rank by best.pt on all of them.
            objective = validation[space.tune.objective.removeprefix("yardstick_")]
        shown_run = run_id if tracked or not run_id.startswith("pending-") else ""
        rows.append(leaderboard.row(trial_id, shown_run, outcome, result.config or trial.config or {}, metrics, objective, space, ys.columns(validation, None)))
    if tracked:
        # A trial Ray forgot (the driver stopped before its experiment state recorded the trial) leaves a run that no
        # trial here settles, once the replay has made it: closed as a killed driver's are (KILLED, unfinished).
        forgotten = close_orphaned_runs(parent.run_id, {run_id for _, run_id, _, _ in trials if run_id})
        if forgotten:
            echo(f"closed {forgotten} MLflow run(s) of trials the stopped driver's Ray state did not keep (KILLED, "
                 "unfinished; Ray ran others in their place)")
    for line in _lost_lines([(t.trial_id, dict(r.metrics or {})) for t, r in zip(results._experiment_analysis.trials, results)]):
        echo(line)
    spool = sweep_dir / SPOOL_DIR
    if spool.exists() and not spool.is_dir():  # nothing could be kept: name the trials MLflow has no run of
        for trial_id, run_id, outcome, metrics in trials:
            if (not run_id or run_id.startswith("pending-")) and not metrics.get("mlflow_lost_writes"):
                echo(f"MLflow: trial {trial_id} ({outcome}) has no run in MLflow: its writes could neither be logged "
                     f"nor kept ({spool} is a file, not a directory); the leaderboard has its results")
    interrupted = any(r["status"] == "unfinished" for r in rows) or (
        len(rows) < space.tune.num_samples and space.tune.time_budget_s is None
    )
    if not interrupted:
        fail_orphaned_trials(study)
    ranked, champion_note = champion.apply(space.tune.champion, leaderboard.rank(rows, space.tune.mode))
    for r in ranked:  # filled for the trials scored on the test split below
        r |= {"beats_all_baselines": "", "loses_from_lead": ""}
    has_test = ys.has_test_split(space)
    strongest_test = ""  # the strongest baseline on the test windows, named under the table once they are scored
    if has_test and not interrupted and space.evaluate.test_top_k > 0:
        # The test split is read here, once, after every trial has finished: nothing before chose on it.
        scored, new = ys.test_pass(space, protocol, sweep_dir, ranked, checkpoints, echo)
        if scored:
            strongest_test = strongest_named(next(iter(scored.values())).strongest, protocol.leads)
        for r in ranked:
            if r["trial"] in scored:
                r.update({k: v for k, v in ys.columns(None, scored[r["trial"]].means()).items() if k.startswith("test_")})
                r.update(Verdict.of(scored[r["trial"]]).columns())
                if tracked and r["trial"] in new and r["mlflow_run"]:
                    log_test_score(r["mlflow_run"], scored[r["trial"]])
    notes = ys.column_notes(has_test, space.evaluate.test_top_k, strongest_named(val_yardstick.strongest(), protocol.leads),
                            strongest_test, interrupted)
    if champion_note:
        notes.insert(0, ("", champion_note))
    note = ys.notes_for(list(ranked[0]) if ranked else [], notes)
    if champion_note:
        champion.record(sweep_dir, space.tune.champion, champion_note, ranked)
    leaderboard.write(sweep_dir, ranked, note)
    if resumed and events.started == 0 and not interrupted:
        echo(f"sweep {name!r} is complete ({len(rows)} of {space.tune.num_samples} trials), nothing left to run. "
             f"A new sweep of this space: bubbles-study sweep {space.path} --name {name}-2 (or edit the file and give it a new --name)")
    echo(leaderboard.markdown(ranked[:5], space, note) if verbose else short_leaderboard(ranked, space, notes))
    if ranked and has_test and not interrupted and space.evaluate.test_top_k > 0:
        echo(ys.champion_line(ranked[0], sweep_dir))
    if tracked:
        parent.finish(sweep_dir, ranked, interrupted)
        (sweep_dir / UNSETTLED_FILE).unlink(missing_ok=True)
    else:
        lines, ids = _unsettled_lines(parent.run_id, name, trials, unlogged, sweep_dir / SPOOL_DIR)
        write_unsettled(sweep_dir, ids)
        echo(f"MLflow at {uri} did not take every write ({why_not}): {len(lines)} run(s) left unfinished there; "
             f"`{resume_command}` finishes them once it answers (the leaderboard above is complete):")
        for line in lines:
            echo(line)
    return SweepOutcome(name, sweep_dir, parent.run_id, ranked, interrupted)
