"""Ray Tune and Optuna as the sweep sees them, and the one record per trial that everything after Tune reads.

This is the only module that touches Ray's or Optuna's private attributes (the searcher's trial table, a restored
tuner's run config, the result grid's trials, Optuna's storage): the next upgrade of either breaks here, where it is
looked for. `trial_records` turns a finished `Tuner.fit()` into frozen TrialRecords; ranking, the full-protocol
scores of early-stopped trials, the test-split pass and the leaderboard are functions of those records
(study.sweep_end).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.search.optuna import OptunaSearch

from study.sweep_dir import OPTUNA_DB




@dataclass(frozen=True)
class TrialRecord:
    """One trial from Tune on. run_id: its MLflow run as the trial reported it ('' unknown, 'pending-…' spooled);
    outcome: study.records.trial_outcome; config: what was sampled; metrics: its last report; checkpoint: the
    directory of its last checkpoint (best.pt inside, picked by the objective); history: the objective after each
    epoch; validation: best.pt's yardstick means on every protocol window of the validation split ({} unknown)."""

    trial_id: str
    run_id: str
    outcome: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    checkpoint: Path | None
    history: tuple[float, ...] = ()
    validation: dict[str, float] = field(default_factory=dict)

    @property
    def best_pt(self) -> Path | None:
        """best.pt of a trial that ran to its end or was stopped early (None for the others, or none saved)."""
        if self.outcome not in ("completed", "stopped_early") or self.checkpoint is None:
            return None
        best = self.checkpoint / "best.pt"
        return best if best.is_file() else None

    def best_epoch_objective(self, mode: str) -> float:
        """The best per-epoch objective (the last reported one when no history is kept)."""
        finite = [v for v in self.history if isinstance(v, (int, float)) and math.isfinite(v)]
        if finite:
            return max(finite) if mode == "max" else min(finite)
        value = self.metrics.get("objective")
        return float(value) if isinstance(value, (int, float)) else math.nan


def trial_records(results: Any, sweep_dir: Path, name: str) -> list[TrialRecord]:
    """One record per trial of a finished fit(), in Tune's order. A trial whose Optuna trial is still running was
    interrupted (its outcome is 'unfinished')."""
    import optuna

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir / OPTUNA_DB}")
    finished = {t.user_attrs.get("ray_trial_id"): t.state.is_finished() for t in study.trials}
    records = []
    # ResultGrid keeps the experiment's trials in the same order.
    for trial, result in zip(results._experiment_analysis.trials, results):
        metrics = dict(result.metrics or {})
        history = result.metrics_dataframe
        objective = tuple(float(v) for v in history["objective"]) if history is not None and "objective" in history else ()
        validation = {k.removeprefix("final_yardstick_"): v for k, v in metrics.items() if k.startswith("final_yardstick_")}
        records.append(TrialRecord(
            trial.trial_id, str(metrics.get("mlflow_run") or ""),
            trial_outcome(metrics, result.error is not None, finished.get(trial.trial_id, False)),
            dict(result.config or trial.config or {}), metrics, Path(result.checkpoint.path) if result.checkpoint is not None else None,
            objective, validation))
    return records


def fail_orphaned(sweep_dir: Path, name: str) -> None:
    """fail_orphaned_trials of the sweep's Optuna study."""
    import optuna

    fail_orphaned_trials(optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir / OPTUNA_DB}"))


def restore_tuner(sweep_dir: Path, trainable: Any, callbacks: list[Any], verbose: bool) -> Any:
    """The saved tuner of a sweep, continued with this run's event lines and verbosity instead of the saved ones
    (Tune has no public setter; a Ray-client tuner keeps the saved ones)."""
    from ray import tune

    tuner = tune.Tuner.restore(str(sweep_dir), trainable=trainable, resume_unfinished=True, resume_errored=True)
    internal = getattr(tuner, "_local_tuner", None)
    if internal is not None:
        internal._run_config.callbacks = callbacks
        internal._run_config.verbose = 1 if verbose else 0
    return tuner


class VanishedCheckpoints(Callback):
    """A restored trial forgets checkpoints its run deleted after Ray's last experiment-state save.

    Ray saves the experiment state at most every 10 s (and once more on Ctrl-C / SIGTERM); a driver killed outright
    leaves an older state than the trial directories: a trial that went on kept only its newest `num_to_keep`
    checkpoints, so the restored state lists directories that are gone. When the restored trial saves its next
    checkpoint, Ray deletes the oldest listed one and raises FileNotFoundError ("Error handling checkpoint ...", a
    traceback on the console). Before Ray registers a checkpoint, the ones no longer on disk are dropped from its
    list: nothing is lost that still exists."""

    def on_checkpoint(self, iteration: int, trials: list[Any], trial: Any, checkpoint: Any, **info: Any) -> None:
        manager = getattr(getattr(trial, "run_metadata", None), "checkpoint_manager", None)
        results = getattr(manager, "_checkpoint_results", None)
        if not results:
            return
        kept = [r for r in results if _exists(r.checkpoint)]
        if len(kept) != len(results):
            manager._checkpoint_results = kept


def _exists(checkpoint: Any) -> bool:
    import pyarrow.fs

    try:
        return checkpoint.filesystem.get_file_info(checkpoint.path).type != pyarrow.fs.FileType.NotFound
    except Exception:  # a store that cannot say: left to Ray, as before
        return True


def fail_orphaned_trials(study: Any) -> None:
    """Optuna trials still RUNNING after a complete sweep belong to a driver that was killed: FAIL them, so the
    study (and TPE) does not count them as in flight forever."""
    import optuna

    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)


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
