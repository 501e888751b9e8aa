"""The sweep's parent MLflow run, and the record in the sweep directory (mlflow_parent.json) that names it, so a
resumed sweep, export and the report find it without importing the sweep (or Ray)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from bubbles.errors import UserError
from study.tracking.store import _finite, experiment_id

PARENT_FILE = "mlflow_parent.json"


def read_parent(sweep_dir: Path) -> dict[str, Any]:
    """The sweep's mlflow_parent.json; a missing or damaged one is one line."""
    marker = sweep_dir / PARENT_FILE
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{marker}: cannot read the sweep's parent-run record ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("run_id"), str):
        raise UserError(f"{marker}: not a parent-run record (expected an object with a run_id)")
    return data


class SweepRun:
    """The parent MLflow run of a sweep; its id is kept in the sweep directory so a resumed sweep reuses it."""

    def __init__(self, run_id: str, experiment_id: str | None = None) -> None:
        import mlflow

        self.run_id = run_id
        self.experiment_id = experiment_id  # known when opened: finish() needs no read of a store that may be down
        self.client = mlflow.MlflowClient()

    def log_report(self, directory: Path) -> None:
        """The HTML report and its pictures, under report/ in the parent run."""
        self.client.log_artifacts(self.run_id, str(directory), "report")

    @classmethod
    def open_or_create(cls, uri: str, space: Any, name: str, marker: Path) -> SweepRun:
        import mlflow

        exp_id = experiment_id(space.experiment, uri)
        client = mlflow.MlflowClient()
        if marker.exists():
            run = cls(json.loads(marker.read_text())["run_id"], exp_id)
            client.update_run(run.run_id, status="RUNNING")
            return run
        # sweep_dir: where `export --sweep` and `report --sweep` must look (they say so when given another --storage).
        created = client.create_run(exp_id, run_name=name, tags={"sweep": name, "bubbles.role": "sweep",
                                                                 "sweep_dir": str(marker.parent.resolve())})
        run = cls(created.info.run_id, exp_id)
        with tempfile.TemporaryDirectory() as tmp:
            resolved = Path(tmp) / "resolved_space.json"
            resolved.write_text(json.dumps(_space_summary(space), indent=1, default=str))
            client.log_artifact(run.run_id, str(resolved))
            copy = Path(tmp) / Path(space.path).name
            copy.write_text(space.text)
            client.log_artifact(run.run_id, str(copy))
        tmp_marker = marker.with_suffix(".tmp")
        tmp_marker.write_text(json.dumps({"run_id": run.run_id, "uri": uri, "experiment": space.experiment,
                                          "objective": space.tune.objective, "mode": space.tune.mode}))
        tmp_marker.replace(marker)
        return run

    def finish(self, sweep_dir: Path, rows: list[dict[str, Any]], interrupted: bool, writer: Any = None) -> None:
        """The leaderboard, the best trial and the trial count; KILLED if the sweep was interrupted. Through
        `writer` (study.tracking.driver_writer: an outage keeps it all in the sweep's spool for the next driver's
        replay); none: written now, or raised."""
        from mlflow.entities import Metric

        from study.mlflow_writer import Writer
        from study.tracking.store import _now_ms, readable

        writer = writer or Writer(None)
        for name in ("leaderboard.csv", "leaderboard.md"):
            if (sweep_dir / name).exists():
                writer.log_artifact(self.run_id, sweep_dir / name)
        now = _now_ms()
        metrics = {"trials": float(len(rows))}
        tags = {}
        if rows:
            tags = {"best_trial_id": str(rows[0]["trial"]), "best_run_id": str(rows[0]["mlflow_run"])}
            if _finite(rows[0]["objective"]):
                metrics["best_objective"] = float(rows[0]["objective"])
            # The winner's yardstick: validation (what it was chosen on) and test (unbiased), side by side, by the
            # leaderboard's names (best_yardstick_ssim, best_test_skill_vs_strongest, ...).
            for key, value in rows[0].items():
                if key.startswith(("yardstick_", "test_")) and isinstance(value, float) and _finite(value):
                    metrics[f"best_{key}"] = value
            # The run's description in MLflow's UI: the top trials, linked, with the comparable columns.
            from study.tracking.views import NOTE_TAG, sweep_description

            parent = json.loads((sweep_dir / PARENT_FILE).read_text()) if (sweep_dir / PARENT_FILE).is_file() else {}
            exp = self.experiment_id or readable(lambda: self.client.get_run(self.run_id).info.experiment_id, None)
            if exp is not None:
                tags[NOTE_TAG] = sweep_description(rows, exp, str(parent.get("objective", "objective")),
                                                   str(parent.get("mode", "max")))
        # once=False: a resumed sweep's finish logs its values again (step 0, later timestamp: the one shown).
        writer.log_batch(self.run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()], tags=tags, once=False)
        writer.set_terminated(self.run_id, "KILLED" if interrupted else "FINISHED")


    def end_after_failure(self, spool: Path, exc: BaseException) -> None:
        """The driver failed after this run was opened (a crash in the test pass, a disk full at the leaderboard, a
        refusal at the end, Ctrl-C after Tune's loop): FAILED (KILLED for Ctrl-C / SIGTERM), never left RUNNING.
        Through the spool, so a store that is down takes it at the next driver's replay; a store that refuses it
        (the run deleted meanwhile) changes nothing about the error being raised."""
        from study.mlflow_writer import Writer

        try:
            Writer(spool).set_terminated(self.run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        except Exception:
            pass


def _space_summary(space: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "base": space.base,
        "dimensions": [asdict(d) for d in space.dimensions],
        "seed_points": list(space.seed_points),
        "tune": asdict(space.tune),
        "experiment": space.experiment,
    }
