"""The MLflow experiment a run goes into: looked up, or created (artifacts beside a local sqlite file) and tagged so
that MLflow 3 opens its runs table. Imports nothing of the project, so the writer transport can use it too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# MLflow 3 opens an experiment without this tag in its GenAI view (traces, assistant); this value opens the runs table.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def ensure_experiment(client: Any, name: str, uri: str) -> str:
    """The experiment's id through `client` (configured for `uri`), creating it if needed."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.tags.get("mlflow.experimentKind") is None:  # made by an earlier version, or by hand
            try:
                client.set_experiment_tag(found.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
            except Exception as exc:  # trials starting together race to tag it (PostgreSQL: a duplicate key)
                if getattr(exc, "error_code", None) not in ("BAD_REQUEST", "RESOURCE_ALREADY_EXISTS", "INVALID_STATE") and "UNIQUE" not in str(exc).upper():
                    raise
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / name).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
    except Exception:
        # Another process created it between our look-up and create: use theirs.
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id
