"""Fault suite for sweeps: untrusted resume directories, unreachable clusters, impossible resources, orphans of a
killed driver. Real MLflow (sqlite) and Optuna; Ray only where the case needs a cluster."""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main


class _Boom:
    """Unpickling this writes a file: the proof that a resume would have run someone else's code."""

    def __init__(self, flag: Path) -> None:
        self.flag = flag

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.flag,))


def _space(tmp: Path, store: Path, cpu: int = 1) -> Path:
    path = tmp / "space.yaml"
    path.write_text(f"data: {{store: {store}}}\nfixed: {{image_size: 16, epochs: 1, window: '3->1', layers: 1, hidden: 4, "
                    f"max_train_windows: 8, max_val_windows: 4}}\nevaluate: {{windows: 4, epoch_windows: 2}}\n"
                    f"search:\n  lr: {{type: log, low: 1.0e-3, high: 1.0e-2}}\n"
                    f"tune: {{objective: val_ssim, num_samples: 1, resources: {{cpu: {cpu}, gpu: 0}}}}\n")
    return path


def _sweep(tmp: Path, *args: str) -> tuple[int, str]:
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "RAY_ADDRESS": "local"}
    result = CliRunner(env=env).invoke(main, ["sweep", *args, "--storage", str(tmp / "sweeps")])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _run_count(tmp: Path) -> int:
    import mlflow

    if not (tmp / "mlflow.db").exists():
        return 0
    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    return sum(len(mlflow.MlflowClient().search_runs([e.experiment_id])) for e in mlflow.search_experiments())


def _one_line(code: int, out: str, expect: str) -> None:
    # A refusal after Ray has started follows the line that said it was starting (a wait of 10-60 s): one error line.
    lines = [line for line in out.splitlines() if line.strip() and not line.startswith(("starting Ray", "connecting to the Ray"))]
    assert code == 1 and "Traceback" not in out, out
    assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], out


def test_resume_refuses_a_directory_others_can_write_or_do_not_own(tmp_path: Path, tiny_store: Path) -> None:
    sweep = tmp_path / "sweeps" / "shared"
    sweep.mkdir(parents=True)
    flag = tmp_path / "code-ran"
    (sweep / "tuner.pkl").write_bytes(pickle.dumps(_Boom(flag)))
    space = _space(tmp_path, tiny_store)
    os.chmod(sweep, 0o777)
    _one_line(*_sweep(tmp_path, str(space), "--name", "shared", "--resume"), "writable by group or others")
    os.chmod(sweep, 0o755)
    os.chmod(sweep / "tuner.pkl", 0o666)
    _one_line(*_sweep(tmp_path, str(space), "--name", "shared", "--resume"), "tuner.pkl: writable by group or others")
    os.chmod(sweep / "tuner.pkl", 0o644)
    if os.getuid() == 0:
        os.chown(sweep / "tuner.pkl", 65534, 65534)
        _one_line(*_sweep(tmp_path, str(space), "--name", "shared", "--resume"), "owned by uid 65534")
    assert not flag.exists()
    assert _run_count(tmp_path) == 0


def test_an_unreachable_ray_address_fails_fast_before_any_mlflow_run(tmp_path: Path, tiny_store: Path) -> None:
    started = time.monotonic()
    _one_line(*_sweep(tmp_path, str(_space(tmp_path, tiny_store)), "--address", "127.0.0.1:1"), "no Ray head answers")
    assert time.monotonic() - started < 60  # generous: the old behaviour waited for minutes
    assert _run_count(tmp_path) == 0


@pytest.mark.slow
def test_resources_beyond_the_cluster_are_refused_before_fit(tmp_path: Path, tiny_store: Path) -> None:
    _one_line(*_sweep(tmp_path, str(_space(tmp_path, tiny_store, cpu=512))), "asks for 512 CPU but the Ray cluster has")
    assert _run_count(tmp_path) == 0


def test_a_killed_drivers_running_trials_are_closed(tmp_path: Path) -> None:
    import mlflow
    import optuna

    from study.sweep import fail_orphaned_trials
    from study.tracking import close_orphaned_runs

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'm.db'}")
    client = mlflow.MlflowClient()
    exp = client.create_experiment("orphans")
    parent = client.create_run(exp).info.run_id
    orphan = client.create_run(exp, tags={"mlflow.parentRunId": parent}).info.run_id
    done = client.create_run(exp, tags={"mlflow.parentRunId": parent}).info.run_id
    client.set_terminated(done, "FINISHED")
    other = client.create_run(exp).info.run_id  # not this sweep's: left alone
    assert close_orphaned_runs(parent) == 1
    assert client.get_run(orphan).info.status == "KILLED"
    assert client.get_run(orphan).data.tags["trial_status"] == "unfinished"
    assert [client.get_run(r).info.status for r in (done, other)] == ["FINISHED", "RUNNING"]

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="s")
    study.ask()
    finished = study.ask()
    study.tell(finished, 1.0)
    fail_orphaned_trials(study)
    assert [t.state.name for t in study.get_trials()] == ["FAIL", "COMPLETE"]


