"""Ctrl-C on a sweep: what is kept, and the one command that goes on from there.

A sweep that Ray Tune has saved at least once (experiment_state-*.json beside tuner.pkl) continues with `--resume`.
One stopped earlier (starting Ray, scoring the baselines, creating the MLflow parent run) has no trial to continue:
the directory this driver created for it is removed, with the parent run it made, so that nothing is left that a
later `--resume` could mistake for a sweep; the command to run is the same start again.
"""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

STATE_GLOB = "experiment_state-*.json"  # Ray Tune's saved experiment: what Tuner.restore continues from


def has_tune_state(sweep_dir: Path) -> bool:
    """Whether Ray Tune saved this sweep at least once (so `--resume` has trials to continue)."""
    return sweep_dir.is_dir() and any(sweep_dir.glob(STATE_GLOB))


def discard_unstarted(sweep_dir: Path, uri: str, created: bool) -> str:
    """After a Ctrl-C before Ray Tune saved anything: remove the sweep directory this driver `created` (never one
    that existed before it) and delete the MLflow parent run recorded there (it has no trials). Returns what was
    done, in words, for the interrupted line."""
    if not created or not sweep_dir.is_dir() or has_tune_state(sweep_dir):
        return "nothing to remove"
    said = f"removed {sweep_dir}"
    from study.tracking import PARENT_FILE

    marker = sweep_dir / PARENT_FILE
    try:
        run_id = json.loads(marker.read_text()).get("run_id") if marker.is_file() else None
    except (OSError, ValueError, AttributeError):
        run_id = None
    if isinstance(run_id, str):
        try:
            from study.tracking import delete_run

            delete_run(uri, run_id)
            said += f" and its empty MLflow parent run {run_id}"
        except Exception as exc:  # the store is down: the run stays, named, and harms nothing
            said += f"; its empty MLflow parent run {run_id} could not be deleted ({type(exc).__name__})"
    shutil.rmtree(sweep_dir, ignore_errors=True)
    return said


def stop_on_ctrl_c() -> Callable[[], None]:
    """SIGINT (and SIGTERM, the same way) stops training now (KeyboardInterrupt at the next Python line, i.e. within the current batch's
    operation), even when the shell started us with SIGINT ignored (a job run with `&`); a second Ctrl-C while the
    run is being closed is ignored, so the MLflow run is always marked KILLED. Returns the call that starts that."""
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
