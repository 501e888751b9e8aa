"""Every file a sweep's driver wrote and reads back, damaged, deleted or copied under another sweep name: `--resume`
is one line naming the file and what to do, runs nothing, creates no MLflow run, and leaves the parent run as it
was (never RUNNING). One real sweep (Ray, sqlite MLflow, a test split) is run once; each case damages a copy."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner

from cli import main

SPACE = """data: {{store: {store}, split: condition, val_fraction: 0.34, test_fraction: 0.34}}
fixed: {{image_size: 16, epochs: 1, window: "3->1", layers: 1, hidden: 4, max_train_windows: 8, max_val_windows: 4}}
search:
  lr: {{type: log, low: 1.0e-3, high: 1.0e-2}}
tune: {{num_samples: 1, asha: false, seed: 1}}
evaluate: {{leads: 1, windows: 4, epoch_windows: 2, test_top_k: 1}}
tracking: {{experiment: files-test}}
"""


def _sweep(root: Path, storage: Path, *args: str) -> tuple[int, str]:
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "RAY_ADDRESS": "local"}
    result = CliRunner(env=env).invoke(main, ["sweep", str(root / "space.yaml"), *args, "--storage", str(storage)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def finished(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete one-trial sweep 'orig' (its folder under root/sweeps, its runs in root/mlflow.db)."""
    root = tmp_path_factory.mktemp("sweep-files")
    (root / "space.yaml").write_text(SPACE.format(store=tiny_store))
    code, out = _sweep(root, root / "sweeps", "--name", "orig")
    assert code == 0, out
    assert (root / "sweeps" / "orig" / "yardstick" / "test_scores.json").is_file()
    return root


def _runs(root: Path) -> list[tuple[str, str]]:
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("files-test")
    return sorted((r.info.run_id, r.info.status) for r in client.search_runs([exp.experiment_id]))


def _write(text: str) -> Callable[[Path], None]:
    return lambda p: p.write_text(text)


CASES: dict[str, tuple[str, Callable[[Path], None], str]] = {
    # case: (file, what is done to it, what the line says)
    "protocol-not-json": ("yardstick/protocol.json", _write("{not json"), "protocol.json: damaged"),
    "protocol-deleted": ("yardstick/protocol.json", Path.unlink, "protocol.json: missing"),
    "baselines-damaged": ("yardstick/baselines_val.json", _write("[1, 2"), "baselines_val.json: damaged"),
    "test-scores-damaged": ("yardstick/test_scores.json", _write("nope"), "test_scores.json: damaged"),
    "optuna-deleted": ("optuna.db", Path.unlink, "optuna.db: missing"),
    "optuna-damaged": ("optuna.db", _write("this is not sqlite " * 100), "optuna.db: not a readable Optuna database"),
    "parent-deleted": ("mlflow_parent.json", Path.unlink, "mlflow_parent.json: missing"),
    "parent-damaged": ("mlflow_parent.json", _write('{"run_id": 7}'), "mlflow_parent.json: not a parent-run record"),
    "parent-elsewhere": ("mlflow_parent.json", lambda p: p.write_text(json.dumps(json.loads(p.read_text()) | {"uri": "http://127.0.0.1:9"})),
                         "tracked at http://127.0.0.1:9"),
    "unsettled-damaged": ("mlflow_unsettled.json", _write("{"), "mlflow_unsettled.json: damaged"),
    "spool-run-damaged": ("mlflow_spool/pending-0123.run", _write("garbage"), "pending-0123.run: damaged"),
    "tuner-deleted": ("tuner.pkl", Path.unlink, "tuner.pkl: missing"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_damaged_driver_file_is_one_line_and_resumes_nothing(finished: Path, tmp_path: Path, case: str) -> None:
    name, damage, expect = CASES[case]
    storage = tmp_path / "sweeps"
    shutil.copytree(finished / "sweeps" / "orig", storage / "orig", symlinks=True)
    path = storage / "orig" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text("")
    before = _runs(finished)
    damage(path)
    code, out = _sweep(finished, storage, "--name", "orig", "--resume")
    lines = [line for line in out.splitlines() if line.strip()]
    assert code == 1 and "Traceback" not in out, out
    assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], out
    assert _runs(finished) == before  # no run made, none reopened: the parent stays FINISHED


@pytest.mark.slow
def test_a_sweep_folder_copied_under_another_name_is_named_and_not_resumed(finished: Path, tmp_path: Path) -> None:
    """Before: the trials ran, then `KeyError: 'Record does not exist.'` from optuna.load_study, the parent RUNNING."""
    storage = tmp_path / "sweeps"
    shutil.copytree(finished / "sweeps" / "orig", storage / "copy", symlinks=True)
    before = _runs(finished)
    code, out = _sweep(finished, storage, "--name", "copy", "--resume")
    lines = [line for line in out.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "a copy of sweep 'orig'" in lines[0] and "--name orig" in lines[0], out
    assert _runs(finished) == before


@pytest.mark.slow
def test_a_driver_failing_after_the_parent_run_opened_leaves_it_failed(finished: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills as the resumed sweep writes its leaderboard (after Tune, after the parent run was reopened
    RUNNING): the error is raised as it is, and the parent run ends FAILED, not RUNNING (before: RUNNING)."""
    storage = tmp_path / "sweeps"
    shutil.copytree(finished / "sweeps" / "orig", storage / "orig", symlinks=True)
    parent_id = json.loads((storage / "orig" / "mlflow_parent.json").read_text())["run_id"]

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("study.leaderboard.write", disk_full)
    try:
        code, out = _sweep(finished, storage, "--name", "orig", "--resume")
    except OSError as exc:
        code, out = -1, str(exc)
    assert code != 0 and "No space left on device" in out, out
    assert dict(_runs(finished))[parent_id] == "FAILED"
