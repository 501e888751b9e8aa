"""Before a sweep continues: every file its driver wrote and reads back is checked, and a damaged, missing or
foreign one (a sweep folder copied under another name) is one line naming the file and what to do.

Checked before Ray starts and before the parent MLflow run is touched, so a refusal half-resumes nothing and leaves
the parent run as it was. Ray's own pickles are checked by study.sweep_state (their digest); this module checks
the rest: mlflow_parent.json, mlflow_unsettled.json, Optuna's database, the yardstick's records and the MLflow spool.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from bubbles.errors import UserError
from bubbles.evaluation.yardstick import Protocol
from study.tracking import SPOOL_DIR
from study.sweep_dir import OPTUNA_DB, UNSETTLED_FILE
from study.sweep_state import DIGEST_FILE
from study.tracking.parent import PARENT_FILE
from study.yardstick import YARDSTICK_DIR

RAY_STATE = "tuner.pkl"
_RUN_ID = re.compile(r"[0-9a-f]{32}")
NEW = "start a new sweep (another --name)"


def check_sweep_files(sweep_dir: Path, name: str, uri: str) -> None:
    """Refuse, in one line, to continue a sweep from files its driver did not leave as they are: damaged, deleted,
    or written by another sweep (the folder copied under a new name)."""
    if not sweep_dir.is_dir():
        return
    began = (sweep_dir / RAY_STATE).exists()
    ray_files = (sweep_dir / DIGEST_FILE).exists() or any(sweep_dir.glob("experiment_state-*.json"))
    if ray_files and not began:
        raise UserError(f"{sweep_dir / RAY_STATE}: missing, so Ray cannot continue the trials this sweep began (its "
                        f"experiment state is there); restore the file or {NEW}")
    _check_optuna(sweep_dir, name, began)
    _check_parent(sweep_dir, uri, began)
    _check_unsettled(sweep_dir)
    _check_yardstick(sweep_dir, began)
    _check_spool(sweep_dir)


def _check_optuna(sweep_dir: Path, name: str, began: bool) -> None:
    db = sweep_dir / OPTUNA_DB
    if not db.exists():
        if began:
            raise UserError(f"{db}: missing, so the search's history (what Optuna proposed and learned) is gone; "
                            f"restore the file or {NEW}")
        return
    try:
        connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            names = [row[0] for row in connection.execute("SELECT study_name FROM studies")]
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise UserError(f"{db}: not a readable Optuna database ({exc}); restore the file or {NEW}") from None
    if began and name not in names:
        if names:
            raise UserError(f"{sweep_dir}: a copy of sweep {names[0]!r} (its {OPTUNA_DB} holds that study, and its MLflow "
                            f"runs belong to that sweep); continue it under its own name (--name {names[0]}) in its own "
                            f"folder, or {NEW}")
        raise UserError(f"{db}: holds no study {name!r}, so the search's history is gone; restore the file or {NEW}")


def _check_parent(sweep_dir: Path, uri: str, began: bool) -> None:
    marker = sweep_dir / PARENT_FILE
    if not marker.exists():
        if began:
            raise UserError(f"{marker}: missing, so this sweep's trial runs cannot be found under their parent MLflow run; "
                            f"restore the file (its run_id is the parent run's id, tagged sweep=<name> in MLflow) or {NEW}")
        return
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{marker}: cannot read the sweep's parent-run record ({type(exc).__name__}); restore the file "
                        f"or {NEW}") from None
    if not isinstance(data, dict) or not isinstance(data.get("run_id"), str) or not _RUN_ID.fullmatch(data["run_id"]):
        raise UserError(f"{marker}: not a parent-run record (expected an object with a run_id); restore the file or {NEW}")
    recorded = data.get("uri")
    if isinstance(recorded, str) and recorded and recorded != uri:
        raise UserError(f"{marker}: this sweep's runs are tracked at {recorded}, not {uri}; set "
                        f"MLFLOW_TRACKING_URI={recorded} to continue it, or {NEW}")


def _check_unsettled(sweep_dir: Path) -> None:
    path = sweep_dir / UNSETTLED_FILE
    if not path.exists():
        return
    try:
        ids = json.loads(path.read_text())
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValueError("not a list of run ids")
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: damaged ({type(exc).__name__}): it names the MLflow runs an outage left open; delete "
                        "it and continue (those runs are then closed as KILLED and given their outcome after the "
                        "sweep)") from None


def _check_yardstick(sweep_dir: Path, began: bool) -> None:
    folder = sweep_dir / YARDSTICK_DIR
    record = folder / "protocol.json"
    rescore = (f"if the space file's `evaluate:` is unchanged since the sweep began, delete {folder} and continue "
               f"(the protocol is recorded again, its baselines scored again), else {NEW}")
    if not record.exists():
        if began or any(folder.glob("baselines_*.json")):
            raise UserError(f"{record}: missing, so nothing says which protocol this sweep's trials were scored on; {rescore}")
        return
    try:
        Protocol.from_dict(json.loads(record.read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{record}: damaged ({type(exc).__name__}), so nothing says which protocol this sweep's "
                        f"trials were scored on; {rescore}") from None
    for path in sorted(folder.glob("baselines_*.json")):
        _json_object(path, "delete it and continue (a cache: the baselines are scored again)")
    test = folder / "test_scores.json"
    if test.exists():
        _json_object(test, "delete it and continue (the test pass then scores the best trials again, once)")


def _json_object(path: Path, todo: str) -> None:
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: damaged ({type(exc).__name__}); {todo}") from None


def _check_spool(sweep_dir: Path) -> None:
    """The spool's run records (a pending run's real id, once created): a damaged one would send its writes to a
    run that does not exist. Damaged write lines are the replay's to name (study.mlflow_writer)."""
    spool = sweep_dir / SPOOL_DIR
    if not spool.is_dir():
        return
    for created in sorted(spool.glob("pending-*.run")):
        try:
            text = created.read_text().strip()
        except OSError as exc:
            raise UserError(f"{created}: unreadable ({exc.strerror or exc}); it holds the MLflow id of a run created by a "
                            "replay: find the run by its bubbles.creation_key tag and write its id there") from None
        if not _RUN_ID.fullmatch(text):
            raise UserError(f"{created}: damaged (not an MLflow run id); it holds the id of a run created by a replay: "
                            "find the run by its bubbles.creation_key tag and write its id there, or delete the file "
                            "to create the run again")
