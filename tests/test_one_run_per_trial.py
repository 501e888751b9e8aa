"""One MLflow run per trial whatever happens: a tracking-server outage mid-sweep (a real `mlflow server`, killed),
the driver stopped with SIGTERM while a trial runs through the outage, the server restarted on the same database,
then `--resume`. Every trial ends with exactly one run, ended, holding each metric step once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from tests import mlflow_server
from tests.test_sweep_resilience import assert_steps_increase

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 4
SPACE = f"""
data: {{store: STORE, split: condition, val_fraction: 0.34}}
fixed: {{loss: mse_mean, batch_size: 4, stride: 1, max_train_windows: 48, max_val_windows: 4, layers: 1, hidden: 4,
         image_size: 16, window: "4->1", epochs: {EPOCHS}}}
search:
  lr: {{type: categorical, choices: [1.0e-2, 3.0e-3]}}
seed_points: [{{lr: 1.0e-2}}, {{lr: 3.0e-3}}]
tune: {{num_samples: 2, max_concurrent: 1, max_failures: 0, asha: false, sampler: random}}
evaluate: {{windows: 8, epoch_windows: 2}}
tracking: {{experiment: one-run}}
"""


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the sweep ended while waiting for {what}: {proc.stdout.read() if proc.stdout else ''}")
        if time.time() > deadline:
            raise TimeoutError(what)
        time.sleep(0.3)


def _epochs_logged(uri: str) -> int:
    try:
        client = mlflow.MlflowClient(uri)
        exp = client.get_experiment_by_name("one-run")
        runs = client.search_runs([exp.experiment_id], "tags.sweep = 'sigterm'") if exp else []
        return max((len(client.get_metric_history(r.info.run_id, "epoch/val_mse")) for r in runs), default=0)
    except Exception:
        return 0


def _spooled_epochs(spool: Path, pending_only: bool) -> int:
    files = spool.glob("pending-*.jsonl" if pending_only else "*.jsonl") if spool.is_dir() else []
    return sum(p.read_text().count('"epoch/val_mse"') for p in files if p.is_file())


@pytest.mark.slow
def test_outage_then_sigterm_then_resume_leaves_one_run_per_trial(tiny_store: Path, tmp_path: Path) -> None:
    port = mlflow_server.free_port()
    (tmp_path / "server").mkdir()
    server = mlflow_server.start(tmp_path / "server", port)
    uri = f"http://127.0.0.1:{port}"
    (tmp_path / "space.yaml").write_text(SPACE.replace("STORE", str(tiny_store)))
    env = os.environ | {"MLFLOW_TRACKING_URI": uri, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1", "RAY_ADDRESS": "local"}
    cmd = [sys.executable, str(ROOT / "cli.py"), "sweep", str(tmp_path / "space.yaml"), "--name", "sigterm",
           "--storage", str(tmp_path / "sweeps")]
    spool = tmp_path / "sweeps" / "sigterm" / "mlflow_spool"
    driver = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Trial 1's run is made while the server is up; the server dies after its first epoch.
        _wait(lambda: _epochs_logged(uri) >= 1, 300, "trial 1's first epoch in MLflow", driver)
        mlflow_server.stop(server)
        # Trial 1 goes on through the outage (its writes spooled); trial 2's run is created in the spool ('pending').
        _wait(lambda: _spooled_epochs(spool, pending_only=True) >= 1, 400, "trial 2's first epoch in the spool", driver)
        driver.send_signal(signal.SIGTERM)  # the driver stopped while trial 2 runs
        stopped = time.monotonic()
        first, _ = driver.communicate(timeout=120)
        stop_s = time.monotonic() - stopped
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    # SIGTERM takes Ctrl-C's path: Tune saves its state one last time (before, the driver died at once and --resume
    # restored a state up to 10 s older: trials run again, Ray looking for checkpoints it had deleted, a trial forgotten).
    assert driver.returncode == 130 and "interrupted: continue with" in first and "Traceback" not in first, first[-3000:]
    print(f"the driver stopped {stop_s:.1f} s after SIGTERM")
    time.sleep(5)  # Ray's reaper ends the stopped driver's workers
    server = mlflow_server.start(tmp_path / "server", port)  # the same database
    try:
        resumed = subprocess.run(cmd + ["--resume"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
        out = resumed.stdout + resumed.stderr
        assert resumed.returncode == 0, first[-2000:] + "\n----\n" + out[-4000:]
        assert "Traceback" not in out, out[-4000:]
        client = mlflow.MlflowClient(uri)
        exp = client.get_experiment_by_name("one-run")
        runs = client.search_runs([exp.experiment_id], "tags.sweep = 'sigterm'")
        trials = [r for r in runs if r.data.tags.get("bubbles.role") != "sweep"]
        per_trial: dict[str, list[str]] = {}
        for r in trials:
            per_trial.setdefault(r.data.tags.get("tune_trial_id", "?"), []).append(f"{r.info.run_id} {r.info.status}")
        assert all(len(v) == 1 for v in per_trial.values()), (per_trial, out[-3000:])  # one run per trial
        import csv

        with (tmp_path / "sweeps" / "sigterm" / "leaderboard.csv").open() as f:
            board = {row["trial"]: row for row in csv.DictReader(f)}
        assert len(board) == 2 and all(row["status"] == "completed" for row in board.values()), board
        for r in trials:
            trial = r.data.tags["tune_trial_id"]
            # A trial on the leaderboard ended FINISHED; one Ray's restored state no longer knew (it ran another in
            # its place) is closed KILLED, never left RUNNING.
            assert r.info.status == ("FINISHED" if trial in board else "KILLED"), (per_trial, out[-3000:])
            assert_steps_increase(client, r.info.run_id)  # each metric step once
            if trial in board:
                steps = [m.step for m in client.get_metric_history(r.info.run_id, "epoch/val_mse")]
                assert sorted(steps) == list(range(1, EPOCHS + 1)), (r.info.run_id, steps)
        assert set(board) <= set(per_trial)
        parents = [r for r in runs if r.data.tags.get("bubbles.role") == "sweep"]
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        assert not spool.exists()  # everything replayed
    finally:
        mlflow_server.stop(server)
