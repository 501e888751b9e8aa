"""What the end of a sweep tells MLflow, after the leaderboard is written (study.sweep_end decided everything):
the spool's replay, each trial's run found, stopped trials' evaluations and test scores through the spool, each
trial's end and the parent run; and, when the store is down, the lines that say what waits for the next driver."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from study import sweep_end
from study.records import TrialRecord
from study.space import SweepSpace
from study.sweep_dir import UNSETTLED_FILE, write_unsettled
from study.tracking import (
    SPOOL_DIR, TrialRun, check_tracking, close_orphaned_runs, driver_writer, find_trial_run, log_test_score, readable,
    replay_spool, settle_trial, spooled_runs,
)


def replay(uri: str, spool: Path, echo: Callable[[str], None]) -> tuple[bool, list[str], str]:
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


def unsettled_lines(parent_run_id: str, name: str, trials: list[tuple[str, str, str, dict[str, Any]]],
                     unlogged: list[str], spool: Path, waiting: frozenset[str] = frozenset()) -> tuple[list[str], list[str]]:
    """What an outage left unfinished in MLflow, one line per run with why; and the runs' ids. trials: (trial id,
    run id or '', outcome, last metrics); unlogged: the runs whose trials' own writes the replay could not log;
    waiting: the runs the driver's writes wait in the spool for."""
    waits = f"wait in {spool}" if parent_run_id in waiting else "are not logged"
    lines = [f"  parent run {parent_run_id} (sweep {name!r}): still RUNNING; its leaderboard, best trial, trial "
             f"count and end {waits}"]
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
            waits = f"wait in {spool}" if run_id in waiting else "are not logged"
            where = f"still RUNNING, its end status and trial_status tag {waits}"
        todo = f"; evaluated by the driver (score on the leaderboard), its result waits in {spool}" if outcome == "stopped_early" else ""
        why = f"{state}; {where}{todo}"
        lines.append(f"  trial {trial_id} (run {run_id or '-'}): {why}")
        if run_id:
            ids.append(run_id)
    return lines, ids


def lost_lines(records: list[TrialRecord], spool: Path) -> list[str]:
    """One line per trial whose MLflow writes could neither be logged nor kept (reported with its results), and,
    when the spool is a file (nothing could be kept), per trial MLflow has no run of."""
    trials = [(r.trial_id, r.metrics) for r in records]
    lines = [f"MLflow: trial {r.trial_id} ({r.outcome}) has no run in MLflow: its writes could neither be logged nor "
             f"kept ({spool} is a file, not a directory); the leaderboard has its results"
             for r in records if spool.exists() and not spool.is_dir()
             and (not r.run_id or r.run_id.startswith("pending-")) and not r.metrics.get("mlflow_lost_writes")]
    return lines + [f"MLflow: trial {trial_id} lost {int(m['mlflow_lost_writes'])} write(s): {m.get('mlflow_lost_why', '')}; "
            "its run in MLflow is incomplete or missing (the leaderboard has its results)"
            for trial_id, m in trials if m.get("mlflow_lost_writes")]


def run_ids_of(records: list[TrialRecord], tracked: bool, uri: str, space: SweepSpace, parent_run_id: str) -> dict[str, str]:
    """Each trial's MLflow run: as it reported it, or (a run the spool's replay just created) looked up. A run
    still waiting in the spool is shown as none; a store that stops answering now only leaves ids unknown."""
    out = {}
    for r in records:
        run_id = r.run_id
        if tracked and r.trial_id and (not run_id or run_id.startswith("pending-")):
            run_id = readable(lambda: find_trial_run(uri, space.experiment, parent_run_id, r.trial_id), None) or ""
        out[r.trial_id] = run_id if tracked or not run_id.startswith("pending-") else ""
    return out


def report_to_mlflow(uri: str, space: SweepSpace, name: str, sweep_dir: Path, parent: Any, closed: Any,
                      run_ids: dict[str, str], replayed: tuple[bool, list[str], str], echo: Callable[[str], None],
                      resume_command: str) -> None:
    """What the sweep decided, told to MLflow after the leaderboard is written, every write through one spooling
    writer: stopped trials' evaluations, the test scores, forgotten runs closed, each trial's end, the parent run.
    A store down, or going down on the way, leaves those writes in the spool and a record of the runs they
    concern: the next driver (`--resume`) replays them once the store answers, and leaves those runs to it."""
    records, evaluated, ranked, interrupted, tested = closed
    tracked, unlogged, why_not = replayed
    spool = sweep_dir / SPOOL_DIR
    writer = driver_writer(spool)
    for record in records:
        run_id = run_ids.get(record.trial_id) or record.run_id
        if run_id and record.trial_id in evaluated:
            cfg, result = evaluated[record.trial_id]
            TrialRun(uri, space.experiment, cfg, run_id=run_id, writer=writer).log_result(result)
            sweep_end.drop_evaluated(sweep_dir, record.trial_id)
        if run_id and record.trial_id in tested:
            log_test_score(run_id, tested[record.trial_id], writer=writer)
    if tracked:
        # A trial Ray forgot (the driver stopped before its experiment state recorded the trial) leaves a run that
        # no trial here settles, once the replay has made it: closed as a killed driver's are (KILLED, unfinished).
        forgotten = close_orphaned_runs(parent.run_id, {run_id for run_id in run_ids.values() if run_id}, writer)
        if forgotten:
            echo(f"closed {forgotten} MLflow run(s) of trials the stopped driver's Ray state did not keep (KILLED, "
                 "unfinished; Ray ran others in their place)")
    for record in records:
        if run_ids.get(record.trial_id):
            settle_trial(run_ids[record.trial_id], record.outcome, writer)
    parent.finish(sweep_dir, ranked, interrupted, writer)
    waiting = spooled_runs(spool)
    if tracked and not waiting and not writer.lost:
        (sweep_dir / UNSETTLED_FILE).unlink(missing_ok=True)
        return
    why_not = why_not or writer.spooled_why or writer.lost_why or "its writes wait in the spool"
    trials = [(r.trial_id, run_ids.get(r.trial_id) or r.run_id, r.outcome, r.metrics) for r in records]
    lines, ids = unsettled_lines(parent.run_id, name, trials, unlogged, spool, frozenset(waiting))
    write_unsettled(sweep_dir, ids)
    echo(f"MLflow at {uri} did not take every write ({why_not}): {len(lines)} run(s) left unfinished there; "
         f"`{resume_command}` finishes them once it answers (the leaderboard above is complete):")
    for line in lines:
        echo(line)