@pytest.mark.slow
def test_resume_refuses_state_files_the_sweep_did_not_write(tmp_path: Path, tiny_store: Path) -> None:
    """Before: a tuner.pkl replaced inside the trust boundary (same owner, not group-writable) was unpickled (its
    code ran) and the resume ended in a traceback from Ray's loader. Now the sweep records a digest of its state
    files as Ray saves them, and a resume refuses, in one line, any file that differs from it or is not in it."""
    space = _space(tmp_path, tiny_store)
    code, out = _sweep(tmp_path, str(space), "--name", "s")
    assert code == 0, out
    sweep = tmp_path / "sweeps" / "s"
    digest = sweep / "state_digest.json"
    assert digest.stat().st_mode & 0o777 == 0o600
    assert "tuner.pkl" in json.loads(digest.read_text())["sha256"]
    # (An untouched sweep resumes: tests/test_sweep_resilience.py interrupts one and continues it.)
    runs = _run_count(tmp_path)
    flag = tmp_path / "code-ran"
    original = (sweep / "tuner.pkl").read_bytes()
    (sweep / "tuner.pkl").write_bytes(pickle.dumps(_Boom(flag)))  # same owner, mode 0644: inside the old boundary
    _one_line(*_sweep(tmp_path, str(space), "--name", "s", "--resume"), "tuner.pkl: changed since the sweep wrote it")
    (sweep / "tuner.pkl").write_bytes(original)
    (sweep / "extra.pkl").write_bytes(pickle.dumps(_Boom(flag)))
    _one_line(*_sweep(tmp_path, str(space), "--name", "s", "--resume"), "extra.pkl: not written by this sweep")
    (sweep / "extra.pkl").unlink()
    digest.unlink()
    _one_line(*_sweep(tmp_path, str(space), "--name", "s", "--resume"), "state_digest.json: missing")
    assert not flag.exists() and _run_count(tmp_path) == runs
    from study import sweep_state

    sweep_state.record(sweep)  # what --trust-state does before the check: the user vouches for the files as they are
    sweep_state.verify(sweep)
    _one_line(*_sweep(tmp_path, str(space), "--name", "s", "--trust-state"), "--trust-state goes with --resume")


def test_a_trial_optuna_finished_is_not_reported_again(tmp_path: Path) -> None:
    """Found after a `kill -9` of the driver: Ray restored an experiment state older than Optuna's database and ran
    a finished trial's last epoch again; Optuna's UpdateFinishedTrialError ended the resumed sweep in a traceback."""
    import optuna

    from study.sweep import PruningOptunaSearch

    searcher = PruningOptunaSearch(space={"lr": optuna.distributions.FloatDistribution(1e-3, 1e-2)}, metric="objective",
                                   mode="max", study_name="s", storage=optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}"))
    assert searcher.suggest("t1") is not None
    searcher._ot_study.tell(searcher._ot_trials["t1"], 0.5)  # what the killed driver had recorded
    searcher.on_trial_result("t1", {"objective": 0.4, "training_iteration": 2})
    searcher.on_trial_complete("t1", {"objective": 0.4, "training_iteration": 2, "epoch": 2, "epochs_planned": 2})
    assert [t.state.name for t in searcher._ot_study.get_trials()] == ["COMPLETE"]


def test_a_failed_trial_is_one_console_line() -> None:
    """Before: Tune logged a failed trial with its whole traceback (~94 lines through Ray's worker) on the console.
    The filter the sweep puts on Tune's logger keeps one line with the error; error.txt keeps the traceback."""
    import logging
    import sys

    from study.console import OneLineTrialErrors

    try:
        raise RuntimeError("line 1 of the worker's traceback\n  ...\nRuntimeError: injected failure")
    except RuntimeError:
        record = logging.LogRecord("ray.tune.execution.tune_controller", logging.ERROR, __file__, 1,
                                   "Trial task failed for trial %s", ("run_trial_1dfa84a5",), sys.exc_info())
    assert OneLineTrialErrors().filter(record)
    text = logging.Formatter().format(record)
    assert text == ("Trial task failed for trial run_trial_1dfa84a5: RuntimeError: injected failure "
                    "(traceback in the trial's error.txt)")
    other = logging.LogRecord("ray.tune", logging.WARNING, __file__, 1, "something else", (), None)
    assert OneLineTrialErrors().filter(other) and logging.Formatter().format(other) == "something else"
