"""What export and the report read back from MLflow: a trial's files, metric histories, params, artifacts."""

from __future__ import annotations

from pathlib import Path

from bubbles.errors import UserError
from study.tracking.store import _first_line, _missing, configure


def trial_files(uri: str, run_id: str, into: Path) -> tuple[str, dict[str, float], dict[str, str], Path, Path]:
    """A finished trial run's name, metrics, tags and, downloaded into `into`, its checkpoints/ folder and
    evaluation.json; one line if the run or its files are missing."""
    import mlflow

    configure(uri)
    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
    except Exception as exc:
        if not _missing(exc):
            raise UserError(f"MLflow at {uri}: cannot read run {run_id} ({_first_line(exc)})") from None
        raise UserError(f"MLflow run {run_id!r} not found in {uri}") from None
    try:
        checkpoints = Path(client.download_artifacts(run_id, "checkpoints", str(into)))
        evaluation = Path(client.download_artifacts(run_id, "evaluation.json", str(into)))
    except Exception:
        raise UserError(f"MLflow run {run_id}: no checkpoints/best.pt + evaluation.json (a finished trial has them)") from None
    return run.info.run_name, dict(run.data.metrics), dict(run.data.tags), checkpoints, evaluation


def metric_history(run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of one metric of a run, by step."""
    import mlflow

    return sorted((m.step, m.value) for m in mlflow.MlflowClient().get_metric_history(run_id, key))


def run_params(run_id: str) -> dict[str, str]:
    """A run's logged parameters."""
    import mlflow

    return dict(mlflow.MlflowClient().get_run(run_id).data.params)


def download_file(run_id: str, path: str, into: Path) -> Path | None:
    """One artifact file of a run, downloaded into `into`; None if the run has no such file."""
    import mlflow

    try:
        return Path(mlflow.MlflowClient().download_artifacts(run_id, path, str(into)))
    except Exception as exc:
        if not _missing(exc) and "No such file" not in str(exc) and "not found" not in str(exc).lower():
            raise
        return None


def download_folder(run_id: str, folder: str, into: Path) -> list[Path]:
    """The files of one artifact folder of a run (none if it has no such folder)."""
    import mlflow

    try:
        local = Path(mlflow.MlflowClient().download_artifacts(run_id, folder, str(into)))
    except Exception as exc:
        if not _missing(exc) and "No such file" not in str(exc):
            raise
        return []
    return sorted(p for p in local.iterdir() if p.is_file())


def sweep_dirs_named(uri: str, name: str) -> list[str]:
    """Where the sweeps named `name` that this tracking store knows were stored (their parent runs' sweep_dir tag;
    a sweep made before that tag gives none). Empty when the store cannot be read."""
    import mlflow

    configure(uri)
    client = mlflow.MlflowClient()
    try:
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(experiments, filter_string=f"tags.sweep = '{name}'", max_results=50) if experiments else []
    except Exception:
        return []
    return sorted({r.data.tags["sweep_dir"] for r in runs
                   if r.data.tags.get("bubbles.role") == "sweep" and r.data.tags.get("sweep_dir")})
