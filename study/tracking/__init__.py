"""Every MLflow call and every run-state change, by concern: where runs go (store), one run per trial (runs), the
sweep's parent run and its record (parent), what export and the report read (reads), the model registry (registry).

Nothing else in the project imports mlflow; study.mlflow_writer is this package's transport (batched writes, spool).
The names below are the package's public face: callers import them from `study.tracking`.
"""

from __future__ import annotations

from study.mlflow_writer import SPOOL_DIR, is_refusal, spooled_run
from study.tracking.experiments import EXPERIMENT_KIND
from study.tracking.parent import PARENT_FILE, SweepRun, read_parent
from study.tracking.reads import download_file, download_folder, metric_history, run_params, sweep_dirs_named, trial_files
from study.tracking.registry import CHAMPION, EXPORTS_EXPERIMENT, beats_champion, register_export
from study.tracking.runs import (
    RUN_STATUS, TrialRun, close_orphaned_runs, delete_run, driver_writer, final_yardstick_of, find_trial_run, has_result,
    live_run, log_test_score, pending_creations, replay_spool, run_name, settle_trial, spooled_runs, yardstick_metrics,
)
from study.tracking.store import (
    MAX_EXPERIMENT_NAME, MAX_FILE_NAME, RUNS_DIR, check_experiment_name, check_tracking, configure, default_uri,
    experiment_id, model_version_link, readable, runs_table_link, tracking_uri,
)

__all__ = [
    "CHAMPION", "EXPERIMENT_KIND", "beats_champion", "EXPORTS_EXPERIMENT", "MAX_EXPERIMENT_NAME", "MAX_FILE_NAME", "PARENT_FILE",
    "RUNS_DIR", "RUN_STATUS", "SPOOL_DIR", "SweepRun", "TrialRun", "check_experiment_name", "check_tracking",
    "close_orphaned_runs", "configure", "delete_run", "driver_writer", "spooled_runs", "is_refusal", "live_run", "default_uri", "download_file",
    "download_folder", "experiment_id",
    "final_yardstick_of", "find_trial_run", "has_result", "log_test_score", "metric_history", "model_version_link",
    "pending_creations", "read_parent", "readable", "register_export", "replay_spool", "run_name", "run_params",
    "runs_table_link", "settle_trial", "spooled_run", "sweep_dirs_named", "trial_files", "tracking_uri",
    "yardstick_metrics",
]
