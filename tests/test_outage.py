"""A tracking-server outage across the end of a sweep (a real `mlflow server`, killed and restarted): the driver
names every run it left unfinished and why, prints a resume command, and the resume settles them all."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import mlflow
import pytest

from study.space import load_space
from study.sweep import UNSETTLED_FILE, run_sweep
from tests import mlflow_server
from tests.test_sweep import children, write_space

OUTAGE = """
data: {{store: {store}, split: condition, val_fraction: 0.34}}
fixed: {{loss: mse_mean, batch_size: 8, stride: 2, max_train_windows: 16, max_val_windows: 4, layers: 1, hidden: 4,
         image_size: 16, window: "4->1", epochs: 2}}
search:
  lr: {{type: categorical, choices: [1.0e-2, 1.0e-5, 2.0e-5]}}
seed_points: [{{lr: 1.0e-2}}, {{lr: 1.0e-5}}, {{lr: 2.0e-5}}]
tune: {{objective: val_ssim, num_samples: {samples}, max_concurrent: 1, max_failures: 0, asha: {{grace_period: 1, reduction_factor: 2}},
        sampler: random}}
evaluate: {{windows: 8, epoch_windows: 2}}
tracking: {{experiment: sweep-test}}
"""


def _kill_when_first_trial_ends(uri: str, pgid: int, stop: threading.Event) -> None:
    """Take the server down as soon as the first trial's run is FINISHED: the others run through the outage.
    (From the test, not the trainable: Tune may end a trial's process right after its last report.)"""
    client = mlflow.MlflowClient(uri)
    while not stop.is_set():
        try:
            exp = client.get_experiment_by_name("sweep-test")
            done = client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED' and tags.sweep = 'outage'") if exp else []
        except Exception:
            done = []
        if done:
            os.killpg(pgid, signal.SIGKILL)
            return
        time.sleep(0.2)


@pytest.mark.slow
def test_outage_message_names_every_unfinished_run_and_resume_settles_them(tiny_store: Path, tmp_path: Path) -> None:
    port = mlflow_server.free_port()
    (tmp_path / "server").mkdir()
    proc = mlflow_server.start(tmp_path / "server", port)
    uri = f"http://127.0.0.1:{port}"
    space = load_space(write_space(tmp_path, tiny_store, samples=3, text=OUTAGE))
    lines: list[str] = []
    resume = f"bubbles-study sweep {space.path} --name outage --resume --storage {tmp_path / 'sweeps'}"
    stop = threading.Event()
    killer = threading.Thread(target=_kill_when_first_trial_ends, args=(uri, proc.pid, stop), daemon=True)
    killer.start()
    try:
        outcome = run_sweep(space, "outage", tmp_path / "sweeps", uri, echo=lines.append, resume_command=resume)
        assert proc.poll() is not None, "the server was never taken down"
        text = "\n".join(lines)
        print(text)  # what the user sees (pytest -s)
        # The leaderboard still stands, and every run left unfinished is named with why.
        assert len(outcome.rows) == 3
        assert f"MLflow at {uri} did not take every write" in text and f"`{resume}` finishes them" in text, text
        assert f"parent run {outcome.parent_run_id} (sweep 'outage'): still RUNNING" in text
        first = [r for r in outcome.rows if r["lr"] == 1.0e-2][0]
        for row in outcome.rows:
            if row is not first:  # the trials that ran through the outage
                assert f"trial {row['trial']} (run " in text, text
        assert f"trial {first['trial']} (run " not in text  # it logged everything and ended its run itself
        assert "could not be logged" not in text
        assert (outcome.directory / UNSETTLED_FILE).exists()
        # The server comes back (same database): the printed resume settles everything, calling nothing a killed driver.
        proc = mlflow_server.start(tmp_path / "server", port)
        lines.clear()
        again = run_sweep(space, "outage", tmp_path / "sweeps", uri, echo=lines.append, resume_command=resume)
        text = "\n".join(lines)
        assert "killed driver" not in text and "unavailable" not in text, text
        client = mlflow.MlflowClient(uri)
        assert client.get_run(again.parent_run_id).info.status == "FINISHED"
        kids = children(uri, again.parent_run_id)
        assert len(kids) == 3 and all(k.info.status in ("FINISHED", "FAILED") for k in kids), [k.info.status for k in kids]
        assert all("parameters" in k.data.metrics for k in kids)  # evaluated, stopped early or not
        assert {k.data.tags["trial_status"] for k in kids} <= {"completed", "stopped_early"}
        assert all(r["mlflow_run"] and not r["mlflow_run"].startswith("pending-") for r in again.rows)
        assert not (again.directory / UNSETTLED_FILE).exists() and not (again.directory / "mlflow_spool").exists()
    finally:
        stop.set()
        mlflow_server.stop(proc)
