"""Sweeps survive interruption (SIGINT, then --resume) and the loss of a node (a real multi-node Ray cluster)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import optuna
import pytest
import ray
from ray.cluster_utils import Cluster

from study.space import load_space
from study.sweep import OPTUNA_DB, run_sweep
from tests.test_sweep import children, write_space

ROOT = Path(__file__).resolve().parents[1]


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise TimeoutError(what)
        time.sleep(0.5)


def assert_steps_increase(client: mlflow.MlflowClient, run_id: str) -> None:
    """Every metric history of a run has strictly increasing steps: no epoch or lead logged twice."""
    for key in client.get_run(run_id).data.metrics:
        steps = [m.step for m in sorted(client.get_metric_history(run_id, key), key=lambda m: (m.timestamp, m.step))]
        assert all(a < b for a, b in zip(steps, steps[1:])), (key, steps)


def _finished_children(uri: str) -> int:
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("sweep-test")
    if exp is None:
        return 0
    return len(client.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED' and tags.sweep = 'resumable'"))


# Small trials (16 px, one layer, few windows, the yardstick on 8 windows) for the start-up interrupt: what is tested
# there is the driver's stop and the sweep run again, not the models.
RESUMABLE = """
data: {{store: {store}, split: condition, val_fraction: 0.34}}
fixed: {{loss: mse_mean, batch_size: 8, stride: 2, max_train_windows: 16, max_val_windows: 4, layers: 1, hidden: 4,
         image_size: 16, window: "4->1"}}
search:
  lr: {{type: log, low: 1.0e-3, high: 1.0e-2}}
  epochs: {{type: int, low: 2, high: 3}}
tune: {{objective: val_ssim, num_samples: {samples}, max_concurrent: 2, max_failures: 0, seed: 1,
        asha: {{grace_period: 1, reduction_factor: 3}}}}
evaluate: {{windows: 8, epoch_windows: 2}}
tracking: {{experiment: sweep-test}}
"""


@pytest.mark.slow
def test_interrupt_then_resume_without_duplicates(tiny_store: Path, tmp_path: Path) -> None:
    # test_sweep's space, 8 trials: with RESUMABLE's small ones every trial could end before the SIGINT landed.
    space = write_space(tmp_path, tiny_store, samples=8)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = os.environ | {"MLFLOW_TRACKING_URI": uri, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(ROOT / "cli.py"), "sweep", str(space), "--name", "resumable", "--storage", str(tmp_path / "sweeps")]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait(lambda: _finished_children(uri) >= 1 or proc.poll() is not None, 240, "a trial to finish")
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    # The command the sweep prints works as printed (run from the repository, as a user would): it names the storage.
    printed = out.split("interrupted: continue with", 1)[1].strip().splitlines()[0]
    words = shlex.split(printed)
    assert words[:2] == ["bubbles-study", "sweep"] and "--storage" in words and "--resume" in words
    done_before = _finished_children(uri)
    assert 1 <= done_before < 8
    client = mlflow.MlflowClient(uri)
    interrupted = [r for r in client.search_runs([client.get_experiment_by_name("sweep-test").experiment_id]) if r.data.tags.get("sweep") == "resumable"]
    assert all(r.info.status != "RUNNING" for r in interrupted)  # marked honestly at the interrupt, not at resume
    resumed = subprocess.run([sys.executable, str(ROOT / "cli.py"), *words[1:]], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "continuing sweep 'resumable'" in resumed.stdout
    assert "#/experiments/" in resumed.stdout and "workflowType=machine_learning" in resumed.stdout  # a link that opens the runs table
    parent_id = (tmp_path / "sweeps" / "resumable" / "mlflow_parent.json").read_text()
    client = mlflow.MlflowClient(uri)
    parents = client.search_runs([client.get_experiment_by_name("sweep-test").experiment_id], filter_string="tags.`bubbles.role` = 'sweep'")
    assert len(parents) == 1 and parents[0].info.run_id in parent_id and parents[0].info.status == "FINISHED"
    kids = children(uri, parents[0].info.run_id)
    trial_ids = [k.data.tags["tune_trial_id"] for k in kids]
    assert len(trial_ids) == 8 and len(set(trial_ids)) == 8  # no trial ran twice into two MLflow runs
    assert all(k.info.status != "RUNNING" for k in kids)
    for kid in kids:
        assert_steps_increase(client, kid.info.run_id)
    study = optuna.load_study(study_name="resumable", storage=f"sqlite:///{tmp_path / 'sweeps' / 'resumable' / OPTUNA_DB}")
    assert len(study.trials) == 8
    assert all(t.state.is_finished() for t in study.trials)


NODE_LOSS = """
data: {{store: {store}, split: condition, val_fraction: 0.34}}
fixed: {{loss: mse_mean, batch_size: 4, stride: 1, layers: 2, hidden: 16, image_size: 32, window: "4->1", epochs: 6,
         max_train_windows: 96, max_val_windows: 4}}
search:
  lr: {{type: categorical, choices: [3.0e-3]}}
