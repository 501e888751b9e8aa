"""Where runs go: the tracking URI, checking the store answers, configuring MLflow, experiment names and links,
and how a read of an unavailable store falls back."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from bubbles.errors import UserError
from study.mlflow_writer import bound_http, is_refusal
from study.tracking.experiments import ensure_experiment

RUNS_DIR = "runs"


def default_uri(root: Path) -> str:
    """A local sqlite file under runs/ (created on first use)."""
    return f"sqlite:///{(root / RUNS_DIR / 'mlflow.db').resolve()}"


def tracking_uri(root: Path) -> str:
    """MLFLOW_TRACKING_URI when set, else the local default."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_uri(root)


def check_tracking(uri: str) -> None:
    """Fail fast, in one line, if a tracking server is unreachable or refuses this client's Host header (before
    any training or Ray start): one real API request, since `/health` answers even when every write is refused."""
    if uri.startswith(("http://", "https://")):
        from study.api_probe import probe

        found = probe(uri)
        if found.host_refused:
            raise UserError(f"MLflow tracking server {uri} refuses this client's Host header {found.host!r} (MLflow's "
                            f"DNS-rebinding guard, 403): start it with --allowed-hosts {found.host}")
        if found.unreachable:
            raise UserError(f"MLflow tracking server {uri} is unreachable ({found.reason}); start it or set MLFLOW_TRACKING_URI")
        if not found.ok:
            raise UserError(f"MLflow tracking server {uri} answered {found.reason}")
    elif uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def configure(uri: str) -> None:
    import mlflow

    logging.getLogger("alembic").setLevel(logging.WARNING)
    bound_http()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow prints "View run … / View experiment at …" for every run it ends on a server, and that experiment link
    # opens its GenAI view: the sweep prints the one link that opens the runs table (runs_table_link) instead.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    mlflow.set_tracking_uri(uri)




def experiment_id(name: str, uri: str) -> str:
    """The experiment's id, creating it (with artifacts beside a local sqlite file) if needed."""
    import mlflow

    configure(uri)
    return ensure_experiment(mlflow.MlflowClient(), name, uri)


MAX_EXPERIMENT_NAME = 500  # MLflow's own limit (characters)
MAX_FILE_NAME = 255  # bytes: a local store keeps artifacts in a directory named after the experiment


def check_experiment_name(name: str, uri: str, what: str = "--experiment") -> None:
    """Refuse, before anything starts, a name MLflow or the local artifact directory would refuse later (a
    traceback, or a whole run trained and then left RUNNING)."""
    if not name.strip():
        raise UserError(f"{what}: give a non-empty MLflow experiment name")
    if len(name) > MAX_EXPERIMENT_NAME:
        raise UserError(f"{what}: the name has {len(name)} characters; MLflow takes at most {MAX_EXPERIMENT_NAME}")
    longest = max(len(part.encode()) for part in name.split("/"))
    if uri.startswith("sqlite:///") and longest > MAX_FILE_NAME:
        raise UserError(f"{what}: the name is {longest} bytes long; its artifact directory under "
                        f"{Path(uri.removeprefix('sqlite:///')).parent / 'mlartifacts'} can be at most {MAX_FILE_NAME}")


def runs_table_link(uri: str, experiment: str) -> str:
    """Where a user sees the experiment's runs table. workflowType is in the link because MLflow 3.17's UI opens
    in its GenAI mode in a fresh browser, whatever the experiment's kind."""
    path = f"#/experiments/{experiment_id(experiment, uri)}/runs?workflowType=machine_learning"
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/{path}"
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1, then http://127.0.0.1:5000/{path}"


def model_version_link(uri: str, name: str, version: str) -> str:
    """Where a user sees a registered model version (its source run, signature, aliases)."""
    from urllib.parse import quote

    path = f"#/models/{quote(name, safe='')}/versions/{version}"
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/{path}"
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1, then http://127.0.0.1:5000/{path}"

def readable(read: Any, fallback: Any) -> Any:
    """A read that an unavailable store answers with `fallback` (the trial goes on; its writes are spooled)."""
    try:
        return read()
    except Exception as exc:
        if is_refusal(exc):
            raise
        logging.getLogger(__name__).warning("MLflow unavailable (%s); going on", str(exc).splitlines()[0][:200])
        return fallback


def _finite(v: float) -> bool:
    return v == v and v not in (float("inf"), float("-inf"))


def _now_ms() -> int:
    return int(time.time() * 1000)

def _missing(exc: BaseException) -> bool:
    return getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST"


def _no_alias(exc: BaseException) -> bool:
    """'No champion yet': over HTTP an unknown alias is INVALID_PARAMETER_VALUE '… alias X not found'."""
    text = str(exc)
    return _missing(exc) or (getattr(exc, "error_code", None) == "INVALID_PARAMETER_VALUE" and "alias" in text and "not found" in text)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]
