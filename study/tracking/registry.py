"""The model registry: an export registered as a version of a model, and the `champion` alias moved to it when it
beats the current champion on the same objective."""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bubbles.errors import UserError
from study.tracking.store import _first_line, _missing, _no_alias, configure, experiment_id

EXPORTS_EXPERIMENT = "bubbles-exports"  # where an export of a `train` checkpoint (no trial run) is logged
CHAMPION = "champion"


def register_export(uri: str, name: str, bundle: Path, source: str, run_id: str | None, score: tuple[str, float, str],
                    example: tuple[Any, Any], tags: dict[str, str] | None = None, model_name: str = "bundle",
                    description: str = "") -> tuple[str, bool, str]:
    """Log the export directory as an MLflow model of the trial run it came from (a python_function model:
    `mlflow.pyfunc.load_model("models:/NAME/VERSION").predict(frames)`), register it as a new version of `name`,
    and move the `champion` alias to it if it beats the current champion on the objective (or there is none).
    score = (objective, value, mode); example = (input, output) arrays for the signature; `tags` go on the version
    besides the score's; `model_name` names the logged model (what it is); `description` (Markdown) becomes the
    version's description; the trial run lists the logged model among its outputs. Any failure undoes what this call made (model, version, a registered model it created)
    and is one line. Returns (version, became champion, why not: '' when it did)."""
    import mlflow
    from mlflow.models import Model, infer_signature
    from mlflow.pyfunc import add_to_model

    configure(uri)
    client = mlflow.MlflowClient()
    objective, value, mode = score
    made: list[Any] = []  # undo steps, last first
    try:
        exp_id = client.get_run(run_id).info.experiment_id if run_id else experiment_id(EXPORTS_EXPERIMENT, uri)
        # A logged model of the trial run: the version's source then belongs to the run it names (a server checks).
        logged = client.create_logged_model(exp_id, name=model_name, source_run_id=run_id, tags={"source": source, "registered_as": name})
        made.append(lambda: client.delete_logged_model(logged.model_id))
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = Path(tmp) / "model"
            shutil.copytree(bundle, model_dir)
            (model_dir / "code").mkdir()
            shutil.copy(Path(__file__).parent.parent / "pyfunc_model.py", model_dir / "code" / "bubbles_pyfunc.py")
            model = Model(run_id=run_id, model_id=logged.model_id, signature=infer_signature(*example))
            add_to_model(model, loader_module="bubbles_pyfunc", data="model.ts", code="code")
            model.save(str(model_dir / "MLmodel"))
            client.log_model_artifacts(logged.model_id, str(model_dir))
        client.finalize_logged_model(logged.model_id, "READY")
        try:
            client.get_registered_model(name)
        except Exception as exc:
            if not _missing(exc):
                raise
            client.create_registered_model(name)
            made.append(lambda: client.delete_registered_model(name))
        # `value` is for reading (6 digits); `value_exact` is what the champion rule compares (no rounding ties).
        version = client.create_model_version(
            name, f"models:/{logged.model_id}", run_id=run_id, model_id=logged.model_id,
            tags={"objective": objective, "value": f"{value:.6g}", "value_exact": repr(float(value)), "mode": mode,
                  "source": source} | (tags or {}), description=description or None)
        made.append(lambda: client.delete_model_version(name, version.version))
        current: dict[str, str] | None = None
        try:
            current = dict(client.get_model_version_by_alias(name, CHAMPION).tags)
        except Exception as exc:
            if not _no_alias(exc):
                raise  # a server error must not make any new version the champion
        better, why = beats_champion(score, current)
        if better:
            client.set_registered_model_alias(name, CHAMPION, version.version)
        if run_id:  # the trial run's page lists this model (MLflow shows a run's model outputs, not models naming it)
            from mlflow.entities import LoggedModelOutput

            client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    except Exception as exc:
        stuck = 0
        for undo in reversed(made):
            try:
                undo()
            except Exception:
                stuck += 1  # the store stopped answering: said below
        left = f"; {stuck} part(s) could not be removed, look for them under `{name}`" if stuck else "; nothing was kept"
        raise UserError(f"--register {name}: MLflow at {uri} refused the registration ({_first_line(exc)}){left}") from None
    return str(version.version), better, why


def beats_champion(score: tuple[str, float, str], champion: dict[str, str] | None) -> tuple[bool, str]:
    """Whether a version scored `score` = (objective, value, mode) takes the `champion` alias from the version whose
    tags are `champion` (None: there is none), and if not, why. Like with like: a champion scored on another
    objective or mode is never compared by value (a val_mse cannot unseat a val_ssim); values compare exactly."""
    objective, value, mode = score
    if champion is None:
        return True, ""
    if (champion.get("objective"), champion.get("mode")) != (objective, mode):
        return False, (f"the champion is scored on {champion.get('objective')} ({champion.get('mode')}), this version on "
                       f"{objective} ({mode}): not comparable; register it under another name, or move the alias by hand")
    try:
        old = float(champion.get("value_exact", champion.get("value", "nan")))
    except ValueError:
        old = math.nan
    if not math.isfinite(old):
        return True, ""
    if not math.isfinite(value):
        return False, f"this version's {objective} is {value}"
    if value > old if mode == "max" else value < old:
        return True, ""
    return False, f"{objective} {value:.6g} does not beat the champion's {old:.6g} ({mode})"