tune: {{objective: val_ssim, num_samples: {samples}, max_concurrent: 1, max_failures: 2, asha: false}}
tracking: {{experiment: sweep-test}}
"""


@pytest.mark.slow
def test_trial_resumes_from_checkpoint_after_node_loss(tiny_store: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    space = load_space(write_space(tmp_path, tiny_store, samples=1, text=NODE_LOSS))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    doomed = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, include_dashboard=False)
    outcome: dict[str, object] = {}

    def sweep() -> None:
        try:
            outcome["result"] = run_sweep(space, "nodeloss", tmp_path / "sweeps", uri)
        except BaseException as exc:  # surfaced by the assertions below
            outcome["error"] = exc

    thread = threading.Thread(target=sweep)
    thread.start()
    try:
        def epochs_logged() -> int:
            client = mlflow.MlflowClient(uri)
            exp = client.get_experiment_by_name("sweep-test")
            runs = client.search_runs([exp.experiment_id], filter_string="tags.sweep = 'nodeloss'") if exp else []
            return len(client.get_metric_history(runs[0].info.run_id, "epoch/val_mse")) if runs else 0

        _wait(lambda: epochs_logged() >= 2 or not thread.is_alive(), 240, "two epochs on the doomed node")
        assert thread.is_alive()
        cluster.remove_node(doomed)  # the node dies mid-trial
        cluster.add_node(num_cpus=1)  # a replacement joins (add_node must run on the main thread)
        thread.join(timeout=400)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert [r["status"] for r in result.rows] == ["completed"]  # type: ignore[attr-defined]
    client = mlflow.MlflowClient(uri)
    runs = children(uri, result.parent_run_id)  # type: ignore[attr-defined]
    assert len(runs) == 1  # the restarted trial kept its MLflow run
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "epoch/val_mse")]
    # Resumed from its last checkpoint: the epoch counter continues, it never starts again at 1.
    assert steps[0] == 1 and steps[-1] == 6
    assert_steps_increase(client, runs[0].info.run_id)
    errors = list((tmp_path / "sweeps" / "nodeloss").glob("*/error.txt"))
    assert errors and "Failure # 1" in errors[0].read_text()  # the trial really lost its node and was restarted
    assert runs[0].info.status == "FINISHED" and runs[0].data.tags["trial_status"] == "completed"
    nodes = runs[0].data.tags["ray_nodes"].split(",")  # both nodes it ran on, the lost one first
    assert len(nodes) == 2 and nodes[0] != nodes[1] and result.rows[0]["node"] == ",".join(nodes)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_multi_node_cluster_needs_shared_storage(tiny_store: Path, tmp_path: Path) -> None:
    """Issue 11: a cluster of several nodes with the local default storage is refused before any MLflow run."""
    from bubbles.errors import UserError

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    space = load_space(write_space(tmp_path, tiny_store, samples=1, text=NODE_LOSS))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, include_dashboard=False)
    try:
        with pytest.raises(UserError, match="2 nodes .* every node sees"):
            run_sweep(space, "local", tmp_path / "sweeps", uri, storage_shared=False)
        # The same of a frame store named by a relative path (issue 31: the RayJob's store was /app-relative).
        with pytest.raises(UserError, match="2 nodes but the frame store .* relative path .* every node sees"):
            run_sweep(space, "local", tmp_path / "sweeps", uri, store_shared=False)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert not (tmp_path / "sweeps" / "local").exists()
    assert mlflow.MlflowClient(uri).get_experiment_by_name("sweep-test") is None


@pytest.mark.slow
def test_sigint_during_start_up_stops_a_sweep_started_with_sigint_ignored(tiny_store: Path, tmp_path: Path) -> None:
    """A sweep started from a script (`&`: SIGINT ignored) stops on SIGINT while it starts up, within seconds, and
    says the command that goes on; a start stopped before any trial leaves nothing `--resume` could take for a sweep."""
    space = write_space(tmp_path, tiny_store, samples=1, text=RESUMABLE)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = os.environ | {"MLFLOW_TRACKING_URI": uri, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    storage = tmp_path / "sweeps"
    cmd = [sys.executable, str(ROOT / "cli.py"), "sweep", str(space), "--name", "early", "--storage", str(storage)]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert proc.stdout is not None
    try:
        first = proc.stdout.readline()  # the first line comes once Ray has started: the space's windows, then baselines
        assert first and proc.poll() is None, first
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    out = first + out
    assert proc.returncode == 130, out
    assert took < 30, f"{took:.1f} s from SIGINT to exit"  # a few seconds idle (Ray's shutdown); generous when loaded
    assert "Traceback" not in out and " started: " not in out, out
    said = [line for line in out.splitlines() if line.startswith("interrupted")]
    assert len(said) == 1, out
    words = shlex.split(said[0].split(" with ", 1)[1])
    assert words[:2] == ["bubbles-study", "sweep"] and "--storage" in words
    client = mlflow.MlflowClient(uri)
    if "during start-up" in said[0]:
        # Stopped before Ray Tune saved anything: no directory, no parent run, and --resume says there is no sweep.
        assert "--resume" not in words and not (storage / "early").exists(), out
        exp = client.get_experiment_by_name("sweep-test")
        assert exp is None or not client.search_runs([exp.experiment_id]), "an empty parent run was left in MLflow"
        refused = subprocess.run([*cmd, "--resume"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1 and refused.stderr.startswith("error: --resume: no sweep named 'early'"), refused.stderr
    else:  # the signal landed once Tune had saved its state: it continues with --resume
        assert "--resume" in words, out
    again = subprocess.run([sys.executable, str(ROOT / "cli.py"), *words[1:]], env=env, cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert (storage / "early" / "leaderboard.csv").is_file()
