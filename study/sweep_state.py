"""The sweep's Ray state files (what `--resume` unpickles) and the digest proving they are the ones it wrote.

`Tuner.restore` loads every top-level .pkl and .json of the sweep directory (tuner.pkl, the searcher's state,
experiment_state-*.json, whose trials may hold pickles); each trial directory's params.pkl is pickled too. While
the sweep runs, and when it ends, the SHA-256 of each of these files is recorded in `state_digest.json` beside
them (mode 0600). Resuming first checks the directory's owner and mode (study.sweep.check_trusted) and then that
every state file is one the sweep recorded, unchanged: a file changed or added by anything else is refused in one
line before anything is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ray import tune

from bubbles.errors import UserError

DIGEST_FILE = "state_digest.json"
# Written by the driver itself and read back as JSON only (never unpickled); study.sweep names the last two.
_OURS = {DIGEST_FILE, "mlflow_parent.json", "mlflow_unsettled.json"}


def state_files(sweep_dir: Path) -> list[Path]:
    """The files a resume would load: top-level .pkl / .json (Ray's), and each trial's params.pkl."""
    top = [p for p in sweep_dir.iterdir() if p.is_file() and p.suffix in (".pkl", ".json") and p.name not in _OURS]
    return sorted(top + [p for p in sweep_dir.glob("*/params.pkl") if p.is_file()])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record(sweep_dir: Path) -> None:
    """Write the digest of the state files as they are now (atomically, readable and writable by the owner only)."""
    files = {str(p.relative_to(sweep_dir)): _sha256(p) for p in state_files(sweep_dir)}
    tmp = sweep_dir / f".{DIGEST_FILE}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"sha256": files}, f, indent=1)
    os.replace(tmp, sweep_dir / DIGEST_FILE)


def verify(sweep_dir: Path) -> None:
    """Refuse, in one line, to resume from state files the sweep did not record as its own, or changed since."""
    marker = sweep_dir / DIGEST_FILE
    how = ("; refusing to resume (resuming unpickles it): start a new --name, or, if you know why it changed "
           "(a driver killed while saving), add --trust-state")
    try:
        recorded = json.loads(marker.read_text())["sha256"]
        if not isinstance(recorded, dict):
            raise ValueError("not a mapping")
    except FileNotFoundError:
        raise UserError(f"{marker}: missing, so nothing says the sweep's state files are the ones it wrote (a sweep "
                        f"begun before digests were kept){how}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{marker}: unreadable ({type(exc).__name__}){how}") from None
    for path in state_files(sweep_dir):
        rel = str(path.relative_to(sweep_dir))
        if rel not in recorded:
            raise UserError(f"{path}: not written by this sweep (not in {DIGEST_FILE}){how}")
        if _sha256(path) != recorded[rel]:
            raise UserError(f"{path}: changed since the sweep wrote it (its SHA-256 differs from {DIGEST_FILE}){how}")


def _stamp(sweep_dir: Path) -> list[Any]:
    return [(p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in state_files(sweep_dir)]


class StateDigest(tune.Callback):
    """Records the digest whenever Ray has saved its state (checked after every step of Tune's loop: a few stats)
    and when the experiment ends. Pickled into tuner.pkl with the run config, so a resumed sweep keeps it."""

    def __init__(self, sweep_dir: Path) -> None:
        self.sweep_dir = str(sweep_dir)
        self._seen: list[Any] | None = None

    def _update(self) -> None:
        directory = Path(self.sweep_dir)
        try:
            stamp = _stamp(directory)
            if stamp != self._seen:
                record(directory)
                self._seen = stamp
        except OSError:
            pass  # a file replaced mid-listing: the next step records it

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._update()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._update()
