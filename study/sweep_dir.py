"""The sweep directory under --storage: its name, the files the driver keeps in it, and whether it can be trusted
(resuming unpickles Ray's state). Light on purpose: report and export read these names without importing Ray."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

from bubbles.errors import UserError

UNSETTLED_FILE = "mlflow_unsettled.json"  # runs an outage kept the driver from ending: the next driver settles them
OPTUNA_DB = "optuna.db"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_name(name: str) -> str:
    """A sweep name is one plain directory name under --storage (so `../x` cannot write elsewhere)."""
    if not _NAME.fullmatch(name):
        raise UserError(f"sweep name {name!r}: use 1-100 letters, digits, '.', '-', '_', starting with a letter or digit")
    return name


def check_trusted(sweep_dir: Path) -> None:
    """Refuse to continue a sweep whose directory someone else could have written: resuming unpickles Ray's
    tuner.pkl (and the experiment state holds pickled trials), so whoever can write it can run code as this user.
    The directory and everything at its top level must belong to this user and be writable by no one else."""
    uid = os.getuid()
    for path in (sweep_dir, *sorted(sweep_dir.iterdir())):
        st = path.lstat()
        if st.st_uid != uid:
            raise UserError(f"{path}: owned by uid {st.st_uid}, not you (uid {uid}); refusing to resume a sweep "
                            "someone else could have changed (resuming unpickles it)")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise UserError(f"{path}: writable by group or others (mode {stat.filemode(st.st_mode)}); refusing to "
                            f"resume (resuming unpickles it): chmod go-w {path}")


def read_unsettled(sweep_dir: Path) -> set[str]:
    """The runs an outage kept the last driver from ending (empty if none, or the file is unreadable)."""
    try:
        return set(json.loads((sweep_dir / UNSETTLED_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return set()


def write_unsettled(sweep_dir: Path, run_ids: list[str]) -> None:
    """Add `run_ids` to the record of unsettled runs (temp file, then rename)."""
    tmp = sweep_dir / (UNSETTLED_FILE + ".tmp")
    tmp.write_text(json.dumps(sorted(set(run_ids) | read_unsettled(sweep_dir))))
    tmp.replace(sweep_dir / UNSETTLED_FILE)


def finished_sweep_dir(storage: Path, name: str, where_else: list[str], option: str = "--storage") -> Path:
    """storage/name when a sweep finished there (its parent-run record and leaderboard); else one line saying where
    to look: the directories the tracking store knows for that name (`where_else`), or the sweep's own output."""
    sweep_dir = storage / check_name(name)
    if (sweep_dir / "mlflow_parent.json").is_file() and (sweep_dir / "leaderboard.csv").is_file():
        return sweep_dir
    found = "no sweep here" if not sweep_dir.exists() else "no finished sweep here (no mlflow_parent.json / leaderboard.csv)"
    elsewhere = [Path(d) for d in where_else if Path(d) != sweep_dir.resolve()]
    if elsewhere:
        hint = "; the tracking store has a sweep of that name in " + ", ".join(
            f"{d} (add {option} {d.parent})" for d in elsewhere)
    else:
        hint = (f"; give {option} the directory the sweep was run with: the path before /{name} in its closing line "
                f"'leaderboard in …'")
    raise UserError(f"{sweep_dir}: {found}{hint}")
