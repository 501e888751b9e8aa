"""`train` on the console: heartbeat lines within long epochs off a terminal, and Ctrl-C (a real SIGINT) that stops
at once, marks the MLflow run KILLED, keeps the checkpoint and prints a resume command that works."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from study.trial import heartbeat

ROOT = Path(__file__).resolve().parent.parent


def test_heartbeat_says_how_far_the_epoch_is() -> None:
    now = [0.0]

    def clock() -> float:
        return now[0]

    lines: list[str] = []
    seen = []
    for batch in heartbeat(list(range(10)), epoch=1, epochs=4, echo=lines.append, every_s=30.0, clock=clock):
        seen.append(batch)
        now[0] += 12.0  # 12 s per batch: a line after batches 3, 6 and 9 (none after the last: the epoch line follows)
    assert seen == list(range(10))
    assert lines == [
        "epoch 2/4: batch 3/10 (30%), 36 s, about 1m24s left in this epoch",
        "epoch 2/4: batch 6/10 (60%), 72 s, about 0m48s left in this epoch",
        "epoch 2/4: batch 9/10 (90%), 108 s, about 0m12s left in this epoch",
    ]


@pytest.mark.slow
def test_ctrl_c_stops_train_marks_the_run_killed_and_resumes(tiny_store: Path, tmp_path: Path) -> None:
    config = tmp_path / "trial.yaml"
    config.write_text(f"store: {tiny_store}\nimage_size: 16\nwindow: '4->1'\nlayers: 1\nhidden: 4\nbatch_size: 4\n"
                      "loss: mse_mean\nmax_train_windows: 16\nmax_val_windows: 4\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    out_dir = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "cli.py"), "train", str(config), "--set", "epochs=500", "--out", str(out_dir)]
    # Started with SIGINT ignored, as a shell starts a job with `&`: train must still stop on it.
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert proc.stdout is not None
    deadline = time.monotonic() + 240
    for line in proc.stdout:  # wait for the first finished epoch: its checkpoint exists from then on
        if line.startswith("epoch 2/500"):
            break
        assert time.monotonic() < deadline, "no epoch line within 240 s"
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    assert proc.returncode == 130, err
    assert took < 15, f"{took:.1f} s from SIGINT to exit"  # ~1-2 s idle; generous for a loaded CI machine
    assert "Traceback" not in err
    said = [line for line in err.splitlines() if line.startswith("interrupted:")]
    assert len(said) == 1 and " is KILLED" in said[0], err
    assert (out_dir / "checkpoint" / "checkpoint.pt").is_file()
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bubbles-train")
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.status for r in runs] == ["KILLED"] and runs[0].info.run_id in said[0]
    # The printed command continues from the checkpoint (here with 6 epochs instead of 500).
    resume = shlex.split(said[0].split("goes on with", 1)[1])
    assert resume[:2] == ["bubbles-study", "train"] and "--resume" in resume and "epochs=500" in resume
    resume = ["epochs=6" if arg == "epochs=500" else arg for arg in resume]
    again = subprocess.run([sys.executable, str(ROOT / "cli.py"), *resume[1:]], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stderr
    assert "epoch 1/6" not in again.stdout and "epoch 6/6" in again.stdout  # it resumed, it did not start over
    # One training, one MLflow run: the resume continued the run it stopped, every epoch logged once.
    after = client.search_runs([exp.experiment_id])
    assert [(r.info.run_id, r.info.status) for r in after] == [(runs[0].info.run_id, "FINISHED")]
    assert f"continuing MLflow run {runs[0].info.run_id}" in again.stdout
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "epoch/val_mse")]
    assert sorted(steps) == list(range(1, 7)), steps
